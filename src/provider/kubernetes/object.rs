//! Shared by `kubernetes_manifest` and `kubernetes_patch`: any object named by `apiVersion` and
//! `kind`, resolved through discovery (custom resources too; scope from discovery), its state
//! (the live object and the server's dry run of the step's write, `dryRun=All`), and the
//! path-wise diff between them that their plans show (kubectl `diff` compares the same two
//! objects: the live one and the dry-run result).

use kube::api::{Api, DynamicObject};
use kube::discovery::Scope;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use super::discovery::Served;
use super::{api_error, context_and_namespace, KubeClients, RESOURCE_VERSION};
use crate::provider::{
    Action, Change, Current, FieldChange, ProviderArgs, ProviderError, StepContext,
};

/// One object of any kind, resolved through discovery.
pub struct Resolved {
    /// An API for its kind, in its namespace when the kind is namespaced.
    pub api: Api<DynamicObject>,
    /// What the server serves for its kind.
    pub served: Served,
    /// Its namespace (None for a cluster-scoped kind).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl Resolved {
    /// `Deployment `ns/web`` or `Namespace `web``.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} `{ns}/{}`", self.served.resource.kind, self.name),
            None => format!("{} `{}`", self.served.resource.kind, self.name),
        }
    }

    /// The live object, None when it does not exist.
    ///
    /// # Errors
    ///
    /// The server's answer (through [`api_error`]) other than 404, naming the object and
    /// `target`.
    pub async fn get(&self, target: &str) -> Result<Option<DynamicObject>, ProviderError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| api_error("get", &format!("{} ({target})", self.describe()), &e))
    }
}

/// `(group, version)` of an `apiVersion`: `apps/v1` -> (`apps`, `v1`), `v1` -> (``, `v1`).
pub fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Kinds of the core and built-in groups that are cluster-scoped, so that a target address can
/// leave the namespace out without asking the server (the step itself asks discovery).
const CLUSTER_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "RuntimeClass",
    "PodSecurityPolicy",
    "IngressClass",
    "CertificateSigningRequest",
];

/// Whether a target address names the object without a namespace (see [`CLUSTER_KINDS`]).
pub fn cluster_kind(kind: &str) -> bool {
    CLUSTER_KINDS.contains(&kind)
}

