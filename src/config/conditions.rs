//! Guard blocks of a procedure (issue 11), parsed and checked at load with `file:line:col`:
//! the top-level `window { days, start, duration, time_zone }` (its times are evaluated by
//! `apply::guards`), a step's `precondition`/`postcondition { condition, error_message }`, and
//! top-level `check "NAME" { assert { ... } }` blocks (evaluated by `plan::conditions`).

use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span as _;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::{header_span, make_attr, span_of, Attr, Config, Span};

/// A maintenance window: the procedure may start (and start new steps) only inside it.
#[derive(Debug, Clone)]
pub struct WindowDef {
    /// Days the window opens on (local to `time_zone`), Monday first as chrono numbers them.
    pub days: Vec<chrono::Weekday>,
    /// Local time it opens at.
    pub start: chrono::NaiveTime,
    /// How long it stays open.
    pub duration: std::time::Duration,
    /// IANA time zone (default `UTC`).
    pub time_zone: chrono_tz::Tz,
    /// The block header, for messages.
    pub span: Span,
}

impl WindowDef {
    /// `sun 02:00 for 4h (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        let days: Vec<String> = self
            .days
            .iter()
            .map(|d| d.to_string().to_lowercase())
            .collect();
        format!(
            "{} {} for {} ({})",
            days.join(","),
            self.start.format("%H:%M"),
            humantime::format_duration(self.duration),
            self.time_zone.name()
        )
    }
}

fn weekday(s: &str) -> Option<chrono::Weekday> {
    use chrono::Weekday::*;
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Mon,
        "tue" | "tuesday" => Tue,
        "wed" | "wednesday" => Wed,
        "thu" | "thursday" => Thu,
        "fri" | "friday" => Fri,
        "sat" | "saturday" => Sat,
        "sun" | "sunday" => Sun,
        _ => return None,
    })
}

/// Loads a top-level `window` block into `config.window` (one per procedure).
pub fn load_window(config: &mut Config, file: usize, block: &Block, diags: &mut Diagnostics) {
    let span = header_span(file, block);
    if !block.labels.is_empty() {
        diags.push(Diagnostic::error("`window` takes no labels").with_span(span.clone()));
        return;
    }
    if config.window.is_some() {
        diags.push(
            Diagnostic::error("a procedure has at most one `window` block").with_span(span.clone()),
        );
        return;
    }
    let mut days = None;
    let mut start = None;
    let mut duration = None;
    let mut time_zone = chrono_tz::UTC;
    let n = diags.0.len();
    for s in block.body.iter() {
        let attr = match s {
            Structure::Attribute(a) => a,
            Structure::Block(b) => {
                diags.push(
                    Diagnostic::error(format!(
                        "unexpected block `{}` in `window`",
                        b.ident.as_str()
                    ))
                    .with_span(header_span(file, b)),
                );
                continue;
            }
        };
        let at = span_of(file, attr.value.span());
        let expr = hcl::Expression::from(attr.value.clone());
        let text = match &expr {
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        };
        let mut bad = |msg: String| diags.push(Diagnostic::error(msg).with_span(at.clone()));
        match attr.key.as_str() {
            "days" => {
                let hcl::Expression::Array(items) = &expr else {
                    bad("`days` must be a list such as `[\"sat\", \"sun\"]`".into());
                    continue;
                };
                let mut list = Vec::new();
                for item in items {
                    match item {
                        hcl::Expression::String(s) => match weekday(s) {
                            Some(d) => list.push(d),
                            None => bad(format!(
                                "`{s}` is not a day; expected `mon`, `tue`, `wed`, `thu`, `fri`, `sat` or `sun`"
                            )),
                        },
                        _ => bad("`days` must be a list of literal day names".into()),
                    }
                }
                if list.is_empty() {
                    bad("`days` must name at least one day".into());
                }
                days = Some(list);
            }
            "start" => match text
                .as_deref()
                .and_then(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok())
            {
                Some(t) => start = Some(t),
                None => bad("`start` must be a local time such as `\"02:00\"` (24-hour `HH:MM`)".into()),
            },
            "duration" => match text.as_deref().map(crate::provider::builtin::parse_duration) {
                Some(Ok(d)) if d > std::time::Duration::ZERO => duration = Some(d),
                Some(Err(e)) => bad(format!("`duration`: {e}")),
                _ => bad("`duration` must be a positive duration such as `\"4h\"`".into()),
            },
            "time_zone" => match text.as_deref().map(str::parse::<chrono_tz::Tz>) {
                Some(Ok(tz)) => time_zone = tz,
                _ => bad(format!(
                    "`time_zone` must be an IANA time zone name such as `\"Europe/Berlin\"` or `\"UTC\"`{}",
                    text.map(|t| format!("; `{t}` is not one")).unwrap_or_default()
                )),
            },
            other => bad(format!(
                "unknown argument `{other}` in `window`; expected `days`, `start`, `duration` or `time_zone`"
            )),
        }
    }
    if diags.0.len() != n {
        return;
    }
    match (days, start, duration) {
        (Some(days), Some(start), Some(duration)) => {
            config.window = Some(WindowDef {
                days,
                start,
                duration,
                time_zone,
                span,
            })
        }
        _ => diags.push(
            Diagnostic::error("`window` requires `days`, `start` and `duration`").with_span(span),
        ),
    }
}

