//! Rendering: human plan text, apply summaries and progress. The only module that writes to
//! the terminal (through the writers it is given, or indicatif).

pub mod events;
pub mod json;
pub mod markdown;
pub mod progress;
pub mod safe;

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value as Json;

use crate::config::eval::{is_unknown, to_json, UNKNOWN};
use crate::plan::redact::REDACTED;
use crate::plan::{Counts, Plan};
use crate::provider::{Action, FieldChange};

/// Writes to standard output, ignoring errors: a reader that went away (`opsctl apply | head
/// -3`) must not fail or stop a run, and Rust's `print!` would panic on the broken pipe
/// (opsctl keeps SIGPIPE ignored, so that it is never killed mid-apply). Used through
/// [`crate::out!`] and [`crate::outln!`].
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    if STDOUT_SILENCED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    if newline {
        let _ = out.write_all(b"\n");
    }
}

/// Set by [`silence_stdout`].
static STDOUT_SILENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends the human output of [`write_stdout`] nowhere for the rest of the process: standard
/// output then carries only a machine-readable stream (`apply --json`, see [`events`]).
pub fn silence_stdout() {
    STDOUT_SILENCED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Like [`write_stdout`], for standard error. Used through [`crate::errln!`].
pub fn write_stderr(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    if newline {
        let _ = err.write_all(b"\n");
    }
}

/// Flushes standard output, ignoring errors (before a prompt).
pub fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

/// `print!` that ignores a closed standard output; see [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::render::write_stdout(format_args!($($arg)*), false) };
}

/// `println!` that ignores a closed standard output; see [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::render::write_stdout(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::render::write_stdout(format_args!($($arg)*), true) };
}

/// `eprint!` that ignores a closed standard error; see [`write_stderr`].
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::render::write_stderr(format_args!($($arg)*), false) };
}

