//! `kubernetes_wait`: wait until an object satisfies a condition, as `kubectl wait` does
//! (kubectl `cmd/wait`: `--for=condition=TYPE[=STATUS]`, `--for=jsonpath='{.path}'=VALUE`,
//! `--for=delete`, with `-l SELECTOR` for every object of a selector), by polling the object.
//!
//! A wait is a gate ([`StepType::gate`]): planned as a no-op when the condition holds at plan
//! time and no step it comes after changes anything, else as [`Action::Run`] ("will run"): an
//! earlier step of the procedure may change the object (a rollout makes a Deployment
//! unavailable for a while). Apply checks it again either way (time passes between plan and
//! apply) and completes at once when the condition holds. The plan shows what it waits for and
//! the value it observed at plan time. Its target is the object's address followed by
//! `#wait`, distinct from the steps that change the object (their state is theirs; a wait
//! reads the whole object).
//!
//! The step's `timeout` bounds the wait; when it passes, the step fails (not in doubt: a wait
//! has no side effect) with the last observed value.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{json, Value as Json};

use super::{api_error, context_and_namespace, is_not_found, KubeClients};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "api_version",
        ty: ArgType::String,
        required: false,
        doc: "`GROUP/VERSION` of the kind (default for well-known kinds: Pod, Service, ConfigMap, Secret, PersistentVolumeClaim, Node, Namespace `v1`; Deployment, StatefulSet, DaemonSet, ReplicaSet `apps/v1`; Job, CronJob `batch/v1`); the group's served version comes from discovery",
    },
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: false,
        doc: "kind of the object (default `Pod` with `selector`)",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace (default: the provider's; ignored for cluster-scoped kinds)",
    },
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: false,
        doc: "object name (or `selector`)",
    },
    ArgSpec {
        name: "selector",
        ty: ArgType::String,
        required: false,
        doc: "label selector (`app=web,tier!=db`): every object it selects must satisfy the condition, and there must be one at least (default condition for pods: `Ready`)",
    },
    ArgSpec {
        name: "condition",
        ty: ArgType::String,
        required: false,
        doc: "status condition type (`Available`, `Ready`, `Complete`): waits until `status.conditions[type].status` is `status` (`kubectl wait --for=condition=`); a Job waited for `Complete` fails at once when its `Failed` condition turns True",
    },
    ArgSpec {
        name: "status",
        ty: ArgType::String,
        required: false,
        doc: "the condition's status to wait for (default `True`)",
    },
    ArgSpec {
        name: "field",
        ty: ArgType::String,
        required: false,
        doc: "a dotted field path with `[N]` list indices (`status.phase`, `status.containerStatuses[0].ready`; `{.status.phase}` too): waits until it equals `value` (`kubectl wait --for=jsonpath=`)",
    },
    ArgSpec {
        name: "value",
        ty: ArgType::String,
        required: false,
        doc: "the value `field` must have, compared as text (`true`, `3`, `Running`); without it, until the field exists",
    },
    ArgSpec {
        name: "for",
        ty: ArgType::String,
        required: false,
        doc: "`deleted`: waits until the object is gone (`kubectl wait --for=delete`)",
    },
];

/// `kubernetes_wait`.
pub struct Wait;

/// The `api_version` of a well-known kind, when the step names none.
pub(super) fn default_api_version(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod"
        | "Service"
        | "ConfigMap"
        | "Secret"
        | "PersistentVolumeClaim"
        | "PersistentVolume"
        | "Node"
        | "Namespace"
        | "ServiceAccount"
        | "Endpoints" => "v1",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => return None,
    })
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq)]
enum For {
    /// `status.conditions[type == .0].status == .1`.
    Condition(String, String),
    /// The field at the path equals the value (as text), or exists when None.
    Field(String, Option<String>),
    /// The object is gone.
    Deleted,
}

/// The parsed arguments of one wait.
#[derive(Debug, Clone)]
struct Spec {
    kind: String,
    api_version: String,
    name: Option<String>,
    selector: Option<String>,
    for_: For,
}

