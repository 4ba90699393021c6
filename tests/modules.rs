//! `module` blocks end to end through the `opsctl` binary: instances with `for_each` and their
//! addresses, outputs flowing between modules and into a root step, a type error in a module
//! input located at the caller, `kill -9` inside a module instance and resume, the
//! unordered-writer check across module instances, and load-time errors (a non-local source, a
//! `for_each` known only at plan, unknown and missing inputs), a `for_each` over a root
//! variable (from `--var`, a saved plan and the journal of a resumed run; a placeholder instance
//! in `validate`), and `providers = { kubernetes = kubernetes.prod }` against kube.
//!
//! Exec steps append a line per run to `effects.log`, so counting lines says exactly which side
//! effects happened and how often. The Kubernetes test uses the shared kube-apiserver of
//! `kube_support` and the library module `modules/node-maintenance`.

mod kube_support;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kube_support::*;
use support::{opsctl, repo_root, run};

/// Lines of `effects.log` per text.
fn effects(work: &Workdir) -> BTreeMap<String, usize> {
    let text = fs::read_to_string(work.path().join("effects.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

/// Copies the library module `modules/NAME` into the workdir's `modules/NAME`.
fn copy_module(work: &Workdir, name: &str) {
    let dir = repo_root().join("modules").join(name);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hcl") {
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            work.write(
                &format!("modules/{name}/{file}"),
                &fs::read_to_string(&path).unwrap(),
            );
        }
    }
}

/// A module of two exec steps: `first` appends `NAME-first`, `second` (after it) `NAME-second`;
/// output `greeting` is `hello NAME`, output `tag` echoes the input `tag`.
const GREETER: &str = r#"
variable "name" {
  type = string
}

variable "tag" {
  type    = string
  default = "none"
}

variable "count_of" {
  type    = number
  default = 1
}

step "exec" "first" {
  command = "echo ${var.name}-first >> effects.log"
}

step "exec" "second" {
  command    = "echo ${var.name}-second >> effects.log"
  depends_on = [step.exec.first]
}

output "greeting" {
  value = "hello ${var.name}"
}

output "tag" {
  value = var.tag
}
"#;

#[test]
fn outputs_flow_from_one_module_into_another_and_into_a_root_step() {
    let work = Workdir::new();
    work.write("modules/greeter/main.hcl", GREETER);
    work.write(
        "main.hcl",
        r#"
module "a" {
  source = "./modules/greeter"
  name   = "alpha"
}

module "b" {
  source = "./modules/greeter"
  name   = "beta"
  tag    = module.a.greeting
}

step "exec" "report" {
  command = "echo 'report ${module.b.tag} / ${module.b.greeting}' >> effects.log"
}

output "b_tag" {
  value = module.b.tag
}
"#,
    );
    let plan = opsctl_run(&work, &["plan"]);
    plan.expect_success();
    for addr in [
        "module.a.step.exec.first",
        "module.a.step.exec.second",
        "module.b.step.exec.first",
        "module.b.step.exec.second",
        "step.exec.report",
    ] {
        assert!(plan.stdout.contains(addr), "{addr} missing\n{plan}");
    }
    assert!(
        plan.stdout.contains("report hello alpha / hello beta"),
        "the root step's command is known at plan from both modules' outputs\n{plan}"
    );
    let out = opsctl_run(&work, &["apply", "--auto-approve"]);
    out.expect_success();
    let e = effects(&work);
    assert_eq!(e.get("report hello alpha / hello beta"), Some(&1), "{e:?}");
    for line in ["alpha-first", "alpha-second", "beta-first", "beta-second"] {
        assert_eq!(e.get(line), Some(&1), "{line}: {e:?}");
    }
    assert!(out.stdout.contains("b_tag = \"hello alpha\""), "{out}");
}

#[test]
fn a_type_error_in_a_module_input_points_at_the_callers_line() {
    let work = Workdir::new();
    work.write("modules/greeter/main.hcl", GREETER);
    work.write(
        "main.hcl",
        "module \"g\" {\n  source   = \"./modules/greeter\"\n  name     = \"x\"\n  count_of = \"many\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("module.g.var.count_of") && out.stderr.contains("main.hcl:4:14"),
        "the error names the input and the caller's line\n{out}"
    );
}

#[test]
fn a_validation_in_a_module_fails_at_the_caller_and_a_missing_input_names_the_module() {
    let work = Workdir::new();
    work.write(
        "modules/v/main.hcl",
        "variable \"size\" {\n  type = number\n  validation {\n    condition     = var.size > 2\n    error_message = \"size must be more than 2.\"\n  }\n}\nvariable \"name\" {\n  type = string\n}\nstep \"noop\" \"x\" {\n  result = var.size\n}\n",
    );
    work.write(
        "main.hcl",
        "module \"small\" {\n  source = \"./modules/v\"\n  size   = 1\n  name   = \"n\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("size must be more than 2.") && out.stderr.contains("main.hcl:3:"),
        "{out}"
    );

    work.write(
        "main.hcl",
        "module \"m\" {\n  source = \"./modules/v\"\n  size   = 3\n  colour = \"red\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("misses the required input `name`")
            && out.stderr.contains("unknown input `colour`"),
        "{out}"
    );
}

#[test]
fn load_time_errors_a_registry_source_and_a_for_each_known_only_at_plan() {
    let work = Workdir::new();
    work.write("modules/greeter/main.hcl", GREETER);
    work.write(
        "main.hcl",
        "module \"r\" {\n  source = \"hashicorp/consul/aws\"\n  name   = \"x\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("not a local path") && out.stderr.contains("main.hcl:2:12"),
        "{out}"
    );

    work.write(
        "main.hcl",
        "step \"noop\" \"names\" {\n  result = [\"a\"]\n}\nmodule \"g\" {\n  source   = \"./modules/greeter\"\n  for_each = toset(step.noop.names.result)\n  name     = each.key\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("which is not known before plan") && out.stderr.contains("main.hcl:6:"),
        "{out}"
    );
}

#[test]
fn diagnostics_inside_a_module_name_its_file_and_the_calling_block() {
    let work = Workdir::new();
    work.write(
        "modules/bad/main.hcl",
        "variable \"n\" {\n  type = string\n}\nstep \"noop\" \"x\" {\n  result = var.n\n  nonsense = 1\n}\n",
    );
    work.write(
        "main.hcl",
        "\nmodule \"bad\" {\n  source = \"./modules/bad\"\n  n      = \"v\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("modules/bad/main.hcl:6:3")
            && out.stderr.contains("in module.bad, called at main.hcl:2:1"),
        "{out}"
    );
}

#[test]
fn the_unordered_writer_check_fires_across_two_module_instances() {
    let work = Workdir::new();
    work.write(
        "modules/writer/main.hcl",
        "variable \"object\" {\n  type = string\n}\nstep \"exec\" \"write\" {\n  command = \"true\"\n  target  = var.object\n}\n",
    );
    work.write(
        "main.hcl",
        "module \"w\" {\n  source   = \"./modules/writer\"\n  for_each = toset([\"one\", \"two\"])\n  object   = \"node/shared\"\n}\n",
    );
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("module.w[\"one\"].step.exec.write")
            && out.stderr.contains("module.w[\"two\"].step.exec.write")
            && out.stderr.contains("neither depends on the other"),
        "{out}"
    );
    // Ordered through `depends_on = [module.first]`, the same writes plan.
    work.write(
        "main.hcl",
        "module \"first\" {\n  source = \"./modules/writer\"\n  object = \"node/shared\"\n}\nmodule \"then\" {\n  source     = \"./modules/writer\"\n  object     = \"node/shared\"\n  depends_on = [module.first]\n}\n",
    );
    opsctl_run(&work, &["plan"]).expect_success();
}

