//! Shared by the Kubernetes test files: one real kube-apiserver per test process (started through
//! `scripts/kube.sh`, `$OPSCTL_KUBE_SH`, stopped at exit), admin and viewer clients, opsctl runs
//! against it, and the actors a cluster without kubelets lacks (tests play the kubelet over the
//! API: Node objects, pod status).
//!
//! Use it as `mod support; mod kube_support;` and `use kube_support::*;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::support::{opsctl, run, Output, Workdir};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

/// The server shared by every test of this process.
pub struct KubeServer {
    pub dir: PathBuf,
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
pub fn server() -> &'static KubeServer {
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
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn viewer(&self) -> PathBuf {
        self.dir.join("kubeconfig-viewer")
    }
}

/// An admin client of the shared server.
pub async fn client() -> kube::Client {
    let config = Kubeconfig::read_from(server().kubeconfig()).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Runs `opsctl ARGS --state-dir <work>/state`.
pub fn opsctl_run(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args).arg("--state-dir").arg(work.state_dir());
    run(&mut cmd)
}

/// `opsctl plan --detailed-exitcode` with the exit code it must give (0: nothing to do, 2: changes).
pub fn plan(work: &Workdir, code: i32) -> Output {
    let out = opsctl_run(work, &["plan", "--detailed-exitcode"]);
    out.expect_code(code);
    out
}

pub fn apply(work: &Workdir) -> Output {
    let out = opsctl_run(work, &["apply", "--auto-approve"]);
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
    out
}

/// A workdir whose `main.hcl` is a `provider "kubernetes"` block for `kubeconfig` plus `steps`.
pub fn workdir(kubeconfig: &Path, steps: &str) -> Workdir {
    let work = Workdir::new();
    write_steps(&work, kubeconfig, steps);
    work
}

pub fn write_steps(work: &Workdir, kubeconfig: &Path, steps: &str) {
    work.write(
        "main.hcl",
        &format!(
            "provider \"kubernetes\" {{\n  config_path = \"{}\"\n}}\n\n{steps}",
            kubeconfig.display()
        ),
    );
}

pub async fn create_node(c: &kube::Client, name: &str) {
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

pub async fn node(c: &kube::Client, name: &str) -> Node {
    Api::<Node>::all(c.clone())
        .get(name)
        .await
        .expect("get node")
}

pub fn unschedulable(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

pub async fn create_namespace(c: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// A pod template no node matches (pods stay unscheduled, so deleting them is immediate).
pub fn template(app: &str) -> serde_json::Value {
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

pub async fn create_deployment(c: &kube::Client, ns: &str, name: &str, replicas: i32) {
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

pub async fn deployment(c: &kube::Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(c.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
}

/// Waits (up to 60 s) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
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
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

/// Plays the kubelet for namespace `ns`: marks every pod Running and Ready, every 0.3 s.
pub fn kubelet(c: kube::Client, ns: &'static str) -> tokio::task::JoinHandle<()> {
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

// --- rollout helpers (tests/kubernetes_rollout.rs) -------------------------------------------

/// Creates Deployment `ns/name` with `spec` as given.
pub async fn create_deployment_spec(
    c: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) {
    let d: Deployment =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    Api::<Deployment>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

/// The image of a pod's first container.
pub fn pod_image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Plays the kubelet for namespace `ns` like [`kubelet`], but marks Running and Ready only the
/// pods whose first container's image is not `never_ready` (those stay unready for ever).
pub fn kubelet_except_image(
    c: kube::Client,
    ns: &'static str,
    never_ready: &'static str,
) -> tokio::task::JoinHandle<()> {
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
                    if !is_ready && pod_image(&p) != never_ready {
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

/// Waits until Deployment `ns/name` has completed its rollout (`kubectl rollout status`).
pub async fn rolled_out(c: &kube::Client, ns: &str, name: &str) {
    eventually(&format!("the rollout of {ns}/{name}"), || async {
        let d = deployment(c, ns, name).await;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let gen = d.metadata.generation.unwrap_or(0);
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation.unwrap_or(0) >= gen
                && s.updated_replicas.unwrap_or(0) == want
                && s.replicas.unwrap_or(0) == want
                && s.available_replicas.unwrap_or(0) == want
        })
    })
    .await;
}

/// The image of the first container of Deployment `ns/name`'s pod template.
pub async fn deployment_image(c: &kube::Client, ns: &str, name: &str) -> String {
    deployment(c, ns, name)
        .await
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .unwrap_or_default()
}

/// The pod template annotations of Deployment `ns/name`.
pub async fn template_annotations(
    c: &kube::Client,
    ns: &str,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    deployment(c, ns, name)
        .await
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default()
}

/// The number of ReplicaSets in namespace `ns`.
pub async fn replica_set_count(c: &kube::Client, ns: &str) -> usize {
    Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list replicasets")
        .items
        .len()
}
