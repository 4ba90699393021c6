#!/usr/bin/env bash
# Manage the local moto server (AWS mock) used by the demo.
#
#   scripts/servers.sh start    start the extended moto server (scripts/moto_ext/server.py:
#                               moto plus EKS version updates and delayed statuses) in the
#                               background (no-op if already up)
#   scripts/servers.sh stop     stop it
#   scripts/servers.sh status   say whether it is up (exit 0 if up, 1 if not)
#   scripts/servers.sh reset    clear all of its state (POST /moto-api/reset)
#
# Listens on 127.0.0.1:${OPSCTL_MOTO_PORT:-5599}; log and pid file live in
# $OPSCTL_CACHE/run/ (default ~/.cache/opsctl/run/). Needs the venv made by
# scripts/setup.sh. The integration tests do not use this: they start their
# own servers on free ports.
set -euo pipefail

OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
PORT=${OPSCTL_MOTO_PORT:-5599}
VENV=$OPSCTL_CACHE/venv
MOTO_EXT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/moto_ext/server.py
RUN_DIR=$OPSCTL_CACHE/run
PID_FILE=$RUN_DIR/moto-$PORT.pid
LOG_FILE=$RUN_DIR/moto-$PORT.log
URL=http://127.0.0.1:$PORT
START_TIMEOUT=${OPSCTL_MOTO_START_TIMEOUT:-20}

die() { echo "servers.sh: error: $*" >&2; exit 1; }

# Exit 0 when GET URL answers 200 within a second.
http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 1 "$1" >/dev/null 2>&1
    else
        "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" >/dev/null 2>&1
    fi
}

http_post() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 10 -X POST "$1"
    else
        "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"", method="POST"), timeout=10)' "$1"
    fi
}

healthy() { http_ok "$URL/moto-api/"; }

# Print the pid from the pid file if that process is alive and is a moto_server.
our_pid() {
    local pid
    [[ -f $PID_FILE ]] || return 1
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid belonging to something else.
    if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_ext/server.py; then
        return 1
    fi
    echo "$pid"
}

log_tail() {
    if [[ -f $LOG_FILE ]]; then
        echo "--- last lines of $LOG_FILE ---" >&2
        tail -n 25 "$LOG_FILE" >&2
        echo "---" >&2
    fi
}

start() {
    local pid deadline
    if pid=$(our_pid); then
        if healthy; then
            echo "moto: already running at $URL (pid $pid)"
            return 0
        fi
        # Alive but not answering yet (e.g. started a moment ago): wait below.
    else
        if healthy; then
            echo "moto: something already answers at $URL (not started by this script; 'stop' will not stop it)"
            return 0
        fi
        [[ -x $VENV/bin/moto_server ]] || die "$VENV/bin/moto_server not found: run scripts/setup.sh first"
        [[ -f $MOTO_EXT ]] || die "$MOTO_EXT not found"
        mkdir -p "$RUN_DIR"
        : >"$LOG_FILE"
        nohup "$VENV/bin/python" "$MOTO_EXT" --host 127.0.0.1 --port "$PORT" </dev/null >>"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
    fi
    deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f -- "$PID_FILE"
            log_tail
            die "moto_server (pid $pid) exited before it was ready on port $PORT (port taken? set OPSCTL_MOTO_PORT)"
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            rm -f -- "$PID_FILE"
            log_tail
            die "moto_server did not answer at $URL/moto-api/ within ${START_TIMEOUT}s"
        fi
        sleep 0.1
    done
    echo "moto: running at $URL (pid $pid, log $LOG_FILE)"
}

stop() {
    local pid i
    if ! pid=$(our_pid); then
        rm -f -- "$PID_FILE"
        echo "moto: not running (port $PORT)"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f -- "$PID_FILE"
    echo "moto: stopped (pid $pid)"
}

status() {
    local pid
    if pid=$(our_pid) && healthy; then
        echo "moto: running at $URL (pid $pid)"
    elif healthy; then
        echo "moto: something answers at $URL but not started by this script"
    elif pid=$(our_pid); then
        echo "moto: pid $pid alive but not answering at $URL"
        return 1
    else
        echo "moto: not running (port $PORT)"
        return 1
    fi
}

reset() {
    healthy || die "moto is not running at $URL (scripts/servers.sh start)"
    http_post "$URL/moto-api/reset" || die "POST $URL/moto-api/reset failed"
    echo "moto: state reset at $URL"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) reset ;;
    *)
        echo "usage: $0 start|stop|status|reset" >&2
        exit 2
        ;;
esac
