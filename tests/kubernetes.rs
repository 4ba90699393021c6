//! End-to-end tests of the `kubernetes` provider against a real kube-apiserver (1.20, started
//! once for this file through `scripts/kube.sh`, `$OPSCTL_KUBE_SH`): `kubernetes_cordon`,
//! `kubernetes_uncordon`, `kubernetes_scale`, and a permission error. Each test uses its own
//! node names and namespace; the tests play the kubelet over the API (Node objects, pod status).

mod kube_support;
mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, PostParams};
use kube_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_and_uncordon_plan_apply_and_then_have_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_node(&c, "cordon-1").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_cordon\" \"c\" {\n  node = \"cordon-1\"\n}\n",
    );

    let rv = node(&c, "cordon-1").await.metadata.resource_version;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("cordon_plan", p.stdout);
        work
    })
    .await;
    let n = node(&c, "cordon-1").await;
    assert_eq!(n.metadata.resource_version, rv, "plan wrote to the node");
    assert!(!unschedulable(&n));

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    assert!(unschedulable(&node(&c, "cordon-1").await));
    let rv = node(&c, "cordon-1").await.metadata.resource_version;
    let work = blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
        work
    })
    .await;
    assert_eq!(node(&c, "cordon-1").await.metadata.resource_version, rv);

    write_steps(
        &work,
        &s.kubeconfig(),
        "step \"kubernetes_uncordon\" \"u\" {\n  node = \"cordon-1\"\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("uncordon_plan", p.stdout);
        apply(&work);
        work
    })
    .await;
    assert!(!unschedulable(&node(&c, "cordon-1").await));
    let rv = node(&c, "cordon-1").await.metadata.resource_version;
    blocking(move || {
        plan(&work, 0);
    })
    .await;
    assert_eq!(node(&c, "cordon-1").await.metadata.resource_version, rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_plans_applies_waits_and_then_has_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "scale-down").await;
    create_deployment(&c, "scale-down", "web", 3).await;
    eventually("3 pods of web", || async {
        deployment(&c, "scale-down", "web")
            .await
            .status
            .and_then(|s| s.replicas)
            == Some(3)
    })
    .await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"scale-down\"\n  name      = \"web\"\n  replicas  = 0\n}\n",
    );
    let rv = deployment(&c, "scale-down", "web")
        .await
        .metadata
        .resource_version;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("scale_down_plan", p.stdout);
        work
    })
    .await;
    assert_eq!(
        deployment(&c, "scale-down", "web")
            .await
            .metadata
            .resource_version,
        rv,
        "plan wrote to the deployment"
    );

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "scale-down", "web").await;
    assert_eq!(d.spec.unwrap().replicas, Some(0));
    // With wait, apply returned only once no replica was left.
    assert_eq!(d.status.and_then(|s| s.replicas).unwrap_or(0), 0);
    let rv = deployment(&c, "scale-down", "web")
        .await
        .metadata
        .resource_version;
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
        deployment(&c, "scale-down", "web")
            .await
            .metadata
            .resource_version,
        rv
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_waits_until_the_pods_are_ready() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "scale-up").await;
    create_deployment(&c, "scale-up", "api", 0).await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"api\" {\n  kind      = \"Deployment\"\n  namespace = \"scale-up\"\n  name      = \"api\"\n  replicas  = 2\n  timeout   = \"90s\"\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        assert!(p.stdout.contains("      ~ replicas: 0 -> 2\n"), "{p}");
        work
    })
    .await;
    let kubelet = kubelet(c.clone(), "scale-up");
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    kubelet.abort();
    let d = deployment(&c, "scale-up", "api").await;
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    assert_eq!(
        d.status.and_then(|s| s.ready_replicas),
        Some(2),
        "apply returned before the pods were ready"
    );
    blocking(move || {
        plan(&work, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_without_wait_sets_the_replicas_through_the_scale_subresource() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "scale-nowait").await;
    let mut spec = template("worker");
    spec["replicas"] = json!(1);
    let rs: ReplicaSet =
        serde_json::from_value(json!({ "metadata": { "name": "worker" }, "spec": spec })).unwrap();
    let api = Api::<ReplicaSet>::namespaced(c.clone(), "scale-nowait");
    api.create(&PostParams::default(), &rs)
        .await
        .expect("create replicaset");
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"worker\" {\n  kind      = \"ReplicaSet\"\n  namespace = \"scale-nowait\"\n  name      = \"worker\"\n  replicas  = 4\n  wait      = false\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("scale_nowait_plan", p.stdout);
        apply(&work);
        work
    })
    .await;
    let rs = api.get("worker").await.expect("get replicaset");
    assert_eq!(rs.spec.unwrap().replicas, Some(4));
    blocking(move || {
        plan(&work, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_read_names_the_step_the_target_and_what_the_server_said() {
    let s = server();
    let c = client().await;
    create_node(&c, "forbidden-1").await;
    let work = workdir(
        &s.viewer(),
        "step \"kubernetes_cordon\" \"c\" {\n  node = \"forbidden-1\"\n}\n",
    );
    let p = blocking(move || opsctl_run(&work, &["plan"])).await;
    p.expect_code(1);
    let text = format!("{}{}", p.stdout, p.stderr);
    assert!(text.contains("step.kubernetes_cordon.c"), "{p}");
    assert!(text.contains("k8s/opsctl-test/v1/Node/forbidden-1"), "{p}");
    assert!(text.contains("get node `forbidden-1`"), "{p}");
    assert!(text.contains("403 Forbidden"), "{p}");
    assert!(
        text.contains("cannot get resource \"nodes\" in API group \"\" at the cluster scope"),
        "{p}"
    );
    assert!(!unschedulable(&node(&c, "forbidden-1").await));
}
