//! Apply: execute a plan in dependency order with bounded parallelism, journaling every step
//! durably (started before its side effect, finished with outputs and observed state), and
//! resume an unfinished run from its journal.
//!
//! The engine reports progress through [`Reporter`] and never touches the terminal itself.

pub mod guards;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::eval::{map_is_unknown, UNKNOWN};
use crate::plan::{is_sensitive_marker, sensitive_marker, Plan, Providers};
use crate::provider::{Action, Current, InDoubt, ProviderError, Registry};
use crate::state::journal::{Durable, JournalWriter, Record, Replay};
use crate::state::{now_rfc3339, StateError};

pub mod retry;
mod rollout;

/// Receives progress events from the engine.
pub trait Reporter: Send + Sync {
    /// A step is about to apply.
    fn step_started(&self, address: &str, action: Action);
    /// A step finished (applied, or found already satisfied when `action` is NoOp).
    fn step_finished(&self, address: &str, action: Action, elapsed: Duration);
    /// A step was skipped (finished in an earlier attempt of this run).
    fn step_skipped(&self, address: &str, why: &str);
    /// A step failed.
    fn step_failed(&self, address: &str, error: &str);
    /// A step was stopped while it acted (timeout, abort): it may or may not have acted.
    fn step_in_doubt(&self, address: &str, reason: &str) {
        self.notice(&format!(
            "{address}: IN DOUBT\n  {}",
            reason.replace('\n', "\n  ")
        ));
    }
    /// A free-form notice (warnings, interruption).
    fn notice(&self, message: &str);
    /// The run is over; clear any progress display.
    fn finish(&self) {}
}

/// Signals from outside the engine (Ctrl-C).
#[derive(Default)]
pub struct Cancel {
    stop: AtomicBool,
    abort: AtomicBool,
    notify: Notify,
    /// Cancelled on abort: every running step's `StepContext::cancel` is a child of it.
    steps: CancellationToken,
    /// `--continue-on-error`: a failure skips its dependents only.
    continue_on_error: AtomicBool,
    /// Why the run stops when not for a signal (the maintenance window closed).
    reason: std::sync::Mutex<Option<String>>,
    /// Why the run was stopped by its `--timeout`, when it was.
    timeout_reason: std::sync::Mutex<Option<String>>,
}

impl Cancel {
    /// Asks the engine to start no new steps and wait for the running ones.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    /// Asks the engine to stop the running steps too (their commands are terminated); they are
    /// left in doubt.
    pub fn abort(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.abort.store(true, Ordering::SeqCst);
        self.steps.cancel();
        self.notify.notify_waiters();
    }
    /// Like [`Cancel::stop`], for a reason other than a signal (journaled and reported).
    pub fn stop_because(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_string());
        }
        self.stop();
    }
    /// The reason given to [`Cancel::stop_because`], if any.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Whether an abort was requested.
    pub fn aborting(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
    /// The run's `--timeout` passed: stops it like an abort (running steps are stopped and
    /// left in doubt; resumable), with `why` in their journal records and the run's.
    pub fn time_out(&self, why: String) {
        if let Ok(mut r) = self.timeout_reason.lock() {
            r.get_or_insert(why);
        }
        self.abort();
    }
    /// Why the run was stopped by [`Cancel::time_out`], if it was.
    pub fn timed_out(&self) -> Option<String> {
        self.timeout_reason.lock().ok().and_then(|r| r.clone())
    }
    /// `--continue-on-error`: after a failure, independent steps go on and the failed step's
    /// dependents are skipped (as `on_failure = "continue"` on every step).
    pub fn set_continue_on_error(&self) {
        self.continue_on_error.store(true, Ordering::SeqCst);
    }
}

/// How an interrupted step is to be treated when its type cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDoubtChoice {
    /// Apply it again.
    Rerun,
    /// Consider it done.
    Done,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every step finished.
    Succeeded,
    /// A step failed; later steps did not start.
    Failed,
    /// Stopped by a signal; resumable.
    Interrupted,
}

/// The result of an apply.
#[derive(Debug)]
pub struct ApplyOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// Steps applied now, by action.
    pub applied: HashMap<Action, usize>,
    /// Steps skipped because an earlier attempt of the run finished them.
    pub skipped: usize,
    /// Steps that were already satisfied at apply time.
    pub unchanged: usize,
    /// Steps not started (after a failure or interruption).
    pub not_started: usize,
    /// Failures: (step, message).
    pub failures: Vec<(String, String)>,
    /// Steps stopped while acting (timeout, abort), journaled in doubt: (step, reason).
    pub in_doubt: Vec<(String, String)>,
    /// Steps skipped because a step they depend on failed and the run went on
    /// (`on_failure = "continue"`, `--continue-on-error`, tolerated rollout failures):
    /// (step, reason).
    pub skipped_dependents: Vec<(String, String)>,
    /// Outputs of every finished step.
    pub outputs: HashMap<String, Json>,
}

