//! Retries, failure policy, rollback steps and the run's `--timeout`, through the `opsctl`
//! binary with exec steps (issue 11). Every exec step appends its name to `effects.log`, so
//! counting lines tells which side effects happened and how often, also across `--resume`.

mod kube_support;
mod support;

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;
use support::{opsctl, run, Output, Workdir};

fn apply(work: &Workdir, extra: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.arg("apply").arg("--auto-approve").args(extra);
    run(&mut cmd)
}

fn plan(work: &Workdir) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.arg("plan");
    run(&mut cmd)
}

/// Lines of `effects.log` per step name.
fn effects(work: &Workdir) -> BTreeMap<String, usize> {
    let text = fs::read_to_string(work.path().join("effects.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Every record of the only journal.
fn journal(work: &Workdir) -> Vec<Value> {
    let dir = work.state_dir().join("journal");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = fs::read_to_string(files.remove(0)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l.split_once(' ').unwrap().1).unwrap())
        .collect()
}

fn records<'a>(all: &'a [Value], kind: &str, step: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["type"] == kind && r["step"] == step)
        .collect()
}

/// An exec step `name` recording its effect, failing while `fail-NAME` exists; `extra` lines
/// go inside the block.
fn step(name: &str, extra: &str) -> String {
    format!(
        "step \"exec\" \"{name}\" {{\n  command = \"echo {name} >> effects.log; test ! -e fail-{name}\"\n{extra}}}\n\n"
    )
}

#[test]
fn a_retry_succeeds_on_the_third_attempt_with_three_journaled_attempts() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"exec\" \"flaky\" {\n  command = \"n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo flaky >> effects.log; test $n -ge 3\"\n  retry {\n    attempts   = 3\n    initial    = \"100ms\"\n    max        = \"1s\"\n    multiplier = 2\n    on         = \"any\"\n  }\n}\n",
    );
    let out = apply(&work, &[]);
    out.expect_success();
    assert_eq!(effects(&work), counts(&[("flaky", 3)]));
    assert!(
        out.stdout.contains("attempt 1/3 failed; retrying in"),
        "{out}"
    );
    assert!(
        out.stdout.contains("attempt 2/3 failed; retrying in"),
        "{out}"
    );
    let j = journal(&work);
    let started: Vec<u64> = records(&j, "step_started", "step.exec.flaky")
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(started, [1, 2, 3]);
    let failed = records(&j, "step_failed", "step.exec.flaky");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|r| r["retry_in_ms"].as_u64().is_some()));
    assert_eq!(records(&j, "step_finished", "step.exec.flaky").len(), 1);
}

#[test]
fn without_on_any_a_command_failure_is_not_retried() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &step(
            "once",
            "  retry {\n    attempts = 3\n    initial  = \"10ms\"\n  }\n",
        ),
    );
    work.write("fail-once", "");
    let out = apply(&work, &[]);
    out.expect_code(1);
    // An exec command's failure is not marked transient: one attempt only.
    assert_eq!(effects(&work), counts(&[("once", 1)]));
}

#[test]
fn a_rollback_runs_when_its_step_fails_and_resume_does_not_repeat_it() {
    let work = Workdir::new();
    let text = [
        step("pre", ""),
        step(
            "deploy",
            "  depends_on = [step.exec.pre]\n  rollback   = [step.exec.undo]\n",
        ),
        step("undo", "  depends_on = [step.exec.deploy]\n"),
        step("verify", "  depends_on = [step.exec.deploy]\n"),
    ]
    .concat();
    work.write("main.hcl", &text);
    let p = plan(&work);
    p.expect_success();
    assert!(
        p.stdout
            .contains("on failure of step.exec.deploy: step.exec.undo"),
        "{p}"
    );

    work.write("fail-deploy", "");
    let out = apply(&work, &[]);
    out.expect_code(1);
    assert_eq!(
        effects(&work),
        counts(&[("pre", 1), ("deploy", 1), ("undo", 1)]),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("step.exec.deploy failed: running its rollback step.exec.undo"),
        "{out}"
    );
    let j = journal(&work);
    assert_eq!(records(&j, "step_finished", "step.exec.undo").len(), 1);

    // Resume: the failed step runs again, then its dependent; neither `pre` nor the rollback
    // that already ran is repeated.
    fs::remove_file(work.path().join("fail-deploy")).unwrap();
    let out = apply(&work, &["--resume"]);
    out.expect_success();
    assert_eq!(
        effects(&work),
        counts(&[("pre", 1), ("deploy", 2), ("undo", 1), ("verify", 1)]),
        "{out}"
    );
}

