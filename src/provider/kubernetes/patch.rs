//! `kubernetes_patch`: a merge (RFC 7386), strategic-merge or JSON (RFC 6902) patch of any
//! object (what `kubectl patch --type merge|strategic|json` does). Planned by the server's dry
//! run of the same patch (`dryRun=All`) diffed against the live object, so that the plan shows
//! only the fields that change; applied conditional on the resource version the plan read.

use async_trait::async_trait;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Resource;
use serde_json::{json, Value as Json};

use super::object::{self, Resolved};
use super::{api_error, write_approved, KubeClients, RESOURCE_VERSION};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, Inputs, ProviderError, StepContext,
    StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "api_version",
        ty: ArgType::String,
        required: true,
        doc: "`GROUP/VERSION` of the kind (`v1` for the core group)",
    },
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: true,
        doc: "the object's kind (`Deployment`, `Application`, ...)",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace of a namespaced kind (default: the provider's)",
    },
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "object name",
    },
    ArgSpec {
        name: "type",
        ty: ArgType::String,
        required: false,
        doc: "`strategic` (default, as kubectl; built-in kinds only), `merge` or `json`",
    },
    ArgSpec {
        name: "patch",
        ty: ArgType::Any,
        required: true,
        doc: "the patch: an object (`merge`, `strategic`), or a list of operations (`json`)",
    },
];

/// The field manager of opsctl's patches.
const FIELD_MANAGER: &str = "opsctl";

/// `kubernetes_patch`.
pub struct KubePatch;

