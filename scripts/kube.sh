#!/usr/bin/env bash
# A real Kubernetes API server on loopback, for the coming kubernetes provider's
# tests and demo (no kubelet: tests play the kubelet themselves).
#
#   scripts/kube.sh install     build and cache kube-apiserver, kube-controller-manager
#                               and kube-scheduler (idempotent; fast when done)
#   scripts/kube.sh start DIR   start etcd, kube-apiserver, kube-controller-manager and
#                               kube-scheduler with data, certs, logs and pid files in
#                               DIR; writes DIR/kubeconfig (admin, context opsctl-test),
#                               DIR/kubeconfig-viewer (no grants) and DIR/kubeconfig-reader
#                               (get/list/watch on everything, no writes); prints the URL.
#                               The API server writes an audit log of every request made
#                               by a client other than the control plane (Metadata level,
#                               one JSON line per request) to DIR/audit.log
#   scripts/kube.sh stop DIR    stop what 'start DIR' started (removes nothing else)
#
# install (needs root for apt-get): installs golang-go rsync etcd-server openssl
# golang-github-modern-go-reflect2-dev, adds a bookworm deb-src entry when none is
# there, downloads Debian's 'kubernetes' source package and builds it the way
# debian/rules does (GOPATH mode, make, vendored reflect2 1.0.1 replaced by
# Debian's 1.0.2, which works with Go >= 1.18). Binaries are cached in
# $OPSCTL_CACHE/kube/<version>/bin (default ~/.cache/opsctl), outside the
# checkout, with a stamp file; a second run does nothing.
set -euo pipefail

OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
# Upstream version inside bookworm's source package 1.20.5+really1.20.2-1.
KUBE_VERSION=${OPSCTL_KUBE_VERSION:-1.20.2}
KUBE_HOME=$OPSCTL_CACHE/kube/$KUBE_VERSION
BIN=$KUBE_HOME/bin
STAMP=$BIN/.opsctl-built
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
APT_PACKAGES=(golang-go rsync etcd-server golang-github-modern-go-reflect2-dev openssl curl)
SRC_LIST=/etc/apt/sources.list.d/opsctl-bookworm-src.sources
START_TIMEOUT=${OPSCTL_KUBE_START_TIMEOUT:-60}
ADMIN_TOKEN=opsctl-admin-token
VIEWER_TOKEN=opsctl-viewer-token
READER_TOKEN=opsctl-reader-token

die() { echo "kube.sh: error: $*" >&2; exit 1; }
say() { echo "kube: $*"; }

# --- install -------------------------------------------------------------------

binaries_ok() {
    local b
    [[ -f $STAMP ]] || return 1
    for b in "${BINARIES[@]}"; do
        [[ -x $BIN/$b ]] || return 1
    done
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root (no sudo found)"
    fi
}

apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed"
    fi
}

# Make 'apt-get source' find bookworm's source packages.
deb_src() {
    if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    say "adding a bookworm deb-src entry ($SRC_LIST)"
    as_root tee "$SRC_LIST" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    as_root apt-get update -qq || die "apt-get update failed after adding $SRC_LIST"
}

