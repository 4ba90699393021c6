//! Configuration errors, bad input and the language, through the real `opsctl` binary.
//!
//! Every test here uses only `noop` and `exec` steps, so nothing talks to an API and no
//! server is needed. Errors are checked for their message *and* their `main.hcl:LINE:COL`;
//! a few full renderings are pinned with insta snapshots.

mod support;

use support::{opsctl, run, Output, Workdir};

/// Runs `opsctl ARGS` in a workdir holding `main.hcl` = `hcl`.
fn opsctl_with(hcl: &str, args: &[&str]) -> (Workdir, Output) {
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    let out = run(opsctl(&work, None).args(args));
    (work, out)
}

/// Asserts that stdout contains `text`.
fn out_has(out: &Output, text: &str) {
    assert!(
        out.stdout.contains(text),
        "missing {text:?} in stdout\n{out}"
    );
}

/// Asserts that stderr contains `text`.
fn err_has(out: &Output, text: &str) {
    assert!(
        out.stderr.contains(text),
        "missing {text:?} in stderr\n{out}"
    );
}

/// Asserts a clean failure: exit 1 and no panic.
fn assert_fails(out: &Output) {
    out.expect_code(1);
    assert!(!out.stderr.contains("panicked"), "opsctl panicked:\n{out}");
}

/// Asserts a failure whose stderr reports `message` at `location` (`main.hcl:L:C`).
fn assert_error_at(out: &Output, message: &str, location: &str) {
    assert_fails(out);
    assert!(
        out.stderr.contains(&format!("error: {message}")),
        "expected `error: {message}` in stderr\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("--> {location}\n")),
        "expected `--> {location}` in stderr\n{out}"
    );
}

/// `opsctl validate` of `hcl` must fail with `message` at `location`.
fn validate_error(hcl: &str, message: &str, location: &str) -> Output {
    let (_work, out) = opsctl_with(hcl, &["validate"]);
    assert_error_at(&out, message, location);
    out
}

// ---------------------------------------------------------------------------------------
// Validation errors, each with its exact position.
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_step_reference_in_depends_on() {
    let out = validate_error(
        "step \"noop\" \"a\" {\n  target     = \"x\"\n  depends_on = [step.noop.missing]\n}\n",
        "unknown reference `step.noop.missing`: no step `step.noop.missing` is declared",
        "main.hcl:3:17",
    );
    // The source line and a caret under the whole reference.
    err_has(&out, "3 |   depends_on = [step.noop.missing]\n");
    err_has(&out, &format!("  |{}{}\n", " ".repeat(17), "^".repeat(17)));
}

#[test]
fn unknown_variable_reference() {
    validate_error(
        "step \"noop\" \"a\" {\n  result = var.nope\n}\n",
        "unknown reference `var.nope`: no variable `nope` is declared",
        "main.hcl:2:12",
    );
}

#[test]
fn unknown_local_reference() {
    validate_error(
        "locals {\n  a = 1\n}\nstep \"noop\" \"a\" {\n  result = \"${local.a}-${local.nope}\"\n}\n",
        "unknown reference `local.nope`: no local value `local.nope` is declared",
        "main.hcl:5:26",
    );
}

#[test]
fn unknown_data_reference() {
    validate_error(
        "step \"noop\" \"a\" {\n  result = data.eks_nodegroup.gone.scaling\n}\n",
        "unknown reference `data.eks_nodegroup.gone.scaling`: no data source `data.eks_nodegroup.gone` is declared",
        "main.hcl:2:12",
    );
}

#[test]
fn dependency_cycle_names_every_member() {
    let hcl = r#"step "noop" "a" { depends_on = [step.noop.c] }
step "noop" "b" { depends_on = [step.noop.a] }
step "noop" "c" { result = step.noop.b.result }
"#;
    let out = validate_error(
        hcl,
        "dependency cycle between `step.noop.a`, `step.noop.b`, `step.noop.c`",
        "main.hcl:1:1",
    );
    for note in [
        "= note: `step.noop.a` is declared at main.hcl:1:1",
        "= note: `step.noop.b` is declared at main.hcl:2:1",
        "= note: `step.noop.c` is declared at main.hcl:3:1",
    ] {
        err_has(&out, note);
    }
    insta::assert_snapshot!("dependency_cycle", out.stderr);
}

#[test]
fn self_dependency_and_cycle_through_a_local() {
    validate_error(
        "step \"noop\" \"a\" {\n  depends_on = [step.noop.a]\n}\n",
        "dependency cycle between `step.noop.a`",
        "main.hcl:1:1",
    );
    let out = validate_error(
        "locals {\n  x = step.noop.a.result\n}\nstep \"noop\" \"a\" {\n  result = local.x\n}\n",
        "dependency cycle between `local.x`, `step.noop.a`",
        "main.hcl:2:3",
    );
    err_has(&out, "`step.noop.a` is declared at main.hcl:4:1");
}

#[test]
fn duplicate_address() {
    let out = validate_error(
        "step \"noop\" \"a\" {}\n\nstep \"noop\" \"a\" {\n  result = 1\n}\n",
        "duplicate address `step.noop.a`",
        "main.hcl:3:1",
    );
    insta::assert_snapshot!("duplicate_address", out.stderr);
}

#[test]
fn duplicate_across_files_points_at_both() {
    let work = Workdir::new();
    work.write("a.hcl", "step \"noop\" \"x\" {}\n");
    work.write("b.hcl", "\n\nstep \"noop\" \"x\" {}\n");
    let out = run(opsctl(&work, None).arg("validate"));
    assert_error_at(&out, "duplicate address `step.noop.x`", "b.hcl:3:1");
    err_has(&out, "= note: first defined at a.hcl:1:1");
}

