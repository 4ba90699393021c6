//! Built-in step types that need no provider: `exec` (run a command) and `noop` (no effect).

pub mod approval;
mod exec;
pub mod http_check;
mod process;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{
    arg_str, ArgSpec, ArgType, Change, Current, Inputs, ProviderError, StepContext, StepType,
    TargetEnv,
};

pub use exec::Exec;

/// The built-in step types.
pub fn step_types() -> Vec<Arc<dyn StepType>> {
    vec![
        Arc::new(Noop),
        Arc::new(Exec),
        Arc::new(approval::Approval),
        Arc::new(http_check::HttpCheck),
    ]
}

/// `noop`: an operation with no side effects, for tests, benchmarks and ordering barriers.
///
/// Arguments: `target` (an object address it claims, to test ordering), `result` (any value,
/// echoed as the output `result`), `delay` (a duration such as `"2s"` to wait at apply).
pub struct Noop;

const NOOP_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "target",
        ty: ArgType::String,
        required: false,
        doc: "object address the step claims (default: its own address)",
    },
    ArgSpec {
        name: "result",
        ty: ArgType::Any,
        required: false,
        doc: "value echoed as the output `result`",
    },
    ArgSpec {
        name: "delay",
        ty: ArgType::Duration,
        required: false,
        doc: "time to wait at apply, e.g. `\"2s\"`",
    },
];

#[async_trait]
impl StepType for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn provider(&self) -> Option<&'static str> {
        None
    }
    fn args(&self) -> &'static [ArgSpec] {
        NOOP_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        match arg_str(inputs, "target") {
            Some(t) => t.to_string(),
            None => format!("local/{}", env.address),
        }
    }
    fn plan(&self, inputs: &Inputs, _current: Current<'_>) -> Result<Change, String> {
        let mut summary = vec!["no side effects".to_string()];
        if let Some(d) = arg_str(inputs, "delay") {
            summary.push(format!("waits {d}"));
        }
        Ok(Change {
            action: super::Action::Run,
            fields: Vec::new(),
            summary,
        })
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "result": inputs.get("result").cloned().unwrap_or(Json::Null) })
    }
    async fn apply(&self, _ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        if let Some(d) = arg_str(inputs, "delay") {
            let delay = parse_duration(d).map_err(ProviderError::new)?;
            tokio::time::sleep(delay).await;
        }
        Ok(self.planned_outputs(inputs))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

/// The longest duration opsctl accepts (a `timeout`, a `delay`): 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses a Go-style duration such as `"90s"`, `"1h30m"`, `"500ms"` (also a bare number of
/// seconds). Units: `ms`, `s`, `m`, `h`, `d`.
///
/// # Errors
///
/// A message naming the bad duration: not a duration, negative, or longer than
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad = || format!("invalid duration `{s}`; expected e.g. `\"30s\"`, `\"5m\"`, `\"1h30m\"`");
    // A bare number of seconds (only digits, `.`, an exponent: not `inf` or `NaN`).
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit())
    {
        let secs: f64 = text.parse().map_err(|_| bad())?;
        return duration_from_secs(secs).map_err(|e| format!("invalid duration `{s}`: {e}"));
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if n_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    duration_from_secs(total).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

/// A duration of `secs` seconds.
///
/// # Errors
///
/// When `secs` is negative, not finite, or more than [`MAX_DURATION`].
pub fn duration_from_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err("a duration cannot be negative".to_string());
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "longer than the maximum of {} days",
            MAX_DURATION.as_secs() / 86400
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        for bad in [
            "1e30",
            "366d",
            "1e400",
            "inf",
            "NaN",
            "-1",
            "-5s",
            "1.2.3s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("1e30")
            .unwrap_err()
            .contains("longer than the maximum of 365 days"));
    }
}
