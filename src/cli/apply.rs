//! `opsctl apply` and `opsctl apply --resume`: lock the state, plan, ask for approval, execute
//! with a durable journal, and handle Ctrl-C (first: finish running steps; second: abandon).

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use crate::apply::{self, Cancel, InDoubtChoice, Reporter, RunStatus};
use crate::plan::{plan, PlanError, PlanOptions};
use crate::render::{self, progress};
use crate::state::journal::{self, JournalWriter, Record};
use crate::state::lock::StateLock;
use crate::state::{current_user, hostname, now_rfc3339};

use super::common::{load, print_diags, print_error, var_inputs};
use super::{exit, ApplyArgs, InDoubtArg};

fn ask_line(prompt: &str) -> Option<String> {
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
pub async fn run(args: ApplyArgs) -> i32 {
    match run_inner(args).await {
        Ok(code) => code,
        Err(msg) => {
            print_error(&msg);
            exit::ERROR
        }
    }
}

async fn run_inner(args: ApplyArgs) -> Result<i32, String> {
    let loaded = match load() {
        Ok(l) => l,
        Err(d) => {
            print_diags(&d);
            return Ok(exit::ERROR);
        }
    };
    if args.resume {
        let sensitive = |name: &str| {
            loaded
                .config
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
    let mut run_id = None;
    let mut torn = None;
    let variables = if args.resume {
        let (id, path) = journal::latest_run(&args.state_dir)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
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
        if *config_digest != loaded.config.digest {
            return Err(format!(
                "the configuration changed since run `{id}` started (digest `{}` then, `{}` now); resuming would apply a different procedure. \
                 Restore the configuration to resume, or start a new run with `opsctl apply`",
                short(config_digest),
                short(&loaded.config.digest)
            ));
        }
        let vars = resumed_variables(&loaded.config, variables, &args.vars)?;
        crate::outln!(
            "Resuming run {id}: {} step(s) finished, {} in doubt, {} failed.",
            r.finished.len(),
            r.in_doubt.len(),
            r.failed.len()
        );
        run_id = Some((id, path));
        torn = read.torn_tail;
        replay = Some(r);
        vars
    } else {
        let inputs = var_inputs(&args.vars)?;
        match crate::plan::vars::resolve(&loaded.config, &inputs) {
            Ok(v) => v,
            Err(d) => {
                print_diags(&d);
                return Ok(exit::ERROR);
            }
        }
    };

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
    let (p, providers) = match plan(
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
    crate::out!("{}", render::plan_text(&p));

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

    if !p.has_changes() && replay.is_none() {
        crate::outln!("\nApply complete! Nothing to do.");
        lock.release().map_err(|e| e.to_string())?;
        return Ok(exit::OK);
    }
    if !args.auto_approve {
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
            let w = JournalWriter::open_append(&path, torn.as_ref()).map_err(|e| e.to_string())?;
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
            let w = JournalWriter::create(&path).map_err(|e| e.to_string())?;
            w.append(&Record::RunStarted {
                run_id: id.clone(),
                format_version: journal::JOURNAL_FORMAT_VERSION,
                operation: "apply".into(),
                config_digest: loaded.config.digest.clone(),
                variables: journal_variables(&loaded.config, &variables),
                who: current_user(),
                host: hostname(),
                pid: std::process::id(),
                at: now_rfc3339(),
                n_steps: p.instances.len(),
            })
            .await
            .map_err(|e| e.to_string())?;
            (id, w)
        }
    };

    let reporter: Arc<dyn Reporter> = if std::io::stderr().is_terminal() {
        Arc::new(progress::BarReporter::new(p.instances.len() as u64))
    } else {
        Arc::new(progress::PlainReporter::stdout())
    };
    let cancel = Arc::new(Cancel::default());
    let signals = spawn_signal_handler(cancel.clone());
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
    reporter.finish();
    journal.close().await;
    let outcome = outcome.map_err(|e| format!("{e}; the journal up to this point is intact"))?;

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
            crate::errln!("Fix the cause, then continue with `opsctl apply --resume`.");
            exit::ERROR
        }
        RunStatus::Interrupted => {
            crate::errln!("\nApply interrupted (run {run_id}): {line}");
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
    lock.release().map_err(|e| e.to_string())?;
    super::common::leak_at_exit((plan, loaded, outcome));
    Ok(code)
}

/// Variables as the journal records them: sensitive values are replaced by a SHA-256 digest,
/// so that the journal never holds a secret in clear.
fn journal_variables(
    config: &crate::config::Config,
    variables: &hcl::Map<String, hcl::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    variables
        .iter()
        .map(|(k, v)| {
            let json = crate::config::eval::to_json(v);
            let sensitive = config.variables.iter().any(|d| &d.name == k && d.sensitive);
            let recorded = if sensitive {
                serde_json::json!({ "sensitive": true, "sha256": digest(&json) })
            } else {
                json
            };
            (k.clone(), recorded)
        })
        .collect()
}

fn digest(v: &serde_json::Value) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(v.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The variables of a resumed run: recorded values, and sensitive ones supplied again
/// (`OPSCTL_VAR_name`, `--var`, `--var-file`) and checked against the recorded digest.
fn resumed_variables(
    config: &crate::config::Config,
    recorded: &serde_json::Map<String, serde_json::Value>,
    args: &super::VarArgs,
) -> Result<hcl::Map<String, hcl::Value>, String> {
    let mut out = hcl::Map::new();
    let mut supplied: Option<hcl::Map<String, hcl::Value>> = None;
    for (name, value) in recorded {
        let Some(want) = value
            .get("sensitive")
            .filter(|s| s.as_bool() == Some(true))
            .and(value.get("sha256"))
            .and_then(serde_json::Value::as_str)
        else {
            out.insert(name.clone(), crate::config::eval::from_json(value));
            continue;
        };
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
                    "variable `{name}` is sensitive, so the journal holds only its digest; supply it again to resume, with `OPSCTL_VAR_{name}` or `--var {name}=...`"
                )
            })?;
        if digest(&crate::config::eval::to_json(v)) != want {
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