const UNORDERED: &str = r#"step "noop" "a" { target = "db/main" }
step "exec" "b" {
  command = "true"
  target  = "db/main"
}
"#;

#[test]
fn unordered_writers_name_both_steps_and_the_object() {
    for cmd in ["validate", "plan"] {
        let (_work, out) = opsctl_with(UNORDERED, &[cmd]);
        assert_fails(&out);
        // Both steps, in either order, then the object.
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains("`step.noop.a`") && first.contains("`step.exec.b`"),
            "{out}"
        );
        err_has(&out, "both act on `db/main` but neither depends on the other; add `depends_on` to order them");
        err_has(&out, "`step.noop.a` is declared at main.hcl:1:1");
        err_has(&out, "`step.exec.b` is declared at main.hcl:2:1");
    }
}

#[test]
fn unordered_writers_between_counted_instances() {
    let hcl = "step \"noop\" \"a\" {\n  count  = 2\n  target = \"t${count.index}\"\n}\n\
               step \"noop\" \"b\" {\n  target     = \"t1\"\n  depends_on = [step.noop.a[0]]\n}\n";
    let out = validate_error(
        hcl,
        "`step.noop.a[1]` and `step.noop.b` both act on `t1`",
        "main.hcl:5:1",
    );
    assert!(!out.stderr.contains("step.noop.a[0]`"), "{out}");
}

#[test]
fn writers_ordered_through_a_local_and_a_step_are_valid() {
    let hcl = r#"step "noop" "a" { target = "x" }
locals { l = step.noop.a.result }
step "noop" "m" { result = local.l }
step "noop" "b" {
  target     = "x"
  depends_on = [step.noop.m]
}
"#;
    let (_work, out) = opsctl_with(hcl, &["validate"]);
    out.expect_success();
    out_has(&out, "The configuration is valid: 3 step(s)");
}

#[test]
fn unknown_step_type() {
    validate_error(
        "step \"noop\" \"ok\" {}\nstep \"foo\" \"a\" {}\n",
        "unknown step type `foo`; known step types: approval, eks_cluster_version, eks_nodegroup_scaling, eks_nodegroup_version, exec, http_check, kubernetes_annotate, kubernetes_cordon, kubernetes_delete, kubernetes_drain, kubernetes_job, kubernetes_label, kubernetes_manifest, kubernetes_patch, kubernetes_rollout_restart, kubernetes_rollout_undo, kubernetes_scale, kubernetes_set_image, kubernetes_uncordon, kubernetes_wait, noop, rds_instance, rds_read_replica, rds_reboot, rds_restore_point_in_time, rds_restore_snapshot, rds_snapshot, rds_snapshot_export, vault_database_config, vault_database_role, vault_database_rotate_root, vault_kv, vault_lease_revoke, vault_policy, vault_unseal",
        "main.hcl:2:6",
    );
}

#[test]
fn unknown_argument() {
    validate_error(
        "step \"exec\" \"a\" {\n  command = \"true\"\n    bogus = 1\n}\n",
        "unknown argument `bogus` for step type `exec`; expected one of: command, environment, \
         working_dir, creates, unless, idempotent, target",
        "main.hcl:3:5",
    );
}

#[test]
fn wrong_literal_type_at_validate() {
    validate_error(
        "step \"exec\" \"a\" {\n  command = 42\n}\n",
        "wrong type for argument `command`: expected a string or a list of strings, got a number",
        "main.hcl:2:13",
    );
    validate_error(
        "step \"exec\" \"a\" {\n  command    = \"true\"\n  idempotent = \"yes\"\n}\n",
        "wrong type for argument `idempotent`: expected a bool, got a string",
        "main.hcl:3:16",
    );
}

#[test]
fn wrong_evaluated_type_at_plan() {
    let hcl = "locals {\n  n = 5\n}\nstep \"exec\" \"a\" {\n  command = local.n\n}\n";
    for cmd in ["validate", "plan"] {
        let (_work, out) = opsctl_with(hcl, &[cmd]);
        assert_error_at(
            &out,
            "wrong type for argument `command` of `step.exec.a`: expected a string or a list of strings, got a number",
            "main.hcl:5:13",
        );
    }
}

#[test]
fn missing_required_argument() {
    validate_error(
        "\nstep \"exec\" \"restart\" {\n  idempotent = true\n}\n",
        "missing required argument `command` in `step.exec.restart`",
        "main.hcl:2:1",
    );
}

#[test]
fn syntax_error() {
    let out = validate_error(
        "step \"noop\" \"a\" {\n  result = \"x\" ++ 1\n}\n",
        "syntax error: ",
        "main.hcl:2:17",
    );
    err_has(&out, "2 |   result = \"x\" ++ 1\n");
}

#[test]
fn count_index_and_each_outside_their_blocks() {
    validate_error(
        "step \"noop\" \"a\" {\n  for_each = toset([\"x\"])\n  result   = count.index\n}\n",
        "`count.index` is only available in a block that sets `count`",
        "main.hcl:3:14",
    );
    validate_error(
        "output \"o\" {\n  value = count.index\n}\n",
        "`count.index` is only available in a block that sets `count`",
        "main.hcl:2:11",
    );
    validate_error(
        "step \"noop\" \"a\" {\n  count  = 1\n  result = each.key\n}\n",
        "`each` is only available in a block that sets `for_each`",
        "main.hcl:3:12",
    );
}

#[test]
fn unknown_function() {
    validate_error(
        "step \"noop\" \"a\" {\n  result = frobnicate(\"x\")\n}\n",
        "unknown function `frobnicate`",
        "main.hcl:2:12",
    );
}

