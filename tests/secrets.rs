//! Secrets never leak: values of `sensitive` variables, and everything derived from them, stay
//! out of the journal, the terminal and plan text, through the real `opsctl` binary.
//!
//! Only `noop` and `exec` steps, so no server is needed. Each test greps every byte opsctl
//! wrote (stdout, stderr, every file under the state directory) for the secret and for the
//! forms derived from it.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::{opsctl, run, Output, Workdir};

/// The secret most tests use: long enough to be unmistakable.
const SECRET: &str = "hunter2-Sw0rdf1sh";

fn work_with(hcl: &str) -> Workdir {
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    work
}

fn cmd(work: &Workdir, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut c = opsctl(work, None);
    c.args(args);
    for (k, v) in vars {
        c.env(format!("OPSCTL_VAR_{k}"), v);
    }
    c
}

fn apply(work: &Workdir, vars: &[(&str, &str)]) -> Output {
    run(&mut cmd(work, &["apply", "--auto-approve"], vars))
}

fn resume(work: &Workdir, vars: &[(&str, &str)]) -> Output {
    run(&mut cmd(
        work,
        &["apply", "--resume", "--auto-approve"],
        vars,
    ))
}

/// Every file under `dir`, recursively: (path, bytes).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = fs::read(&path).unwrap_or_default();
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that none of `secrets` appears in the state directory or in `outputs`.
fn assert_nowhere(work: &Workdir, outputs: &[&Output], secrets: &[&str]) {
    let files = files_under(&work.state_dir());
    assert!(!files.is_empty(), "no state was written");
    for s in secrets {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, s),
                "{s:?} found in {path}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
        for out in outputs {
            assert!(
                !out.stdout.contains(s) && !out.stderr.contains(s),
                "{s:?} printed:\n{out}"
            );
        }
    }
}

fn assert_fails(out: &Output) {
    out.expect_code(1);
    assert!(!out.stderr.contains("panicked"), "opsctl panicked:\n{out}");
}

fn err_has(out: &Output, text: &str) {
    assert!(
        out.stderr.contains(text),
        "missing {text:?} in stderr\n{out}"
    );
}

/// Sensitivity flows from a variable through a `noop` result and an `exec` stdout to the steps
/// that consume them: the journal holds none of it, nothing is printed, the consumers still get
/// the real values, and a sensitive output shows as `(sensitive value)`.
#[test]
fn step_outputs_derived_from_a_secret_are_neither_journaled_nor_printed() {
    let work = work_with(
        r#"
variable "pw" {
  type      = string
  sensitive = true
}
step "noop" "a" {
  result = upper(var.pw)
}
step "exec" "rev" {
  command = "printf %s '${var.pw}' | rev"
}
step "exec" "use" {
  command = "printf '%s|%s' '${step.noop.a.result}' '${step.exec.rev.stdout}' > used.txt; printf %s '${step.noop.a.result}'"
}
output "derived" {
  value     = step.exec.use.stdout
  sensitive = true
}
"#,
    );
    let reversed: String = SECRET.chars().rev().collect();
    let upper = SECRET.to_uppercase();

    let plan = run(&mut cmd(&work, &["plan"], &[("pw", SECRET)]));
    plan.expect_success();
    assert!(
        plan.stdout.contains("(sensitive value)"),
        "plan shows no `(sensitive value)`:\n{plan}"
    );

    let out = apply(&work, &[("pw", SECRET)]);
    out.expect_success();
    // The consumer ran with the real values.
    assert_eq!(work.read("used.txt"), format!("{upper}|{reversed}"));
    assert!(
        out.stdout.contains("derived = (sensitive value)"),
        "the sensitive output is not shown as `(sensitive value)`:\n{out}"
    );
    assert_nowhere(&work, &[&plan, &out], &[SECRET, &reversed, &upper]);
}