/// Errors that stop apply before or outside step execution.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The journal could not be written: state would be lost, so apply stops.
    #[error("journal: {0}")]
    Journal(#[from] StateError),
    /// Steps interrupted in an earlier attempt cannot tell whether they took effect.
    #[error("{}", in_doubt_message(.0))]
    InDoubt(Vec<String>),
    /// The journal and the plan disagree in a way no real run can produce, or the run
    /// ended with steps that never ran although nothing failed.
    #[error("{0}")]
    Inconsistent(String),
    /// A step's in-doubt check failed.
    #[error("checking in-doubt step `{step}` on `{target}`: {message}")]
    InDoubtCheck {
        /// Step address.
        step: String,
        /// Target address.
        target: String,
        /// What went wrong.
        message: String,
    },
}

fn in_doubt_message(steps: &[String]) -> String {
    let list: Vec<String> = steps.iter().map(|s| format!("`{s}`")).collect();
    format!(
        "{} started in an earlier attempt but did not finish, and cannot tell whether it took effect: {}\n\
         it is not declared idempotent, so it is not repeated silently; inspect the target, then resume with \
         `--in-doubt=rerun` to apply it again or `--in-doubt=done` to mark it finished",
        if steps.len() == 1 { "a step" } else { "steps" },
        list.join(", ")
    )
}

/// Asks the operator what to do with an in-doubt step; None means stop.
pub type AskInDoubt = dyn Fn(&str) -> Option<InDoubtChoice> + Sync;

/// What resume does with each in-doubt step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubtResolution {
    /// Step address.
    pub step: String,
    /// Done (mark finished) or rerun.
    pub done: bool,
    /// Why.
    pub reason: String,
}

/// Decides every in-doubt step of a resumed run. Steps whose type can tell are re-read;
/// others follow `choice`, or `ask` (interactive), or stop the resume.
///
/// # Errors
///
/// [`ApplyError::InDoubt`] naming the steps that cannot tell when no choice was given;
/// [`ApplyError::InDoubtCheck`] when a re-read fails.
pub async fn resolve_in_doubt(
    plan: &Plan,
    providers: &Providers,
    registry: &Registry,
    replay: &Replay,
    choice: Option<InDoubtChoice>,
    ask: Option<&AskInDoubt>,
) -> Result<Vec<InDoubtResolution>, ApplyError> {
    let mut out = Vec::new();
    let mut undecided = Vec::new();
    for step in &replay.in_doubt {
        let Some(inst) = plan.instances.iter().find(|i| &i.address == step) else {
            continue;
        };
        let st = registry.step(&inst.type_name).expect("validated type");
        let mut ctx = providers.context(inst).await;
        // What the interrupted attempt chose before acting, so the step can look for it.
        ctx.prepared = replay.prepared.get(step).cloned();
        let verdict = if map_is_unknown(&inst.inputs) {
            InDoubt::CannotTell
        } else {
            st.in_doubt(&ctx, &inst.inputs)
                .await
                .map_err(|e| ApplyError::InDoubtCheck {
                    step: step.clone(),
                    target: plan.redact(&inst.target),
                    message: plan.redact(&e.to_string()),
                })?
        };
        match verdict {
            InDoubt::Done => out.push(InDoubtResolution {
                step: step.clone(),
                done: true,
                reason: "re-read: its effect is already there".into(),
            }),
            InDoubt::NotDone => out.push(InDoubtResolution {
                step: step.clone(),
                done: false,
                reason: "re-read: its effect is not there; applying again".into(),
            }),
            InDoubt::Repeat => out.push(InDoubtResolution {
                step: step.clone(),
                done: false,
                reason: "declared idempotent: applying again".into(),
            }),
            InDoubt::CannotTell => {
                let c = choice.or_else(|| ask.and_then(|f| f(step)));
                match c {
                    Some(InDoubtChoice::Rerun) => out.push(InDoubtResolution {
                        step: step.clone(),
                        done: false,
                        reason: "cannot tell; `--in-doubt=rerun` given".into(),
                    }),
                    Some(InDoubtChoice::Done) => out.push(InDoubtResolution {
                        step: step.clone(),
                        done: true,
                        reason: "cannot tell; `--in-doubt=done` given".into(),
                    }),
                    None => undecided.push(step.clone()),
                }
            }
        }
    }
    if !undecided.is_empty() {
        return Err(ApplyError::InDoubt(undecided));
    }
    Ok(out)
}