/// Regression (fixed): a call to a function that does not exist is only found when the call is evaluated with
/// known arguments (src/config/eval.rs:185 turns any evaluation error of an expression that
/// refers to an unknown value into "unknown"). Here `validate` and `plan` both accept it, and
/// `apply` runs `step.exec.a` before failing on `step.noop.b`.
#[test]
fn unknown_function_with_apply_time_argument_is_rejected_before_apply() {
    let hcl = r#"step "exec" "a" {
  command = "echo hi"
}
step "noop" "b" {
  result = frobnicate(step.exec.a.stdout)
}
"#;
    for cmd in ["validate", "plan"] {
        let (_work, out) = opsctl_with(hcl, &[cmd]);
        assert_error_at(&out, "", "main.hcl:5:12");
        err_has(&out, "frobnicate");
    }
}

#[test]
fn several_errors_are_all_reported() {
    let hcl = r#"step "noop" "a" { depends_on = [step.noop.missing] }
step "exec" "b" { command = true }
"#;
    let out = validate_error(
        hcl,
        "unknown reference `step.noop.missing`",
        "main.hcl:1:33",
    );
    assert_error_at(
        &out,
        "wrong type for argument `command`: expected a string or a list of strings, got a bool",
        "main.hcl:2:29",
    );
    assert!(out.stderr.ends_with("\n2 errors\n"), "{out}");
    insta::assert_snapshot!("two_errors", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Bad input: variables and flags.
// ---------------------------------------------------------------------------------------

const VARS: &str = r#"variable "date" { type = string }
variable "n" {
  type    = number
  default = 1
}
variable "env" {
  type    = string
  default = "dev"
  validation {
    condition     = contains(["dev", "prod"], var.env)
    error_message = "env must be dev or prod."
  }
}
step "exec" "a" {
  command = "echo ${var.date} ${var.n} ${var.env}"
}
"#;

#[test]
fn missing_required_variable() {
    let (work, out) = opsctl_with(VARS, &["plan"]);
    assert_error_at(
        &out,
        "no value for required variable `date`",
        "main.hcl:1:1",
    );
    insta::assert_snapshot!("missing_variable", out.stderr);
    // validate does not need the value.
    let out = run(opsctl(&work, None).arg("validate"));
    out.expect_success();
    out_has(
        &out,
        "The configuration is valid: 1 step(s), 0 data source(s), 3 variable(s).",
    );
}

/// Regression (fixed): `validate` is documented to need no variable values, but a required variable used in
/// `count`, `for_each` or `timeout` makes it fail with "depends on a value known only after
/// apply" / "must be a known duration" (src/plan/mod.rs `expand` and `eval_meta_timeout`):
/// `validate` resolves missing variables to the apply-time unknown marker
/// (src/plan/vars.rs `resolve_lenient`), which those reject.
#[test]
fn validate_accepts_missing_variables_in_meta_arguments() {
    let hcl = r#"variable "n" {
  type = number
}
variable "names" {
  type = set(string)
}
variable "t" {
  type = string
}
step "noop" "a" {
  count = var.n
}
step "noop" "b" {
  for_each = var.names
}
step "noop" "c" {
  timeout = var.t
}
"#;
    let (_work, out) = opsctl_with(hcl, &["validate"]);
    out.expect_success();
    out_has(&out, "The configuration is valid");
}

#[test]
fn malformed_var_flag() {
    for bad in ["foo", "=x"] {
        let (_work, out) = opsctl_with(VARS, &["plan", "--var", bad]);
        assert_fails(&out);
        assert_eq!(
            out.stderr,
            format!("error: invalid `--var` `{bad}`: expected `NAME=VALUE`\n")
        );
    }
}

#[test]
fn var_for_undeclared_variable() {
    for cmd in ["validate", "plan"] {
        let (_work, out) = opsctl_with(VARS, &[cmd, "--var", "date=x", "--var", "bogus=1"]);
        assert_fails(&out);
        err_has(
            &out,
            "error: `--var bogus=...` sets an undeclared variable `bogus`",
        );
    }
}

#[test]
fn wrong_typed_variable_value() {
    for extra in [&["--var", "n=abc"][..], &["--var", "n=[1]"]] {
        let mut args = vec!["plan", "--var", "date=x"];
        args.extend_from_slice(extra);
        let (_work, out) = opsctl_with(VARS, &args);
        assert_error_at(
            &out,
            "invalid value for variable `n` from `--var n`: ",
            "main.hcl:2:1",
        );
    }
    let work = Workdir::new();
    work.write("main.hcl", VARS);
    work.write("vars/prod.vars", "date = \"x\"\nn = \"abc\"\n");
    let out = run(opsctl(&work, None).args(["plan", "--var-file", "vars/prod.vars"]));
    assert_error_at(
        &out,
        "invalid value for variable `n` from var file `vars/prod.vars`: expected a number, got `abc`",
        "main.hcl:2:1",
    );
}

/// Regression (fixed): for a `number` (or `bool`) variable, `--var n=abc` / `OPSCTL_VAR_n=abc` is parsed as
/// an HCL expression and reported as "cannot evaluate `abc`: undefined variable `abc`", and
/// `--var n=12abc` as "cannot parse `12abc`:  --> HCL parse error in line 1, column 3"
/// (src/plan/vars.rs:123-129, in `resolve_with`, falls back to the raw string only for `any`).
/// The value should be reported as not being a number, as it is from a var file.
#[test]
fn wrong_typed_variable_value_says_what_was_expected() {
    for value in ["n=abc", "n=12abc"] {
        let (_work, out) = opsctl_with(VARS, &["plan", "--var", "date=x", "--var", value]);
        assert_error_at(&out, "invalid value for variable `n`", "main.hcl:2:1");
        err_has(&out, "expected a number");
        assert!(!out.stderr.contains("undefined variable"), "{out}");
    }
}

#[test]
fn failed_validation() {
    let (_work, out) = opsctl_with(VARS, &["plan", "--var", "date=x", "--var", "env=qa"]);
    assert_error_at(
        &out,
        "invalid value for variable `env`: env must be dev or prod.",
        "main.hcl:10:21",
    );
}

#[test]
fn bad_flags_and_subcommands_fail_cleanly() {
    let cases: &[&[&str]] = &[
        &["plan", "--frobnicate"],
        &["plan", "-x"],
        &["frobnicate"],
        &["plan", "--parallelism", "0"],
        &["plan", "-parallelism=abc"],
        &["validate", "--var"],
        &["apply", "--in-doubt=rerun"],
    ];
    for args in cases {
        let (_work, out) = opsctl_with("step \"noop\" \"a\" {}\n", args);
        assert_ne!(out.code, 0, "{args:?} succeeded\n{out}");
        assert!(!out.stderr.contains("panicked"), "{args:?} panicked\n{out}");
        assert!(out.stderr.starts_with("error: "), "{args:?}\n{out}");
    }
    // No subcommand: usage on stderr, non-zero.
    let (_work, out) = opsctl_with("step \"noop\" \"a\" {}\n", &[]);
    assert_fails(&out);
    err_has(&out, "Usage: opsctl");
    let (_work, out) = opsctl_with("", &["-chdir=nope", "validate"]);
    assert_fails(&out);
    err_has(&out, "cannot change to directory `nope`");
}

// ---------------------------------------------------------------------------------------
// The language, flags and apply of noop/exec configurations.
// ---------------------------------------------------------------------------------------

const LANGUAGE: &str = r#"variable "who" {
  type    = string
  default = "default"
}
locals {
  names    = ["alpha", "beta"]
  greeting = format("hello %s", upper(var.who))
}
step "noop" "a" {
  count  = 3
  result = "n${count.index}"
}
step "noop" "b" {
  for_each = toset(local.names)
  result   = "${each.key}=${length(each.value)}"
}
step "exec" "c" {
  command = "echo ${local.greeting} ${join(",", local.names)} ${length(local.names)} ${jsonencode({ k = 1 })}"
}
output "second" { value = step.noop.a[1].result }
output "beta" { value = step.noop.b["beta"].result }
"#;

