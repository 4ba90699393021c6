//! `kubernetes_job`: run a one-off Job (`batch/v1`) to completion, as `kubectl create job NAME
//! --image=IMAGE -- COMMAND` followed by `kubectl wait --for=condition=complete job/NAME` does;
//! a failed Job fails the step with its pod's termination message
//! (`status.containerStatuses[].state.terminated`: exit code, reason, message).
//!
//! The Job is built from `image`, `command`, `args`, `env`, `pvc_volumes`, or a full pod
//! `template`, with `restartPolicy: Never`, label `app.kubernetes.io/managed-by: opsctl`, label
//! [`ATTEMPT`] carrying a token chosen by [`StepType::prepare`] (journaled before the Job is
//! created) and annotation [`STEP`] naming the step. With `generate_name`, `prepare` also
//! chooses the name (the prefix and five random characters, as the API server would), so that
//! a resumed step waits for the Job its interrupted attempt created instead of creating a
//! second one. A create answered 409 (the Job exists) waits for the existing Job when it
//! carries this attempt's token, or is the one the approved plan saw running; otherwise the
//! step fails naming it.
//!
//! Plan: no Job of that name: create (the fields show the Job that will run); a Job of that
//! name that completed: nothing to do (its outputs are read from it; a Job's template cannot
//! change, so a completed Job is not compared with the arguments); one still running: run
//! (waits for it, creates nothing); one that failed: a plan error (delete it or use
//! `generate_name` to run again). With `delete_after = true` the Job is deleted once it
//! succeeded (propagation `Background`, its pods with it), so a later plan creates it again.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job as K8sJob;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use serde_json::{json, Value as Json};

use super::wait::poll;
use super::{api_error, context_and_namespace, is_conflict, is_not_found, KubeClients};
use crate::config::eval::{json_is_unknown, UNKNOWN};
use crate::provider::{
    arg_bool, arg_i64, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt,
    Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

/// The label carrying the token of the attempt that created the Job.
pub const ATTEMPT: &str = "opsctl.io/attempt";
/// The annotation naming the step that created the Job.
pub const STEP: &str = "opsctl.io/step";
/// `app.kubernetes.io/managed-by`.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: false,
        doc: "Job name (or `generate_name`)",
    },
    ArgSpec {
        name: "generate_name",
        ty: ArgType::String,
        required: false,
        doc: "name prefix: the step adds five random characters when it starts and journals the name, so a resumed step finds its Job",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace (default: the provider's)",
    },
    ArgSpec {
        name: "image",
        ty: ArgType::String,
        required: false,
        doc: "container image (or `template`)",
    },
    ArgSpec {
        name: "command",
        ty: ArgType::ListOfString,
        required: false,
        doc: "container command (entrypoint)",
    },
    ArgSpec {
        name: "args",
        ty: ArgType::ListOfString,
        required: false,
        doc: "container arguments",
    },
    ArgSpec {
        name: "env",
        ty: ArgType::MapOfString,
        required: false,
        doc: "environment variables, name -> value",
    },
    ArgSpec {
        name: "pvc_volumes",
        ty: ArgType::Any,
        required: false,
        doc: "volumes from PersistentVolumeClaims: `{ VOLUME = { claim = \"CLAIM\", mount_path = \"/data\", read_only = false } }`",
    },
    ArgSpec {
        name: "template",
        ty: ArgType::Any,
        required: false,
        doc: "a full pod template (`{ metadata = {...}, spec = {...} }`) instead of `image`, `command`, `args`, `env`, `pvc_volumes`; `restartPolicy` defaults to `Never`",
    },
    ArgSpec {
        name: "backoff_limit",
        ty: ArgType::Count,
        required: false,
        doc: "retries before the Job fails (`spec.backoffLimit`, default 0: one pod)",
    },
    ArgSpec {
        name: "active_deadline_seconds",
        ty: ArgType::Count,
        required: false,
        doc: "seconds the Job may run before it fails (`spec.activeDeadlineSeconds`)",
    },
    ArgSpec {
        name: "delete_after",
        ty: ArgType::Bool,
        required: false,
        doc: "delete the Job (and its pods, propagation Background) once it succeeded (default false)",
    },
];

/// `kubernetes_job`.
pub struct Job;