impl Spec {
    fn parse(inputs: &Inputs) -> Result<Spec, String> {
        let name = arg_str(inputs, "name").map(str::to_string);
        let selector = arg_str(inputs, "selector").map(str::to_string);
        match (&name, &selector) {
            (Some(_), Some(_)) => return Err("set `name` or `selector`, not both".into()),
            (None, None) => return Err("set `name` (one object) or `selector`".into()),
            _ => {}
        }
        let kind = match (arg_str(inputs, "kind"), &selector) {
            (Some(k), _) => k.to_string(),
            (None, Some(_)) => "Pod".to_string(),
            (None, None) => return Err("`kind` is required with `name`".into()),
        };
        let api_version = match arg_str(inputs, "api_version") {
            Some(v) => v.to_string(),
            None if kind.contains(UNKNOWN) => UNKNOWN.to_string(),
            None => default_api_version(&kind)
                .ok_or_else(|| format!("kind `{kind}` needs `api_version` (`GROUP/VERSION`)"))?
                .to_string(),
        };
        let condition = arg_str(inputs, "condition");
        let field = arg_str(inputs, "field");
        let deleted = arg_str(inputs, "for");
        if let Some(f) = deleted {
            if f != "deleted" && !f.contains(UNKNOWN) {
                return Err(format!("`for` must be \"deleted\", not {f:?}"));
            }
        }
        let set = [condition.is_some(), field.is_some(), deleted.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            return Err("set one of `condition`, `field` and `for`".into());
        }
        if arg_str(inputs, "status").is_some() && condition.is_none() && selector.is_none() {
            return Err("`status` goes with `condition`".into());
        }
        if arg_str(inputs, "value").is_some() && field.is_none() {
            return Err("`value` goes with `field`".into());
        }
        let for_ = if let Some(c) = condition {
            For::Condition(
                c.to_string(),
                arg_str(inputs, "status").unwrap_or("True").to_string(),
            )
        } else if let Some(f) = field {
            parse_path(f)?;
            For::Field(f.to_string(), arg_str(inputs, "value").map(str::to_string))
        } else if deleted.is_some() {
            For::Deleted
        } else if selector.is_some() && kind == "Pod" {
            For::Condition(
                "Ready".into(),
                arg_str(inputs, "status").unwrap_or("True").to_string(),
            )
        } else {
            return Err("set `condition`, `field` or `for = \"deleted\"`".into());
        };
        Ok(Spec {
            kind,
            api_version,
            name,
            selector,
            for_,
        })
    }

    /// `condition Available=True`, `status.phase = "Running"`, `deletion`.
    fn describe_for(&self) -> String {
        match &self.for_ {
            For::Condition(c, s) => format!("condition {c}={s}"),
            For::Field(f, Some(v)) => format!("{f} = {v:?}"),
            For::Field(f, None) => format!("{f} to be set"),
            For::Deleted => "deletion".into(),
        }
    }

    /// `has condition Available=True`, `has status.phase = "Running"`, `is gone`.
    fn predicate(&self) -> String {
        match &self.for_ {
            For::Condition(c, s) => format!("has condition {c}={s}"),
            For::Field(f, Some(v)) => format!("has {f} = {v:?}"),
            For::Field(f, None) => format!("has {f} set"),
            For::Deleted => "is gone".into(),
        }
    }

    /// The plan field: what is compared.
    fn path(&self) -> String {
        if self.selector.is_some() {
            return format!("{}s with {}", self.kind, self.describe_for());
        }
        match &self.for_ {
            For::Condition(c, _) => format!("status.conditions[{c}].status"),
            For::Field(f, _) => f.clone(),
            For::Deleted => "exists".into(),
        }
    }

