//! The plan's renderings for pull requests and CI, through the `opsctl` binary: snapshots of
//! the human, Markdown and JSON renderings of one plan (every action kind the step types plan,
//! a sensitive value, an unknown value, a long multi-line diff; against the real
//! kube-apiserver of `tests/kube_support`), the Markdown size cap (2,000 changes; the longest
//! sections shortened first), `opsctl graph`, and real `plan --format json`, `apply --json` and
//! `validate --json` output validated against the JSON Schemas under `docs/`.

mod kube_support;
mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use kube_support::*;
use serde_json::{json, Value};
use support::{opsctl, run, Output, Workdir};

/// GitHub's limit on a comment, in characters.
const GITHUB_LIMIT: usize = 65_536;

fn opsctl_in(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args);
    if matches!(args.first(), Some(&"plan") | Some(&"apply")) {
        cmd.arg("--state-dir").arg(work.state_dir());
    }
    run(&mut cmd)
}

fn builtin_work(hcl: &str) -> Workdir {
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    work
}

fn schema(name: &str) -> Value {
    let path = support::repo_root().join("docs").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read schema"))
        .expect("schema JSON")
}

/// A validator for `docs/NAME`, with the other schema files registered for `$ref`s.
fn validator(name: &str) -> jsonschema::Validator {
    let base = "https://github.com/opsctl/opsctl/docs/";
    let registry = jsonschema::Registry::new()
        .extend(
            [
                "plan.schema.json",
                "validate.schema.json",
                "apply-events.schema.json",
            ]
            .map(|other| (format!("{base}{other}"), schema(other))),
        )
        .and_then(|b| b.prepare())
        .expect("schema registry");
    jsonschema::options()
        .with_registry(&registry)
        .build(&schema(name))
        .expect("valid schema")
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(doc).unwrap()
    );
}

/// A 40-line shell script; `version` changes a few lines in the middle.
fn script(version: u32) -> String {
    let mut s = String::from("#!/bin/sh\nset -eu\n");
    for i in 1..=38 {
        if i % 13 == 0 {
            s.push_str(&format!("echo \"phase {i} of release {version}\"\n"));
        } else {
            s.push_str(&format!("run_check --step {i} --timeout 30s\n"));
        }
    }
    s
}

const SNAP_NS: &str = "pf-snap";

fn snapshot_hcl() -> String {
    let heredoc: String = script(2).lines().map(|l| format!("    {l}\n")).collect();
    format!(
        r#"variable "token" {{
  type      = string
  default   = "tok-3f9a-very-secret"
  sensitive = true
}}

locals {{
  script = <<-EOT
{heredoc}  EOT
}}

step "kubernetes_manifest" "script" {{
  force_conflicts = true
  manifest = {{
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata   = {{ name = "script", namespace = "{SNAP_NS}" }}
    data       = {{ "run.sh" = local.script }}
  }}
}}

step "kubernetes_manifest" "creds" {{
  manifest = {{
    apiVersion = "v1"
    kind       = "Secret"
    metadata   = {{ name = "creds", namespace = "{SNAP_NS}" }}
    stringData = {{ token = var.token, user = "deploy" }}
  }}
}}

step "exec" "probe" {{
  command    = ["echo", "probe-ok"]
  depends_on = [step.kubernetes_manifest.script]
}}

step "kubernetes_manifest" "probe" {{
  manifest = {{
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata   = {{ name = "probe", namespace = "{SNAP_NS}" }}
    data       = {{ out = step.exec.probe.stdout }}
  }}
}}

step "kubernetes_delete" "old" {{
  api_version = "v1"
  kind        = "Secret"
  namespace   = "{SNAP_NS}"
  name        = "old-token"
}}

step "kubernetes_scale" "web" {{
  kind      = "Deployment"
  namespace = "{SNAP_NS}"
  name      = "web"
  replicas  = 3
  wait      = false
}}

step "kubernetes_scale" "api" {{
  kind      = "Deployment"
  namespace = "{SNAP_NS}"
  name      = "api"
  replicas  = 2
  wait      = false
}}

output "token" {{
  value     = var.token
  sensitive = true
}}

