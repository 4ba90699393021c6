//! `kubernetes_rollout_restart`, `kubernetes_rollout_undo` and `kubernetes_set_image`: the
//! pod-template operations of `kubectl rollout restart`, `kubectl rollout undo` and
//! `kubectl set image`, each waiting with `kubectl rollout status` semantics; and the workload
//! state they share with `kubernetes_scale` (so that steps on one Deployment plan against what
//! the earlier ones predict).
//!
//! The state of a workload target (read once at plan, predicted by every step on it):
//!
//! ```json
//! { "kind": "Deployment", "replicas": 3, "paused": false,
//!   "template": { "metadata": {..}, "spec": {..} },
//!   "revisions": [ { "revision": 1, "history": [], "template": {..} }, .. ] }
//! ```
//!
//! `replicas` is absent for a DaemonSet; `paused` and `revisions` (the ReplicaSets the
//! Deployment controls, by their `deployment.kubernetes.io/revision` annotation, templates
//! without the `pod-template-hash` label, `history` from `deployment.kubernetes.io/revision-history`)
//! only for a Deployment.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value as Json};

use super::{api_error, context_and_namespace, is_not_found, KubeClients, RESOURCE_VERSION};
use crate::config::eval::{json_is_unknown, UNKNOWN};
use crate::provider::{
    arg_bool, arg_i64, arg_str, wait_until, Action, ArgSpec, ArgType, Change, Current, FieldChange,
    InDoubt, Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

/// The pod-template annotation `kubectl rollout restart` sets (kubectl's
/// `defaultObjectRestarter`).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// A ReplicaSet's revision, set by the Deployment controller.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet had before it was rolled back to, comma-separated.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The label the Deployment controller adds to each ReplicaSet's template.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations `kubectl rollout undo` keeps on the Deployment instead of copying them from the
/// ReplicaSet (kubectl's `annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The kinds restart and set_image act on (group `apps`).
pub const KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

const WAIT_DOC: &str =
    "wait until the rollout is complete, as `kubectl rollout status` (default true)";

const RESTART_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: true,
        doc: "`Deployment`, `StatefulSet` or `DaemonSet`",
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
        name: "restarted_at",
        ty: ArgType::String,
        required: false,
        doc: "the `kubectl.kubernetes.io/restartedAt` value (default: the time the step starts, RFC 3339); when set, the step is a no-op while the object already carries it",
    },
    ArgSpec {
        name: "wait",
        ty: ArgType::Bool,
        required: false,
        doc: WAIT_DOC,
    },
];

const UNDO_ARGS: &[ArgSpec] = &[
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
        doc: "Deployment name",
    },
    ArgSpec {
        name: "to_revision",
        ty: ArgType::Count,
        required: false,
        doc: "the revision to go back to (default 0: the previous one)",
    },
    ArgSpec {
        name: "wait",
        ty: ArgType::Bool,
        required: false,
        doc: WAIT_DOC,
    },
];

const SET_IMAGE_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "kind",
        ty: ArgType::String,
        required: true,
        doc: "`Deployment`, `StatefulSet` or `DaemonSet`",
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
        name: "images",
        ty: ArgType::MapOfString,
        required: true,
        doc: "container name (or init container name) -> image",
    },
    ArgSpec {
        name: "wait",
        ty: ArgType::Bool,
        required: false,
        doc: WAIT_DOC,
    },
];

/// The target address of a workload: `k8s/<context>/apps/v1/<Kind>/<ns>/<name>`, the same as
/// `kubernetes_scale` gives it, so that their predictions chain.
fn target(env: &TargetEnv, kind: &str, inputs: &Inputs) -> String {
    let (context, namespace) = context_and_namespace(&env.provider_args);
    format!(
        "k8s/{context}/apps/v1/{kind}/{}/{}",
        arg_str(inputs, "namespace").unwrap_or(&namespace),
        arg_str(inputs, "name").unwrap_or(UNKNOWN)
    )
}

fn check_kind(kind: &str) -> Result<(), String> {
    if KINDS.contains(&kind) || kind.contains(UNKNOWN) {
        Ok(())
    } else {
        Err(format!("kind `{kind}` is not one of {}", KINDS.join(", ")))
    }
}

/// A workload a step names, with APIs for its kind (and, for a Deployment, its ReplicaSets),
/// resolved through discovery in group `apps`.
pub struct Workload {
    kind: String,
    namespace: String,
    name: String,
    api: Api<DynamicObject>,
    replica_sets: Option<Api<DynamicObject>>,
}

