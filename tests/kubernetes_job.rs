//! End-to-end tests of `kubernetes_wait` and `kubernetes_job` against a real kube-apiserver 1.20
//! with its controller manager (the Deployment and Job controllers are real), started once for
//! this file through `scripts/kube.sh`. There is no kubelet: the tests play it over the API
//! (pods marked Ready, or Succeeded/Failed with a container's termination message through the
//! pod status subresource). Each test uses its own namespace.
//!
//! Wait: a condition met after a delay, a timeout failing with the last observed value, every
//! pod of a selector Ready, a JSONPath-like field, deletion. Job: success (outputs, the result
//! read through the API, a second plan with nothing to do), failure with the pod's termination
//! message, a run killed (SIGKILL) while it waits then resumed without a second Job, and the
//! `examples/smoke-test-job` procedure.

mod kube_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_support::*;
use serde_json::{json, Value};

/// Plays the kubelet for the Job pods (label `job-name`) of namespace `ns`: every pod not yet finished ends with
/// `exit_code` (Succeeded for 0, else Failed) and `message` as its container's termination
/// message, every 0.3 s.
fn job_kubelet(
    c: kube::Client,
    ns: &'static str,
    exit_code: i32,
    message: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(c, ns);
        loop {
            if let Ok(list) = pods.list(&ListParams::default().labels("job-name")).await {
                for p in list {
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
                        continue;
                    }
                    let Some(name) = p.metadata.name.as_deref() else {
                        continue;
                    };
                    let container = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    let status = json!({ "status": {
                        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
                        "containerStatuses": [{
                            "name": container, "ready": false, "restartCount": 0,
                            "image": pod_image(&p), "imageID": "",
                            "state": { "terminated": {
                                "exitCode": exit_code,
                                "reason": if exit_code == 0 { "Completed" } else { "Error" },
                                "message": message,
                            }},
                        }],
                    }});
                    let _ = pods
                        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn jobs(c: &kube::Client, ns: &str) -> Vec<Job> {
    Api::<Job>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
}

/// The status of condition `type_` of Deployment `ns/name`, if set.
async fn deployment_condition(
    c: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<String> {
    deployment(c, ns, name)
        .await
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == type_))
        .map(|c| c.status)
}

/// A namespace with Deployment `web` of `replicas` pods whose controller has reported it
/// unavailable (no kubelet yet).
async fn unavailable_deployment(c: &kube::Client, ns: &str, replicas: i32) {
    create_namespace(c, ns).await;
    create_deployment(c, ns, "web", replicas).await;
    eventually(
        "the Deployment controller to report web unavailable",
        || async {
            deployment_condition(c, ns, "web", "Available")
                .await
                .as_deref()
                == Some("False")
        },
    )
    .await;
}

/// Starts `opsctl apply --auto-approve` in `work`, in the background.
fn spawn_apply(work: &Workdir, args: &[&str]) -> std::process::Child {
    let mut cmd = opsctl(work, None);
    cmd.arg("apply")
        .args(args)
        .args(["--auto-approve", "--state-dir"])
        .arg(work.state_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("start opsctl apply")
}

fn finish(child: std::process::Child) -> Output {
    let out = child.wait_with_output().expect("wait for opsctl");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// --- kubernetes_wait -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_condition_met_after_a_delay_succeeds_and_plan_writes_nothing() {
    let s = server();
    let c = client().await;
    unavailable_deployment(&c, "wait-cond", 1).await;
    quiet("Deployment wait-cond/web", || async {
        deployment(&c, "wait-cond", "web")
            .await
            .metadata
            .resource_version
    })
    .await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_wait\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"wait-cond\"\n  name      = \"web\"\n  condition = \"Available\"\n  timeout   = \"120s\"\n}\n",
    );
    let rv = deployment(&c, "wait-cond", "web")
        .await
        .metadata
        .resource_version;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("wait_condition_plan", p.stdout);
        work
    })
    .await;
    assert_eq!(
        deployment(&c, "wait-cond", "web")
            .await
            .metadata
            .resource_version,
        rv,
        "plan wrote to the Deployment"
    );
    let child = spawn_apply(&work, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployment_condition(&c, "wait-cond", "web", "Available")
            .await
            .as_deref(),
        Some("False"),
        "became available before the kubelet started"
    );
    let kubelet = kubelet(c.clone(), "wait-cond");
    let out = blocking(move || finish(child)).await;
    out.expect_success();
    assert!(out.stdout.contains("Apply complete!"), "{out}");
    assert_eq!(
        deployment_condition(&c, "wait-cond", "web", "Available")
            .await
            .as_deref(),
        Some("True")
    );
    // Holding now, with no step before it changing anything, the wait is a no-op; after a step
    // that changes something it runs all the same (that step may undo the condition).
    let rv = deployment(&c, "wait-cond", "web")
        .await
        .metadata
        .resource_version;
    let kubeconfig = s.kubeconfig();
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
        let after_scale = workdir(
            &kubeconfig,
            "step \"kubernetes_scale\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"wait-cond\"\n  name      = \"web\"\n  replicas  = 2\n}\n\nstep \"kubernetes_wait\" \"web\" {\n  kind       = \"Deployment\"\n  namespace  = \"wait-cond\"\n  name       = \"web\"\n  condition  = \"Available\"\n  depends_on = [step.kubernetes_scale.web]\n}\n",
        );
        let p2 = plan(&after_scale, 2);
        assert!(
            p2.stdout.contains(
                "# runs all the same: it comes after `step.kubernetes_scale.web`, which changes something"
            ) && p2.stdout.contains("Plan: 1 to run, 1 to change, 0 unchanged."),
            "{p2}"
        );
        // Applying again completes at once.
        let started = std::time::Instant::now();
        apply(&work);
        assert!(started.elapsed() < Duration::from_secs(60));
    })
    .await;
    assert_eq!(
        deployment(&c, "wait-cond", "web")
            .await
            .metadata
            .resource_version,
        rv
    );
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_fails_with_the_last_observed_value() {
    let s = server();
    let c = client().await;
    unavailable_deployment(&c, "wait-timeout", 1).await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_wait\" \"web\" {\n  kind      = \"Deployment\"\n  namespace = \"wait-timeout\"\n  name      = \"web\"\n  condition = \"Available\"\n  timeout   = \"10s\"\n}\n",
    );
    let (out, types) = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--auto-approve"]);
        (out, journal_types(&work))
    })
    .await;
    out.expect_code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("waited 10s for Deployment `wait-timeout/web` condition Available=True; last seen: False (reason MinimumReplicasUnavailable: Deployment does not have minimum availability.)"),
        "{out}"
    );
    assert!(all.contains("step.kubernetes_wait.web"), "{out}");
    // Failed, not in doubt: a wait has no side effect.
    assert!(types.iter().any(|t| t == "step_failed"), "{types:?}");
    assert!(!types.iter().any(|t| t == "step_in_doubt"), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_every_pod_of_a_selector_ready() {
    let s = server();
    let c = client().await;
    unavailable_deployment(&c, "wait-pods", 2).await;
    eventually("2 pods of web", || async {
        Api::<Pod>::namespaced(c.clone(), "wait-pods")
            .list(&ListParams::default().labels("app=web"))
            .await
            .map(|l| l.items.len() == 2)
            .unwrap_or(false)
    })
    .await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_wait\" \"pods\" {\n  namespace = \"wait-pods\"\n  selector  = \"app=web\"\n  timeout   = \"120s\"\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("wait_selector_plan", p.stdout);
        work
    })
    .await;
    let child = spawn_apply(&work, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kubelet = kubelet(c.clone(), "wait-pods");
    let out = blocking(move || finish(child)).await;
    out.expect_success();
    let pods = Api::<Pod>::namespaced(c.clone(), "wait-pods")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert!(
        pods.items.iter().all(pod_ready),
        "apply returned before every pod was Ready"
    );
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_field_value_and_for_a_deletion() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "wait-field").await;
    wait_default_service_account(&c, "wait-field").await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "p" },
        "spec": {
            "nodeSelector": { "opsctl-test/none": "none" },
            "containers": [{ "name": "c", "image": "example.invalid/app:1" }],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "wait-field");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "old" }, "data": { "k": "v" } }))
            .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "wait-field");
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_wait\" \"running\" {\n  kind      = \"Pod\"\n  namespace = \"wait-field\"\n  name      = \"p\"\n  field     = \"status.containerStatuses[0].ready\"\n  value     = \"true\"\n  timeout   = \"120s\"\n}\n\n\
         step \"kubernetes_wait\" \"gone\" {\n  kind      = \"ConfigMap\"\n  namespace = \"wait-field\"\n  name      = \"old\"\n  for       = \"deleted\"\n  timeout   = \"120s\"\n}\n",
    );
    // The scheduler marks the pod unschedulable shortly after it is created.
    quiet("Pod wait-field/p", || async {
        pods.get("p").await.unwrap().metadata.resource_version
    })
    .await;
    let rv = pods.get("p").await.unwrap().metadata.resource_version;
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("wait_field_deleted_plan", p.stdout);
        work
    })
    .await;
    assert_eq!(pods.get("p").await.unwrap().metadata.resource_version, rv);
    let child = spawn_apply(&work, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = json!({ "status": { "phase": "Running", "containerStatuses": [{
        "name": "c", "ready": true, "restartCount": 0, "image": "example.invalid/app:1", "imageID": "",
        "state": { "running": {} },
    }]}});
    pods.patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    cms.delete("old", &DeleteParams::default()).await.unwrap();
    let out = blocking(move || finish(child)).await;
    out.expect_success();
    assert!(out.stdout.contains("Apply complete!"), "{out}");
}

