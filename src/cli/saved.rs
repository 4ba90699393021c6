//! Saved plans on the command line: `opsctl plan --out FILE` writes one, `opsctl show [--json]
//! FILE` prints one, and `opsctl apply FILE` checks one before applying it (see
//! [`crate::state::saved_plan`] for the format and the checks during the run).

use std::path::Path;

use crate::plan::{Plan, Providers};
use crate::state::journal::{self, Record};
use crate::state::saved_plan::{self, SavedPlan};

use super::{exit, ShowArgs, VarArgs};

/// Writes `plan` to `out` as a saved plan (sensitive variables hashed as the journal does).
///
/// # Errors
///
/// A message when a sensitive variable cannot be hashed or the file cannot be written.
pub(super) fn write_plan(out: &Path, plan: &Plan, providers: &Providers) -> Result<(), String> {
    let variables = super::apply::journal_variables(&plan.config, &plan.variables)?;
    let document = crate::render::json::plan_document(plan);
    let saved = SavedPlan::build(plan, variables, providers.args(), document);
    saved.write(out)?;
    crate::outln!(
        "\nSaved the plan to: {}\n\nTo perform exactly these actions, run:\n  opsctl apply {}",
        out.display(),
        out.display()
    );
    Ok(())
}

/// `opsctl show FILE` (the plan text) and `opsctl show --json FILE` (the JSON document);
/// returns the exit code.
pub(super) fn run_show(args: ShowArgs) -> i32 {
    match SavedPlan::load(&args.file) {
        Ok(saved) => {
            if args.json {
                // The document `plan --format json` printed (docs/plan.schema.json), and the
                // plan's digest; a file from before documents were kept: its own rendering.
                let doc = if saved.body.document.is_object() {
                    let mut doc = saved.body.document.clone();
                    doc["plan_digest"] = serde_json::Value::String(saved.digest.clone());
                    doc
                } else {
                    saved_plan::to_json(&saved)
                };
                crate::outln!("{}", serde_json::to_string(&doc).unwrap_or_default());
            } else {
                crate::out!("{}", saved_plan::render_text(&saved));
            }
            exit::OK
        }
        Err(msg) => {
            super::common::print_error(&msg);
            exit::ERROR
        }
    }
}

/// The only `--var` a saved plan takes is a sensitive variable supplied again.
///
/// # Errors
///
/// A message naming a non-sensitive variable given with `--var`.
pub(super) fn check_vars(args: &VarArgs, config: &crate::config::Config) -> Result<(), String> {
    let sensitive = |name: &str| {
        config
            .variables
            .iter()
            .any(|v| v.name == name && v.sensitive)
    };
    let given = args
        .vars
        .iter()
        .filter_map(|v| v.split_once('=').map(|(n, _)| n.trim().to_string()));
    if let Some(name) = given.into_iter().find(|n| !sensitive(n)) {
        return Err(format!(
            "a saved plan holds its variables; `--var {name}=...` can only re-supply a sensitive variable. Make a new plan to change `{name}`"
        ));
    }
    Ok(())
}

/// The plan digest a run records (`None` for a run made from the configuration).
pub(super) fn run_plan_digest(started: Option<&Record>) -> Option<String> {
    match started {
        Some(Record::RunStarted { plan_digest, .. }) => plan_digest.clone(),
        _ => None,
    }
}

/// Refuses a saved plan some run in `state_dir` already applied (or started to apply).
///
/// # Errors
///
/// A message naming the run and how it ended, or a journal that cannot be listed.
pub(super) fn check_not_applied(state_dir: &Path, digest: &str) -> Result<(), String> {
    let dir = journal::journal_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot list `{}`: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Ok(read) = journal::read_journal(&path) else {
            continue;
        };
        let r = journal::replay(&read.records);
        if run_plan_digest(r.run_started.as_ref()).as_deref() != Some(digest) {
            continue;
        }
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let how = match r.finished_status.as_deref() {
            Some("succeeded") => "it finished successfully".to_string(),
            Some(s) => format!("it {s}; continue it with `opsctl apply --resume`"),
            None => "it did not finish; continue it with `opsctl apply --resume`".to_string(),
        };
        return Err(format!(
            "this plan was already applied by run `{id}` ({how}); a saved plan is applied once. Make a new plan with `opsctl plan --out`"
        ));
    }
    Ok(())
}

/// Whether `apply --resume` may go on with run `id`: a run of a saved plan continues only
/// with that plan file given again (its checks apply to the remaining steps) or with
/// `--replan` (the remaining steps planned again from the configuration); a plan file given
/// to resume a run not made from it is refused.
///
/// # Errors
///
/// A message saying which of these applies, and whether the run stopped on a stale plan.
pub(super) fn check_resume(
    id: &str,
    replay: &journal::Replay,
    records: &[Record],
    saved: Option<&SavedPlan>,
    replan: bool,
) -> Result<(), String> {
    let run_digest = run_plan_digest(replay.run_started.as_ref());
    match (run_digest, saved) {
        (Some(d), Some(s)) if d == s.digest() => Ok(()),
        (Some(_), Some(s)) => Err(format!(
            "run `{id}` applies another saved plan than this one (digest `{}`); resume it with its own plan file, or with `opsctl apply --resume --replan`",
            &s.digest()[..12]
        )),
        (None, Some(_)) => Err(format!(
            "run `{id}` was not started from a saved plan; resume it with `opsctl apply --resume` and no plan file"
        )),
        (Some(_), None) if replan => Ok(()),
        (Some(d), None) => {
            let stale = records.iter().rev().find_map(|rec| match rec {
                Record::StepFailed { error, .. } if error.contains("plan is stale") => {
                    Some(format!(" It stopped because the plan is stale: {error}"))
                }
                _ => None,
            });
            Err(format!(
                "run `{id}` applies saved plan `{}`, so `opsctl apply --resume` does not plan again by itself.{} \
                 To plan the remaining steps again from the configuration as it is now (shown, and approved unless `--auto-approve`), \
                 use `opsctl apply --resume --replan`; to go on with the saved plan's checks, give its file again: `opsctl apply --resume FILE`",
                &d[..d.len().min(12)],
                stale.unwrap_or_default()
            ))
        }
        (None, None) => Ok(()),
    }
}
