//! Saved plans through the real `opsctl` binary: `plan --out FILE`, `apply FILE`, `show FILE`
//! and `show --json FILE`. The refusals (a file edited by hand, an unknown format version, a
//! configuration changed after the plan, a plan applied twice, a sensitive variable) use
//! `exec` steps that append a line to a file, so that side effects are counted; the stale-plan
//! checks run against the local Kubernetes API server (a Deployment scaled behind opsctl's
//! back) and a moto server (a nodegroup scaled behind opsctl's back).

mod kube_support;
mod support;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value as Json};
use support::{
    aws_python, opsctl, run, run_with_stdin, seed_platform, MotoServer, Output, Workdir,
};

/// `opsctl ARGS --state-dir <work>/state` with optional `OPSCTL_VAR_*` variables, no server.
fn ops(work: &Workdir, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = opsctl(work, None);
    c.args(args);
    if args[0] != "show" {
        c.arg("--state-dir").arg(work.state_dir());
    }
    for (k, v) in vars {
        c.env(format!("OPSCTL_VAR_{k}"), v);
    }
    run(&mut c)
}

/// Lines appended by the `exec` steps (each run appends one).
fn lines(work: &Workdir, name: &str) -> usize {
    std::fs::read_to_string(work.path().join(name))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

const TWO_STEPS: &str = r#"
step "exec" "one" {
  command = "echo one >> ran.txt"
}
step "exec" "two" {
  command    = "echo two >> ran.txt"
  depends_on = [step.exec.one]
}
"#;

fn planned(hcl: &str) -> Workdir {
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    ops(&work, &["plan", "--out", "plan.json"], &[]).expect_success();
    work
}

#[test]
fn a_plan_edited_by_hand_or_of_an_unknown_format_version_is_refused() {
    let work = planned(TWO_STEPS);
    let original = work.read("plan.json");
    assert!(
        original.contains("\"format_version\": \"1.0\""),
        "{original}"
    );

    // One character of a command changed: the digest no longer matches.
    work.write("plan.json", &original.replace("echo two", "echo TWO"));
    let edited = ops(&work, &["apply", "plan.json"], &[]);
    edited.expect_code(1);
    assert!(
        edited
            .stderr
            .contains("plan `plan.json` was modified after opsctl wrote it"),
        "{edited}"
    );
    assert!(
        ops(&work, &["show", "plan.json"], &[]).code == 1,
        "show refuses too"
    );

    let mut doc: Json = serde_json::from_str(&original).unwrap();
    doc["format_version"] = json!("99.0");
    work.write("plan.json", &serde_json::to_string_pretty(&doc).unwrap());
    let future = ops(&work, &["apply", "plan.json"], &[]);
    future.expect_code(1);
    assert!(
        future.stderr.contains(
            "plan `plan.json` has format version 99.0, which this opsctl (0.1.0) cannot read: it reads saved plans of format 1.x"
        ),
        "{future}"
    );
    assert_eq!(lines(&work, "ran.txt"), 0, "nothing ran");
    assert!(!work.state_dir().join("journal").exists(), "no run started");
}

#[test]
fn a_configuration_file_changed_after_the_plan_is_refused_by_name() {
    let work = Workdir::new();
    work.write("main.hcl", TWO_STEPS);
    work.write(
        "extra.hcl",
        "step \"exec\" \"three\" {\n  command = \"echo three >> ran.txt\"\n}\n",
    );
    ops(&work, &["plan", "--out", "plan.json"], &[]).expect_success();
    work.write(
        "extra.hcl",
        "step \"exec\" \"three\" {\n  command = \"echo 3 >> ran.txt\"\n}\n",
    );
    let out = ops(&work, &["apply", "plan.json"], &[]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("the configuration changed since the plan was made: `extra.hcl` changed"),
        "{out}"
    );
    assert!(!out.stderr.contains("`main.hcl`"), "{out}");
    assert_eq!(lines(&work, "ran.txt"), 0);
}

#[test]
fn a_plan_applies_without_a_prompt_once_and_is_refused_the_second_time() {
    let work = planned(TWO_STEPS);
    // With --confirm it asks; stdin answers no.
    let mut c = opsctl(&work, None);
    c.args(["apply", "--confirm", "plan.json", "--state-dir"])
        .arg(work.state_dir());
    let asked = run_with_stdin(&mut c, "no\n");
    asked.expect_code(1);
    assert!(
        asked.stdout.contains("Only `yes` will be accepted"),
        "{asked}"
    );
    assert_eq!(lines(&work, "ran.txt"), 0);

    // Without it, no prompt (stdin is closed): the plan was the approval.
    let first = ops(&work, &["apply", "plan.json"], &[]);
    first.expect_success();
    assert!(first.stdout.contains("Apply complete! 2 run"), "{first}");
    assert_eq!(lines(&work, "ran.txt"), 2);
    let digest: Json = serde_json::from_str(&work.read("plan.json")).unwrap();
    let digest = digest["digest"].as_str().unwrap().to_string();
    let journals: Vec<_> = std::fs::read_dir(work.state_dir().join("journal"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        journals.iter().any(|j| j.contains(&digest)),
        "the run records the plan digest"
    );

    let second = ops(&work, &["apply", "plan.json"], &[]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains("this plan was already applied by run `"),
        "{second}"
    );
    assert!(
        second.stderr.contains("it finished successfully"),
        "{second}"
    );
    assert_eq!(lines(&work, "ran.txt"), 2, "nothing ran the second time");
}

const SECRET: &str = "Sw0rdf1sh-482916";

const WITH_SECRET: &str = r#"
variable "pin" {
  type      = string
  sensitive = true
}
variable "who" {
  type    = string
  default = "ops"
}
step "exec" "use" {
  command = "echo ${var.who}:${var.pin} >> ran.txt"
}
"#;

#[test]
fn a_sensitive_variable_is_not_in_the_file_and_must_be_supplied_again() {
    let work = Workdir::new();
    work.write("main.hcl", WITH_SECRET);
    let p = ops(&work, &["plan", "--out", "plan.json"], &[("pin", SECRET)]);
    p.expect_success();
    let file = work.read("plan.json");
    assert!(
        !file.contains(SECRET),
        "the secret is in the plan file:\n{file}"
    );
    assert!(file.contains("\"argon2\""), "{file}");
    let shown = ops(&work, &["show", "plan.json"], &[]);
    shown.expect_success();
    assert!(!shown.stdout.contains(SECRET), "{shown}");
    assert!(shown.stdout.contains("(sensitive value)"), "{shown}");

    let missing = ops(&work, &["apply", "plan.json"], &[]);
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("variable `pin` is sensitive"),
        "{missing}"
    );
    let wrong = ops(&work, &["apply", "plan.json"], &[("pin", "0000")]);
    wrong.expect_code(1);
    assert!(
        wrong
            .stderr
            .contains("the value given for sensitive variable `pin` differs"),
        "{wrong}"
    );
    let other = ops(
        &work,
        &["apply", "plan.json", "--var", "who=root"],
        &[("pin", SECRET)],
    );
    other.expect_code(1);
    assert!(
        other.stderr.contains("a saved plan holds its variables"),
        "{other}"
    );
    assert_eq!(lines(&work, "ran.txt"), 0);

    let right = ops(&work, &["apply", "plan.json"], &[("pin", SECRET)]);
    right.expect_success();
    assert_eq!(work.read("ran.txt"), format!("ops:{SECRET}\n"));
    assert!(!right.stdout.contains(SECRET), "{right}");
}

#[test]
fn show_prints_the_plan_text_and_a_json_document() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &format!("{TWO_STEPS}\noutput \"where\" {{\n  value = \"here\"\n}}\n"),
    );
    let p = ops(&work, &["plan", "--out", "plan.json"], &[]);
    p.expect_success();
    let shown = ops(&work, &["show", "plan.json"], &[]);
    shown.expect_success();
    assert!(
        p.stdout.starts_with(&shown.stdout),
        "show prints what plan printed\n--- plan ---\n{}\n--- show ---\n{}",
        p.stdout,
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("Plan: 2 to run, 0 to change, 0 unchanged."),
        "{shown}"
    );

    let js = ops(&work, &["show", "--json", "plan.json"], &[]);
    js.expect_success();
    let doc: Json = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(doc["format_version"], "1.0");
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["address"], "step.exec.two");
    assert_eq!(steps[1]["type"], "exec");
    assert_eq!(steps[1]["action"], "run");
    assert_eq!(steps[1]["depends_on"], json!(["step.exec.one"]));
    assert_eq!(doc["outputs"]["where"]["value"], "here");
    let file: Json = serde_json::from_str(&work.read("plan.json")).unwrap();
    assert_eq!(doc["plan_digest"], file["digest"]);
}

