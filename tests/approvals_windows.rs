//! Approval gates, maintenance windows and the audit log (issue 11), end to end with the real
//! binary and `exec` steps that append their name to `effects.log` (so that counting lines
//! tells which side effects happened, and how often). The clock is set through `OPSCTL_NOW`.

mod kube_support;
mod support;

use serde_json::Value;
use support::{opsctl, run, Output, Workdir};

/// `opsctl ARGS` in `work` with `OPSCTL_NOW` set when given.
fn opsctl_at(work: &Workdir, now: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args);
    if let Some(now) = now {
        cmd.env("OPSCTL_NOW", now);
    }
    run(&mut cmd)
}

/// How many times each step appended its name.
fn effects(work: &Workdir, name: &str) -> usize {
    let path = work.path().join("effects.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == name)
        .count()
}

/// Every journal record (all runs), decoded from the `<crc> <json>` lines.
fn journal(work: &Workdir) -> Vec<Value> {
    let dir = work.state_dir().join("journal");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            if let Some((_, json)) = line.split_once(' ') {
                out.push(serde_json::from_str(json).unwrap());
            }
        }
    }
    out
}

fn runs_json(work: &Workdir) -> Vec<Value> {
    let out = opsctl_at(work, None, &["runs", "list", "--json"]);
    out.expect_success();
    serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn step_of<'a>(record: &'a Value, step: &str) -> &'a Value {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("{step} not in {record:#}"))
}

const GATED: &str = r#"
step "exec" "before" {
  command = "echo before >> effects.log"
}

step "approval" "prod" {
  message    = "Update the production nodegroup?"
  depends_on = [step.exec.before]
}

step "exec" "after" {
  command    = "echo after >> effects.log"
  depends_on = [step.approval.prod]
}
"#;