impl Workload {
    /// The workload of kind `kind` that `inputs` name (`namespace`, `name`, and optionally
    /// `api_version`), resolved through discovery.
    ///
    /// # Errors
    ///
    /// When the provider did not connect, or the server does not serve the kind (discovery).
    pub async fn of(
        ctx: &StepContext,
        inputs: &Inputs,
        kind: &str,
    ) -> Result<Workload, ProviderError> {
        check_kind(kind).map_err(|m| ProviderError::new(format!("{}: {m}", ctx.target)))?;
        let clients = ctx.client::<KubeClients>()?;
        let namespace = arg_str(inputs, "namespace")
            .map(str::to_string)
            .unwrap_or_else(|| clients.namespace.clone());
        // The version a step names (`kubernetes_scale`'s `api_version = "apps/VERSION"`), else
        // the group's preferred one.
        let version = arg_str(inputs, "api_version").and_then(|gv| gv.strip_prefix("apps/"));
        let resolve = |k: &'static str| {
            clients
                .discovery
                .resolve(&clients.client, "apps", version, k, &ctx.target)
        };
        let served = match kind {
            "Deployment" => resolve("Deployment").await?,
            "StatefulSet" => resolve("StatefulSet").await?,
            _ => resolve("DaemonSet").await?,
        };
        let replica_sets = if kind == "Deployment" {
            let rs = resolve("ReplicaSet").await?;
            Some(Api::namespaced_with(
                clients.client.clone(),
                &namespace,
                &rs.resource,
            ))
        } else {
            None
        };
        Ok(Workload {
            kind: kind.to_string(),
            api: Api::namespaced_with(clients.client.clone(), &namespace, &served.resource),
            namespace,
            name: arg_str(inputs, "name").unwrap_or_default().to_string(),
            replica_sets,
        })
    }

    /// `Deployment `ns/name``.
    pub fn describe(&self) -> String {
        format!("{} `{}/{}`", self.kind, self.namespace, self.name)
    }

    /// The object as JSON; None when it does not exist.
    async fn get(&self) -> Result<Option<Json>, ProviderError> {
        match self.api.get(&self.name).await {
            Ok(o) => Ok(Some(serde_json::to_value(o).unwrap_or(Json::Null))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error("get", &self.describe(), &e)),
        }
    }

    /// The ReplicaSets a Deployment controls (kubectl's `deploymentutil.GetAllReplicaSets`:
    /// listed by the Deployment's selector, kept when their controller is this Deployment).
    async fn replica_sets(&self, deployment: &Json) -> Result<Vec<Json>, ProviderError> {
        let Some(api) = &self.replica_sets else {
            return Ok(Vec::new());
        };
        let selector = deployment
            .pointer("/spec/selector/matchLabels")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let uid = deployment.pointer("/metadata/uid").and_then(Json::as_str);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error("list ReplicaSets of", &self.describe(), &e))?;
        Ok(list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
            })
            .map(|rs| serde_json::to_value(rs).unwrap_or(Json::Null))
            .collect())
    }

    /// The object and (for a Deployment) its ReplicaSets; None when it does not exist.
    async fn read_full(&self) -> Result<Option<(Json, Vec<Json>)>, ProviderError> {
        let Some(obj) = self.get().await? else {
            return Ok(None);
        };
        let rss = self.replica_sets(&obj).await?;
        Ok(Some((obj, rss)))
    }

    /// The shared workload state (module docs); None when it does not exist.
    ///
    /// # Errors
    ///
    /// The server's answer to the get or list.
    pub async fn read(&self) -> Result<Option<Json>, ProviderError> {
        Ok(self
            .read_full()
            .await?
            .map(|(obj, rss)| state_of(&self.kind, &obj, &rss)))
    }

    /// The workload state without `revisions` (one GET, no ReplicaSet list): what a step that
    /// needs only replicas and the template reads (`kubernetes_scale`). Steps that need the
    /// revisions declare a deeper read ([`StepType::read_depth`]), so that a procedure that
    /// holds both reads the target with theirs.
    ///
    /// # Errors
    ///
    /// The server's answer to the get.
    pub async fn read_shallow(&self) -> Result<Option<Json>, ProviderError> {
        Ok(self.get().await?.map(|obj| {
            let mut s = state_of(&self.kind, &obj, &[]);
            if let Some(m) = s.as_object_mut() {
                m.remove("revisions");
            }
            s
        }))
    }

    /// Patches the object; `what` names the operation in errors.
    async fn patch(&self, what: &str, patch: &Patch<Json>) -> Result<(), ProviderError> {
        self.api
            .patch(&self.name, &PatchParams::default(), patch)
            .await
            .map(|_| ())
            .map_err(|e| api_error(what, &self.describe(), &e))
    }

    /// Waits for the rollout to complete (see [`rollout_status`]) until `ctx.timeout`.
    ///
    /// # Errors
    ///
    /// The rollout failed (e.g. `ProgressDeadlineExceeded`, with the condition's message), the
    /// object is gone, a read failed, or the timeout passed (with the last status seen).
    async fn wait_rollout(&self, ctx: &StepContext) -> Result<(), ProviderError> {
        let last = Mutex::new(String::from("not read yet"));
        let (last_ref, this) = (&last, self);
        let r = wait_until(
            &format!("the rollout of {}", self.describe()),
            ctx.timeout,
            move || async move {
                let Some(obj) = this.get().await? else {
                    return Err(ProviderError::new(format!(
                        "{} disappeared while its rollout was awaited",
                        this.describe()
                    )));
                };
                match rollout_status(&this.kind, &obj) {
                    Rollout::Done => Ok(Some(())),
                    Rollout::Waiting(m) => {
                        *last_ref.lock().unwrap_or_else(|p| p.into_inner()) = m;
                        Ok(None)
                    }
                    Rollout::Failed(m) => Err(ProviderError::new(format!(
                        "the rollout of {} failed: {m}",
                        this.describe()
                    ))),
                }
            },
        )
        .await;
        r.map_err(|e| {
            if e.message.starts_with("timed out") {
                let last = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                ProviderError::new(format!("{} (last status: {last})", e.message))
            } else {
                e
            }
        })
    }
}