// --- kubernetes_job --------------------------------------------------------------------------

const SMOKE: &str = "step \"kubernetes_job\" \"smoke\" {\n  namespace     = \"NS\"\n  name          = \"smoke-tests\"\n  image         = \"example.invalid/smoke:1\"\n  command       = [\"/bin/sh\", \"-c\", \"run-checks --all\"]\n  env           = { TARGET = \"https://api.example.invalid\" }\n  pvc_volumes   = { reports = { claim = \"smoke-reports\", mount_path = \"/reports\" } }\n  backoff_limit = 0\n  timeout       = \"120s\"\n}\n\noutput \"message\" {\n  value = step.kubernetes_job.smoke.message\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion_its_message_is_an_output_and_then_nothing_is_left_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "job-ok").await;
    wait_default_service_account(&c, "job-ok").await;
    let work = workdir(&s.kubeconfig(), &SMOKE.replace("NS", "job-ok"));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("job_plan", p.stdout);
        work
    })
    .await;
    assert!(jobs(&c, "job-ok").await.is_empty(), "plan created a Job");
    let kubelet = job_kubelet(c.clone(), "job-ok", 0, "6 checks passed");
    let (out, work) = blocking(move || (apply(&work).clone(), work)).await;
    assert!(
        out.stdout.contains("message = \"6 checks passed\""),
        "{out}"
    );
    let js = jobs(&c, "job-ok").await;
    assert_eq!(js.len(), 1);
    let j = &js[0];
    assert_eq!(j.status.as_ref().and_then(|s| s.succeeded), Some(1));
    let labels = j.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "opsctl");
    assert_eq!(labels["opsctl.io/attempt"].len(), 10);
    let spec = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "smoke-reports"
    );
    let rv = j.metadata.resource_version.clone();
    let out = blocking(move || plan(&work, 0).clone()).await;
    assert!(
        out.stdout
            .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
        "{out}"
    );
    assert!(
        out.stdout.contains("message = \"6 checks passed\""),
        "{out}"
    );
    assert_eq!(jobs(&c, "job-ok").await[0].metadata.resource_version, rv);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_fails_the_step_with_its_pods_termination_message() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "job-fail").await;
    wait_default_service_account(&c, "job-fail").await;
    let work = workdir(&s.kubeconfig(), &SMOKE.replace("NS", "job-fail"));
    let kubelet = job_kubelet(
        c.clone(),
        "job-fail",
        3,
        "check api: 503 Service Unavailable",
    );
    let out = blocking(move || opsctl_run(&work, &["apply", "--auto-approve"])).await;
    out.expect_code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("`step.kubernetes_job.smoke`"), "{out}");
    assert!(
        all.contains("Job `job-fail/smoke-tests` failed (BackoffLimitExceeded: Job has reached the specified backoff limit; active 0, succeeded 0, failed 1); pod `smoke-tests-"),
        "{out}"
    );
    assert!(
        all.contains("container smoke-tests exited 3 (Error): check api: 503 Service Unavailable"),
        "{out}"
    );
    assert_eq!(jobs(&c, "job-fail").await.len(), 1);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_while_it_waits_is_resumed_without_a_second_job() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "job-resume").await;
    wait_default_service_account(&c, "job-resume").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_job\" \"smoke\" {\n  namespace     = \"job-resume\"\n  generate_name = \"smoke-\"\n  image         = \"example.invalid/smoke:1\"\n  command       = [\"run-checks\"]\n  timeout       = \"120s\"\n}\n",
    );
    let mut child = spawn_apply(&work, &[]);
    eventually("the Job to be created", || async {
        !jobs(&c, "job-resume").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "apply returned early");
    child.kill().expect("SIGKILL opsctl");
    child.wait().expect("reap opsctl");
    let created = jobs(&c, "job-resume").await;
    assert_eq!(created.len(), 1);
    let name = created[0].metadata.name.clone().unwrap();
    let recs = journal_records(&work);
    let started = recs
        .iter()
        .rev()
        .find(|r| r["type"] == "step_started")
        .expect("step_started");
    assert_eq!(
        started["prepared"]["name"],
        Value::from(name.clone()),
        "{recs:?}"
    );

    let kubelet = job_kubelet(c.clone(), "job-resume", 0, "ok");
    let out = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        (out, work)
    })
    .await
    .0;
    out.expect_success();
    assert!(out.stdout.contains("Apply complete!"), "{out}");
    let after = jobs(&c, "job-resume").await;
    assert_eq!(after.len(), 1, "resume created a second Job");
    assert_eq!(after[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(after[0].metadata.uid, created[0].metadata.uid);
    assert_eq!(after[0].status.as_ref().and_then(|s| s.succeeded), Some(1));
    kubelet.abort();
}

// --- examples/smoke-test-job -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_test_job_example_plans_and_applies() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "smoke-tests").await;
    wait_default_service_account(&c, "smoke-tests").await;
    let work = Workdir::new();
    let example = support::repo_root().join("examples/smoke-test-job/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let kubeconfig = s.kubeconfig().display().to_string();
    let vars = move |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .map(|a| a.to_string())
            .chain([
                "--var".to_string(),
                format!("kubeconfig={kubeconfig}"),
                "--var".to_string(),
                "namespace=smoke-tests".to_string(),
            ])
            .collect()
    };
    let kubelet = job_kubelet(c.clone(), "smoke-tests", 0, "smoke tests passed: 6 of 6");
    let out = blocking(move || {
        let args = vars(&["plan", "--detailed-exitcode"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &args);
        p.expect_code(2);
        insta::assert_snapshot!("smoke_test_job_plan", p.stdout);
        let args = vars(&["apply", "--auto-approve"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = opsctl_run(&work, &args);
        out.expect_success();
        out
    })
    .await;
    assert!(out.stdout.contains("smoke tests passed: 6 of 6"), "{out}");
    let js = jobs(&c, "smoke-tests").await;
    assert_eq!(js.len(), 1);
    assert_eq!(js[0].status.as_ref().and_then(|s| s.succeeded), Some(1));
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_delete_after_is_deleted_once_it_succeeded() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "job-delete").await;
    wait_default_service_account(&c, "job-delete").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_job\" \"once\" {\n  namespace     = \"job-delete\"\n  generate_name = \"once-\"\n  image         = \"example.invalid/smoke:1\"\n  delete_after  = true\n  timeout       = \"120s\"\n}\n\noutput \"name\" {\n  value = step.kubernetes_job.once.name\n}\n",
    );
    let kubelet = job_kubelet(c.clone(), "job-delete", 0, "done");
    let out = blocking(move || apply(&work).clone()).await;
    assert!(out.stdout.contains("name = \"once-"), "{out}");
    eventually("the Job to be deleted", || async {
        jobs(&c, "job-delete").await.is_empty()
    })
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_job_to_complete_fails_as_soon_as_the_job_failed() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "wait-job").await;
    wait_default_service_account(&c, "wait-job").await;
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "migrate" },
        "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "m", "image": "example.invalid/migrate:1" }],
        }}},
    }))
    .unwrap();
    Api::<Job>::namespaced(c.clone(), "wait-job")
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_wait\" \"migrate\" {\n  kind      = \"Job\"\n  namespace = \"wait-job\"\n  name      = \"migrate\"\n  condition = \"Complete\"\n  timeout   = \"300s\"\n}\n",
    );
    let kubelet = job_kubelet(c.clone(), "wait-job", 1, "migration 42 failed");
    let started = std::time::Instant::now();
    let out = blocking(move || opsctl_run(&work, &["apply", "--auto-approve"])).await;
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "did not fail fast"
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("Job `wait-job/migrate`: the Job failed: condition Failed=True (reason BackoffLimitExceeded: Job has reached the specified backoff limit)"),
        "{out}"
    );
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_step_and_target_exit_non_zero_and_create_nothing() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "job-errors").await;
    wait_default_service_account(&c, "job-errors").await;
    let cases: Vec<(&str, std::path::PathBuf, String, &str)> = vec![
        (
            "unknown kind",
            s.kubeconfig(),
            "step \"kubernetes_wait\" \"w\" {\n  api_version = \"example.com/v1\"\n  kind        = \"Widget\"\n  namespace   = \"job-errors\"\n  name        = \"w\"\n  condition   = \"Ready\"\n}\n".into(),
            "k8s/opsctl-test/example.com/v1/Widget/job-errors/w#wait: the server does not serve the API group `example.com`",
        ),
        (
            "no image",
            s.kubeconfig(),
            "step \"kubernetes_job\" \"j\" {\n  namespace = \"job-errors\"\n  name      = \"j\"\n}\n".into(),
            "`step.kubernetes_job.j` on `k8s/opsctl-test/batch/v1/Job/job-errors/j`: set `image` (with `command`, `args`, ...) or `template`",
        ),
        (
            "invalid template",
            s.kubeconfig(),
            "step \"kubernetes_job\" \"j\" {\n  namespace = \"job-errors\"\n  name      = \"j\"\n  template  = { spec = { containers = \"x\" } }\n}\n".into(),
            "`template` is not a valid pod template",
        ),
        (
            "403",
            s.reader(),
            "step \"kubernetes_job\" \"j\" {\n  namespace = \"job-errors\"\n  name      = \"j\"\n  image     = \"example.invalid/x:1\"\n}\n".into(),
            "create Job `job-errors/j`: the server answered 403 Forbidden",
        ),
        (
            "404",
            s.kubeconfig(),
            "step \"kubernetes_job\" \"j\" {\n  namespace = \"no-such-namespace\"\n  name      = \"j\"\n  image     = \"example.invalid/x:1\"\n}\n".into(),
            "create Job `no-such-namespace/j`: the server answered 404 NotFound: namespaces \"no-such-namespace\" not found",
        ),
    ];
    for (case, kubeconfig, steps, want) in cases {
        let out = blocking(move || {
            let work = workdir(&kubeconfig, &steps);
            opsctl_run(&work, &["apply", "--auto-approve"])
        })
        .await;
        assert_eq!(out.code, 1, "{case}: {out}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(want), "{case}: {out}");
        assert!(all.contains("step.kubernetes_"), "{case}: {out}");
    }
    assert!(jobs(&c, "job-errors").await.is_empty(), "a Job was created");
}