output "probe" {{
  value = step.exec.probe.stdout
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_markdown_and_json_renderings_of_one_plan() {
    let s = server();
    let c = client().await;
    create_namespace(&c, SNAP_NS).await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "script" }, "data": { "run.sh": script(1) },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(c.clone(), SNAP_NS)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "old-token" }, "stringData": { "token": "old" },
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.clone(), SNAP_NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    create_deployment(&c, SNAP_NS, "web", 1).await;
    create_deployment(&c, SNAP_NS, "api", 2).await;
    let work = workdir(&s.kubeconfig(), &snapshot_hcl());
    blocking(move || {
        let human = plan(&work, 2);
        let md = opsctl_run(
            &work,
            &["plan", "--detailed-exitcode", "--format", "markdown"],
        );
        md.expect_code(2);
        let js = opsctl_run(&work, &["plan", "--detailed-exitcode", "--format", "json"]);
        js.expect_code(2);
        for out in [&human, &md, &js] {
            assert!(
                !out.stdout.contains("tok-3f9a"),
                "a secret reached the plan:\n{out}"
            );
        }
        let doc: Value = serde_json::from_str(&js.stdout).expect("one JSON document");
        // A uid and a Secret value's digest (keyed per process) differ from run to run.
        insta::with_settings!({filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uid]"),
            (r"sensitive value #[0-9a-f]{12}", "sensitive value #[digest]"),
        ]}, {
            insta::assert_snapshot!("every_kind_human", human.stdout);
            insta::assert_snapshot!("every_kind_markdown", md.stdout);
            insta::assert_snapshot!(
                "every_kind_json",
                serde_json::to_string_pretty(&doc).unwrap()
            );
        });
        // What the snapshots show, asserted.
        let actions: Vec<&str> = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["action"].as_str().unwrap())
            .collect();
        for a in ["noop", "run", "create", "update", "delete"] {
            assert!(actions.contains(&a), "no `{a}` step in {actions:?}");
        }
        let step = |addr: &str| {
            doc["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["address"] == addr)
                .cloned()
                .unwrap_or_else(|| panic!("no {addr}"))
        };
        let creds = step("step.kubernetes_manifest.creds");
        assert!(
            creds["sensitive"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().contains("token")),
            "{creds}"
        );
        let probe = step("step.kubernetes_manifest.probe");
        assert!(
            probe["effects"][0]
                .as_str()
                .unwrap()
                .contains("known after apply"),
            "{probe}"
        );
        assert_eq!(doc["outputs"]["probe"]["known"], json!(false));
        assert_eq!(probe["depends_on"], json!(["step.exec.probe"]), "{probe}");
        assert!(md.stdout.starts_with("**Plan: "), "{md}");
        assert!(md.stdout.contains("```diff\n"), "{md}");
        assert!(
            md.stdout.contains("-     echo \"phase 13 of release 1\""),
            "{md}"
        );
        assert!(
            md.stdout.contains("+     echo \"phase 13 of release 2\""),
            "{md}"
        );
        assert_valid(&validator("plan.schema.json"), &doc, "plan --format json");
    })
    .await;
}

#[test]
fn markdown_of_2000_changes_stays_under_the_cap_and_says_what_it_cut() {
    let work = builtin_work("step \"noop\" \"n\" {\n  count  = 2000\n  result = count.index\n}\n");
    let out = opsctl_in(&work, &["plan", "--format", "markdown"]);
    out.expect_success();
    let md = &out.stdout;
    assert!(
        md.chars().count() < GITHUB_LIMIT,
        "{} characters",
        md.chars().count()
    );
    assert!(
        md.starts_with("**Plan: 2000 to run, 0 to change, 0 unchanged.**"),
        "{}",
        &md[..200]
    );
    let shown = md.matches("<details>").count();
    assert!(shown > 100 && shown < 2000, "{shown} sections shown");
    let left_out = 2000 - shown;
    assert!(
        md.contains(&format!(
            "{left_out} step section(s) were left out ({left_out} run)"
        )),
        "the note does not say what was cut:\n{}",
        &md[md.len().saturating_sub(800)..]
    );
    // The sections shown are whole: every one that opens closes.
    assert_eq!(shown, md.matches("</details>").count());
}

