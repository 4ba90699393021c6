//! End-to-end tests of `kubernetes_drain` against a real kube-apiserver (1.20, started once for
//! this file through `scripts/kube.sh`, `$OPSCTL_KUBE_SH`), and of the node-maintenance example.
//! The tests play the kubelet over the API: Ready nodes the scheduler places pods on, pods
//! marked Running/Ready, and the end of graceful deletions (no kubelet finishes them here).
//! Each test uses its own namespace, node names and node pool label.

mod kube_support;
mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube_support::*;
use serde_json::json;
use support::repo_root;

/// Pod and ReplicaSet names carry random suffixes: snapshots show them as `[hash]`/`[id]`.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"-[a-z0-9]{8,10}-[a-z0-9]{5}\b", "-[hash]-[id]"),
        (r"-[a-z0-9]{8,10}`", "-[hash]`"),
    ]
}

fn drain_step(node: &str, extra: &str) -> String {
    format!("step \"kubernetes_drain\" \"d\" {{\n  node = \"{node}\"\n{extra}}}\n")
}

async fn wait_ready_on(c: &kube::Client, node: &str, app: &str, n: usize) {
    eventually(&format!("{n} ready pods of {app} on {node}"), || async {
        pods_on(c, node)
            .await
            .iter()
            .filter(|p| pod_ready(p) && app_of(p) == app)
            .count()
            == n
    })
    .await;
}