#[test]
fn an_approval_of_a_saved_plan_and_its_audit_record_name_the_saved_plans_digest() {
    let work = planned(
        "step \"approval\" \"prod\" {\n  message = \"Go?\"\n}\nstep \"exec\" \"after\" {\n  command    = \"echo after >> ran.txt\"\n  depends_on = [step.approval.prod]\n}\n",
    );
    let file: Json = serde_json::from_str(&work.read("plan.json")).unwrap();
    let digest = file["digest"].as_str().unwrap().to_string();
    ops(&work, &["apply", "plan.json", "--approve", "prod"], &[]).expect_success();
    assert_eq!(lines(&work, "ran.txt"), 1);
    let records = kube_support::journal_records(&work);
    let approved = records
        .iter()
        .find(|r| r["type"] == "step_finished" && r["step"] == "step.approval.prod")
        .expect("approval finished");
    assert_eq!(
        approved["outputs"]["plan_digest"],
        digest.as_str(),
        "{approved}"
    );
    let started = records.iter().find(|r| r["type"] == "run_started").unwrap();
    assert_eq!(started["plan_digest"], digest.as_str(), "{started}");
    let audit = work.read("state/runs.jsonl");
    let run: Json = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(run["plan_digest"], digest.as_str(), "{run}");
}