#[test]
fn an_approval_blocks_in_ci_without_approve_and_the_resumed_run_passes_with_it() {
    let work = Workdir::new();
    work.write("main.hcl", GATED);

    let plan = opsctl_at(&work, None, &["plan"]);
    plan.expect_success();
    assert!(
        plan.stdout
            .contains("approval required: Update the production nodegroup?"),
        "{plan}"
    );

    // No terminal (stdin is /dev/null), no --approve: the gate fails clearly; the step
    // before it ran, the one after did not.
    let first = opsctl_at(&work, None, &["apply", "--auto-approve"]);
    first.expect_code(1);
    assert!(
        first.stderr.contains("approval `prod` is required")
            && first.stderr.contains("--approve prod"),
        "{first}"
    );
    assert_eq!((effects(&work, "before"), effects(&work, "after")), (1, 0));

    // A name that is no gate is refused before anything runs.
    let wrong = opsctl_at(
        &work,
        None,
        &[
            "apply",
            "--resume",
            "--auto-approve",
            "--approve",
            "staging",
        ],
    );
    wrong.expect_code(1);
    assert!(
        wrong
            .stderr
            .contains("the plan has no approval gate `staging` (it has: prod)"),
        "{wrong}"
    );

    // Resumed with --approve: the pending approval is given, `before` is not repeated.
    let second = opsctl_at(
        &work,
        None,
        &["apply", "--resume", "--auto-approve", "--approve", "prod"],
    );
    second.expect_success();
    assert_eq!((effects(&work, "before"), effects(&work, "after")), (1, 1));

    // The approval is journaled with who, when, how and the plan digest.
    let records = journal(&work);
    let approved = records
        .iter()
        .find(|r| r["type"] == "step_finished" && r["step"] == "step.approval.prod")
        .expect("approval finished");
    let outputs = &approved["outputs"];
    assert_eq!(outputs["via"], "--approve", "{approved}");
    assert!(!outputs["approved_by"].as_str().unwrap().is_empty());
    assert!(outputs["approved_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(outputs["plan_digest"].as_str().unwrap().len(), 64);

    // The audit log: one record per invocation, with results, attempts and durations.
    let runs = runs_json(&work);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[1]["status"], "succeeded");
    assert_eq!(runs[0]["run_id"], runs[1]["run_id"]);
    assert_eq!(
        (runs[0]["attempt"].as_u64(), runs[1]["attempt"].as_u64()),
        (Some(1), Some(2))
    );
    let gate0 = step_of(&runs[0], "step.approval.prod");
    assert_eq!(
        (gate0["result"].as_str(), gate0["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert!(gate0["error"].as_str().unwrap().contains("--approve prod"));
    assert_eq!(
        step_of(&runs[0], "step.exec.after")["result"],
        "not_started"
    );
    let before0 = step_of(&runs[0], "step.exec.before");
    assert_eq!(before0["result"], "ran");
    assert!(before0["duration_ms"].as_u64().is_some(), "{before0}");
    let gate1 = step_of(&runs[1], "step.approval.prod");
    assert_eq!(
        (gate1["result"].as_str(), gate1["attempts"].as_u64()),
        (Some("ran"), Some(2))
    );
    assert_eq!(step_of(&runs[1], "step.exec.before")["result"], "skipped");
    assert_eq!(step_of(&runs[1], "step.exec.after")["result"], "ran");
    for r in &runs {
        assert_eq!(r["plan_digest"].as_str().unwrap().len(), 64);
        assert!(!r["who"].as_str().unwrap().is_empty() && !r["host"].as_str().unwrap().is_empty());
    }

    // `runs show` for people, by ID and by run ID.
    let id = runs[1]["id"].as_str().unwrap();
    let show = opsctl_at(&work, None, &["runs", "show", id]);
    show.expect_success();
    assert!(
        show.stdout.contains(&format!("Run {id} (succeeded)")),
        "{show}"
    );
    assert!(
        show.stdout.contains("step.approval.prod  (attempts 2"),
        "{show}"
    );
    let both = opsctl_at(
        &work,
        None,
        &[
            "runs",
            "show",
            runs[0]["run_id"].as_str().unwrap(),
            "--json",
        ],
    );
    both.expect_success();
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&both.stdout)
            .unwrap()
            .len(),
        2
    );
    let list = opsctl_at(&work, None, &["runs", "list"]);
    assert!(
        list.stdout.contains(id) && list.stdout.contains("succeeded"),
        "{list}"
    );
}

#[test]
fn a_resumed_run_does_not_ask_again_for_an_approval_already_given() {
    let work = Workdir::new();
    // `after` fails until `ok` exists.
    work.write(
        "main.hcl",
        &GATED.replace(
            "command    = \"echo after >> effects.log\"",
            "command    = \"test -e ok && echo after >> effects.log\"",
        ),
    );
    let first = opsctl_at(
        &work,
        None,
        &["apply", "--auto-approve", "--approve", "prod"],
    );
    first.expect_code(1);
    work.write("ok", "");
    // No --approve and no terminal: the approval given for this run stands.
    let second = opsctl_at(&work, None, &["apply", "--resume", "--auto-approve"]);
    second.expect_success();
    assert_eq!((effects(&work, "before"), effects(&work, "after")), (1, 1));
    let runs = runs_json(&work);
    let gate = step_of(&runs[1], "step.approval.prod");
    assert_eq!(
        (gate["result"].as_str(), gate["attempts"].as_u64()),
        (Some("skipped"), Some(1))
    );
    let after = step_of(&runs[1], "step.exec.after");
    assert_eq!(
        (after["result"].as_str(), after["attempts"].as_u64()),
        (Some("ran"), Some(2))
    );
}

const WINDOW: &str = r#"
window {
  days      = ["sun"]
  start     = "02:00"
  duration  = "4h"
  time_zone = "Europe/Berlin"
}
"#;

/// A chain `s1 -> s2 -> s3 -> s4` of exec steps that each take `secs` seconds.
fn chain(secs: u32) -> String {
    let mut text = String::new();
    for i in 1..=4 {
        text.push_str(&format!(
            "step \"exec\" \"s{i}\" {{\n  command = \"sleep {secs}; echo s{i} >> effects.log\"\n"
        ));
        if i > 1 {
            text.push_str(&format!("  depends_on = [step.exec.s{}]\n", i - 1));
        }
        text.push_str("}\n");
    }
    text
}

#[test]
fn apply_refuses_to_start_outside_the_window_unless_ignored_and_plan_says_when_it_opens() {
    let work = Workdir::new();
    work.write("main.hcl", &format!("{WINDOW}\n{}", chain(0)));
    // Wednesday 2026-11-25 12:00 UTC; the next window: Sunday 2026-11-29 02:00 CET.
    let wednesday = "2026-11-25T12:00:00Z";
    let plan = opsctl_at(&work, Some(wednesday), &["plan"]);
    plan.expect_success();
    assert!(
        plan.stdout.contains(
            "Maintenance window sun 02:00 for 4h (Europe/Berlin): closed now; the next opens Sun 2026-11-29 02:00 CET (3days 13h from now)."
        ),
        "{plan}"
    );
    let refused = opsctl_at(&work, Some(wednesday), &["apply", "--auto-approve"]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("outside the maintenance window")
            && refused.stderr.contains("Sun 2026-11-29 02:00 CET")
            && refused.stderr.contains("--ignore-window"),
        "{refused}"
    );
    assert_eq!(effects(&work, "s1"), 0);
    assert!(journal(&work).is_empty(), "no run started");

    let ignored = opsctl_at(
        &work,
        Some(wednesday),
        &["apply", "--auto-approve", "--ignore-window"],
    );
    ignored.expect_success();
    assert_eq!(effects(&work, "s4"), 1);
    let note = journal(&work)
        .into_iter()
        .find(|r| r["type"] == "run_note")
        .expect("the override is journaled");
    assert_eq!(note["note"], "ignore_window");
    assert_eq!(runs_json(&work)[0]["ignored_window"], true);

    // Inside the window (Sunday 03:00 CET), plan says when it closes.
    let sunday = "2026-11-29T02:00:00Z";
    let plan = opsctl_at(&work, Some(sunday), &["plan"]);
    assert!(
        plan.stdout
            .contains("open now, closes Sun 2026-11-29 06:00 CET (3h from now)."),
        "{plan}"
    );
}

#[test]
fn a_window_that_closes_mid_run_stops_new_steps_and_the_next_window_resumes() {
    let work = Workdir::new();
    work.write("main.hcl", &format!("{WINDOW}\n{}", chain(3)));
    // Four seconds before the window closes (Sunday 06:00 CET = 05:00 UTC): the step
    // running when it closes finishes, no later one starts.
    let first = opsctl_at(
        &work,
        Some("2026-11-29T04:59:56Z"),
        &["apply", "--auto-approve"],
    );
    first.expect_code(1);
    assert!(
        first.stderr.contains("Apply interrupted")
            && first.stderr.contains(
                "stopped: the maintenance window sun 02:00 for 4h (Europe/Berlin) closed"
            ),
        "{first}"
    );
    let done: Vec<usize> = (1..=4).map(|i| effects(&work, &format!("s{i}"))).collect();
    assert_eq!(done[0], 1, "{first}");
    assert_eq!(done[3], 0, "{done:?} {first}");
    let interrupted = journal(&work)
        .into_iter()
        .find(|r| r["type"] == "run_interrupted")
        .expect("interrupted");
    assert!(interrupted["reason"].as_str().unwrap().contains("closed"));

    // Still closed: resume refuses too.
    let early = opsctl_at(
        &work,
        Some("2026-11-30T10:00:00Z"),
        &["apply", "--resume", "--auto-approve"],
    );
    early.expect_code(1);
    assert!(
        early.stderr.contains("outside the maintenance window"),
        "{early}"
    );

    // The next Sunday: resume finishes without repeating a step.
    let next = opsctl_at(
        &work,
        Some("2026-12-06T01:00:30Z"),
        &["apply", "--resume", "--auto-approve"],
    );
    next.expect_success();
    let all: Vec<usize> = (1..=4).map(|i| effects(&work, &format!("s{i}"))).collect();
    assert_eq!(all, vec![1, 1, 1, 1], "{next}");
    let runs = runs_json(&work);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "interrupted");
    assert!(runs[0]["reason"].as_str().unwrap().contains("window"));
}

#[test]
fn a_bad_window_is_a_config_error_with_its_position() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "window {\n  days     = [\"sun\", \"someday\"]\n  start    = \"02:00\"\n  duration = \"4h\"\n  time_zone = \"Mars/Olympus\"\n}\n",
    );
    let out = opsctl_at(&work, None, &["validate"]);
    out.expect_code(1);
    assert!(out.stderr.contains("`someday` is not a day"), "{out}");
    assert!(out.stderr.contains("main.hcl:2:"), "{out}");
    assert!(out.stderr.contains("`Mars/Olympus` is not one"), "{out}");
    assert!(out.stderr.contains("main.hcl:5:"), "{out}");
}

