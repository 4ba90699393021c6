//! The schedule of issue 11's safe execution on top of the dependency queue: rolling batches
//! of `count`/`for_each` instances (Ansible's `serial`, SSM's MaxConcurrency/MaxErrors), the
//! health gate between batches, failure policy (`on_failure`, `--continue-on-error`) and the
//! `rollback` steps run when a named step fails.
//!
//! Invariants: batch N+1 of a rollout starts only once every instance of batch N has
//! finished, failed or been skipped, its pause has passed and its gate steps passed, so two
//! batches never overlap; rollback and gate steps ("conditional" steps) never run in the
//! normal order, only when called; a resumed rollout opens at its first unfinished batch, and
//! when no instance of that batch started before, its gate (pause, health checks) runs again
//! first: the gate that failed, or never ran, before the interruption.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{run_step, Cancel, Reporter, StepResult, Task};
use crate::config::execution::OnFailure;
use crate::plan::{Plan, Providers};
use crate::provider::Registry;
use crate::state::journal::JournalWriter;

/// The batches of one rolling step block and how far it got.
pub(super) struct RolloutRun {
    /// The block address (`step.T.N`).
    pub address: String,
    /// Instance indices per batch, in instance order.
    pub batches: Vec<Vec<usize>>,
    /// Batches `0..open` may start.
    pub open: usize,
    /// Failures tolerated before the rollout stops.
    pub tolerated: usize,
    /// Failed instances so far in this attempt of the run.
    pub failed: usize,
    /// The rollout stopped (too many failures, or a gate failed): no further batch opens.
    pub stopped: bool,
    /// Gate step instances run between batches.
    pub gates: Vec<usize>,
    /// Pause between batches.
    pub pause: Duration,
    /// Instances whose dependencies are met but whose batch is not open yet.
    pub held: Vec<usize>,
    /// How many times the gates ran in this attempt (for attempt numbers).
    pub gate_runs: u32,
    /// The gate between the open batch and the next is running (asked for once).
    pub gating: bool,
}

/// What the scheduler should do after an instance settled.
pub(super) enum Advance {
    /// Nothing.
    None,
    /// Run the gate (pause, then gate steps) of this rollout, then [`Schedule::open_next`].
    Gate(usize),
}

/// What a failure does.
pub(super) struct FailureEffect {
    /// Stop starting steps (other than rollback steps).
    pub halt: bool,
    /// Rollback step instances to run now.
    pub rollback: Vec<usize>,
    /// Why, for the log, when the failure stops a rollout.
    pub note: Option<String>,
}

/// The safe-execution schedule of a plan.
pub(super) struct Schedule {
    /// Rollback and gate instances: they run only when called.
    pub conditional: Vec<bool>,
    /// `(rollout, batch)` of each instance of a rolling block.
    pub batch_of: Vec<Option<(usize, usize)>>,
    /// The rolling blocks.
    pub rollouts: Vec<RolloutRun>,
    /// Rollback instances per block index.
    rollback_of: HashMap<usize, Vec<usize>>,
    /// Blocks whose rollback was queued in this attempt.
    rolled_back: HashSet<usize>,
    /// `--continue-on-error`.
    continue_on_error: bool,
}

