#!/usr/bin/env bash
# Build and run opsctl's whole test suite (what CI runs).
#
#   scripts/test.sh [CARGO TEST ARGS...] [-- TEST BINARY ARGS...]
#   e.g. scripts/test.sh --test plan_apply -- drift --nocapture
#
# Installs what the tests need (scripts/setup.sh), then points them at it:
#   OPSCTL_MOTO_SERVER  the moto_server binary; each test starts its own on a free port
#   OPSCTL_SEED_PYTHON  the venv's python, with boto3, for seed_platform.py and checks
#   OPSCTL_MOTO_EXT     scripts/moto_ext/server.py, the extended moto server (run with
#                       OPSCTL_SEED_PYTHON); tests/aws_eks.rs starts one per test
#   OPSCTL_KUBE_SH      scripts/kube.sh (after 'kube.sh install'); tests/kubernetes.rs
#                       starts one kube-apiserver with it
#   OPSCTL_VAULT_SH     scripts/vault.sh (after 'vault.sh install'); tests/vault.rs starts
#                       one OpenBao dev server with it
# Environment: OPSCTL_CACHE (default ~/.cache/opsctl), CARGO_TARGET_DIR
# (default $OPSCTL_CACHE/target), OPSCTL_TEST_THREADS (default 4).
# Exits with cargo's status; before the tests, with opsctl fmt's status (3) when an .hcl
# file of the repository is not formatted (`opsctl fmt --check --recursive .`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$OPSCTL_CACHE/target}

if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

bash scripts/setup.sh
bash scripts/kube.sh install
bash scripts/vault.sh install

export OPSCTL_MOTO_SERVER=$OPSCTL_CACHE/venv/bin/moto_server
export OPSCTL_SEED_PYTHON=$OPSCTL_CACHE/venv/bin/python
export OPSCTL_MOTO_EXT=$ROOT/scripts/moto_ext/server.py
export OPSCTL_KUBE_SH=$ROOT/scripts/kube.sh
export OPSCTL_VAULT_SH=$ROOT/scripts/vault.sh
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# Split our arguments at the first "--": before it for cargo, after it for the
# test binaries.
cargo_args=()
test_args=()
seen_sep=0
for arg in "$@"; do
    if ((seen_sep)); then
        test_args+=("$arg")
    elif [[ $arg == -- ]]; then
        seen_sep=1
    else
        cargo_args+=("$arg")
    fi
done
threads_given=0
for arg in "${test_args[@]+"${test_args[@]}"}"; do
    [[ $arg == --test-threads || $arg == --test-threads=* ]] && threads_given=1
done
if ((!threads_given)); then
    test_args=("--test-threads=${OPSCTL_TEST_THREADS:-4}" "${test_args[@]+"${test_args[@]}"}")
fi

echo "test: cargo build --locked --all-targets (target dir $CARGO_TARGET_DIR)"
cargo build --locked --all-targets

# Every .hcl file of the repository is in the canonical layout (exit 3: some file is not).
echo "test: opsctl fmt --check --recursive ."
fmt_status=0
"$CARGO_TARGET_DIR/debug/opsctl" fmt --check --recursive . || fmt_status=$?
if ((fmt_status != 0)); then
    echo "test: the files listed above are not formatted (exit $fmt_status); run \`opsctl fmt --recursive .\`" >&2
    exit "$fmt_status"
fi

echo "test: cargo test --locked ${cargo_args[*]+"${cargo_args[*]}"} -- ${test_args[*]}"
exec cargo test --locked "${cargo_args[@]+"${cargo_args[@]}"}" -- "${test_args[@]}"
