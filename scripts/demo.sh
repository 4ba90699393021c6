#!/usr/bin/env bash
# The main job: run the example procedures end to end against local servers.
#
# 1. examples/nodegroup-maintenance against a moto server (AWS mock) seeded with a
#    small platform: setup -> build opsctl (release) -> start + reset + seed moto
#    -> opsctl plan -> opsctl apply --auto-approve -> opsctl plan --detailed-exitcode
#    (must be a no-op) -> show the resulting nodegroups and snapshots through the AWS API.
#    Then examples/eks-upgrade on that cluster (control plane, then every nodegroup), the
#    extended test server (scripts/moto_ext) holding it UPDATING for a few seconds.
# 2. examples/node-maintenance against a real kube-apiserver (scripts/kube.sh, built
#    once from Debian's kubernetes source package): seed a cluster (3 nodes, a
#    Deployment of 3 behind a PodDisruptionBudget, scripts/seed_cluster.py, which also
#    plays the kubelets) -> opsctl plan -> opsctl apply --auto-approve -> show the nodes
#    and pods through the Kubernetes API.
# 3. examples/vault-tfc-policy-restore against an OpenBao dev server (scripts/vault.sh):
#    namespace `admin` with a broken, scoped `tfc-policy` -> opsctl plan (a line diff)
#    -> opsctl apply --auto-approve -> opsctl plan --detailed-exitcode (must be a no-op).
#
# Environment: OPSCTL_CACHE (default ~/.cache/opsctl), CARGO_TARGET_DIR
# (default $OPSCTL_CACHE/target), OPSCTL_MOTO_PORT (default 5599),
# OPSCTL_KEEP_SERVERS=1 to leave moto and the API server running afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export OPSCTL_CACHE=${OPSCTL_CACHE:-$HOME/.cache/opsctl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$OPSCTL_CACHE/target}
PORT=${OPSCTL_MOTO_PORT:-5599}
PY=$OPSCTL_CACHE/venv/bin/python
EXAMPLE=examples/nodegroup-maintenance
STATE=$OPSCTL_CACHE/demo-state

if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

# Echo a command (with opsctl's path shortened) and run it.
run() {
    local shown=("$@")
    [[ ${shown[0]} == "$BIN" ]] && shown[0]=opsctl
    printf '\n+'
    printf ' %q' "${shown[@]}"
    printf '\n'
    "$@"
}
# Plan again with --detailed-exitcode (ARGS: the plan's options): the example must have
# converged, so anything but exit 0 (2: changes left, 1: an error) stops the demo.
expect_no_changes() {
    local rc=0
    run "$BIN" plan "$@" --detailed-exitcode || rc=$?
    case $rc in
        0) echo "second plan: nothing to do" ;;
        2)
            echo "demo.sh: error: the plan after apply still has changes (exit 2): apply did not converge" >&2
            exit 1
            ;;
        *)
            echo "demo.sh: error: second plan failed (exit $rc)" >&2
            exit 1
            ;;
    esac
}

bash scripts/setup.sh
bash scripts/kube.sh install
bash scripts/vault.sh install
KUBE_DIR=$OPSCTL_CACHE/demo-kube
VAULT_DIR=$OPSCTL_CACHE/demo-vault
KUBELET_PID=

echo "demo: building opsctl (release) into $CARGO_TARGET_DIR"
cargo build --release --locked
BIN=$CARGO_TARGET_DIR/release/opsctl
[[ -x $BIN ]] || { echo "demo.sh: error: $BIN was not built" >&2; exit 1; }
[[ -d $EXAMPLE ]] || { echo "demo.sh: error: $EXAMPLE not found in $ROOT" >&2; exit 1; }

