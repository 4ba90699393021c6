//! The safe-execution part of the human plan (issue 11): the batches of each rolling block in
//! order with their failure budget, pause and health gate; the failure paths (`rollback`);
//! `on_failure = "continue"` steps; and each step's retry policy.

use std::fmt::Write as _;

use crate::config::execution::{BatchSize, OnFailure};
use crate::plan::Plan;

/// The sections, each with a blank line after it; empty when no block uses these settings.
pub fn execution_text(plan: &Plan) -> String {
    let mut out = String::new();
    let blocks = &plan.config.blocks;
    let instances = |b: usize| -> Vec<&str> {
        plan.instances
            .iter()
            .filter(|i| i.block == b)
            .map(|i| i.address.as_str())
            .collect()
    };
    for (b, block) in blocks.iter().enumerate() {
        let Some(r) = &block.execution.rollout else {
            continue;
        };
        let members = instances(b);
        if members.is_empty() {
            continue;
        }
        let size = r.size_for(members.len());
        let batches: Vec<&[&str]> = members.chunks(size).collect();
        let mut how = vec![match r.batch_size {
            BatchSize::Count(c) => format!("batch_size {c}"),
            BatchSize::Percent(p) => format!("batch_size {p}% = {size}"),
        }];
        how.push(format!(
            "stops after {} failed instance(s)",
            r.tolerated(members.len()) + 1
        ));
        if !r.pause.is_zero() {
            how.push(format!("pause {}", humantime::format_duration(r.pause)));
        }
        let _ = writeln!(
            out,
            "Rollout of {} ({} instances; {}):",
            block.address(),
            members.len(),
            how.join(", ")
        );
        let gates: Vec<&str> = r.health_check.iter().map(|(a, _)| a.as_str()).collect();
        for (k, batch) in batches.iter().enumerate() {
            let _ = writeln!(
                out,
                "  batch {}/{}: [{}]",
                k + 1,
                batches.len(),
                batch.join(", ")
            );
            if k + 1 < batches.len() && !gates.is_empty() {
                let _ = writeln!(out, "    then health check: {}", gates.join(", "));
            }
        }
        out.push('\n');
    }
    let paths: Vec<String> = blocks
        .iter()
        .filter(|b| !b.execution.rollback.is_empty())
        .map(|b| {
            let rb: Vec<&str> = b
                .execution
                .rollback
                .iter()
                .map(|(a, _)| a.as_str())
                .collect();
            format!("  on failure of {}: {}", b.address(), rb.join(", "))
        })
        .collect();
    let continuing: Vec<String> = blocks
        .iter()
        .filter(|b| b.execution.on_failure == Some(OnFailure::Continue))
        .map(|b| {
            format!(
                "  on failure of {}: skip its dependents, continue",
                b.address()
            )
        })
        .collect();
    if !paths.is_empty() || !continuing.is_empty() {
        out.push_str("Failure paths (rollback steps run only then):\n");
        for line in paths.iter().chain(continuing.iter()) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    let retries: Vec<String> = blocks
        .iter()
        .filter_map(|b| {
            let r = b.execution.retry.as_ref()?;
            Some(format!(
                "  {}: up to {} attempts, backoff {} x{} up to {} with jitter, on {} errors",
                b.address(),
                r.attempts,
                humantime::format_duration(r.initial),
                r.multiplier,
                humantime::format_duration(r.max),
                if r.any { "any" } else { "transient" }
            ))
        })
        .collect();
    if !retries.is_empty() {
        out.push_str("Retries:\n");
        for line in retries {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    out
}