/// Whether a condition runs before its step (`precondition`) or after it (`postcondition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionKind {
    /// Checked at plan (failing it when known false) and again just before the step runs.
    Pre,
    /// Checked once the step has converged, with `self` bound to its outputs.
    Post,
}

impl ConditionKind {
    /// `precondition` or `postcondition`.
    pub fn keyword(self) -> &'static str {
        match self {
            ConditionKind::Pre => "precondition",
            ConditionKind::Post => "postcondition",
        }
    }
}

/// A `precondition { condition, error_message }` or `postcondition` block of a step
/// (Terraform's custom conditions).
#[derive(Debug, Clone)]
pub struct ConditionDef {
    /// Pre or post.
    pub kind: ConditionKind,
    /// Must evaluate to `true`.
    pub condition: Attr,
    /// The message when it does not.
    pub error_message: Attr,
}

impl ConditionDef {
    /// References of the condition and its message, except `self` (not a block).
    pub fn refs(&self) -> impl Iterator<Item = &super::refs::Reference> {
        self.condition
            .refs
            .iter()
            .chain(self.error_message.refs.iter())
            .filter(|r| !is_self(r))
    }
}

/// Whether a reference is `self.ATTR` (a postcondition's own step).
pub fn is_self(r: &super::refs::Reference) -> bool {
    r.root == super::refs::RefRoot::Other && r.parts.first().map(String::as_str) == Some("self")
}

/// A top-level `check "NAME" { assert { condition, error_message } ... }` block: procedure-wide
/// assertions reported in plan and after apply as warnings, failing neither.
#[derive(Debug, Clone)]
pub struct CheckDef {
    /// The name label.
    pub name: String,
    /// The block header.
    pub span: Span,
    /// `(condition, error_message)` of each `assert`.
    pub asserts: Vec<(Attr, Attr)>,
}

fn condition_pair(file: usize, b: &Block, diags: &mut Diagnostics) -> Option<(Attr, Attr)> {
    let mut cond = None;
    let mut msg = None;
    for s in b.body.iter() {
        match s {
            Structure::Attribute(a) if a.key.as_str() == "condition" => {
                cond = Some(make_attr(file, a))
            }
            Structure::Attribute(a) if a.key.as_str() == "error_message" => {
                msg = Some(make_attr(file, a))
            }
            other => diags.push(
                Diagnostic::error(format!(
                    "unexpected `{}` in `{}`; expected `condition` and `error_message`",
                    match other {
                        Structure::Attribute(a) => a.key.as_str().to_string(),
                        Structure::Block(b) => b.ident.as_str().to_string(),
                    },
                    b.ident.as_str()
                ))
                .with_span(span_of(file, other.span())),
            ),
        }
    }
    match (cond, msg) {
        (Some(c), Some(m)) => Some((c, m)),
        _ => {
            diags.push(
                Diagnostic::error(format!(
                    "`{}` requires `condition` and `error_message`",
                    b.ident.as_str()
                ))
                .with_span(header_span(file, b)),
            );
            None
        }
    }
}

/// A `precondition`/`postcondition` block inside a step: Some(condition), or None when `b`
/// is another block (the caller reports it).
pub fn load_condition(
    file: usize,
    b: &Block,
    diags: &mut Diagnostics,
) -> Option<Option<ConditionDef>> {
    let kind = match b.ident.as_str() {
        "precondition" => ConditionKind::Pre,
        "postcondition" => ConditionKind::Post,
        _ => return None,
    };
    let Some((condition, error_message)) = condition_pair(file, b, diags) else {
        return Some(None);
    };
    if kind == ConditionKind::Pre {
        if let Some(r) = condition
            .refs
            .iter()
            .chain(error_message.refs.iter())
            .find(|r| is_self(r))
        {
            diags.push(
                Diagnostic::error(
                    "`self` is only available in a `postcondition` (the step has not run yet)",
                )
                .with_span(r.span.clone()),
            );
            return Some(None);
        }
    }
    Some(Some(ConditionDef {
        kind,
        condition,
        error_message,
    }))
}

/// Loads a top-level `check "NAME"` block into `config.checks`.
pub fn load_check(config: &mut Config, file: usize, block: &Block, diags: &mut Diagnostics) {
    let span = header_span(file, block);
    if block.labels.len() != 1 {
        diags.push(
            Diagnostic::error("`check` block takes 1 label(s): check \"NAME\"").with_span(span),
        );
        return;
    }
    let mut def = CheckDef {
        name: block.labels[0].as_str().to_string(),
        span: span.clone(),
        asserts: Vec::new(),
    };
    for s in block.body.iter() {
        match s {
            Structure::Block(b) if b.ident.as_str() == "assert" => {
                if let Some(pair) = condition_pair(file, b, diags) {
                    if let Some(r) = pair
                        .0
                        .refs
                        .iter()
                        .chain(pair.1.refs.iter())
                        .find(|r| is_self(r))
                    {
                        diags.push(
                            Diagnostic::error(
                                "`self` is only available in a step's `postcondition`",
                            )
                            .with_span(r.span.clone()),
                        );
                        continue;
                    }
                    def.asserts.push(pair);
                }
            }
            other => diags.push(
                Diagnostic::error("a `check` holds `assert { condition, error_message }` blocks")
                    .with_span(span_of(file, other.span())),
            ),
        }
    }
    if def.asserts.is_empty() {
        diags.push(
            Diagnostic::error(format!("check `{}` has no `assert`", def.name)).with_span(span),
        );
        return;
    }
    config.checks.push(def);
}
