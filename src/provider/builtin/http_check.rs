//! `http_check`: a health gate over HTTP(S), the seeds' `curl -f .../health` — polls a URL until
//! it answers with an expected status (and body or JSON field), or the step's `timeout` passes.
//! Through `reqwest` (rustls); `ca_cert` trusts only that PEM bundle, as `curl --cacert` does.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::super::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};
use super::parse_duration;

/// `http_check`; see the module documentation.
pub struct HttpCheck;

const HTTP_CHECK_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "url",
        ty: ArgType::String,
        required: true,
        doc: "the URL to request, e.g. `\"https://app.example.com/health\"`",
    },
    ArgSpec {
        name: "method",
        ty: ArgType::String,
        required: false,
        doc: "HTTP method (default `GET`)",
    },
    ArgSpec {
        name: "expected_status",
        ty: ArgType::Any,
        required: false,
        doc: "a status code or a list of them (default 200)",
    },
    ArgSpec {
        name: "body_contains",
        ty: ArgType::String,
        required: false,
        doc: "text the response body must contain",
    },
    ArgSpec {
        name: "body_regex",
        ty: ArgType::String,
        required: false,
        doc: "a regular expression (Rust `regex` syntax) the body must match",
    },
    ArgSpec {
        name: "json_path",
        ty: ArgType::String,
        required: false,
        doc: "a dotted path into the JSON body, e.g. `\"status.ready\"` or `\"items.0.name\"`",
    },
    ArgSpec {
        name: "json_value",
        ty: ArgType::Any,
        required: false,
        doc: "the value `json_path` must have (default: the path must exist)",
    },
    ArgSpec {
        name: "ca_cert",
        ty: ArgType::String,
        required: false,
        doc: "path of a PEM bundle: the only CAs trusted for an `https` URL",
    },
    ArgSpec {
        name: "headers",
        ty: ArgType::MapOfString,
        required: false,
        doc: "request headers",
    },
    ArgSpec {
        name: "interval",
        ty: ArgType::Duration,
        required: false,
        doc: "time between attempts (default `\"2s\"`)",
    },
];

/// The parsed arguments.
struct Spec {
    url: String,
    method: reqwest::Method,
    expected: Vec<u16>,
    body_contains: Option<String>,
    body_regex: Option<regex::Regex>,
    json_path: Option<String>,
    json_value: Option<Json>,
    ca_cert: Option<String>,
    headers: Vec<(String, String)>,
    interval: Duration,
}