#[test]
fn nested_modules_with_count_and_for_each_have_readable_addresses() {
    let work = Workdir::new();
    work.write("modules/greeter/main.hcl", GREETER);
    work.write(
        "modules/team/main.hcl",
        "variable \"members\" {\n  type = list(string)\n}\nmodule \"member\" {\n  source   = \"../greeter\"\n  for_each = toset(var.members)\n  name     = each.key\n}\noutput \"greetings\" {\n  value = [for m in module.member : m.greeting]\n}\n",
    );
    work.write(
        "main.hcl",
        "module \"team\" {\n  source  = \"./modules/team\"\n  count   = 2\n  members = [\"x${count.index}\", \"y${count.index}\"]\n}\noutput \"all\" {\n  value = flatten(module.team[*].greetings)\n}\n",
    );
    let out = opsctl_run(&work, &["apply", "--auto-approve"]);
    out.expect_success();
    assert!(
        out.stdout
            .contains("module.team[1].module.member[\"y1\"].step.exec.second"),
        "{out}"
    );
    let e = effects(&work);
    for n in ["x0", "y0", "x1", "y1"] {
        assert_eq!(e.get(&format!("{n}-second")), Some(&1), "{e:?}");
    }
    assert!(out.stdout.contains("hello y1"), "{out}");
}

