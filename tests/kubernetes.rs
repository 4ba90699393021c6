//! End-to-end tests of the `kubernetes` provider against a real kube-apiserver (1.20, started
//! once for this file through `scripts/kube.sh`, `$OPSCTL_KUBE_SH`): `kubernetes_cordon`,
//! `kubernetes_uncordon`, `kubernetes_scale`, and a permission error. Each test uses its own
//! node names and namespace; the tests play the kubelet over the API (Node objects, pod status).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use support::{opsctl, run, Output, Workdir};

/// The server shared by every test of this file.
struct KubeServer {
    dir: PathBuf,
}

static SERVER: OnceLock<KubeServer> = OnceLock::new();

extern "C" fn stop_server() {
    if let Some(s) = SERVER.get() {
        if let Some(sh) = std::env::var_os("OPSCTL_KUBE_SH") {
            let _ = Command::new("bash")
                .arg(sh)
                .arg("stop")
                .arg(&s.dir)
                .output();
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

/// Starts the server on first use (and stops it and removes its directory when the test
/// process exits).
fn server() -> &'static KubeServer {
    SERVER.get_or_init(|| {
        let sh = match std::env::var_os("OPSCTL_KUBE_SH") {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => panic!(
                "OPSCTL_KUBE_SH is not set: run the tests through scripts/test.sh, which installs the Kubernetes server (scripts/kube.sh install) and points at scripts/kube.sh"
            ),
        };
        // A start can fail on a loaded machine (a port taken between probing and binding, a
        // component slow to come up): try a second time in a fresh directory.
        let mut failures = Vec::new();
        let dir = loop {
            let dir = tempfile::Builder::new()
                .prefix("opsctl-kube-")
                .tempdir()
                .expect("create a temp dir for the Kubernetes server")
                .keep();
            let out = Command::new("bash")
                .arg(&sh)
                .arg("start")
                .arg(&dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", sh.display()));
            if out.status.success() {
                break dir;
            }
            let _ = Command::new("bash").arg(&sh).arg("stop").arg(&dir).output();
            failures.push(format!(
                "{} start {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                sh.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            assert!(
                failures.len() < 2,
                "cannot start the Kubernetes API server (run `bash scripts/kube.sh install` first):\n{}",
                failures.join("\n")
            );
        };
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(stop_server);
        }
        KubeServer { dir }
    })
}

impl KubeServer {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    fn viewer(&self) -> PathBuf {
        self.dir.join("kubeconfig-viewer")
    }
}

/// An admin client of the shared server.
async fn client() -> kube::Client {
    let config = Kubeconfig::read_from(server().kubeconfig()).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Runs `opsctl ARGS --state-dir <work>/state`.
fn opsctl_run(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args).arg("--state-dir").arg(work.state_dir());
    run(&mut cmd)
}

/// `opsctl plan --detailed-exitcode` with the exit code it must give (0: nothing to do, 2: changes).
fn plan(work: &Workdir, code: i32) -> Output {
    let out = opsctl_run(work, &["plan", "--detailed-exitcode"]);
    out.expect_code(code);
    out
}

fn apply(work: &Workdir) -> Output {
    let out = opsctl_run(work, &["apply", "--auto-approve"]);
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
    out
}

/// A workdir whose `main.hcl` is a `provider "kubernetes"` block for `kubeconfig` plus `steps`.
fn workdir(kubeconfig: &Path, steps: &str) -> Workdir {
    let work = Workdir::new();
    write_steps(&work, kubeconfig, steps);
    work
}

fn write_steps(work: &Workdir, kubeconfig: &Path, steps: &str) {
    work.write(
        "main.hcl",
        &format!(
            "provider \"kubernetes\" {{\n  config_path = \"{}\"\n}}\n\n{steps}",
            kubeconfig.display()
        ),
    );
}

async fn create_node(c: &kube::Client, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "opsctl-test": "true" } },
    }))
    .unwrap();
    Api::<Node>::all(c.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
}

async fn node(c: &kube::Client, name: &str) -> Node {
    Api::<Node>::all(c.clone())
        .get(name)
        .await
        .expect("get node")
}

fn unschedulable(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

async fn create_namespace(c: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// A pod template no node matches (pods stay unscheduled, so deleting them is immediate).
fn template(app: &str) -> serde_json::Value {
    json!({
        "selector": { "matchLabels": { "app": app } },
        "template": {
            "metadata": { "labels": { "app": app } },
            "spec": {
                "nodeSelector": { "opsctl-test/none": "none" },
                "containers": [{ "name": "c", "image": "example.invalid/app:1" }],
            },
        },
    })
}

async fn create_deployment(c: &kube::Client, ns: &str, name: &str, replicas: i32) {
    let mut spec = template(name);
    spec["replicas"] = json!(replicas);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap();
    Api::<Deployment>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

async fn deployment(c: &kube::Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(c.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
}

/// Waits (up to 60 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `f` (an opsctl run) on a blocking thread while the runtime keeps serving.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

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

/// Plays the kubelet for namespace `ns`: marks every pod Running and Ready, every 0.3 s.
fn kubelet(c: kube::Client, ns: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(c, ns);
        let ready = json!({ "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Ready", "status": "True" },
                { "type": "ContainersReady", "status": "True" },
            ],
        }});
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list {
                    let is_ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if !is_ready {
                        if let Some(name) = p.metadata.name.as_deref() {
                            let _ = pods
                                .patch_status(name, &PatchParams::default(), &Patch::Merge(&ready))
                                .await;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
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