do_install() {
    mkdir -p "$OPSCTL_CACHE/kube"
    # Serialise concurrent runs.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$OPSCTL_CACHE/kube/.install.lock"
        flock 9
    fi
    if binaries_ok; then
        say "kubernetes $KUBE_VERSION already built in $BIN"
        return 0
    fi
    local t0=$SECONDS work gopath tree dsc version
    apt_packages
    deb_src
    command -v go >/dev/null 2>&1 || die "go not on PATH after installing golang-go"

    work=$KUBE_HOME/build
    rm -rf -- "$work"
    mkdir -p "$work/src"
    say "downloading the kubernetes source package"
    (cd "$work/src" && apt-get source --download-only -qq kubernetes >/dev/null) \
        || die "apt-get source --download-only kubernetes failed (deb-src for bookworm?)"
    dsc=$(ls "$work"/src/kubernetes_*.dsc 2>/dev/null | head -n 1)
    [[ -n $dsc ]] || die "no kubernetes_*.dsc downloaded in $work/src"
    version=$(sed -n 's/^Version: //p' "$dsc")
    [[ $version == *"really$KUBE_VERSION"* || $version == "$KUBE_VERSION"* ]] \
        || die "the source package is kubernetes $version, not $KUBE_VERSION (set OPSCTL_KUBE_VERSION)"

    gopath=$work/gopath
    tree=$gopath/src/k8s.io/kubernetes
    mkdir -p "$(dirname "$tree")"
    dpkg-source --no-check -x "$dsc" "$tree" >/dev/null || die "dpkg-source -x $dsc failed"

    # reflect2 1.0.1 (vendored) breaks at run time with Go >= 1.18; use Debian's 1.0.2.
    local reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
    [[ -d $reflect2 ]] || die "$reflect2 missing (golang-github-modern-go-reflect2-dev)"
    rm -rf -- "$tree/vendor/github.com/modern-go/reflect2"
    cp -a "$reflect2" "$tree/vendor/github.com/modern-go/reflect2"

    say "building ${BINARIES[*]} (several minutes)"
    local what=() b
    for b in "${BINARIES[@]}"; do what+=("cmd/$b"); done
    (
        cd "$tree"
        export GOPATH=$gopath GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0
        export GOCACHE=$work/gocache
        export KUBE_GIT_VERSION=v$KUBE_VERSION KUBE_GIT_TREE_STATE=clean
        make WHAT="${what[*]}"
    ) >"$KUBE_HOME/build.log" 2>&1 || {
        tail -n 30 "$KUBE_HOME/build.log" >&2
        die "make failed (full log: $KUBE_HOME/build.log; tree kept in $tree)"
    }
    mkdir -p "$BIN"
    for b in "${BINARIES[@]}"; do
        install -m 0755 "$tree/_output/bin/$b" "$BIN/$b" 2>/dev/null \
            || install -m 0755 "$tree/_output/local/bin/linux/$(go env GOARCH)/$b" "$BIN/$b" \
            || die "built $b not found under $tree/_output"
    done
    echo "kubernetes $version built in $((SECONDS - t0))s" >"$STAMP"
    rm -rf -- "$work"
    say "built kubernetes $version in $((SECONDS - t0))s into $BIN"
}

# --- start / stop --------------------------------------------------------------

# Components in start order; stop goes the other way.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

note() { echo "kube: $*" >&2; }

# Print a free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Print the pid of component $2 started in DIR $1 if it is alive and is that program.
comp_pid() {
    local pid file=$1/$2.pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid belonging to something else.
    if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"; then
        return 1
    fi
    echo "$pid"
}

# Start component $2 in DIR $1 with the command line "${@:3}" in the background.
launch() {
    local dir=$1 name=$2
    shift 2
    : >"$dir/$name.log"
    nohup "$@" </dev/null >>"$dir/$name.log" 2>&1 &
    echo "$!" >"$dir/$name.pid"
}

log_tail() {
    if [[ -f $1 ]]; then
        echo "--- last lines of $1 ---" >&2
        tail -n 25 "$1" >&2
        echo "---" >&2
    fi
}

