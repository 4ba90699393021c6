//! End-to-end tests of `kubernetes_rollout_restart`, `kubernetes_rollout_undo` and
//! `kubernetes_set_image` against a real kube-apiserver 1.20 with its controller manager (so
//! ReplicaSets and revisions are the Deployment controller's), started once for this file through
//! `scripts/kube.sh`. The tests play the kubelet (pods marked Running and Ready; unscheduled
//! Ready pods count as available for their ReplicaSet). Each test uses its own namespace.
//!
//! Also: the predicted state shared with `kubernetes_scale` (3 -> 0 -> 3 in one procedure), a
//! restart interrupted after it acted (resume marks it done and does not restart again) or
//! whose journaled `restartedAt` is not live (resume applies it), and the
//! `examples/incident-scale-restart` procedure.

mod kube_support;
mod support;

use std::path::Path;

use kube_support::*;
use serde_json::{json, Value};

const APP1: &str = "example.invalid/app:1";
const APP2: &str = "example.invalid/app:2";
const BAD: &str = "example.invalid/app:bad";

/// A Deployment spec of `replicas` pods of `image` (container `c`), no node matches them.
fn spec(app: &str, replicas: i32, image: &str) -> Value {
    let mut s = template(app);
    s["replicas"] = json!(replicas);
    s["template"]["spec"]["containers"][0]["image"] = json!(image);
    s
}

async fn rv(c: &kube::Client, ns: &str, name: &str) -> Option<String> {
    deployment(c, ns, name).await.metadata.resource_version
}

async fn generation(c: &kube::Client, ns: &str, name: &str) -> i64 {
    deployment(c, ns, name)
        .await
        .metadata
        .generation
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_plans_applies_waits_for_the_rollout_and_then_has_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "set-image").await;
    let kubelet = kubelet(c.clone(), "set-image");
    create_deployment_spec(&c, "set-image", "web", spec("web", 2, APP1)).await;
    rolled_out(&c, "set-image", "web").await;
    let work = workdir(
        &s.kubeconfig(),
        &format!("step \"kubernetes_set_image\" \"web\" {{\n  kind      = \"Deployment\"\n  namespace = \"set-image\"\n  name      = \"web\"\n  images    = {{ c = \"{APP2}\" }}\n  timeout   = \"120s\"\n}}\n"),
    );
    let before = rv(&c, "set-image", "web").await;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("set_image_plan", p.stdout);
        work
    })
    .await;
    assert_eq!(rv(&c, "set-image", "web").await, before, "plan wrote");

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "set-image", "web").await;
    assert_eq!(deployment_image(&c, "set-image", "web").await, APP2);
    // Apply returned once the rollout was complete (kubectl rollout status).
    let st = d.status.unwrap();
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(2), Some(2), Some(2)),
        "apply returned before the rollout was complete"
    );
    assert!(st.observed_generation >= d.metadata.generation);

    let before = rv(&c, "set-image", "web").await;
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(rv(&c, "set-image", "web").await, before, "plan wrote");
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_of_an_unknown_container_is_a_plan_error() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "set-image-bad").await;
    create_deployment_spec(&c, "set-image-bad", "web", spec("web", 0, APP1)).await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_set_image\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"set-image-bad\"\n  name      = \"web\"\n  images    = { api = \"x\" }\n}\n",
    );
    let p = blocking(move || opsctl_run(&work, &["plan"])).await;
    p.expect_code(1);
    assert!(
        p.stderr
            .contains("Deployment `web` has no container `api` (it has: `c`)"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_plans_applies_waits_and_then_has_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "restart").await;
    let kubelet = kubelet(c.clone(), "restart");
    create_deployment_spec(&c, "restart", "web", spec("web", 2, APP1)).await;
    rolled_out(&c, "restart", "web").await;
    let rs_before = replica_set_count(&c, "restart").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_rollout_restart\" \"web\" {\n  kind         = \"Deployment\"\n  namespace    = \"restart\"\n  name         = \"web\"\n  restarted_at = \"2026-11-22T23:00:00Z\"\n  timeout      = \"120s\"\n}\n",
    );
    let before = rv(&c, "restart", "web").await;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("restart_plan", p.stdout);
        work
    })
    .await;
    assert_eq!(rv(&c, "restart", "web").await, before, "plan wrote");

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    assert_eq!(
        template_annotations(&c, "restart", "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt")
            .map(String::as_str),
        Some("2026-11-22T23:00:00Z")
    );
    // A new ReplicaSet rolled out, completely, before apply returned.
    assert_eq!(replica_set_count(&c, "restart").await, rs_before + 1);
    let st = deployment(&c, "restart", "web").await.status.unwrap();
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(2), Some(2), Some(2))
    );

    let before = rv(&c, "restart", "web").await;
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
    assert_eq!(rv(&c, "restart", "web").await, before, "plan wrote");

    // Without `restarted_at`, the value is chosen when the step starts.
    write_steps(
        &work,
        &s.kubeconfig(),
        "step \"kubernetes_rollout_restart\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"restart\"\n  name      = \"web\"\n  timeout   = \"120s\"\n}\n",
    );
    blocking(move || {
        let p = plan(&work, 2);
        assert!(
            p.stdout.contains(
                "~ template.annotations[\"kubectl.kubernetes.io/restartedAt\"]: \"2026-11-22T23:00:00Z\" -> (known after apply)"
            ),
            "{p}"
        );
        apply(&work);
    })
    .await;
    let now = template_annotations(&c, "restart", "web").await;
    let at = now.get("kubectl.kubernetes.io/restartedAt").unwrap();
    assert!(
        at.starts_with("20") && at.ends_with('Z') && at != "2026-11-22T23:00:00Z",
        "{at}"
    );
    kubelet.abort();
}

