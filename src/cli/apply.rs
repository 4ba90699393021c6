//! `opsctl apply` and `opsctl apply --resume`: lock the state, plan, ask for approval, execute
//! with a durable journal, and handle Ctrl-C (first: finish running steps; second: abandon).

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use crate::apply::{self, Cancel, InDoubtChoice, Reporter, RunStatus};
use crate::plan::{plan, PlanError, PlanOptions};
use crate::render::{self, progress};
use crate::state::journal::{self, JournalWriter, Record};
use crate::state::lock::StateLock;
use crate::state::saved_plan::SavedPlan;
use crate::state::{current_user, hostname, now_rfc3339};

use super::common::{load_root, print_diags, print_error, var_inputs};
use super::{exit, ApplyArgs, InDoubtArg};

pub(super) fn ask_line(prompt: &str) -> Option<String> {
    crate::out!("{prompt}");
    render::flush_stdout();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

fn ask_in_doubt(step: &str) -> Option<InDoubtChoice> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let answer = ask_line(&format!(
        "\n`{step}` started in an earlier attempt but did not finish, and cannot tell whether it took effect.\n  \
         Enter `rerun` to apply it again, `done` to mark it finished, anything else to stop: "
    ))?;
    match answer.as_str() {
        "rerun" => Some(InDoubtChoice::Rerun),
        "done" => Some(InDoubtChoice::Done),
        _ => None,
    }
}

/// Runs `apply`; returns the exit code.
/// With `--json`, standard output carries only the JSON event stream ([`render::events`]):
/// the human output goes nowhere, errors still go to standard error.
pub async fn run(args: ApplyArgs) -> i32 {
    let json = args.json;
    // The event stream cannot ask for approval: a saved plan was approved when it was reviewed.
    let would_ask = if args.plan_file.is_some() {
        args.confirm
    } else {
        !args.auto_approve
    };
    if json && would_ask {
        print_error("`--json` needs `--auto-approve` or a saved plan (without `--confirm`): a JSON event stream cannot ask for approval");
        return exit::ERROR;
    }
    if json {
        render::silence_stdout();
    }
    match run_inner(args).await {
        Ok(code) => code,
        Err(msg) => {
            print_error(&msg);
            if json {
                render::events::emit("error", &msg, serde_json::json!({}));
            }
            exit::ERROR
        }
    }
}