/// A child opsctl killed (SIGKILL) when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_inside_the_second_module_instance_resumes_without_repeating_the_first() {
    let work = Workdir::new();
    // `slow` appends its line on every run, and the first time also waits 30 s (after writing
    // its shell's pid to `started`), long enough to be killed.
    work.write(
        "modules/job/main.hcl",
        r#"
variable "name" {
  type = string
}

step "exec" "prepare" {
  command = "echo ${var.name}-prepare >> effects.log"
}

step "exec" "slow" {
  command    = "echo ${var.name}-slow >> effects.log; if [ ${var.name} = second ] && [ ! -e started ]; then echo $$ > started.tmp; mv started.tmp started; n=0; while [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; fi"
  idempotent = true
  depends_on = [step.exec.prepare]
}
"#,
    );
    work.write(
        "main.hcl",
        r#"
module "first" {
  source = "./modules/job"
  name   = "first"
}

module "second" {
  source     = "./modules/job"
  name       = "second"
  depends_on = [module.first]
}
"#,
    );
    let mut cmd = opsctl(&work, None);
    cmd.args(["apply", "--auto-approve", "--state-dir"])
        .arg(work.state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut bg = Background(cmd.spawn().expect("spawn opsctl"));
    let marker = work.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the second instance's slow step never started"
        );
        assert!(bg.0.try_wait().unwrap().is_none(), "opsctl exited early");
        thread::sleep(Duration::from_millis(50));
    }
    bg.0.kill().expect("kill -9 opsctl");
    bg.0.wait().unwrap();
    let before = effects(&work);
    assert_eq!(
        before,
        BTreeMap::from([
            ("first-prepare".to_string(), 1),
            ("first-slow".to_string(), 1),
            ("second-prepare".to_string(), 1),
            ("second-slow".to_string(), 1),
        ])
    );

    let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
    out.expect_success();
    assert!(
        out.stdout.contains("module.second.step.exec.slow"),
        "resume names the module step\n{out}"
    );
    let after = effects(&work);
    assert_eq!(after.get("first-prepare"), Some(&1), "{after:?}");
    assert_eq!(after.get("first-slow"), Some(&1), "{after:?}");
    assert_eq!(after.get("second-prepare"), Some(&1), "{after:?}");
    assert_eq!(
        after.get("second-slow"),
        Some(&2),
        "only the step in flight runs again (idempotent): {after:?}"
    );
    let _ = Command::new("true").status();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_with_for_each_over_three_nodes_plans_three_instances_and_applies_them() {
    let c = client().await;
    let nodes = ["mod-fe-a", "mod-fe-b", "mod-fe-c"];
    for n in nodes {
        create_node(&c, n).await;
    }
    let work = Workdir::new();
    copy_module(&work, "node-maintenance");
    write_steps(
        &work,
        &server().kubeconfig(),
        r#"
locals {
  nodes = ["mod-fe-a", "mod-fe-b", "mod-fe-c"]
}

module "maintenance" {
  source      = "./modules/node-maintenance"
  for_each    = toset(local.nodes)
  node        = each.key
  maintenance = "echo ${each.key} >> effects.log"
}
"#,
    );
    let out = plan(&work, 2);
    for n in nodes {
        for step in [
            "step.kubernetes_cordon.this",
            "step.kubernetes_drain.this",
            "step.exec.maintenance",
            "step.kubernetes_uncordon.this[0]",
        ] {
            let addr = format!("module.maintenance[\"{n}\"].{step}");
            assert!(out.stdout.contains(&addr), "{addr} missing\n{out}");
        }
    }
    assert!(
        out.stdout
            .contains("  # in module.maintenance[\"mod-fe-b\"]:\n"),
        "changes are grouped by module instance\n{out}"
    );
    let out = apply(&work);
    for n in nodes {
        assert!(!unschedulable(&node(&c, n).await), "{n} is back in service");
    }
    let e = effects(&work);
    assert_eq!(e.len(), 3, "{e:?}\n{out}");
}

/// A root module that calls the greeter once per element of the variable `nodes`; a greeter's
/// steps fail for a name until the file `ok-NAME` exists.
fn write_for_each_over_a_variable(work: &Workdir, sensitive: bool) {
    work.write(
        "modules/greeter/main.hcl",
        &GREETER.replace(
            "command = \"echo ${var.name}-first >> effects.log\"",
            "command = \"test -f ok-${var.name} && echo ${var.name}-first >> effects.log\"",
        ),
    );
    work.write(
        "main.hcl",
        &format!(
            "variable \"nodes\" {{\n  type      = list(string)\n  sensitive = {sensitive}\n}}\n\nmodule \"g\" {{\n  source   = \"./modules/greeter\"\n  for_each = toset(var.nodes)\n  name     = each.key\n}}\n"
        ),
    );
}