/// An `output` that refers to a step output derived from a secret must say `sensitive = true`:
/// otherwise validation fails at the reference, with `file:line:col`.
#[test]
fn an_output_of_a_step_fed_by_a_secret_must_be_declared_sensitive() {
    let hcl = r#"variable "pw" {
  type      = string
  sensitive = true
}
locals {
  cmd = "echo ${var.pw}"
}
step "exec" "a" {
  command = local.cmd
}
step "noop" "b" {
  result = step.exec.a.stdout
}
output "leak" {
  value = step.noop.b.result
}
"#;
    let work = work_with(hcl);
    for args in [&["validate"][..], &["plan"][..]] {
        let out = run(&mut cmd(&work, args, &[("pw", SECRET)]));
        assert_fails(&out);
        err_has(&out, "output `leak` refers to a sensitive value");
        err_has(&out, "main.hcl:15:11");
        assert!(!out.stderr.contains(SECRET) && !out.stdout.contains(SECRET));
    }

    // An input of a step fed by a secret that does not itself derive from it stays visible.
    let work = work_with(
        r#"variable "pw" {
  type      = string
  sensitive = true
}
step "noop" "a" {
  target = "local/box"
  result = var.pw
}
output "target" {
  value = step.noop.a.target
}
"#,
    );
    let out = run(&mut cmd(&work, &["plan"], &[("pw", SECRET)]));
    out.expect_success();
    assert!(out.stdout.contains("target = \"local/box\""), "{out}");
}

/// `for_each` and `count` cannot take a secret: it would become part of instance addresses.
#[test]
fn a_secret_cannot_expand_a_block() {
    let work = work_with(
        r#"variable "names" {
  type      = list(string)
  sensitive = true
}
step "noop" "each" {
  for_each = toset(var.names)
}
"#,
    );
    let out = run(&mut cmd(
        &work,
        &["plan"],
        &[("names", "[\"alpha-secret\"]")],
    ));
    assert_fails(&out);
    err_has(&out, "main.hcl:6:14");
    err_has(&out, "sensitive");
    assert!(!out.stdout.contains("alpha-secret") && !out.stderr.contains("alpha-secret"));
}

/// Sensitive numbers, bools, lists and maps are redacted leaf by leaf from failure messages,
/// in every form they take: `424242`, JSON of a map, inside a longer text.
#[test]
fn non_string_secrets_are_redacted_from_failure_messages() {
    let work = work_with(
        r#"
variable "pin" {
  type      = number
  sensitive = true
}
variable "creds" {
  type      = map(string)
  sensitive = true
}
variable "keys" {
  type      = list(string)
  sensitive = true
}
step "exec" "fail" {
  command = "echo 'pin ${var.pin}; creds ${jsonencode(var.creds)}; key ${var.keys[0]}' >&2; exit 3"
}
"#,
    );
    let vars = [
        ("pin", "42424242"),
        ("creds", "{ user = \"opsbot\", token = \"tok-77e1a9\" }"),
        ("keys", "[\"ssh-key-c0ffee\"]"),
    ];
    let out = apply(&work, &vars);
    assert_fails(&out);
    assert!(
        out.stdout.contains("(sensitive value)") || out.stderr.contains("(sensitive value)"),
        "the failure message shows no redaction:\n{out}"
    );
    assert_nowhere(
        &work,
        &[&out],
        &["42424242", "tok-77e1a9", "opsbot", "ssh-key-c0ffee"],
    );
}

/// A validation `error_message` that interpolates a sensitive variable, and a type error on
/// one, do not print it.
#[test]
fn validation_messages_do_not_print_a_secret() {
    let work = work_with(
        r#"
variable "pw" {
  type      = string
  sensitive = true
  validation {
    condition     = length(var.pw) >= 40
    error_message = "the password ${var.pw} is too short"
  }
}
variable "pin" {
  type      = number
  sensitive = true
  default   = 1
}
"#,
    );
    for args in [
        &["validate"][..],
        &["plan"][..],
        &["apply", "--auto-approve"][..],
    ] {
        let out = run(&mut cmd(&work, args, &[("pw", SECRET)]));
        assert_fails(&out);
        err_has(&out, "is too short");
        assert!(
            !out.stderr.contains(SECRET) && !out.stdout.contains(SECRET),
            "{out}"
        );
    }
    let out = run(&mut cmd(
        &work,
        &["validate"],
        &[("pw", &"x".repeat(40)), ("pin", "pin-abc123xyz")],
    ));
    assert_fails(&out);
    err_has(&out, "invalid value for variable `pin`");
    assert!(!out.stderr.contains("abc123xyz"), "{out}");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The journal does not hold an unsalted digest of a sensitive variable (a 6-digit PIN would
/// be recovered in a second): it holds a salted argon2id hash, and resume checks the value
/// given again against it.
#[test]
fn sensitive_variables_are_journaled_as_a_salted_slow_hash() {
    let work = work_with(
        r#"
variable "pin" {
  type      = string
  sensitive = true
}
step "exec" "gate" {
  command = "test -e go"
}
step "exec" "after" {
  command    = "echo done > after.txt"
  depends_on = [step.exec.gate]
}
"#,
    );
    let pin = "482916";
    let out = apply(&work, &[("pin", pin)]);
    assert_fails(&out);
    let files = files_under(&work.state_dir());
    for digest in [sha256_hex(pin), sha256_hex(&format!("\"{pin}\""))] {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, &digest),
                "{path} holds the SHA-256 of the PIN"
            );
        }
    }
    let journal = files
        .iter()
        .find(|(p, _)| p.ends_with(".jsonl"))
        .expect("a journal");
    assert!(
        contains(&journal.1, "$argon2id$"),
        "no argon2id hash in the journal:\n{}",
        String::from_utf8_lossy(&journal.1)
    );
    // In clear, the PIN would be a JSON string (a bare 6-digit run may occur in a timestamp).
    assert_nowhere(&work, &[&out], &[&format!("\"{pin}\"")]);

    fs::write(work.path().join("go"), "").expect("write go");
    let wrong = resume(&work, &[("pin", "482917")]);
    assert_fails(&wrong);
    err_has(&wrong, "differs from the one the run started with");
    assert!(!work.path().join("after.txt").exists());

    let missing = resume(&work, &[]);
    assert_fails(&missing);
    err_has(&missing, "supply it again");

    let right = resume(&work, &[("pin", pin)]);
    right.expect_success();
    assert_eq!(work.read("after.txt"), "done\n");
}