#[test]
fn a_rollback_does_not_run_when_its_step_succeeds() {
    let work = Workdir::new();
    let text = [
        step("deploy", "  rollback = [step.exec.undo]\n"),
        step("undo", ""),
    ]
    .concat();
    work.write("main.hcl", &text);
    let out = apply(&work, &[]);
    out.expect_success();
    assert_eq!(effects(&work), counts(&[("deploy", 1)]), "{out}");
}

/// `a` fails at once; `b` depends on it; `slow -> c` is an independent branch still running.
fn branches() -> String {
    [
        step("a", ""),
        step("b", "  depends_on = [step.exec.a]\n"),
        "step \"exec\" \"slow\" {\n  command = \"sleep 1; echo slow >> effects.log\"\n}\n\n"
            .to_string(),
        step("c", "  depends_on = [step.exec.slow]\n"),
    ]
    .concat()
}

#[test]
fn continue_on_error_finishes_the_independent_branch_and_skips_dependents() {
    let work = Workdir::new();
    work.write("main.hcl", &branches());
    work.write("fail-a", "");
    let out = apply(&work, &["--continue-on-error"]);
    out.expect_code(1);
    assert_eq!(
        effects(&work),
        counts(&[("a", 1), ("slow", 1), ("c", 1)]),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("step.exec.b: skipped (it depends on `step.exec.a`, which failed)"),
        "{out}"
    );
    assert!(out.stderr.contains("skipped: step.exec.b"), "{out}");

    // Without it, the failure stops the run: `c` never starts.
    let work = Workdir::new();
    work.write("main.hcl", &branches());
    work.write("fail-a", "");
    let out = apply(&work, &[]);
    out.expect_code(1);
    assert_eq!(effects(&work).get("c"), None, "{out}");
}

#[test]
fn on_failure_continue_on_the_step_does_the_same() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &branches().replacen(
            "step \"exec\" \"a\" {\n",
            "step \"exec\" \"a\" {\n  on_failure = \"continue\"\n",
            1,
        ),
    );
    work.write("fail-a", "");
    let out = apply(&work, &[]);
    out.expect_code(1);
    assert_eq!(
        effects(&work),
        counts(&[("a", 1), ("slow", 1), ("c", 1)]),
        "{out}"
    );
}

#[test]
fn the_run_timeout_leaves_a_resumable_journal_naming_the_step() {
    let work = Workdir::new();
    // `wait` sleeps 60 s the first time only (then `waited` exists).
    let text = [
        step("first", ""),
        "step \"exec\" \"wait\" {\n  command = \"echo wait >> effects.log; if [ ! -e waited ]; then touch waited; sleep 60; fi\"\n  depends_on = [step.exec.first]\n}\n\n".to_string(),
        step("last", "  depends_on = [step.exec.wait]\n"),
    ]
    .concat();
    work.write("main.hcl", &text);
    let t0 = std::time::Instant::now();
    let out = apply(&work, &["--timeout", "2s"]);
    assert!(t0.elapsed() < std::time::Duration::from_secs(40), "{out}");
    out.expect_code(1);
    assert_eq!(
        effects(&work),
        counts(&[("first", 1), ("wait", 1)]),
        "{out}"
    );
    let j = journal(&work);
    let doubt = records(&j, "step_in_doubt", "step.exec.wait");
    assert_eq!(doubt.len(), 1, "{j:?}");
    let reason = doubt[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("the run's --timeout of 2s passed"),
        "{reason}"
    );
    let interrupted: Vec<&Value> = j
        .iter()
        .filter(|r| r["type"] == "run_interrupted")
        .collect();
    assert!(
        interrupted[0]["reason"]
            .as_str()
            .unwrap()
            .contains("--timeout of 2s"),
        "{j:?}"
    );

    let out = apply(&work, &["--resume", "--in-doubt=rerun"]);
    out.expect_success();
    assert_eq!(
        effects(&work),
        counts(&[("first", 1), ("wait", 2), ("last", 1)]),
        "{out}"
    );
}