#[test]
fn count_for_each_locals_and_functions_in_plan() {
    let (_work, out) = opsctl_with(LANGUAGE, &["plan"]);
    out.expect_success();
    for want in [
        "  > step.noop.a[0]\n",
        "  > step.noop.a[1]\n",
        "  > step.noop.a[2]\n",
        "  > step.noop.b[\"alpha\"]\n",
        "  > step.noop.b[\"beta\"]\n",
        "      > command: \"echo hello DEFAULT alpha,beta 2 {\\\"k\\\":1}\"\n",
        "Plan: 6 to run, 0 to change, 0 unchanged.",
        "  second = \"n1\"\n",
        "  beta = \"beta=4\"\n",
    ] {
        out_has(&out, want);
    }
    assert!(!out.stdout.contains("step.noop.a[3]"), "{out}");
}

#[test]
fn variable_precedence_env_then_var_file_then_var() {
    let work = Workdir::new();
    work.write("main.hcl", LANGUAGE);
    work.write("inputs/who.vars", "who = \"file\"\n");
    let command = |args: &[&str], env: Option<&str>| {
        let mut cmd = opsctl(&work, None);
        cmd.arg("plan").args(args);
        if let Some(v) = env {
            cmd.env("OPSCTL_VAR_who", v);
        }
        let out = run(&mut cmd);
        out.expect_success();
        let line = out.stdout.lines().find(|l| l.contains("> command:"));
        line.unwrap_or_else(|| panic!("no command line\n{out}"))
            .to_string()
    };
    assert!(command(&[], None).contains("hello DEFAULT"));
    assert!(command(&[], Some("env")).contains("hello ENV"));
    let file = ["--var-file", "inputs/who.vars"];
    assert!(command(&file, Some("env")).contains("hello FILE"));
    let all = ["--var-file", "inputs/who.vars", "--var", "who=cli"];
    assert!(command(&all, Some("env")).contains("hello CLI"));
    // Later `--var` wins.
    assert!(command(&["--var", "who=one", "--var", "who=two"], None).contains("hello TWO"));
}

#[test]
fn terraform_single_dash_flags() {
    let work = Workdir::new();
    work.write("cfg/main.hcl", VARS);
    let out = run(opsctl(&work, None).args(["-chdir=cfg", "plan", "-var", "date=d1"]));
    out.expect_success();
    out_has(&out, "> command: \"echo d1 1 dev\"");
    let out = run(opsctl(&work, None).args([
        "plan",
        "-chdir=cfg",
        "-var=date=d=2",
        "-var=n=7",
        "-parallelism=3",
        "-detailed-exitcode",
    ]));
    out.expect_code(2);
    out_has(&out, "> command: \"echo d=2 7 dev\"");
    let out = run(opsctl(&work, None).args(["--chdir", "cfg", "validate"]));
    out.expect_success();
    let out = run(opsctl(&work, None).args([
        "-chdir=cfg",
        "apply",
        "-auto-approve",
        "-var",
        "date=d3",
        "-state-dir=st",
    ]));
    out.expect_success();
    out_has(&out, "Apply complete!");
    assert!(work.path().join("cfg/st").is_dir());
}

