//! `kubernetes_delete`: delete any object the server serves (kind through discovery), as
//! `kubectl delete KIND NAME --ignore-not-found --cascade=... --grace-period=...`, with a
//! precondition on the uid the plan read, then wait until it is gone — or, with
//! `wait_for_recreate`, until a new object of that name exists with a different uid (a
//! controller issuing a new TLS secret). Also the object helpers `kubernetes_annotate`,
//! `kubernetes_label` and the data sources share ([`resolve_named`], [`object_target`], [`list_all`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions, PropagationPolicy};
use serde_json::{json, Value as Json};

use super::object::{self, Resolved};
use super::{api_error, is_not_found, KubeClients, RESOURCE_VERSION};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_i64, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt,
    Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

/// The target of a step on one object named by `api_version`, `kind`, `namespace`, `name`
/// ([`object::target`], the shape every Kubernetes step type uses).
pub(super) fn object_target(env: &TargetEnv, inputs: &Inputs) -> String {
    object::target(
        &env.provider_args,
        arg_str(inputs, "api_version").unwrap_or(UNKNOWN),
        arg_str(inputs, "kind").unwrap_or(UNKNOWN),
        arg_str(inputs, "namespace"),
        arg_str(inputs, "name").unwrap_or(UNKNOWN),
    )
}

/// The object a step or data source names (`api_version`, `kind`, `namespace`, `name`),
/// resolved through discovery ([`object::resolve`]).
///
/// # Errors
///
/// When the provider is not connected or discovery fails or does not serve the kind (naming
/// `ctx.target`).
pub(super) async fn resolve_named(
    ctx: &StepContext,
    inputs: &Inputs,
) -> Result<Resolved, ProviderError> {
    object::resolve(
        ctx,
        arg_str(inputs, "api_version").unwrap_or_default(),
        arg_str(inputs, "kind").unwrap_or_default(),
        arg_str(inputs, "namespace"),
        arg_str(inputs, "name").unwrap_or_default(),
    )
    .await
}

/// Every object `api` lists with `lp`, page by page (`limit` 500 and `continue`, as kubectl's
/// `--chunk-size`).
///
/// # Errors
///
/// The server's answer, through [`api_error`] naming `what`.
pub(super) async fn list_all(
    api: &Api<DynamicObject>,
    lp: &ListParams,
    what: &str,
) -> Result<Vec<DynamicObject>, ProviderError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = lp.clone().limit(500);
        if let Some(t) = &token {
            p = p.continue_token(t);
        }
        let page = api
            .list(&p)
            .await
            .map_err(|e| api_error("list", what, &e))?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// The kinds whose objects the plan looks through for dependents of a deleted object (by
/// `metadata.ownerReferences`, transitively), in the object's namespace: what a cascade
/// reaches in practice (a Deployment's ReplicaSets and their Pods, a Job's or StatefulSet's
/// Pods, a StatefulSet's or DaemonSet's ControllerRevisions, a CronJob's Jobs, an operator's
/// Secrets, ConfigMaps, Services and PVCs). Kinds the server does not serve are skipped.
pub const CASCADE_KINDS: &[(&str, &str)] = &[
    ("apps", "ReplicaSet"),
    ("apps", "ControllerRevision"),
    ("batch", "Job"),
    ("", "Pod"),
    ("", "Secret"),
    ("", "ConfigMap"),
    ("", "Service"),
    ("", "PersistentVolumeClaim"),
];