fn template_of(obj: &Json) -> Json {
    obj.pointer("/spec/template").cloned().unwrap_or(Json::Null)
}

/// A ReplicaSet's template without the `pod-template-hash` label, comparable with its
/// Deployment's template (kubectl's `EqualIgnoreHash`).
fn template_without_hash(rs: &Json) -> Json {
    let mut t = template_of(rs);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Json::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

fn annotation<'a>(obj: &'a Json, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Json::as_str)
}

/// One revision of a Deployment, from a ReplicaSet.
#[derive(Debug, Clone)]
struct Revision {
    revision: i64,
    history: Vec<i64>,
    template: Json,
}

fn revisions_of(state: &Json) -> Vec<Revision> {
    let mut out: Vec<Revision> = state
        .get("revisions")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(Revision {
                revision: r.get("revision")?.as_i64()?,
                history: r
                    .get("history")
                    .and_then(Json::as_array)
                    .map(|h| h.iter().filter_map(Json::as_i64).collect())
                    .unwrap_or_default(),
                template: r.get("template").cloned().unwrap_or(Json::Null),
            })
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

fn revisions_json(revs: &[Revision]) -> Json {
    Json::Array(
        revs.iter()
            .map(
                |r| json!({ "revision": r.revision, "history": r.history, "template": r.template }),
            )
            .collect(),
    )
}

/// The state of a workload from its object and (Deployment) ReplicaSets; see the module docs.
fn state_of(kind: &str, obj: &Json, rss: &[Json]) -> Json {
    let mut s = json!({ "kind": kind, "template": template_of(obj) });
    // What a write conditional on the approved plan sends (see `write_approved`).
    if let Some(v) = obj.pointer("/metadata/resourceVersion") {
        s[RESOURCE_VERSION] = v.clone();
    }
    if kind != "DaemonSet" {
        s["replicas"] = obj
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(Json::from(1));
    }
    if kind == "Deployment" {
        s["paused"] = Json::Bool(
            obj.pointer("/spec/paused")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        );
        let revs: Vec<Revision> = rss
            .iter()
            .filter_map(|rs| {
                Some(Revision {
                    revision: annotation(rs, REVISION)?.parse().ok()?,
                    history: annotation(rs, REVISION_HISTORY)
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|h| h.trim().parse().ok())
                        .collect(),
                    template: template_without_hash(rs),
                })
            })
            .collect();
        let mut revs = revs;
        revs.sort_by_key(|r| r.revision);
        s["revisions"] = revisions_json(&revs);
    }
    s
}

/// The state after the template becomes `template`: for a Deployment, the revision the
/// controller would record (an existing ReplicaSet with that template becomes the newest
/// revision, remembering its old number; otherwise a new revision).
fn with_template(state: &Json, template: Json) -> Json {
    let mut s = state.clone();
    if s.get("template") == Some(&template) {
        return s;
    }
    if s.get("revisions").is_some() {
        let mut revs = revisions_of(state);
        let next = revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        match revs.iter_mut().find(|r| r.template == template) {
            Some(r) => {
                if r.revision != next - 1 {
                    r.history.push(r.revision);
                    r.revision = next;
                }
            }
            None => revs.push(Revision {
                revision: next,
                history: Vec::new(),
                template: template.clone(),
            }),
        }
        revs.sort_by_key(|r| r.revision);
        s["revisions"] = revisions_json(&revs);
    }
    s["template"] = template;
    s
}