/// "must be true" 3: a set_image whose pods never become Ready fails at the progress deadline
/// with the condition's reason; rollout_undo then restores the previous image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_fails_at_the_progress_deadline_and_rollout_undo_restores_the_previous_image() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "deadline").await;
    let kubelet = kubelet_except_image(c.clone(), "deadline", BAD);
    let mut sp = spec("web", 2, APP1);
    sp["progressDeadlineSeconds"] = json!(10);
    create_deployment_spec(&c, "deadline", "web", sp).await;
    rolled_out(&c, "deadline", "web").await;

    let work = workdir(
        &s.kubeconfig(),
        &format!("step \"kubernetes_set_image\" \"web\" {{\n  kind      = \"Deployment\"\n  namespace = \"deadline\"\n  name      = \"web\"\n  images    = {{ c = \"{BAD}\" }}\n  timeout   = \"150s\"\n}}\n"),
    );
    let out = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("set_image_bad_plan", p.stdout);
        opsctl_run(&work, &["apply", "--auto-approve"])
    })
    .await;
    assert_ne!(out.code, 0, "{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("step.kubernetes_set_image.web"), "{out}");
    assert!(
        text.contains(
            "the rollout of Deployment `deadline/web` failed: ProgressDeadlineExceeded: ReplicaSet"
        ),
        "{out}"
    );
    assert!(text.contains("has timed out progressing"), "{out}");
    assert_eq!(deployment_image(&c, "deadline", "web").await, BAD);

    // A separate procedure rolls back.
    let undo = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_rollout_undo\" \"web\" {\n  namespace = \"deadline\"\n  name      = \"web\"\n  timeout   = \"120s\"\n}\n",
    );
    let before = rv(&c, "deadline", "web").await;
    let undo = blocking(move || {
        let p = plan(&undo, 2);
        insta::assert_snapshot!("undo_plan", p.stdout);
        undo
    })
    .await;
    assert_eq!(rv(&c, "deadline", "web").await, before, "plan wrote");
    let undo = blocking(move || {
        apply(&undo);
        undo
    })
    .await;
    assert_eq!(deployment_image(&c, "deadline", "web").await, APP1);
    let st = deployment(&c, "deadline", "web").await.status.unwrap();
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(2), Some(2), Some(2))
    );
    let before = rv(&c, "deadline", "web").await;
    blocking(move || {
        let p = plan(&undo, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(rv(&c, "deadline", "web").await, before, "plan wrote");
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_to_a_revision_and_without_a_previous_one() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "undo-to").await;
    let kubelet = kubelet(c.clone(), "undo-to");
    create_deployment_spec(&c, "undo-to", "web", spec("web", 1, APP1)).await;
    rolled_out(&c, "undo-to", "web").await;

    // One revision only: nothing to go back to.
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_rollout_undo\" \"web\" {\n  namespace = \"undo-to\"\n  name      = \"web\"\n}\n",
    );
    let (p, work) = blocking(move || (opsctl_run(&work, &["plan"]), work)).await;
    p.expect_code(1);
    assert!(
        p.stderr.contains(
            "Deployment `web` has no previous revision to roll back to (its only revision is 1)"
        ),
        "{p}"
    );

    // set_image twice in one procedure, then back to revision 1: each plans against what the
    // earlier steps predict.
    write_steps(
        &work,
        &s.kubeconfig(),
        &format!(
            "step \"kubernetes_set_image\" \"two\" {{\n  kind      = \"Deployment\"\n  namespace = \"undo-to\"\n  name      = \"web\"\n  images    = {{ c = \"{APP2}\" }}\n  timeout   = \"120s\"\n}}\n\n\
             step \"kubernetes_set_image\" \"three\" {{\n  kind       = \"Deployment\"\n  namespace  = \"undo-to\"\n  name       = \"web\"\n  images     = {{ c = \"example.invalid/app:3\" }}\n  timeout    = \"120s\"\n  depends_on = [step.kubernetes_set_image.two]\n}}\n\n\
             step \"kubernetes_rollout_undo\" \"web\" {{\n  namespace   = \"undo-to\"\n  name        = \"web\"\n  to_revision = 1\n  timeout     = \"120s\"\n  depends_on  = [step.kubernetes_set_image.three]\n}}\n"
        ),
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("undo_to_revision_plan", p.stdout);
        apply(&work);
        work
    })
    .await;
    assert_eq!(deployment_image(&c, "undo-to", "web").await, APP1);
    assert_eq!(
        deployment(&c, "undo-to", "web")
            .await
            .metadata
            .annotations
            .unwrap_or_default()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("4")
    );
    let _ = work;
    kubelet.abort();
}