// --- examples/weekly-maintenance against the kube-apiserver and the extended moto server ---

async fn create_secret(c: &kube::Client, ns: &str, name: &str) -> String {
    use k8s_openapi::api::core::v1::Secret;
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": "cert", "tls.key": "key" },
    }))
    .unwrap();
    let s = kube::Api::<Secret>::namespaced(c.clone(), ns)
        .create(&Default::default(), &s)
        .await
        .expect("create secret");
    s.metadata.uid.unwrap()
}

async fn create_job(c: &kube::Client, ns: &str, name: &str, succeeded: bool) {
    use k8s_openapi::api::batch::v1::Job;
    let api = kube::Api::<Job>::namespaced(c.clone(), ns);
    let j: Job = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "opsctl-test/none": "none" },
            "containers": [{ "name": "c", "image": "busybox", "command": ["true"] }],
        }}},
    }))
    .unwrap();
    api.create(&Default::default(), &j)
        .await
        .expect("create job");
    if succeeded {
        let status = serde_json::json!({ "status": {
            "succeeded": 1,
            "startTime": "2026-11-29T01:00:00Z",
            "completionTime": "2026-11-29T01:01:00Z",
            "conditions": [{ "type": "Complete", "status": "True" }],
        }});
        api.patch_status(name, &Default::default(), &kube::api::Patch::Merge(&status))
            .await
            .expect("mark job complete");
    }
}