/// The state after a scale to `replicas` (shared with `kubernetes_scale`): the current state
/// with its replicas replaced, or only `replicas` when nothing else is known.
pub fn with_replicas(current: Current<'_>, replicas: Option<&Json>) -> Json {
    match current {
        Current::Known(s) if s.is_object() => {
            let mut s = s.clone();
            s["replicas"] = replicas.cloned().unwrap_or(Json::Null);
            s
        }
        _ => json!({ "replicas": replicas }),
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rollout {
    Done,
    Waiting(String),
    Failed(String),
}

fn int(obj: &Json, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Json::as_i64).unwrap_or(0)
}

/// `kubectl rollout status` for one read of the object: kubectl's
/// `DeploymentStatusViewer.Status`, `StatefulSetStatusViewer.Status` and
/// `DaemonSetStatusViewer.Status` (`kubectl/pkg/polymorphichelpers/rollout_status.go`). A
/// Deployment whose `Progressing` condition has reason `ProgressDeadlineExceeded` has failed,
/// with the condition's reason and message.
fn rollout_status(kind: &str, obj: &Json) -> Rollout {
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    let desired = obj.pointer("/spec/replicas").and_then(Json::as_i64);
    match kind {
        "Deployment" => {
            if generation > observed {
                return Rollout::Waiting(
                    "waiting for the deployment spec update to be observed".into(),
                );
            }
            let progressing = obj
                .pointer("/status/conditions")
                .and_then(Json::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Json::as_str) == Some("Progressing"))
                });
            if let Some(c) = progressing {
                let reason = c.get("reason").and_then(Json::as_str).unwrap_or_default();
                if reason == "ProgressDeadlineExceeded" {
                    return Rollout::Failed(format!(
                        "{reason}: {}",
                        c.get("message").and_then(Json::as_str).unwrap_or_default()
                    ));
                }
            }
            let updated = int(obj, "/status/updatedReplicas");
            let replicas = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            if let Some(d) = desired {
                if updated < d {
                    return Rollout::Waiting(format!(
                        "{updated} out of {d} new replicas have been updated"
                    ));
                }
            }
            if replicas > updated {
                return Rollout::Waiting(format!(
                    "{} old replicas are pending termination",
                    replicas - updated
                ));
            }
            if available < updated {
                return Rollout::Waiting(format!(
                    "{available} of {updated} updated replicas are available"
                ));
            }
            Rollout::Done
        }
        "StatefulSet" => {
            if obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Json::as_str)
                != Some("RollingUpdate")
            {
                return Rollout::Failed(
                    "rollout status is only available for the RollingUpdate strategy type".into(),
                );
            }
            if observed == 0 || generation > observed {
                return Rollout::Waiting(
                    "waiting for the statefulset spec update to be observed".into(),
                );
            }
            let ready = int(obj, "/status/readyReplicas");
            if let Some(d) = desired {
                if ready < d {
                    return Rollout::Waiting(format!("{ready} of {d} pods are ready"));
                }
            }
            if let (Some(p), Some(d)) = (
                obj.pointer("/spec/updateStrategy/rollingUpdate/partition")
                    .and_then(Json::as_i64),
                desired,
            ) {
                let updated = int(obj, "/status/updatedReplicas");
                return if updated < d - p {
                    Rollout::Waiting(format!(
                        "{updated} of {} pods above the partition are updated",
                        d - p
                    ))
                } else {
                    Rollout::Done
                };
            }
            let update = obj.pointer("/status/updateRevision");
            if update != obj.pointer("/status/currentRevision") {
                return Rollout::Waiting(format!(
                    "{} pods at revision {} are updated",
                    int(obj, "/status/updatedReplicas"),
                    update.and_then(Json::as_str).unwrap_or_default()
                ));
            }
            Rollout::Done
        }
        _ => {
            if obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Json::as_str)
                != Some("RollingUpdate")
            {
                return Rollout::Failed(
                    "rollout status is only available for the RollingUpdate strategy type".into(),
                );
            }
            if generation > observed {
                return Rollout::Waiting(
                    "waiting for the daemon set spec update to be observed".into(),
                );
            }
            let want = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < want {
                return Rollout::Waiting(format!(
                    "{updated} out of {want} new pods have been updated"
                ));
            }
            if available < want {
                return Rollout::Waiting(format!(
                    "{available} of {want} updated pods are available"
                ));
            }
            Rollout::Done
        }
    }
}

/// In doubt: done when the live object shows the step's effect and its rollout is complete;
/// otherwise applied again (which, with the same desired template, only waits).
async fn in_doubt_by_plan(
    st: &dyn StepType,
    w: &Workload,
    inputs: &Inputs,
) -> Result<InDoubt, ProviderError> {
    let Some((obj, rss)) = w.read_full().await? else {
        return Ok(InDoubt::NotDone);
    };
    let state = state_of(&w.kind, &obj, &rss);
    let noop = matches!(st.plan(inputs, Current::Known(&state)), Ok(c) if c.action == Action::NoOp);
    Ok(if noop && rollout_status(&w.kind, &obj) == Rollout::Done {
        InDoubt::Done
    } else {
        InDoubt::NotDone
    })
}

/// `(path, container)` pairs of a template: `containers["web"]`, `initContainers["init"]`.
fn containers(template: &Json) -> Vec<(String, &Json)> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in template
            .pointer(&format!("/spec/{list}"))
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Json::as_str).unwrap_or_default();
            out.push((format!("{list}[{name:?}]"), c));
        }
    }
    out
}

fn image_of(c: &Json) -> Json {
    c.get("image").cloned().unwrap_or(Json::Null)
}

fn describe_inputs(kind: &str, inputs: &Inputs) -> String {
    format!("{kind} `{}`", arg_str(inputs, "name").unwrap_or_default())
}

fn waits(inputs: &Inputs) -> &'static str {
    if arg_bool(inputs, "wait").unwrap_or(true) {
        " and waits for the rollout (kubectl rollout status)"
    } else {
        ""
    }
}