async fn run_inner(args: ApplyArgs) -> Result<i32, String> {
    // The root configuration: its variables are resolved first (from the flags, the journal
    // of the run resumed or the saved plan), then its modules are expanded with them.
    let root = match load_root() {
        Ok(r) => r,
        Err(d) => {
            print_diags(&d);
            return Ok(exit::ERROR);
        }
    };
    // A saved plan: read before anything else, checked against the configuration once its
    // modules are expanded.
    let saved = match &args.plan_file {
        Some(f) => Some(SavedPlan::load(f)?),
        None => None,
    };
    if saved.is_some() && !args.resume {
        super::saved::check_vars(&args.vars, &root.config)?;
    }
    if args.resume {
        let sensitive = |name: &str| {
            root.config
                .variables
                .iter()
                .any(|v| v.name == name && v.sensitive)
        };
        let given = args
            .vars
            .vars
            .iter()
            .filter_map(|v| v.split_once('=').map(|(n, _)| n.trim().to_string()));
        if let Some(name) = given.into_iter().find(|n| !sensitive(n)) {
            return Err(format!(
                "`--resume` reuses the variables of the run it resumes; `--var {name}=...` can only re-supply a sensitive variable"
            ));
        }
    }

    // Lock before reading anything, so that the plan we show is the plan we apply.
    let (lock, stale) = StateLock::acquire(&args.state_dir, "apply").map_err(|e| e.to_string())?;
    if let Some(old) = stale {
        crate::errln!(
            "warning: took over a stale lock: {old} (its process is gone; the run it held can be resumed)"
        );
    }

    // Resume: find the run and replay its journal.
    let mut replay = None;
    let mut resumed_digest: Option<(String, String)> = None;
    let mut run_id = None;
    let mut read_back = None;
    let latest = journal::latest_run(&args.state_dir).map_err(|e| e.to_string())?;
    if let Some(l) = &latest {
        for empty in &l.skipped_empty {
            crate::errln!(
                "warning: ignoring empty journal `{}` (a run that died before writing its first record)",
                empty.display()
            );
        }
    }
    // A plain apply never silently starts over past an unfinished run.
    let mut discarded = None;
    if let (Some(s), false) = (&saved, args.resume) {
        super::saved::check_not_applied(&args.state_dir, &s.digest())?;
    }
    if !args.resume {
        if let Some(l) = &latest {
            discarded = check_unfinished(l, args.discard_unfinished)?;
        }
    }
    let variables = if args.resume {
        let journal::LatestRun { id, path, .. } = latest.ok_or_else(|| {
            format!(
                "nothing to resume: no runs in `{}`",
                args.state_dir.display()
            )
        })?;
        let read = journal::read_journal(&path).map_err(|e| e.to_string())?;
        if let Some(t) = &read.torn_tail {
            crate::errln!(
                "warning: journal `{}` ends with a torn record at line {} ({} bytes; the process died while writing it); discarding it",
                path.display(),
                t.line,
                t.bytes
            );
        }
        let r = journal::replay(&read.records);
        if r.finished_status.as_deref() == Some("succeeded") {
            return Err(format!(
                "nothing to resume: the last run `{id}` finished successfully"
            ));
        }
        if let Some(by) = &r.discarded_by {
            return Err(format!(
                "nothing to resume: the last run `{id}` was discarded by run `{by}`"
            ));
        }
        let Some(Record::RunStarted {
            config_digest,
            variables,
            ..
        }) = &r.run_started
        else {
            return Err(format!(
                "journal `{}` has no run-started record",
                path.display()
            ));
        };
        resumed_digest = Some((id.clone(), config_digest.clone()));
        super::saved::check_resume(&id, &r, &read.records, saved.as_ref(), args.replan)?;
        let vars = resumed_variables(&root.config, variables, &args.vars)?;
        crate::outln!(
            "Resuming run {id}: {} step(s) finished, {} in doubt, {} failed.",
            r.finished.len(),
            r.in_doubt.len(),
            r.failed.len()
        );
        run_id = Some((id, path));
        read_back = Some(read);
        replay = Some(r);
        vars
    } else if let Some(s) = &saved {
        resumed_variables(&root.config, &s.body.variables, &args.vars)?
    } else {
        let inputs = var_inputs(&args.vars)?;
        match crate::plan::vars::resolve(&root.config, &inputs) {
            Ok(v) => v,
            Err(d) => {
                print_diags(&d);
                return Ok(exit::ERROR);
            }
        }
    };
    let loaded = match root.expand(&variables) {
        Ok(l) => l,
        Err(d) => {
            print_diags(&d);
            return Ok(exit::ERROR);
        }
    };
    if let Some(s) = &saved {
        s.check_config(&loaded.config)?;
    }
    if let Some((id, config_digest)) = resumed_digest {
        if config_digest != loaded.config.digest {
            return Err(format!(
                "the configuration changed since run `{id}` started (digest `{}` then, `{}` now); resuming would apply a different procedure. \
                 Restore the configuration to resume, or start a new run with `opsctl apply --discard-unfinished` (its finished steps would run again)",
                short(&config_digest),
                short(&loaded.config.digest)
            ));
        }
    }

    let finished_outputs = replay
        .as_ref()
        .map(|r| {
            r.finished
                .iter()
                .map(|(k, (_, o, _))| (k.clone(), o.clone()))
                .collect()
        })
        .unwrap_or_default();
    let opts = PlanOptions {
        parallelism: args.parallelism as usize,
        read: true,
        finished_outputs,
    };
    let (mut p, providers) = match plan(
        loaded.config.clone(),
        loaded.graph.clone(),
        &loaded.registry,
        variables.clone(),
        &opts,
    )
    .await
    {
        Ok(x) => x,
        Err(PlanError::Diagnostics(d)) => {
            print_diags(&d);
            return Ok(exit::ERROR);
        }
    };
    match &saved {
        Some(s) => {
            s.bind(&mut p)?;
            crate::out!("{}", crate::state::saved_plan::render_text(s));
        }
        None => crate::out!("{}", render::plan_text(&p)),
    }
    super::guards::print_checks(&p, &Default::default(), "at plan");
    let clock = super::guards::clock()?;
    if let Some(line) = super::guards::window_text(&loaded.config, &clock) {
        crate::outln!("\n{line}");
    }
    // What approvals and the audit log are bound to: the saved plan's own digest (the one
    // `opsctl show --json` prints and the journal's run record holds) when applying one, else
    // the digest of the plan just made.
    let plan_digest = match &saved {
        Some(s) => s.digest(),
        None => crate::apply::guards::digest(&p),
    };

    let resolutions = match &replay {
        Some(r) => {
            let choice = args.in_doubt.map(|c| match c {
                InDoubtArg::Rerun => InDoubtChoice::Rerun,
                InDoubtArg::Done => InDoubtChoice::Done,
            });
            let ask: &apply::AskInDoubt = &ask_in_doubt;
            apply::resolve_in_doubt(&p, &providers, &loaded.registry, r, choice, Some(ask))
                .await
                .map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };

    let ignored_window =
        match super::guards::check_window(&loaded.config, &clock, args.ignore_window).and_then(
            |ignored| {
                super::guards::install_approver(&p, &args.approve, &plan_digest).map(|()| ignored)
            },
        ) {
            Ok(ignored) => ignored,
            Err(msg) => {
                lock.release().map_err(|e| e.to_string())?;
                return Err(msg);
            }
        };
    if !p.has_changes() && replay.is_none() {
        crate::outln!("\nApply complete! Nothing to do.");
        if args.json {
            render::events::JsonReporter::new().run_finished(
                None,
                "nothing_to_do",
                "Apply complete! Nothing to do.",
                serde_json::json!({ "counts": { "run": 0, "changed": 0, "unchanged": p.counts().unchanged, "skipped": 0, "not_started": 0, "failed": 0, "in_doubt": 0 }, "outputs": {} }),
            );
        }
        lock.release().map_err(|e| e.to_string())?;
        return Ok(exit::OK);
    }
    // A saved plan was approved when it was reviewed: asked again only with `--confirm`.
    let ask = if saved.is_some() {
        args.confirm
    } else {
        !args.auto_approve
    };
    if ask {
        let answer = ask_line(
            "\nDo you want to perform these actions?\n  Only `yes` will be accepted to approve.\n\n  Enter a value: ",
        );
        if answer.as_deref() != Some("yes") {
            crate::outln!("\nApply cancelled.");
            lock.release().map_err(|e| e.to_string())?;
            return Ok(exit::ERROR);
        }
    }
    crate::outln!();

    // Journal: a new run, or the resumed one.
    let (run_id, journal) = match run_id {
        Some((id, path)) => {
            let read = read_back.unwrap_or_default();
            let w = JournalWriter::open_append(&path, &read).map_err(|e| e.to_string())?;
            w.append(&Record::RunResumed {
                run_id: id.clone(),
                who: current_user(),
                host: hostname(),
                pid: std::process::id(),
                at: now_rfc3339(),
            })
            .await
            .map_err(|e| e.to_string())?;
            (id, w)
        }
        None => {
            let id = journal::new_run_id();
            let path = journal::journal_path(&args.state_dir, &id);
            let first = Record::RunStarted {
                run_id: id.clone(),
                format_version: journal::JOURNAL_FORMAT_VERSION,
                operation: "apply".into(),
                config_digest: loaded.config.digest.clone(),
                variables: journal_variables(&loaded.config, &variables)?,
                who: current_user(),
                host: hostname(),
                pid: std::process::id(),
                at: now_rfc3339(),
                n_steps: p.instances.len(),
                discarded_run: discarded.as_ref().map(|d: &Discard| d.id.clone()),
                plan_digest: saved.as_ref().map(|s| s.digest()),
            };
            let w = JournalWriter::create(&path, &first)
                .map_err(|e| format!("cannot start a new run: {e}"))?;
            // Only once the new run exists is the old one marked: a failure before this
            // point leaves it resumable.
            if let Some(d) = &discarded {
                mark_discarded(d, &id).await?;
                crate::errln!(
                    "warning: discarded unfinished run `{}` ({}); this run `{id}` starts over",
                    d.id,
                    d.progress
                );
            }
            (id, w)
        }
    };

    if ignored_window {
        journal
            .append(&Record::RunNote {
                at: now_rfc3339(),
                who: current_user(),
                note: "ignore_window".into(),
                detail: "started outside the maintenance window with `--ignore-window`".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let json_reporter = args.json.then(|| {
        let r = Arc::new(render::events::JsonReporter::new());
        r.run_started(&run_id, replay.is_some(), &p);
        r
    });
    let reporter: Arc<dyn Reporter> = if let Some(r) = &json_reporter {
        r.clone()
    } else if std::io::stderr().is_terminal() {
        Arc::new(progress::BarReporter::new(p.instances.len() as u64))
    } else {
        Arc::new(progress::PlainReporter::stdout())
    };
    let cancel = Arc::new(Cancel::default());
    let signals = spawn_signal_handler(cancel.clone());
    if args.continue_on_error {
        cancel.set_continue_on_error();
    }
    let run_timer = args.timeout.map(|limit| {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            cancel.time_out(format!(
                "the run's --timeout of {} passed",
                humantime::format_duration(limit)
            ));
        })
    });
    let watcher =
        super::guards::watch_window(&loaded.config, clock, ignored_window, cancel.clone());
    let stopped = cancel.clone();
    let started_at = now_rfc3339();
    let started = std::time::Instant::now();
    let plan = Arc::new(p);
    let outcome = apply::execute(
        plan.clone(),
        providers,
        loaded.registry.clone(),
        journal.clone(),
        replay.as_ref(),
        &resolutions,
        args.parallelism as usize,
        reporter.clone(),
        cancel,
    )
    .await;
    signals.abort();
    if let Some(t) = run_timer {
        t.abort();
    }
    if let Some(w) = watcher {
        w.abort();
    }
    reporter.finish();
    let journal_path = journal.path().to_path_buf();
    journal.close().await;
    let outcome = outcome.map_err(|e| format!("{e}; the journal up to this point is intact"))?;
    super::guards::audit(
        &args.state_dir,
        &journal_path,
        &plan,
        &run_id,
        &plan_digest,
        ignored_window,
        outcome.status,
        started_at,
        started.elapsed(),
    );

    let applied: usize = outcome.applied.values().sum();
    let count = |a: crate::provider::Action| outcome.applied.get(&a).copied().unwrap_or(0);
    let line = format!(
        "{} run, {} changed, {} unchanged, {} skipped (finished earlier), {} not started.",
        count(crate::provider::Action::Run),
        applied - count(crate::provider::Action::Run),
        outcome.unchanged,
        outcome.skipped,
        outcome.not_started
    );
    super::guards::print_checks(&plan, &outcome.outputs, "after apply");
    let code = match outcome.status {
        RunStatus::Succeeded => {
            crate::outln!("\nApply complete! {line}");
            exit::OK
        }
        RunStatus::Failed => {
            crate::errln!("\nApply failed (run {run_id}): {line}");
            for (step, msg) in &outcome.failures {
                crate::errln!("error: {step}: {msg}");
            }
            for (step, why) in &outcome.in_doubt {
                crate::errln!("error: {step}: {why}");
            }
            for (step, why) in &outcome.skipped_dependents {
                crate::errln!("skipped: {step}: {why}");
            }
            crate::errln!("Fix the cause, then continue with `opsctl apply --resume`.");
            exit::ERROR
        }
        RunStatus::Interrupted => {
            crate::errln!("\nApply interrupted (run {run_id}): {line}");
            if let Some(why) = stopped.reason() {
                crate::errln!("stopped: {why}");
            }
            for (step, why) in &outcome.in_doubt {
                crate::errln!("in doubt: {step}: {why}");
            }
            crate::errln!("Continue with `opsctl apply --resume`.");
            exit::ERROR
        }
    };
    if outcome.status == RunStatus::Succeeded {
        let outputs = evaluate_outputs(&plan, &outcome.outputs);
        crate::out!("{}", render::outputs_text(&outputs));
    }
    if let Some(r) = &json_reporter {
        let status = match outcome.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        };
        let counts = serde_json::json!({
            "run": count(crate::provider::Action::Run),
            "changed": applied - count(crate::provider::Action::Run),
            "unchanged": outcome.unchanged,
            "skipped": outcome.skipped,
            "not_started": outcome.not_started,
            "failed": outcome.failures.len(),
            "in_doubt": outcome.in_doubt.len(),
        });
        let mut outputs = serde_json::Map::new();
        if outcome.status == RunStatus::Succeeded {
            for (name, value, sensitive) in evaluate_outputs(&plan, &outcome.outputs) {
                let value = if sensitive {
                    serde_json::Value::Null
                } else {
                    value
                };
                outputs.insert(
                    name,
                    serde_json::json!({ "sensitive": sensitive, "value": value }),
                );
            }
        }
        r.run_finished(
            Some(&run_id),
            status,
            &format!("Apply {status}: {line}"),
            serde_json::json!({ "counts": counts, "outputs": outputs }),
        );
    }
    lock.release().map_err(|e| e.to_string())?;
    super::common::leak_at_exit((plan, loaded, outcome));
    Ok(code)
}

/// An unfinished run that a new apply replaces.
struct Discard {
    id: String,
    /// Its journal, to append `run_discarded` to; None when it cannot be read (damaged).
    path: Option<std::path::PathBuf>,
    read: journal::JournalRead,
    /// "4 of 20 steps finished, ..." for messages.
    progress: String,
}

/// Whether a plain `apply` may start a new run after `latest`: Ok(None) when the latest
/// run finished (succeeded, or was discarded) or never started a step, the run to discard
/// when it did not finish and `discard` is set, and an error naming the unfinished run, its
/// progress and `--resume` otherwise.
fn check_unfinished(latest: &journal::LatestRun, discard: bool) -> Result<Option<Discard>, String> {
    let id = &latest.id;
    let read = match journal::read_journal(&latest.path) {
        Ok(read) => read,
        Err(e) if discard => {
            crate::errln!("warning: the last run `{id}` cannot be read ({e}); it is discarded without a record in its journal");
            return Ok(Some(Discard {
                id: id.clone(),
                path: None,
                read: journal::JournalRead::default(),
                progress: "unreadable".into(),
            }));
        }
        Err(e) => {
            return Err(format!(
            "the last run `{id}` cannot be read, so opsctl cannot tell whether it finished: {e}\n\
                 Inspect it; to start a new run anyway, use `opsctl apply --discard-unfinished`"
        ))
        }
    };
    let r = journal::replay(&read.records);
    if r.finished_status.as_deref() == Some("succeeded") || r.discarded_by.is_some() {
        return Ok(None);
    }
    let touched = read.records.iter().any(|rec| {
        matches!(
            rec,
            Record::StepStarted { .. } | Record::StepFinished { .. } | Record::StepResolved { .. }
        )
    });
    let total = match &r.run_started {
        Some(Record::RunStarted { n_steps, .. }) => *n_steps,
        _ => 0,
    };
    let progress = format!(
        "{} of {total} step(s) finished, {} in doubt, {} failed",
        r.finished.len(),
        r.in_doubt.len(),
        r.failed.len()
    );
    let state = match r.finished_status.as_deref() {
        Some(status) => status.to_string(),
        None if r.interruptions > 0 => "interrupted".to_string(),
        None => "stopped without a final record".to_string(),
    };
    if !touched || discard {
        return Ok(Some(Discard {
            id: id.clone(),
            path: Some(latest.path.clone()),
            read,
            progress,
        }));
    }
    Err(format!(
        "the last run `{id}` did not finish ({state}): {progress}.\n\
         Continue it with `opsctl apply --resume`. To give it up and start a new run, in which \
         its finished steps run again, use `opsctl apply --discard-unfinished`"
    ))
}

/// Appends `run_discarded` (by `new_run`) to the discarded run's journal, durably.
async fn mark_discarded(d: &Discard, new_run: &str) -> Result<(), String> {
    let Some(path) = &d.path else { return Ok(()) };
    let w = JournalWriter::open_append(path, &d.read)
        .map_err(|e| format!("cannot mark run `{}` discarded: {e}", d.id))?;
    w.append(&Record::RunDiscarded {
        at: now_rfc3339(),
        who: current_user(),
        host: hostname(),
        pid: std::process::id(),
        by_run: new_run.to_string(),
    })
    .await
    .map_err(|e| format!("cannot mark run `{}` discarded: {e}", d.id))?;
    w.close().await;
    Ok(())
}

/// Variables as the journal records them: a sensitive value is replaced by
/// `{"sensitive": true, "argon2": PHC}`, a salted argon2id hash of its JSON text, so that the
/// journal never holds a secret in clear nor a digest that a dictionary recovers (an unsalted
/// SHA-256 of a 6-digit PIN falls in under a second; this costs ~50-100 ms a guess, per run,
/// see [`secret_hasher`]).
///
/// # Errors
///
/// A message if hashing fails (no randomness for the salt).
pub(super) fn journal_variables(
    config: &crate::config::Config,
    variables: &hcl::Map<String, hcl::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    variables
        .iter()
        .map(|(k, v)| {
            let json = crate::config::eval::to_json(v);
            let sensitive = config.variables.iter().any(|d| &d.name == k && d.sensitive);
            let recorded = if sensitive {
                serde_json::json!({ "sensitive": true, "argon2": secret_hash(&json)? })
            } else {
                json
            };
            Ok((k.clone(), recorded))
        })
        .collect()
}

/// argon2id with OWASP's recommended parameters: 19 MiB, 2 passes, 1 lane. One hash or
/// verify costs 43-76 ms in release (~95 ms in the test build) on a loaded 2-core machine, so
/// the million guesses of a 6-digit PIN take ~14 CPU-hours instead of 0.6 s. Verification
/// reads the parameters from the recorded PHC string, so they can be raised later.
fn secret_hasher() -> Result<argon2::Argon2<'static>, String> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// A salted argon2id hash (PHC string format) of a value's JSON text.
fn secret_hash(v: &serde_json::Value) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| format!("cannot draw a salt to hash a sensitive variable: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    secret_hasher()?
        .hash_password(v.to_string().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash a sensitive variable: {e}"))
}

/// Whether `v` is the value hashed into `phc`.
fn secret_matches(v: &serde_json::Value, phc: &str) -> Result<bool, String> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    let hash = PasswordHash::new(phc).map_err(|e| format!("damaged hash `{phc}`: {e}"))?;
    Ok(secret_hasher()?
        .verify_password(v.to_string().as_bytes(), &hash)
        .is_ok())
}

/// The argon2 hash recorded for sensitive variable `name`.
///
/// # Errors
///
/// The old unsalted `sha256` form (refused: a dictionary recovers it), or no hash at all.
fn recorded_hash<'a>(name: &str, recorded: &'a serde_json::Value) -> Result<&'a str, String> {
    match recorded.get("argon2").and_then(serde_json::Value::as_str) {
        Some(phc) => Ok(phc),
        None if recorded.get("sha256").is_some() => Err(format!(
            "the run records sensitive variable `{name}` as an unsalted SHA-256 digest (written by an older opsctl), \
             which this version no longer trusts; finish it with that version, or start a new run with `opsctl apply --discard-unfinished`"
        )),
        None => Err(format!(
            "the run records sensitive variable `{name}` without a hash to check it against"
        )),
    }
}