#[test]
fn markdown_shortens_the_longest_sections_first() {
    // Three huge scripts and ten small steps: only the huge ones are cut.
    let big: String = (0..4000)
        .map(|i| format!("    echo line {i} of a long generated script\n"))
        .collect();
    let mut hcl = format!("locals {{\n  big = <<-EOT\n{big}  EOT\n}}\n\n");
    for i in 0..3 {
        hcl.push_str(&format!(
            "step \"exec\" \"big{i}\" {{\n  command = [\"sh\", \"-c\", local.big]\n}}\n\n"
        ));
    }
    for i in 0..10 {
        hcl.push_str(&format!(
            "step \"exec\" \"small{i}\" {{\n  command = [\"echo\", \"small {i}\"]\n}}\n\n"
        ));
    }
    let work = builtin_work(&hcl);
    let out = opsctl_in(&work, &["plan", "--format", "markdown"]);
    out.expect_success();
    let md = &out.stdout;
    assert!(md.chars().count() < GITHUB_LIMIT, "{}", md.len());
    assert_eq!(
        md.matches("<details>").count(),
        13,
        "no section may be left out"
    );
    for i in 0..10 {
        assert!(
            md.contains(&format!("+ command: \"echo small {i}\"")),
            "small{i} lost its diff"
        );
    }
    assert_eq!(
        md.matches("more diff line(s) cut to fit the comment")
            .count(),
        3,
        "exactly the three long sections are shortened"
    );
    assert!(
        md.contains("were cut from the 3 longest step section(s)"),
        "{}",
        &md[md.len() - 600..]
    );
    // Each big section keeps a fair share, not nothing.
    assert!(md.matches("of a long generated script").count() > 600);
}

#[test]
fn graph_is_dot_in_terraform_convention() {
    let work = builtin_work(
        "locals {\n  n = step.noop.a.result\n}\n\nstep \"noop\" \"a\" {\n  result = 1\n}\n\nstep \"noop\" \"b\" {\n  result = local.n\n}\n\nstep \"noop\" \"c\" {\n  depends_on = [step.noop.b]\n}\n\nstep \"noop\" \"d\" {}\n",
    );
    let out = opsctl_in(&work, &["graph"]);
    out.expect_success();
    insta::assert_snapshot!("graph_dot", out.stdout);
    assert!(out.stdout.contains("\"step.noop.b\" -> \"step.noop.a\";"));
    assert!(out.stdout.contains("\"step.noop.c\" -> \"step.noop.b\";"));
}

#[test]
fn validate_json_matches_schema_with_file_line_column() {
    let v = validator("validate.schema.json");
    let work = builtin_work("step \"noop\" \"a\" {}\n");
    let out = opsctl_in(&work, &["validate", "--json"]);
    out.expect_success();
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_valid(&v, &doc, "validate --json (valid)");
    assert_eq!(doc["valid"], json!(true));

    let work = builtin_work(
        "step \"noop\" \"a\" {\n  result = step.noop.missing.result\n}\n\nstep \"nope\" \"b\" {}\n",
    );
    let out = opsctl_in(&work, &["validate", "--json"]);
    out.expect_code(1);
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_valid(&v, &doc, "validate --json (invalid)");
    assert_eq!(doc["valid"], json!(false));
    assert!(doc["error_count"].as_u64().unwrap() >= 2, "{doc}");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], json!("error"));
    assert_eq!(d["range"]["filename"], json!("main.hcl"), "{doc}");
    assert!(d["range"]["start"]["line"].as_u64().unwrap() >= 1, "{doc}");
    assert!(
        d["range"]["start"]["column"].as_u64().unwrap() >= 1,
        "{doc}"
    );
}