/// scale 3 -> 0, set_image, then scale 0 -> 3 on one Deployment: each step plans against what
/// the earlier ones predict (one state shape for both step types).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_set_image_and_scale_up_plan_against_the_predicted_state() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "predict").await;
    let kubelet = kubelet(c.clone(), "predict");
    create_deployment_spec(&c, "predict", "web", spec("web", 3, APP1)).await;
    rolled_out(&c, "predict", "web").await;
    let work = workdir(
        &s.kubeconfig(),
        &format!(
            "step \"kubernetes_scale\" \"down\" {{\n  kind      = \"Deployment\"\n  namespace = \"predict\"\n  name      = \"web\"\n  replicas  = 0\n  timeout   = \"120s\"\n}}\n\n\
             step \"kubernetes_set_image\" \"web\" {{\n  kind       = \"Deployment\"\n  namespace  = \"predict\"\n  name       = \"web\"\n  images     = {{ c = \"{APP2}\" }}\n  timeout    = \"120s\"\n  depends_on = [step.kubernetes_scale.down]\n}}\n\n\
             step \"kubernetes_scale\" \"up\" {{\n  kind       = \"Deployment\"\n  namespace  = \"predict\"\n  name       = \"web\"\n  replicas   = 3\n  timeout    = \"120s\"\n  depends_on = [step.kubernetes_set_image.web]\n}}\n"
        ),
    );
    let before = rv(&c, "predict", "web").await;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("scale_set_image_scale_plan", p.stdout);
        let down = p.stdout.find("~ replicas: 3 -> 0").expect("3 -> 0");
        let up = p.stdout.find("~ replicas: 0 -> 3").expect("0 -> 3");
        assert!(down < up, "{p}");
        work
    })
    .await;
    assert_eq!(rv(&c, "predict", "web").await, before, "plan wrote");
    blocking(move || {
        apply(&work);
    })
    .await;
    let d = deployment(&c, "predict", "web").await;
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    assert_eq!(d.status.unwrap().available_replicas, Some(3));
    assert_eq!(deployment_image(&c, "predict", "web").await, APP2);
    kubelet.abort();
}

