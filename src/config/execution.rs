//! Safe-execution settings of a step block (issue 11): `retry { ... }`, `rollout { ... }`,
//! `on_failure` and `rollback`, parsed from literals with `file:line:col` diagnostics.
//!
//! ```hcl
//! step "exec" "deploy" {
//!   count      = 4
//!   command    = ["./deploy.sh"]
//!   on_failure = "abort"                        # or "continue"
//!   rollback   = [step.exec.undo]               # run only when this step fails
//!   retry { attempts = 3, initial = "1s", max = "30s", multiplier = 2, on = "transient" }
//!   rollout {
//!     batch_size             = 1                # or "25%" (Ansible `serial`, SSM MaxConcurrency)
//!     max_failures           = 1                # or max_failure_percentage = 25 (SSM MaxErrors)
//!     pause                  = "30s"            # or seconds
//!     health_check           = step.exec.gate   # or a list; re-run between batches
//!   }
//! }
//! ```
//!
//! Values are literals (they shape the schedule, which plan shows before anything is read).
//! References (`rollback`, `health_check`) are kept apart from the block's arguments, so they
//! add no dependency edge: a rollback or gate step runs only when apply calls it.

use std::time::Duration;

use hcl_edit::structure::{Block, Structure};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::refs::RefRoot;
use super::{header_span, make_attr, Attr, BlockDef, Config, Span};

/// `retry { attempts, initial, max, multiplier, on }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Total attempts, the first included (>= 1; default 3).
    pub attempts: u32,
    /// Delay before the second attempt (default 1 s).
    pub initial: Duration,
    /// Longest delay (default 30 s).
    pub max: Duration,
    /// Factor between successive delays (>= 1; default 2).
    pub multiplier: f64,
    /// `on = "any"`: retry every error; else only errors the provider marks transient.
    pub any: bool,
}

/// `batch_size`: a number of instances or a percentage of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchSize {
    /// At most this many instances per batch.
    Count(usize),
    /// This percentage of the instances (rounded up, at least 1) per batch.
    Percent(f64),
}

/// `rollout { batch_size, max_failures | max_failure_percentage, pause, health_check }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Batch size.
    pub batch_size: BatchSize,
    /// Failed instances tolerated; the next failure stops the rollout (SSM's MaxErrors).
    pub max_failures: Option<usize>,
    /// Failed instances tolerated, as a percentage of all instances (rounded down).
    pub max_failure_percentage: Option<f64>,
    /// Pause between batches.
    pub pause: Duration,
    /// Gate steps (`step.T.N` addresses) re-run after every batch but the last.
    pub health_check: Vec<(String, Span)>,
    /// Span of the `rollout` block header.
    pub span: Span,
}

impl Rollout {
    /// The batch size for `n` instances (>= 1).
    pub fn size_for(&self, n: usize) -> usize {
        match self.batch_size {
            BatchSize::Count(c) => c.max(1),
            BatchSize::Percent(p) => ((n as f64 * p / 100.0).ceil() as usize).max(1),
        }
    }

    /// Failures tolerated among `n` instances (0 by default: the first failure stops).
    pub fn tolerated(&self, n: usize) -> usize {
        match (self.max_failures, self.max_failure_percentage) {
            (Some(m), _) => m,
            (None, Some(p)) => (n as f64 * p / 100.0).floor() as usize,
            (None, None) => 0,
        }
    }
}

/// What a failure of the step does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop starting steps (the default, unless `--continue-on-error`).
    Abort,
    /// Let independent steps finish; skip the step's dependents.
    Continue,
}

/// The safe-execution settings of one step block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Execution {
    /// `retry { ... }`.
    pub retry: Option<Retry>,
    /// `rollout { ... }`.
    pub rollout: Option<Rollout>,
    /// `on_failure = "abort" | "continue"`.
    pub on_failure: Option<OnFailure>,
    /// `rollback = [step.T.N, ...]`: steps run only when this one fails.
    pub rollback: Vec<(String, Span)>,
}

/// Step attributes this module takes (kept out of the step type's arguments).
pub const ATTRS: &[&str] = &["on_failure", "rollback"];
/// Step blocks this module takes.
pub const BLOCKS: &[&str] = &["retry", "rollout"];

