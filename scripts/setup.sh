#!/usr/bin/env bash
# One-time, idempotent setup for opsctl's demo and integration tests.
#
# - creates the Python venv $OPSCTL_CACHE/venv (default ~/.cache/opsctl/venv)
#   with moto[server] (the AWS mock server), boto3 and the kubernetes client
#   (scripts/seed_cluster.py, the demo's cluster), unless it is already
#   there at the right versions (a stamp file records what was installed);
# - checks that cargo is on PATH.
#
# Safe to run any number of times (and concurrently: it takes a lock); fast
# when everything is already in place. Exports nothing.
set -euo pipefail

OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
VENV=$OPSCTL_CACHE/venv
PYTHON=${OPSCTL_PYTHON:-python3}
# What the venv must hold. Changing this string makes the next run reinstall.
REQUIREMENTS=("moto[server]>=5.2,<5.3" "boto3" "kubernetes>=29,<38")
STAMP=$VENV/.opsctl-requirements

die() { echo "setup.sh: error: $*" >&2; exit 1; }

# --- cargo -------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x $HOME/.cargo/bin/cargo ]]; then
        die "cargo is installed at $HOME/.cargo/bin/cargo but not on PATH: run 'source \$HOME/.cargo/env' (or add ~/.cargo/bin to PATH)"
    fi
    die "cargo not found on PATH: install the Rust toolchain with rustup (https://rustup.rs)"
fi
cargo_version=$(cargo --version 2>/dev/null) || die "'cargo --version' failed: is the rustup toolchain installed? (rustup show)"

# --- venv ----------------------------------------------------------------------
mkdir -p "$OPSCTL_CACHE"
# Serialise concurrent runs (e.g. demo.sh and test.sh started together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OPSCTL_CACHE/.setup.lock"
    flock 9
fi

# Exit 0 when the venv can import moto 5.2.x, boto3 and kubernetes and has moto_server.
venv_ok() {
    [[ -x $VENV/bin/python && -x $VENV/bin/moto_server ]] || return 1
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as md
import importlib.util
assert md.version("moto").startswith("5.2."), md.version("moto")
md.version("boto3")
md.version("flask")  # pulled in by the [server] extra
md.version("kubernetes")
for mod in ("moto", "boto3", "flask", "werkzeug", "kubernetes"):
    assert importlib.util.find_spec(mod) is not None, mod
EOF
}

want=$(printf '%s\n' "${REQUIREMENTS[@]}")
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]] && venv_ok; then
    did="venv up to date"
else
    # A venv whose interpreter no longer runs (e.g. the base Python was
    # removed or upgraded) cannot be repaired in place: make it anew.
    if [[ -e $VENV ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf -- "$VENV"
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python >= 3.9 (or set OPSCTL_PYTHON)"
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
            || die "$PYTHON is $("$PYTHON" --version 2>&1); moto 5.2 needs Python >= 3.9 (set OPSCTL_PYTHON)"
        "$PYTHON" -m venv "$VENV" \
            || die "could not create a venv with '$PYTHON -m venv $VENV' (on Debian/Ubuntu: apt-get install python3-venv)"
        did="created venv $VENV; "
    else
        did=""
    fi
    rm -f -- "$STAMP"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${REQUIREMENTS[@]}" \
        || die "pip install of ${REQUIREMENTS[*]} into $VENV failed (see above)"
    venv_ok || die "the venv at $VENV still lacks moto 5.2 / boto3 / kubernetes after pip install"
    printf '%s\n' "$want" >"$STAMP"
    did="${did}installed ${REQUIREMENTS[*]}"
fi

versions=$("$VENV/bin/python" -c 'import importlib.metadata as m; print("moto", m.version("moto") + ", boto3", m.version("boto3"))')
echo "setup: $did ($versions) in $VENV"
echo "setup: $cargo_version"