/// Outputs for a step marked done without being applied now: what the plan knew, with values
/// known only after apply set to null.
fn outputs_for_resolved(planned: &Json) -> Json {
    match planned {
        Json::String(s) if s.contains(UNKNOWN) => Json::Null,
        Json::Array(a) => Json::Array(a.iter().map(outputs_for_resolved).collect()),
        Json::Object(o) => Json::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), outputs_for_resolved(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

enum StepResult {
    Finished {
        action: Action,
        outputs: Json,
        elapsed: Duration,
        /// The queued `step_finished` record.
        durable: Durable,
    },
    Failed(String),
    /// The journal could not be written: the run must stop.
    Journal(StateError),
    /// Stopped while acting; journaled `step_in_doubt`.
    InDoubt(String),
    /// Stopped by an abort before it acted; nothing journaled.
    NotStarted,
}

/// How long a step asked to stop (timeout, abort) has to return before it is dropped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Everything one step task needs.
struct Task {
    idx: usize,
    inputs: crate::provider::Inputs,
    attempt: u32,
    /// The value an earlier, interrupted attempt prepared (reused so that applying again is
    /// idempotent), if any.
    prepared: Option<Json>,
    /// The run's signals (why it was stopped).
    cancel: Arc<Cancel>,
}

/// Executes `plan`.
///
/// `replay` is the journal of the run being resumed (finished steps are skipped with their
/// recorded outputs); `resolutions` decide its in-doubt steps.
///
/// # Errors
///
/// [`ApplyError::Journal`] when a journal write fails (apply stops at once; the journal up to
/// that point stays valid). Step failures are not errors: they are in the outcome.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    plan: Arc<Plan>,
    providers: Arc<Providers>,
    registry: Arc<Registry>,
    journal: JournalWriter,
    replay: Option<&Replay>,
    resolutions: &[InDoubtResolution],
    parallelism: usize,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<Cancel>,
) -> Result<ApplyOutcome, ApplyError> {
    // Progress lines of waiting steps (the AWS waiter) go through the reporter's notices.
    struct ProgressGuard;
    impl Drop for ProgressGuard {
        fn drop(&mut self) {
            crate::provider::set_progress_sink(None);
        }
    }
    let progress_reporter = reporter.clone();
    crate::provider::set_progress_sink(Some(Arc::new(move |line: &str| {
        progress_reporter.notice(line)
    })));
    let _progress = ProgressGuard;
    let n = plan.instances.len();
    let mut outcome = ApplyOutcome {
        status: RunStatus::Succeeded,
        applied: HashMap::new(),
        skipped: 0,
        unchanged: 0,
        not_started: 0,
        failures: Vec::new(),
        in_doubt: Vec::new(),
        skipped_dependents: Vec::new(),
        outputs: HashMap::new(),
    };
    // Record in-doubt resolutions first.
    let mut done: Vec<bool> = vec![false; n];
    let index: HashMap<&str, usize> = plan
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| (inst.address.as_str(), i))
        .collect();
    for r in resolutions {
        journal
            .append(&Record::StepResolved {
                step: r.step.clone(),
                at: now_rfc3339(),
                resolution: if r.done {
                    "done".into()
                } else {
                    "rerun".into()
                },
                reason: r.reason.clone(),
            })
            .await?;
        reporter.notice(&format!(
            "{}: {} ({})",
            r.step,
            if r.done {
                "marked finished"
            } else {
                "will be applied again"
            },
            r.reason
        ));
        if r.done {
            if let Some(&i) = index.get(r.step.as_str()) {
                done[i] = true;
                outcome.skipped += 1;
                outcome.outputs.insert(
                    r.step.clone(),
                    outputs_for_resolved(&plan.instances[i].planned_outputs),
                );
            }
        }
    }
    if let Some(replay) = replay {
        for (step, (_action, outputs, _observed)) in &replay.finished {
            if let Some(&i) = index.get(step.as_str()) {
                if !done[i] {
                    done[i] = true;
                    outcome.skipped += 1;
                    // Sensitive outputs are not in the journal: the plan derived them again
                    // from the re-supplied variables (what it could not stays unknown, and
                    // the plan refused any step still to run that needs it).
                    let outputs = if is_sensitive_marker(outputs) {
                        plan.instances[i].planned_outputs.clone()
                    } else {
                        outputs.clone()
                    };
                    outcome.outputs.insert(step.clone(), outputs);
                    reporter.step_skipped(step, "finished in an earlier attempt of this run");
                }
            }
        }
    }

    // Dependency counts. A step finished in an earlier attempt must not depend on one that
    // is not: the journal would claim an order that never happened (it was edited or lost
    // records), and running the dependency again under a finished dependent is not a resume.
    // Rollback and gate steps are not in the normal order (rollout.rs): they neither wait for
    // their dependencies nor hold up their dependents.
    // Started in an earlier attempt (finished, failed or in doubt): a resumed rollout whose
    // next batch never started runs its health gate again before it.
    let touched: Vec<bool> = plan
        .instances
        .iter()
        .map(|inst| replay.is_some_and(|r| r.attempts.contains_key(&inst.address)))
        .collect();
    let mut sched = rollout::Schedule::new(
        &plan,
        &done,
        &touched,
        cancel.continue_on_error.load(Ordering::SeqCst),
    );
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (i, inst) in plan.instances.iter().enumerate() {
        for &d in &inst.deps {
            dependents[d].push(i);
            if !done[d] && !sched.conditional[i] && !sched.conditional[d] {
                if done[i] {
                    return Err(ApplyError::Inconsistent(format!(
                        "`{}` is recorded as finished but the step it depends on, `{}`, is not; \
                         the journal does not describe a run that happened",
                        inst.address, plan.instances[d].address
                    )));
                }
                waiting[i] += 1;
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..n)
        .filter(|&i| !done[i] && waiting[i] == 0 && !sched.conditional[i])
        .collect();
    let mut remaining = (0..n)
        .filter(|&i| !done[i] && !sched.conditional[i])
        .count();
    // Rollback steps to run now: they start even after a failure halted the run.
    let mut urgent: VecDeque<usize> = VecDeque::new();
    // Finished, failed or skipped in this attempt (or finished earlier).
    let mut settled: Vec<bool> = done.clone();
    let mut set: tokio::task::JoinSet<(usize, StepResult)> = tokio::task::JoinSet::new();
    let mut running = 0usize;
    let mut halted = false;
    let mut pending: Vec<Durable> = Vec::new();
    let mut reevaluated: HashMap<usize, crate::provider::Inputs> = HashMap::new();
    let attempts = |step: &str| {
        replay
            .and_then(|r| r.attempts.get(step).copied())
            .unwrap_or(0)
    };

    // After instance `$i` settled: when its batch is complete, pause and run the health gate
    // of its rollout (a task whose index is `n + rollout`), then open the next batch.
    macro_rules! advance {
        ($i:expr) => {
            if let rollout::Advance::Gate(r) = sched.settled($i, &settled) {
                // After a halt or a stop nothing new starts; resume opens the batch.
                if !halted && !cancel.stopping() {
                    let ro = &mut sched.rollouts[r];
                    ro.gate_runs += 1;
                    let gates = ro
                        .gates
                        .iter()
                        .map(|&g| {
                            let inputs = if map_is_unknown(&plan.instances[g].inputs) {
                                plan.reevaluate(g, &outcome.outputs)
                                    .unwrap_or_else(|_| plan.instances[g].inputs.clone())
                            } else {
                                plan.instances[g].inputs.clone()
                            };
                            (
                                g,
                                inputs,
                                attempts(&plan.instances[g].address) + ro.gate_runs,
                            )
                        })
                        .collect();
                    let g = rollout::GateRun {
                        plan: plan.clone(),
                        providers: providers.clone(),
                        registry: registry.clone(),
                        journal: journal.clone(),
                        reporter: reporter.clone(),
                        cancel: cancel.clone(),
                        gates,
                        pause: ro.pause,
                        label: format!(
                            "{}: after batch {}/{}",
                            ro.address,
                            ro.open,
                            ro.batches.len()
                        ),
                    };
                    running += 1;
                    remaining += 1;
                    set.spawn(async move { (n + r, rollout::run_gate(g).await) });
                }
            }
        };
    }

    // A resumed rollout whose last open batch finished earlier: its gate first.
    for i in sched.pending_gates() {
        advance!(i);
    }

    while remaining > 0 {
        while !cancel.stopping() && running < parallelism.max(1) {
            let next = urgent
                .pop_front()
                .or_else(|| if halted { None } else { ready.pop_front() });
            let Some(i) = next else { break };
            if !sched.conditional[i] && !sched.admit(i) {
                continue;
            }
            let inst = &plan.instances[i];
            let inputs = if map_is_unknown(&inst.inputs) {
                match plan.reevaluate(i, &outcome.outputs) {
                    Ok(v) => {
                        if inst.sensitive {
                            // Known only now: scrub these from its messages too.
                            for a in &inst.sensitive_args {
                                if let Some(value) = v.get(a) {
                                    plan.add_derived_secrets(value);
                                }
                            }
                        }
                        reevaluated.insert(i, v.clone());
                        v
                    }
                    Err(mut d) => {
                        d.message = plan.redact(&d.message);
                        d.locate(&plan.config.sources);
                        let rendered = d.to_string();
                        let msg = rendered
                            .trim_end()
                            .trim_start_matches("error: ")
                            .to_string();
                        record_failure(&journal, &inst.address, msg.clone()).await?;
                        reporter.step_failed(&inst.address, &msg);
                        outcome.failures.push((inst.address.clone(), msg));
                        remaining -= 1;
                        halted = true;
                        continue;
                    }
                }
            } else {
                inst.inputs.clone()
            };
            if let Some(msg) = guards::precondition_failure(&plan, i, &outcome.outputs) {
                record_failure(&journal, &inst.address, msg.clone()).await?;
                reporter.step_failed(&inst.address, &msg);
                outcome.failures.push((inst.address.clone(), msg));
                remaining -= 1;
                halted = true;
                continue;
            }
            let task = Task {
                idx: i,
                inputs,
                attempt: attempts(&inst.address) + 1,
                prepared: replay.and_then(|r| r.prepared.get(&inst.address).cloned()),
                cancel: cancel.clone(),
            };
            let plan = plan.clone();
            let providers = providers.clone();
            let registry = registry.clone();
            let journal = journal.clone();
            let reporter = reporter.clone();
            let stop = cancel.steps.child_token();
            running += 1;
            set.spawn(async move {
                let r = run_step(
                    &plan,
                    &providers,
                    &registry,
                    &journal,
                    reporter.as_ref(),
                    task,
                    stop,
                )
                .await;
                (i, r)
            });
        }
        if running == 0 {
            break;
        }
        // On abort, running steps are asked to stop (their `cancel` token fires): each
        // returns within its grace, in doubt unless it finished meanwhile.
        let joined = tokio::select! {
            j = set.join_next() => j,
            _ = cancel.notify.notified() => {
                if cancel.aborting() {
                    reporter.notice("second interrupt: stopping the running steps (their commands are terminated); they will be in doubt");
                } else if let Some(why) = cancel.reason() {
                    reporter.notice(&format!("{why}: starting no new steps, waiting for running steps to finish"));
                } else {
                    reporter.notice("interrupt received: waiting for running steps to finish (interrupt again to stop them)");
                }
                continue;
            }
        };
        let Some(joined) = joined else { break };
        running -= 1;
        remaining -= 1;
        let (i, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                return Err(ApplyError::Inconsistent(format!(
                    "internal error: a step task ended abnormally ({e}); the step it ran is in doubt and `opsctl apply --resume` re-checks it"
                )));
            }
        };
        if i >= n {
            // A rollout's pause and health gate between batches.
            let r = i - n;
            let label = format!(
                "health check of {} after batch {}/{}",
                sched.rollouts[r].address,
                sched.rollouts[r].open,
                sched.rollouts[r].batches.len()
            );
            match result {
                StepResult::Journal(e) => return Err(ApplyError::Journal(e)),
                StepResult::Failed(msg) | StepResult::InDoubt(msg) => {
                    reporter.step_failed(&label, &msg);
                    reporter.notice(&format!(
                        "{}: rollout stopped: its health check failed; `opsctl apply --resume` runs it again, then continues with the next batch",
                        sched.rollouts[r].address
                    ));
                    outcome.failures.push((label, msg));
                    sched.stop(r);
                    halted = true;
                }
                StepResult::Finished { durable, .. } => {
                    pending.push(durable);
                    ready.extend(sched.open_next(r));
                }
                StepResult::NotStarted => {
                    if !cancel.stopping() {
                        ready.extend(sched.open_next(r));
                    }
                }
            }
            continue;
        }
        match result {
            StepResult::Finished {
                action,
                outputs,
                elapsed,
                durable,
            } => {
                pending.push(durable);
                if let Some(msg) =
                    guards::postcondition_failure(&plan, i, &outcome.outputs, &outputs)
                {
                    let address = &plan.instances[i].address;
                    record_failure(&journal, address, msg.clone()).await?;
                    reporter.step_failed(address, &msg);
                    outcome.failures.push((address.clone(), msg));
                    halted = true;
                    continue;
                }
                if action == Action::NoOp {
                    outcome.unchanged += 1;
                } else {
                    *outcome.applied.entry(action).or_default() += 1;
                }
                if plan.instances[i].sensitive {
                    // Derived from a secret: scrub it from later messages too.
                    plan.add_derived_secrets(&outputs);
                }
                reporter.step_finished(&plan.instances[i].address, action, elapsed);
                // Later steps see the arguments the step actually ran with, overlaid by its
                // outputs.
                let outputs = match (reevaluated.remove(&i), outputs) {
                    (Some(mut inputs), Json::Object(o)) => {
                        inputs.extend(o);
                        Json::Object(inputs)
                    }
                    (_, o) => o,
                };
                outcome
                    .outputs
                    .insert(plan.instances[i].address.clone(), outputs);
                done[i] = true;
                settled[i] = true;
                for &d in &dependents[i] {
                    // A dependent finished in an earlier attempt is never queued again.
                    if done[d] || sched.conditional[d] || sched.conditional[i] {
                        continue;
                    }
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        ready.push_back(d);
                    }
                }
                advance!(i);
            }
            StepResult::Journal(e) => return Err(ApplyError::Journal(e)),
            StepResult::InDoubt(msg) => {
                reporter.step_in_doubt(&plan.instances[i].address, &msg);
                outcome
                    .in_doubt
                    .push((plan.instances[i].address.clone(), msg));
                halted = true;
                // A step that timed out failed to converge: its rollback runs (not on abort).
                if !cancel.aborting() {
                    let effect = sched.failed(&plan, i);
                    queue_rollback(
                        &plan,
                        &effect.rollback,
                        &done,
                        &mut urgent,
                        &mut remaining,
                        reporter.as_ref(),
                        i,
                    );
                }
            }
            StepResult::NotStarted => remaining += 1,
            StepResult::Failed(msg) => {
                reporter.step_failed(&plan.instances[i].address, &msg);
                outcome
                    .failures
                    .push((plan.instances[i].address.clone(), msg));
                settled[i] = true;
                let effect = sched.failed(&plan, i);
                if let Some(note) = &effect.note {
                    reporter.notice(note);
                }
                queue_rollback(
                    &plan,
                    &effect.rollback,
                    &done,
                    &mut urgent,
                    &mut remaining,
                    reporter.as_ref(),
                    i,
                );
                if effect.halt {
                    halted = true;
                } else {
                    // Independent steps go on; everything downstream of the failure is skipped.
                    for d in rollout::dependents_of(i, &dependents, &done) {
                        if settled[d] || sched.conditional[d] {
                            continue;
                        }
                        settled[d] = true;
                        remaining -= 1;
                        let why = format!(
                            "it depends on `{}`, which failed",
                            plan.instances[i].address
                        );
                        reporter.step_skipped(&plan.instances[d].address, &why);
                        outcome
                            .skipped_dependents
                            .push((plan.instances[d].address.clone(), why));
                        advance!(d);
                    }
                    advance!(i);
                }
            }
        }
    }
    for d in pending.drain(..) {
        d.wait().await?;
    }
    // Success is decided from what is durable, not from counters: every step instance has a
    // `step_finished` (or a `done` resolution) on disk by now.
    let unfinished: Vec<&str> = (0..n)
        .filter(|&i| !done[i] && !sched.conditional[i])
        .map(|i| plan.instances[i].address.as_str())
        .collect();
    outcome.not_started = unfinished
        .len()
        .saturating_sub(outcome.failures.len() + outcome.in_doubt.len());
    if outcome.failures.is_empty()
        && outcome.in_doubt.is_empty()
        && !unfinished.is_empty()
        && !cancel.stopping()
    {
        let shown: Vec<String> = unfinished
            .iter()
            .take(5)
            .map(|a| format!("`{a}`"))
            .collect();
        let msg = format!(
            "{} step(s) did not run although nothing failed: {}{}",
            unfinished.len(),
            shown.join(", "),
            if unfinished.len() > 5 { ", ..." } else { "" }
        );
        journal
            .append(&Record::RunFinished {
                at: now_rfc3339(),
                status: "failed".into(),
            })
            .await?;
        return Err(ApplyError::Inconsistent(msg));
    }
    // A step left in doubt by its timeout fails the run; one left in doubt by an abort
    // interrupts it.
    let timed_out = !outcome.in_doubt.is_empty() && !cancel.aborting();
    if !outcome.failures.is_empty() || timed_out {
        outcome.status = RunStatus::Failed;
        journal
            .append(&Record::RunFinished {
                at: now_rfc3339(),
                status: "failed".into(),
            })
            .await?;
    } else if !unfinished.is_empty() {
        outcome.status = RunStatus::Interrupted;
        if cancel.aborting() {
            reporter.notice(
                "aborted: running steps were stopped and are in doubt; `opsctl apply --resume` re-checks them",
            );
        }
        journal
            .append(&Record::RunInterrupted {
                at: now_rfc3339(),
                reason: if let Some(why) = cancel.timed_out() {
                    why
                } else if cancel.aborting() {
                    "aborted by a second interrupt".into()
                } else if let Some(why) = cancel.reason() {
                    why
                } else {
                    "interrupted by signal".into()
                },
            })
            .await?;
    } else {
        journal
            .append(&Record::RunFinished {
                at: now_rfc3339(),
                status: "succeeded".into(),
            })
            .await?;
    }
    Ok(outcome)
}