#[test]
fn exec_guards_plan_as_no_op() {
    let hcl = r#"step "exec" "made" {
  command = "touch marker"
  creates = "marker"
}
step "exec" "checked" {
  command = ["false"]
  unless  = "test -f marker"
}
"#;
    let (work, out) = opsctl_with(hcl, &["plan", "-detailed-exitcode"]);
    out.expect_code(2);
    out_has(&out, "Plan: 2 to run, 0 to change, 0 unchanged.");
    work.write("marker", "");
    let out = run(opsctl(&work, None).args(["plan", "-detailed-exitcode"]));
    out.expect_success();
    out_has(&out, "No changes.");
    out_has(&out, "Plan: 0 to run, 0 to change, 2 unchanged.");
    let out = run(opsctl(&work, None).args(["apply", "--auto-approve"]));
    out.expect_success();
    out_has(&out, "Apply complete! Nothing to do.");
}

#[test]
fn apply_passes_exec_output_to_later_steps() {
    let hcl = r#"step "exec" "a" {
  command = "printf hello"
}
step "exec" "b" {
  command = "echo got ${step.exec.a.stdout} | tee b.txt"
}
output "b" { value = step.exec.b.stdout }
"#;
    let (work, out) = opsctl_with(hcl, &["plan"]);
    out.expect_success();
    out_has(&out, "> command: (known after apply)");
    out_has(&out, "  b = (known after apply)");
    let out = run(opsctl(&work, None).args(["apply", "--auto-approve"]));
    out.expect_success();
    let (_, after) = out
        .stdout
        .split_once("Apply complete!")
        .unwrap_or_else(|| panic!("no `Apply complete!`\n{out}"));
    assert!(after.contains("  b = \"got hello\\n\""), "{out}");
    assert_eq!(work.read("b.txt"), "got hello\n");
}

#[test]
fn failing_exec_stops_the_apply() {
    let hcl = r#"step "exec" "first" {
  command = "echo ok > first.txt"
}
step "exec" "fail" {
  command    = "echo oops >&2; exit 3"
  depends_on = [step.exec.first]
}
step "exec" "after" {
  command    = "touch after.txt"
  depends_on = [step.exec.fail]
}
"#;
    let (work, out) = opsctl_with(hcl, &["apply", "--auto-approve"]);
    assert_fails(&out);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("step.exec.fail"), "{out}");
    assert!(all.contains("exited with status 3"), "{out}");
    assert!(!all.contains("Apply complete!"), "{out}");
    assert!(work.path().join("first.txt").exists());
    assert!(
        !work.path().join("after.txt").exists(),
        "a later step ran\n{out}"
    );
}

#[test]
fn sensitive_values_are_masked_in_the_plan_and_outputs_must_say_so() {
    let hcl = r#"
variable "password" {
  type      = string
  sensitive = true
}
locals {
  dsn = "postgres://app:${var.password}@db"
}
step "exec" "rotate" {
  command = "echo ${local.dsn} > /dev/null"
}
output "dsn" {
  value     = local.dsn
  sensitive = true
}
"#;
    let (_work, out) = opsctl_with(hcl, &["plan", "--var", "password=hunter2-secret"]);
    assert_eq!(out.code, 0, "{out}");
    out_has(&out, "> command: (sensitive value)");
    out_has(&out, "dsn = (sensitive value)");
    assert!(!out.stdout.contains("hunter2-secret"), "{out}");

    let leaky = hcl.replace("  sensitive = true\n}\n\"#", "}\n\"#");
    let leaky = leaky.replace(
        "output \"dsn\" {\n  value     = local.dsn\n  sensitive = true\n}",
        "output \"dsn\" {\n  value = local.dsn\n}",
    );
    let (_work, out) = opsctl_with(&leaky, &["plan", "--var", "password=hunter2-secret"]);
    assert_eq!(out.code, 1, "{out}");
    err_has(&out, "output `dsn` refers to a sensitive value");
    assert!(!out.stderr.contains("hunter2-secret"), "{out}");
}

#[test]
fn a_failed_command_does_not_print_or_journal_a_sensitive_value() {
    let hcl = r#"
variable "password" {
  type      = string
  sensitive = true
}
step "exec" "login" {
  command = "echo using ${var.password} >&2; exit 4"
}
"#;
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    let out = run(opsctl(&work, None).args([
        "apply",
        "--auto-approve",
        "--var",
        "password=hunter2-secret",
    ]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("exited with status 4"), "{out}");
    assert!(out.stderr.contains("(sensitive value)"), "{out}");
    assert!(
        !out.stderr.contains("hunter2-secret") && !out.stdout.contains("hunter2-secret"),
        "{out}"
    );
    let journal_dir = work.path().join("state/journal");
    for entry in std::fs::read_dir(journal_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(text.contains("step_failed"), "{text}");
        assert!(
            !text.contains("hunter2-secret"),
            "secret in journal:\n{text}"
        );
    }
}

/// The exec step type end to end: plan of a change, apply, the effect visible afterwards, and a
/// second plan that is all no-op (its `creates` guard now holds).
#[test]
fn exec_plan_apply_effect_then_no_op() {
    let hcl = r#"step "exec" "record" {
  command = "echo maintenance-2026 > window.txt"
  creates = "window.txt"
}
"#;
    let (work, out) = opsctl_with(hcl, &["plan", "--detailed-exitcode"]);
    out.expect_code(2);
    out_has(&out, "> command: \"echo maintenance-2026 > window.txt\"");
    assert!(
        !work.path().join("window.txt").exists(),
        "plan must not run the command"
    );
    let out = run(opsctl(&work, None).args(["apply", "--auto-approve"]));
    out.expect_success();
    assert_eq!(work.read("window.txt"), "maintenance-2026\n");
    let out = run(opsctl(&work, None).args(["plan", "--detailed-exitcode"]));
    out.expect_success();
    out_has(&out, "Plan: 0 to run, 0 to change, 1 unchanged.");
}

// ---------------------------------------------------------------------------------------
// Issue 5: no panic whatever the input, and messages that name the real problem and where.
// ---------------------------------------------------------------------------------------