fn known_state<'a>(
    kind: &str,
    inputs: &Inputs,
    current: Current<'a>,
) -> Result<Option<&'a Json>, String> {
    match current {
        Current::Known(s) => Ok(Some(s)),
        Current::Absent => Err(format!("{} not found", describe_inputs(kind, inputs))),
        Current::NotRead => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// kubernetes_rollout_restart

/// `kubernetes_rollout_restart`: sets the pod template's `kubectl.kubernetes.io/restartedAt`
/// annotation to a value chosen before acting ([`StepType::prepare`], journaled), as kubectl's
/// `defaultObjectRestarter`, then waits for the rollout.
pub struct RolloutRestart;

fn restarted_at_live(state: &Json) -> Option<&str> {
    state
        .pointer("/template/metadata/annotations")
        .and_then(|a| a.get(RESTARTED_AT))
        .and_then(Json::as_str)
}

fn restart_value(ctx: &StepContext, inputs: &Inputs) -> String {
    ctx.prepared
        .as_ref()
        .and_then(|p| p.get("restarted_at"))
        .and_then(Json::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| prepared_restart(inputs))
}

/// The `restartedAt` value: the step's `restarted_at`, else now in RFC 3339 seconds (kubectl:
/// `time.Now().Format(time.RFC3339)`).
fn prepared_restart(inputs: &Inputs) -> String {
    arg_str(inputs, "restarted_at")
        .map(str::to_string)
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn restart_path() -> String {
    format!("template.annotations[{RESTARTED_AT:?}]")
}

#[async_trait]
impl StepType for RolloutRestart {
    fn name(&self) -> &'static str {
        "kubernetes_rollout_restart"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        RESTART_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        target(env, arg_str(inputs, "kind").unwrap_or(UNKNOWN), inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    fn read_depth(&self) -> u8 {
        // Reads the Deployment's revisions (its ReplicaSets), which `kubernetes_scale` skips.
        1
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        Workload::of(ctx, inputs, kind).await?.read().await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        check_kind(kind)?;
        let state = known_state(kind, inputs, current)?;
        if state.and_then(|s| s.get("paused")).and_then(Json::as_bool) == Some(true) {
            return Err(format!(
                "cannot restart paused {} (run `kubectl rollout resume` first)",
                describe_inputs(kind, inputs)
            ));
        }
        let before = match state {
            Some(s) => restarted_at_live(s).map(Json::from),
            None => Some(Json::from(UNKNOWN)),
        };
        let after = inputs
            .get("restarted_at")
            .cloned()
            .unwrap_or_else(|| Json::from(UNKNOWN));
        let field = FieldChange {
            path: restart_path(),
            before: before.clone(),
            after: Some(after.clone()),
        };
        if before.as_ref() == Some(&after) {
            return Ok(Change::noop(vec![field]));
        }
        Ok(Change {
            action: Action::Run,
            fields: vec![field],
            summary: vec![format!(
                "restarts the pods of {}{}",
                describe_inputs(kind, inputs),
                waits(inputs)
            )],
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let value = inputs
            .get("restarted_at")
            .cloned()
            .unwrap_or_else(|| Json::from(UNKNOWN));
        let mut template = state.get("template").cloned().unwrap_or(json!({}));
        if !template.is_object() {
            return None;
        }
        let meta = template
            .as_object_mut()?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let annotations = meta
            .as_object_mut()?
            .entry("annotations")
            .or_insert_with(|| json!({}));
        annotations
            .as_object_mut()?
            .insert(RESTARTED_AT.into(), value);
        Some(with_template(state, template))
    }
    fn prepare(&self, inputs: &Inputs) -> Option<Json> {
        Some(json!({ "restarted_at": prepared_restart(inputs) }))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "restarted_at": inputs.get("restarted_at").cloned().unwrap_or_else(|| Json::from(UNKNOWN)),
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({ "restarted_at": restarted_at_live(state) }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let w = Workload::of(ctx, inputs, kind).await?;
        let value = restart_value(ctx, inputs);
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            RESTARTED_AT: value,
        }}}}});
        w.patch(
            "restart (patch the pod template of)",
            &Patch::Strategic(patch),
        )
        .await?;
        if arg_bool(inputs, "wait").unwrap_or(true) {
            w.wait_rollout(ctx).await?;
        }
        Ok(json!({ "restarted_at": value }))
    }
    /// Done when the live pod template carries the `restartedAt` the interrupted attempt
    /// journaled and its rollout is complete; applied again (with that same value: no second
    /// restart, only the wait) when it carries it but the rollout is not complete, or when it
    /// does not carry it; cannot tell without a journaled value.
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let Some(value) = ctx
            .prepared
            .as_ref()
            .and_then(|p| p.get("restarted_at"))
            .and_then(Json::as_str)
        else {
            return Ok(InDoubt::CannotTell);
        };
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let w = Workload::of(ctx, inputs, kind).await?;
        let Some((obj, rss)) = w.read_full().await? else {
            return Ok(InDoubt::NotDone);
        };
        let state = state_of(kind, &obj, &rss);
        Ok(
            if restarted_at_live(&state) == Some(value)
                && rollout_status(kind, &obj) == Rollout::Done
            {
                InDoubt::Done
            } else {
                InDoubt::NotDone
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// kubernetes_set_image

/// `kubernetes_set_image`: sets container images in the pod template (kubectl's
/// `set image`, a strategic merge patch of the containers by name), then waits for the rollout.
pub struct SetImage;

fn wanted_images(inputs: &Inputs) -> BTreeMap<String, Json> {
    inputs
        .get("images")
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[async_trait]
impl StepType for SetImage {
    fn name(&self) -> &'static str {
        "kubernetes_set_image"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        SET_IMAGE_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        target(env, arg_str(inputs, "kind").unwrap_or(UNKNOWN), inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    fn read_depth(&self) -> u8 {
        // Reads the Deployment's revisions (its ReplicaSets), which `kubernetes_scale` skips.
        1
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        Workload::of(ctx, inputs, kind).await?.read().await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        check_kind(kind)?;
        let wanted = wanted_images(inputs);
        if wanted.is_empty() && !inputs.get("images").is_some_and(json_is_unknown) {
            return Err("`images` names no container".into());
        }
        let state = known_state(kind, inputs, current)?;
        let mut fields = Vec::new();
        match state {
            Some(s) => {
                let template = s.get("template").cloned().unwrap_or(Json::Null);
                let have = containers(&template);
                for (name, image) in &wanted {
                    let Some((path, c)) = have
                        .iter()
                        .find(|(_, c)| c.get("name").and_then(Json::as_str) == Some(name.as_str()))
                    else {
                        let names: Vec<String> = have
                            .iter()
                            .filter_map(|(_, c)| c.get("name").and_then(Json::as_str))
                            .map(|n| format!("`{n}`"))
                            .collect();
                        return Err(format!(
                            "{} has no container `{name}` (it has: {})",
                            describe_inputs(kind, inputs),
                            names.join(", ")
                        ));
                    };
                    fields.push(FieldChange {
                        path: format!("{path}.image"),
                        before: Some(image_of(c)),
                        after: Some(image.clone()),
                    });
                }
            }
            None => {
                for (name, image) in &wanted {
                    fields.push(FieldChange {
                        path: format!("containers[{name:?}].image"),
                        before: Some(Json::from(UNKNOWN)),
                        after: Some(image.clone()),
                    });
                }
            }
        }
        if !fields.is_empty() && fields.iter().all(|f| f.before == f.after) {
            return Ok(Change::noop(fields));
        }
        Ok(Change {
            action: Action::Update,
            fields,
            summary: vec![format!(
                "sets the images of {}{}",
                describe_inputs(kind, inputs),
                waits(inputs)
            )],
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let mut template = state.get("template").cloned()?;
        for list in ["containers", "initContainers"] {
            if let Some(cs) = template
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Json::as_array_mut)
            {
                for c in cs {
                    let name = c.get("name").and_then(Json::as_str).map(str::to_string);
                    if let Some(image) = name.and_then(|n| wanted_images(inputs).remove(&n)) {
                        c["image"] = image;
                    }
                }
            }
        }
        Some(with_template(state, template))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "images": inputs.get("images") })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let w = Workload::of(ctx, inputs, kind).await?;
        let Some(obj) = w.get().await? else {
            return Err(ProviderError::new(format!("{} not found", w.describe())));
        };
        let template = template_of(&obj);
        let wanted = wanted_images(inputs);
        let mut lists: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
        for (path, c) in containers(&template) {
            let name = c.get("name").and_then(Json::as_str).unwrap_or_default();
            if let Some(image) = wanted.get(name) {
                let list = if path.starts_with("init") {
                    "initContainers"
                } else {
                    "containers"
                };
                lists
                    .entry(list)
                    .or_default()
                    .push(json!({ "name": name, "image": image }));
            }
        }
        let patch = json!({ "spec": { "template": { "spec": lists } } });
        w.patch("set image of", &Patch::Strategic(patch)).await?;
        if arg_bool(inputs, "wait").unwrap_or(true) {
            w.wait_rollout(ctx).await?;
        }
        Ok(json!({ "images": inputs.get("images") }))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let w = Workload::of(ctx, inputs, kind).await?;
        in_doubt_by_plan(self, &w, inputs).await
    }
}

// ---------------------------------------------------------------------------------------------
// kubernetes_rollout_undo

/// `kubernetes_rollout_undo`: rolls a Deployment back to the previous revision or to
/// `to_revision`, as kubectl's `DeploymentRollbacker.Rollback` (the ReplicaSet of that revision
/// gives the pod template, minus its `pod-template-hash` label, and its annotations), then
/// waits for the rollout.
pub struct RolloutUndo;

/// What an undo does against a state: nothing (with why), or go back to a revision.
enum UndoTo {
    Nothing(String),
    Revision { to: Revision, from: i64 },
}

/// Picks the revision to go back to (kubectl's `rsForRevision`: `to_revision`, else the
/// newest revision before the newest). A newest revision that was itself restored by a
/// rollback (its ReplicaSet carries `revision-history`) and is live is taken as the undo
/// already done, so that a procedure applied again does not flip back and forth; name
/// `to_revision` to go further back.
fn undo_to(inputs: &Inputs, state: &Json) -> Result<UndoTo, String> {
    let name = arg_str(inputs, "name").unwrap_or_default();
    let what = format!("Deployment `{name}`");
    if state.get("paused").and_then(Json::as_bool) == Some(true) {
        return Err(format!(
            "cannot roll back paused {what} (run `kubectl rollout resume` first)"
        ));
    }
    let revs = revisions_of(state);
    let template = state.get("template").cloned().unwrap_or(Json::Null);
    let Some(latest) = revs.last().cloned() else {
        return Err(format!(
            "{what} has no rollout history (no ReplicaSet with a revision)"
        ));
    };
    let list = || {
        revs.iter()
            .map(|r| r.revision.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let live = latest.template == template;
    let to = match arg_i64(inputs, "to_revision").filter(|n| *n > 0) {
        Some(n) => {
            if live && (latest.revision == n || latest.history.contains(&n)) {
                return Ok(UndoTo::Nothing(format!(
                    "{what} is at revision {n} already{}",
                    if latest.revision == n {
                        String::new()
                    } else {
                        format!(" (now numbered {})", latest.revision)
                    }
                )));
            }
            revs.iter()
                .find(|r| r.revision == n)
                .cloned()
                .ok_or_else(|| format!("{what} has no revision {n} (its revisions: {})", list()))?
        }
        None => {
            if live && !latest.history.is_empty() {
                return Ok(UndoTo::Nothing(format!(
                    "{what} was rolled back already: revision {} restores revision {} (name `to_revision` to go further back)",
                    latest.revision,
                    latest.history.last().copied().unwrap_or_default()
                )));
            }
            revs.iter()
                .rev()
                .find(|r| r.revision < latest.revision)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{what} has no previous revision to roll back to (its only revision is {})",
                        latest.revision
                    )
                })?
        }
    };
    if to.template == template {
        return Ok(UndoTo::Nothing(format!(
            "the template of {what} already matches revision {}",
            to.revision
        )));
    }
    Ok(UndoTo::Revision {
        to,
        from: latest.revision,
    })
}

/// Image changes from `from` to `to`, per container of `to` (then those only in `from`).
fn image_fields(from: &Json, to: &Json) -> Vec<FieldChange> {
    let before: BTreeMap<String, Json> = containers(from)
        .into_iter()
        .map(|(p, c)| (p, image_of(c)))
        .collect();
    let after = containers(to);
    let mut fields: Vec<FieldChange> = after
        .iter()
        .map(|(p, c)| FieldChange {
            path: format!("{p}.image"),
            before: before.get(p).cloned(),
            after: Some(image_of(c)),
        })
        .collect();
    for (p, img) in &before {
        if !after.iter().any(|(q, _)| q == p) {
            fields.push(FieldChange {
                path: format!("{p}.image"),
                before: Some(img.clone()),
                after: None,
            });
        }
    }
    fields
}

#[async_trait]
impl StepType for RolloutUndo {
    fn name(&self) -> &'static str {
        "kubernetes_rollout_undo"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        UNDO_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        target(env, "Deployment", inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    fn read_depth(&self) -> u8 {
        // Reads the Deployment's revisions (its ReplicaSets), which `kubernetes_scale` skips.
        1
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        Workload::of(ctx, inputs, "Deployment").await?.read().await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let Some(state) = known_state("Deployment", inputs, current)? else {
            return Ok(Change {
                action: Action::Update,
                fields: Vec::new(),
                summary: vec![format!(
                    "rolls {} back{}",
                    describe_inputs("Deployment", inputs),
                    waits(inputs)
                )],
            });
        };
        let template = state.get("template").cloned().unwrap_or(Json::Null);
        match undo_to(inputs, state)? {
            UndoTo::Nothing(why) => Ok(Change {
                action: Action::NoOp,
                fields: image_fields(&template, &template),
                summary: vec![why],
            }),
            UndoTo::Revision { to, from } => Ok(Change {
                action: Action::Update,
                fields: image_fields(&template, &to.template),
                summary: vec![format!(
                    "rolls {} back to revision {} (from revision {from}){}",
                    describe_inputs("Deployment", inputs),
                    to.revision,
                    waits(inputs)
                )],
            }),
        }
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        match undo_to(inputs, state).ok()? {
            UndoTo::Nothing(_) => Some(state.clone()),
            UndoTo::Revision { to, .. } => Some(with_template(state, to.template)),
        }
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "revision": arg_i64(inputs, "to_revision")
                .filter(|n| *n > 0)
                .map(Json::from)
                .unwrap_or_else(|| Json::from(UNKNOWN)),
        })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let w = Workload::of(ctx, inputs, "Deployment").await?;
        let Some((obj, rss)) = w.read_full().await? else {
            return Err(ProviderError::new(format!("{} not found", w.describe())));
        };
        let state = state_of("Deployment", &obj, &rss);
        let to = match undo_to(inputs, &state)
            .map_err(|m| ProviderError::new(format!("{}: {m}", w.describe())))?
        {
            UndoTo::Nothing(_) => {
                if arg_bool(inputs, "wait").unwrap_or(true) {
                    w.wait_rollout(ctx).await?;
                }
                return Ok(json!({ "revision": undo_revision_now(&state) }));
            }
            UndoTo::Revision { to, .. } => to.revision,
        };
        let rs = rss
            .iter()
            .find(|rs| annotation(rs, REVISION).and_then(|r| r.parse::<i64>().ok()) == Some(to))
            .ok_or_else(|| {
                ProviderError::new(format!(
                    "{}: the ReplicaSet of revision {to} disappeared",
                    w.describe()
                ))
            })?;
        // kubectl: the Deployment keeps its own values of the skipped annotations and takes
        // every other annotation of the ReplicaSet.
        let mut annotations = serde_json::Map::new();
        for k in ANNOTATIONS_TO_SKIP {
            if let Some(v) = annotation(&obj, k) {
                annotations.insert((*k).to_string(), Json::from(v));
            }
        }
        if let Some(a) = rs
            .pointer("/metadata/annotations")
            .and_then(Json::as_object)
        {
            for (k, v) in a {
                if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        // kubectl sends a JSON patch replacing both; a replace of the object read above does the
        // same and makes a concurrent write a 409 conflict instead of a silent merge.
        let mut updated = obj.clone();
        updated["spec"]["template"] = template_without_hash(rs);
        updated["metadata"]["annotations"] = Json::Object(annotations);
        let updated: DynamicObject = serde_json::from_value(updated).map_err(|e| {
            ProviderError::new(format!("{}: building the rollback: {e}", w.describe()))
        })?;
        w.api
            .replace(&w.name, &PostParams::default(), &updated)
            .await
            .map_err(|e| api_error("roll back", &w.describe(), &e))?;
        if arg_bool(inputs, "wait").unwrap_or(true) {
            w.wait_rollout(ctx).await?;
        }
        Ok(json!({ "revision": to }))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let w = Workload::of(ctx, inputs, "Deployment").await?;
        in_doubt_by_plan(self, &w, inputs).await
    }
}

/// The revision a rolled-back Deployment is at: what its newest revision restored.
fn undo_revision_now(state: &Json) -> Json {
    revisions_of(state)
        .last()
        .map(|r| Json::from(r.history.last().copied().unwrap_or(r.revision)))
        .unwrap_or(Json::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: Json, generation: i64) -> Json {
        json!({ "metadata": { "generation": generation }, "spec": { "replicas": 2 }, "status": status })
    }

    #[test]
    fn rollout_status_follows_kubectls_deployment_status_viewer() {
        let d = |s| deployment(s, 2);
        assert!(matches!(
            rollout_status("Deployment", &d(json!({ "observedGeneration": 1 }))),
            Rollout::Waiting(_)
        ));
        assert_eq!(
            rollout_status(
                "Deployment",
                &d(json!({ "observedGeneration": 2, "updatedReplicas": 1, "replicas": 2 }))
            ),
            Rollout::Waiting("1 out of 2 new replicas have been updated".into())
        );
        assert_eq!(
            rollout_status(
                "Deployment",
                &d(json!({ "observedGeneration": 2, "updatedReplicas": 2, "replicas": 3 }))
            ),
            Rollout::Waiting("1 old replicas are pending termination".into())
        );
        assert_eq!(
            rollout_status(
                "Deployment",
                &d(
                    json!({ "observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1 })
                )
            ),
            Rollout::Waiting("1 of 2 updated replicas are available".into())
        );
        assert_eq!(
            rollout_status(
                "Deployment",
                &d(
                    json!({ "observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2 })
                )
            ),
            Rollout::Done
        );
        assert_eq!(
            rollout_status(
                "Deployment",
                &d(json!({ "observedGeneration": 2, "conditions": [
                    { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                      "message": "ReplicaSet \"web-1\" has timed out progressing." }
                ] }))
            ),
            Rollout::Failed(
                "ProgressDeadlineExceeded: ReplicaSet \"web-1\" has timed out progressing.".into()
            )
        );
    }

    fn template(image: &str) -> Json {
        json!({ "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] } })
    }

    fn inputs(v: Json) -> Inputs {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn predicted_revisions_follow_the_deployment_controller_and_undo_plans_against_them() {
        let state = json!({
            "kind": "Deployment", "replicas": 2, "paused": false, "template": template("a"),
            "revisions": [{ "revision": 1, "history": [], "template": template("a") }],
        });
        let set = inputs(json!({ "kind": "Deployment", "name": "web", "images": { "web": "b" } }));
        let after_set = SetImage.predict(&set, Current::Known(&state)).unwrap();
        assert_eq!(revisions_of(&after_set).last().unwrap().revision, 2);
        let undo = inputs(json!({ "name": "web" }));
        let c = RolloutUndo.plan(&undo, Current::Known(&after_set)).unwrap();
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.fields[0].path, "containers[\"web\"].image");
        assert_eq!(c.fields[0].before, Some(json!("b")));
        assert_eq!(c.fields[0].after, Some(json!("a")));
        assert!(
            c.summary[0].contains("back to revision 1 (from revision 2)"),
            "{c:?}"
        );
        let after_undo = RolloutUndo
            .predict(&undo, Current::Known(&after_set))
            .unwrap();
        let latest = revisions_of(&after_undo).last().cloned().unwrap();
        assert_eq!((latest.revision, latest.history), (3, vec![1]));
        // Applied again, the undo has nothing to do; to_revision 1 is where it is.
        let again = RolloutUndo
            .plan(&undo, Current::Known(&after_undo))
            .unwrap();
        assert_eq!(again.action, Action::NoOp);
        let to1 = inputs(json!({ "name": "web", "to_revision": 1 }));
        assert_eq!(
            RolloutUndo
                .plan(&to1, Current::Known(&after_undo))
                .unwrap()
                .action,
            Action::NoOp
        );
        // No previous revision: an error.
        let err = RolloutUndo.plan(&undo, Current::Known(&state)).unwrap_err();
        assert!(err.contains("no previous revision"), "{err}");
        // An unknown container is a plan error.
        let bad = inputs(json!({ "kind": "Deployment", "name": "web", "images": { "api": "b" } }));
        let err = SetImage.plan(&bad, Current::Known(&state)).unwrap_err();
        assert!(err.contains("no container `api` (it has: `web`)"), "{err}");
    }
}