/// One volume from a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq)]
struct PvcVolume {
    claim: String,
    mount_path: String,
    read_only: bool,
}

fn pvc_volumes(inputs: &Inputs) -> Result<BTreeMap<String, PvcVolume>, String> {
    let mut out = BTreeMap::new();
    let Some(v) = inputs.get("pvc_volumes") else {
        return Ok(out);
    };
    if v.is_null() || json_is_unknown(v) {
        return Ok(out);
    }
    let bad = |name: &str, why: &str| format!("`pvc_volumes.{name}`: {why}");
    let map = v
        .as_object()
        .ok_or("`pvc_volumes` must be a map of `{ claim = ..., mount_path = ... }`")?;
    for (name, vol) in map {
        let s = |k: &str| vol.get(k).and_then(Json::as_str).map(str::to_string);
        out.insert(
            name.clone(),
            PvcVolume {
                claim: s("claim").ok_or_else(|| bad(name, "`claim` (a string) is required"))?,
                mount_path: s("mount_path")
                    .ok_or_else(|| bad(name, "`mount_path` (a string) is required"))?,
                read_only: match vol.get("read_only") {
                    None | Some(Json::Null) => false,
                    Some(Json::Bool(b)) => *b,
                    Some(_) => return Err(bad(name, "`read_only` must be a bool")),
                },
            },
        );
    }
    Ok(out)
}