/// The target of a step on one object: `k8s/<context>/<api_version>/<Kind>/[<ns>/]<name>`,
/// without a namespace for the cluster-scoped [`CLUSTER_KINDS`], else in `namespace` or the
/// provider's (a Node's `k8s/<context>/v1/Node/<name>`). Every step type on an object builds
/// its target here, so that steps on one object share its state and the unordered-writer check.
pub fn target(
    provider_args: &ProviderArgs,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> String {
    let (context, default_ns) = context_and_namespace(provider_args);
    let ns = if cluster_kind(kind) {
        String::new()
    } else {
        format!("{}/", namespace.unwrap_or(&default_ns))
    };
    format!("k8s/{context}/{api_version}/{kind}/{ns}{name}")
}

/// Resolves `api_version`/`kind` through discovery; errors name `target`.
pub async fn served(
    clients: &KubeClients,
    api_version: &str,
    kind: &str,
    target: &str,
) -> Result<Served, ProviderError> {
    let (group, version) = group_version(api_version);
    clients
        .discovery
        .resolve(&clients.client, group, Some(version), kind, target)
        .await
}

/// An API for a served kind: namespaced in `namespace` (None: all namespaces) or cluster-wide.
pub fn api_of(
    clients: &KubeClients,
    served: &Served,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (served.capabilities.scope == Scope::Namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(clients.client.clone(), ns, &served.resource),
        _ => Api::all_with(clients.client.clone(), &served.resource),
    }
}

/// Resolves `kind` of `api_version` through discovery (`GET /apis/GROUP/VERSION`, cached per
/// run) and builds an API for the object: in `namespace` (else the provider's) when the kind
/// is namespaced, cluster-wide otherwise.
///
/// # Errors
///
/// The step's provider is not connected, or discovery fails or does not serve the kind (the
/// message names `ctx.target` and what the server serves).
pub async fn resolve(
    ctx: &StepContext,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Resolved, ProviderError> {
    let clients = ctx.client::<KubeClients>()?;
    let served = served(clients, api_version, kind, &ctx.target).await?;
    let namespace = (served.capabilities.scope == Scope::Namespaced)
        .then(|| namespace.unwrap_or(&clients.namespace).to_string());
    let api = api_of(clients, &served, namespace.as_deref());
    Ok(Resolved {
        api,
        served,
        namespace,
        name: name.to_string(),
    })
}

/// The object without what changes on every write or is not the user's to set:
/// `metadata.managedFields`, `resourceVersion`, `generation`, `creationTimestamp`, `uid`,
/// `selfLink`, and `status` (written by controllers through its subresource).
pub fn clean(mut obj: Json) -> Json {
    if let Some(m) = obj.get_mut("metadata").and_then(Json::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    drop_null_timestamps(&mut obj);
    redact_secret(&mut obj);
    obj
}

/// The annotation `kubectl apply` (client-side) keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// In a core `Secret`, every value of `data` and `stringData` (and kubectl's last-applied
/// annotation, which repeats them) replaced by `(sensitive value #<12 hex>)`: plans still see
/// which keys change, and no value reaches plan text, the journal or messages. The hex is a
/// SHA-256 keyed with 32 random bytes drawn once per process and never stored, so it tells
/// equal values apart within one plan and apply but cannot be used to guess a value (an
/// unkeyed digest of a short password could be).
pub fn redact_secret(obj: &mut Json) {
    if obj.get("kind").and_then(Json::as_str) != Some("Secret")
        || obj.get("apiVersion").and_then(Json::as_str) != Some("v1")
    {
        return;
    }
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::getrandom(&mut k).is_err() {
            // Only where the OS offers no entropy source at all: the clock and pid, hashed,
            // are still unknown to anyone who reads the plan later.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            k = Sha256::digest(format!("{now}:{}", std::process::id())).into();
        }
        k
    });
    let hide = |v: &mut Json| {
        let text = serde_json::to_string(v).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(key);
        h.update(text.as_bytes());
        let hex = format!("{:x}", h.finalize());
        *v = Json::String(format!("(sensitive value #{})", &hex[..12]));
    };
    for k in ["data", "stringData"] {
        if let Some(m) = obj.get_mut(k).and_then(Json::as_object_mut) {
            m.values_mut().for_each(hide);
        }
    }
    if let Some(a) = obj.pointer_mut(&format!(
        "/metadata/annotations/{}",
        LAST_APPLIED.replace('/', "~1")
    )) {
        hide(a);
    }
}

/// Removes the `creationTimestamp: null` the server writes into embedded object metadata (a
/// pod template's), which is no field anyone sets.
fn drop_null_timestamps(v: &mut Json) {
    match v {
        Json::Object(o) => {
            if o.get("creationTimestamp").is_some_and(Json::is_null) {
                o.remove("creationTimestamp");
            }
            o.values_mut().for_each(drop_null_timestamps);
        }
        Json::Array(a) => a.iter_mut().for_each(drop_null_timestamps),
        _ => {}
    }
}

/// A digest of what a step writes (its type and arguments), recorded with a dry run so that a
/// plan uses the dry run only for the write it was made for.
pub fn key(step: &str, parts: &[Option<&Json>]) -> String {
    let text = json!([step, parts]).to_string();
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// A step's state: the live object (`null` when absent) and its resource version, and the
/// dry run of the step's write (`dry_run`: `for` = [`key`], then `object` = the result, or
/// `conflict` / `rejected` = what the server said).
pub fn state(live: Option<&DynamicObject>, dry_run: Json) -> Result<Json, ProviderError> {
    let (object, version) = match live {
        Some(o) => (
            clean(serde_json::to_value(o).map_err(|e| ProviderError::new(e.to_string()))?),
            o.metadata.resource_version.clone(),
        ),
        None => (Json::Null, None),
    };
    Ok(json!({ "object": object, RESOURCE_VERSION: version, "dry_run": dry_run }))
}

/// The dry-run record of a write's result: the cleaned object; a 409 as `conflict`, and a 400,
/// a 422 (validation) or a 403 from admission (a webhook or plugin's denial, as opposed to
/// authorization's) as `rejected`, with the server's message, so that the plan shows them
/// against the step.
///
/// # Errors
///
/// Other failures (401, 403 by authorization, 404, connection), through [`api_error`].
pub fn dry_run_record(
    key: &str,
    operation: &str,
    what: &str,
    result: Result<DynamicObject, kube::Error>,
) -> Result<Json, ProviderError> {
    match result {
        Ok(o) => Ok(json!({
            "for": key,
            "object": clean(serde_json::to_value(&o).map_err(|e| ProviderError::new(e.to_string()))?),
        })),
        // A 409 for a resource version that kept changing (see [`is_stale`]) is an error.
        Err(kube::Error::Api(r)) if r.code == 409 && !r.message.contains("has been modified") => {
            Ok(json!({ "for": key, "conflict": r.message }))
        }
        Err(kube::Error::Api(r))
            if r.code == 400
                || r.code == 422
                || r.code == 403 && r.message.contains("admission") =>
        {
            let rejected = format!("the server answered {} {}: {}", r.code, r.reason, r.message);
            Ok(json!({ "for": key, "rejected": rejected }))
        }
        Err(e) => Err(api_error(operation, what, &e)),
    }
}

/// How many times a read makes its dry run again when the object changed between the read
/// and the dry run.
pub const STALE_RETRIES: usize = 5;

/// Whether a write failed its `metadata.resourceVersion` precondition (a 409 "the object has
/// been modified"), as opposed to a field-ownership conflict of a server-side apply.
pub fn is_stale(r: &Result<DynamicObject, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("has been modified"))
}

/// What a state's dry run says for `key`: Some(Ok(object)), Some(Err(message)) for a conflict
/// (unless `force`) or a rejection, None when it was made for another write (a state predicted
/// by an earlier step on the target).
pub fn dry_run_result(state: &Json, key: &str, what: &str) -> Option<Result<Json, String>> {
    let d = state.get("dry_run")?;
    if d.get("for").and_then(Json::as_str) != Some(key) {
        return None;
    }
    if let Some(c) = d.get("conflict").and_then(Json::as_str) {
        return Some(Err(format!(
            "the server's dry run of {what} found a field-ownership conflict: {c}. Set `force_conflicts = true` to take these fields from their manager(s)"
        )));
    }
    if let Some(r) = d.get("rejected").and_then(Json::as_str) {
        return Some(Err(format!(
            "the server's dry run of {what} was rejected: {r}"
        )));
    }
    d.get("object").cloned().map(Ok)
}

/// RFC 7386 JSON merge patch of `patch` onto `target` (`null` removes a key).
pub fn merge(target: &mut Json, patch: &Json) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

/// The leaves that differ between `before` and `after`, path-wise (`spec.replicas`,
/// `spec.template.spec.containers[name=web].image`, `spec.ports[0].port`): lists whose items
/// all have a unique `name` are matched by name, others by index.
pub fn diff(before: Option<&Json>, after: Option<&Json>) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), simple) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Json::from(key)),
    }
}