/// `eprintln!` that ignores a closed standard error; see [`write_stderr`].
#[macro_export]
macro_rules! errln {
    () => { $crate::render::write_stderr(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::render::write_stderr(format_args!($($arg)*), true) };
}

/// Shows a JSON value the way the plan prints it: strings quoted, unknowns as
/// `(known after apply)`.
pub fn show_value(v: &Json) -> String {
    match v {
        Json::String(s) if s.contains(UNKNOWN) => "(known after apply)".to_string(),
        Json::String(s) => format!("{s:?}"),
        Json::Null => "null".into(),
        Json::Array(items) if items.iter().any(crate::config::eval::json_is_unknown) => {
            let inner: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// `will be updated in place`, ... for a step header.
pub fn describe(action: Action) -> &'static str {
    match action {
        Action::NoOp => "is up to date",
        Action::Run => "will run",
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Delete => "will be deleted",
        Action::Replace => "will be replaced",
    }
}

/// Appends one field of a change as the plan text shows it (a multi-line value as a diff).
pub fn render_field(out: &mut String, action: Action, f: &FieldChange) {
    let multiline = |v: &Option<Json>| {
        v.as_ref()
            .and_then(Json::as_str)
            .is_some_and(|s| s.contains('\n'))
    };
    match (&f.before, &f.after) {
        (Some(b), Some(a)) if b == a => {
            let _ = writeln!(out, "        {}: {}", f.path, show_value(a));
        }
        (Some(b), Some(a)) if multiline(&f.before) || multiline(&f.after) => {
            let _ = writeln!(out, "      ~ {}:", f.path);
            let diff = similar::TextDiff::from_lines(
                b.as_str().unwrap_or_default(),
                a.as_str().unwrap_or_default(),
            );
            for change in diff.iter_all_changes() {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => "-",
                    similar::ChangeTag::Insert => "+",
                    similar::ChangeTag::Equal => " ",
                };
                let _ = write!(out, "          {sign} {}", change);
                if change.missing_newline() {
                    out.push('\n');
                }
            }
        }
        (Some(b), Some(a)) => {
            let _ = writeln!(
                out,
                "      ~ {}: {} -> {}",
                f.path,
                show_value(b),
                show_value(a)
            );
        }
        // A multi-line value created or removed: one line each, like a diff against nothing.
        (None, Some(a)) if multiline(&f.after) && action != Action::Run => {
            let _ = writeln!(out, "      + {}:", f.path);
            for line in a.as_str().unwrap_or_default().lines() {
                let _ = writeln!(out, "          + {line}");
            }
        }
        (Some(b), None) if multiline(&f.before) => {
            let _ = writeln!(out, "      - {}:", f.path);
            for line in b.as_str().unwrap_or_default().lines() {
                let _ = writeln!(out, "          - {line}");
            }
        }
        (None, Some(a)) => {
            let sym = if action == Action::Run { ">" } else { "+" };
            let _ = writeln!(out, "      {sym} {}: {}", f.path, show_value(a));
        }
        (Some(b), None) => {
            let _ = writeln!(out, "      - {}: {}", f.path, show_value(b));
        }
        (None, None) => {}
    }
}

/// Writes a step's `  #   after: A, B and N more` line of the plan text: the addresses of the
/// steps it comes after (`deps`), at most five named; nothing when it has none.
pub fn write_after_line(out: &mut String, deps: &[&str]) {
    if deps.is_empty() {
        return;
    }
    let more = deps.len().saturating_sub(5);
    let _ = writeln!(
        out,
        "  #   after: {}{}",
        deps[..deps.len() - more].join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
}

/// The human plan: one section per step that does something, then the summary line.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let acting: Vec<_> = plan
        .instances
        .iter()
        .filter(|i| i.change.action != Action::NoOp)
        .collect();
    if acting.is_empty() {
        out.push_str("No changes. The live state already matches the procedure.\n\n");
    } else {
        out.push_str("opsctl will perform the following actions, in this order:\n\n");
        out.push_str("Symbols: + create, ~ update in place, - delete, -/+ replace, > run\n\n");
        let mut group = None;
        for inst in acting {
            let module = crate::config::modules::instance_of(&inst.address);
            if module != group {
                if let Some(m) = module {
                    let _ = writeln!(out, "  # in {m}:");
                }
                group = module;
            }
            let _ = writeln!(out, "  # {} {}", inst.address, describe(inst.change.action));
            let target = if inst.sensitive_args.iter().any(|a| a == "target") {
                REDACTED
            } else {
                inst.target.as_str()
            };
            let _ = writeln!(out, "  #   target: {target}");
            let deps: Vec<&str> = inst
                .deps
                .iter()
                .map(|&d| plan.instances[d].address.as_str())
                .collect();
            write_after_line(&mut out, &deps);
            let _ = writeln!(out, "  {} {}", inst.change.action.symbol(), inst.address);
            for f in &inst.change.fields {
                let last = f.path.rsplit('.').next().unwrap_or(&f.path);
                // A field of a sensitive argument, or under one (`data.password` of `data`).
                if inst.sensitive_args.iter().any(|a| {
                    a == &f.path
                        || a == last
                        || f.path
                            .strip_prefix(a.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                }) {
                    let sym = match (&f.before, &f.after) {
                        (Some(b), Some(a)) if b == a => " ",
                        (Some(_), Some(_)) => "~",
                        (None, Some(_)) if inst.change.action == Action::Run => ">",
                        (None, Some(_)) => "+",
                        _ => "-",
                    };
                    let _ = writeln!(out, "      {sym} {}: {REDACTED}", f.path);
                } else if inst.sensitive {
                    // A field may carry a secret under another name than its argument.
                    let mut text = String::new();
                    render_field(&mut text, inst.change.action, f);
                    out.push_str(&plan.redact(&text));
                } else {
                    render_field(&mut out, inst.change.action, f);
                }
            }
            for line in &inst.change.summary {
                let line = if inst.sensitive {
                    plan.redact(line)
                } else {
                    line.clone()
                };
                let _ = writeln!(out, "      # {line}");
            }
            out.push('\n');
        }
    }
    out.push_str(&safe::execution_text(plan));
    let _ = writeln!(out, "{}", summary_line(plan.counts()));
    let outputs: Vec<_> = plan.outputs.iter().collect();
    if !outputs.is_empty() {
        out.push_str("\nOutputs:\n");
        for (name, value, sensitive) in outputs {
            let shown = if *sensitive {
                REDACTED.to_string()
            } else if is_unknown(value) {
                "(known after apply)".to_string()
            } else {
                show_value(&to_json(value))
            };
            let _ = writeln!(out, "  {name} = {shown}");
        }
    }
    out
}

/// `Plan: N to run, M to change, K unchanged.`
pub fn summary_line(c: Counts) -> String {
    format!(
        "Plan: {} to run, {} to change, {} unchanged.",
        c.run, c.change, c.unchanged
    )
}

/// Shows outputs after apply.
pub fn outputs_text(outputs: &[(String, Json, bool)]) -> String {
    let mut out = String::new();
    if outputs.is_empty() {
        return out;
    }
    out.push_str("\nOutputs:\n");
    for (name, value, sensitive) in outputs {
        let shown = if *sensitive {
            REDACTED.to_string()
        } else {
            show_value(value)
        };
        let _ = writeln!(out, "  {name} = {shown}");
    }
    out
}
