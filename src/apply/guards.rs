//! Guards of a run (issue 11): the plan digest approvals are bound to, the maintenance window's
//! times, and the approval policy the CLI installs for `approval` gates. No terminal, flags or
//! environment here: the CLI hands in what it read.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Value as Json};
use sha2::{Digest as _, Sha256};

use crate::config::conditions::{ConditionKind, WindowDef};
use crate::plan::Plan;
use crate::provider::builtin::approval::{ApprovalRequest, Approver};

/// The digest an approval is bound to: SHA-256 (hex) over each instance's address, action and
/// planned change (field paths, before/after values and summary lines), in plan order.
/// Two plans with the same digest do the same things to the same targets.
pub fn digest(plan: &Plan) -> String {
    let mut h = Sha256::new();
    for inst in &plan.instances {
        h.update(inst.address.as_bytes());
        h.update([0]);
        h.update(
            serde_json::to_string(&inst.change.action)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
        h.update(
            serde_json::to_string(&inst.change)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the clock stands relative to a maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    /// Open now; closes at the given instant.
    Open {
        /// When the current window closes.
        closes: DateTime<Utc>,
    },
    /// Closed; the next window opens at the given instant.
    Closed {
        /// When the next window opens.
        opens: DateTime<Utc>,
    },
}

/// The window's status at `now`: the occurrences that open on one of its `days` at `start`
/// local time in its zone, each lasting `duration` (a start in a daylight-saving gap moves to
/// the first valid local time after it; an ambiguous one takes the earlier instant).
pub fn window_status(w: &WindowDef, now: DateTime<Utc>) -> WindowStatus {
    let local_today = now.with_timezone(&w.time_zone).date_naive();
    let length = ChronoDuration::from_std(w.duration).unwrap_or(ChronoDuration::days(365));
    // Occurrences from a window's length (at most 365 days) before today to 8 days after.
    let back = length.num_days() + 2;
    let mut closes: Option<DateTime<Utc>> = None;
    let mut next: Option<DateTime<Utc>> = None;
    for offset in -back..=8 {
        let Some(day) = local_today.checked_add_signed(ChronoDuration::days(offset)) else {
            continue;
        };
        if !w.days.contains(&day.weekday()) {
            continue;
        }
        let naive = day.and_time(w.start);
        let start = w
            .time_zone
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                (1..=4).find_map(|h| {
                    w.time_zone
                        .from_local_datetime(&(naive + ChronoDuration::minutes(30 * h)))
                        .earliest()
                })
            });
        let Some(start) = start.map(|s| s.with_timezone(&Utc)) else {
            continue;
        };
        let end = start + length;
        if start <= now && now < end {
            closes = Some(closes.map_or(end, |c| c.max(end)));
        } else if start > now && next.is_none_or(|n| start < n) {
            next = Some(start);
        }
    }
    match (closes, next) {
        (Some(closes), _) => WindowStatus::Open { closes },
        (None, Some(opens)) => WindowStatus::Closed { opens },
        // Unreachable with at least one day: a week ahead always holds one.
        (None, None) => WindowStatus::Closed {
            opens: now + ChronoDuration::days(7),
        },
    }
}

/// `2026-11-29 02:00 CET (in 5d 3h)`: an instant in the window's zone and how far it is.
pub fn describe_instant(w: &WindowDef, at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let local = at.with_timezone(&w.time_zone);
    let secs = (at - now).num_seconds().max(0) as u64;
    // Whole minutes (rounded up) from an hour on: the clock moved a little since `now`.
    let rounded = if secs >= 3600 {
        secs.div_ceil(60) * 60
    } else {
        secs
    };
    format!(
        "{} ({} from now)",
        local.format("%a %Y-%m-%d %H:%M %Z"),
        humantime::format_duration(std::time::Duration::from_secs(rounded))
    )
}

/// The plan's line about the window: open and when it closes, or when the next one opens.
pub fn window_line(w: &WindowDef, now: DateTime<Utc>) -> String {
    match window_status(w, now) {
        WindowStatus::Open { closes } => format!(
            "Maintenance window {}: open now, closes {}.",
            w.describe(),
            describe_instant(w, closes, now)
        ),
        WindowStatus::Closed { opens } => format!(
            "Maintenance window {}: closed now; the next opens {}.",
            w.describe(),
            describe_instant(w, opens, now)
        ),
    }
}

/// A clock that may be shifted (tests set the time the CLI reads from `OPSCTL_NOW`; it then
/// runs on from there at the real pace).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: ChronoDuration,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Clock {
        Clock {
            offset: ChronoDuration::zero(),
        }
    }
    /// A clock that reads `now` at this moment.
    pub fn starting_at(now: DateTime<Utc>) -> Clock {
        Clock {
            offset: now - Utc::now(),
        }
    }
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// Asks a person on a terminal: given the prompt, returns the line they entered (None at end
/// of input).
pub type Ask = dyn Fn(&str) -> Option<String> + Send + Sync;

/// How `approval` gates are decided in this run.
pub struct ApprovalPolicy {
    /// Gate names approved on the command line (`--approve NAME`).
    pub approved: Vec<String>,
    /// The digest of the plan being applied ([`digest`]).
    pub plan_digest: String,
    /// Asks on a terminal; None without one (CI).
    pub ask: Option<Box<Ask>>,
    /// Who approves (`state::current_user`).
    pub who: String,
}

