#!/usr/bin/env python3
"""Seeds the demo's local Kubernetes API server with a small cluster, and plays its kubelets.

The API server started by scripts/kube.sh has no kubelet: nothing registers nodes, runs pods
or finishes their deletion. This script plays those parts over the real API, with the official
`kubernetes` Python client (PodDisruptionBudget through the dynamic client, so that it is
created at whichever `policy` version the server serves: v1beta1 on 1.20, v1 on current ones).

  seed_cluster.py seed    --kubeconfig F   nodes node-a/b/c (Ready, with capacity), namespace
                                           `apps` with Deployment `web` (3 replicas) behind PDB
                                           `web` (minAvailable 2); waits until the 3 pods run
  seed_cluster.py kubelet --kubeconfig F   until killed, every 0.3 s: pods bound to a node
                                           become Running and Ready; pods being deleted are
                                           removed (grace period 0), as a kubelet would
"""

import argparse
import sys
import time

from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

NODES = ["node-a", "node-b", "node-c"]
NAMESPACE = "apps"
APP = "web"


def api_client(kubeconfig):
    return config.new_client_from_config(config_file=kubeconfig)


def ready_status():
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "played by scripts/seed_cluster.py",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
    }


def create_or_keep(create, what):
    try:
        create()
        print(f"seed: created {what}")
    except ApiException as e:
        if e.status != 409:
            raise
        print(f"seed: {what} exists")


def seed(kubeconfig):
    api = api_client(kubeconfig)
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    for name in NODES:
        create_or_keep(
            lambda: core.create_node(
                {
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/hostname": name, "pool": "general"},
                    }
                }
            ),
            f"node {name}",
        )
        core.patch_node_status(name, {"status": ready_status()})
        # The API server's TaintNodesByCondition admission taints a new node `not-ready`; the
        # node lifecycle controller (not run here: no kubelet heartbeats) would lift it.
        core.patch_node(name, {"spec": {"taints": []}})
    create_or_keep(
        lambda: core.create_namespace({"metadata": {"name": NAMESPACE}}),
        f"namespace {NAMESPACE}",
    )
    labels = {"app": APP}
    deployment = {
        "metadata": {"name": APP, "labels": labels},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # One pod a node, so that a drain of one node evicts one pod.
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "labelSelector": {"matchLabels": labels},
                                    "topologyKey": "kubernetes.io/hostname",
                                }
                            ]
                        }
                    },
                    "containers": [
                        {
                            "name": APP,
                            "image": "registry.example.com/web:1.4.2",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }
    create_or_keep(
        lambda: apps.create_namespaced_deployment(NAMESPACE, deployment),
        f"deployment {NAMESPACE}/{APP}",
    )
    pdbs = dynamic.DynamicClient(api).resources.get(
        api_version=None, group="policy", kind="PodDisruptionBudget"
    )
    create_or_keep(
        lambda: pdbs.create(
            namespace=NAMESPACE,
            body={
                "apiVersion": pdbs.group_version,
                "kind": "PodDisruptionBudget",
                "metadata": {"name": APP},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": labels}},
            },
        ),
        f"poddisruptionbudget {NAMESPACE}/{APP} ({pdbs.group_version})",
    )
    deadline = time.monotonic() + 60
    while True:
        play_kubelet_once(core)
        d = apps.read_namespaced_deployment(APP, NAMESPACE)
        if (d.status.ready_replicas or 0) == 3:
            break
        if time.monotonic() > deadline:
            sys.exit("seed_cluster.py: deployment apps/web did not get 3 ready pods in 60 s")
        time.sleep(0.3)
    for p in core.list_namespaced_pod(NAMESPACE).items:
        print(f"seed: pod {NAMESPACE}/{p.metadata.name} on {p.spec.node_name}")


def play_kubelet_once(core):
    ready = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
            ],
        }
    }
    for p in core.list_pod_for_all_namespaces().items:
        name, ns = p.metadata.name, p.metadata.namespace
        try:
            if p.metadata.deletion_timestamp is not None:
                core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            elif p.spec.node_name and p.status.phase != "Running":
                core.patch_namespaced_pod_status(name, ns, ready)
        except ApiException as e:
            if e.status not in (404, 409):
                raise


def kubelet(kubeconfig):
    core = client.CoreV1Api(api_client(kubeconfig))
    while True:
        try:
            play_kubelet_once(core)
        except Exception as e:  # keep playing through a transient error
            print(f"kubelet: {e}", file=sys.stderr)
        time.sleep(0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["seed", "kubelet"])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    if args.command == "seed":
        seed(args.kubeconfig)
    else:
        kubelet(args.kubeconfig)


if __name__ == "__main__":
    main()