/// Writes raw bytes (not necessarily UTF-8) to `name` in `work`.
fn write_bytes(work: &Workdir, name: &str, bytes: &[u8]) {
    std::fs::write(work.path().join(name), bytes).unwrap();
}

/// Item 8: non-ASCII text at (or before) an error position panicked while mapping the byte
/// offset to a column (typographic quotes, a no-break space, an emoji).
#[test]
fn non_ascii_text_at_an_error_position_is_reported_not_a_panic() {
    let cases = [
        (
            "step \"noop\" \"a\" {\n  result = \u{201c}x\u{201d}\n}\n",
            "syntax error: unexpected character `\u{201c}` (U+201C, a typographic quote)",
            "main.hcl:2:12",
        ),
        (
            "step \"noop\" \"a\" {\n  result =\u{a0}1\n}\n",
            "syntax error: unexpected invisible character U+00A0 (a non-ASCII space)",
            "main.hcl:2:11",
        ),
        (
            "step \"noop\" \"a\" {\n  result = \u{1f600}\n}\n",
            "syntax error: unexpected character `\u{1f600}` (U+1F600)",
            "main.hcl:2:12",
        ),
        // Non-ASCII text before the error on its line: the column counts characters.
        (
            "step \"noop\" \"a\" {\n  result = \"\u{201c}\u{1f600}\u{a0}${var.nope}\"\n}\n",
            "unknown reference `var.nope`",
            "main.hcl:2:18",
        ),
        (
            "step \"noop\" \"\u{e9}t\u{e9}\" {}\n",
            "invalid name `\u{e9}t\u{e9}`",
            "main.hcl:1:13",
        ),
    ];
    for (hcl, message, location) in cases {
        let (_work, out) = opsctl_with(hcl, &["validate"]);
        assert_error_at(&out, message, location);
    }
    let (_work, out) = opsctl_with(cases[0].0, &["validate"]);
    insta::assert_snapshot!("typographic_quotes", out.stderr);
    // The caret sits under the reference, after the emoji (two columns wide).
    let (_work, out) = opsctl_with(cases[3].0, &["validate"]);
    insta::assert_snapshot!("non_ascii_before_the_error", out.stderr);
}

/// Item 8: a UTF-8 byte order mark is accepted, and positions on the first line do not count it.
#[test]
fn a_byte_order_mark_is_accepted_and_positions_stay_right() {
    let (_work, out) = opsctl_with("\u{feff}step \"noop\" \"a\" {}\n", &["validate"]);
    out.expect_success();
    out_has(&out, "The configuration is valid: 1 step(s)");
    validate_error(
        "\u{feff}step \"noop\" \"a\" { result = var.nope }\n",
        "unknown reference `var.nope`",
        "main.hcl:1:28",
    );
}

/// Item 14: syntax errors named where the parser gave up ("invalid block body", "expected
/// newline or eof"), and an invalid UTF-8 file had no position.
#[test]
fn syntax_errors_name_the_real_problem_and_where_it_starts() {
    let out = validate_error(
        "step \"noop\" \"a\" {\n  result = \"abc\n}\n",
        "syntax error: unterminated string: no closing `\"` before the end of the line",
        "main.hcl:2:12",
    );
    insta::assert_snapshot!("unterminated_string", out.stderr);
    validate_error(
        "step \"noop\" \"a\" {\n  result = 1e999999\n}\n",
        "syntax error: number `1e999999` is out of range",
        "main.hcl:2:12",
    );
    validate_error(
        "step \"noop\" \"a\" {\n  result = <<EOT\nno end\n}\n",
        "syntax error: unterminated heredoc: no line `EOT` closes it",
        "main.hcl:2:12",
    );
    validate_error(
        "step \"noop\" \"a\" {}\n/* never closed\n",
        "syntax error: unterminated comment",
        "main.hcl:2:1",
    );
    let work = Workdir::new();
    write_bytes(
        &work,
        "main.hcl",
        b"step \"noop\" \"a\" {\n  result = \"ab\xffc\"\n}\n",
    );
    let out = run(opsctl(&work, None).arg("validate"));
    assert_error_at(
        &out,
        "`main.hcl` is not valid UTF-8: invalid byte 0xFF",
        "main.hcl:2:15",
    );
}

/// Item 10: a whole number too large for 64 bits silently became the float `1e21`.
#[test]
fn whole_numbers_out_of_range_are_refused() {
    for (hcl, location) in [
        (
            "step \"noop\" \"a\" {\n  result = 999999999999999999999\n}\n",
            "main.hcl:2:12",
        ),
        (
            "step \"noop\" \"a\" {\n  result = \"n=${-99999999999999999999}\"\n}\n",
            "main.hcl:2:17",
        ),
    ] {
        validate_error(hcl, "whole number `", location);
    }
    // The largest ones still work, exactly.
    let (_work, out) = opsctl_with(
        "step \"noop\" \"a\" {\n  result = 18446744073709551615\n}\noutput \"o\" { value = step.noop.a.result }\n",
        &["plan"],
    );
    out.expect_success();
    out_has(&out, "o = 18446744073709551615");
}

/// Item 14: `--state-dir` naming a file said "File exists (os error 17)".
#[test]
fn a_state_dir_that_is_a_file_is_named() {
    let (work, _) = opsctl_with("step \"noop\" \"a\" {}\n", &["validate"]);
    work.write("st", "");
    let out = run(opsctl(&work, None).args(["apply", "--auto-approve", "--state-dir", "st"]));
    assert_fails(&out);
    assert_eq!(
        out.stderr,
        "error: the state directory `st` is a file, not a directory; pass a directory with `--state-dir`\n"
    );
    let out = run(opsctl(&work, None).args(["apply", "--auto-approve", "--state-dir", "st/sub"]));
    assert_fails(&out);
    err_has(
        &out,
        "cannot create the state directory `st/sub`: `st` is a file, not a directory",
    );
    let out = run(opsctl(&work, None).args(["force-unlock", "some-id", "--state-dir", "st"]));
    assert_fails(&out);
    err_has(&out, "the state directory `st` is a file, not a directory");
}