/// Checks the arguments' combinations.
fn check(inputs: &Inputs) -> Result<(), String> {
    match (
        inputs.contains_key("name"),
        inputs.contains_key("generate_name"),
    ) {
        (true, true) => return Err("set `name` or `generate_name`, not both".into()),
        (false, false) => return Err("set `name` or `generate_name`".into()),
        _ => {}
    }
    let template = inputs.get("template").filter(|v| !v.is_null());
    let simple = ["image", "command", "args", "env", "pvc_volumes"]
        .iter()
        .filter(|k| inputs.get(**k).is_some_and(|v| !v.is_null()))
        .copied()
        .collect::<Vec<_>>();
    match template {
        Some(t) => {
            if !simple.is_empty() {
                return Err(format!(
                    "`template` replaces {}: set one or the other",
                    simple
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !json_is_unknown(t) {
                if t.get("spec").is_none() {
                    return Err("`template` is a pod template: `{ metadata = {...}, spec = { containers = [...] } }`".into());
                }
                serde_json::from_value::<PodTemplateSpec>(t.clone())
                    .map_err(|e| format!("`template` is not a valid pod template: {e}"))?;
            }
        }
        None => {
            if !inputs.contains_key("image") {
                return Err("set `image` (with `command`, `args`, ...) or `template`".into());
            }
            pvc_volumes(inputs)?;
        }
    }
    Ok(())
}

/// The namespace the step names, else the provider's.
fn namespace(ctx: &StepContext, inputs: &Inputs) -> Result<String, ProviderError> {
    Ok(arg_str(inputs, "namespace")
        .map(str::to_string)
        .unwrap_or(ctx.client::<KubeClients>()?.namespace.clone()))
}

/// `n` random characters of the alphabet the API server uses for `generateName`.
fn random(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut buf = vec![0u8; n];
    if getrandom::getrandom(&mut buf).is_err() {
        // No entropy source: the clock's nanoseconds still make a distinct token.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> (i * 5)) as u8;
        }
    }
    buf.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The container name: the Job's name as `kubectl create job` names it (its prefix for
/// `generate_name`), as a DNS label.
fn container_name(inputs: &Inputs) -> String {
    let n = arg_str(inputs, "name")
        .or_else(|| arg_str(inputs, "generate_name"))
        .unwrap_or("job")
        .trim_end_matches(['-', '.'])
        .replace('.', "-");
    if n.is_empty() {
        "job".into()
    } else {
        n.chars().take(63).collect()
    }
}

/// The pod template the Job runs.
fn pod_template(inputs: &Inputs) -> Result<Json, String> {
    if let Some(t) = inputs.get("template").filter(|v| !v.is_null()) {
        let mut t = t.clone();
        if t.pointer("/spec/restartPolicy").is_none() {
            t["spec"]["restartPolicy"] = json!("Never");
        }
        return Ok(t);
    }
    let mut c = json!({ "name": container_name(inputs), "image": inputs.get("image") });
    for k in ["command", "args"] {
        if let Some(v) = inputs.get(k).filter(|v| !v.is_null()) {
            c[k] = v.clone();
        }
    }
    if let Some(env) = inputs.get("env").and_then(Json::as_object) {
        c["env"] = env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
    }
    let vols = pvc_volumes(inputs)?;
    let mut spec = json!({ "restartPolicy": "Never" });
    if !vols.is_empty() {
        c["volumeMounts"] = vols
            .iter()
            .map(|(n, v)| json!({ "name": n, "mountPath": v.mount_path, "readOnly": v.read_only }))
            .collect();
        spec["volumes"] = vols
            .iter()
            .map(|(n, v)| json!({ "name": n, "persistentVolumeClaim": { "claimName": v.claim, "readOnly": v.read_only } }))
            .collect();
    }
    spec["containers"] = json!([c]);
    Ok(json!({ "spec": spec }))
}

/// The Job object to create.
fn build(
    inputs: &Inputs,
    name: &str,
    namespace: &str,
    attempt: &str,
    step: &str,
) -> Result<K8sJob, String> {
    let mut spec = json!({
        "backoffLimit": arg_i64(inputs, "backoff_limit").unwrap_or(0),
        "template": pod_template(inputs)?,
    });
    if let Some(d) = arg_i64(inputs, "active_deadline_seconds") {
        spec["activeDeadlineSeconds"] = json!(d);
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { MANAGED_BY: "opsctl", ATTEMPT: attempt },
            "annotations": { STEP: step },
        },
        "spec": spec,
    });
    serde_json::from_value(job).map_err(|e| format!("the Job is not valid: {e}"))
}

/// The plan's fields: the Job that will run.
fn fields(inputs: &Inputs) -> Vec<FieldChange> {
    let add = |path: &str, v: Json| FieldChange {
        path: path.to_string(),
        before: None,
        after: Some(v),
    };
    let mut out = Vec::new();
    if let Some(t) = inputs.get("template").filter(|v| !v.is_null()) {
        let shown = if json_is_unknown(t) {
            Json::from(UNKNOWN)
        } else {
            Json::from(serde_json::to_string_pretty(t).unwrap_or_default() + "\n")
        };
        out.push(add("template", shown));
    } else {
        for k in ["image", "command", "args"] {
            match inputs.get(k).filter(|v| !v.is_null()) {
                // A script in the command: one field per element, shown line by line.
                Some(Json::Array(items))
                    if items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.contains('\n'))) =>
                {
                    for (n, i) in items.iter().enumerate() {
                        out.push(add(&format!("{k}[{n}]"), i.clone()));
                    }
                }
                Some(v) => out.push(add(k, v.clone())),
                None => {}
            }
        }
        if let Some(env) = inputs.get("env").and_then(Json::as_object) {
            for (k, v) in env {
                out.push(add(&format!("env.{k}"), v.clone()));
            }
        }
        for (n, v) in pvc_volumes(inputs).unwrap_or_default() {
            out.push(add(
                &format!("volumes.{n}"),
                Json::from(format!(
                    "PersistentVolumeClaim `{}` at {}{}",
                    v.claim,
                    v.mount_path,
                    if v.read_only { " (read-only)" } else { "" }
                )),
            ));
        }
    }
    out.push(add(
        "backoff_limit",
        inputs.get("backoff_limit").cloned().unwrap_or(json!(0)),
    ));
    if let Some(v) = inputs.get("active_deadline_seconds") {
        out.push(add("active_deadline_seconds", v.clone()));
    }
    out
}

/// The state of a Job, as read and journaled.
fn job_state(job: &K8sJob, message: Option<String>) -> Json {
    let v = serde_json::to_value(job).unwrap_or(Json::Null);
    let cond = |t: &str| {
        v.pointer("/status/conditions")
            .and_then(Json::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(Json::as_str) == Some(t)
                        && c.get("status").and_then(Json::as_str) == Some("True")
                })
            })
            .map(|c| {
                format!(
                    "{}: {}",
                    c.get("reason").and_then(Json::as_str).unwrap_or(t),
                    c.get("message").and_then(Json::as_str).unwrap_or_default()
                )
            })
    };
    let n = |k: &str| {
        v.pointer(&format!("/status/{k}"))
            .and_then(Json::as_i64)
            .unwrap_or(0)
    };
    json!({
        "name": job.metadata.name,
        "namespace": job.metadata.namespace,
        "uid": job.metadata.uid,
        "resource_version": job.metadata.resource_version,
        "attempt": job.metadata.labels.as_ref().and_then(|l| l.get(ATTEMPT)),
        "created": v.pointer("/metadata/creationTimestamp"),
        "active": n("active"),
        "succeeded": n("succeeded"),
        "failed": n("failed"),
        "complete": cond("Complete").is_some(),
        "failure": cond("Failed"),
        "message": message,
    })
}