impl Schedule {
    /// The schedule of `plan`; `done[i]` says which instances finished in an earlier attempt
    /// and `touched[i]` which started in one (finished, failed or in doubt). A resumed
    /// rollout opens at its first batch with an unfinished instance; if none of that batch's
    /// instances started, the gate before it had not passed (it failed, or the run stopped
    /// first), so the batch stays closed until the gate runs again ([`Schedule::pending_gates`]).
    pub fn new(plan: &Plan, done: &[bool], touched: &[bool], continue_on_error: bool) -> Schedule {
        let n = plan.instances.len();
        let blocks = &plan.config.blocks;
        let instances_of = |addr: &str| -> Vec<usize> {
            (0..n)
                .filter(|&i| blocks[plan.instances[i].block].address() == addr)
                .collect()
        };
        let mut s = Schedule {
            conditional: vec![false; n],
            batch_of: vec![None; n],
            rollouts: Vec::new(),
            rollback_of: HashMap::new(),
            rolled_back: HashSet::new(),
            continue_on_error,
        };
        for (b, block) in blocks.iter().enumerate() {
            let e = &block.execution;
            let mut rb = Vec::new();
            for (addr, _) in &e.rollback {
                rb.extend(instances_of(addr.as_str()));
            }
            for &i in &rb {
                s.conditional[i] = true;
            }
            if !rb.is_empty() {
                s.rollback_of.insert(b, rb);
            }
            let Some(r) = &e.rollout else { continue };
            let members: Vec<usize> = (0..n).filter(|&i| plan.instances[i].block == b).collect();
            if members.is_empty() {
                continue;
            }
            let size = r.size_for(members.len());
            let batches: Vec<Vec<usize>> = members.chunks(size).map(|c| c.to_vec()).collect();
            let open = match batches
                .iter()
                .position(|batch| batch.iter().any(|&i| !done[i]))
            {
                None => batches.len(),
                Some(p) if p > 0 && !batches[p].iter().any(|&i| touched[i]) => p,
                Some(p) => p + 1,
            };
            let mut gates = Vec::new();
            for (addr, _) in &r.health_check {
                gates.extend(instances_of(addr.as_str()));
            }
            for &g in &gates {
                s.conditional[g] = true;
            }
            let k = s.rollouts.len();
            for (bn, batch) in batches.iter().enumerate() {
                for &i in batch {
                    s.batch_of[i] = Some((k, bn));
                }
            }
            s.rollouts.push(RolloutRun {
                address: block.address(),
                tolerated: r.tolerated(members.len()),
                batches,
                open,
                failed: 0,
                stopped: false,
                gates,
                pause: r.pause,
                held: Vec::new(),
                gate_runs: 0,
                gating: false,
            });
        }
        s
    }

    /// For each rollout whose open batches all finished in an earlier attempt while the next
    /// is closed (a resumed run): an instance of its last open batch, to pass to
    /// [`Schedule::settled`] so that its gate runs before anything else of it.
    pub fn pending_gates(&self) -> Vec<usize> {
        self.rollouts
            .iter()
            .filter(|ro| ro.open > 0 && ro.open < ro.batches.len())
            .filter_map(|ro| ro.batches[ro.open - 1].first().copied())
            .collect()
    }

    /// Whether instance `i`, ready by its dependencies, may start now; if not it is held until
    /// its batch opens (or forever, if its rollout stopped).
    pub fn admit(&mut self, i: usize) -> bool {
        match self.batch_of[i] {
            Some((r, b)) if b >= self.rollouts[r].open || self.rollouts[r].stopped => {
                self.rollouts[r].held.push(i);
                false
            }
            _ => true,
        }
    }

    /// After instance `i` settled (finished, failed or skipped; `settled` for all): whether
    /// the last open batch of its rollout is complete and the next one needs its gate.
    pub fn settled(&mut self, i: usize, settled: &[bool]) -> Advance {
        let Some((r, _)) = self.batch_of[i] else {
            return Advance::None;
        };
        let ro = &mut self.rollouts[r];
        if ro.stopped || ro.gating || ro.open >= ro.batches.len() {
            return Advance::None;
        }
        if ro.batches[ro.open - 1].iter().all(|&j| settled[j]) {
            ro.gating = true;
            Advance::Gate(r)
        } else {
            Advance::None
        }
    }

