//! `kubernetes_scale`: set the replicas of a Deployment, StatefulSet, ReplicaSet (or any kind the
//! server serves with a `scale` subresource, named with `api_version`) through that subresource
//! (what `kubectl scale` does), then optionally wait until that many replicas are ready (or, for
//! 0, until none is left).

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value as Json};

use super::{
    api_error, context_and_namespace, is_not_found, rollout, write_approved, KubeClients,
    RESOURCE_VERSION,
};
use crate::config::eval::UNKNOWN;
use crate::provider::wait_until;
use crate::provider::{
    arg_bool, arg_i64, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: true,
        doc: "`Deployment`, `StatefulSet`, `ReplicaSet`, or another kind with a `scale` subresource",
    },
    ArgSpec {
        name: "api_version",
        ty: ArgType::String,
        required: false,
        doc: "`GROUP/VERSION` of the kind (default: `apps` at the server's preferred version; required for other kinds)",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace (default: the provider's)",
    },
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "object name",
    },
    ArgSpec {
        name: "replicas",
        ty: ArgType::Count,
        required: true,
        doc: "desired replicas",
    },
    ArgSpec {
        name: "wait",
        ty: ArgType::Bool,
        required: false,
        doc: "wait until the replicas are ready (default true)",
    },
];

/// `kubernetes_scale`.
pub struct Scale;

/// The kinds scaled without naming `api_version` (group `apps`).
const KINDS: &[&str] = &["Deployment", "StatefulSet", "ReplicaSet"];

/// The group and version a step names: its `api_version` (`GROUP/VERSION`, or `VERSION` for the
/// core group), else `apps` at the preferred version for the [`KINDS`]; None for another kind
/// without `api_version`.
fn group_version(inputs: &Inputs) -> Option<(String, Option<String>)> {
    match arg_str(inputs, "api_version") {
        Some(gv) => Some(match gv.split_once('/') {
            Some((g, v)) => (g.to_string(), Some(v.to_string())),
            None => (String::new(), Some(gv.to_string())),
        }),
        None => KINDS
            .contains(&arg_str(inputs, "kind").unwrap_or_default())
            .then(|| ("apps".to_string(), None)),
    }
}

struct Object<'a> {
    kind: &'a str,
    namespace: String,
    name: &'a str,
}

impl<'a> Object<'a> {
    /// `Deployment `ns/name``.
    fn describe(&self) -> String {
        format!("{} `{}/{}`", self.kind, self.namespace, self.name)
    }

    /// The object and an API for its kind, resolved through discovery.
    async fn of(
        ctx: &StepContext,
        inputs: &'a Inputs,
    ) -> Result<(Object<'a>, Api<DynamicObject>), ProviderError> {
        let clients = ctx.client::<KubeClients>()?;
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let (group, version) =
            group_version(inputs).ok_or_else(|| ProviderError::new(bad_kind(kind)))?;
        let served = clients
            .discovery
            .resolve(
                &clients.client,
                &group,
                version.as_deref(),
                kind,
                &ctx.target,
            )
            .await?;
        if !served.has_subresource("scale") {
            return Err(ProviderError::new(format!(
                "{}: kind `{kind}` (`{}`) has no `scale` subresource",
                ctx.target,
                served.api_version()
            )));
        }
        let namespace = arg_str(inputs, "namespace")
            .map(str::to_string)
            .unwrap_or_else(|| clients.namespace.clone());
        let api = Api::namespaced_with(clients.client.clone(), &namespace, &served.resource);
        Ok((
            Object {
                kind,
                namespace,
                name: arg_str(inputs, "name").unwrap_or_default(),
            },
            api,
        ))
    }
}

fn bad_kind(kind: &str) -> String {
    format!(
        "kind `{kind}` needs `api_version` (without it: {})",
        KINDS.join(", ")
    )
}