#[test]
fn plan_json_of_builtin_steps_matches_schema() {
    let work = builtin_work(
        "variable \"pw\" {\n  default   = \"hunter2-secret\"\n  sensitive = true\n}\n\nstep \"exec\" \"login\" {\n  command = [\"echo\", var.pw]\n}\n\nstep \"noop\" \"n\" {\n  for_each = toset([\"a\", \"b\"])\n  result   = step.exec.login.stdout\n}\n\noutput \"out\" {\n  value     = step.noop.n[\"a\"].result\n  sensitive = true\n}\n",
    );
    let out = opsctl_in(&work, &["plan", "--format", "json"]);
    out.expect_success();
    assert!(!out.stdout.contains("hunter2"), "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_valid(&validator("plan.schema.json"), &doc, "plan --format json");
    assert_eq!(doc["format_version"], json!("1.0"));
    assert_eq!(doc["steps"][1]["index"], json!("a"), "{doc}");
    assert_eq!(doc["outputs"]["out"]["known"], json!(false));

    // A saved plan shows the same document, with its digest (`show --json`).
    opsctl_in(&work, &["plan", "--out", "saved.json"]).expect_success();
    let shown = opsctl_in(&work, &["show", "--json", "saved.json"]);
    shown.expect_success();
    assert!(!shown.stdout.contains("hunter2"), "{shown}");
    let mut shown: Value = serde_json::from_str(&shown.stdout).expect("JSON");
    assert_valid(&validator("plan.schema.json"), &shown, "show --json");
    assert!(shown["plan_digest"].is_string(), "{shown}");
    shown.as_object_mut().unwrap().remove("plan_digest");
    assert_eq!(shown, doc, "show --json prints the plan's document");

    // A plan that fails: an errored document, still valid.
    let work = builtin_work("step \"noop\" \"b\" {\n  result = tonumber(\"x\")\n}\n");
    let out = opsctl_in(&work, &["plan", "--format", "json"]);
    out.expect_code(1);
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_valid(&validator("plan.schema.json"), &doc, "errored plan");
    assert_eq!(doc["errored"], json!(true));

    // A configuration that does not even parse: an errored document pointing at the file.
    let work = builtin_work("step \"noop\" \"b\" {\n  result = \n}\n");
    let out = opsctl_in(&work, &["plan", "--format", "json"]);
    out.expect_code(1);
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_valid(
        &validator("plan.schema.json"),
        &doc,
        "unparsable configuration",
    );
    assert_eq!(
        doc["diagnostics"][0]["range"]["filename"],
        json!("main.hcl"),
        "{doc}"
    );
}

fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {l:?}\n{out}"))
        })
        .collect()
}

#[test]
fn apply_json_is_one_event_per_line_matching_the_schema() {
    let v = validator("apply-events.schema.json");
    let work = builtin_work(
        "step \"exec\" \"a\" {\n  command = [\"sh\", \"-c\", \"echo a >> log\"]\n}\n\nstep \"noop\" \"b\" {\n  depends_on = [step.exec.a]\n}\n\noutput \"b\" {\n  value = step.noop.b.result\n}\n",
    );
    let out = opsctl_in(&work, &["apply", "--auto-approve", "--json"]);
    out.expect_success();
    let evs = events(&out);
    for e in &evs {
        assert_valid(&v, e, "apply --json event");
    }
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"run_started"), "{types:?}");
    assert_eq!(types.last(), Some(&"run_finished"), "{types:?}");
    for t in ["planned_change", "step_started", "step_finished"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let last = evs.last().unwrap();
    assert_eq!(last["status"], json!("succeeded"));
    assert_eq!(last["counts"]["run"], json!(2));
    assert_eq!(work.read("log"), "a\n");

    // A failing step: step_failed with its timing, run_finished failed, exit 1.
    let work =
        builtin_work("step \"exec\" \"bad\" {\n  command = [\"sh\", \"-c\", \"exit 3\"]\n}\n");
    let out = opsctl_in(&work, &["apply", "--auto-approve", "--json"]);
    out.expect_code(1);
    let evs = events(&out);
    for e in &evs {
        assert_valid(&v, e, "apply --json event");
    }
    let failed = evs
        .iter()
        .find(|e| e["type"] == "step_failed")
        .expect("step_failed");
    assert_eq!(failed["address"], json!("step.exec.bad"));
    assert!(failed["elapsed_ms"].is_u64(), "{failed}");
    assert_eq!(evs.last().unwrap()["status"], json!("failed"));

    // Nothing to do.
    let work = builtin_work(
        "step \"exec\" \"made\" {\n  command = [\"true\"]\n  creates = \"main.hcl\"\n}\n",
    );
    let out = opsctl_in(&work, &["apply", "--auto-approve", "--json"]);
    out.expect_success();
    let evs = events(&out);
    assert_eq!(evs.len(), 1, "{out}");
    assert_valid(&v, &evs[0], "apply --json event");
    assert_eq!(evs[0]["status"], json!("nothing_to_do"));

    // `--json` needs `--auto-approve` (there is no one to ask).
    let out = opsctl_in(&work, &["apply", "--json"]);
    out.expect_code(1);
}