/// Item 15: a dangling `*.hcl` symlink was skipped (its steps vanished from the plan), and
/// hidden and editor files were loaded.
#[test]
fn dangling_symlinks_are_errors_and_editor_files_are_skipped() {
    let work = Workdir::new();
    work.write("main.hcl", "step \"noop\" \"a\" {}\n");
    std::os::unix::fs::symlink("shared/steps.hcl", work.path().join("steps.hcl")).unwrap();
    for cmd in ["validate", "plan"] {
        let out = run(opsctl(&work, None).arg(cmd));
        assert_fails(&out);
        assert_eq!(
            out.stderr,
            "error: `steps.hcl` is a symbolic link to `shared/steps.hcl`, which does not exist\n"
        );
    }
    // Once the target exists, its steps are loaded through the link.
    work.write("shared/steps.hcl", "step \"noop\" \"b\" {}\n");
    let out = run(opsctl(&work, None).arg("validate"));
    out.expect_success();
    out_has(&out, "The configuration is valid: 2 step(s)");
    // Hidden files, backups, autosaves and Emacs lock links are not configuration.
    let bad = "step \"noop\" \"a\" {}\nthis is not HCL\n";
    for name in [".main.hcl", "main.hcl~", "#main.hcl#", ".hidden.hcl"] {
        work.write(name, bad);
    }
    std::os::unix::fs::symlink("user@host.1234:1", work.path().join(".#main.hcl")).unwrap();
    let out = run(opsctl(&work, None).arg("validate"));
    out.expect_success();
    out_has(&out, "The configuration is valid: 2 step(s)");
}

/// Item 9: any non-UTF-8 environment variable (even an unrelated one) or argument panicked
/// every command (`std::env::vars`, `std::env::args`).
#[test]
fn non_utf8_environment_and_arguments_are_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let bytes = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
    let hcl = "variable \"x\" {\n  default = \"a\"\n}\nstep \"noop\" \"a\" {\n  result = var.x\n}\noutput \"x\" { value = var.x }\n";
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    // An unrelated variable: every command works.
    for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let out = run(opsctl(&work, None)
            .args(args)
            .env("FOO", bytes(b"\xff\xfe")));
        out.expect_success();
    }
    // A value opsctl needs as text: a clear error naming it.
    let out = run(opsctl(&work, None)
        .arg("plan")
        .env("OPSCTL_VAR_x", bytes(b"\xff")));
    assert_fails(&out);
    assert_eq!(
        out.stderr,
        "error: the environment variable `OPSCTL_VAR_x` is not valid UTF-8; variable values must be text\n"
    );
    for flag in [&b"--var"[..], b"-var"] {
        let out = run(opsctl(&work, None)
            .arg("plan")
            .arg(bytes(flag))
            .arg(bytes(b"x=\xff")));
        assert_fails(&out);
        err_has(
            &out,
            "error: `--var x=\u{fffd}` is not valid UTF-8; it must be text",
        );
    }
    let out = run(opsctl(&work, None).arg(bytes(b"-var=x=\xff")));
    assert_ne!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    let out = run(opsctl(&work, None)
        .args(["force-unlock"])
        .arg(bytes(b"\xff")));
    assert_fails(&out);
    err_has(&out, "`force-unlock \u{fffd}` is not valid UTF-8");
    // Paths need not be UTF-8: `--chdir`, `--var-file`, `--state-dir` work as given.
    work.write("dir/main.hcl", hcl);
    std::fs::rename(work.path().join("dir"), work.path().join(bytes(b"d\xff"))).unwrap();
    work.write("v.vars", "x = \"from-file\"\n");
    std::fs::rename(
        work.path().join("v.vars"),
        work.path().join(bytes(b"v\xff.vars")),
    )
    .unwrap();
    let out = run(opsctl(&work, None)
        .arg("--chdir")
        .arg(bytes(b"d\xff"))
        .arg("validate"));
    out.expect_success();
    let out = run(opsctl(&work, None)
        .args(["plan", "--var-file"])
        .arg(bytes(b"v\xff.vars")));
    out.expect_success();
    out_has(&out, "x = \"from-file\"");
    let out = run(opsctl(&work, None)
        .args(["apply", "--auto-approve", "--state-dir"])
        .arg(bytes(b"s\xff")));
    out.expect_success();
    assert!(work.path().join(bytes(b"s\xff")).is_dir());
    // A var file that is not UTF-8 text.
    std::fs::write(work.path().join("bad.vars"), b"x = \"\xff\"\n").unwrap();
    let out = run(opsctl(&work, None).args(["plan", "--var-file", "bad.vars"]));
    assert_fails(&out);
    err_has(&out, "error: var file `bad.vars` is not valid UTF-8");
}