/// Parses a step attribute named in [`ATTRS`] into `def.execution`.
pub fn parse_attr(
    def: &mut BlockDef,
    file: usize,
    attr: &hcl_edit::structure::Attribute,
    diags: &mut Diagnostics,
) {
    let a = make_attr(file, attr);
    match a.name.as_str() {
        "on_failure" => match literal_str(&a).as_deref() {
            Some("abort") => def.execution.on_failure = Some(OnFailure::Abort),
            Some("continue") => def.execution.on_failure = Some(OnFailure::Continue),
            _ => diags.push(
                Diagnostic::error("`on_failure` must be \"abort\" or \"continue\"")
                    .with_span(a.span.clone()),
            ),
        },
        "rollback" => match step_refs(&a) {
            Some(r) => def.execution.rollback = r,
            None => diags.push(
                Diagnostic::error("`rollback` must be a list of steps such as `[step.TYPE.NAME]`")
                    .with_span(a.span.clone()),
            ),
        },
        _ => {}
    }
}

/// Parses a step block named in [`BLOCKS`] into `def.execution`.
pub fn parse_block(def: &mut BlockDef, file: usize, block: &Block, diags: &mut Diagnostics) {
    let span = header_span(file, block);
    let mut attrs: Vec<Attr> = Vec::new();
    for s in block.body.iter() {
        match s {
            Structure::Attribute(a) => attrs.push(make_attr(file, a)),
            Structure::Block(b) => diags.push(
                Diagnostic::error(format!(
                    "unexpected block `{}` in `{}`",
                    b.ident.as_str(),
                    block.ident.as_str()
                ))
                .with_span(header_span(file, b)),
            ),
        }
    }
    let mut err = |a: &Attr, msg: &str| {
        diags.push(Diagnostic::error(msg.to_string()).with_span(a.span.clone()));
    };
    match block.ident.as_str() {
        "retry" => {
            let mut r = Retry {
                attempts: 3,
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                multiplier: 2.0,
                any: false,
            };
            for a in &attrs {
                match a.name.as_str() {
                    "attempts" => match literal_num(a) {
                        Some(n) if (1.0..=1000.0).contains(&n) && n.fract() == 0.0 => {
                            r.attempts = n as u32
                        }
                        _ => err(a, "`attempts` must be a whole number from 1 to 1000"),
                    },
                    "initial" | "max" => match literal_duration(a) {
                        Some(d) if a.name == "initial" => r.initial = d,
                        Some(d) => r.max = d,
                        None => err(a, "must be a duration such as \"2s\" or a number of seconds"),
                    },
                    "multiplier" => match literal_num(a) {
                        Some(m) if (1.0..=100.0).contains(&m) => r.multiplier = m,
                        _ => err(a, "`multiplier` must be a number from 1 to 100"),
                    },
                    "on" => match literal_str(a).as_deref() {
                        Some("transient") => r.any = false,
                        Some("any") => r.any = true,
                        _ => err(a, "`on` must be \"transient\" or \"any\""),
                    },
                    other => err(
                        a,
                        &format!(
                            "unknown argument `{other}` in `retry`; it takes attempts, initial, max, multiplier, on"
                        ),
                    ),
                }
            }
            def.execution.retry = Some(r);
        }
        "rollout" => {
            let mut r = Rollout {
                batch_size: BatchSize::Count(1),
                max_failures: None,
                max_failure_percentage: None,
                pause: Duration::ZERO,
                health_check: Vec::new(),
                span: span.clone(),
            };
            let mut sized = false;
            for a in &attrs {
                match a.name.as_str() {
                    "batch_size" => {
                        sized = true;
                        match (literal_num(a), literal_str(a)) {
                            (Some(n), _) if n >= 1.0 && n.fract() == 0.0 => {
                                r.batch_size = BatchSize::Count(n as usize)
                            }
                            (_, Some(s)) if percent(&s).is_some() => {
                                r.batch_size = BatchSize::Percent(percent(&s).unwrap_or(100.0))
                            }
                            _ => err(
                                a,
                                "`batch_size` must be a whole number >= 1 or a percentage such as \"25%\"",
                            ),
                        }
                    }
                    "max_failures" => match literal_num(a) {
                        Some(n) if n >= 0.0 && n.fract() == 0.0 => {
                            r.max_failures = Some(n as usize)
                        }
                        _ => err(a, "`max_failures` must be a whole number >= 0"),
                    },
                    "max_failure_percentage" => match literal_num(a) {
                        Some(p) if (0.0..=100.0).contains(&p) => {
                            r.max_failure_percentage = Some(p)
                        }
                        _ => err(a, "`max_failure_percentage` must be a number from 0 to 100"),
                    },
                    "pause" => match literal_duration(a) {
                        Some(d) => r.pause = d,
                        None => err(a, "`pause` must be a duration such as \"30s\" or a number of seconds"),
                    },
                    "health_check" => match step_refs(a) {
                        Some(refs) => r.health_check = refs,
                        None => err(a, "`health_check` must be a step such as `step.TYPE.NAME` or a list of them"),
                    },
                    other => err(
                        a,
                        &format!(
                            "unknown argument `{other}` in `rollout`; it takes batch_size, max_failures, max_failure_percentage, pause, health_check"
                        ),
                    ),
                }
            }
            if !sized {
                diags.push(Diagnostic::error("`rollout` requires `batch_size`").with_span(span));
            }
            if r.max_failures.is_some() && r.max_failure_percentage.is_some() {
                diags.push(
                    Diagnostic::error(
                        "`rollout` sets both `max_failures` and `max_failure_percentage`; use one",
                    )
                    .with_span(r.span.clone()),
                );
            }
            def.execution.rollout = Some(r);
        }
        _ => {}
    }
}