// --- an interrupted restart, resumed -------------------------------------------------------

/// The only journal of `work`.
fn the_journal(work: &Workdir) -> std::path::PathBuf {
    let dir = work.state_dir().join("journal");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

/// The records of a journal (`<crc32 8 hex> <json>` lines).
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(&l[9..]).unwrap())
        .collect()
}

/// Writes `records` as journal lines with their checksums.
fn write_records(path: &Path, records: &[Value]) {
    let mut text = String::new();
    for r in records {
        let json = serde_json::to_string(r).unwrap();
        text.push_str(&format!(
            "{:08x} {json}\n",
            crc32fast::hash(json.as_bytes())
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Restarts Deployment `ns/web` (1 replica, the kubelet running) with opsctl killed just
/// before it journals the step finished, i.e. after the restart rolled out. Returns the workdir
/// and the `restartedAt` the journal recorded before the side effect.
async fn restart_killed_after_acting(c: &kube::Client, ns: &'static str) -> (Workdir, String) {
    let s = server();
    create_namespace(c, ns).await;
    create_deployment_spec(c, ns, "web", spec("web", 1, APP1)).await;
    rolled_out(c, ns, "web").await;
    let work = workdir(
        &s.kubeconfig(),
        &format!("step \"kubernetes_rollout_restart\" \"web\" {{\n  kind      = \"Deployment\"\n  namespace = \"{ns}\"\n  name      = \"web\"\n  timeout   = \"120s\"\n}}\n"),
    );
    // Journal lines: 1 run_started, 2 step_started, 3 step_finished (killed before it).
    let (out, work) = blocking(move || {
        let mut cmd = opsctl(&work, None);
        cmd.args(["apply", "--auto-approve", "--state-dir"])
            .arg(work.state_dir())
            .env("OPSCTL_FAULT_JOURNAL_KILL_AT", "3");
        (run(&mut cmd), work)
    })
    .await;
    assert_eq!(out.code, -1, "expected opsctl to be killed\n{out}");
    let recs = records(&the_journal(&work));
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["type"], "step_started");
    let value = recs[1]["prepared"]["restarted_at"]
        .as_str()
        .expect("step_started records the restartedAt chosen before acting")
        .to_string();
    assert_eq!(
        template_annotations(c, ns, "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt"),
        Some(&value),
        "the restart acted before the kill"
    );
    (work, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_interrupted_after_it_acted_is_marked_done_on_resume_and_not_repeated() {
    let c = client().await;
    let kubelet = kubelet(c.clone(), "resume-done");
    let (work, value) = restart_killed_after_acting(&c, "resume-done").await;
    rolled_out(&c, "resume-done", "web").await;
    let gen = generation(&c, "resume-done", "web").await;
    let rss = replica_set_count(&c, "resume-done").await;

    let out = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    out.expect_success();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("step.kubernetes_rollout_restart.web: marked finished (re-read: its effect is already there)"),
        "{out}"
    );
    assert_eq!(
        template_annotations(&c, "resume-done", "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt"),
        Some(&value)
    );
    assert_eq!(
        generation(&c, "resume-done", "web").await,
        gen,
        "restarted again"
    );
    assert_eq!(replica_set_count(&c, "resume-done").await, rss);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_journaled_restarted_at_is_not_live_is_applied_on_resume() {
    let c = client().await;
    let kubelet = kubelet(c.clone(), "resume-redo");
    let (work, value) = restart_killed_after_acting(&c, "resume-redo").await;
    rolled_out(&c, "resume-redo", "web").await;
    // The journal of an attempt killed before its patch: its value never reached the object.
    let path = the_journal(&work);
    let mut recs = records(&path);
    let chosen = "2026-01-02T03:04:05Z";
    assert_ne!(value, chosen);
    recs[1]["prepared"] = json!({ "restarted_at": chosen });
    write_records(&path, &recs);
    let gen = generation(&c, "resume-redo", "web").await;

    let out = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        (out, work)
    })
    .await;
    let (out, work) = out;
    out.expect_success();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("step.kubernetes_rollout_restart.web: will be applied again (re-read: its effect is not there; applying again)"),
        "{out}"
    );
    // Applied with the value the interrupted attempt journaled, once.
    assert_eq!(
        template_annotations(&c, "resume-redo", "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt")
            .map(String::as_str),
        Some(chosen)
    );
    assert_eq!(generation(&c, "resume-redo", "web").await, gen + 1);
    let recs = records(&the_journal(&work));
    let started: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "step_started")
        .collect();
    assert_eq!(started.len(), 2, "{recs:?}");
    assert_eq!(started[1]["prepared"]["restarted_at"], chosen);
    kubelet.abort();
}

/// Killed while it waits for its rollout (the patch is live, the new pod never Ready yet):
/// resume applies it again with the journaled value, which patches nothing (no second
/// rollout) and waits until the rollout completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_killed_while_it_waits_is_resumed_with_its_journaled_value_and_not_restarted_twice(
) {
    let s = server();
    let c = client().await;
    create_namespace(&c, "resume-wait").await;
    let first = kubelet(c.clone(), "resume-wait");
    create_deployment_spec(&c, "resume-wait", "web", spec("web", 1, APP1)).await;
    rolled_out(&c, "resume-wait", "web").await;
    first.abort();
    let _ = first.await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_rollout_restart\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"resume-wait\"\n  name      = \"web\"\n  timeout   = \"120s\"\n}\n",
    );
    let mut cmd = opsctl(&work, None);
    cmd.args(["apply", "--auto-approve", "--state-dir"])
        .arg(work.state_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start opsctl");
    eventually("the restart to patch the pod template", || async {
        template_annotations(&c, "resume-wait", "web")
            .await
            .contains_key("kubectl.kubernetes.io/restartedAt")
    })
    .await;
    // Still waiting: the new pod is not Ready (nobody plays the kubelet now).
    assert!(child.try_wait().unwrap().is_none(), "apply returned early");
    child.kill().expect("SIGKILL opsctl");
    child.wait().expect("reap opsctl");
    let recs = records(&the_journal(&work));
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "step_started", "{recs:?}");
    let value = last["prepared"]["restarted_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        template_annotations(&c, "resume-wait", "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt"),
        Some(&value)
    );
    let gen = generation(&c, "resume-wait", "web").await;
    let rss = replica_set_count(&c, "resume-wait").await;

    // Resume; the kubelet starts only once resume has decided (so the rollout is still
    // incomplete when the step is re-checked).
    let mut cmd = opsctl(&work, None);
    cmd.args(["apply", "--resume", "--auto-approve", "--state-dir"])
        .arg(work.state_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start opsctl");
    let stdout = child.stdout.take().unwrap();
    let (decided, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if line.starts_with("step.kubernetes_rollout_restart.web: ") {
                let _ = decided.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let verdict = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
        .await
        .expect("resume decides the in-doubt step")
        .unwrap_or_default();
    let kubelet = kubelet(c.clone(), "resume-wait");
    let (status, text) = blocking(move || (child.wait().unwrap(), reader.join().unwrap())).await;
    assert!(status.success(), "{text}");
    assert!(
        verdict.starts_with("step.kubernetes_rollout_restart.web: will be applied again"),
        "{verdict}\n{text}"
    );
    assert!(text.contains("Apply complete!"), "{text}");
    assert_eq!(
        template_annotations(&c, "resume-wait", "web")
            .await
            .get("kubectl.kubernetes.io/restartedAt"),
        Some(&value)
    );
    assert_eq!(
        generation(&c, "resume-wait", "web").await,
        gen,
        "restarted twice"
    );
    assert_eq!(replica_set_count(&c, "resume-wait").await, rss);
    // The resumed step waited for the rollout to complete.
    let st = deployment(&c, "resume-wait", "web").await.status.unwrap();
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(1), Some(1), Some(1))
    );
    kubelet.abort();
}