    fn wanted(&self) -> Json {
        if self.selector.is_some() {
            return Json::from("all");
        }
        match &self.for_ {
            For::Condition(_, s) => Json::from(s.clone()),
            For::Field(_, Some(v)) => Json::from(v.clone()),
            For::Field(_, None) => Json::from("(set)"),
            For::Deleted => Json::Bool(false),
        }
    }
}

/// One segment of a field path: a key or a list index.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `status.containerStatuses[0].ready` (also `.status.phase` and `{.status.phase}`,
/// kubectl's JSONPath spelling) into segments.
fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('.').unwrap_or(p);
    let bad = || {
        format!("field {path:?} is not a dotted path with `[N]` indices (`status.containerStatuses[0].ready`)")
    };
    let mut out = Vec::new();
    for part in p.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && (rest.is_empty() || out.is_empty()) {
            return Err(bad());
        }
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let n: usize = rest[1..close].trim().parse().map_err(|_| bad())?;
            out.push(Seg::Index(n));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(out)
}

/// The value at `path` in `obj`, None when absent or null.
fn lookup<'a>(obj: &'a Json, path: &[Seg]) -> Option<&'a Json> {
    let mut v = obj;
    for s in path {
        v = match s {
            Seg::Key(k) => v.get(k)?,
            Seg::Index(i) => v.get(*i)?,
        };
    }
    (!v.is_null()).then_some(v)
}

/// A value as kubectl's JSONPath prints it: strings bare, others as JSON.
fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What one object shows against a wait.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    satisfied: bool,
    /// The compared value (`False`, `Running`), None when absent.
    value: Option<String>,
    /// The value with its context (`False (reason R: message)`).
    detail: String,
    /// Set when the object can no longer satisfy the wait (a failed Job).
    failed: Option<String>,
}

fn condition<'a>(obj: &'a Json, type_: &str) -> Option<&'a Json> {
    obj.pointer("/status/conditions")
        .and_then(Json::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))
}

/// `False (reason R: message)`.
fn condition_detail(c: &Json) -> String {
    let status = c.get("status").and_then(Json::as_str).unwrap_or("Unknown");
    let reason = c.get("reason").and_then(Json::as_str).unwrap_or_default();
    let message = c.get("message").and_then(Json::as_str).unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => status.to_string(),
        (false, true) => format!("{status} (reason {reason})"),
        (true, false) => format!("{status} ({message})"),
        (false, false) => format!("{status} (reason {reason}: {message})"),
    }
}

/// Evaluates one object (None: it does not exist) against the wait.
fn observe(spec: &Spec, obj: Option<&Json>) -> Observed {
    let Some(obj) = obj else {
        return Observed {
            satisfied: spec.for_ == For::Deleted,
            value: None,
            detail: "the object does not exist".into(),
            failed: None,
        };
    };
    match &spec.for_ {
        For::Deleted => Observed {
            satisfied: false,
            value: Some("true".into()),
            detail: format!(
                "it still exists{}",
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    " (being deleted)"
                } else {
                    ""
                }
            ),
            failed: None,
        },
        For::Condition(type_, want) => {
            let c = condition(obj, type_);
            let value = c
                .and_then(|c| c.get("status"))
                .and_then(Json::as_str)
                .map(str::to_string);
            let failed = (spec.kind == "Job" && type_ != "Failed")
                .then(|| condition(obj, "Failed"))
                .flatten()
                .filter(|c| c.get("status").and_then(Json::as_str) == Some("True"))
                .map(|c| format!("the Job failed: condition Failed={}", condition_detail(c)));
            Observed {
                satisfied: value.as_deref() == Some(want.as_str()),
                detail: c.map_or_else(|| format!("no {type_} condition"), condition_detail),
                value,
                failed,
            }
        }
        For::Field(path, want) => {
            let segs = parse_path(path).unwrap_or_default();
            let value = lookup(obj, &segs).map(as_text);
            Observed {
                satisfied: match want {
                    Some(w) => value.as_deref() == Some(w.as_str()),
                    None => value.is_some(),
                },
                detail: value
                    .as_ref()
                    .map_or_else(|| format!("{path} is not set"), |v| format!("{v:?}")),
                value,
                failed: None,
            }
        }
    }
}