impl Spec {
    fn parse(inputs: &Inputs) -> Result<Spec, String> {
        let url = arg_str(inputs, "url").unwrap_or_default().to_string();
        let method = arg_str(inputs, "method")
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("invalid HTTP method `{method}`"))?;
        let code = |v: &Json| -> Result<u16, String> {
            v.as_u64()
                .filter(|c| (100..=599).contains(c))
                .map(|c| c as u16)
                .ok_or_else(|| format!("`expected_status`: `{v}` is not an HTTP status code"))
        };
        let expected = match inputs.get("expected_status") {
            None | Some(Json::Null) => vec![200],
            Some(Json::Array(a)) => a.iter().map(code).collect::<Result<_, _>>()?,
            Some(v) => vec![code(v)?],
        };
        let body_regex = match arg_str(inputs, "body_regex") {
            Some(r) => Some(
                regex::Regex::new(r).map_err(|e| format!("`body_regex` `{r}` is invalid: {e}"))?,
            ),
            None => None,
        };
        let json_value = inputs.get("json_value").filter(|v| !v.is_null()).cloned();
        if json_value.is_some() && !inputs.contains_key("json_path") {
            return Err("`json_value` needs `json_path`".to_string());
        }
        let headers = inputs
            .get("headers")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let interval = match arg_str(inputs, "interval") {
            Some(d) => parse_duration(d)?.max(Duration::from_millis(50)),
            None => Duration::from_secs(2),
        };
        Ok(Spec {
            url,
            method,
            expected,
            body_contains: arg_str(inputs, "body_contains").map(str::to_string),
            body_regex,
            json_path: arg_str(inputs, "json_path").map(str::to_string),
            json_value,
            ca_cert: arg_str(inputs, "ca_cert").map(str::to_string),
            headers,
            interval,
        })
    }

    /// `GET https://x/health answers 200 with body containing "ok"`.
    fn describe(&self) -> String {
        let codes: Vec<String> = self.expected.iter().map(u16::to_string).collect();
        let mut s = format!(
            "{} {} answers {}",
            self.method,
            self.url,
            codes.join(" or ")
        );
        if let Some(b) = &self.body_contains {
            s.push_str(&format!(" with a body containing {b:?}"));
        }
        if let Some(r) = &self.body_regex {
            s.push_str(&format!(" with a body matching /{}/", r.as_str()));
        }
        if let Some(p) = &self.json_path {
            match &self.json_value {
                Some(v) => s.push_str(&format!(" with JSON `{p}` = {v}")),
                None => s.push_str(&format!(" with JSON `{p}` present")),
            }
        }
        s
    }

    fn client(&self, per_request: Duration) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .timeout(per_request)
            .connect_timeout(per_request);
        if let Some(path) = &self.ca_cert {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read `ca_cert` `{path}`: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("`ca_cert` `{path}` is not a PEM bundle: {e}"))?;
            b = b.tls_certs_only(certs);
        }
        b.build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))
    }

    /// One attempt: Ok(observation) whenever the server answered or could not be reached (not
    /// healthy then); Err only for a configuration problem (an unreadable CA).
    async fn observe(&self, per_request: Duration) -> Result<Observation, String> {
        let client = self.client(per_request)?;
        let mut req = client.request(self.method.clone(), self.url.as_str());
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Observation {
                    healthy: false,
                    status: None,
                    detail: format!("no answer: {}", error_chain(&e)),
                })
            }
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(self.judge(status, &body))
    }

    fn judge(&self, status: u16, body: &str) -> Observation {
        let bad = |detail: String| Observation {
            healthy: false,
            status: Some(status),
            detail,
        };
        if !self.expected.contains(&status) {
            return bad(format!("status {status}; body: {}", excerpt(body)));
        }
        if let Some(b) = &self.body_contains {
            if !body.contains(b.as_str()) {
                return bad(format!(
                    "status {status}, but the body does not contain {b:?}: {}",
                    excerpt(body)
                ));
            }
        }
        if let Some(r) = &self.body_regex {
            if !r.is_match(body) {
                return bad(format!(
                    "status {status}, but the body does not match /{}/: {}",
                    r.as_str(),
                    excerpt(body)
                ));
            }
        }
        if let Some(path) = &self.json_path {
            let doc: Json = match serde_json::from_str(body) {
                Ok(d) => d,
                Err(e) => {
                    return bad(format!(
                        "status {status}, but the body is not JSON ({e}): {}",
                        excerpt(body)
                    ))
                }
            };
            let found = json_at(&doc, path);
            match (&found, &self.json_value) {
                (None, _) => return bad(format!("status {status}, but JSON `{path}` is absent")),
                (Some(v), Some(want)) if !same_value(v, want) => {
                    return bad(format!(
                        "status {status}, but JSON `{path}` is {v}, not {want}"
                    ))
                }
                _ => {}
            }
        }
        Observation {
            healthy: true,
            status: Some(status),
            detail: format!("status {status}"),
        }
    }
}

/// A value from a dotted path; a numeric segment indexes an array.
fn json_at<'a>(doc: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(doc, |v, seg| match v {
            Json::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            Json::Object(m) => m.get(seg),
            _ => None,
        })
}

/// Equal, or equal as text (`"true"` matches `true`, `"3"` matches `3`, as HCL converts).
fn same_value(found: &Json, want: &Json) -> bool {
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    found == want || text(found) == text(want)
}

fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}...", one_line.chars().take(200).collect::<String>())
    } else if one_line.is_empty() {
        "(empty)".to_string()
    } else {
        one_line
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = inner.source();
    }
    s
}

struct Observation {
    healthy: bool,
    status: Option<u16>,
    detail: String,
}

impl Observation {
    fn state(&self) -> Json {
        json!({ "healthy": self.healthy, "status": self.status, "detail": self.detail })
    }
}