async fn run_step(
    plan: &Plan,
    providers: &Providers,
    registry: &Registry,
    journal: &JournalWriter,
    reporter: &dyn Reporter,
    task: Task,
    stop: CancellationToken,
) -> StepResult {
    match run_step_inner(plan, providers, registry, journal, reporter, task, stop).await {
        Ok(r) => r,
        Err(e) => StepResult::Journal(e),
    }
}

async fn run_step_inner(
    plan: &Plan,
    providers: &Providers,
    registry: &Registry,
    journal: &JournalWriter,
    reporter: &dyn Reporter,
    task: Task,
    stop: CancellationToken,
) -> Result<StepResult, StateError> {
    let inst = &plan.instances[task.idx];
    let st = registry.step(&inst.type_name).expect("validated type");
    let mut ctx = providers.context(inst).await;
    ctx.cancel = stop.clone();
    ctx.planned_state = inst.before.clone();
    let started = Instant::now();
    // Failure messages go to the terminal and the journal: scrub sensitive values from them.
    let fail =
        |msg: String| plan.redact(&format!("`{}` on `{}`: {msg}", inst.address, inst.target));

    // Re-read the live target: earlier steps or people may have changed it since the plan.
    let mut action = inst.change.action;
    let mut observed_before = None;
    // A saved plan: every step that reads is checked against the plan's `before`.
    let expected = plan.saved.as_ref().filter(|e| e.has(&inst.address));
    if st.reads() && (action != Action::NoOp || st.gate() || expected.is_some()) {
        match st.read(&ctx, &task.inputs).await {
            Ok(state) => {
                let current = match &state {
                    Some(s) => Current::Known(s),
                    None => Current::Absent,
                };
                match st.plan(&task.inputs, current) {
                    Ok(c) => {
                        // Before the side effect: the target must still be as planned.
                        if let Some(Err(msg)) = expected.map(|e| e.check(&inst.address, &c.fields))
                        {
                            return record_failure(journal, &inst.address, fail(msg)).await;
                        }
                        action = c.action
                    }
                    Err(msg) => {
                        let msg = fail(msg);
                        return record_failure(journal, &inst.address, msg).await;
                    }
                }
                observed_before = state;
            }
            Err(_) if stop.is_cancelled() => return Ok(StepResult::NotStarted),
            Err(e) => {
                let msg = fail(format!("reading before apply: {e}"));
                return record_failure(journal, &inst.address, msg).await;
            }
        }
    }
    if stop.is_cancelled() {
        return Ok(StepResult::NotStarted);
    }
    if action == Action::NoOp {
        let outputs = outputs_for_resolved(&inst.planned_outputs);
        let (recorded, observed) = journaled(inst, &outputs, observed_before.unwrap_or(Json::Null));
        let durable = journal.enqueue(&Record::StepFinished {
            step: inst.address.clone(),
            at: now_rfc3339(),
            action: Action::NoOp.as_str().into(),
            outputs: recorded,
            observed,
        })?;
        return Ok(StepResult::Finished {
            action,
            outputs,
            elapsed: started.elapsed(),
            durable,
        });
    }

    // A value the step chooses before acting (e.g. a restart's `restartedAt`) is durable with
    // `step_started`, so that resume can look for it in the live object; an attempt after an
    // interrupted one reuses that one's value.
    let prepared = task
        .prepared
        .clone()
        .or_else(|| st.prepare_for(&task.inputs, ctx.planned_state.as_ref()));
    ctx.prepared = prepared.clone();
    let retry = plan.config.blocks[inst.block].execution.retry.as_ref();
    let mut attempt = task.attempt;
    let mut tried = 0u32;
    let outputs = loop {
        tried += 1;
        journal
            .append(&Record::StepStarted {
                step: inst.address.clone(),
                attempt,
                at: now_rfc3339(),
                prepared: prepared.clone(),
            })
            .await?;
        if tried == 1 {
            reporter.step_started(&inst.address, action);
        } else {
            reporter.notice(&format!("{}: attempt {attempt}", inst.address));
        }
        // At the deadline (or on abort) the step is asked to stop through `ctx.cancel` and
        // given STOP_GRACE to do so (an `exec` terminates its command's process group); a step
        // that was stopped while acting may have acted, so it is in doubt, not failed.
        let apply = st.apply(&ctx, &task.inputs);
        tokio::pin!(apply);
        let mut stopped_by = None;
        let applied = tokio::select! {
            biased;
            r = &mut apply => r,
            _ = tokio::time::sleep(inst.timeout) => {
                stopped_by = Some(format!(
                    "timed out after {}; it may have acted, so it is in doubt",
                    humantime::format_duration(inst.timeout)
                ));
                stop.cancel();
                stop_within_grace(apply.as_mut()).await
            }
            _ = stop.cancelled() => {
                stopped_by = Some(match task.cancel.timed_out() {
                    Some(why) => format!("{why}; stopped while it ran, it may have acted, so it is in doubt"),
                    None => "stopped by a second interrupt while it ran; it may have acted, so it is in doubt"
                        .to_string(),
                });
                stop_within_grace(apply.as_mut()).await
            }
        };
        match (applied, stopped_by) {
            (Ok(o), _) => break o,
            (Err(e), Some(why)) => {
                // What the step said as it stopped (e.g. what it was still waiting for).
                let why = fail(format!("{why}: {e}"));
                return record_in_doubt(journal, &inst.address, why).await;
            }
            (Err(e), None) => {
                let msg = fail(e.to_string());
                let Some(delay) = retry::next_delay(retry, &e, tried) else {
                    return record_failure(journal, &inst.address, msg).await;
                };
                // One attempt failed: journaled with the delay, then tried again.
                journal
                    .append(&Record::StepFailed {
                        step: inst.address.clone(),
                        at: now_rfc3339(),
                        error: msg.clone(),
                        retry_in_ms: Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    })
                    .await?;
                let attempts = retry.map_or(1, |r| r.attempts);
                reporter.notice(&format!(
                    "{}: attempt {tried}/{attempts} failed; retrying in {:.1}s\n  {}",
                    inst.address,
                    delay.as_secs_f64(),
                    msg.replace('\n', "\n  ")
                ));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return Ok(StepResult::Failed(msg)),
                }
                attempt += 1;
            }
        }
    };
    // Verify: the recorded result is what the API says.
    let mut observed = Json::Null;
    if st.reads() && action != Action::Run {
        match st.read(&ctx, &task.inputs).await {
            Ok(state) => {
                let current = match &state {
                    Some(s) => Current::Known(s),
                    None => Current::Absent,
                };
                if let Ok(c) = st.plan(&task.inputs, current) {
                    if c.action != Action::NoOp {
                        let diffs: Vec<String> = c
                            .fields
                            .iter()
                            .filter(|f| f.before != f.after)
                            .map(|f| {
                                format!(
                                    "{}: {} (wanted {})",
                                    f.path,
                                    show(&f.before),
                                    show(&f.after)
                                )
                            })
                            .collect();
                        let msg = fail(format!(
                            "applied, but the target does not show the change: {}",
                            diffs.join(", ")
                        ));
                        return record_failure(journal, &inst.address, msg).await;
                    }
                }
                observed = state.unwrap_or(Json::Null);
            }
            Err(e) => {
                let msg = fail(format!("verifying after apply: {e}"));
                return record_failure(journal, &inst.address, msg).await;
            }
        }
    }
    // Queued, not waited for: the `step_started` of a dependent (which is waited for) or the
    // run's last record carries it to disk, since the journal is synced in order.
    let (recorded, observed) = journaled(inst, &outputs, observed);
    let durable = journal.enqueue(&Record::StepFinished {
        step: inst.address.clone(),
        at: now_rfc3339(),
        action: action.as_str().into(),
        outputs: recorded,
        observed,
    })?;
    Ok(StepResult::Finished {
        action,
        outputs,
        elapsed: started.elapsed(),
        durable,
    })
}