#[test]
fn a_module_for_each_over_a_root_variable_takes_it_from_the_flags_the_saved_plan_and_the_journal() {
    let work = Workdir::new();
    write_for_each_over_a_variable(&work, false);
    for n in ["a", "b", "c"] {
        fs::write(work.path().join(format!("ok-{n}")), "").unwrap();
    }

    // Plan: one instance per element of `--var`.
    let out = opsctl_run(&work, &["plan", "--var", r#"nodes=["a","b"]"#]);
    out.expect_success();
    for n in ["a", "b"] {
        assert!(
            out.stdout
                .contains(&format!("module.g[\"{n}\"].step.exec.second")),
            "{out}"
        );
    }
    assert!(!out.stdout.contains("module.g[\"c\"]"), "{out}");

    // Without a value: validate checks the module once, through a placeholder instance; plan
    // asks for the variable.
    let out = run(opsctl(&work, None).arg("validate"));
    out.expect_success();
    assert!(out.stdout.contains("2 step(s)"), "{out}");
    let out = run(opsctl(&work, None).arg("graph"));
    out.expect_success();
    assert!(out.stdout.contains("module.g[*].step.exec.first"), "{out}");
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(out.stderr.contains("nodes"), "{out}");

    // A saved plan keeps the variable: applying it expands the same instances.
    let out = opsctl_run(
        &work,
        &["plan", "--var", r#"nodes=["c"]"#, "--out", "c.plan"],
    );
    out.expect_success();
    let out = opsctl_run(&work, &["apply", "c.plan"]);
    out.expect_success();
    assert_eq!(effects(&work).get("c-second"), Some(&1), "{out}");

    // A run that fails in instance "b" resumes with the journal's variables (no `--var`) and
    // does not repeat instance "a".
    fs::remove_file(work.path().join("ok-b")).unwrap();
    let out = opsctl_run(
        &work,
        &["apply", "--auto-approve", "--var", r#"nodes=["a","b"]"#],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("module.g[\"b\"].step.exec.first"),
        "{out}"
    );
    // `a-first` ran beside `b-first`; `a-second` may or may not have started before the
    // failure halted the run.
    let e = effects(&work);
    assert_eq!(e.get("a-first"), Some(&1), "{e:?}");
    assert_eq!(e.get("b-first"), None, "{e:?}");
    fs::write(work.path().join("ok-b"), "").unwrap();
    let out = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
    out.expect_success();
    let e = effects(&work);
    for line in ["a-first", "a-second", "b-first", "b-second"] {
        assert_eq!(e.get(line), Some(&1), "{line}: {e:?}\n{out}");
    }
}

#[test]
fn a_module_for_each_over_a_sensitive_variable_is_refused() {
    let work = Workdir::new();
    write_for_each_over_a_variable(&work, true);
    let out = opsctl_run(&work, &["plan", "--var", r#"nodes=["hunter2"]"#]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("refers to the sensitive `var.nodes`")
            && out.stderr.contains("main.hcl:8:"),
        "{out}"
    );
    assert!(!out.stderr.contains("hunter2"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_on_a_module_call_pick_the_aliased_kubernetes_provider_for_its_steps() {
    let c = client().await;
    create_node(&c, "mod-prov-a").await;
    create_node(&c, "mod-prov-b").await;
    let work = Workdir::new();
    // The default provider points at a port where nothing listens; only `kubernetes.prod`
    // reaches the cluster.
    let nowhere = kubeconfig_with_user(&work, "nowhere", "https://127.0.0.1:1", "    token: x\n");
    work.write(
        "modules/cordon/main.hcl",
        "variable \"node\" {\n  type = string\n}\n\nstep \"kubernetes_cordon\" \"this\" {\n  node = var.node\n}\n",
    );
    // A nested call inherits its caller's mapping.
    work.write(
        "modules/pair/main.hcl",
        "variable \"nodes\" {\n  type = list(string)\n}\n\nmodule \"one\" {\n  source   = \"../cordon\"\n  for_each = toset(var.nodes)\n  node     = each.key\n}\n",
    );
    let main = |providers: &str| {
        format!(
            "provider \"kubernetes\" {{\n  config_path = \"{}\"\n}}\n\nprovider \"kubernetes\" {{\n  alias       = \"prod\"\n  config_path = \"{}\"\n}}\n\nmodule \"pair\" {{\n  source = \"./modules/pair\"\n  nodes  = [\"mod-prov-a\", \"mod-prov-b\"]\n{providers}}}\n",
            nowhere.display(),
            server().kubeconfig().display()
        )
    };

    // Without the mapping, the module's steps use the default provider and cannot connect.
    work.write("main.hcl", &main(""));
    let out = opsctl_run(&work, &["plan"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("no answer from the API server https://127.0.0.1:1"),
        "{out}"
    );

    work.write(
        "main.hcl",
        &main("\n  providers = {\n    kubernetes = kubernetes.prod\n  }\n"),
    );
    let out = plan(&work, 2);
    assert!(
        out.stdout
            .contains("module.pair.module.one[\"mod-prov-b\"].step.kubernetes_cordon.this"),
        "{out}"
    );
    apply(&work);
    for n in ["mod-prov-a", "mod-prov-b"] {
        assert!(unschedulable(&node(&c, n).await), "{n} is cordoned");
    }
    plan(&work, 0);
}
