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
        let dir = crate::support::start_with_script(
            &sh,
            "opsctl-kube-",
            "cannot start the Kubernetes API server (run `bash scripts/kube.sh install` first)",
        );
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
    // No pod runs an image named "", so none is left unready.
    kubelet_except_image(c, ns, "")
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

// --- kubernetes_drain (tests/kubernetes_drain.rs) -------------------------------------------

/// A Node the scheduler places pods on: Ready, with allocatable cpu, memory and pods, and the
/// given labels.
pub async fn create_ready_node(c: &kube::Client, name: &str, labels: &[(&str, &str)]) {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": labels },
    }))
    .unwrap();
    let api = Api::<Node>::all(c.clone());
    api.create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let resources = json!({ "cpu": "8", "memory": "16Gi", "pods": "110" });
    let status = json!({ "status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "played by the test",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark node ready");
    // The NodeTaint admission plugin taints a new node not-ready; the node lifecycle
    // controller (not run here) would remove the taint once the node is Ready.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": { "taints": null } })),
    )
    .await
    .expect("remove the not-ready taint");
}

/// Waits until namespace `ns` has its `default` ServiceAccount with a token (before that, the
/// ServiceAccount admission plugin refuses pods created directly).
pub async fn wait_default_service_account(c: &kube::Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.clone(), ns);
    eventually("the default service account's token", || async {
        api.get_opt("default")
            .await
            .ok()
            .flatten()
            .and_then(|sa| sa.secrets)
            .is_some_and(|s| !s.is_empty())
    })
    .await;
}

/// Sets a Node's `spec.unschedulable` directly (test setup, not through opsctl).
pub async fn set_unschedulable(c: &kube::Client, name: &str, value: bool) {
    Api::<Node>::all(c.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "unschedulable": value } })),
        )
        .await
        .expect("patch node");
}

/// The pods bound to `node`.
pub async fn pods_on(c: &kube::Client, node: &str) -> Vec<Pod> {
    Api::<Pod>::all(c.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .expect("list pods")
        .items
}

/// Whether a pod is Ready and not being deleted.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet of a drain test for namespace `ns`: every 0.3 s marks the pods bound to a
/// node Running and Ready and, when `finalize` holds, finishes the graceful deletion of pods
/// being deleted (deletes them with grace 0, as a kubelet does once the containers stopped).
pub fn drain_kubelet(
    c: kube::Client,
    ns: &'static str,
    finalize: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
                    let Some(name) = p.metadata.name.as_deref() else {
                        continue;
                    };
                    if p.metadata.deletion_timestamp.is_some() {
                        if finalize.load(std::sync::atomic::Ordering::SeqCst) {
                            let _ = pods
                                .delete(name, &kube::api::DeleteParams::default().grace_period(0))
                                .await;
                        }
                        continue;
                    }
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    if bound && !pod_ready(&p) {
                        let _ = pods
                            .patch_status(name, &PatchParams::default(), &Patch::Merge(&ready))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// An API for PodDisruptionBudgets at the version the server serves (discovery).
pub async fn pdb_api(c: &kube::Client, ns: &str) -> (Api<kube::api::DynamicObject>, String) {
    let group = kube::discovery::group(c, "policy")
        .await
        .expect("discover policy");
    let (ar, _) = group
        .recommended_kind("PodDisruptionBudget")
        .expect("the server serves PodDisruptionBudget");
    let version = ar.api_version.clone();
    (Api::namespaced_with(c.clone(), ns, &ar), version)
}

/// Creates PodDisruptionBudget `name` (`minAvailable`, pods labelled `app=APP`).
pub async fn create_pdb(c: &kube::Client, ns: &str, name: &str, app: &str, min_available: i32) {
    let (api, version) = pdb_api(c, ns).await;
    let pdb: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": version, "kind": "PodDisruptionBudget",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "minAvailable": min_available, "selector": { "matchLabels": { "app": app } } },
    }))
    .unwrap();
    api.create(&PostParams::default(), &pdb)
        .await
        .expect("create pdb");
}

/// `status.disruptionsAllowed` of a PodDisruptionBudget (None before the controller set it).
pub async fn pdb_allowed(c: &kube::Client, ns: &str, name: &str) -> Option<i64> {
    let (api, _) = pdb_api(c, ns).await;
    let o = api.get(name).await.expect("get pdb");
    let status = o.data.get("status")?;
    if status.get("observedGeneration")?.as_i64()? < o.metadata.generation? {
        return None;
    }
    status.get("disruptionsAllowed")?.as_i64()
}