/// What `step_finished` records: the outputs and observed state, or for a step fed by a
/// sensitive value [`sensitive_marker`] instead of each (they may hold the secret).
fn journaled(inst: &crate::plan::Instance, outputs: &Json, observed: Json) -> (Json, Json) {
    if inst.sensitive {
        let observed = if observed.is_null() {
            observed
        } else {
            sensitive_marker()
        };
        (sensitive_marker(), observed)
    } else {
        (outputs.clone(), observed)
    }
}

/// Queues the `rollback` steps of failed instance `failed` that did not finish already.
fn queue_rollback(
    plan: &Plan,
    rollback: &[usize],
    done: &[bool],
    urgent: &mut VecDeque<usize>,
    remaining: &mut usize,
    reporter: &dyn Reporter,
    failed: usize,
) {
    for &r in rollback {
        if done[r] {
            continue;
        }
        reporter.notice(&format!(
            "{} failed: running its rollback {}",
            plan.instances[failed].address, plan.instances[r].address
        ));
        urgent.push_back(r);
        *remaining += 1;
    }
}

/// Journals a step failure durably; returns the failed result.
async fn record_failure(
    journal: &JournalWriter,
    step: &str,
    msg: String,
) -> Result<StepResult, StateError> {
    journal
        .append(&Record::StepFailed {
            step: step.to_string(),
            at: now_rfc3339(),
            error: msg.clone(),
            retry_in_ms: None,
        })
        .await?;
    Ok(StepResult::Failed(msg))
}

/// Waits up to [`STOP_GRACE`] for a step asked to stop; then drops it.
async fn stop_within_grace(
    apply: std::pin::Pin<&mut impl std::future::Future<Output = Result<Json, ProviderError>>>,
) -> Result<Json, ProviderError> {
    tokio::time::timeout(STOP_GRACE, apply)
        .await
        .unwrap_or_else(|_| Err(ProviderError::new("did not stop in time; abandoned")))
}

/// Journals a step in doubt durably; returns the in-doubt result.
async fn record_in_doubt(
    journal: &JournalWriter,
    step: &str,
    reason: String,
) -> Result<StepResult, StateError> {
    journal
        .append(&Record::StepInDoubt {
            step: step.to_string(),
            at: now_rfc3339(),
            reason: reason.clone(),
        })
        .await?;
    Ok(StepResult::InDoubt(reason))
}

fn show(v: &Option<Json>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "absent".into(),
    }
}