/// Resume re-derives a sensitive `noop` result from the variables given again (the journal
/// holds only a marker) and hands the real value to the step that consumes it.
#[test]
fn resume_rederives_a_sensitive_result_from_the_variables() {
    let work = work_with(
        r#"
variable "pw" {
  type      = string
  sensitive = true
}
step "noop" "a" {
  result = "${var.pw}-derived"
}
step "exec" "b" {
  command = "test -e go && printf %s '${step.noop.a.result}' > out.txt"
}
"#,
    );
    let out = apply(&work, &[("pw", SECRET)]);
    assert_fails(&out);
    fs::write(work.path().join("go"), "").expect("write go");
    let resumed = resume(&work, &[("pw", SECRET)]);
    resumed.expect_success();
    assert_eq!(work.read("out.txt"), format!("{SECRET}-derived"));
    assert_nowhere(&work, &[&out, &resumed], &[SECRET]);
}

/// When a later step needs a sensitive output that only the finished step could produce (an
/// `exec` stdout), resume refuses before running anything, naming both steps; it never hands
/// a null or a marker to the command.
#[test]
fn resume_refuses_when_a_needed_sensitive_output_cannot_be_rederived() {
    let work = work_with(
        r#"
variable "pw" {
  type      = string
  sensitive = true
}
step "exec" "a" {
  command = "printf %s '${var.pw}' | rev"
}
step "exec" "b" {
  command = "test -e go && printf %s '${step.exec.a.stdout}' > out.txt"
}
"#,
    );
    let out = apply(&work, &[("pw", SECRET)]);
    assert_fails(&out);
    fs::write(work.path().join("go"), "").expect("write go");
    let resumed = resume(&work, &[("pw", SECRET)]);
    assert_fails(&resumed);
    err_has(&resumed, "`step.exec.b`");
    err_has(&resumed, "`step.exec.a`");
    err_has(&resumed, "main.hcl:10:");
    assert!(!work.path().join("out.txt").exists(), "{resumed}");
    let reversed: String = SECRET.chars().rev().collect();
    assert_nowhere(&work, &[&out, &resumed], &[SECRET, &reversed]);
}

/// A result that calls `timestamp()` would derive another value on resume than the one the
/// step ran with: it is not derived again, and the step that needs it is refused.
#[test]
fn resume_does_not_rederive_a_result_that_calls_timestamp() {
    let work = work_with(
        r#"
variable "pw" {
  type      = string
  sensitive = true
}
locals {
  stamp = timestamp()
}
step "noop" "a" {
  result = "${var.pw}@${local.stamp}"
}
step "exec" "b" {
  command = "test -e go && printf %s '${step.noop.a.result}' > out.txt"
}
"#,
    );
    let out = apply(&work, &[("pw", SECRET)]);
    assert_fails(&out);
    fs::write(work.path().join("go"), "").expect("write go");
    let resumed = resume(&work, &[("pw", SECRET)]);
    assert_fails(&resumed);
    err_has(&resumed, "`step.noop.a`");
    err_has(&resumed, "main.hcl:13:");
    assert!(!work.path().join("out.txt").exists(), "{resumed}");
    assert_nowhere(&work, &[&out, &resumed], &[SECRET]);
}
