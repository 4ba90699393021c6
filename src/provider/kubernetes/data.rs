//! Kubernetes data sources, read at plan time for `for_each` and conditions:
//! `kubernetes_nodes` (`kubectl get nodes -l ... --field-selector ...`), `kubernetes_pods`
//! (`kubectl get pods [-A]`), `kubernetes_objects` (`kubectl get KIND [-A]`, any kind through
//! discovery) and `kubernetes_object` (`kubectl get KIND NAME`). Lists are paginated
//! (`limit`/`continue`, as kubectl's `--chunk-size`).

use async_trait::async_trait;
use kube::api::{DynamicObject, ListParams};
use serde_json::{json, Value as Json};

use super::delete::{list_all, resolve_named};
use super::object::{api_of, served};
use super::KubeClients;
use crate::provider::{
    arg_bool, arg_str, ArgSpec, ArgType, DataSourceType, Inputs, ProviderError, StepContext,
};

const LABEL_SELECTOR: ArgSpec = ArgSpec {
    name: "label_selector",
    ty: ArgType::String,
    required: false,
    doc: "label selector (kubectl `-l`), e.g. `eks.amazonaws.com/nodegroup=general`",
};
const FIELD_SELECTOR: ArgSpec = ArgSpec {
    name: "field_selector",
    ty: ArgType::String,
    required: false,
    doc: "field selector (kubectl `--field-selector`), e.g. `spec.unschedulable=false`",
};
const NAMESPACE: ArgSpec = ArgSpec {
    name: "namespace",
    ty: ArgType::String,
    required: false,
    doc: "namespace (default: the provider's; ignored with `all_namespaces`)",
};
const ALL_NAMESPACES: ArgSpec = ArgSpec {
    name: "all_namespaces",
    ty: ArgType::Bool,
    required: false,
    doc: "list in every namespace (kubectl `-A`; default false)",
};
const API_VERSION: ArgSpec = ArgSpec {
    name: "api_version",
    ty: ArgType::String,
    required: true,
    doc: "`GROUP/VERSION` of the kind (`v1`, `batch/v1`)",
};
const KIND: ArgSpec = ArgSpec {
    name: "kind",
    ty: ArgType::String,
    required: true,
    doc: "kind, resolved through discovery (custom resources too)",
};

const NODES_ARGS: &[ArgSpec] = &[LABEL_SELECTOR, FIELD_SELECTOR];
const PODS_ARGS: &[ArgSpec] = &[NAMESPACE, ALL_NAMESPACES, LABEL_SELECTOR, FIELD_SELECTOR];
const OBJECTS_ARGS: &[ArgSpec] = &[
    API_VERSION,
    KIND,
    NAMESPACE,
    ALL_NAMESPACES,
    LABEL_SELECTOR,
    FIELD_SELECTOR,
];
const OBJECT_ARGS: &[ArgSpec] = &[
    API_VERSION,
    KIND,
    NAMESPACE,
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "object name",
    },
    ArgSpec {
        name: "optional",
        ty: ArgType::Bool,
        required: false,
        doc: "an absent object gives `exists = false` instead of an error (default false)",
    },
];

fn list_params(inputs: &Inputs) -> ListParams {
    let mut lp = ListParams::default();
    if let Some(l) = arg_str(inputs, "label_selector") {
        lp = lp.labels(l);
    }
    if let Some(f) = arg_str(inputs, "field_selector") {
        lp = lp.fields(f);
    }
    lp
}

/// Lists `api_version`/`kind` (in the namespace the inputs name, or all) as JSON objects.
async fn list(
    ctx: &StepContext,
    inputs: &Inputs,
    api_version: &str,
    kind: &str,
) -> Result<Vec<Json>, ProviderError> {
    let clients = ctx.client::<KubeClients>()?;
    let served = served(clients, api_version, kind, &ctx.address).await?;
    let namespace = (!arg_bool(inputs, "all_namespaces").unwrap_or(false)).then(|| {
        arg_str(inputs, "namespace")
            .map(str::to_string)
            .unwrap_or_else(|| clients.namespace.clone())
    });
    let api = api_of(clients, &served, namespace.as_deref());
    let scope = match (
        &namespace,
        served.capabilities.scope == kube::discovery::Scope::Namespaced,
    ) {
        (Some(ns), true) => format!(" in namespace `{ns}`"),
        (None, true) => " in all namespaces".to_string(),
        _ => String::new(),
    };
    let items = list_all(
        &api,
        &list_params(inputs),
        &format!("{kind}{scope} ({})", ctx.address),
    )
    .await?;
    Ok(items
        .into_iter()
        .map(|o| object_json(&o, &served.resource.api_version, kind))
        .collect())
}