#[test]
fn bad_settings_are_reported_with_their_position() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"exec\" \"x\" {\n  command    = \"true\"\n  on_failure = \"maybe\"\n  rollback   = [step.exec.nope]\n  retry {\n    on = \"sometimes\"\n  }\n}\n",
    );
    let out = plan(&work);
    out.expect_code(1);
    assert!(out.stderr.contains("main.hcl:3:16"), "{out}");
    assert!(out.stderr.contains("`on_failure` must be"), "{out}");
    assert!(
        out.stderr.contains("unknown step `step.exec.nope`"),
        "{out}"
    );
    assert!(
        out.stderr.contains("`on` must be \"transient\" or \"any\""),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// examples/app-deployment-rollback against the local kube-apiserver (the tests play the
// kubelet; the Deployment controller is the server's).
// ---------------------------------------------------------------------------------------------

const APP1: &str = "example.invalid/fastapi-app:1";
const APP2: &str = "example.invalid/fastapi-app:2";
const BAD: &str = "example.invalid/fastapi-app:bad";

/// The example's procedure in a new workdir.
fn example_workdir() -> Workdir {
    let work = Workdir::new();
    let text =
        fs::read_to_string(support::repo_root().join("examples/app-deployment-rollback/main.hcl"))
            .unwrap();
    work.write("main.hcl", &text);
    work
}

fn example_run(work: &Workdir, args: &[&str], image: &str, smoke: &str) -> Output {
    let kubeconfig = kube_support::server().kubeconfig();
    let mut cmd = opsctl(work, None);
    cmd.args(args)
        .arg("--state-dir")
        .arg(work.state_dir())
        .arg("--var")
        .arg(format!("kubeconfig={}", kubeconfig.display()))
        .arg("--var")
        .arg("namespace=apprb")
        .arg("--var")
        .arg(format!("image={image}"))
        .arg("--var")
        .arg(format!("smoke_check={smoke}"));
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_deployment_example_deploys_and_rolls_back_a_failed_rollout() {
    use kube_support::*;
    let c = client().await;
    create_namespace(&c, "apprb").await;
    let kubelet = kubelet_except_image(c.clone(), "apprb", BAD);
    let mut spec = template("fastapi-app");
    spec["replicas"] = serde_json::json!(2);
    spec["progressDeadlineSeconds"] = serde_json::json!(10);
    spec["template"]["spec"]["containers"][0]["name"] = serde_json::json!("fastapi");
    spec["template"]["spec"]["containers"][0]["image"] = serde_json::json!(APP1);
    create_deployment_spec(&c, "apprb", "fastapi-app", spec).await;
    rolled_out(&c, "apprb", "fastapi-app").await;

    // A healthy release: deployed, pods ready, smoke check passes; the rollback does not run.
    let work = example_workdir();
    let out = blocking(move || {
        let p = example_run(&work, &["plan"], APP2, "true");
        p.expect_success();
        assert!(
            p.stdout.contains(
                "on failure of step.kubernetes_set_image.deploy: step.kubernetes_rollout_undo.rollback"
            ),
            "{p}"
        );
        (example_run(&work, &["apply", "--auto-approve"], APP2, "true"), work)
    })
    .await;
    out.0.expect_success();
    assert!(!out.0.stdout.contains("running its rollback"), "{}", out.0);
    assert_eq!(deployment_image(&c, "apprb", "fastapi-app").await, APP2);

    // A release whose pods never become Ready: the rollout fails at its progress deadline and
    // the rollback restores the previous image.
    let work = example_workdir();
    let (out, work) = blocking(move || {
        (
            example_run(&work, &["apply", "--auto-approve"], BAD, "true"),
            work,
        )
    })
    .await;
    out.expect_code(1);
    assert!(
        out.stdout.contains(
            "step.kubernetes_set_image.deploy failed: running its rollback step.kubernetes_rollout_undo.rollback"
        ),
        "{out}"
    );
    assert_eq!(deployment_image(&c, "apprb", "fastapi-app").await, APP2);
    rolled_out(&c, "apprb", "fastapi-app").await;
    let j = journal(&work);
    assert_eq!(
        records(&j, "step_finished", "step.kubernetes_rollout_undo.rollback").len(),
        1
    );
    assert!(records(&j, "step_started", "step.exec.smoke").is_empty());
    kubelet.abort();
}

#[test]
fn plan_shows_the_batches_failure_paths_and_retries() {
    let work = Workdir::new();
    let text = [
        "step \"exec\" \"deploy\" {\n  count   = 5\n  command = \"echo deploy >> effects.log\"\n  rollback = [step.exec.undo]\n  rollout {\n    batch_size             = \"40%\"\n    max_failure_percentage = 20\n    pause                  = 30\n    health_check           = [step.exec.health]\n  }\n}\n\n".to_string(),
        step("health", ""),
        step("undo", ""),
        step("report", "  on_failure = \"continue\"\n  retry {\n    attempts = 4\n    initial  = \"2s\"\n    max      = \"10s\"\n  }\n"),
    ]
    .concat();
    work.write("main.hcl", &text);
    let p = plan(&work);
    p.expect_success();
    insta::assert_snapshot!("safe_execution_plan", p.stdout);
    assert!(
        !work.path().join("effects.log").exists(),
        "plan ran a command"
    );
}