cleanup() {
    if [[ -n $KUBELET_PID ]]; then kill "$KUBELET_PID" 2>/dev/null || true; fi
    if [[ ${OPSCTL_KEEP_SERVERS:-0} == 1 ]]; then
        echo "demo: leaving moto running at http://127.0.0.1:$PORT (scripts/servers.sh stop)"
        if [[ -f $KUBE_DIR/url ]]; then
            echo "demo: leaving the API server running (KUBECONFIG=$KUBE_DIR/kubeconfig; scripts/kube.sh stop $KUBE_DIR)"
        fi
    else
        bash scripts/servers.sh stop || true
        bash scripts/kube.sh stop "$KUBE_DIR" >/dev/null 2>&1 || true
        bash scripts/vault.sh stop "$VAULT_DIR" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

bash scripts/servers.sh start
bash scripts/servers.sh reset
"$PY" scripts/seed_platform.py --endpoint "http://127.0.0.1:$PORT" --region us-west-2

export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-west-2
# Nothing from the user's real AWS setup may leak into the demo.
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_DEFAULT_REGION=$AWS_REGION

rm -rf -- "$STATE"
mkdir -p "$STATE"

# One date for all three commands: the snapshot's identifier is derived from
# it, so the second plan is a no-op only if it sees the same date.
DATE=$(date -u +%Y%m%d-%H%M%S)
COMMON=(--chdir "$EXAMPLE" --state-dir "$STATE" --var "date=$DATE")

run "$BIN" plan "${COMMON[@]}"
run "$BIN" apply "${COMMON[@]}" --auto-approve

expect_no_changes "${COMMON[@]}"

echo
echo "demo: what the AWS API now says:"
"$PY" - <<'EOF'
import os

import boto3

# Same endpoint, region and dummy credentials as opsctl got (exported above).
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
eks = boto3.client("eks", **kw)
rds = boto3.client("rds", **kw)
cluster = "platform-prod"
for name in sorted(eks.list_nodegroups(clusterName=cluster)["nodegroups"]):
    ng = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
    sc = ng["scalingConfig"]
    print(f"  nodegroup {cluster}/{name}: desired {sc['desiredSize']} "
          f"(min {sc['minSize']}, max {sc['maxSize']}), status {ng['status']}")
snaps = rds.describe_db_snapshots(DBInstanceIdentifier="platform-postgres-prod")["DBSnapshots"]
for s in snaps:
    print(f"  snapshot {s['DBSnapshotIdentifier']}: {s['Status']} "
          f"({s.get('SnapshotType', '?')}, of {s['DBInstanceIdentifier']})")
if not snaps:
    print("  no snapshots of platform-postgres-prod")
EOF

# 1b. examples/eks-upgrade on the same platform: the control plane one minor version up
#     (1.28 -> 1.29), then every nodegroup by for_each over eks_nodegroups. The test server
#     (scripts/moto_ext) holds the cluster UPDATING for 3 s, so the waiter has something to
#     wait for.
curl -sS --fail -X POST -d '{"service":"eks","kind":"cluster","id":"platform-prod","hold":{"UPDATING":3}}' \
    "http://127.0.0.1:$PORT/_opsctl/behaviour" >/dev/null
EKS_STATE=$OPSCTL_CACHE/demo-state-eks
rm -rf -- "$EKS_STATE"
E=(--chdir examples/eks-upgrade --state-dir "$EKS_STATE" --var version=1.29)
run "$BIN" plan "${E[@]}"
run "$BIN" apply "${E[@]}" --auto-approve
expect_no_changes "${E[@]}"

echo
echo "demo: Kubernetes: start a local API server and seed a small cluster"
bash scripts/kube.sh stop "$KUBE_DIR" >/dev/null 2>&1 || true
rm -rf -- "$KUBE_DIR"
mkdir -p "$KUBE_DIR"
bash scripts/kube.sh start "$KUBE_DIR" >/dev/null
"$PY" scripts/seed_cluster.py seed --kubeconfig "$KUBE_DIR/kubeconfig"
"$PY" scripts/seed_cluster.py kubelet --kubeconfig "$KUBE_DIR/kubeconfig" 2>"$KUBE_DIR/kubelet.log" &
KUBELET_PID=$!

K8S_EXAMPLE=examples/node-maintenance
K8S_STATE=$OPSCTL_CACHE/demo-state-k8s
rm -rf -- "$K8S_STATE"
K8S=(--chdir "$K8S_EXAMPLE" --state-dir "$K8S_STATE" --var "kubeconfig=$KUBE_DIR/kubeconfig" --var node=node-b)
run "$BIN" plan "${K8S[@]}"
run "$BIN" apply "${K8S[@]}" --auto-approve

echo
echo "demo: what the Kubernetes API now says:"
"$PY" - "$KUBE_DIR/kubeconfig" <<'EOF'
import sys
import time

from kubernetes import client, config

api = config.new_client_from_config(config_file=sys.argv[1])
core = client.CoreV1Api(api)
# The evicted pod's replacement lands on the uncordoned node; give the played kubelet a moment.
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    d = client.AppsV1Api(api).read_namespaced_deployment("web", "apps")
    if (d.status.ready_replicas or 0) == 3:
        break
    time.sleep(0.3)
for n in core.list_node().items:
    state = "SchedulingDisabled" if n.spec.unschedulable else "schedulable"
    print(f"  node {n.metadata.name}: {state}")
for p in core.list_namespaced_pod("apps").items:
    print(f"  pod apps/{p.metadata.name}: {p.status.phase} on {p.spec.node_name or '(pending)'}")
EOF

echo
echo "demo: Vault: start an OpenBao dev server with a broken tfc-policy in namespace admin"
bash scripts/vault.sh stop "$VAULT_DIR" >/dev/null 2>&1 || true
rm -rf -- "$VAULT_DIR"
mkdir -p "$VAULT_DIR"
bash scripts/vault.sh start "$VAULT_DIR" >/dev/null
# shellcheck disable=SC1091
source "$VAULT_DIR/env"
export VAULT_ADDR VAULT_TOKEN
"$PY" - <<'EOF'
import os

import requests

addr, token = os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"]
def call(method, path, body, namespace=None):
    headers = {"X-Vault-Token": token}
    if namespace:
        headers["X-Vault-Namespace"] = namespace
    r = requests.request(method, f"{addr}/v1/{path}", json=body, headers=headers, timeout=10)
    r.raise_for_status()
call("POST", "sys/namespaces/admin", {})
# The broken state seed 000's runbook restores from: a policy scoped to one path.
call("PUT", "sys/policy/tfc-policy",
     {"policy": 'path "secret/*" {\n  capabilities = ["read"]\n}\n'}, namespace="admin")
print("seed: namespace admin, tfc-policy scoped to secret/* (read)")
EOF

VAULT_STATE=$OPSCTL_CACHE/demo-state-vault
rm -rf -- "$VAULT_STATE"
V=(--chdir examples/vault-tfc-policy-restore --state-dir "$VAULT_STATE")
run "$BIN" plan "${V[@]}"
run "$BIN" apply "${V[@]}" --auto-approve
expect_no_changes "${V[@]}"
echo "demo: done (state in $STATE, $EKS_STATE, $K8S_STATE and $VAULT_STATE)"
