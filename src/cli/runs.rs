//! `opsctl runs list` and `opsctl runs show ID`: the audit log (`state/runs.jsonl`), for people
//! or as JSON (`--json`).

use crate::state::runs::{self, RunRecord};

use super::common::print_error;
use super::{exit, RunsArgs, RunsCommand};

fn human_ms(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => {
            humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
        }
    }
}

fn tally(r: &RunRecord) -> String {
    let n = |what: &[&str]| {
        r.steps
            .iter()
            .filter(|s| what.contains(&s.result.as_str()))
            .count()
    };
    format!(
        "{} done, {} failed, {} skipped, {} not started",
        n(&["changed", "ran", "unchanged"]),
        n(&["failed", "in_doubt"]),
        n(&["skipped"]),
        n(&["not_started"])
    )
}

/// Runs `runs list` / `runs show`; returns the exit code.
pub fn run(args: RunsArgs) -> i32 {
    let records = match runs::read(&args.state_dir) {
        Ok(r) => r,
        Err(e) => {
            print_error(&e.to_string());
            return exit::ERROR;
        }
    };
    match args.command {
        RunsCommand::List { json } => {
            if json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default()
                );
                return exit::OK;
            }
            if records.is_empty() {
                crate::outln!(
                    "No runs recorded in `{}`.",
                    runs::runs_path(&args.state_dir).display()
                );
                return exit::OK;
            }
            crate::outln!(
                "{:<36}  {:<24}  {:<11}  {:>9}  {:<20}  STEPS",
                "ID",
                "STARTED",
                "STATUS",
                "DURATION",
                "WHO"
            );
            for r in &records {
                crate::outln!(
                    "{:<36}  {:<24}  {:<11}  {:>9}  {:<20}  {}",
                    r.id,
                    r.started_at,
                    r.status,
                    human_ms(Some(r.duration_ms)),
                    format!("{}@{}", r.who, r.host),
                    tally(r)
                );
            }
            exit::OK
        }
        RunsCommand::Show { id, json } => {
            // The exact ID, else every invocation of that run ID, else a unique prefix.
            let mut found: Vec<&RunRecord> = records.iter().filter(|r| r.id == id).collect();
            if found.is_empty() {
                found = records.iter().filter(|r| r.run_id == id).collect();
            }
            if found.is_empty() {
                found = records.iter().filter(|r| r.id.starts_with(&id)).collect();
                let runs: std::collections::BTreeSet<&str> =
                    found.iter().map(|r| r.run_id.as_str()).collect();
                if runs.len() > 1 {
                    print_error(&format!(
                        "`{id}` matches {} runs; give more of the ID",
                        runs.len()
                    ));
                    return exit::ERROR;
                }
            }
            if found.is_empty() {
                print_error(&format!(
                    "no run `{id}` in `{}`; `opsctl runs list` shows them",
                    runs::runs_path(&args.state_dir).display()
                ));
                return exit::ERROR;
            }
            if json {
                let v = if found.len() == 1 {
                    serde_json::to_value(found[0])
                } else {
                    serde_json::to_value(&found)
                };
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&v.unwrap_or_default()).unwrap_or_default()
                );
                return exit::OK;
            }
            for r in found {
                crate::outln!("Run {} ({})", r.id, r.status);
                crate::outln!("  who:          {}@{} (pid {})", r.who, r.host, r.pid);
                crate::outln!("  started:      {}", r.started_at);
                crate::outln!(
                    "  finished:     {} ({})",
                    r.finished_at,
                    human_ms(Some(r.duration_ms))
                );
                crate::outln!("  plan digest:  {}", r.plan_digest);
                if let Some(why) = &r.reason {
                    crate::outln!("  stopped:      {why}");
                }
                if r.ignored_window {
                    crate::outln!("  window:       ignored (`--ignore-window`)");
                }
                crate::outln!("  steps:        {}", tally(r));
                for s in &r.steps {
                    crate::outln!(
                        "    {:<12} {}  (attempts {}, {}){}",
                        s.result,
                        s.step,
                        s.attempts,
                        human_ms(s.duration_ms),
                        s.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            exit::OK
        }
    }
}