async fn read_scale(ctx: &StepContext, inputs: &Inputs) -> Result<Option<Json>, ProviderError> {
    // A Deployment or StatefulSet (of group `apps`) reads as the workload state the rollout
    // steps read and predict too, so that steps of both kinds on one object chain; without the
    // revisions (one GET): a procedure that also rolls the object reads it with the rollout
    // step's deeper read (`read_depth`).
    let kind = arg_str(inputs, "kind").unwrap_or_default();
    if arg_str(inputs, "api_version").is_none_or(|v| v.starts_with("apps/"))
        && ["Deployment", "StatefulSet"].contains(&kind)
    {
        return rollout::Workload::of(ctx, inputs, kind)
            .await?
            .read_shallow()
            .await;
    }
    let (obj, api) = Object::of(ctx, inputs).await?;
    match api.get_scale(obj.name).await {
        Ok(s) => Ok(Some(json!({
            "replicas": s.spec.and_then(|s| s.replicas).unwrap_or(0),
            RESOURCE_VERSION: s.metadata.resource_version,
        }))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_error("get scale of", &obj.describe(), &e)),
    }
}

#[async_trait]
impl StepType for Scale {
    fn name(&self) -> &'static str {
        "kubernetes_scale"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let (context, namespace) = context_and_namespace(&env.provider_args);
        format!(
            "k8s/{context}/{}/{}/{}/{}",
            arg_str(inputs, "api_version").unwrap_or("apps/v1"),
            arg_str(inputs, "kind").unwrap_or(UNKNOWN),
            arg_str(inputs, "namespace").unwrap_or(&namespace),
            arg_str(inputs, "name").unwrap_or(UNKNOWN)
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
        read_scale(ctx, inputs).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        if group_version(inputs).is_none() && !kind.contains(UNKNOWN) {
            return Err(bad_kind(kind));
        }
        let name = arg_str(inputs, "name").unwrap_or_default();
        let want = inputs.get("replicas").cloned().unwrap_or(Json::Null);
        let before = match current {
            Current::Known(state) => state.get("replicas").cloned().unwrap_or(Json::from(0)),
            Current::Absent => {
                return Err(format!(
                    "{kind} `{name}` not found{}",
                    arg_str(inputs, "namespace")
                        .map(|ns| format!(" in namespace `{ns}`"))
                        .unwrap_or_default()
                ))
            }
            Current::NotRead => Json::from(UNKNOWN),
        };
        let field = FieldChange {
            path: "replicas".into(),
            before: Some(before.clone()),
            after: Some(want.clone()),
        };
        if before == want {
            return Ok(Change::noop(vec![field]));
        }
        let wait = arg_bool(inputs, "wait").unwrap_or(true);
        Ok(Change {
            action: Action::Update,
            fields: vec![field],
            summary: vec![format!(
                "scales {kind} `{name}` to {want} replicas{}",
                if !wait {
                    ""
                } else if want.as_i64() == Some(0) {
                    " and waits until none is left"
                } else {
                    " and waits until they are ready"
                }
            )],
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        Some(rollout::with_replicas(current, inputs.get("replicas")))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "replicas": inputs.get("replicas") })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({ "replicas": state.get("replicas") }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let (obj, api) = Object::of(ctx, inputs).await?;
        let replicas = arg_i64(inputs, "replicas").unwrap_or_default();
        // Conditional on the resource version the approved plan read, as `kubectl scale
        // --resource-version` (kubectl `ScaleSimple`) does.
        write_approved(
            self,
            ctx,
            inputs,
            "patch scale of",
            &format!("{} ({})", obj.describe(), ctx.target),
            |version| {
                let mut patch = json!({ "spec": { "replicas": replicas } });
                if let Some(v) = version {
                    patch["metadata"] = json!({ "resourceVersion": v });
                }
                let api = &api;
                async move {
                    api.patch_scale(obj.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
        if !arg_bool(inputs, "wait").unwrap_or(true) {
            return Ok(json!({ "replicas": replicas }));
        }
        let what = format!(
            "{} `{}/{}` to have {replicas} ready replicas",
            obj.kind, obj.namespace, obj.name
        );
        wait_until(&what, ctx.timeout, || async {
            let o = api
                .get(obj.name)
                .await
                .map_err(|e| api_error("get", &obj.describe(), &e))?;
            let status = |f: &str| {
                o.data
                    .get("status")
                    .and_then(|s| s.get(f))
                    .and_then(Json::as_i64)
                    .unwrap_or(0)
            };
            let done = if replicas == 0 {
                status("replicas") == 0
            } else {
                status("readyReplicas") >= replicas && status("replicas") == replicas
            };
            Ok(done.then_some(()))
        })
        .await?;
        Ok(json!({ "replicas": replicas }))
    }
}