fn app_of(p: &Pod) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app"))
        .cloned()
        .unwrap_or_default()
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The `evicted` output of the last `step_finished` of the drain step in the journals.
fn evicted_in_journal(work: &Workdir) -> Vec<String> {
    let finished: Vec<serde_json::Value> = journal_records(work)
        .into_iter()
        .filter(|r| r["type"] == "step_finished" && r["step"] == "step.kubernetes_drain.d")
        .collect();
    let last = finished.last().expect("a step_finished of the drain");
    last["outputs"]["evicted"]
        .as_array()
        .expect("evicted list")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_within_the_pdb_waits_for_replacements_and_then_has_nothing_to_do() {
    const NS: &str = "drain-pdb";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = Arc::new(AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize.clone());
    // Two pods on node a, then one on node b (a cordoned meanwhile): 3 replicas over 2 nodes.
    create_ready_node(&c, "drain-pdb-a", &[("opsctl-drain", "pdb")]).await;
    create_pool_deployment(&c, NS, "web", 2, "pdb", json!([])).await;
    wait_ready_on(&c, "drain-pdb-a", "web", 2).await;
    create_ready_node(&c, "drain-pdb-b", &[("opsctl-drain", "pdb")]).await;
    set_unschedulable(&c, "drain-pdb-a", true).await;
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), NS)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({ "spec": { "replicas": 3 } })),
        )
        .await
        .expect("scale web");
    wait_ready_on(&c, "drain-pdb-b", "web", 1).await;
    set_unschedulable(&c, "drain-pdb-a", false).await;
    create_pdb(&c, NS, "web", "web", 2).await;
    eventually("the PDB to allow 1 disruption", || async {
        pdb_allowed(&c, NS, "web").await == Some(1)
    })
    .await;

    let before: Vec<Pod> = pods_on(&c, "drain-pdb-a").await;
    assert_eq!(before.len(), 2);
    let node_rv = node(&c, "drain-pdb-a").await.metadata.resource_version;
    let mut before_keys: Vec<String> = before.iter().map(key).collect();
    before_keys.sort();
    let pod_rvs: Vec<_> = before
        .iter()
        .map(|p| p.metadata.resource_version.clone())
        .collect();
    let work = workdir(
        &s.kubeconfig(),
        &drain_step("drain-pdb-a", "  timeout = \"180s\"\n"),
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!("drain_pdb_plan", p.stdout);
        });
        assert!(
            p.stdout
                .contains("within PodDisruptionBudget `drain-pdb/web` (disruptionsAllowed: 1)"),
            "plan does not name the PDB: {p}"
        );
        for pod in &before {
            assert!(
                p.stdout.contains(&key(pod)),
                "plan does not name {}: {p}",
                key(pod)
            );
        }
        work
    })
    .await;
    assert_eq!(
        node(&c, "drain-pdb-a").await.metadata.resource_version,
        node_rv,
        "plan wrote to the node"
    );
    let after_plan: Vec<_> = pods_on(&c, "drain-pdb-a")
        .await
        .iter()
        .map(|p| p.metadata.resource_version.clone())
        .collect();
    assert_eq!(after_plan, pod_rvs, "plan wrote to the pods");

    // While apply runs, the budget must hold: never fewer than 2 ready pods.
    let watch = {
        let c = c.clone();
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(c, NS);
            let mut min = usize::MAX;
            loop {
                if let Ok(l) = pods.list(&Default::default()).await {
                    min = min.min(l.items.iter().filter(|p| pod_ready(p)).count());
                }
                if min < 2 {
                    return min;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    assert!(
        !watch.is_finished(),
        "fewer than 2 ready pods during the drain"
    );
    watch.abort();
    let n = node(&c, "drain-pdb-a").await;
    assert!(unschedulable(&n));
    assert!(
        pods_on(&c, "drain-pdb-a").await.is_empty(),
        "pods left on the drained node"
    );
    // The second eviction waited for the first replacement to be Ready (the budget above);
    // the last replacement becomes Ready after apply (drain waits for the evicted pods to be
    // gone, as kubectl does, not for their replacements).
    eventually("3 ready replicas of web", || async {
        deployment(&c, NS, "web")
            .await
            .status
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await;
    let mut evicted = evicted_in_journal(&work);
    evicted.sort();
    assert_eq!(
        evicted, before_keys,
        "apply evicted other pods than planned"
    );

    let rv = node(&c, "drain-pdb-a").await.metadata.resource_version;
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(node(&c, "drain-pdb-a").await.metadata.resource_version, rv);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsatisfiable_pdb_fails_at_the_timeout_and_resume_finishes_without_re_evicting() {
    const NS: &str = "drain-stuck";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = Arc::new(AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize.clone());
    create_ready_node(&c, "drain-stuck-a", &[("opsctl-drain", "stuck")]).await;
    create_pool_deployment(&c, NS, "stuck", 1, "stuck", json!([])).await;
    create_pool_deployment(&c, NS, "free", 1, "stuck", json!([])).await;
    wait_ready_on(&c, "drain-stuck-a", "stuck", 1).await;
    wait_ready_on(&c, "drain-stuck-a", "free", 1).await;
    create_pdb(&c, NS, "stuck", "stuck", 1).await;
    eventually("the PDB to allow no disruption", || async {
        pdb_allowed(&c, NS, "stuck").await == Some(0)
    })
    .await;
    let on_node = pods_on(&c, "drain-stuck-a").await;
    let stuck = on_node
        .iter()
        .find(|p| app_of(p) == "stuck")
        .unwrap()
        .clone();
    let free = on_node
        .iter()
        .find(|p| app_of(p) == "free")
        .unwrap()
        .clone();

    let work = workdir(
        &s.kubeconfig(),
        &drain_step("drain-stuck-a", "  timeout = \"20s\"\n"),
    );
    let (stuck_key, free_key) = (key(&stuck), key(&free));
    let work = blocking(move || {
        let p = plan(&work, 2);
        assert!(
            p.stdout.contains(&format!(
                "evicts pod `{stuck_key}` (ReplicaSet `{}`); blocked now by PodDisruptionBudget `drain-stuck/stuck` (disruptionsAllowed: 0)",
                stuck_key.rsplit_once('-').unwrap().0.trim_start_matches("drain-stuck/")
            )),
            "{p}"
        );
        let started = std::time::Instant::now();
        let out = opsctl_run(&work, &["apply", "--auto-approve"]);
        let took = started.elapsed();
        out.expect_code(1);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(text.contains("step.kubernetes_drain.d"), "{out}");
        assert!(text.contains("k8s/opsctl-test/v1/Node/drain-stuck-a"), "{out}");
        assert!(
            text.contains(&format!("pod `{stuck_key}`")),
            "the failure does not name the pod: {out}"
        );
        assert!(
            text.contains("PodDisruptionBudget `drain-stuck/stuck` (disruptionsAllowed: 0)"),
            "the failure does not name the PDB: {out}"
        );
        // The evicted pod is gone: the failure does not name it.
        assert!(!out.stderr.contains(&free_key), "{out}");
        assert!(
            took >= std::time::Duration::from_secs(15) && took < std::time::Duration::from_secs(60),
            "failed after {took:?}, not at the 20s timeout"
        );
        // A plain apply refuses to start over; the journal is resumable.
        let again = opsctl_run(&work, &["apply", "--auto-approve"]);
        assert_ne!(again.code, 0, "{again}");
        assert!(format!("{}{}", again.stdout, again.stderr).contains("--resume"), "{again}");
        work
    })
    .await;
    // The free pod was evicted and is gone; the stuck one is still there; the node is cordoned.
    let now = pods_on(&c, "drain-stuck-a").await;
    assert!(
        now.iter().all(|p| p.metadata.uid != free.metadata.uid),
        "the unblocked pod was not evicted"
    );
    assert!(now.iter().any(|p| p.metadata.uid == stuck.metadata.uid));
    assert!(unschedulable(&node(&c, "drain-stuck-a").await));

    // Free the budget, then resume.
    let (pdbs, _) = pdb_api(&c, NS).await;
    pdbs.delete("stuck", &Default::default())
        .await
        .expect("delete pdb");
    let work = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        out.expect_success();
        work
    })
    .await;
    let evicted = evicted_in_journal(&work);
    assert_eq!(
        evicted,
        vec![key(&stuck)],
        "resume evicted something else than the blocked pod"
    );
    assert!(pods_on(&c, "drain-stuck-a").await.is_empty());
    blocking(move || {
        plan(&work, 0);
    })
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_unmanaged_emptydir_and_daemonset_pods_as_kubectl_does() {
    const NS: &str = "drain-refuse";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = Arc::new(AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize.clone());
    create_ready_node(&c, "drain-refuse-a", &[("opsctl-drain", "refuse")]).await;
    // A pod without a controller, bound to the node directly.
    let bare: Pod = serde_json::from_value(json!({
        "metadata": { "name": "bare", "labels": { "app": "bare" } },
        "spec": {
            "nodeName": "drain-refuse-a",
            "containers": [{ "name": "c", "image": "example.invalid/app:1" }],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), NS)
        .create(&PostParams::default(), &bare)
        .await
        .expect("create pod");
    create_pool_deployment(
        &c,
        NS,
        "scratch",
        1,
        "refuse",
        json!([{ "name": "tmp", "emptyDir": {} }]),
    )
    .await;
    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": {
                    "nodeSelector": { "opsctl-drain": "refuse" },
                    "containers": [{ "name": "c", "image": "example.invalid/agent:1" }],
                },
            },
        },
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(c.clone(), NS)
        .create(&PostParams::default(), &ds)
        .await
        .expect("create daemonset");
    wait_ready_on(&c, "drain-refuse-a", "scratch", 1).await;
    wait_ready_on(&c, "drain-refuse-a", "agent", 1).await;
    wait_ready_on(&c, "drain-refuse-a", "bare", 1).await;
    let agent = pods_on(&c, "drain-refuse-a")
        .await
        .into_iter()
        .find(|p| app_of(p) == "agent")
        .unwrap();
    let scratch = pods_on(&c, "drain-refuse-a")
        .await
        .into_iter()
        .find(|p| app_of(p) == "scratch")
        .unwrap();
    let (agent_key, scratch_key) = (key(&agent), key(&scratch));
    let node_rv = node(&c, "drain-refuse-a").await.metadata.resource_version;

    // Without options: every kind of refusal, with kubectl's wording and the pods.
    let work = workdir(&s.kubeconfig(), &drain_step("drain-refuse-a", ""));
    let kc = s.kubeconfig();
    let work = blocking(move || {
        let p = opsctl_run(&work, &["plan"]);
        p.expect_code(1);
        let text = format!("{}{}", p.stdout, p.stderr);
        assert!(text.contains("step.kubernetes_drain.d"), "{p}");
        assert!(
            text.contains(
                "cannot delete Pods that declare no controller (use `force = true` to override): drain-refuse/bare"
            ),
            "{p}"
        );
        assert!(
            text.contains(&format!(
                "cannot delete Pods with local storage (use `delete_emptydir_data = true` to override): {scratch_key}"
            )),
            "{p}"
        );
        assert!(
            text.contains(&format!(
                "cannot delete DaemonSet-managed Pods (use `ignore_daemonsets = true` to ignore): {agent_key}"
            )),
            "{p}"
        );
        // The DaemonSet and emptyDir pods allowed, the unmanaged one still refused.
        write_steps(
            &work,
            &kc,
            &drain_step(
                "drain-refuse-a",
                "  ignore_daemonsets    = true\n  delete_emptydir_data = true\n",
            ),
        );
        let p = opsctl_run(&work, &["plan"]);
        p.expect_code(1);
        let text = format!("{}{}", p.stdout, p.stderr);
        assert!(text.contains("cannot delete Pods that declare no controller"), "{p}");
        assert!(!text.contains("local storage (use"), "{p}");
        assert!(!text.contains("DaemonSet-managed Pods (use"), "{p}");
        // With `force`: plan lists what it evicts and what it leaves.
        write_steps(
            &work,
            &kc,
            &drain_step(
                "drain-refuse-a",
                "  ignore_daemonsets    = true\n  delete_emptydir_data = true\n  force                = true\n  grace_period         = 5\n  timeout              = \"120s\"\n",
            ),
        );
        let p = plan(&work, 2);
        let mut f = filters();
        f.push((r"agent-[a-z0-9]{5}\b", "agent-[id]"));
        insta::with_settings!({ filters => f }, {
            insta::assert_snapshot!("drain_refuse_forced_plan", p.stdout);
        });
        work
    })
    .await;
    assert_eq!(
        node(&c, "drain-refuse-a").await.metadata.resource_version,
        node_rv,
        "plan wrote to the node"
    );
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    // Only the DaemonSet pod is left; a second plan has nothing to do.
    let left: Vec<String> = pods_on(&c, "drain-refuse-a")
        .await
        .iter()
        .map(key)
        .collect();
    assert_eq!(left, vec![key(&agent)]);
    blocking(move || {
        plan(&work, 0);
    })
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_without_pods_cordons_it_then_is_a_no_op() {
    let s = server();
    let c = client().await;
    create_ready_node(&c, "drain-empty-a", &[("opsctl-drain", "empty")]).await;
    let work = workdir(&s.kubeconfig(), &drain_step("drain-empty-a", ""));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("drain_empty_plan", p.stdout);
        apply(&work);
        work
    })
    .await;
    assert!(unschedulable(&node(&c, "drain-empty-a").await));
    let rv = node(&c, "drain-empty-a").await.metadata.resource_version;
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(
        node(&c, "drain-empty-a").await.metadata.resource_version,
        rv
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_maintenance_example_plans_and_applies() {
    const NS: &str = "drain-example";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = Arc::new(AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize.clone());
    create_ready_node(&c, "drain-example-a", &[("opsctl-drain", "example")]).await;
    create_pool_deployment(
        &c,
        NS,
        "api",
        2,
        "example",
        json!([{ "name": "cache", "emptyDir": {} }]),
    )
    .await;
    wait_ready_on(&c, "drain-example-a", "api", 2).await;
    create_ready_node(&c, "drain-example-b", &[("opsctl-drain", "example")]).await;
    let drained: Vec<String> = pods_on(&c, "drain-example-a")
        .await
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    assert_eq!(drained.len(), 2);

    let work = Workdir::new();
    let example = std::fs::read_to_string(repo_root().join("examples/node-maintenance/main.hcl"))
        .expect("read the example");
    work.write("main.hcl", &example);
    let vars = format!(
        "kubeconfig = \"{}\"\nnode       = \"drain-example-a\"\n",
        s.kubeconfig().display()
    );
    work.write("vars.tfvars", &vars);
    let args = |cmd: &'static str| -> Vec<String> {
        vec![cmd.into(), "--var-file".into(), "vars.tfvars".into()]
    };
    let work = blocking(move || {
        let mut a = args("plan");
        a.push("--detailed-exitcode".into());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &a);
        p.expect_code(2);
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!("node_maintenance_plan", p.stdout);
        });
        let mut a = args("apply");
        a.push("--auto-approve".into());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = opsctl_run(&work, &a);
        out.expect_success();
        work
    })
    .await;
    // The node's pods were evicted (replaced: 2 ready again, on node b or — once the node is
    // back in service after the maintenance window — on node a), and the node is schedulable.
    let pods = Api::<Pod>::namespaced(c.clone(), NS);
    for p in pods.list(&ListParams::default()).await.expect("list pods") {
        assert!(
            !drained.contains(p.metadata.uid.as_ref().expect("uid")),
            "pod {} was not evicted",
            key(&p)
        );
    }
    eventually("2 ready replacement pods of api", || async {
        pods.list(&ListParams::default())
            .await
            .expect("list pods")
            .iter()
            .filter(|p| pod_ready(p) && app_of(p) == "api")
            .count()
            == 2
    })
    .await;
    assert!(!unschedulable(&node(&c, "drain-example-a").await));
    drop(work);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_selector_limits_the_drain_and_disable_eviction_deletes_past_the_pdb() {
    const NS: &str = "drain-select";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = Arc::new(AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize.clone());
    create_ready_node(&c, "drain-select-a", &[("opsctl-drain", "select")]).await;
    create_pool_deployment(&c, NS, "batch", 1, "select", json!([])).await;
    create_pool_deployment(&c, NS, "db", 1, "select", json!([])).await;
    wait_ready_on(&c, "drain-select-a", "batch", 1).await;
    wait_ready_on(&c, "drain-select-a", "db", 1).await;
    // A budget that never allows an eviction of the batch pod.
    create_pdb(&c, NS, "batch", "batch", 1).await;
    eventually("the PDB to allow no disruption", || async {
        pdb_allowed(&c, NS, "batch").await == Some(0)
    })
    .await;
    let db = pods_on(&c, "drain-select-a")
        .await
        .into_iter()
        .find(|p| app_of(p) == "db")
        .unwrap();

    let work = workdir(
        &s.kubeconfig(),
        &drain_step(
            "drain-select-a",
            "  pod_selector     = \"app in (batch, web)\"\n  disable_eviction = true\n  timeout          = \"120s\"\n",
        ),
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!("drain_select_plan", p.stdout);
        });
        apply(&work);
        work
    })
    .await;
    // The batch pod was deleted despite its budget; the db pod, not selected, stays.
    let left: Vec<Pod> = pods_on(&c, "drain-select-a").await;
    assert_eq!(
        left.len(),
        1,
        "{:?}",
        left.iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(left[0].metadata.uid, db.metadata.uid);
    assert!(unschedulable(&node(&c, "drain-select-a").await));
    blocking(move || {
        plan(&work, 0);
    })
    .await;
    kubelet.abort();
}