fn names(items: &[Json]) -> Option<Vec<&str>> {
    let names: Option<Vec<&str>> = items
        .iter()
        .map(|i| i.get("name").and_then(Json::as_str))
        .collect();
    let names = names?;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == names.len()).then_some(names)
}

fn walk(path: String, before: Option<&Json>, after: Option<&Json>, out: &mut Vec<FieldChange>) {
    if before == after {
        return;
    }
    let leaf = |out: &mut Vec<FieldChange>, path: String| {
        out.push(FieldChange {
            path,
            before: before.cloned(),
            after: after.cloned(),
        })
    };
    let objects = matches!(
        (before, after),
        (Some(Json::Object(_)), Some(Json::Object(_)) | None) | (None, Some(Json::Object(_)))
    );
    let arrays = matches!(
        (before, after),
        (Some(Json::Array(_)), Some(Json::Array(_)) | None) | (None, Some(Json::Array(_)))
    );
    if objects {
        let mut keys: Vec<&String> = [before, after]
            .into_iter()
            .flatten()
            .filter_map(Json::as_object)
            .flat_map(|o| o.keys())
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return leaf(out, path);
        }
        for k in keys {
            walk(
                join(&path, k),
                before.and_then(|b| b.get(k)),
                after.and_then(|a| a.get(k)),
                out,
            );
        }
    } else if arrays {
        let b: &[Json] = before.and_then(Json::as_array).map_or(&[], Vec::as_slice);
        let a: &[Json] = after.and_then(Json::as_array).map_or(&[], Vec::as_slice);
        if a.is_empty() && b.is_empty() {
            return leaf(out, path);
        }
        match (names(b), names(a)) {
            (Some(bn), Some(an)) => {
                let mut order: Vec<&str> = an.clone();
                order.extend(bn.iter().filter(|n| !an.contains(n)));
                for n in order {
                    let find = |items: &[Json], ns: &[&str]| {
                        ns.iter().position(|x| *x == n).map(|i| items[i].clone())
                    };
                    // The item's `name` is in its path: not a field of its own.
                    let item = format!("{path}[name={n}]");
                    let mut fields = Vec::new();
                    walk(
                        item.clone(),
                        find(b, &bn).as_ref(),
                        find(a, &an).as_ref(),
                        &mut fields,
                    );
                    let name = format!("{item}.name");
                    out.extend(fields.into_iter().filter(|f| f.path != name));
                }
            }
            _ => {
                for i in 0..b.len().max(a.len()) {
                    walk(format!("{path}[{i}]"), b.get(i), a.get(i), out);
                }
            }
        }
    } else {
        leaf(out, path);
    }
}

