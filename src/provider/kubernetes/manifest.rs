//! `kubernetes_manifest`: create or update any object, custom resources included, by
//! server-side apply with field manager `opsctl` (what `kubectl apply --server-side
//! [--force-conflicts]` does). Plan is the server's dry run of that apply (`dryRun=All`) diffed
//! against the live object (what `kubectl diff --server-side` shows): defaulting and admission
//! show, fields other managers own are not drift, a field-ownership conflict is a plan error
//! naming the other manager unless `force_conflicts = true`.

use async_trait::async_trait;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value as Json};

use super::object::{self, Resolved};
use super::{api_error, write_approved, RESOURCE_VERSION};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, Action, ArgSpec, ArgType, Change, Current, Inputs, ProviderError, StepContext,
    StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "manifest",
        ty: ArgType::Any,
        required: true,
        doc: "the object: `apiVersion`, `kind`, `metadata.name` (and `metadata.namespace`, default the provider's, for namespaced kinds), and the fields opsctl manages; an HCL object or `yamldecode(...)`",
    },
    ArgSpec {
        name: "force_conflicts",
        ty: ArgType::Bool,
        required: false,
        doc: "take fields that other field managers own (default false: such a conflict is a plan error)",
    },
];

/// The field manager of opsctl's server-side applies.
pub const FIELD_MANAGER: &str = "opsctl";

/// `kubernetes_manifest`.
pub struct Manifest;

/// What a manifest names: apiVersion, kind, name, namespace (if any).
struct Named<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// The `apiVersion`, `kind` and `metadata.name` of a manifest.
///
/// # Errors
///
/// When the manifest is not an object or lacks one of them (naming what is missing).
fn named(inputs: &Inputs) -> Result<Named<'_>, String> {
    let m = inputs
        .get("manifest")
        .filter(|m| m.is_object())
        .ok_or("`manifest` must be an object (apiVersion, kind, metadata)")?;
    let text = |p: &[&str]| {
        let mut v = m;
        for k in p {
            v = v.get(k)?;
        }
        v.as_str().filter(|s| !s.is_empty())
    };
    let missing = |what: &str| format!("invalid manifest: `{what}` is missing (or not a string)");
    Ok(Named {
        api_version: text(&["apiVersion"]).ok_or_else(|| missing("apiVersion"))?,
        kind: text(&["kind"]).ok_or_else(|| missing("kind"))?,
        name: text(&["metadata", "name"]).ok_or_else(|| missing("metadata.name"))?,
        namespace: text(&["metadata", "namespace"]),
    })
}

fn key(inputs: &Inputs) -> String {
    object::key(
        "kubernetes_manifest",
        &[inputs.get("manifest"), inputs.get("force_conflicts")],
    )
}

fn force(inputs: &Inputs) -> bool {
    arg_bool(inputs, "force_conflicts").unwrap_or(false)
}

/// The object resolved through discovery, and the manifest as applied (its namespace set for a
/// namespaced kind).
async fn resolve(ctx: &StepContext, inputs: &Inputs) -> Result<(Resolved, Json), ProviderError> {
    let n = named(inputs).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
    let r = object::resolve(ctx, n.api_version, n.kind, n.namespace, n.name).await?;
    let mut body = inputs.get("manifest").cloned().unwrap_or(Json::Null);
    if let (Some(ns), Some(meta)) = (
        &r.namespace,
        body.get_mut("metadata").and_then(Json::as_object_mut),
    ) {
        meta.insert("namespace".into(), Json::from(ns.clone()));
    }
    Ok((r, body))
}

fn params(inputs: &Inputs) -> PatchParams {
    let pp = PatchParams::apply(FIELD_MANAGER);
    if force(inputs) {
        pp.force()
    } else {
        pp
    }
}

fn summary(inputs: &Inputs, n: &Named<'_>) -> String {
    format!(
        "applies {} `{}` server-side (field manager `{FIELD_MANAGER}`{})",
        n.kind,
        n.name,
        if force(inputs) {
            ", taking fields other managers own"
        } else {
            ""
        }
    )
}

/// The object after this step: the dry run's result when the state holds the dry run of this
/// manifest, else (a state predicted by an earlier step) the manifest merged onto the object.
fn after(inputs: &Inputs, state: Option<&Json>, what: &str) -> Result<Json, String> {
    if let Some(r) = state.and_then(|s| object::dry_run_result(s, &key(inputs), what)) {
        return r;
    }
    let mut o = state
        .and_then(object::live)
        .cloned()
        .unwrap_or_else(|| json!({}));
    object::merge(
        &mut o,
        &object::clean(inputs.get("manifest").cloned().unwrap_or(Json::Null)),
    );
    Ok(o)
}