/// A Deployment `name` (pods labelled `app=NAME`) with `replicas` pods placed by the scheduler
/// on nodes labelled `opsctl-drain=POOL`; `volumes` for the pod spec (e.g. an emptyDir).
pub async fn create_pool_deployment(
    c: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
    pool: &str,
    volumes: serde_json::Value,
) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "nodeSelector": { "opsctl-drain": pool },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{ "name": "c", "image": "example.invalid/app:1" }],
                    "volumes": volumes,
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

/// Every record of every journal under `<work>/state/journal/` (the JSON after the checksum).
pub fn journal_records(work: &Workdir) -> Vec<serde_json::Value> {
    let dir = work.state_dir().join("journal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read journal");
        for line in text.lines() {
            if let Some((_, body)) = line.split_once(' ') {
                out.push(serde_json::from_str(body).expect("journal line"));
            }
        }
    }
    out
}

// --- errors and credentials (tests/kubernetes_errors.rs) -------------------------------------

impl KubeServer {
    /// A kubeconfig whose user (`reader`) may get, list and watch everything but write nothing.
    pub fn reader(&self) -> PathBuf {
        self.dir.join("kubeconfig-reader")
    }
    /// The API server's audit log: one JSON line per request of a client other than the
    /// control plane (Metadata level).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
    /// The server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        std::fs::read_to_string(self.dir.join("url"))
            .expect("read the server's url")
            .trim()
            .to_string()
    }
}

/// The audit events of the shared server (ResponseComplete stage) that `pick` selects.
pub fn audit_events(pick: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(server().audit_log()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && pick(e))
        .collect()
}

/// Writes `name` in `work`: a kubeconfig for the shared server (context `opsctl-test`) whose
/// user is `user` (YAML lines indented under `user:`); returns its path.
pub fn kubeconfig_with_user(work: &Workdir, name: &str, server_url: &str, user: &str) -> PathBuf {
    let ca = std::fs::read(server().dir.join("pki/ca.crt")).expect("read the CA");
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    work.write(
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: opsctl-test\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: opsctl-test\n  context:\n    cluster: opsctl-test\n    user: u\n    namespace: default\ncurrent-context: opsctl-test\n"
        ),
    );
    work.path().join(name)
}

/// The `type` of each journal record.
pub fn journal_types(work: &Workdir) -> Vec<String> {
    journal_records(work)
        .iter()
        .map(|r| r["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// An `opsctl apply` (without `--auto-approve`) showing its plan and waiting for approval.
pub struct AwaitingApproval {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl AwaitingApproval {
    /// Starts `opsctl apply ARGS` in `work` and waits (up to 120 s) until it asks for `yes`.
    pub fn start(work: &Workdir, args: &[&str]) -> AwaitingApproval {
        use std::io::Read;
        let mut cmd = opsctl(work, None);
        cmd.arg("apply")
            .args(args)
            .arg("--state-dir")
            .arg(work.state_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn opsctl apply");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pipe = child.stdout.take().expect("stdout");
        let sink = stdout.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let start = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&stdout.lock().unwrap()).to_string();
            if text.contains("Enter a value: ") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("opsctl apply exited ({status}) before asking for approval:\n{text}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "opsctl apply did not ask for approval within 120 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        AwaitingApproval {
            child,
            stdout,
            reader,
        }
    }

    /// Answers `answer` and waits (up to 180 s) for the command to finish.
    pub fn answer(mut self, answer: &str) -> Output {
        use std::io::{Read, Write};
        {
            let mut stdin = self.child.stdin.take().expect("stdin");
            let _ = stdin.write_all(format!("{answer}\n").as_bytes());
        }
        let mut stderr = String::new();
        let mut pipe = self.child.stderr.take().expect("stderr");
        let err_reader = std::thread::spawn(move || {
            let _ = pipe.read_to_string(&mut stderr);
            stderr
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > Duration::from_secs(180) {
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.reader.join().expect("stdout reader");
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap()).to_string();
        Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: err_reader.join().expect("stderr reader"),
        }
    }
}

/// Waits until `resource_version()` (an object's `metadata.resourceVersion`) has stayed the same
/// for 3 s, so that a resource version compared across a plan changes only if the plan wrote:
/// controllers write an object's status several times after a change, and a loaded machine can
/// space those writes more than a second apart.
pub async fn quiet<F, Fut>(what: &str, mut resource_version: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let start = Instant::now();
    let mut last = resource_version().await;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what} kept changing for 90 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = resource_version().await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}