/// The change from the live object `before` (None: absent) to `after`: create, update of the
/// fields that differ, or no-op.
pub fn change(before: Option<&Json>, after: &Json, summary: String) -> Change {
    let fields = diff(before, Some(after));
    let action = match before {
        None => Action::Create,
        Some(_) if fields.is_empty() => Action::NoOp,
        Some(_) => Action::Update,
    };
    Change {
        action,
        fields,
        summary: if action == Action::NoOp {
            Vec::new()
        } else {
            vec![summary]
        },
    }
}

/// `current`, or NotRead when it is the state another kind of step on the same target reads
/// (a workload's replicas and template, a node's schedulability): these steps then plan
/// without a diff, and apply re-reads their own state.
pub fn own(current: Current<'_>) -> Current<'_> {
    match current {
        Current::Known(s) if s.get("object").is_none() => Current::NotRead,
        c => c,
    }
}

/// `ctx` for a write conditional on the approved plan ([`super::write_approved`]): without
/// `planned_state` when the plan had another kind of step's state (see [`own`]), whose
/// resource version and change are not this step's to require.
pub fn approved_context(ctx: &StepContext) -> StepContext {
    let mut ctx = ctx.clone();
    if ctx
        .planned_state
        .as_ref()
        .is_some_and(|s| s.get("object").is_none())
    {
        ctx.planned_state = None;
    }
    ctx
}

/// The live object of a state (None when absent).
pub fn live(state: &Json) -> Option<&Json> {
    state.get("object").filter(|o| !o.is_null())
}

/// The state predicted after a write that leaves the object as `object`: no dry run (a later
/// step's dry run would be for its own write) and no resource version (unknown until written).
pub fn predicted(object: Json) -> Json {
    json!({ "object": object, RESOURCE_VERSION: null, "dry_run": null })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_matches_named_items_and_shows_only_what_changes() {
        let before = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "web", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let after = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "side", "image": "s:1"},
            {"name": "web", "image": "a:2", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]}}}});
        let d: Vec<String> = diff(Some(&before), Some(&after))
            .iter()
            .map(|f| {
                format!(
                    "{}: {} -> {}",
                    f.path,
                    f.before.clone().unwrap(),
                    f.after.clone().unwrap()
                )
            })
            .collect();
        assert_eq!(
            d,
            [
                "spec.replicas: 3 -> 5",
                "spec.template.spec.containers[name=web].image: \"a:1\" -> \"a:2\""
            ]
        );
        let d = diff(
            None,
            Some(&json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}, "data": {}})),
        );
        let paths: Vec<&str> = d.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["data", "metadata.labels[\"app.kubernetes.io/name\"]"]
        );
    }

    #[test]
    fn merge_follows_rfc_7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut t, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(t, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