/// The patch type and the patch, checked against each other.
fn typed(inputs: &Inputs) -> Result<(&str, &Json), String> {
    let ty = arg_str(inputs, "type").unwrap_or("strategic");
    let patch = inputs.get("patch").unwrap_or(&Json::Null);
    match ty {
        "merge" | "strategic" if patch.is_object() => Ok((ty, patch)),
        "json" if patch.is_array() => Ok((ty, patch)),
        "merge" | "strategic" => Err(format!(
            "a `{ty}` patch must be an object, not {}",
            kind_of(patch)
        )),
        "json" => Err(format!(
            "a `json` patch must be a list of operations (RFC 6902), not {}",
            kind_of(patch)
        )),
        other => Err(format!(
            "unknown patch `type` `{other}`: expected `merge`, `strategic` or `json`"
        )),
    }
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn key(inputs: &Inputs) -> String {
    object::key(
        "kubernetes_patch",
        &[inputs.get("type"), inputs.get("patch")],
    )
}

/// `Application `argocd/netlix-app``, from the arguments.
fn describe(inputs: &Inputs) -> String {
    let kind = arg_str(inputs, "kind").unwrap_or_default();
    let name = arg_str(inputs, "name").unwrap_or_default();
    match arg_str(inputs, "namespace") {
        Some(ns) => format!("{kind} `{ns}/{name}`"),
        None => format!("{kind} `{name}`"),
    }
}

async fn resolve(ctx: &StepContext, inputs: &Inputs) -> Result<Resolved, ProviderError> {
    object::resolve(
        ctx,
        arg_str(inputs, "api_version").unwrap_or_default(),
        arg_str(inputs, "kind").unwrap_or_default(),
        arg_str(inputs, "namespace"),
        arg_str(inputs, "name").unwrap_or_default(),
    )
    .await
}

/// Sends the patch (`PATCH` with the type's content type), a dry run when `dry_run`.
async fn send(
    client: &kube::Client,
    r: &Resolved,
    ty: &str,
    patch: &Json,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let pp = PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match ty {
        "merge" => r.api.patch(&r.name, &pp, &Patch::Merge(patch)).await,
        "json" => {
            // kube builds JSON patches only with its `jsonpatch` feature (another crate): the
            // request is a merge patch's with RFC 6902's content type.
            let url = DynamicObject::url_path(&r.served.resource, r.namespace.as_deref());
            let mut req = kube::core::Request::new(url)
                .patch(&r.name, &pp, &Patch::Merge(patch))
                .map_err(kube::Error::BuildRequest)?;
            if let Ok(v) = "application/json-patch+json".parse() {
                req.headers_mut().insert("content-type", v);
            }
            client.request::<DynamicObject>(req).await
        }
        _ => r.api.patch(&r.name, &pp, &Patch::Strategic(patch)).await,
    }
}

/// The patch made conditional on `version` (a 409 when the object's resource version differs):
/// in the patch's `metadata`, or, for a JSON patch, an operation that sets it.
fn with_version(patch: &Json, version: Option<String>) -> Json {
    let mut patch = patch.clone();
    if let Some(v) = version {
        match patch {
            Json::Array(ref mut ops) => {
                ops.push(json!({"op": "replace", "path": "/metadata/resourceVersion", "value": v}))
            }
            ref mut p => object::merge(p, &json!({"metadata": {"resourceVersion": v}})),
        }
    }
    patch
}

/// The object after this step: the dry run's result when the state holds the dry run of this
/// patch, else (a state predicted by an earlier step) a merge patch applied locally, or None
/// for a JSON patch.
fn after(inputs: &Inputs, state: &Json) -> Result<Option<Json>, String> {
    if let Some(r) = object::dry_run_result(state, &key(inputs), &describe(inputs)) {
        return r.map(Some);
    }
    let (ty, patch) = typed(inputs)?;
    Ok((ty != "json").then(|| {
        let mut o = object::live(state).cloned().unwrap_or_else(|| json!({}));
        object::merge(&mut o, patch);
        o
    }))
}

#[async_trait]
impl StepType for KubePatch {
    fn name(&self) -> &'static str {
        "kubernetes_patch"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        super::delete::object_target(env, inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let (ty, patch) =
            typed(inputs).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
        let r = resolve(ctx, inputs).await?;
        let what = format!("{} ({})", r.describe(), ctx.target);
        let client = &ctx.client::<KubeClients>()?.client;
        // The dry run is made against the object as read (its resource version a
        // precondition), so that the diff shows this patch's change and nothing a controller
        // wrote in between; read again when the object changed meanwhile.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(live) = r
                .api
                .get_opt(&r.name)
                .await
                .map_err(|e| api_error("get", &what, &e))?
            else {
                return Ok(None);
            };
            let patch = with_version(patch, live.metadata.resource_version.clone());
            let dry = send(client, &r, ty, &patch, true).await;
            if object::is_stale(&dry) && attempt < object::STALE_RETRIES {
                continue;
            }
            let dry = object::dry_run_record(&key(inputs), "dry-run patch of", &what, dry)?;
            return object::state(Some(&live), dry).map(Some);
        }
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let (ty, _) = typed(inputs)?;
        let summary = format!("patches {} ({ty} patch)", describe(inputs));
        let state = match object::own(current) {
            Current::NotRead => {
                return Ok(Change {
                    action: Action::Update,
                    fields: Vec::new(),
                    summary: vec![format!(
                        "{summary}; the fields that change are known after apply"
                    )],
                })
            }
            Current::Absent => {
                return Err(format!(
                    "{} not found (the server answered 404): nothing to patch",
                    describe(inputs)
                ))
            }
            Current::Known(s) => s,
        };
        Ok(match after(inputs, state)? {
            Some(after) => object::change(object::live(state), &after, summary),
            None => Change {
                action: Action::Update,
                fields: Vec::new(),
                summary: vec![format!(
                    "{summary}; the fields that change are known after apply"
                )],
            },
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = object::own(current) else {
            return None;
        };
        after(inputs, state).ok().flatten().map(object::predicted)
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let (ty, patch) =
            typed(inputs).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
        let r = resolve(ctx, inputs).await?;
        let what = format!("{} ({})", r.describe(), ctx.target);
        let client = ctx.client::<KubeClients>()?.client.clone();
        // Conditional on the resource version the approved plan read (a 409 when the object
        // changed since): in the patch's `metadata`, or a JSON patch's `replace` of it.
        let ctx = &object::approved_context(ctx);
        write_approved(self, ctx, inputs, "patch", &what, |version| {
            let patch = with_version(patch, version);
            let (client, r) = (&client, &r);
            async move { send(client, r, ty, &patch, false).await.map(drop) }
        })
        .await?;
        let o = r
            .api
            .get(&r.name)
            .await
            .map_err(|e| api_error("get", &what, &e))?;
        Ok(json!({ "uid": o.metadata.uid, RESOURCE_VERSION: o.metadata.resource_version }))
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "uid": UNKNOWN, RESOURCE_VERSION: UNKNOWN })
    }
}
