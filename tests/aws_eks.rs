//! End-to-end tests of the EKS upgrade steps against the extended moto server
//! (scripts/moto_ext): `eks_cluster_version`, `eks_nodegroup_version`, the labels and taints
//! of `eks_nodegroup_scaling`, the `eks_cluster` / `eks_nodegroups` data sources and
//! `examples/eks-upgrade`. The server holds `UPDATING` for the seconds a test configures,
//! injects failures and throttling, and counts the API calls it receives, so the waiter, the
//! errors and resume (never a second `UpdateClusterVersion`) are observed over the real
//! protocol. Every test starts its own server; state is read back through boto3.

mod support;

use std::fs::File;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{aws_python, opsctl, repo_root, run, seed_platform, MotoServer, Output, Workdir};

const CLUSTER: &str = "platform-prod";

/// A seeded extended server (cluster `platform-prod` 1.28, nodegroups `general` and `batch`
/// at 1.28) with its call counts zeroed, and an empty workdir.
fn platform() -> (MotoServer, Workdir) {
    let moto = MotoServer::start_ext();
    seed_platform(&moto.endpoint);
    moto.reset_calls();
    (moto, Workdir::new())
}

/// `opsctl ARGS --state-dir <workdir>/state` against `moto`, polling from 0.2 s.
fn opsctl_cmd(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Command {
    let mut cmd = opsctl(work, Some(moto));
    cmd.args(args)
        .arg("--state-dir")
        .arg(work.state_dir())
        .env("OPSCTL_AWS_POLL_INITIAL", "0.2")
        .env("OPSCTL_AWS_POLL_MAX", "1");
    cmd
}

fn opsctl_run(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Output {
    run(&mut opsctl_cmd(work, moto, args))
}

fn plan(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    opsctl_run(work, moto, &args)
}

fn apply_out(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    opsctl_run(work, moto, &args)
}

fn apply(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let out = apply_out(work, moto, extra);
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
    out
}

/// `version status` of the cluster, read through boto3.
fn cluster_state(moto: &MotoServer) -> String {
    aws_python(
        &moto.endpoint,
        "c = eks.describe_cluster(name='platform-prod')['cluster']\nprint(c['version'], c['status'])",
    )
}

/// `version release status` of a nodegroup, read through boto3.
fn nodegroup_state(moto: &MotoServer, ng: &str) -> String {
    aws_python(
        &moto.endpoint,
        &format!(
            "n = eks.describe_nodegroup(clusterName='platform-prod', nodegroupName='{ng}')['nodegroup']\n\
             print(n['version'], n['releaseVersion'], n['status'])"
        ),
    )
}

/// Operations that change something, with their counts (plan must send none).
fn mutating_calls(moto: &MotoServer) -> Vec<String> {
    let calls = moto.calls();
    let mut out: Vec<String> = calls
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| {
            !["Describe", "List", "Get"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .map(|(op, n)| format!("{op}={n}"))
        .collect();
    out.sort();
    out
}

fn cluster_step(version: &str, extra: &str) -> String {
    format!(
        r#"
step "eks_cluster_version" "cp" {{
  cluster = "{CLUSTER}"
  version = "{version}"
{extra}}}
"#
    )
}

macro_rules! assert_plan_snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({filters => vec![
            (r"\[\d+\.\d+s\]", "[TIME]"),
        ]}, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[test]
fn cluster_version_plans_waits_for_updating_and_then_has_nothing_to_do() {
    let (moto, work) = platform();
    work.write("main.hcl", &cluster_step("1.29", ""));
    moto.behaviour(
        json!({"service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 3.0}}),
    );

    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("cluster_version_plan", &p.stdout);
    assert_eq!(
        mutating_calls(&moto),
        Vec::<String>::new(),
        "plan never writes"
    );

    let started = Instant::now();
    let a = apply(&work, &moto, &[]);
    let took = started.elapsed();
    assert!(
        a.stdout.contains("UPDATING"),
        "progress shows the status the API reports:\n{a}"
    );
    assert!(
        took >= Duration::from_secs(3),
        "waited for the held UPDATING: {took:?}"
    );
    assert_eq!(cluster_state(&moto), "1.29 ACTIVE");
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);

    let again = plan(&work, &moto, &[]);
    again.expect_code(0);
    assert!(
        again
            .stdout
            .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
        "{again}"
    );
}

#[test]
fn a_version_jump_or_a_downgrade_is_refused_at_plan_naming_step_and_versions() {
    let (moto, work) = platform();
    for (version, words) in [
        (
            "1.30",
            vec!["1.30", "1.28", "one minor version at a time", "1.29 first"],
        ),
        ("1.27", vec!["1.27", "1.28", "downgrade"]),
    ] {
        work.write("main.hcl", &cluster_step(version, ""));
        let p = plan(&work, &moto, &[]);
        p.expect_code(1);
        let text = format!("{}{}", p.stdout, p.stderr);
        assert!(
            text.contains("step.eks_cluster_version.cp"),
            "names the step:\n{p}"
        );
        for w in words {
            assert!(text.contains(w), "expected {w:?} in:\n{p}");
        }
    }
    assert_eq!(moto.call_count("UpdateClusterVersion"), 0);
    assert_eq!(cluster_state(&moto), "1.28 ACTIVE");
}

#[test]
fn a_cluster_that_does_not_exist_fails_the_plan_naming_step_and_target() {
    let (moto, work) = platform();
    work.write(
        "main.hcl",
        &cluster_step("1.29", "").replace(CLUSTER, "no-such-cluster"),
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    let text = format!("{}{}", p.stdout, p.stderr);
    for w in [
        "step.eks_cluster_version.cp",
        "aws/us-west-2/eks/no-such-cluster",
        "cluster `no-such-cluster` not found",
    ] {
        assert!(text.contains(w), "expected {w:?} in:\n{p}");
    }
}

#[test]
fn a_failed_update_fails_the_step_with_the_updates_errors() {
    let (moto, work) = platform();
    work.write("main.hcl", &cluster_step("1.29", ""));
    moto.behaviour(json!({
        "service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 1.0},
        "fail": {"errors": [{"errorCode": "SubnetNotFound",
                             "errorMessage": "subnet-0a1b2c3d4e5f60001 does not exist",
                             "resourceIds": ["subnet-0a1b2c3d4e5f60001"]}]}
    }));
    let a = apply_out(&work, &moto, &[]);
    assert_ne!(a.code, 0, "{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    for w in [
        "step.eks_cluster_version.cp",
        "Failed",
        "SubnetNotFound: subnet-0a1b2c3d4e5f60001 does not exist",
    ] {
        assert!(text.contains(w), "expected {w:?} in:\n{a}");
    }
    assert_eq!(cluster_state(&moto), "1.28 ACTIVE");
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);
}

#[test]
fn a_timeout_leaves_a_resumable_journal_and_resume_sends_no_second_update() {
    let (moto, work) = platform();
    work.write("main.hcl", &cluster_step("1.29", "  timeout = \"2s\"\n"));
    moto.behaviour(
        json!({"service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 15.0}}),
    );
    let started = Instant::now();
    let a = apply_out(&work, &moto, &[]);
    assert_ne!(a.code, 0, "the step times out:\n{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    assert!(text.contains("step.eks_cluster_version.cp"), "{a}");
    assert!(text.contains("timed out"), "{a}");
    assert!(text.contains("--resume"), "points at --resume:\n{a}");
    assert_eq!(cluster_state(&moto), "1.28 UPDATING");

    // Once the update is through, resume finds it done: no second UpdateClusterVersion.
    while started.elapsed() < Duration::from_secs(16) {
        thread::sleep(Duration::from_millis(200));
    }
    let r = opsctl_run(&work, &moto, &["apply", "--resume", "--auto-approve"]);
    r.expect_success();
    assert_eq!(cluster_state(&moto), "1.29 ACTIVE");
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);
}

#[test]
fn sigkill_during_the_wait_then_resume_waits_for_the_update_in_flight() {
    let (moto, work) = platform();
    work.write("main.hcl", &cluster_step("1.29", ""));
    moto.behaviour(
        json!({"service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 6.0}}),
    );
    let mut cmd = opsctl_cmd(&work, &moto, &["apply", "--auto-approve"]);
    cmd.stdin(Stdio::null())
        .stdout(File::create(work.path().join("first.stdout")).unwrap())
        .stderr(File::create(work.path().join("first.stderr")).unwrap());
    let mut child = cmd.spawn().expect("spawn opsctl apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.call_count("DescribeUpdate") == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "opsctl exited before waiting:\n{}",
            work.read("first.stdout")
        );
        assert!(Instant::now() < deadline, "opsctl never polled the update");
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL opsctl");
    let _ = child.wait();
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);
    assert_eq!(cluster_state(&moto), "1.28 UPDATING");

    let r = opsctl_run(&work, &moto, &["apply", "--resume", "--auto-approve"]);
    r.expect_success();
    assert!(
        r.stdout.contains("UPDATING"),
        "resume waited for the update:\n{r}"
    );
    assert_eq!(cluster_state(&moto), "1.29 ACTIVE");
    assert_eq!(
        moto.call_count("UpdateClusterVersion"),
        1,
        "resume must not send a second UpdateClusterVersion"
    );
}

#[test]
fn throttling_is_retried_then_given_up() {
    // A few throttled polls: retried, the step succeeds.
    let (moto, work) = platform();
    work.write("main.hcl", &cluster_step("1.29", ""));
    moto.behaviour(
        json!({"service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 1.0}}),
    );
    moto.behaviour(json!({"throttle": {"operation": "DescribeUpdate", "count": 4}}));
    apply(&work, &moto, &[]);
    assert_eq!(cluster_state(&moto), "1.29 ACTIVE");
    assert!(moto.call_count("DescribeUpdate") >= 5, "{}", moto.calls());

    // Throttled for good: the step gives up with the server's answer.
    let (moto, work) = platform();
    work.write(
        "main.hcl",
        &format!(
            "provider \"aws\" {{\n  max_attempts = 1\n}}\n{}",
            cluster_step("1.29", "")
        ),
    );
    moto.behaviour(json!({"throttle": {"operation": "DescribeUpdate", "count": 1000}}));
    let a = apply_out(&work, &moto, &[]);
    assert_ne!(a.code, 0, "{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    for w in [
        "step.eks_cluster_version.cp",
        "gave up",
        "ThrottlingException",
        "Rate exceeded",
    ] {
        assert!(text.contains(w), "expected {w:?} in:\n{a}");
    }
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);
}

#[test]
fn nodegroup_version_with_a_release_waits_and_converges() {
    let (moto, work) = platform();
    work.write(
        "main.hcl",
        r#"
step "eks_nodegroup_version" "general" {
  cluster         = "platform-prod"
  nodegroup       = "general"
  release_version = "1.28.5-20240301"
  force           = true
}
"#,
    );
    moto.behaviour(json!({"service": "eks", "kind": "nodegroup", "id": "platform-prod/general", "hold": {"UPDATING": 2.0}}));
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("nodegroup_release_plan", &p.stdout);
    let a = apply(&work, &moto, &[]);
    assert!(a.stdout.contains("UPDATING"), "{a}");
    assert_eq!(
        nodegroup_state(&moto, "general"),
        "1.28 1.28.5-20240301 ACTIVE"
    );
    assert_eq!(moto.call_count("UpdateNodegroupVersion"), 1);
    plan(&work, &moto, &[]).expect_code(0);
}

#[test]
fn scaling_adds_and_removes_labels_and_taints() {
    let (moto, work) = platform();
    aws_python(
        &moto.endpoint,
        "eks.update_nodegroup_config(clusterName='platform-prod', nodegroupName='batch', \
         labels={'addOrUpdateLabels': {'old': 'yes', 'team': 'data'}}, \
         taints={'addOrUpdateTaints': [{'key': 'legacy', 'value': 'true', 'effect': 'NO_SCHEDULE'}]})",
    );
    moto.reset_calls();
    work.write(
        "main.hcl",
        r#"
step "eks_nodegroup_scaling" "batch" {
  cluster       = "platform-prod"
  nodegroup     = "batch"
  labels        = { team = "platform", tier = "batch" }
  remove_labels = ["old"]
  taints        = [{ key = "dedicated", value = "batch", effect = "NoSchedule" }]
  remove_taints = [{ key = "legacy", effect = "NoSchedule" }]
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("scaling_labels_taints_plan", &p.stdout);
    assert_eq!(
        mutating_calls(&moto),
        Vec::<String>::new(),
        "plan never writes"
    );
    apply(&work, &moto, &[]);
    let got = aws_python(
        &moto.endpoint,
        "n = eks.describe_nodegroup(clusterName='platform-prod', nodegroupName='batch')['nodegroup']\n\
         print(sorted(n['labels'].items()), sorted((t['key'], t.get('value'), t['effect']) for t in n['taints']))",
    );
    assert_eq!(
        got,
        "[('team', 'platform'), ('tier', 'batch'), ('workload', 'batch')] [('dedicated', 'batch', 'NO_SCHEDULE')]"
    );
    plan(&work, &moto, &[]).expect_code(0);
}

fn write_example(work: &Workdir) {
    let src = repo_root().join("examples/eks-upgrade/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(src).unwrap());
}

#[test]
fn example_eks_upgrade_plans_against_the_predicted_version_and_applies() {
    let (moto, work) = platform();
    write_example(&work);
    moto.behaviour(json!([
        {"service": "eks", "kind": "cluster", "id": CLUSTER, "hold": {"UPDATING": 2.0}},
        {"service": "eks", "kind": "nodegroup", "id": "*", "hold": {"UPDATING": 1.0}}
    ]));
    let p = plan(&work, &moto, &["--var", "version=1.29"]);
    p.expect_code(2);
    assert_plan_snapshot!("example_eks_upgrade_plan", &p.stdout);
    assert_eq!(
        mutating_calls(&moto),
        Vec::<String>::new(),
        "plan never writes"
    );

    let a = apply(&work, &moto, &["--var", "version=1.29"]);
    assert_eq!(cluster_state(&moto), "1.29 ACTIVE");
    for ng in ["batch", "general"] {
        assert_eq!(
            nodegroup_state(&moto, ng),
            "1.29 1.29.0-20240101 ACTIVE",
            "{a}"
        );
    }
    assert_eq!(
        mutating_calls(&moto),
        vec!["UpdateClusterVersion=1", "UpdateNodegroupVersion=2"]
    );

    let again = plan(&work, &moto, &["--var", "version=1.29"]);
    again.expect_code(0);
    assert!(
        again
            .stdout
            .contains("Plan: 0 to run, 0 to change, 3 unchanged."),
        "{again}"
    );
}

#[test]
fn a_failed_nodegroup_roll_fails_with_the_updates_errors_and_a_missing_nodegroup_is_named() {
    let (moto, work) = platform();
    work.write(
        "main.hcl",
        r#"
step "eks_nodegroup_version" "batch" {
  cluster         = "platform-prod"
  nodegroup       = "batch"
  release_version = "1.28.5-20240301"
}
"#,
    );
    moto.behaviour(json!({
        "service": "eks", "kind": "nodegroup", "id": "batch", "hold": {"UPDATING": 1.0},
        "fail": {"errors": [{"errorCode": "NodeCreationFailure",
                             "errorMessage": "Instances failed to join the kubernetes cluster",
                             "resourceIds": ["i-0abc"]}]}
    }));
    let a = apply_out(&work, &moto, &[]);
    assert_ne!(a.code, 0, "{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    for w in [
        "step.eks_nodegroup_version.batch",
        "NodeCreationFailure: Instances failed to join the kubernetes cluster (i-0abc)",
    ] {
        assert!(text.contains(w), "expected {w:?} in:\n{a}");
    }
    assert_eq!(
        nodegroup_state(&moto, "batch"),
        "1.28 1.19.8-20210414 ACTIVE"
    );

    work.write(
        "main.hcl",
        r#"
step "eks_nodegroup_version" "gone" {
  cluster   = "platform-prod"
  nodegroup = "gone"
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    let text = format!("{}{}", p.stdout, p.stderr);
    for w in [
        "step.eks_nodegroup_version.gone",
        "aws/us-west-2/eks/platform-prod/nodegroup/gone",
        "nodegroup `gone` not found in cluster `platform-prod`",
    ] {
        assert!(text.contains(w), "expected {w:?} in:\n{p}");
    }
    assert_eq!(moto.call_count("UpdateNodegroupVersion"), 1);
}