/// Plans `hcl` in-process with the library (built-in step types: no API).
fn plan_in_process(hcl: &str) -> opsctl::plan::Plan {
    let work = builtin_work(hcl);
    let registry = opsctl::provider::Registry::standard();
    let config = opsctl::config::load_dir(work.path()).expect("config");
    let graph = opsctl::graph::build(&config, &registry).expect("graph");
    let vars = opsctl::plan::vars::resolve(&config, &Default::default()).expect("vars");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (plan, _) = rt
        .block_on(opsctl::plan::plan(
            std::sync::Arc::new(config),
            std::sync::Arc::new(graph),
            &registry,
            vars,
            &opts(),
        ))
        .expect("plan");
    plan
}

fn opts() -> opsctl::plan::PlanOptions {
    opsctl::plan::PlanOptions {
        read: true,
        ..Default::default()
    }
}

#[test]
fn every_action_kind_including_replace_renders_in_each_format() {
    use opsctl::provider::{Action, Change, FieldChange};
    // No step type plans `replace` yet: the renderings of each action kind are checked on
    // planned `noop` steps whose changes are set here, with a sensitive, an unknown and a
    // multi-line field.
    let mut plan = plan_in_process(
        "variable \"pw\" {\n  default   = \"pa55-word-xyz\"\n  sensitive = true\n}\n\nstep \"noop\" \"s\" {\n  for_each = toset([\"a_noop\", \"b_run\", \"c_create\", \"d_update\", \"e_delete\", \"f_replace\"])\n  result   = var.pw\n}\n",
    );
    let field = |path: &str, b: Option<Value>, a: Option<Value>| FieldChange {
        path: path.into(),
        before: b,
        after: a,
    };
    let unknown = json!("\u{1}(known after apply)\u{1}");
    let kinds = [
        Action::NoOp,
        Action::Run,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Replace,
    ];
    for (inst, action) in plan.instances.iter_mut().zip(kinds) {
        inst.sensitive_args = vec!["result".into()];
        inst.change = Change {
            action,
            fields: vec![
                field(
                    "spec.replicas",
                    (action != Action::Create).then(|| json!(2)),
                    (action != Action::Delete).then(|| json!(3)),
                ),
                field("result", Some(json!("x")), Some(json!("y"))),
                field(
                    "status.id",
                    None,
                    (action == Action::Replace || action == Action::Create)
                        .then(|| unknown.clone()),
                ),
                field(
                    "data.script",
                    (action == Action::Update).then(|| json!("line 1\nline 2\nline 3\n")),
                    (action == Action::Update).then(|| json!("line 1\nline two\nline 3\nline 4\n")),
                ),
            ],
            summary: vec![format!("{} effect", action.as_str())],
        };
    }
    let human = opsctl::render::plan_text(&plan);
    let md = opsctl::render::markdown::plan_markdown(&plan);
    let doc = opsctl::render::json::plan_document(&plan);
    for text in [&human, &md, &doc.to_string()] {
        assert!(
            !text.contains("pa55"),
            "a secret reached a rendering:\n{text}"
        );
    }
    insta::assert_snapshot!("all_actions_human", human);
    insta::assert_snapshot!("all_actions_markdown", md);
    insta::assert_snapshot!(
        "all_actions_json",
        serde_json::to_string_pretty(&doc).unwrap()
    );
    assert_valid(&validator("plan.schema.json"), &doc, "plan document");
    let actions: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["noop", "run", "create", "update", "delete", "replace"]
    );
    assert_eq!(
        doc["steps"][5]["after_unknown"],
        json!({ "status.id": true })
    );
    assert!(doc["steps"][2]["before"].get("spec.replicas").is_none());
    assert!(doc["steps"][4]["after"].get("spec.replicas").is_none());
    assert_eq!(doc["steps"][3]["sensitive"], json!(["result"]));
    assert!(
        md.contains("-/+ step.noop.s[&quot;f_replace&quot;]")
            || md.contains("-/+ step.noop.s[\"f_replace\"]"),
        "{md}"
    );
}
