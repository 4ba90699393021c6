//! The CLI side of issue 11's guards: the clock (`OPSCTL_NOW`), the maintenance window check
//! before apply and the watcher that stops a run when the window closes, the approval policy
//! from `--approve` and the terminal, and the audit record appended after each apply.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::apply::guards::{self, ApprovalPolicy, Clock, WindowStatus};
use crate::apply::Cancel;
use crate::config::Config;
use crate::plan::Plan;

/// Name of the environment variable that sets the clock for tests (RFC 3339, e.g.
/// `2026-11-29T01:30:00Z`); the clock then runs on from there at the real pace. Testing only.
pub const NOW_ENV: &str = "OPSCTL_NOW";

/// The clock: real, or shifted by [`NOW_ENV`].
///
/// # Errors
///
/// When [`NOW_ENV`] is set but is not an RFC 3339 time.
pub fn clock() -> Result<Clock, String> {
    match std::env::var_os(NOW_ENV) {
        None => Ok(Clock::real()),
        Some(v) => {
            let text = v.to_string_lossy();
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| Clock::starting_at(t.with_timezone(&chrono::Utc)))
                .map_err(|e| {
                    format!("`{NOW_ENV}` must be an RFC 3339 time such as `2026-11-29T01:30:00Z`; `{text}`: {e}")
                })
        }
    }
}

/// The plan's line about the maintenance window, if the procedure has one.
pub fn window_text(config: &Config, clock: &Clock) -> Option<String> {
    config
        .window
        .as_ref()
        .map(|w| guards::window_line(w, clock.now()))
}

/// Whether apply may start: Ok(false) inside the window (or without one), Ok(true) outside it
/// with `--ignore-window` (to be journaled), and Err naming when the next window opens.
///
/// # Errors
///
/// Outside the window without `ignore`.
pub fn check_window(config: &Config, clock: &Clock, ignore: bool) -> Result<bool, String> {
    let Some(w) = &config.window else {
        return Ok(false);
    };
    let now = clock.now();
    match guards::window_status(w, now) {
        WindowStatus::Open { .. } => Ok(false),
        WindowStatus::Closed { opens } if ignore => {
            crate::errln!(
                "warning: starting outside the maintenance window {} (`--ignore-window`; the next opens {}); this is journaled",
                w.describe(),
                guards::describe_instant(w, opens, now)
            );
            Ok(true)
        }
        WindowStatus::Closed { opens } => Err(format!(
            "outside the maintenance window {}: apply does not start. The next window opens {}; \
             run then, or pass `--ignore-window` to start anyway (journaled)",
            w.describe(),
            guards::describe_instant(w, opens, now)
        )),
    }
}

/// Stops the run (no new steps; running ones finish) when the window closes. Returns the
/// watcher's task, to abort when the run ends; None without a window or when ignored.
pub fn watch_window(
    config: &Arc<Config>,
    clock: Clock,
    ignored: bool,
    cancel: Arc<Cancel>,
) -> Option<tokio::task::JoinHandle<()>> {
    let w = config.window.clone()?;
    if ignored {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let now = clock.now();
            match guards::window_status(&w, now) {
                WindowStatus::Open { closes } => {
                    let left = (closes - now).to_std().unwrap_or_default();
                    tokio::time::sleep(left.min(std::time::Duration::from_secs(1))).await;
                }
                WindowStatus::Closed { .. } => {
                    cancel.stop_because(&format!("the maintenance window {} closed", w.describe()));
                    return;
                }
            }
        }
    }))
}

/// Installs the approver of `approval` gates for this run: `--approve NAME`, else `yes` on
/// a terminal.
///
/// # Errors
///
/// An `--approve NAME` that names no approval gate of the plan.
pub fn install_approver(plan: &Plan, approve: &[String], digest: &str) -> Result<(), String> {
    let gates: Vec<String> = plan
        .instances
        .iter()
        .filter(|i| i.type_name == "approval")
        .map(|i| crate::provider::builtin::approval::gate_name(&i.address))
        .collect();
    for name in approve {
        if !gates.contains(name) {
            return Err(format!(
                "`--approve {name}`: the plan has no approval gate `{name}`{}",
                if gates.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", gates.join(", "))
                }
            ));
        }
    }
    let ask: Option<Box<guards::Ask>> = if std::io::stdin().is_terminal() {
        Some(Box::new(|prompt: &str| super::apply::ask_line(prompt)))
    } else {
        None
    };
    let policy = ApprovalPolicy {
        approved: approve.to_vec(),
        plan_digest: digest.to_string(),
        ask,
        who: crate::state::current_user(),
    };
    crate::provider::builtin::approval::set_approver(Some(policy.into_approver()));
    Ok(())
}

/// Appends this invocation's record to the audit log (`state/runs.jsonl`), built from its
/// journal; a failure to write it is a warning (the journal stays the record of truth).
#[allow(clippy::too_many_arguments)]
pub fn audit(
    state_dir: &std::path::Path,
    journal_path: &std::path::Path,
    plan: &Plan,
    run_id: &str,
    plan_digest: &str,
    ignored_window: bool,
    status: crate::apply::RunStatus,
    started_at: String,
    elapsed: std::time::Duration,
) {
    use crate::state::runs;
    let records = match crate::state::journal::read_journal(journal_path) {
        Ok(read) => read.records,
        Err(e) => {
            crate::errln!("warning: the audit log is not written: {e}");
            return;
        }
    };
    let facts = runs::RunFacts {
        run_id,
        steps: plan.instances.iter().map(|i| i.address.clone()).collect(),
        plan_digest: plan_digest.to_string(),
        config_digest: plan.config.digest.clone(),
        ignored_window,
        status: match status {
            crate::apply::RunStatus::Succeeded => "succeeded",
            crate::apply::RunStatus::Failed => "failed",
            crate::apply::RunStatus::Interrupted => "interrupted",
        }
        .to_string(),
        started_at,
        duration_ms: elapsed.as_millis() as u64,
    };
    let record = runs::record_from_journal(&facts, &records);
    if let Err(e) = runs::append(state_dir, &record) {
        crate::errln!("warning: the audit log is not written: {e}");
    }
}

/// Reports the procedure's `check` blocks, evaluated with the outputs of finished steps
/// (planned outputs for the rest): a passing or still-unknown assert on stdout, a failing one
/// as a warning on stderr. Never fails the command.
pub fn print_checks(
    plan: &Plan,
    outputs: &std::collections::HashMap<String, serde_json::Value>,
    when: &str,
) {
    use crate::plan::conditions::Verdict;
    let results = plan.run_checks(outputs);
    if results.is_empty() {
        return;
    }
    crate::outln!("\nChecks {when}:");
    for (name, at, verdict) in results {
        match verdict {
            Verdict::Holds => crate::outln!("  check `{name}`: passed"),
            Verdict::Unknown => crate::outln!("  check `{name}`: known after apply"),
            Verdict::Fails(msg) => {
                crate::outln!("  check `{name}`: FAILED (warning)");
                crate::errln!("warning: check `{name}` failed: {msg} (at {at})");
            }
        }
    }
}