/// The object as JSON with its `apiVersion` and `kind` (a list's items carry neither); a core
/// `Secret`'s values replaced by `(sensitive value #<hex>)` (see `object::redact_secret`), so
/// that no secret read by a data source reaches plan text, outputs or the journal.
fn object_json(o: &DynamicObject, api_version: &str, kind: &str) -> Json {
    let mut v = serde_json::to_value(o).unwrap_or(Json::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    super::object::redact_secret(&mut v);
    v
}

fn condition_true(o: &Json, kind: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Json::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

fn meta<'a>(o: &'a Json, field: &str) -> &'a Json {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .unwrap_or(&Json::Null)
}

/// `data "kubernetes_nodes"`.
pub struct Nodes;

#[async_trait]
impl DataSourceType for Nodes {
    fn name(&self) -> &'static str {
        "kubernetes_nodes"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        NODES_ARGS
    }
    /// `{"items": [{"name", "labels", "unschedulable", "ready", "taints", "uid"}], "names"}`,
    /// sorted by name.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let mut items: Vec<Json> = list(ctx, inputs, "v1", "Node")
            .await?
            .iter()
            .map(|n| {
                json!({
                    "name": meta(n, "name"),
                    "uid": meta(n, "uid"),
                    "labels": meta(n, "labels").as_object().cloned().unwrap_or_default(),
                    "unschedulable": n.pointer("/spec/unschedulable").and_then(Json::as_bool).unwrap_or(false),
                    "ready": condition_true(n, "Ready"),
                    "taints": n.pointer("/spec/taints").cloned().unwrap_or(json!([])),
                })
            })
            .collect();
        items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let names: Vec<Json> = items.iter().map(|i| i["name"].clone()).collect();
        Ok(json!({ "items": items, "names": names }))
    }
}

/// `data "kubernetes_pods"`.
pub struct Pods;

#[async_trait]
impl DataSourceType for Pods {
    fn name(&self) -> &'static str {
        "kubernetes_pods"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        PODS_ARGS
    }
    /// `{"items": [{"namespace", "name", "phase", "node", "ready", "owner": {"kind", "name"} |
    /// null, "labels"}], "names"}`, sorted by namespace and name.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let mut items: Vec<Json> = list(ctx, inputs, "v1", "Pod")
            .await?
            .iter()
            .map(|p| {
                let owner = meta(p, "ownerReferences")
                    .as_array()
                    .and_then(|rs| {
                        rs.iter()
                            .find(|r| r["controller"] == true)
                            .or_else(|| rs.first())
                    })
                    .map(|r| json!({ "kind": r["kind"], "name": r["name"] }));
                json!({
                    "namespace": meta(p, "namespace"),
                    "name": meta(p, "name"),
                    "phase": p.pointer("/status/phase"),
                    "node": p.pointer("/spec/nodeName"),
                    "ready": condition_true(p, "Ready"),
                    "owner": owner,
                    "labels": meta(p, "labels").as_object().cloned().unwrap_or_default(),
                })
            })
            .collect();
        items.sort_by(|a, b| {
            (a["namespace"].as_str(), a["name"].as_str())
                .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
        });
        let names: Vec<Json> = items.iter().map(|i| i["name"].clone()).collect();
        Ok(json!({ "items": items, "names": names }))
    }
}

/// `data "kubernetes_objects"`.
pub struct Objects;

#[async_trait]
impl DataSourceType for Objects {
    fn name(&self) -> &'static str {
        "kubernetes_objects"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        OBJECTS_ARGS
    }
    /// `{"items": [full objects], "names": ["name", ...]}`, sorted by namespace and name.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let api_version = arg_str(inputs, "api_version").unwrap_or_default();
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let mut items = list(ctx, inputs, api_version, kind).await?;
        items.sort_by(|a, b| {
            (meta(a, "namespace").as_str(), meta(a, "name").as_str())
                .cmp(&(meta(b, "namespace").as_str(), meta(b, "name").as_str()))
        });
        let names: Vec<Json> = items.iter().map(|i| meta(i, "name").clone()).collect();
        Ok(json!({ "items": items, "names": names }))
    }
}

/// `data "kubernetes_object"`.
pub struct Object;

#[async_trait]
impl DataSourceType for Object {
    fn name(&self) -> &'static str {
        "kubernetes_object"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        OBJECT_ARGS
    }
    /// `{"exists": bool, "object": the full object | null}`.
    ///
    /// # Errors
    ///
    /// The server's answer; an absent object unless `optional = true`, naming it.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let mut ctx = ctx.clone();
        ctx.target = ctx.address.clone();
        let obj = resolve_named(&ctx, inputs).await?;
        match obj.get(&ctx.address).await? {
            Some(o) => {
                let api_version = arg_str(inputs, "api_version").unwrap_or_default();
                Ok(
                    json!({ "exists": true, "object": object_json(&o, api_version, &obj.served.resource.kind) }),
                )
            }
            None if arg_bool(inputs, "optional").unwrap_or(false) => {
                Ok(json!({ "exists": false, "object": null }))
            }
            None => Err(ProviderError::new(format!(
                "{}: {} not found (set `optional = true` to allow that)",
                ctx.address,
                obj.describe()
            ))),
        }
    }
}
