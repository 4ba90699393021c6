//! Custom conditions and checks (issue 11), end to end with the real binary and `exec` steps
//! that append their name to `effects.log`: a precondition known false fails the plan at its
//! `file:line:col`; one unknown at plan is checked just before the step runs; a postcondition
//! sees `self`; `check` blocks warn in plan and after apply without failing either.

mod support;

use support::{opsctl, run, Output, Workdir};

fn opsctl_in(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args);
    run(&mut cmd)
}

fn effects(work: &Workdir, name: &str) -> usize {
    std::fs::read_to_string(work.path().join("effects.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == name)
        .count()
}

/// `main.hcl:LINE:COL` of the first occurrence of `needle` in `text`.
fn position(text: &str, needle: &str) -> String {
    let offset = text.find(needle).expect("needle");
    let line = text[..offset].matches('\n').count() + 1;
    let col = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("main.hcl:{line}:{col}")
}

#[test]
fn a_precondition_known_false_fails_the_plan_at_its_position() {
    let text = r#"variable "replicas" {
  default = 0
}

step "exec" "scale" {
  command = "echo scale >> effects.log"
  precondition {
    condition     = var.replicas > 0
    error_message = "replicas must be positive, got ${var.replicas}"
  }
}
"#;
    let work = Workdir::new();
    work.write("main.hcl", text);
    let plan = opsctl_in(&work, &["plan"]);
    plan.expect_code(1);
    assert!(
        plan.stderr
            .contains("precondition of `step.exec.scale` failed: replicas must be positive, got 0"),
        "{plan}"
    );
    assert!(
        plan.stderr.contains(&position(text, "var.replicas > 0")),
        "{plan}"
    );
    let apply = opsctl_in(&work, &["apply", "--auto-approve"]);
    apply.expect_code(1);
    assert_eq!(effects(&work, "scale"), 0);
    // True: plan and apply go ahead.
    let ok = opsctl_in(&work, &["apply", "--auto-approve", "--var", "replicas=2"]);
    ok.expect_success();
    assert_eq!(effects(&work, "scale"), 1);
}

const DEFERRED: &str = r#"
step "exec" "probe" {
  command = "echo probe >> effects.log; cat answer"
}

step "exec" "act" {
  command = "echo act >> effects.log"
  precondition {
    condition     = trimspace(step.exec.probe.stdout) == "go"
    error_message = "the probe said ${trimspace(step.exec.probe.stdout)}"
  }
}

step "exec" "verify" {
  command    = "echo verify >> effects.log; echo not-ready"
  depends_on = [step.exec.act]
  postcondition {
    condition     = trimspace(self.stdout) == "ready" && self.exit_code == 0
    error_message = "verify printed ${trimspace(self.stdout)}"
  }
}

step "exec" "last" {
  command    = "echo last >> effects.log"
  depends_on = [step.exec.verify]
}
"#;

#[test]
fn an_unknown_precondition_is_checked_before_the_step_and_a_postcondition_sees_self() {
    let work = Workdir::new();
    work.write("main.hcl", DEFERRED);
    work.write("answer", "stop\n");
    // Unknown at plan (the probe's output): deferred, the plan goes ahead.
    let plan = opsctl_in(&work, &["plan"]);
    plan.expect_success();
    // At apply the probe said "stop": `act` does not run, and the message says where.
    let first = opsctl_in(&work, &["apply", "--auto-approve"]);
    first.expect_code(1);
    assert!(
        first
            .stderr
            .contains("precondition of `step.exec.act` failed: the probe said stop")
            && first
                .stderr
                .contains(&position(DEFERRED, "trimspace(step.exec.probe.stdout) ==")),
        "{first}"
    );
    assert_eq!((effects(&work, "probe"), effects(&work, "act")), (1, 0));

    // A new run where the probe says "go": `act` runs, `verify` runs but its postcondition
    // (on `self.stdout`) fails, so `last` never starts.
    work.write("answer", "go\n");
    let second = opsctl_in(&work, &["apply", "--auto-approve", "--discard-unfinished"]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains("postcondition of `step.exec.verify` failed: verify printed not-ready"),
        "{second}"
    );
    assert_eq!(
        (
            effects(&work, "act"),
            effects(&work, "verify"),
            effects(&work, "last")
        ),
        (1, 1, 0)
    );
}

#[test]
fn checks_warn_in_plan_and_after_apply_without_failing() {
    let text = r#"
variable "backup_age_hours" {
  default = 30
}

step "exec" "nodes" {
  command = "echo Ready"
}

check "backups_fresh" {
  assert {
    condition     = var.backup_age_hours < 26
    error_message = "the newest backup is ${var.backup_age_hours} h old (more than 26 h)"
  }
}

check "nodes_ready" {
  assert {
    condition     = trimspace(step.exec.nodes.stdout) == "Ready"
    error_message = "nodes are not Ready"
  }
}
"#;
    let work = Workdir::new();
    work.write("main.hcl", text);
    let plan = opsctl_in(&work, &["plan"]);
    plan.expect_success();
    assert!(
        plan.stdout
            .contains("check `nodes_ready`: known after apply"),
        "{plan}"
    );
    assert!(
        plan.stderr.contains(
            "warning: check `backups_fresh` failed: the newest backup is 30 h old (more than 26 h)"
        ) && plan
            .stderr
            .contains(&position(text, "var.backup_age_hours < 26")),
        "{plan}"
    );
    let apply = opsctl_in(&work, &["apply", "--auto-approve"]);
    apply.expect_success();
    let after = apply
        .stdout
        .split("Checks after apply:")
        .nth(1)
        .expect("checks after apply");
    assert!(after.contains("check `nodes_ready`: passed"), "{apply}");
    assert!(
        after.contains("check `backups_fresh`: FAILED (warning)"),
        "{apply}"
    );
}

#[test]
fn self_outside_a_postcondition_is_a_config_error() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"exec\" \"a\" {\n  command = \"true\"\n  precondition {\n    condition     = self.exit_code == 0\n    error_message = \"x\"\n  }\n}\n",
    );
    let out = opsctl_in(&work, &["validate"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("`self` is only available in a `postcondition`")
            && out.stderr.contains("main.hcl:4:21"),
        "{out}"
    );
}