/// Item 10: arithmetic and `format` panicked or aborted (`5 % 0`, huge widths), and `1/0`
/// became `1.797…e308` in a command or `null` in an output, `signum(0/0)` became 0.
#[test]
fn arithmetic_and_format_errors_are_errors_at_their_position() {
    let step = |expr: &str| format!("step \"noop\" \"a\" {{\n  result = {expr}\n}}\n");
    for (expr, message) in [
        ("5 % 0", "cannot evaluate `result`: modulo by zero"),
        ("\"${5 % 0}\"", "cannot evaluate `result`: modulo by zero"),
        ("1 / 0", "cannot evaluate `result`: division by zero"),
        ("signum(0 / 0)", "cannot evaluate `result`: division by zero"),
        ("18446744073709551615 + 1", "cannot evaluate `result`: the result of `+` is out of range"),
        ("1e308 * 10", "cannot evaluate `result`: the result of `*` is out of range"),
        (
            "format(\"%.99999f\", 1)",
            "cannot evaluate `result`: error calling function `format`: format precision 99999 at offset 0 is too large (at most 10000)",
        ),
        (
            "format(\"%999999999d\", 1)",
            "cannot evaluate `result`: error calling function `format`: format width 999999999 at offset 0 is too large (at most 10000)",
        ),
    ] {
        for cmd in ["validate", "plan"] {
            let (_work, out) = opsctl_with(&step(expr), &[cmd]);
            assert_error_at(&out, message, "main.hcl:2:12");
        }
    }
    // In a command and in an output.
    validate_error(
        "step \"exec\" \"a\" {\n  command = \"sleep ${1/0}\"\n}\n",
        "cannot evaluate `command`: division by zero",
        "main.hcl:2:13",
    );
    validate_error(
        "output \"o\" {\n  value = 1/0\n}\n",
        "cannot evaluate `value`: division by zero",
        "main.hcl:2:11",
    );
    // Arithmetic that is fine stays exact.
    let (_work, out) = opsctl_with(
        "output \"o\" { value = \"${7 / 2} ${6 / 3} ${-7 % 3} ${9223372036854775807 + 1}\" }\n",
        &["plan"],
    );
    out.expect_success();
    out_has(&out, "o = \"3.5 2 -1 9223372036854775808\"");
}

/// Item 10 (and item 3): `timeout = "1e30"`, `timeout = 1e30` and noop `delay = "1e30"`
/// panicked converting to a duration; `timeout = "0s"` was accepted.
#[test]
fn durations_are_finite_bounded_and_timeouts_positive() {
    let too_long = "invalid duration `1e30`: longer than the maximum of 365 days";
    for (hcl, message, location) in [
        (
            "step \"noop\" \"a\" {\n  timeout = \"1e30\"\n}\n".to_string(),
            format!("invalid `timeout`: {too_long}"),
            "main.hcl:2:13",
        ),
        (
            "step \"noop\" \"a\" {\n  timeout = 1e30\n}\n".to_string(),
            format!("invalid `timeout`: {too_long}"),
            "main.hcl:2:13",
        ),
        (
            "step \"noop\" \"a\" {\n  timeout = \"0s\"\n}\n".to_string(),
            "`timeout` must be longer than zero".to_string(),
            "main.hcl:2:13",
        ),
        (
            "step \"exec\" \"a\" {\n  command = \"true\"\n  timeout = \"366d\"\n}\n".to_string(),
            "invalid `timeout`: invalid duration `366d`: longer than the maximum of 365 days"
                .to_string(),
            "main.hcl:3:13",
        ),
        (
            "step \"noop\" \"a\" {\n  delay = \"1e30\"\n}\n".to_string(),
            format!("invalid argument `delay`: {too_long}"),
            "main.hcl:2:11",
        ),
        (
            "locals { d = \"1e30\" }\nstep \"noop\" \"a\" {\n  delay = local.d\n}\n".to_string(),
            format!("invalid argument `delay` of `step.noop.a`: {too_long}"),
            "main.hcl:3:11",
        ),
    ] {
        for cmd in ["validate", "plan"] {
            let (_work, out) = opsctl_with(&hcl, &[cmd]);
            assert_error_at(&out, &message, location);
        }
    }
    // Known only at apply: a clear step error.
    let hcl = "step \"exec\" \"a\" {\n  command = \"echo 1e30\"\n}\nstep \"noop\" \"b\" {\n  delay = trimspace(step.exec.a.stdout)\n}\n";
    let (_work, out) = opsctl_with(hcl, &["apply", "--auto-approve"]);
    assert_fails(&out);
    err_has(&out, "step.noop.b");
    err_has(&out, too_long);
}

/// Item 11: `count = 1000000000` aborted on allocation, `count = 1e18` on a capacity
/// overflow; there was no limit on instances per block or per procedure.
#[test]
fn instance_limits_per_block_and_per_procedure() {
    for (count, n) in [
        ("1000000000", "1000000000"),
        ("1e18", "1000000000000000000"),
        ("10001", "10001"),
    ] {
        for cmd in ["validate", "plan"] {
            let (_work, out) = opsctl_with(
                &format!("step \"noop\" \"a\" {{\n  count = {count}\n}}\n"),
                &[cmd],
            );
            assert_error_at(
                &out,
                &format!("`count` of `step.noop.a` asks for {n} instances; a block may have at most 10000"),
                "main.hcl:2:11",
            );
        }
    }
    let (_work, out) = opsctl_with("step \"noop\" \"a\" {\n  count = 10000\n}\n", &["validate"]);
    out.expect_success();
    out_has(&out, "10000 step(s)");
    let many: String = (0..6)
        .map(|i| format!("step \"noop\" \"b{i}\" {{\n  count = 10000\n}}\n"))
        .collect();
    let (_work, out) = opsctl_with(&many, &["validate"]);
    assert_fails(&out);
    err_has(
        &out,
        "error: the procedure has more than 50000 step and data instances (the limit per procedure) once `step.noop.b",
    );
}

#[test]
fn an_unknown_block_type_lists_every_block_type() {
    // `resource` is Terraform's; opsctl's blocks, `module` included, are named.
    validate_error(
        "\nresource \"aws_instance\" \"a\" {\n}\n",
        "unknown block type `resource`; expected `variable`, `locals`, `provider`, `data`, `step`, `output`, `module`, `check` or `window`",
        "main.hcl:2:1",
    );
}