/// The dependents of `root` (uid) in `namespace` among [`CASCADE_KINDS`], transitively:
/// `[{"kind", "namespace", "name", "uid"}]` sorted by kind and name, and the kinds it was not
/// allowed to list (403). Lists metadata only.
async fn dependents(
    clients: &KubeClients,
    namespace: &str,
    root: &str,
    target: &str,
) -> Result<(Vec<Json>, Vec<String>), ProviderError> {
    let mut unlisted: Vec<String> = Vec::new();
    // (kind, name, uid, owner uids)
    let mut all: Vec<(String, String, String, Vec<String>)> = Vec::new();
    for (group, kind) in CASCADE_KINDS {
        let Ok(served) = clients
            .discovery
            .resolve(&clients.client, group, None, kind, target)
            .await
        else {
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(clients.client.clone(), namespace, &served.resource);
        let mut token: Option<String> = None;
        loop {
            let mut p = ListParams::default().limit(500);
            if let Some(t) = &token {
                p = p.continue_token(t);
            }
            let page = match api.list_metadata(&p).await {
                Ok(page) => page,
                // A user who may delete the object but not list a kind: the plan says where
                // it could not look instead of failing.
                Err(kube::Error::Api(r)) if r.code == 403 => {
                    unlisted.push(kind.to_string());
                    break;
                }
                Err(e) => {
                    return Err(api_error(
                        "list (looking for dependents)",
                        &format!("{kind} in namespace `{namespace}` ({target})"),
                        &e,
                    ))
                }
            };
            for o in page.items {
                let owners: Vec<String> = o
                    .metadata
                    .owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.uid)
                    .collect();
                if !owners.is_empty() {
                    all.push((
                        kind.to_string(),
                        o.metadata.name.unwrap_or_default(),
                        o.metadata.uid.unwrap_or_default(),
                        owners,
                    ));
                }
            }
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
    }
    let mut reached: BTreeSet<String> = BTreeSet::from([root.to_string()]);
    let mut found: Vec<(String, String, String)> = Vec::new();
    loop {
        let before = found.len();
        for (kind, name, uid, owners) in &all {
            if !reached.contains(uid) && owners.iter().any(|o| reached.contains(o)) {
                reached.insert(uid.clone());
                found.push((kind.clone(), name.clone(), uid.clone()));
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.sort();
    let found = found
        .into_iter()
        .map(|(kind, name, uid)| json!({ "kind": kind, "namespace": namespace, "name": name, "uid": uid }))
        .collect();
    Ok((found, unlisted))
}

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "api_version",
        ty: ArgType::String,
        required: true,
        doc: "`GROUP/VERSION` of the kind (`v1`, `apps/v1`, `batch/v1`)",
    },
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: true,
        doc: "kind, resolved through discovery (custom resources too)",
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
        name: "propagation_policy",
        ty: ArgType::String,
        required: false,
        doc: "`Background` (default), `Foreground` or `Orphan` (kubectl `--cascade`)",
    },
    ArgSpec {
        name: "grace_period",
        ty: ArgType::Count,
        required: false,
        doc: "seconds the object has to terminate (kubectl `--grace-period`; default: the object's)",
    },
    ArgSpec {
        name: "wait_for_recreate",
        ty: ArgType::Bool,
        required: false,
        doc: "wait until a new object of that name exists with a different uid (default false: until it is gone)",
    },
];

/// `kubernetes_delete`.
pub struct Delete;

const POLICIES: &[&str] = &["Background", "Foreground", "Orphan"];

fn policy(inputs: &Inputs) -> Result<&str, String> {
    let p = arg_str(inputs, "propagation_policy").unwrap_or("Background");
    if POLICIES.contains(&p) || p.contains(UNKNOWN) {
        Ok(p)
    } else {
        Err(format!(
            "propagation_policy `{p}` is not one of {}",
            POLICIES.join(", ")
        ))
    }
}

fn recreate(inputs: &Inputs) -> bool {
    arg_bool(inputs, "wait_for_recreate").unwrap_or(false)
}

/// `Secret `ns/name`` from the read state (or the inputs when absent).
fn describe_state(inputs: &Inputs, state: Option<&Json>) -> String {
    let kind = arg_str(inputs, "kind").unwrap_or_default();
    let name = arg_str(inputs, "name").unwrap_or_default();
    let ns = state
        .and_then(|s| s.get("namespace"))
        .and_then(Json::as_str)
        .or_else(|| arg_str(inputs, "namespace"));
    match ns {
        Some(ns) => format!("{kind} `{ns}/{name}`"),
        None => format!("{kind} `{name}`"),
    }
}

fn uid_of(v: Option<&Json>) -> Option<&str> {
    v.and_then(|s| s.get("uid")).and_then(Json::as_str)
}

/// What the step deletes, read from the object: `{"uid", "namespace", "resource_version",
/// "dependents"}`.
async fn read_delete(ctx: &StepContext, inputs: &Inputs) -> Result<Option<Json>, ProviderError> {
    let obj = resolve_named(ctx, inputs).await?;
    let Some(o) = obj.get(&ctx.target).await? else {
        return Ok(None);
    };
    let uid = o.metadata.uid.clone().unwrap_or_default();
    let (deps, unlisted) = match &obj.namespace {
        Some(ns) => dependents(ctx.client::<KubeClients>()?, ns, &uid, &ctx.target).await?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(Some(json!({
        "uid": uid,
        "namespace": obj.namespace,
        RESOURCE_VERSION: o.metadata.resource_version,
        "deleting": o.metadata.deletion_timestamp.is_some(),
        "dependents": deps,
        "unlisted": unlisted,
    })))
}

#[async_trait]
impl StepType for Delete {
    fn name(&self) -> &'static str {
        "kubernetes_delete"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        object_target(env, inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        read_delete(ctx, inputs).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let policy = policy(inputs)?;
        let state = match current {
            Current::Known(s) => Some(s),
            _ => None,
        };
        let what = describe_state(inputs, state);
        let Some(state) = state else {
            if recreate(inputs) {
                // Nothing to delete (already gone, e.g. deleted by an earlier attempt): the
                // step still waits for the new object.
                return Ok(Change {
                    action: Action::Run,
                    fields: vec![FieldChange {
                        path: "uid".into(),
                        before: None,
                        after: Some(Json::from(UNKNOWN)),
                    }],
                    summary: vec![format!(
                        "nothing to delete: {what} does not exist; waits until it is created"
                    )],
                });
            }
            return Ok(Change::noop(Vec::new()));
        };
        let uid = uid_of(Some(state)).unwrap_or_default();
        let mut summary = vec![format!(
            "deletes {what} (uid {uid}), propagation {policy}{}",
            arg_i64(inputs, "grace_period")
                .map(|g| format!(", grace period {g}s"))
                .unwrap_or_default()
        )];
        let deps: Vec<String> = state
            .get("dependents")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|d| {
                        format!(
                            "{} `{}/{}` (uid {})",
                            d["kind"].as_str().unwrap_or_default(),
                            d["namespace"].as_str().unwrap_or_default(),
                            d["name"].as_str().unwrap_or_default(),
                            d["uid"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if policy == "Orphan" {
            summary.push(if deps.is_empty() {
                "nothing cascades (Orphan)".to_string()
            } else {
                format!(
                    "nothing cascades (Orphan): {} dependent{} kept, without this owner",
                    deps.len(),
                    if deps.len() == 1 { " is" } else { "s are" }
                )
            });
        } else if deps.is_empty() {
            summary.push("no dependents (by ownerReferences) cascade".to_string());
        } else {
            summary.push(format!(
                "cascades ({policy}) to {} dependent{}:",
                deps.len(),
                if deps.len() == 1 { "" } else { "s" }
            ));
            summary.extend(deps.into_iter().map(|d| format!("  - {d}")));
        }
        let unlisted: Vec<&str> = state
            .get("unlisted")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if !unlisted.is_empty() {
            summary.push(format!(
                "could not look for dependents among {} (listing them is forbidden)",
                unlisted.join(", ")
            ));
        }
        summary.push(if recreate(inputs) {
            format!("waits until a new {what} exists with a different uid")
        } else {
            "waits until it is gone".to_string()
        });
        Ok(Change {
            // A rotation has no lasting desired state (the object exists again afterwards,
            // with a new uid): it runs, as a restart does, and is not verified by a re-plan.
            action: if recreate(inputs) {
                Action::Run
            } else {
                Action::Delete
            },
            fields: vec![FieldChange {
                path: "uid".into(),
                before: Some(Json::from(uid)),
                after: recreate(inputs).then(|| Json::from(UNKNOWN)),
            }],
            summary,
        })
    }
    fn prepare_for(&self, _inputs: &Inputs, planned: Option<&Json>) -> Option<Json> {
        // The uid this attempt deletes (None: nothing to delete, only the wait), durable
        // before the delete, so that resume knows whether a live object is the old or new one.
        Some(json!({ "uid": uid_of(planned) }))
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "deleted_uid": UNKNOWN, "uid": UNKNOWN })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let obj = resolve_named(ctx, inputs).await?;
        let what = format!("{} ({})", obj.describe(), ctx.target);
        let old = ctx
            .prepared
            .as_ref()
            .map(|p| uid_of(Some(p)))
            .unwrap_or_else(|| uid_of(ctx.planned_state.as_ref()))
            .map(str::to_string);
        let live = obj.get(&ctx.target).await?;
        let live_uid = live.as_ref().and_then(|o| o.metadata.uid.clone());
        let mut deleted_at = None;
        match (&old, &live_uid) {
            (Some(old), Some(live)) if old == live => {
                let mut dp = DeleteParams {
                    propagation_policy: Some(match policy(inputs).map_err(ProviderError::new)? {
                        "Foreground" => PropagationPolicy::Foreground,
                        "Orphan" => PropagationPolicy::Orphan,
                        _ => PropagationPolicy::Background,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(old.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                if let Some(g) = arg_i64(inputs, "grace_period") {
                    dp = dp.grace_period(u32::try_from(g).unwrap_or(u32::MAX));
                }
                match obj.api.delete(&obj.name, &dp).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(api_error("delete", &what, &e)),
                }
                deleted_at = Some(chrono::Utc::now());
            }
            (None, Some(_)) if !recreate(inputs) => {
                return Err(ProviderError::new(format!(
                    "{what}: appeared since the plan saw it absent; run `opsctl plan` again"
                )))
            }
            // Gone already (an earlier attempt deleted it), or replaced by a new object.
            _ => {}
        }
        let started = Instant::now();
        let deadline = ctx.timeout + Duration::from_secs(10);
        let mut delay = Duration::from_millis(200);
        loop {
            let now = obj.get(&ctx.target).await?;
            let now_uid = now.as_ref().and_then(|o| o.metadata.uid.clone());
            let done = match (&now_uid, recreate(inputs)) {
                (None, false) => true,
                (Some(u), _) => Some(u) != old.as_ref(),
                (None, true) => false,
            };
            if done {
                return Ok(json!({ "deleted_uid": old, "uid": now_uid }));
            }
            let stopped = tokio::select! {
                _ = ctx.cancel.cancelled() => true,
                _ = tokio::time::sleep(delay) => started.elapsed() >= deadline,
            };
            if stopped {
                let when = match deleted_at {
                    Some(t) => format!(
                        "was deleted at {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => format!(
                        "was deleted by an earlier attempt (uid {})",
                        old.as_deref().unwrap_or("none")
                    ),
                };
                // The step's timeout (it is what stopped the wait), else the time waited.
                let waited = if ctx.cancel.is_cancelled() {
                    ctx.timeout.as_secs()
                } else {
                    started.elapsed().as_secs()
                };
                return Err(ProviderError::new(if recreate(inputs) {
                    format!(
                        "{} {when}; no new object appeared within {waited}s (`opsctl apply --resume` waits again and deletes nothing new)",
                        obj.describe()
                    )
                } else {
                    let finalizers = now
                        .as_ref()
                        .and_then(|o| o.metadata.finalizers.clone())
                        .unwrap_or_default();
                    format!(
                        "{} {when}; still there after {waited}s{}",
                        obj.describe(),
                        if finalizers.is_empty() {
                            String::new()
                        } else {
                            format!(", held by finalizers {}", finalizers.join(", "))
                        }
                    )
                }));
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    /// From the live object and the uid the interrupted attempt journaled: still that uid =>
    /// not done (delete it); another uid => done; gone => done, unless waiting for a new one
    /// (then applied again: it only waits, as the journaled uid is gone).
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let Some(prepared) = &ctx.prepared else {
            return Ok(InDoubt::CannotTell);
        };
        let old = uid_of(Some(prepared));
        let obj = resolve_named(ctx, inputs).await?;
        let live = obj.get(&ctx.target).await?;
        let live_uid = live.as_ref().and_then(|o| o.metadata.uid.as_deref());
        Ok(match live_uid {
            Some(u) if Some(u) == old => InDoubt::NotDone,
            Some(_) => InDoubt::Done,
            None if recreate(inputs) => InDoubt::NotDone,
            None => InDoubt::Done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(extra: Json) -> Inputs {
        let mut i = json!({
            "api_version": "v1", "kind": "Secret", "namespace": "consul", "name": "tls",
        });
        i.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        i.as_object().unwrap().clone()
    }

    fn state() -> Json {
        json!({
            "uid": "u1", "namespace": "consul", "dependents": [
                { "kind": "Pod", "namespace": "consul", "name": "p", "uid": "u2" },
            ],
        })
    }

    #[test]
    fn absent_is_a_noop_unless_waiting_for_a_new_object() {
        let c = Delete.plan(&inputs(json!({})), Current::Absent).unwrap();
        assert_eq!(c.action, Action::NoOp);
        let c = Delete
            .plan(
                &inputs(json!({ "wait_for_recreate": true })),
                Current::Absent,
            )
            .unwrap();
        assert_eq!(c.action, Action::Run);
        assert!(c.summary[0].contains("waits until it is created"), "{c:?}");
    }

    #[test]
    fn plan_names_the_uid_and_what_cascades_or_is_orphaned() {
        let s = state();
        let c = Delete.plan(&inputs(json!({})), Current::Known(&s)).unwrap();
        assert_eq!(c.action, Action::Delete);
        assert_eq!(c.fields[0].before, Some(json!("u1")));
        assert_eq!(c.fields[0].after, None);
        assert!(c
            .summary
            .iter()
            .any(|l| l.contains("cascades (Background) to 1 dependent:")));
        assert!(c
            .summary
            .iter()
            .any(|l| l.contains("Pod `consul/p` (uid u2)")));
        let c = Delete
            .plan(
                &inputs(json!({ "propagation_policy": "Orphan" })),
                Current::Known(&s),
            )
            .unwrap();
        assert!(c
            .summary
            .iter()
            .any(|l| l.contains("nothing cascades (Orphan): 1 dependent is kept")));
        assert!(!c.summary.iter().any(|l| l.contains("Pod `consul/p`")));
        let e = Delete
            .plan(
                &inputs(json!({ "propagation_policy": "orphan" })),
                Current::Known(&s),
            )
            .unwrap_err();
        assert!(
            e.contains("not one of Background, Foreground, Orphan"),
            "{e}"
        );
    }

    #[test]
    fn the_journaled_uid_is_the_one_the_plan_read() {
        let s = state();
        assert_eq!(
            Delete.prepare_for(&inputs(json!({})), Some(&s)),
            Some(json!({ "uid": "u1" }))
        );
        assert_eq!(
            Delete.prepare_for(&inputs(json!({})), None),
            Some(json!({ "uid": null }))
        );
    }
}
