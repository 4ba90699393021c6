//! Built-in step types that need no provider: `exec` (run a command) and `noop` (no effect).

mod exec;
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
    vec![Arc::new(Noop), Arc::new(Exec)]
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
        ty: ArgType::String,
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

/// Parses a Go-style duration such as `"90s"`, `"1h30m"`, `"500ms"` (also a bare number of
/// seconds).
///
/// # Errors
///
/// A message naming the bad duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if let Ok(secs) = text.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    let bad = || format!("invalid duration `{s}`; expected e.g. `\"30s\"`, `\"5m\"`, `\"1h30m\"`");
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
    Ok(Duration::from_secs_f64(total))
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
    }
}