/// `active 1, succeeded 0, failed 0`.
fn counts(state: &Json) -> String {
    format!(
        "active {}, succeeded {}, failed {}",
        state["active"], state["succeeded"], state["failed"]
    )
}

/// The termination of each container of the Job's pods, newest pod last:
/// (pod, `container C exited N (REASON): MESSAGE`, pod succeeded, message).
async fn terminations(
    pods: &Api<Pod>,
    job: &K8sJob,
    what: &str,
) -> Result<Vec<(String, String, bool, Option<String>)>, ProviderError> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let list = pods
        .list(&ListParams::default().labels(&format!("controller-uid={uid}")))
        .await
        .map_err(|e| api_error("list the pods of", what, &e))?;
    let mut items = list.items;
    items.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    let mut out = Vec::new();
    for p in items {
        let pod = p.metadata.name.clone().unwrap_or_default();
        let Some(status) = p.status else { continue };
        let succeeded = status.phase.as_deref() == Some("Succeeded");
        for cs in status.container_statuses.unwrap_or_default() {
            let Some(t) = cs.state.and_then(|s| s.terminated) else {
                continue;
            };
            let mut line = format!("container {} exited {}", cs.name, t.exit_code);
            if let Some(r) = &t.reason {
                line.push_str(&format!(" ({r})"));
            }
            if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                line.push_str(&format!(": {}", m.trim()));
            }
            out.push((pod.clone(), line, succeeded, t.message.clone()));
        }
    }
    Ok(out)
}

/// The termination message of the Job's (last) succeeded pod.
async fn success_message(
    pods: &Api<Pod>,
    job: &K8sJob,
    what: &str,
) -> Result<Option<String>, ProviderError> {
    Ok(terminations(pods, job, what)
        .await?
        .into_iter()
        .rev()
        .find(|t| t.2)
        .and_then(|t| t.3)
        .map(|m| m.trim().to_string()))
}

/// The step's prepared value: `{ "name": ..., "attempt": ... }`.
fn prepared(ctx: &StepContext, inputs: &Inputs) -> (String, String) {
    let p = ctx.prepared.clone().unwrap_or_else(|| prepare(inputs));
    (
        p["name"].as_str().unwrap_or_default().to_string(),
        p["attempt"].as_str().unwrap_or_default().to_string(),
    )
}

fn prepare(inputs: &Inputs) -> Json {
    let name = match arg_str(inputs, "name") {
        Some(n) => n.to_string(),
        None => format!(
            "{}{}",
            arg_str(inputs, "generate_name").unwrap_or("job-"),
            random(5)
        ),
    };
    json!({ "name": name, "attempt": random(10) })
}