#[async_trait]
impl StepType for HttpCheck {
    fn name(&self) -> &'static str {
        "http_check"
    }
    fn provider(&self) -> Option<&'static str> {
        None
    }
    fn args(&self) -> &'static [ArgSpec] {
        HTTP_CHECK_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        // Per step: two checks of one URL are two gates, not two writers of one object.
        format!(
            "http/{}#{}",
            arg_str(inputs, "url").unwrap_or_default(),
            env.address
        )
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let spec = Spec::parse(inputs).map_err(ProviderError::new)?;
        let per_request = ctx.read_timeout.min(Duration::from_secs(10));
        let ob = spec
            .observe(per_request)
            .await
            .map_err(ProviderError::new)?;
        Ok(Some(ob.state()))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let spec = Spec::parse(inputs)?;
        let (healthy, now) = match current {
            Current::Known(s) => {
                let detail = s.get("detail").and_then(Json::as_str).unwrap_or_default();
                let healthy = s.get("healthy") == Some(&Json::Bool(true));
                (
                    healthy,
                    Some(if healthy {
                        format!("healthy now ({detail})")
                    } else {
                        format!("now: {detail}")
                    }),
                )
            }
            _ => (false, None),
        };
        let mut summary = vec![format!("waits until {}", spec.describe())];
        summary.extend(now);
        Ok(Change {
            action: if healthy { Action::NoOp } else { Action::Run },
            fields: vec![FieldChange {
                path: "healthy".to_string(),
                before: Some(Json::Bool(healthy)),
                after: Some(Json::Bool(true)),
            }],
            summary,
        })
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "status": crate::config::eval::UNKNOWN })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({ "status": state.get("status").cloned().unwrap_or(Json::Null) }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let spec = Spec::parse(inputs).map_err(ProviderError::new)?;
        let start = Instant::now();
        // The engine stops the step at its timeout (in doubt); end before it with the last
        // answer, as kubernetes_wait does.
        let margin = (ctx.timeout / 5).min(Duration::from_secs(5));
        let deadline = start + ctx.timeout.saturating_sub(margin);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let per_request = left.clamp(Duration::from_millis(100), Duration::from_secs(10));
            let ob = spec
                .observe(per_request)
                .await
                .map_err(ProviderError::new)?;
            if ob.healthy {
                return Ok(json!({ "status": ob.status, "attempts": attempts }));
            }
            crate::provider::report_progress(&format!(
                "{}: {} (attempt {attempts}, {}s elapsed)",
                ctx.address,
                ob.detail,
                start.elapsed().as_secs()
            ));
            let now = Instant::now();
            if now + spec.interval >= deadline {
                return Err(ProviderError::new(format!(
                    "waited {} for {}; last seen: {} ({attempts} attempts)",
                    humantime::format_duration(Duration::from_secs(ctx.timeout.as_secs())),
                    spec.describe(),
                    ob.detail
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(spec.interval) => {}
                _ = ctx.cancel.cancelled() => {
                    return Err(ProviderError::new(format!(
                        "stopped while waiting for {}; last seen: {}",
                        spec.describe(),
                        ob.detail
                    )));
                }
            }
        }
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
    fn gate(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Json) -> Spec {
        Spec::parse(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn judges_status_body_and_json_fields() {
        let s = spec(json!({"url": "http://x", "expected_status": [200, 204]}));
        assert!(s.judge(204, "").healthy);
        assert!(!s.judge(503, "down").healthy);
        let s = spec(json!({"url": "http://x", "body_contains": "ok"}));
        assert!(s.judge(200, "all ok").healthy);
        assert!(s.judge(200, "bad").detail.contains("does not contain"));
        let s = spec(json!({"url": "http://x", "body_regex": "^v[0-9]+$"}));
        assert!(s.judge(200, "v12").healthy);
        let s = spec(json!({"url": "http://x", "json_path": "status.ready", "json_value": true}));
        assert!(s.judge(200, r#"{"status":{"ready":true}}"#).healthy);
        assert!(s.judge(200, r#"{"status":{"ready":"true"}}"#).healthy);
        assert!(!s.judge(200, r#"{"status":{"ready":false}}"#).healthy);
        assert!(!s.judge(200, "not json").healthy);
        let s = spec(json!({"url": "http://x", "json_path": "items.1"}));
        assert!(s.judge(200, r#"{"items":[1,2]}"#).healthy);
        assert!(!s.judge(200, r#"{"items":[1]}"#).healthy);
    }

    #[test]
    fn bad_arguments_are_named() {
        let bad = |v: Json| Spec::parse(v.as_object().unwrap()).err().unwrap();
        assert!(bad(json!({"url": "x", "expected_status": 999})).contains("expected_status"));
        assert!(bad(json!({"url": "x", "body_regex": "("})).contains("body_regex"));
        assert!(bad(json!({"url": "x", "json_value": 1})).contains("json_path"));
    }
}