impl ApprovalPolicy {
    /// Decides one gate: approved by `--approve NAME`, else by `yes` on the terminal; the
    /// record to journal (who, when, how, plan digest), or why not.
    pub fn decide(&self, req: &ApprovalRequest) -> Result<Json, String> {
        let record = |via: &str| {
            json!({
                "approved_by": self.who,
                "approved_at": crate::state::now_rfc3339(),
                "via": via,
                "plan_digest": self.plan_digest,
            })
        };
        if self.approved.iter().any(|a| a == &req.name) {
            return Ok(record("--approve"));
        }
        let Some(ask) = &self.ask else {
            return Err(format!(
                "approval `{}` is required ({}) and there is no terminal to ask on; \
                 run with `--approve {}` to approve plan {}",
                req.name,
                req.message,
                req.name,
                &self.plan_digest[..12.min(self.plan_digest.len())]
            ));
        };
        let answer = ask(&format!(
            "\nApproval `{}` required: {}\n  Plan digest: {}\n  Only `yes` will be accepted to approve.\n\n  Enter a value: ",
            req.name, req.message, self.plan_digest
        ));
        if answer.as_deref() == Some("yes") {
            Ok(record("terminal"))
        } else {
            Err(format!("approval `{}` was not given", req.name))
        }
    }

    /// The policy as the `approval` step type's approver. Concurrent gates ask one at a time.
    pub fn into_approver(self) -> Arc<Approver> {
        let one_at_a_time = std::sync::Mutex::new(self);
        Arc::new(move |req: &ApprovalRequest| {
            let policy = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
            policy.decide(req)
        })
    }
}

/// Renders a condition diagnostic for the journal and terminal: `file:line:col: message`.
fn condition_message(plan: &Plan, mut d: crate::config::Diagnostic) -> String {
    let at = d
        .span
        .as_ref()
        .map(|s| plan.config.sources.location(s))
        .unwrap_or_default();
    d.message = plan.redact(&d.message);
    if at.is_empty() {
        d.message
    } else {
        format!("{} (at {at})", d.message)
    }
}

/// Checks instance `idx`'s preconditions just before it runs, with the outputs of the steps
/// finished so far: None when they hold, else the failure to journal (with `file:line:col`).
/// A condition still unknown now fails too: nothing later will make it known.
pub fn precondition_failure(
    plan: &Plan,
    idx: usize,
    outputs: &std::collections::HashMap<String, Json>,
) -> Option<String> {
    match plan.check_conditions(idx, ConditionKind::Pre, outputs, None) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "a precondition of `{}` is still unknown when the step is due to run",
            plan.instances[idx].address
        )),
        Err(d) => Some(condition_message(plan, d)),
    }
}

/// Checks instance `idx`'s postconditions once it has converged, `self` bound to its
/// arguments overlaid by `own` (its outputs): None when they hold, else the failure.
pub fn postcondition_failure(
    plan: &Plan,
    idx: usize,
    outputs: &std::collections::HashMap<String, Json>,
    own: &Json,
) -> Option<String> {
    match plan.check_conditions(idx, ConditionKind::Post, outputs, Some(own)) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "a postcondition of `{}` is unknown after the step ran",
            plan.instances[idx].address
        )),
        Err(d) => Some(condition_message(plan, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[chrono::Weekday], start: &str, hours: u64, tz: &str) -> WindowDef {
        WindowDef {
            days: days.to_vec(),
            start: chrono::NaiveTime::parse_from_str(start, "%H:%M").unwrap(),
            duration: std::time::Duration::from_secs(hours * 3600),
            time_zone: tz.parse().unwrap(),
            span: crate::config::Span {
                file: 0,
                range: 0..0,
            },
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn sunday_window_in_berlin_opens_and_closes_in_local_time() {
        let w = window(&[chrono::Weekday::Sun], "02:00", 4, "Europe/Berlin");
        // Sunday 2026-11-29 02:00 CET is 01:00 UTC.
        assert_eq!(
            window_status(&w, at("2026-11-29T01:30:00Z")),
            WindowStatus::Open {
                closes: at("2026-11-29T05:00:00Z")
            }
        );
        assert_eq!(
            window_status(&w, at("2026-11-25T12:00:00Z")),
            WindowStatus::Closed {
                opens: at("2026-11-29T01:00:00Z")
            }
        );
        // Just after it closed: next Sunday.
        assert_eq!(
            window_status(&w, at("2026-11-29T05:00:00Z")),
            WindowStatus::Closed {
                opens: at("2026-12-06T01:00:00Z")
            }
        );
        // Summer time: 02:00 CEST is 00:00 UTC.
        assert_eq!(
            window_status(&w, at("2026-07-01T00:00:00Z")),
            WindowStatus::Closed {
                opens: at("2026-07-05T00:00:00Z")
            }
        );
    }

    #[test]
    fn a_window_past_midnight_is_open_the_next_day() {
        let w = window(&[chrono::Weekday::Sat], "22:00", 6, "UTC");
        assert!(matches!(
            window_status(&w, at("2026-11-29T03:00:00Z")),
            WindowStatus::Open { .. }
        ));
    }
}
