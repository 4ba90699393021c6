//! `opsctl apply --json`: the run as a stream of JSON events, one object per line on standard
//! output (like Terraform's machine-readable UI, `terraform apply -json`). Every event has
//! `type`, `@timestamp` (RFC 3339, UTC) and `@message` (the human line); the rest depends on the
//! type. Schema: `docs/apply-events.schema.json`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};

use crate::apply::Reporter;
use crate::plan::Plan;
use crate::provider::Action;

/// The version of the event stream, in the `run_started` event.
pub const EVENTS_FORMAT_VERSION: &str = "1.0";

/// A [`Reporter`] that writes one JSON event per line to standard output, ignoring a closed
/// output (as [`super::write_stdout`] does).
#[derive(Default)]
pub struct JsonReporter {
    /// When each running step started, for the timings of failures.
    started: Mutex<HashMap<String, Instant>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Writes one event: `type`, `@timestamp`, `@message`, then `fields`.
pub fn emit(kind: &str, message: &str, fields: Json) {
    let mut event = Map::new();
    event.insert("type".into(), json!(kind));
    event.insert("@timestamp".into(), json!(crate::state::now_rfc3339()));
    event.insert("@message".into(), json!(message));
    if let Json::Object(m) = fields {
        event.extend(m);
    }
    let mut line = Json::Object(event).to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

impl JsonReporter {
    /// A reporter with no step running.
    pub fn new() -> JsonReporter {
        JsonReporter::default()
    }

    /// `run_started`: the run's ID, whether it resumes an earlier attempt, the number of steps,
    /// and one `planned_change` event per step that will act.
    pub fn run_started(&self, run_id: &str, resumed: bool, plan: &Plan) {
        let c = plan.counts();
        emit(
            "run_started",
            &format!(
                "{} run {run_id}: {}",
                if resumed { "Resuming" } else { "Starting" },
                super::summary_line(c)
            ),
            json!({
                "format_version": EVENTS_FORMAT_VERSION,
                "run_id": run_id,
                "resumed": resumed,
                "steps": plan.instances.len(),
                "counts": c,
            }),
        );
        for inst in &plan.instances {
            if inst.change.action == Action::NoOp {
                continue;
            }
            emit(
                "planned_change",
                &format!("{}: plan to {}", inst.address, inst.change.action.as_str()),
                json!({
                    "address": inst.address,
                    "action": inst.change.action.as_str(),
                    "target": super::json::shown_target(inst),
                }),
            );
        }
    }

    /// `run_finished`: the status (`succeeded`, `failed`, `interrupted`, or `nothing_to_do`)
    /// and `extra` fields (`counts` as the human summary line gives them, `outputs`).
    pub fn run_finished(&self, run_id: Option<&str>, status: &str, message: &str, extra: Json) {
        let mut fields = json!({ "run_id": run_id, "status": status });
        if let (Json::Object(m), Json::Object(e)) = (&mut fields, extra) {
            m.extend(e);
        }
        emit("run_finished", message, fields);
    }

    fn elapsed(&self, address: &str) -> Option<u64> {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(address)
            .map(|t| millis(t.elapsed()))
    }
}

impl Reporter for JsonReporter {
    fn step_started(&self, address: &str, action: Action) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address.to_string(), Instant::now());
        emit(
            "step_started",
            &format!("{address}: {}...", action.as_str()),
            json!({ "address": address, "action": action.as_str() }),
        );
    }

    fn step_finished(&self, address: &str, action: Action, elapsed: Duration) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(address);
        emit(
            "step_finished",
            &format!(
                "{address}: {} complete after {:.1}s",
                action.as_str(),
                elapsed.as_secs_f64()
            ),
            json!({
                "address": address,
                "action": action.as_str(),
                "elapsed_ms": millis(elapsed),
            }),
        );
    }

    fn step_skipped(&self, address: &str, why: &str) {
        emit(
            "step_skipped",
            &format!("{address}: skipped ({why})"),
            json!({ "address": address, "reason": why }),
        );
    }

    fn step_failed(&self, address: &str, error: &str) {
        let elapsed = self.elapsed(address);
        emit(
            "step_failed",
            &format!("{address}: failed: {error}"),
            json!({ "address": address, "error": error, "elapsed_ms": elapsed }),
        );
    }

    fn step_in_doubt(&self, address: &str, reason: &str) {
        let elapsed = self.elapsed(address);
        emit(
            "step_in_doubt",
            &format!("{address}: in doubt: {reason}"),
            json!({ "address": address, "reason": reason, "elapsed_ms": elapsed }),
        );
    }

    fn notice(&self, message: &str) {
        emit("notice", message, json!({}));
    }
}