// --- examples/vault-raft-peers-recovery ------------------------------------------------------

/// Plays the kubelet for the pods of namespace `ns` that no Job owns: marks them Running and
/// Ready, every 0.3 s (Job pods are [`job_kubelet`]'s).
fn workload_kubelet(c: kube::Client, ns: &'static str) -> tokio::task::JoinHandle<()> {
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
            if let Ok(list) = pods.list(&ListParams::default().labels("!job-name")).await {
                for p in list {
                    if !pod_ready(&p) {
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
async fn the_vault_raft_peers_example_plans_and_applies() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let s = server();
    let c = client().await;
    create_namespace(&c, "vault-raft").await;
    wait_default_service_account(&c, "vault-raft").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "vault" },
        "spec": {
            "replicas": 3,
            "serviceName": "vault-internal",
            "selector": { "matchLabels": { "app": "vault" } },
            "template": {
                "metadata": { "labels": { "app": "vault" } },
                "spec": {
                    "nodeSelector": { "opsctl-test/none": "none" },
                    "containers": [{ "name": "vault", "image": "example.invalid/vault:1" }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    }))
    .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(c.clone(), "vault-raft");
    statefulsets
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let workload = workload_kubelet(c.clone(), "vault-raft");
    let jobs_kubelet = job_kubelet(
        c.clone(),
        "vault-raft",
        0,
        "[{\"id\":\"a1b2\",\"address\":\"vault-0.vault-internal:8201\",\"non_voter\":false}]\n",
    );
    eventually("3 ready vault pods", || async {
        statefulsets
            .get("vault")
            .await
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await;
    let work = Workdir::new();
    let example = support::repo_root().join("examples/vault-raft-peers-recovery/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let kubeconfig = s.kubeconfig().display().to_string();
    let vars = move |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .map(|a| a.to_string())
            .chain([
                "--var".to_string(),
                format!("kubeconfig={kubeconfig}"),
                "--var".to_string(),
                "namespace=vault-raft".to_string(),
                "--var".to_string(),
                "node_id=a1b2".to_string(),
            ])
            .collect()
    };
    quiet("StatefulSet vault-raft/vault", || async {
        statefulsets
            .get("vault")
            .await
            .unwrap()
            .metadata
            .resource_version
    })
    .await;
    let rv = statefulsets
        .get("vault")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let work = blocking(move || {
        let args = vars(&["plan", "--detailed-exitcode"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &args);
        p.expect_code(2);
        insta::assert_snapshot!("vault_raft_peers_plan", p.stdout);
        (work, vars)
    })
    .await;
    assert_eq!(
        statefulsets
            .get("vault")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv,
        "plan wrote to the StatefulSet"
    );
    let out = blocking(move || {
        let (work, vars) = work;
        let args = vars(&["apply", "--auto-approve"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = opsctl_run(&work, &args);
        out.expect_success();
        out
    })
    .await;
    assert!(
        out.stdout.contains("vault-0.vault-internal:8201"),
        "the Job's termination message is the output: {out}"
    );
    let st = statefulsets.get("vault").await.unwrap();
    assert_eq!(st.spec.unwrap().replicas, Some(1));
    let p = Api::<Pod>::namespaced(c.clone(), "vault-raft")
        .get("vault-0")
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    // The Job (its PVC volume is in the plan snapshot) was deleted once it succeeded.
    eventually("the Job to be deleted", || async {
        jobs(&c, "vault-raft").await.is_empty()
    })
    .await;
    workload.abort();
    jobs_kubelet.abort();
}