/// Evaluates the objects a selector selects: all must satisfy the wait, and one at least.
fn observe_all(spec: &Spec, objs: &[Json]) -> Observed {
    let mut not = Vec::new();
    for o in objs {
        let ob = observe(spec, Some(o));
        if let Some(f) = ob.failed {
            return Observed {
                satisfied: false,
                value: None,
                detail: f.clone(),
                failed: Some(f),
            };
        }
        if !ob.satisfied {
            let name = o
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or_default();
            not.push(format!("{name}: {}", ob.detail));
        }
    }
    let ok = objs.len() - not.len();
    let value = format!("{ok} of {}", objs.len());
    Observed {
        satisfied: !objs.is_empty() && not.is_empty(),
        detail: if objs.is_empty() {
            "nothing matches the selector".into()
        } else if not.is_empty() {
            value.clone()
        } else {
            format!("{value}; not yet: {}", not.join("; "))
        },
        value: Some(value),
        failed: None,
    }
}

/// The object (or objects) a wait names, with an API for the kind (resolved through
/// discovery).
struct Subject {
    api: Api<DynamicObject>,
    spec: Spec,
    /// `Deployment `ns/web``, `Pod objects `ns` -l app=web`.
    what: String,
}

impl Subject {
    async fn of(ctx: &StepContext, inputs: &Inputs) -> Result<Subject, ProviderError> {
        let spec =
            Spec::parse(inputs).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
        let clients = ctx.client::<KubeClients>()?;
        let (group, version) = match arg_str(inputs, "api_version") {
            Some(gv) => match gv.split_once('/') {
                Some((g, v)) => (g.to_string(), Some(v.to_string())),
                None => (String::new(), Some(gv.to_string())),
            },
            // A well-known kind: its group at the server's preferred version.
            None => match spec.api_version.split_once('/') {
                Some((g, _)) => (g.to_string(), None),
                None => (String::new(), None),
            },
        };
        let served = clients
            .discovery
            .resolve(
                &clients.client,
                &group,
                version.as_deref(),
                &spec.kind,
                &ctx.target,
            )
            .await?;
        let namespaced = served.capabilities.scope == kube::discovery::Scope::Namespaced;
        let namespace = arg_str(inputs, "namespace")
            .map(str::to_string)
            .unwrap_or_else(|| clients.namespace.clone());
        let (api, place) = if namespaced {
            (
                Api::namespaced_with(clients.client.clone(), &namespace, &served.resource),
                format!("{namespace}/"),
            )
        } else {
            (
                Api::all_with(clients.client.clone(), &served.resource),
                String::new(),
            )
        };
        let what = match (&spec.name, &spec.selector) {
            (Some(n), _) => format!("{} `{place}{n}`", spec.kind),
            (None, s) => format!(
                "{} objects{} selected by `{}`",
                spec.kind,
                if namespaced {
                    format!(" in `{namespace}`")
                } else {
                    String::new()
                },
                s.as_deref().unwrap_or_default()
            ),
        };
        Ok(Subject { api, spec, what })
    }

    /// Reads the object(s) and evaluates them.
    async fn observe(&self) -> Result<(Observed, Option<Json>), ProviderError> {
        if let Some(name) = &self.spec.name {
            match self.api.get(name).await {
                Ok(o) => {
                    let o = serde_json::to_value(&o).unwrap_or(Json::Null);
                    let ob = observe(&self.spec, Some(&o));
                    let meta = json!({
                        "uid": o.pointer("/metadata/uid"),
                        "resource_version": o.pointer("/metadata/resourceVersion"),
                    });
                    Ok((ob, Some(meta)))
                }
                Err(e) if is_not_found(&e) => Ok((observe(&self.spec, None), None)),
                Err(e) => Err(api_error("get", &self.what, &e)),
            }
        } else {
            let lp =
                ListParams::default().labels(self.spec.selector.as_deref().unwrap_or_default());
            let list = self
                .api
                .list(&lp)
                .await
                .map_err(|e| api_error("list", &self.what, &e))?;
            let objs: Vec<Json> = list
                .items
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or(Json::Null))
                .collect();
            let n = objs.len();
            Ok((observe_all(&self.spec, &objs), Some(json!({ "count": n }))))
        }
    }
}