// --- Against the local servers ----------------------------------------------------------------

/// `desired min max` of a nodegroup, read through boto3.
fn scaling(moto: &MotoServer, nodegroup: &str) -> String {
    aws_python(
        &moto.endpoint,
        &format!(
            "sc = eks.describe_nodegroup(clusterName='platform-prod', nodegroupName='{nodegroup}')\
             ['nodegroup']['scalingConfig']\n\
             print(sc['desiredSize'], sc['minSize'], sc['maxSize'])"
        ),
    )
}

fn aws(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, Some(moto));
    cmd.args(args).arg("--state-dir").arg(work.state_dir());
    run(&mut cmd)
}

const SCALE_BOTH: &str = r#"
step "eks_nodegroup_scaling" "general" {
  cluster      = "platform-prod"
  nodegroup    = "general"
  desired_size = 5
  min_size     = 2
  max_size     = 10
}
step "eks_nodegroup_scaling" "batch" {
  cluster      = "platform-prod"
  nodegroup    = "batch"
  desired_size = 3
  depends_on   = [step.eks_nodegroup_scaling.general]
}
"#;

/// `field -> after` of a step of a saved plan.
fn planned_after(file: &Json, address: &str) -> Vec<(String, Json)> {
    let step = file["body"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == address)
        .unwrap_or_else(|| panic!("no {address} in the plan"));
    step["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["after"].clone()))
        .collect()
}

#[test]
fn an_untouched_plan_applies_and_the_nodegroups_match_it_field_by_field() {
    let moto = MotoServer::start();
    seed_platform(&moto.endpoint);
    let work = Workdir::new();
    work.write("main.hcl", SCALE_BOTH);
    aws(&work, &moto, &["plan", "--out", "plan.json"]).expect_success();
    assert_eq!(scaling(&moto, "general"), "4 2 8", "plan wrote nothing");
    let a = aws(&work, &moto, &["apply", "plan.json"]);
    a.expect_success();
    assert!(a.stdout.contains("Apply complete! 0 run, 2 changed"), "{a}");

    let file: Json = serde_json::from_str(&work.read("plan.json")).unwrap();
    for (address, nodegroup) in [
        ("step.eks_nodegroup_scaling.general", "general"),
        ("step.eks_nodegroup_scaling.batch", "batch"),
    ] {
        let live: Vec<i64> = scaling(&moto, nodegroup)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        for (path, after) in planned_after(&file, address) {
            let i = match path.as_str() {
                "scaling_config.desired_size" => 0,
                "scaling_config.min_size" => 1,
                "scaling_config.max_size" => 2,
                other => panic!("unexpected field {other}"),
            };
            assert_eq!(json!(live[i]), after, "{address} {path}");
        }
    }
    assert_eq!(scaling(&moto, "general"), "5 2 10");
}

#[test]
fn a_nodegroup_scaled_behind_opsctls_back_makes_the_plan_stale() {
    let moto = MotoServer::start();
    seed_platform(&moto.endpoint);
    let work = Workdir::new();
    work.write("main.hcl", SCALE_BOTH);
    aws(&work, &moto, &["plan", "--out", "plan.json"]).expect_success();
    let batch_before = scaling(&moto, "batch");
    aws_python(
        &moto.endpoint,
        "eks.update_nodegroup_config(clusterName='platform-prod', nodegroupName='batch', \
         scalingConfig={'desiredSize': 1})",
    );
    let stale = aws(&work, &moto, &["apply", "plan.json"]);
    stale.expect_code(1);
    assert!(
        stale.stderr.contains(
            "`step.eks_nodegroup_scaling.batch` on `aws/us-west-2/eks/platform-prod/nodegroup/batch`: plan is stale: `scaling_config.desired_size` was 2 when the plan was made and is 1 now"
        ),
        "{stale}"
    );
    assert_eq!(scaling(&moto, "general"), "5 2 10", "the earlier step ran");
    let mut want = batch_before.split_whitespace().collect::<Vec<_>>();
    want[0] = "1";
    assert_eq!(scaling(&moto, "batch"), want.join(" "), "batch untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scaled_behind_opsctls_back_stops_apply_before_that_step() {
    use kube_support::*;
    let s = server();
    let c = client().await;
    create_namespace(&c, "saved-stale").await;
    create_deployment(&c, "saved-stale", "first", 1).await;
    create_deployment(&c, "saved-stale", "second", 1).await;
    let work = workdir(
        &s.kubeconfig(),
        r#"
step "kubernetes_scale" "first" {
  kind      = "Deployment"
  namespace = "saved-stale"
  name      = "first"
  replicas  = 2
  wait      = false
}
step "kubernetes_scale" "second" {
  kind       = "Deployment"
  namespace  = "saved-stale"
  name       = "second"
  replicas   = 3
  wait       = false
  depends_on = [step.kubernetes_scale.first]
}
"#,
    );
    let work = blocking(move || {
        opsctl_run(&work, &["plan", "--out", "plan.json"]).expect_success();
        work
    })
    .await;
    let replicas = |name: &'static str| {
        let c = c.clone();
        async move {
            deployment(&c, "saved-stale", name)
                .await
                .spec
                .and_then(|s| s.replicas)
        }
    };
    assert_eq!(replicas("first").await, Some(1), "plan wrote nothing");
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(c.clone(), "saved-stale");
    api.patch(
        "second",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 5 } })),
    )
    .await
    .expect("scale behind opsctl's back");
    let rv = deployment(&c, "saved-stale", "second")
        .await
        .metadata
        .resource_version;

    let (work, stale) = blocking(move || {
        let out = opsctl_run(&work, &["apply", "plan.json"]);
        (work, out)
    })
    .await;
    stale.expect_code(1);
    assert!(
        stale.stderr.contains(
            "`step.kubernetes_scale.second` on `k8s/default/apps/v1/Deployment/saved-stale/second`: plan is stale: `replicas` was 1 when the plan was made and is 5 now"
        ) || stale.stderr.contains("plan is stale: `replicas` was 1 when the plan was made and is 5 now"),
        "{stale}"
    );
    assert!(
        stale.stderr.contains("step.kubernetes_scale.second"),
        "{stale}"
    );
    assert_eq!(replicas("first").await, Some(2), "the earlier step ran");
    assert_eq!(
        replicas("second").await,
        Some(5),
        "the stale step did not act"
    );
    assert_eq!(
        deployment(&c, "saved-stale", "second")
            .await
            .metadata
            .resource_version,
        rv,
        "the stale step wrote nothing"
    );

    let (work, refused) = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        (work, out)
    })
    .await;
    refused.expect_code(1);
    assert!(refused.stderr.contains("--replan"), "{refused}");
    assert!(
        refused
            .stderr
            .contains("It stopped because the plan is stale"),
        "{refused}"
    );
    assert_eq!(replicas("second").await, Some(5));

    let replanned =
        blocking(move || opsctl_run(&work, &["apply", "--resume", "--replan", "--auto-approve"]))
            .await;
    replanned.expect_success();
    assert!(
        replanned.stdout.contains("~ replicas: 5 -> 3"),
        "the re-plan shows the live value: {replanned}"
    );
    assert_eq!(replicas("second").await, Some(3));
    assert_eq!(replicas("first").await, Some(2));
}