    /// Opens the next batch of rollout `r`; returns its held instances, now ready.
    pub fn open_next(&mut self, r: usize) -> Vec<usize> {
        let ro = &mut self.rollouts[r];
        ro.open += 1;
        ro.gating = false;
        let open = ro.open;
        let batch_of = &self.batch_of;
        let (now, later): (Vec<usize>, Vec<usize>) = ro
            .held
            .drain(..)
            .partition(|&i| matches!(batch_of[i], Some((_, b)) if b < open));
        ro.held = later;
        now
    }

    /// Stops rollout `r` (its gate failed).
    pub fn stop(&mut self, r: usize) {
        self.rollouts[r].stopped = true;
    }

    /// What the failure of instance `i` does.
    pub fn failed(&mut self, plan: &Plan, i: usize) -> FailureEffect {
        let block = plan.instances[i].block;
        let rollback = if self.rolled_back.insert(block) {
            self.rollback_of.get(&block).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        let cont = self.continue_on_error
            || plan.config.blocks[block].execution.on_failure == Some(OnFailure::Continue);
        if let Some((r, b)) = self.batch_of[i] {
            let ro = &mut self.rollouts[r];
            ro.failed += 1;
            if ro.failed > ro.tolerated {
                ro.stopped = true;
                return FailureEffect {
                    halt: !cont,
                    rollback,
                    note: Some(format!(
                        "{}: rollout stopped in batch {}/{}: {} failed instance(s), {} tolerated (max_failures)",
                        ro.address,
                        b + 1,
                        ro.batches.len(),
                        ro.failed,
                        ro.tolerated
                    )),
                };
            }
            return FailureEffect {
                halt: false,
                rollback,
                note: Some(format!(
                    "{}: {} failed instance(s) of {} tolerated; the rollout goes on",
                    ro.address, ro.failed, ro.tolerated
                )),
            };
        }
        FailureEffect {
            halt: !cont,
            rollback,
            note: None,
        }
    }
}

/// Every instance that depends on `i`, directly or not, and is not `done`.
pub(super) fn dependents_of(i: usize, dependents: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![i];
    while let Some(x) = stack.pop() {
        for &d in &dependents[x] {
            if !done[d] && seen.insert(d) {
                out.push(d);
                stack.push(d);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Everything a gate run needs.
pub(super) struct GateRun {
    pub plan: Arc<Plan>,
    pub providers: Arc<Providers>,
    pub registry: Arc<Registry>,
    pub journal: JournalWriter,
    pub reporter: Arc<dyn Reporter>,
    pub cancel: Arc<Cancel>,
    /// (instance, inputs, attempt) of each gate step, in order.
    pub gates: Vec<(usize, crate::provider::Inputs, u32)>,
    pub pause: Duration,
    /// "after batch 1/4 of step.T.N", for messages.
    pub label: String,
}

/// Pauses, then runs the gate steps in order; the first that does not finish decides the
/// result. `StepResult::NotStarted` when nothing ran (no gates; or stopped in the pause).
pub(super) async fn run_gate(g: GateRun) -> StepResult {
    if !g.pause.is_zero() {
        g.reporter.notice(&format!(
            "{}: pausing {} before the next batch",
            g.label,
            humantime::format_duration(g.pause)
        ));
        tokio::select! {
            _ = tokio::time::sleep(g.pause) => {}
            _ = g.cancel.steps.cancelled() => return StepResult::NotStarted,
        }
    }
    let mut last = StepResult::NotStarted;
    for (idx, inputs, attempt) in g.gates {
        g.reporter.notice(&format!(
            "{}: health check {}",
            g.label, g.plan.instances[idx].address
        ));
        let task = Task {
            idx,
            inputs,
            attempt,
            prepared: None,
            cancel: g.cancel.clone(),
        };
        let stop: CancellationToken = g.cancel.steps.child_token();
        let r = run_step(
            &g.plan,
            &g.providers,
            &g.registry,
            &g.journal,
            g.reporter.as_ref(),
            task,
            stop,
        )
        .await;
        match r {
            StepResult::Finished { .. } => last = r,
            other => return other,
        }
    }
    last
}