/// Polls `check` (every 0.2 s, backing off to 2 s) until it returns `Ok(Ok(value))`, ending
/// before the step's deadline so that a wait that does not complete fails with what it last
/// saw (`Ok(Err(last seen))`) instead of being stopped in doubt. Stops at once when the step
/// is cancelled.
///
/// # Errors
///
/// `check`'s error; `waited DURATION for WHAT; last seen: ...` at the deadline; cancellation.
pub(super) async fn poll<T, F, Fut>(
    ctx: &StepContext,
    what: &str,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, ProviderError>>,
{
    let start = Instant::now();
    // The engine stops the step at its timeout (in doubt); end before it, with the last
    // value: a fifth of the timeout, at most 5 s, leaves room for a slow last request.
    let margin = (ctx.timeout / 5).min(Duration::from_secs(5));
    let deadline = start + ctx.timeout.saturating_sub(margin);
    let mut delay = Duration::from_millis(200);
    loop {
        let last = match check().await? {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(ProviderError::new(format!(
                "waited {} for {what}; last seen: {last}",
                humantime::format_duration(ctx.timeout)
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay.min(deadline - now)) => {}
            _ = ctx.cancel.cancelled() => {
                return Err(ProviderError::new(format!(
                    "stopped while waiting for {what}; last seen: {last}"
                )));
            }
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[async_trait]
impl StepType for Wait {
    fn name(&self) -> &'static str {
        "kubernetes_wait"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let (context, namespace) = context_and_namespace(&env.provider_args);
        let kind = arg_str(inputs, "kind").unwrap_or(if inputs.contains_key("selector") {
            "Pod"
        } else {
            UNKNOWN
        });
        let gv = arg_str(inputs, "api_version")
            .or_else(|| default_api_version(kind))
            .unwrap_or(UNKNOWN);
        let ns = arg_str(inputs, "namespace").unwrap_or(&namespace);
        let ns = if super::object::cluster_kind(kind) {
            String::new()
        } else {
            format!("{ns}/")
        };
        match (arg_str(inputs, "name"), arg_str(inputs, "selector")) {
            (_, Some(sel)) => format!(
                "k8s/{context}/{gv}/{kind}/{}?selector={sel}#wait",
                ns.trim_end_matches('/')
            ),
            (name, None) => format!(
                "k8s/{context}/{gv}/{kind}/{ns}{}#wait",
                name.unwrap_or(UNKNOWN)
            ),
        }
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let s = Subject::of(ctx, inputs).await?;
        let (ob, meta) = s.observe().await?;
        let mut state = meta.unwrap_or_else(|| json!({}));
        state["value"] = json!(ob.value);
        state["detail"] = json!(ob.detail);
        state["satisfied"] = json!(ob.satisfied);
        state["failed"] = json!(ob.failed);
        state["exists"] = json!(s.spec.selector.is_some() || state.get("uid").is_some());
        Ok(Some(state))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let spec = Spec::parse(inputs)?;
        let subject = match (&spec.name, &spec.selector) {
            (Some(n), _) => format!("{} `{n}`", spec.kind),
            (None, s) => format!(
                "every {} selected by `{}`",
                spec.kind,
                s.as_deref().unwrap_or_default()
            ),
        };
        let mut holds = false;
        let (before, now) = match current {
            Current::Known(s) => {
                let value = if spec.for_ == For::Deleted {
                    s.get("exists").cloned().unwrap_or(Json::Bool(true))
                } else {
                    match s.get("value") {
                        Some(Json::String(v)) => Json::from(v.clone()),
                        _ => Json::from("(absent)"),
                    }
                };
                // For a selector, the count only (the names of the objects not yet there go
                // to the timeout message).
                let detail = s
                    .get(if spec.selector.is_some() {
                        "value"
                    } else {
                        "detail"
                    })
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                holds = s.get("satisfied") == Some(&Json::Bool(true));
                (
                    value,
                    Some(if holds {
                        format!("it holds now ({detail})")
                    } else {
                        format!("now: {detail}")
                    }),
                )
            }
            Current::Absent => (
                if spec.for_ == For::Deleted {
                    Json::Bool(false)
                } else {
                    Json::from("(absent)")
                },
                None,
            ),
            Current::NotRead => (Json::from(UNKNOWN), None),
        };
        let mut summary = vec![format!("waits until {subject} {}", spec.predicate())];
        summary.extend(now);
        // A gate (`StepType::gate`): a no-op when the condition holds now, unless a step it
        // comes after changes something (the engine then plans it as a run).
        Ok(Change {
            action: if holds { Action::NoOp } else { Action::Run },
            fields: vec![FieldChange {
                path: spec.path(),
                before: Some(before),
                after: Some(spec.wanted()),
            }],
            summary,
        })
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        let _ = inputs;
        json!({ "value": UNKNOWN })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let s = Subject::of(ctx, inputs).await?;
        let what = format!("{} {}", s.what, s.spec.describe_for());
        let ob = poll(ctx, &what, || async {
            let (ob, _) = s.observe().await?;
            if let Some(f) = &ob.failed {
                return Err(ProviderError::new(format!("{}: {f}", s.what)));
            }
            Ok(if ob.satisfied { Ok(ob) } else { Err(ob.detail) })
        })
        .await?;
        Ok(json!({ "value": ob.value }))
    }
    async fn in_doubt(
        &self,
        _ctx: &StepContext,
        _inputs: &Inputs,
    ) -> Result<InDoubt, ProviderError> {
        // Waiting has no side effect: wait again.
        Ok(InDoubt::Repeat)
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

    #[test]
    fn field_paths_parse_with_indices_and_kubectl_spelling() {
        assert_eq!(
            parse_path("status.containerStatuses[0].ready").unwrap(),
            vec![
                Seg::Key("status".into()),
                Seg::Key("containerStatuses".into()),
                Seg::Index(0),
                Seg::Key("ready".into())
            ]
        );
        assert_eq!(
            parse_path("{.status.phase}").unwrap(),
            parse_path("status.phase").unwrap()
        );
        assert_eq!(
            parse_path("a[1][2]").unwrap(),
            vec![Seg::Key("a".into()), Seg::Index(1), Seg::Index(2)]
        );
        for bad in ["", "a..b", "a[x]", "a[1", "a[1]b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
        let obj = json!({ "status": { "containerStatuses": [{ "ready": true }], "n": 3 } });
        let get = |p: &str| lookup(&obj, &parse_path(p).unwrap()).map(as_text);
        assert_eq!(
            get("status.containerStatuses[0].ready").as_deref(),
            Some("true")
        );
        assert_eq!(get("status.n").as_deref(), Some("3"));
        assert_eq!(get("status.containerStatuses[1].ready"), None);
    }

    #[test]
    fn a_failed_job_fails_a_wait_for_complete() {
        let mut i = Inputs::new();
        i.insert("kind".into(), json!("Job"));
        i.insert("name".into(), json!("j"));
        i.insert("condition".into(), json!("Complete"));
        let spec = Spec::parse(&i).unwrap();
        let job = json!({ "status": { "conditions": [
            { "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" },
        ]}});
        let ob = observe(&spec, Some(&job));
        assert!(!ob.satisfied);
        assert_eq!(
            ob.failed.as_deref(),
            Some("the Job failed: condition Failed=True (reason BackoffLimitExceeded: Job has reached the specified backoff limit)")
        );
    }
}