async fn jobs(c: &kube::Client, ns: &str) -> Vec<String> {
    use k8s_openapi::api::batch::v1::Job;
    let list = kube::Api::<Job>::namespaced(c.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_maintenance_example_waits_for_approval_then_applies_end_to_end() {
    use kube_support::*;
    let server = kube_support::server();
    let c = client().await;
    for ns in ["workers", "platform", "batch"] {
        create_namespace(&c, ns).await;
    }
    create_ready_node(&c, "weekly-node-1", &[]).await;
    create_deployment(&c, "workers", "non-essential-service", 3).await;
    let old_cert = create_secret(&c, "platform", "api-tls").await;
    create_job(&c, "batch", "backup-done", true).await;
    create_job(&c, "batch", "backup-running", false).await;

    let moto = blocking(|| {
        let moto = support::MotoServer::start_ext();
        support::seed_platform(&moto.endpoint);
        support::aws_python(
            &moto.endpoint,
            "rds.create_db_snapshot(DBInstanceIdentifier='platform-postgres-prod', DBSnapshotIdentifier='weekly-backup')",
        );
        moto
    })
    .await;

    let work = Workdir::new();
    let root = support::repo_root().join("examples/weekly-maintenance/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(root).unwrap());
    let vars = [
        format!("kubeconfig={}", server.kubeconfig().display()),
        format!("api_server={}", server.url()),
        format!("api_ca_cert={}", server.dir.join("pki/ca.crt").display()),
        "release_version=1.28.5-20240301".to_string(),
    ];
    let command = move |work: &Workdir, moto: &support::MotoServer, args: &[&str]| {
        let mut cmd = opsctl(work, Some(moto));
        cmd.args(args)
            .env("OPSCTL_NOW", "2026-11-29T02:30:00Z")
            .env("OPSCTL_VAR_api_token", "opsctl-admin-token")
            .env("OPSCTL_AWS_POLL_INITIAL", "0.2")
            .env("OPSCTL_AWS_POLL_MAX", "1");
        if args[0] != "runs" && !args.contains(&"--resume") {
            for v in &vars {
                cmd.arg("--var").arg(v);
            }
        }
        run(&mut cmd)
    };
    let command = std::sync::Arc::new(command);

    // Plan: inside the window, the approval and the checks are shown.
    let (work, moto, plan) = {
        let command = command.clone();
        blocking(move || {
            let p = command(&work, &moto, &["plan"]);
            (work, moto, p)
        })
        .await
    };
    plan.expect_success();
    for want in [
        "approval required: Update the AMI of nodegroup general on platform-prod?",
        "Maintenance window sun 02:00 for 4h (UTC): open now, closes Sun 2026-11-29 06:00 UTC",
        "check `nodes_ready`: passed",
        "check `backups_fresh`: passed",
        "step.kubernetes_delete.completed_jobs[\"backup-done\"]",
    ] {
        assert!(plan.stdout.contains(want), "{want}: {plan}");
    }
    assert!(!plan.stdout.contains("backup-running"), "{plan}");

    // The certificate operator: re-issues the Secret once it is deleted.
    let c2 = c.clone();
    let operator = tokio::spawn(async move {
        use k8s_openapi::api::core::v1::Secret;
        let api = kube::Api::<Secret>::namespaced(c2.clone(), "platform");
        loop {
            match api.get_opt("api-tls").await {
                Ok(Some(s)) if s.metadata.uid.as_deref() != Some(old_cert.as_str()) => {
                    return s.metadata.uid.unwrap()
                }
                Ok(None) => {
                    create_secret(&c2, "platform", "api-tls").await;
                }
                _ => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });

    // CI without --approve: everything before the approval runs, the nodegroup waits.
    let (work, moto, first) = {
        let command = command.clone();
        blocking(move || {
            let a = command(&work, &moto, &["apply", "--auto-approve"]);
            (work, moto, a)
        })
        .await
    };
    first.expect_code(1);
    assert!(
        first.stderr.contains("approval `production` is required"),
        "{first}"
    );
    assert_eq!(
        deployment(&c, "workers", "non-essential-service")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(0)
    );
    assert_eq!(moto.call_count("UpdateNodegroupVersion"), 0);

    // Resumed with the approval: the nodegroup update, scale up and smoke test finish.
    let (work, moto, second) = {
        let command = command.clone();
        blocking(move || {
            let a = command(
                &work,
                &moto,
                &[
                    "apply",
                    "--resume",
                    "--auto-approve",
                    "--approve",
                    "production",
                ],
            );
            (work, moto, a)
        })
        .await
    };
    second.expect_success();
    assert_eq!(moto.call_count("UpdateNodegroupVersion"), 1);
    assert_eq!(
        deployment(&c, "workers", "non-essential-service")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );
    assert_eq!(jobs(&c, "batch").await, vec!["backup-running".to_string()]);
    let new_cert = operator.await.unwrap();
    assert_ne!(new_cert, "");
    let runs = runs_json_with(&work);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["status"], "succeeded");
    assert_eq!(
        step_of(&runs[1], "step.approval.production")["result"],
        "ran"
    );
    assert_eq!(
        step_of(&runs[1], "step.kubernetes_scale.non_essential_down")["result"],
        "skipped"
    );
    drop(moto);
}

fn runs_json_with(work: &Workdir) -> Vec<Value> {
    runs_json(work)
}