// --- examples/incident-scale-restart ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_scale_restart_example_plans_and_applies() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "incident").await;
    let kubelet = kubelet(c.clone(), "incident");
    create_deployment_spec(
        &c,
        "incident",
        "myapp-backend",
        spec("myapp-backend", 2, APP1),
    )
    .await;
    rolled_out(&c, "incident", "myapp-backend").await;
    let work = Workdir::new();
    let example = support::repo_root().join("examples/incident-scale-restart/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let kubeconfig = s.kubeconfig().display().to_string();
    let vars = move |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain([
                "--var".to_string(),
                format!("kubeconfig={kubeconfig}"),
                "--var".to_string(),
                "namespace=incident".to_string(),
                "--var".to_string(),
                "replicas=4".to_string(),
            ])
            .collect()
    };
    let before = rv(&c, "incident", "myapp-backend").await;
    let work = blocking(move || {
        let args = vars(&["plan", "--detailed-exitcode"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &args);
        p.expect_code(2);
        let text = p
            .stdout
            .replace(&s.kubeconfig().display().to_string(), "KUBECONFIG");
        insta::assert_snapshot!("incident_plan", text);
        let args = vars(&["apply", "--auto-approve"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = opsctl_run(&work, &args);
        out.expect_success();
        work
    })
    .await;
    assert_ne!(rv(&c, "incident", "myapp-backend").await, before);
    let d = deployment(&c, "incident", "myapp-backend").await;
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    let st = d.status.unwrap();
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(4), Some(4), Some(4))
    );
    assert!(template_annotations(&c, "incident", "myapp-backend")
        .await
        .contains_key("kubectl.kubernetes.io/restartedAt"));
    let _ = work;
    kubelet.abort();
}