/// Checks what needs the whole configuration: a `rollout` only on a `count`/`for_each` step;
/// `rollback` and `health_check` name existing steps other than the block itself.
pub fn check(config: &Config, diags: &mut Diagnostics) {
    let steps: Vec<String> = config
        .blocks
        .iter()
        .filter(|b| b.kind == super::BlockKind::Step)
        .map(|b| b.address())
        .collect();
    for b in &config.blocks {
        let e = &b.execution;
        if let Some(r) = &e.rollout {
            if b.count.is_none() && b.for_each.is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "`rollout` in `{}` needs `count` or `for_each`: it rolls out the block's instances in batches",
                        b.address()
                    ))
                    .with_span(r.span.clone()),
                );
            }
        }
        let named = e
            .rollback
            .iter()
            .chain(e.rollout.iter().flat_map(|r| r.health_check.iter()));
        for (addr, span) in named {
            if !steps.contains(addr) {
                diags.push(
                    Diagnostic::error(format!("unknown step `{addr}`")).with_span(span.clone()),
                );
            } else if *addr == b.address() {
                diags.push(
                    Diagnostic::error(format!("`{addr}` cannot name itself"))
                        .with_span(span.clone()),
                );
            }
        }
    }
}

fn percent(s: &str) -> Option<f64> {
    let p: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (p > 0.0 && p <= 100.0).then_some(p)
}

fn literal_str(a: &Attr) -> Option<String> {
    match &a.expr {
        hcl::Expression::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn literal_num(a: &Attr) -> Option<f64> {
    match &a.expr {
        hcl::Expression::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn literal_duration(a: &Attr) -> Option<Duration> {
    match (&a.expr, literal_num(a)) {
        (_, Some(n)) if n >= 0.0 && n.is_finite() => Some(Duration::from_secs_f64(n)),
        (hcl::Expression::String(s), _) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
}

/// `step.T.N` or `[step.T.N, ...]` (whole steps, no instance keys or attributes).
fn step_refs(a: &Attr) -> Option<Vec<(String, Span)>> {
    let is_ref = |e: &hcl::Expression| matches!(e, hcl::Expression::Traversal(_));
    let shape = match &a.expr {
        hcl::Expression::Array(items) => items.iter().all(is_ref),
        e => is_ref(e),
    };
    if !shape || a.refs.is_empty() {
        return None;
    }
    a.refs
        .iter()
        .map(|r| {
            (r.root == RefRoot::Step && r.parts.len() == 3 && r.index.is_none())
                .then(|| (r.subject(), r.span.clone()))
        })
        .collect()
}