#[async_trait]
impl StepType for Manifest {
    fn name(&self) -> &'static str {
        "kubernetes_manifest"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let m = inputs.get("manifest");
        let get = |p: &[&str]| {
            let mut v = m?;
            for k in p {
                v = v.get(k)?;
            }
            v.as_str()
        };
        object::target(
            &env.provider_args,
            get(&["apiVersion"]).unwrap_or(UNKNOWN),
            get(&["kind"]).unwrap_or(UNKNOWN),
            get(&["metadata", "namespace"]),
            get(&["metadata", "name"]).unwrap_or(UNKNOWN),
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
        let (r, body) = resolve(ctx, inputs).await?;
        let what = format!("{} ({})", r.describe(), ctx.target);
        // The dry run is made against the object as read (its resource version a
        // precondition), so that the diff shows this step's change and nothing a controller
        // wrote in between; read again when the object changed meanwhile.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = r
                .api
                .get_opt(&r.name)
                .await
                .map_err(|e| api_error("get", &what, &e))?;
            let mut body = body.clone();
            if let (Some(v), Some(meta)) = (
                live.as_ref()
                    .and_then(|o| o.metadata.resource_version.clone()),
                body.get_mut("metadata").and_then(Json::as_object_mut),
            ) {
                meta.insert("resourceVersion".into(), Json::from(v));
            }
            let dry = r
                .api
                .patch(&r.name, &params(inputs).dry_run(), &Patch::Apply(&body))
                .await;
            if object::is_stale(&dry) && attempt < object::STALE_RETRIES {
                continue;
            }
            let dry = object::dry_run_record(&key(inputs), "dry-run apply of", &what, dry)?;
            return object::state(live.as_ref(), dry).map(Some);
        }
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let n = named(inputs)?;
        let what = format!("{} `{}`", n.kind, n.name);
        let state = match object::own(current) {
            Current::NotRead => {
                return Ok(Change {
                    action: Action::Update,
                    fields: Vec::new(),
                    summary: vec![format!(
                        "{} (the fields that change are known after apply)",
                        summary(inputs, &n)
                    )],
                })
            }
            Current::Absent => None,
            Current::Known(s) => Some(s),
        };
        let after = after(inputs, state, &what)?;
        Ok(object::change(
            state.and_then(object::live),
            &after,
            summary(inputs, &n),
        ))
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let n = named(inputs).ok()?;
        let what = format!("{} `{}`", n.kind, n.name);
        let state = match object::own(current) {
            Current::NotRead => return None,
            Current::Absent => None,
            Current::Known(s) => Some(s),
        };
        after(inputs, state, &what).ok().map(object::predicted)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        match named(inputs) {
            Ok(n) => json!({
                "api_version": n.api_version,
                "kind": n.kind,
                "name": n.name,
                "namespace": UNKNOWN,
                "uid": UNKNOWN,
                RESOURCE_VERSION: UNKNOWN,
            }),
            Err(_) => json!({}),
        }
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let (r, body) = resolve(ctx, inputs).await?;
        let what = format!("{} ({})", r.describe(), ctx.target);
        let pp = params(inputs);
        // Conditional on the object the approved plan read: its resource version in the
        // applied configuration is a precondition (a 409 when the object changed since).
        let ctx = &object::approved_context(ctx);
        write_approved(
            self,
            ctx,
            inputs,
            "server-side apply of",
            &what,
            |version| {
                let mut body = body.clone();
                if let (Some(v), Some(meta)) = (
                    version,
                    body.get_mut("metadata").and_then(Json::as_object_mut),
                ) {
                    meta.insert("resourceVersion".into(), Json::from(v));
                }
                let (api, name, pp) = (&r.api, &r.name, &pp);
                async move { api.patch(name, pp, &Patch::Apply(&body)).await.map(drop) }
            },
        )
        .await?;
        let o = r
            .api
            .get(&r.name)
            .await
            .map_err(|e| api_error("get", &what, &e))?;
        Ok(json!({
            "api_version": r.served.api_version(),
            "kind": r.served.resource.kind,
            "name": r.name,
            "namespace": r.namespace,
            "uid": o.metadata.uid,
            RESOURCE_VERSION: o.metadata.resource_version,
        }))
    }
}