#[async_trait]
impl StepType for Job {
    fn name(&self) -> &'static str {
        "kubernetes_job"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let (context, namespace) = context_and_namespace(&env.provider_args);
        let name = match (arg_str(inputs, "name"), arg_str(inputs, "generate_name")) {
            (Some(n), _) => n.to_string(),
            (None, Some(g)) => format!("{g}*"),
            (None, None) => UNKNOWN.to_string(),
        };
        format!(
            "k8s/{context}/batch/v1/Job/{}/{name}",
            arg_str(inputs, "namespace").unwrap_or(&namespace)
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
        // A generated name is chosen when the step starts: nothing to read before (at plan);
        // once it started (the verification after apply), the name it prepared.
        let prepared = ctx
            .prepared
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(Json::as_str);
        let Some(name) = arg_str(inputs, "name").or(prepared) else {
            return Ok(None);
        };
        let clients = ctx.client::<KubeClients>()?;
        let ns = namespace(ctx, inputs)?;
        let what = format!("Job `{ns}/{name}`");
        let api: Api<K8sJob> = Api::namespaced(clients.client.clone(), &ns);
        let job = match api.get(name).await {
            Ok(j) => j,
            // Verifying a step that deleted its Job once it succeeded: gone is done.
            Err(e)
                if is_not_found(&e)
                    && prepared.is_some()
                    && arg_bool(inputs, "delete_after").unwrap_or(false) =>
            {
                return Ok(Some(
                    json!({ "name": name, "complete": true, "deleted": true }),
                ))
            }
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(api_error("get", &what, &e)),
        };
        let mut state = job_state(&job, None);
        if state["complete"] == json!(true) {
            let pods: Api<Pod> = Api::namespaced(clients.client.clone(), &ns);
            state["message"] = json!(success_message(&pods, &job, &what).await?);
        }
        Ok(Some(state))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        check(inputs)?;
        let ns = arg_str(inputs, "namespace").map_or(String::new(), |n| format!("{n}/"));
        let job = match arg_str(inputs, "name") {
            Some(n) => format!("Job `{ns}{n}`"),
            None => format!(
                "a Job `{ns}{}…` (name completed when the step starts)",
                arg_str(inputs, "generate_name").unwrap_or_default()
            ),
        };
        let delete = arg_bool(inputs, "delete_after").unwrap_or(false);
        match current {
            Current::Known(s) if s["complete"] == json!(true) => Ok(Change {
                action: Action::NoOp,
                fields: Vec::new(),
                summary: vec![format!("{job} already completed ({})", counts(s))],
            }),
            Current::Known(s) if s["failure"].is_string() => Err(format!(
                "{job} exists and failed ({}; {}): delete it, or use `generate_name`, to run it again",
                s["failure"].as_str().unwrap_or_default(),
                counts(s)
            )),
            Current::Known(s) => Ok(Change {
                action: Action::Run,
                fields: Vec::new(),
                summary: vec![format!(
                    "{job} exists and is running (created {}; {}): waits for it to complete instead of creating another",
                    s["created"].as_str().unwrap_or("?"),
                    counts(s)
                )],
            }),
            Current::Absent | Current::NotRead => {
                let mut summary = vec![format!(
                    "creates {job} and waits until it completes; fails with its pod's termination message if it fails"
                )];
                if delete {
                    summary.push("deletes the Job and its pods once it succeeded (propagation Background)".into());
                }
                Ok(Change {
                    action: Action::Create,
                    fields: fields(inputs),
                    summary,
                })
            }
        }
    }
    fn prepare(&self, inputs: &Inputs) -> Option<Json> {
        Some(prepare(inputs))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "name": inputs.get("name").cloned().unwrap_or_else(|| Json::from(UNKNOWN)),
            "succeeded": UNKNOWN,
            "message": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({
            "name": state["name"],
            "succeeded": state["succeeded"],
            "message": state["message"],
        }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        check(inputs).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
        let clients = ctx.client::<KubeClients>()?;
        let ns = namespace(ctx, inputs)?;
        let (name, attempt) = prepared(ctx, inputs);
        let what = format!("Job `{ns}/{name}`");
        let api: Api<K8sJob> = Api::namespaced(clients.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(clients.client.clone(), &ns);
        let job = build(inputs, &name, &ns, &attempt, &ctx.address)
            .map_err(|m| ProviderError::new(format!("{what}: {m}")))?;
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                // Created by this step's interrupted attempt, or the running Job the approved
                // plan showed: wait for it. Anything else is not this step's to wait for.
                let live = api
                    .get(&name)
                    .await
                    .map_err(|e| api_error("get", &what, &e))?;
                let ours = live
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ATTEMPT))
                    .is_some_and(|a| *a == attempt);
                let approved = ctx
                    .planned_state
                    .as_ref()
                    .and_then(|s| s.get("uid"))
                    .and_then(Json::as_str)
                    .is_some_and(|u| live.metadata.uid.as_deref() == Some(u));
                if !ours && !approved {
                    return Err(ProviderError::new(format!(
                        "{}. It was created after the plan (by {}), not by this step: run `opsctl plan` again",
                        api_error("create", &what, &e),
                        live.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(STEP))
                            .map_or("someone else".to_string(), |s| format!("`{s}`"))
                    )));
                }
            }
            Err(e) => return Err(api_error("create", &what, &e)),
        }
        let done = poll(ctx, &format!("{what} to complete"), || async {
            let job = api
                .get(&name)
                .await
                .map_err(|e| api_error("get", &what, &e))?;
            let state = job_state(&job, None);
            if state["complete"] == json!(true) {
                return Ok(Ok(job));
            }
            if let Some(f) = state["failure"].as_str() {
                let why = terminations(&pods, &job, &what)
                    .await?
                    .into_iter()
                    .rev()
                    .find(|t| !t.2)
                    .map(|(pod, line, _, _)| format!("; pod `{pod}`: {line}"))
                    .unwrap_or_default();
                return Err(ProviderError::new(format!(
                    "{what} failed ({f}; {}){why}",
                    counts(&state)
                )));
            }
            Ok(Err(counts(&state)))
        })
        .await?;
        let message = success_message(&pods, &done, &what).await?;
        let state = job_state(&done, message);
        if arg_bool(inputs, "delete_after").unwrap_or(false) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_error("delete", &what, &e)),
            }
        }
        Ok(json!({
            "name": name,
            "succeeded": state["succeeded"],
            "message": state["message"],
        }))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        // Applying again creates the Job of the journaled name and token, or, when the
        // interrupted attempt created it, finds it (409, same token) and waits for it: never a
        // second Job.
        let Some(p) = &ctx.prepared else {
            return Ok(InDoubt::CannotTell);
        };
        let name = p["name"].as_str().unwrap_or_default();
        let ns = namespace(ctx, inputs)?;
        let api: Api<K8sJob> = Api::namespaced(ctx.client::<KubeClients>()?.client.clone(), &ns);
        match api.get(name).await {
            Ok(job) => {
                let ours = job
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ATTEMPT))
                    .map(String::as_str)
                    == p["attempt"].as_str();
                // Ours: applying again waits for it, which is what "repeat" does here.
                Ok(if ours {
                    InDoubt::Repeat
                } else {
                    InDoubt::NotDone
                })
            }
            Err(e) if is_not_found(&e) => Ok(InDoubt::NotDone),
            Err(e) => Err(api_error("get", &format!("Job `{ns}/{name}`"), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(v: Json) -> Inputs {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_job_runs_the_image_with_pvc_volumes_and_never_restarts() {
        let i = inputs(json!({
            "name": "fix", "image": "vault:1", "command": ["sh", "-c", "true"],
            "env": { "B": "2", "A": "1" },
            "pvc_volumes": { "data": { "claim": "data-vault-0", "mount_path": "/vault/data" } },
            "backoff_limit": 1,
        }));
        check(&i).unwrap();
        let job = serde_json::to_value(build(&i, "fix", "ns", "tok", "step.x").unwrap()).unwrap();
        assert_eq!(job["metadata"]["labels"][ATTEMPT], "tok");
        assert_eq!(job["spec"]["backoffLimit"], 1);
        let spec = &job["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["containers"][0]["name"], "fix");
        assert_eq!(spec["containers"][0]["env"][0]["name"], "A");
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["mountPath"],
            "/vault/data"
        );
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "data-vault-0"
        );
    }

    #[test]
    fn arguments_are_checked() {
        assert!(check(&inputs(json!({ "image": "x" }))).is_err());
        assert!(check(&inputs(
            json!({ "name": "a", "generate_name": "a-", "image": "x" })
        ))
        .is_err());
        assert!(check(&inputs(json!({ "name": "a" }))).is_err());
        assert!(check(&inputs(
            json!({ "name": "a", "image": "x", "template": { "spec": {} } })
        ))
        .is_err());
        assert!(check(&inputs(
            json!({ "name": "a", "image": "x", "pvc_volumes": { "d": { "claim": "c" } } })
        ))
        .is_err());
        assert!(check(&inputs(json!({ "name": "a", "template": { "spec": { "containers": [{ "name": "c", "image": "x" }] } } }))).is_ok());
    }

    #[test]
    fn a_generated_name_keeps_the_prefix() {
        let p = prepare(&inputs(json!({ "generate_name": "smoke-" })));
        let n = p["name"].as_str().unwrap();
        assert!(n.starts_with("smoke-") && n.len() == 11, "{n}");
        assert_eq!(p["attempt"].as_str().unwrap().len(), 10);
    }
}