/// The variables of a resumed run: recorded values, and sensitive ones supplied again
/// (`OPSCTL_VAR_name`, `--var`, `--var-file`) and checked against the recorded argon2 hash.
///
/// # Errors
///
/// A sensitive variable not supplied again, supplied with another value, or recorded in the
/// old unsalted SHA-256 form (refused: it cannot be checked safely).
fn resumed_variables(
    config: &crate::config::Config,
    recorded: &serde_json::Map<String, serde_json::Value>,
    args: &super::VarArgs,
) -> Result<hcl::Map<String, hcl::Value>, String> {
    let mut out = hcl::Map::new();
    let mut supplied: Option<hcl::Map<String, hcl::Value>> = None;
    for (name, value) in recorded {
        if value.get("sensitive").and_then(serde_json::Value::as_bool) != Some(true) {
            out.insert(name.clone(), crate::config::eval::from_json(value));
            continue;
        }
        let want = recorded_hash(name, value)?;
        if supplied.is_none() {
            let inputs = var_inputs(args)?;
            supplied = Some(
                crate::plan::vars::resolve_lenient(config, &inputs).map_err(|d| d.to_string())?,
            );
        }
        let v = supplied
            .as_ref()
            .and_then(|s| s.get(name))
            .filter(|v| !crate::config::eval::is_unknown(v))
            .ok_or_else(|| {
                format!(
                    "variable `{name}` is sensitive, so the journal holds only a hash of it; supply it again to resume, with `OPSCTL_VAR_{name}` or `--var {name}=...`"
                )
            })?;
        if !secret_matches(&crate::config::eval::to_json(v), want)? {
            return Err(format!(
                "the value given for sensitive variable `{name}` differs from the one the run started with"
            ));
        }
        out.insert(name.clone(), v.clone());
    }
    Ok(out)
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

fn evaluate_outputs(
    plan: &crate::plan::Plan,
    outputs: &std::collections::HashMap<String, serde_json::Value>,
) -> Vec<(String, serde_json::Value, bool)> {
    plan.config
        .outputs
        .iter()
        .filter_map(|o| {
            plan.evaluate_with_outputs(&o.value, outputs).ok().map(|v| {
                (
                    o.name.clone(),
                    crate::config::eval::to_json(&v),
                    o.sensitive,
                )
            })
        })
        .collect()
}

fn spawn_signal_handler(cancel: Arc<Cancel>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        let mut count = 0;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => { if r.is_err() { return; } }
                _ = term.recv() => {}
            }
            count += 1;
            if count == 1 {
                cancel.stop();
            } else {
                cancel.abort();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_values_hash_salted_and_verify() {
        let pin = json!("482916");
        let a = secret_hash(&pin).unwrap();
        let b = secret_hash(&pin).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "two hashes of one value must differ (salt)");
        assert!(secret_matches(&pin, &a).unwrap());
        assert!(!secret_matches(&json!("482917"), &a).unwrap());
        assert!(!secret_matches(&json!(482916), &a).unwrap());
        assert!(secret_matches(&pin, "not a hash").is_err());
    }

    #[test]
    fn an_old_unsalted_digest_is_refused() {
        let old = json!({ "sensitive": true, "sha256": "ab".repeat(32) });
        let err = recorded_hash("pin", &old).unwrap_err();
        assert!(err.contains("unsalted SHA-256"), "{err}");
        assert!(recorded_hash("pin", &json!({ "sensitive": true })).is_err());
        let new = json!({ "sensitive": true, "argon2": "$argon2id$x" });
        assert_eq!(recorded_hash("pin", &new).unwrap(), "$argon2id$x");
    }
}