// --- one read per target, the deepest ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_before_an_undo_of_one_deployment_plans_both_against_its_revisions() {
    // `kubernetes_scale` alone reads only the Deployment; `kubernetes_rollout_undo` also reads
    // its ReplicaSets (the revisions). Plan reads the target once, with the deeper read, so the
    // undo after the scale still sees revision 1 to go back to.
    let s = server();
    let c = client().await;
    create_namespace(&c, "scale-undo").await;
    let kubelet = kubelet(c.clone(), "scale-undo");
    create_deployment_spec(&c, "scale-undo", "web", spec("web", 1, APP1)).await;
    rolled_out(&c, "scale-undo", "web").await;
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "c", "image": APP2 },
    ] } } } });
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), "scale-undo")
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .expect("set the image to a second revision");
    rolled_out(&c, "scale-undo", "web").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"scale-undo\"\n  name      = \"web\"\n  replicas  = 2\n}\n\n\
         step \"kubernetes_rollout_undo\" \"web\" {\n  namespace  = \"scale-undo\"\n  name       = \"web\"\n  depends_on = [step.kubernetes_scale.web]\n}\n",
    );
    blocking(move || {
        let p = plan(&work, 2);
        assert!(p.stdout.contains("~ replicas: 1 -> 2"), "{p}");
        assert!(
            p.stdout.contains(&format!(
                "~ containers[\"c\"].image: \"{APP2}\" -> \"{APP1}\""
            )),
            "{p}"
        );
        assert!(
            p.stdout.contains("back to revision 1 (from revision 2)"),
            "{p}"
        );
    })
    .await;
    kubelet.abort();
}