# Wait until command "${@:3}" succeeds while component $2 of DIR $1 lives.
wait_for() {
    local dir=$1 name=$2 deadline=$((SECONDS + START_TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ! comp_pid "$dir" "$name" >/dev/null; then
            log_tail "$dir/$name.log"
            die "$name exited before it was ready (log: $dir/$name.log; if a port of $dir/ports.env is taken, remove that file to pick new ones)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$dir/$name.log"
            die "$name not ready within ${START_TIMEOUT}s (log: $dir/$name.log)"
        fi
        sleep 0.2
    done
}

# Write a kubeconfig $1 for server $2, CA file $3, token $4, user name $5.
write_kubeconfig() {
    local ca_data
    ca_data=$(base64 -w0 <"$3")
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: opsctl-test
  cluster:
    server: $2
    certificate-authority-data: $ca_data
users:
- name: $5
  user:
    token: $4
contexts:
- name: opsctl-test
  context:
    cluster: opsctl-test
    user: $5
    namespace: default
current-context: opsctl-test
EOF
    chmod 600 "$1"
}

# CA, serving certificate (IP SAN 127.0.0.1), service-account key pair, token file.
make_credentials() {
    local dir=$1 pki=$1/pki
    mkdir -p "$pki"
    chmod 700 "$pki"
    if [[ ! -s $pki/ca.crt ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=opsctl-test-ca" \
            -keyout "$pki/ca.key" -out "$pki/ca.crt" >/dev/null 2>&1 || die "openssl: CA certificate failed"
        rm -f -- "$pki/apiserver.crt"
    fi
    if [[ ! -s $pki/apiserver.crt ]]; then
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
            -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" >/dev/null 2>&1 || die "openssl: serving key failed"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
            "extendedKeyUsage=serverAuth" "keyUsage=digitalSignature,keyEncipherment" >"$pki/apiserver.ext"
        openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
            -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" >/dev/null 2>&1 \
            || die "openssl: serving certificate failed"
    fi
    if [[ ! -s $pki/sa.key ]]; then
        openssl genrsa -out "$pki/sa.key" 2048 >/dev/null 2>&1 || die "openssl: service-account key failed"
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" >/dev/null 2>&1 || die "openssl: service-account public key failed"
    fi
    # token,user,uid,"groups"
    cat >"$pki/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$VIEWER_TOKEN,viewer,viewer
$READER_TOKEN,reader,reader
opsctl-controller-manager-token,system:kube-controller-manager,kcm,"system:masters"
opsctl-scheduler-token,system:kube-scheduler,scheduler,"system:masters"
EOF
    chmod 600 "$pki/tokens.csv"
    # Audit: every request of the clients (admin, viewer, reader, tests' own users), none
    # of the control plane's (its watches and status updates would drown the log).
    cat >"$pki/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
- level: None
  userGroups: ["system:serviceaccounts", "system:nodes"]
- level: Metadata
EOF
}

# Grant the reader user get/list/watch on every resource (ClusterRole opsctl-reader).
grant_reader() {
    local url=$2 pki=$1/pki
    local api=(curl -fsS --max-time 10 --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN"
        -H 'Content-Type: application/json' -o /dev/null)
    "${api[@]}" -X POST "$url/apis/rbac.authorization.k8s.io/v1/clusterroles" -d '{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "opsctl-reader"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}' \
        || die "cannot create ClusterRole opsctl-reader"
    "${api[@]}" -X POST "$url/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" -d '{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "opsctl-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "opsctl-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader"}]}' \
        || die "cannot create ClusterRoleBinding opsctl-reader"
}

stop_dir() {
    local dir=$1 i n pid
    for ((n = ${#COMPONENTS[@]} - 1; n >= 0; n--)); do
        local name=${COMPONENTS[n]}
        if pid=$(comp_pid "$dir" "$name"); then
            kill "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -9 "$pid" 2>/dev/null || true
            fi
            note "stopped $name (pid $pid)"
        fi
        rm -f -- "$dir/$name.pid"
    done
}

start() {
    local dir=${1:-}
    [[ -n $dir ]] || die "usage: $0 start DIR"
    binaries_ok || die "kubernetes $KUBE_VERSION is not built in $BIN: run '$0 install' first"
    command -v etcd >/dev/null 2>&1 || die "etcd not found: run '$0 install' first"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local pki=$dir/pki url ports=$dir/ports.env t0=$SECONDS

    if comp_pid "$dir" kube-apiserver >/dev/null && [[ -f $dir/url ]]; then
        note "already running in $dir"
        cat "$dir/url"
        return 0
    fi
    stop_dir "$dir" 2>/dev/null # leftovers of a half-started run
    # If anything below fails, stop what was started.
    trap 'stop_dir "'"$dir"'" 2>/dev/null' EXIT

    # Ports, kept across restarts of the same DIR.
    local ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT
    if [[ -f $ports ]]; then
        # shellcheck disable=SC1090
        source "$ports"
    else
        ETCD_PORT=$(free_port) ETCD_PEER_PORT=$(free_port) API_PORT=$(free_port)
        KCM_PORT=$(free_port) SCHED_PORT=$(free_port)
        printf '%s\n' "ETCD_PORT=$ETCD_PORT" "ETCD_PEER_PORT=$ETCD_PEER_PORT" "API_PORT=$API_PORT" \
            "KCM_PORT=$KCM_PORT" "SCHED_PORT=$SCHED_PORT" >"$ports"
    fi
    url=https://127.0.0.1:$API_PORT
    make_credentials "$dir"

    launch "$dir" etcd etcd --name opsctl-test --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "opsctl-test=http://127.0.0.1:$ETCD_PEER_PORT"
    wait_for "$dir" etcd curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health"

    launch "$dir" kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
        --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
        --authorization-mode RBAC --allow-privileged \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
        --audit-policy-file "$pki/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
        --audit-log-format json --audit-log-mode blocking
    wait_for "$dir" kube-apiserver curl -fsS --max-time 2 --cacert "$pki/ca.crt" \
        -H "Authorization: Bearer $ADMIN_TOKEN" "$url/readyz"

    write_kubeconfig "$dir/kubeconfig" "$url" "$pki/ca.crt" "$ADMIN_TOKEN" admin
    write_kubeconfig "$dir/kubeconfig-viewer" "$url" "$pki/ca.crt" "$VIEWER_TOKEN" viewer
    write_kubeconfig "$dir/kubeconfig-reader" "$url" "$pki/ca.crt" "$READER_TOKEN" reader
    # Once per DIR (it lives in etcd, which a restart of the same DIR keeps).
    if [[ ! -f $dir/reader-granted ]]; then
        grant_reader "$dir" "$url"
        : >"$dir/reader-granted"
    fi
    write_kubeconfig "$pki/controller-manager.kubeconfig" "$url" "$pki/ca.crt" opsctl-controller-manager-token controller-manager
    write_kubeconfig "$pki/scheduler.kubeconfig" "$url" "$pki/ca.crt" opsctl-scheduler-token scheduler

    launch "$dir" kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$pki/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$pki/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
        --controllers '*,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-ttl' \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --port 0 \
        --cert-dir "$pki/controller-manager"
    launch "$dir" kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$pki/scheduler.kubeconfig" \
        --authentication-kubeconfig "$pki/scheduler.kubeconfig" \
        --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
        --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --port 0 \
        --cert-dir "$pki/scheduler"
    wait_for "$dir" kube-controller-manager curl -ksS --max-time 1 -o /dev/null "https://127.0.0.1:$KCM_PORT/healthz"
    wait_for "$dir" kube-scheduler curl -ksS --max-time 1 -o /dev/null "https://127.0.0.1:$SCHED_PORT/healthz"

    trap - EXIT
    echo "$url" >"$dir/url"
    note "running in $((SECONDS - t0))s: $url (kubeconfig $dir/kubeconfig, context opsctl-test; logs and pids in $dir)"
    echo "$url"
}

stop() {
    local dir=${1:-}
    [[ -n $dir ]] || die "usage: $0 stop DIR"
    [[ -d $dir ]] || die "$dir: no such directory"
    stop_dir "$dir"
    note "stopped everything started in $dir"
}

case ${1:-} in
    install) do_install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: $0 install | start DIR | stop DIR" >&2
        exit 2
        ;;
esac
