//! `kubernetes_drain`: cordon a Node, then evict every pod on it through the Eviction API,
//! honouring PodDisruptionBudgets, and wait until each evicted pod is gone — what `kubectl drain`
//! does (k8s.io/kubectl/pkg/drain: `RunCordonOrUncordon`, `GetPodsForDeletion` with its filters
//! `daemonSetFilter`, `mirrorPodFilter`, `localStorageFilter`, `unreplicatedFilter`,
//! `evictPods`, `waitForDelete`, `CheckEvictionSupport`).
//!
//! The node's state, as read at plan (and by `kubernetes_cordon`/`kubernetes_uncordon`, which
//! share its target), holds the node, the pods bound to it and the PodDisruptionBudgets of
//! their namespaces, so that a drain planned after a cordon of the same node still sees its
//! pods.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Expression, Selector, SelectorExt};
use serde_json::{json, Value as Json};

use super::{api_error, context_and_namespace, is_not_found, KubeClients, RESOURCE_VERSION};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_i64, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "node",
        ty: ArgType::String,
        required: true,
        doc: "Node name",
    },
    ArgSpec {
        name: "ignore_daemonsets",
        ty: ArgType::Bool,
        required: false,
        doc: "leave DaemonSet-managed pods in place instead of refusing (`--ignore-daemonsets`; default false)",
    },
    ArgSpec {
        name: "delete_emptydir_data",
        ty: ArgType::Bool,
        required: false,
        doc: "evict pods with `emptyDir` volumes, losing their data (`--delete-emptydir-data`; default false)",
    },
    ArgSpec {
        name: "force",
        ty: ArgType::Bool,
        required: false,
        doc: "evict pods that declare no controller (`--force`; default false)",
    },
    ArgSpec {
        name: "grace_period",
        ty: ArgType::Count,
        required: false,
        doc: "seconds each pod has to terminate (`--grace-period`; default: the pod's own)",
    },
    ArgSpec {
        name: "pod_selector",
        ty: ArgType::String,
        required: false,
        doc: "label selector: only the pods it matches are evicted (`--pod-selector`)",
    },
    ArgSpec {
        name: "disable_eviction",
        ty: ArgType::Bool,
        required: false,
        doc: "delete pods instead of evicting them, bypassing PodDisruptionBudgets (`--disable-eviction`; default false)",
    },
];

/// kubectl's refusal messages (k8s.io/kubectl/pkg/drain/filters.go), with opsctl's argument
/// names in the hint.
const DAEMONSET_FATAL: &str =
    "cannot delete DaemonSet-managed Pods (use `ignore_daemonsets = true` to ignore)";
const LOCAL_STORAGE_FATAL: &str =
    "cannot delete Pods with local storage (use `delete_emptydir_data = true` to override)";
const UNMANAGED_FATAL: &str =
    "cannot delete Pods that declare no controller (use `force = true` to override)";

/// The annotation of a mirror pod (a static pod's API copy), which cannot be evicted.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// `kubernetes_drain`.
pub struct Drain;

// --- reading -----------------------------------------------------------------------------

fn pod_state(p: &Pod) -> Json {
    let meta = &p.metadata;
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|os| os.iter().find(|o| o.controller == Some(true)))
        .map(|o| json!({ "kind": o.kind, "name": o.name }));
    let spec = p.spec.as_ref();
    let emptydir = spec
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.empty_dir.is_some()));
    json!({
        "namespace": meta.namespace,
        "name": meta.name,
        "uid": meta.uid,
        "labels": meta.labels.clone().unwrap_or_default(),
        "owner": owner,
        "phase": p.status.as_ref().and_then(|s| s.phase.clone()),
        "mirror": meta.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)),
        "emptydir": emptydir,
        "deleting": meta.deletion_timestamp.is_some(),
    })
}

fn pdb_state(o: &DynamicObject, api_version: &str) -> Json {
    let status = o.data.get("status");
    json!({
        "namespace": o.metadata.namespace,
        "name": o.metadata.name,
        "api_version": api_version,
        "selector": o.data.get("spec").and_then(|s| s.get("selector")),
        "disruptions_allowed": status
            .and_then(|s| s.get("disruptionsAllowed").or_else(|| s.get("podDisruptionsAllowed")))
            .and_then(Json::as_i64)
            .unwrap_or(0),
    })
}

/// The pods bound to node `name` (`fieldSelector spec.nodeName=NAME`, every namespace).
async fn list_pods(client: &kube::Client, name: &str) -> Result<Vec<Pod>, ProviderError> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={name}"));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .map_err(|e| api_error("list", &format!("pods on node `{name}`"), &e))
}

/// The PodDisruptionBudgets of `namespaces`, at the version the server serves (discovery:
/// `policy/v1` on current clusters, `policy/v1beta1` on 1.20 and before).
async fn list_pdbs(
    clients: &KubeClients,
    target: &str,
    namespaces: &BTreeSet<String>,
) -> Result<Vec<Json>, ProviderError> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    let served = clients
        .discovery
        .resolve(
            &clients.client,
            "policy",
            None,
            "PodDisruptionBudget",
            target,
        )
        .await?;
    let mut out = Vec::new();
    for ns in namespaces {
        let api: Api<DynamicObject> =
            Api::namespaced_with(clients.client.clone(), ns, &served.resource);
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            api_error(
                "list",
                &format!("PodDisruptionBudgets in namespace `{ns}`"),
                &e,
            )
        })?;
        out.extend(
            list.items
                .iter()
                .map(|o| pdb_state(o, served.api_version())),
        );
    }
    Ok(out)
}

/// Reads node `name` with the pods bound to it and the PodDisruptionBudgets of their
/// namespaces: `{name, unschedulable, resource_version, pods: [...], pdbs: [...]}`; None when
/// the node does not exist. The drain's read of the target it shares with
/// `kubernetes_cordon` / `kubernetes_uncordon`, which read [`read_node_only`].
///
/// # Errors
///
/// The server's answer to any of the reads (naming what was read).
pub async fn read_node(ctx: &StepContext, name: &str) -> Result<Option<Json>, ProviderError> {
    let clients = ctx.client::<KubeClients>()?;
    let Some(node) = get_node(clients, name).await? else {
        return Ok(None);
    };
    let mut pods = list_pods(&clients.client, name).await?;
    pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let namespaces: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    let pdbs = list_pdbs(clients, &ctx.target, &namespaces).await?;
    let mut state = node_state(&node);
    state["pods"] = pods.iter().map(pod_state).collect();
    state["pdbs"] = Json::Array(pdbs);
    Ok(Some(state))
}

/// The node alone, without its pods and budgets: `{name, unschedulable, resource_version}`;
/// what `kubernetes_cordon` / `kubernetes_uncordon` need (one GET). None when the node does
/// not exist.
///
/// # Errors
///
/// The server's answer to the read.
pub async fn read_node_only(ctx: &StepContext, name: &str) -> Result<Option<Json>, ProviderError> {
    let clients = ctx.client::<KubeClients>()?;
    Ok(get_node(clients, name).await?.as_ref().map(node_state))
}

async fn get_node(clients: &KubeClients, name: &str) -> Result<Option<Node>, ProviderError> {
    Api::<Node>::all(clients.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| api_error("get", &format!("node `{name}`"), &e))
}

fn node_state(node: &Node) -> Json {
    json!({
        "name": node.metadata.name,
        "unschedulable": node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        RESOURCE_VERSION: node.metadata.resource_version,
    })
}

// --- deciding (kubectl's filters) --------------------------------------------------------

/// A pod as the filters see it.
#[derive(Debug, Clone)]
struct PodInfo {
    namespace: String,
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    owner: Option<(String, String)>,
    terminal: bool,
    mirror: bool,
    emptydir: bool,
    deleting: bool,
}

impl PodInfo {
    fn from_state(v: &Json) -> PodInfo {
        let s = |k: &str| {
            v.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let b = |k: &str| v.get(k).and_then(Json::as_bool).unwrap_or(false);
        let phase = s("phase");
        PodInfo {
            namespace: s("namespace"),
            name: s("name"),
            uid: s("uid"),
            labels: v
                .get("labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default(),
            owner: v.get("owner").and_then(|o| {
                Some((
                    o.get("kind")?.as_str()?.to_string(),
                    o.get("name")?.as_str()?.to_string(),
                ))
            }),
            terminal: phase == "Succeeded" || phase == "Failed",
            mirror: b("mirror"),
            emptydir: b("emptydir"),
            deleting: b("deleting"),
        }
    }

    /// `ns/name`.
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `ReplicaSet `web-5d9c``, or `no controller`.
    fn owner_text(&self) -> String {
        match &self.owner {
            Some((k, n)) => format!("{k} `{n}`"),
            None => "no controller".to_string(),
        }
    }
}

/// The drain options a step names (kubectl's `drain.Helper` fields).
#[derive(Debug, Clone, Default)]
struct Options {
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
    force: bool,
    disable_eviction: bool,
    grace_period: Option<i64>,
    selector: Option<Selector>,
}

impl Options {
    fn of(inputs: &Inputs) -> Result<Options, String> {
        let flag = |n: &str| arg_bool(inputs, n).unwrap_or(false);
        let selector = match arg_str(inputs, "pod_selector") {
            Some(s) if !s.trim().is_empty() => Some(parse_selector(s)?),
            _ => None,
        };
        Ok(Options {
            ignore_daemonsets: flag("ignore_daemonsets"),
            delete_emptydir_data: flag("delete_emptydir_data"),
            force: flag("force"),
            disable_eviction: flag("disable_eviction"),
            grace_period: arg_i64(inputs, "grace_period"),
            selector,
        })
    }
}

/// What drain does with one pod.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Evict (or delete) it; with kubectl's warning when an option allowed it.
    Evict(Option<&'static str>),
    /// Already being deleted: only wait until it is gone.
    Wait,
    /// Leave it (a mirror pod, an ignored DaemonSet pod, a pod the selector does not match);
    /// with the warning kubectl prints, if any.
    Skip(Option<&'static str>),
    /// Drain refuses the node (kubectl's fatal message).
    Refuse(&'static str),
}

/// kubectl's filter chain, in its order: `daemonSetFilter`, `mirrorPodFilter`,
/// `localStorageFilter` and `unreplicatedFilter` (the last two pass terminal pods).
fn classify(p: &PodInfo, o: &Options) -> Verdict {
    if let Some(sel) = &o.selector {
        if !sel.matches(&p.labels) {
            return Verdict::Skip(None);
        }
    }
    let mut warning = None;
    if p.owner.as_ref().is_some_and(|(k, _)| k == "DaemonSet") {
        return if o.ignore_daemonsets {
            Verdict::Skip(Some("ignoring DaemonSet-managed Pods"))
        } else {
            Verdict::Refuse(DAEMONSET_FATAL)
        };
    }
    if p.mirror {
        return Verdict::Skip(Some("ignoring mirror Pods"));
    }
    if p.emptydir && !p.terminal {
        if !o.delete_emptydir_data {
            return Verdict::Refuse(LOCAL_STORAGE_FATAL);
        }
        warning = Some("deleting Pods with local storage");
    }
    if p.owner.is_none() && !p.terminal {
        if !o.force {
            return Verdict::Refuse(UNMANAGED_FATAL);
        }
        warning = Some("deleting Pods that declare no controller");
    }
    if p.deleting {
        Verdict::Wait
    } else {
        Verdict::Evict(warning)
    }
}

/// A PodDisruptionBudget as plan and the timeout message show it.
#[derive(Debug, Clone)]
struct Pdb {
    namespace: String,
    name: String,
    allowed: i64,
    selector: Option<Selector>,
}

impl Pdb {
    fn from_state(v: &Json) -> Pdb {
        let s = |k: &str| {
            v.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let beta = s("api_version").ends_with("v1beta1");
        let selector = v
            .get("selector")
            .filter(|s| !s.is_null())
            .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok());
        // An empty selector matches every pod in policy/v1 and none in policy/v1beta1.
        let selector = match selector {
            None => (!beta).then(Selector::default),
            Some(ls) => {
                let empty = ls.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && ls.match_expressions.as_ref().is_none_or(|m| m.is_empty());
                if empty && beta {
                    None
                } else {
                    Selector::try_from(ls).ok()
                }
            }
        };
        Pdb {
            namespace: s("namespace"),
            name: s("name"),
            allowed: v
                .get("disruptions_allowed")
                .and_then(Json::as_i64)
                .unwrap_or(0),
            selector,
        }
    }

    fn covers(&self, p: &PodInfo) -> bool {
        self.namespace == p.namespace
            && self.selector.as_ref().is_some_and(|s| s.matches(&p.labels))
    }

    fn describe(&self) -> String {
        format!(
            "PodDisruptionBudget `{}/{}` (disruptionsAllowed: {})",
            self.namespace, self.name, self.allowed
        )
    }
}

/// The drain of one node state: what happens to each pod.
struct Decision {
    unschedulable: bool,
    pods: Vec<(PodInfo, Verdict)>,
    pdbs: Vec<Pdb>,
}

impl Decision {
    /// None when the state holds no pod list (a prediction without one).
    fn of(state: &Json, o: &Options) -> Option<Decision> {
        let pods = state.get("pods")?.as_array()?;
        Some(Decision {
            unschedulable: state
                .get("unschedulable")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            pods: pods
                .iter()
                .map(PodInfo::from_state)
                .map(|p| {
                    let v = classify(&p, o);
                    (p, v)
                })
                .collect(),
            pdbs: state
                .get("pdbs")
                .and_then(Json::as_array)
                .map(|a| a.iter().map(Pdb::from_state).collect())
                .unwrap_or_default(),
        })
    }

    /// kubectl's aggregated refusal (`PodDeleteList.errors`): `MESSAGE: ns/a, ns/b; ...`.
    fn refusal(&self) -> Option<String> {
        let mut by_msg: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (p, v) in &self.pods {
            if let Verdict::Refuse(m) = v {
                by_msg.entry(m).or_default().push(p.key());
            }
        }
        if by_msg.is_empty() {
            return None;
        }
        Some(
            by_msg
                .iter()
                .map(|(m, pods)| format!("{m}: {}", pods.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// Pods drain evicts, and pods it waits for (already being deleted).
    fn work(&self) -> impl Iterator<Item = &(PodInfo, Verdict)> {
        self.pods
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Evict(_) | Verdict::Wait))
    }

    fn done(&self) -> bool {
        self.unschedulable && self.work().next().is_none()
    }

    fn budgets(&self, p: &PodInfo) -> Vec<&Pdb> {
        self.pdbs.iter().filter(|b| b.covers(p)).collect()
    }
}

/// Parses a label selector in kubectl's syntax (`app=web,tier!=db,env in (a,b),!legacy`) into
/// kube's [`Selector`] (apimachinery `labels.Parse`; `=`, `==`, `!=`, `in`, `notin`, exists,
/// `!`does-not-exist).
///
/// # Errors
///
/// A message naming the term that cannot be parsed.
fn parse_selector(text: &str) -> Result<Selector, String> {
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    let bad = |t: &str| {
        format!(
            "invalid `pod_selector` `{text}`: cannot parse `{}`",
            t.trim()
        )
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let set = |t: &str, rest: &str| -> Result<BTreeSet<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad(t))?;
        inner
            .split(',')
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || valid(v) {
                    Ok(v.to_string())
                } else {
                    Err(bad(t))
                }
            })
            .collect()
    };
    let mut exprs = Vec::new();
    for t in terms {
        let term = t.trim();
        if term.is_empty() {
            return Err(bad(t));
        }
        let expr = if let Some(k) = term.strip_prefix('!') {
            let k = k.trim();
            valid(k).then(|| Expression::DoesNotExist(k.to_string()))
        } else if let Some((k, v)) = term.split_once("!=") {
            let (k, v) = (k.trim(), v.trim());
            (valid(k) && (v.is_empty() || valid(v)))
                .then(|| Expression::NotEqual(k.to_string(), v.to_string()))
        } else if let Some((k, v)) = term.split_once('=') {
            let (k, v) = (k.trim(), v.trim_start_matches('=').trim());
            (valid(k) && (v.is_empty() || valid(v)))
                .then(|| Expression::Equal(k.to_string(), v.to_string()))
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            let k = k.trim();
            valid(k).then_some(Expression::NotIn(k.to_string(), set(t, rest)?))
        } else if let Some((k, rest)) = term.split_once(" in ") {
            let k = k.trim();
            valid(k).then_some(Expression::In(k.to_string(), set(t, rest)?))
        } else {
            valid(term).then(|| Expression::Exists(term.to_string()))
        };
        exprs.push(expr.ok_or_else(|| bad(t))?);
    }
    Ok(exprs.into_iter().collect())
}

// --- the step ----------------------------------------------------------------------------

/// How a drain reports a pod in plan text: `pod `ns/name` (ReplicaSet `x`)`.
fn pod_line(p: &PodInfo) -> String {
    format!("pod `{}` ({})", p.key(), p.owner_text())
}

fn summary(node: &str, d: &Decision, o: &Options) -> Vec<String> {
    let mut lines = Vec::new();
    if !d.unschedulable {
        lines.push(format!("cordons node `{node}` (spec.unschedulable = true)"));
    }
    let verb = if o.disable_eviction {
        "deletes"
    } else {
        "evicts"
    };
    let grace = o
        .grace_period
        .map(|g| format!(" with a grace period of {g}s"))
        .unwrap_or_default();
    for (p, v) in &d.pods {
        match v {
            Verdict::Evict(warning) => {
                let mut line = format!("{verb} {}{grace}", pod_line(p));
                if let Some(w) = warning {
                    line.push_str(&format!(" ({w})"));
                }
                if o.disable_eviction {
                    let budgets: Vec<String> = d.budgets(p).iter().map(|b| b.describe()).collect();
                    if !budgets.is_empty() {
                        line.push_str(&format!("; bypasses {}", budgets.join(", ")));
                    }
                } else {
                    let (blocked, within): (Vec<&Pdb>, Vec<&Pdb>) =
                        d.budgets(p).into_iter().partition(|b| b.allowed <= 0);
                    if !within.is_empty() {
                        line.push_str(&format!(
                            "; within {}",
                            within
                                .iter()
                                .map(|b| b.describe())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if !blocked.is_empty() {
                        line.push_str(&format!(
                            "; blocked now by {}: apply retries until the step's timeout",
                            blocked
                                .iter()
                                .map(|b| b.describe())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                lines.push(line);
            }
            Verdict::Wait => lines.push(format!(
                "waits for {} to be gone (already terminating)",
                pod_line(p)
            )),
            Verdict::Skip(Some(w)) => lines.push(format!("leaves {} ({w})", pod_line(p))),
            Verdict::Skip(None) | Verdict::Refuse(_) => {}
        }
    }
    if d.work().next().is_some() {
        let budgeted = d.work().any(|(p, _)| !d.budgets(p).is_empty());
        lines.push(if o.disable_eviction {
            "deleting bypasses PodDisruptionBudgets; waits until each pod is gone".to_string()
        } else if budgeted {
            "evicts as the budgets allow (a refused eviction is retried until the step's timeout) and waits until each evicted pod is gone".to_string()
        } else {
            "waits until each evicted pod is gone".to_string()
        });
    } else {
        lines.push(format!("node `{node}` has no pod to evict"));
    }
    lines
}

/// The pods still to evict or wait for, as `ns/name` (the plan field).
fn work_names(d: &Decision) -> Json {
    Json::from(d.work().map(|(p, _)| p.key()).collect::<Vec<_>>())
}

#[async_trait]
impl StepType for Drain {
    fn name(&self) -> &'static str {
        "kubernetes_drain"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let (context, _) = context_and_namespace(&env.provider_args);
        format!(
            "k8s/{context}/v1/Node/{}",
            arg_str(inputs, "node").unwrap_or(UNKNOWN)
        )
    }
    fn reads(&self) -> bool {
        true
    }
    fn read_depth(&self) -> u8 {
        // Reads the node's pods and budgets too, which cordon/uncordon skip.
        1
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        read_node(ctx, arg_str(inputs, "node").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let node = arg_str(inputs, "node").unwrap_or_default();
        let o = Options::of(inputs)?;
        let unknown = || Change {
            action: Action::Update,
            fields: vec![FieldChange {
                path: "spec.unschedulable".into(),
                before: Some(Json::from(UNKNOWN)),
                after: Some(Json::Bool(true)),
            }],
            summary: vec![format!(
                "cordons node `{node}` and evicts its pods (known after apply)"
            )],
        };
        let state = match current {
            Current::Known(s) => s,
            Current::Absent => return Err(format!("node `{node}` not found")),
            Current::NotRead => return Ok(unknown()),
        };
        let Some(d) = Decision::of(state, &o) else {
            return Ok(unknown());
        };
        if let Some(refusal) = d.refusal() {
            return Err(refusal);
        }
        let fields = vec![
            FieldChange {
                path: "spec.unschedulable".into(),
                before: Some(Json::Bool(d.unschedulable)),
                after: Some(Json::Bool(true)),
            },
            FieldChange {
                path: "pods_to_evict".into(),
                before: Some(work_names(&d)),
                after: Some(json!([])),
            },
        ];
        if d.done() {
            return Ok(Change::noop(fields));
        }
        Ok(Change {
            action: Action::Update,
            fields,
            summary: summary(node, &d, &o),
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        // Unschedulable, with only the pods drain leaves (skipped ones).
        let o = Options::of(inputs).ok()?;
        let mut next = match current {
            Current::Known(s) => s.clone(),
            _ => json!({ "name": inputs.get("node"), "pods": [], "pdbs": [] }),
        };
        if let Some(pods) = next.get("pods").and_then(Json::as_array) {
            let left: Vec<Json> = pods
                .iter()
                .filter(|p| {
                    matches!(
                        classify(&PodInfo::from_state(p), &o),
                        Verdict::Skip(_) | Verdict::Refuse(_)
                    )
                })
                .cloned()
                .collect();
            next["pods"] = Json::from(left);
        }
        next["unschedulable"] = Json::Bool(true);
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "node": inputs.get("node"), "unschedulable": true, "evicted": UNKNOWN })
    }
    fn outputs_from_state(&self, inputs: &Inputs, _state: &Json) -> Option<Json> {
        Some(json!({ "node": inputs.get("node"), "unschedulable": true, "evicted": [] }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let started = Instant::now();
        let name = arg_str(inputs, "node").unwrap_or_default().to_string();
        let o = Options::of(inputs).map_err(ProviderError::new)?;
        let clients = ctx.client::<KubeClients>()?;
        let client = &clients.client;
        let fail = |msg: String| ProviderError::new(format!("drain node `{name}`: {msg}"));

        // Cordon first (kubectl `RunCordonOrUncordon`), unless already unschedulable.
        let nodes: Api<Node> = Api::all(client.clone());
        let node = nodes
            .get_opt(&name)
            .await
            .map_err(|e| api_error("get", &format!("node `{name}`"), &e))?
            .ok_or_else(|| fail("the node does not exist".into()))?;
        if !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            let patch = json!({ "spec": { "unschedulable": true } });
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| api_error("cordon", &format!("node `{name}` ({})", ctx.target), &e))?;
        }

        // What to evict, from the live pods (kubectl `GetPodsForDeletion`).
        let state = read_node(ctx, &name)
            .await?
            .ok_or_else(|| fail("the node disappeared".into()))?;
        let d = Decision::of(&state, &o).ok_or_else(|| fail("no pod list".into()))?;
        if let Some(refusal) = d.refusal() {
            return Err(fail(refusal));
        }
        let mut to_evict: Vec<PodInfo> = Vec::new();
        let mut waiting: Vec<PodInfo> = Vec::new();
        for (p, v) in d.work() {
            match v {
                Verdict::Wait => waiting.push(p.clone()),
                _ => to_evict.push(p.clone()),
            }
        }
        let eviction_version = if o.disable_eviction || to_evict.is_empty() {
            None
        } else {
            eviction_group_version(client).await?
        };

        // Finish before the engine's own deadline, so that the failure names the pods.
        let margin = (ctx.timeout / 10).min(Duration::from_secs(5));
        let deadline = started + ctx.timeout.saturating_sub(margin);
        let mut evicted: Vec<String> = Vec::new();
        let mut refused: BTreeMap<String, String> = BTreeMap::new();
        let mut delay = Duration::from_millis(500);
        loop {
            let mut progress = false;
            let mut still = Vec::new();
            for p in to_evict.drain(..) {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
                let r = match &eviction_version {
                    Some(gv) => evict(&pods, &p, gv, o.grace_period).await,
                    None => delete(&pods, &p, o.grace_period).await,
                };
                match r {
                    Ok(()) => {
                        progress = true;
                        refused.remove(&p.key());
                        evicted.push(p.key());
                        waiting.push(p);
                    }
                    Err(e) if is_not_found(&e) => progress = true,
                    Err(kube::Error::Api(r)) if r.code == 429 => {
                        refused.insert(p.key(), r.message.clone());
                        still.push(p);
                    }
                    Err(e) => {
                        return Err(api_error(
                            if eviction_version.is_some() {
                                "evict"
                            } else {
                                "delete"
                            },
                            &format!("pod `{}` from node `{name}` ({})", p.key(), ctx.target),
                            &e,
                        ))
                    }
                }
            }
            to_evict = still;
            // kubectl `waitForDelete`: gone when 404 or another pod (new UID) took the name.
            let mut left = Vec::new();
            for p in waiting.drain(..) {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
                match pods.get_opt(&p.name).await {
                    Ok(Some(now)) if now.metadata.uid.as_deref() == Some(p.uid.as_str()) => {
                        left.push(p)
                    }
                    Ok(_) => progress = true,
                    Err(e) => {
                        return Err(api_error("get", &format!("pod `{}`", p.key()), &e));
                    }
                }
            }
            waiting = left;
            if to_evict.is_empty() && waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline || ctx.cancel.is_cancelled() {
                let msg = still_there(ctx, &name, &to_evict, &waiting, &refused).await;
                return Err(fail(format!(
                    "not finished within the step's timeout ({}); still on the node: {msg}",
                    humantime::format_duration(ctx.timeout)
                )));
            }
            if progress {
                delay = Duration::from_millis(500);
            }
            let wait = delay.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.cancel.cancelled() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Ok(json!({ "node": name, "unschedulable": true, "evicted": evicted }))
    }
}

/// The group/version of the `pods/eviction` subresource, from the core API's discovery
/// (kubectl `CheckEvictionSupport`): `policy/v1beta1` on 1.20, `policy/v1` on current
/// servers; None when the server has no eviction subresource (drain then deletes).
async fn eviction_group_version(client: &kube::Client) -> Result<Option<String>, ProviderError> {
    let list = client
        .list_core_api_resources("v1")
        .await
        .map_err(|e| api_error("discover", "the core API (`/api/v1`)", &e))?;
    Ok(list
        .resources
        .iter()
        .find(|r| r.name == "pods/eviction" && r.kind == "Eviction")
        .and_then(|r| match (r.group.as_deref(), r.version.as_deref()) {
            (Some(g), Some(v)) if !g.is_empty() && !v.is_empty() => Some(format!("{g}/{v}")),
            _ => None,
        }))
}

/// POSTs an Eviction for `p` (kubectl `EvictPod`), at the server's `policy` version.
async fn evict(
    pods: &Api<Pod>,
    p: &PodInfo,
    api_version: &str,
    grace: Option<i64>,
) -> Result<(), kube::Error> {
    let mut body = json!({
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": { "name": p.name, "namespace": p.namespace },
    });
    if let Some(g) = grace {
        body["deleteOptions"] = json!({ "gracePeriodSeconds": g });
    }
    let bytes = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
    pods.create_subresource::<Json>("eviction", &p.name, &PostParams::default(), bytes)
        .await
        .map(|_| ())
}

/// DELETEs `p` (kubectl `DeletePod`, with `disable_eviction`).
async fn delete(pods: &Api<Pod>, p: &PodInfo, grace: Option<i64>) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
        ..DeleteParams::default()
    };
    pods.delete(&p.name, &dp).await.map(|_| ())
}

/// `pod `ns/a` (ReplicaSet `x`): eviction refused by PodDisruptionBudget `ns/pdb`
/// (disruptionsAllowed: 0): SERVER MESSAGE, pod `ns/b` (...): evicted, still terminating`.
async fn still_there(
    ctx: &StepContext,
    node: &str,
    to_evict: &[PodInfo],
    waiting: &[PodInfo],
    refused: &BTreeMap<String, String>,
) -> String {
    // Name the budgets as they are now (a fresh read; the plan's may be stale).
    let pdbs: Vec<Pdb> = match read_node(ctx, node).await {
        Ok(Some(s)) => s
            .get("pdbs")
            .and_then(Json::as_array)
            .map(|a| a.iter().map(Pdb::from_state).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut parts = Vec::new();
    for p in to_evict {
        let blocking: Vec<String> = pdbs
            .iter()
            .filter(|b| b.covers(p))
            .map(Pdb::describe)
            .collect();
        let by = if blocking.is_empty() {
            "a PodDisruptionBudget".to_string()
        } else {
            blocking.join(", ")
        };
        let said = refused
            .get(&p.key())
            .map(|m| format!(" (the server said: {m})"))
            .unwrap_or_default();
        parts.push(format!("{}: eviction refused by {by}{said}", pod_line(p)));
    }
    for p in waiting {
        parts.push(format!("{}: evicted, not gone yet", pod_line(p)));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_parse_like_kubectl() {
        let s = parse_selector("app=web, tier!=db,env in (a, b),!legacy,team").unwrap();
        let l = labels(&[("app", "web"), ("env", "b"), ("team", "x")]);
        assert!(s.matches(&l));
        let mut l2 = l.clone();
        l2.insert("legacy".into(), "1".into());
        assert!(!s.matches(&l2));
        assert!(parse_selector("app==web")
            .unwrap()
            .matches(&labels(&[("app", "web")])));
        assert!(parse_selector("env notin (prod)")
            .unwrap()
            .matches(&labels(&[("env", "dev")])));
        assert!(parse_selector("app=we b").is_err());
        assert!(parse_selector("a,,b").is_err());
        assert!(parse_selector("env in prod").is_err());
    }

    fn pod(owner: Option<&str>, emptydir: bool, phase: &str) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            labels: BTreeMap::new(),
            owner: owner.map(|k| (k.to_string(), "o".to_string())),
            terminal: phase == "Succeeded" || phase == "Failed",
            mirror: false,
            emptydir,
            deleting: false,
        }
    }

    #[test]
    fn filters_follow_kubectl() {
        let o = Options::default();
        assert_eq!(
            classify(&pod(Some("ReplicaSet"), false, "Running"), &o),
            Verdict::Evict(None)
        );
        assert_eq!(
            classify(&pod(None, false, "Running"), &o),
            Verdict::Refuse(UNMANAGED_FATAL)
        );
        // Terminal pods pass the local-storage and unreplicated filters.
        assert_eq!(
            classify(&pod(None, true, "Succeeded"), &o),
            Verdict::Evict(None)
        );
        assert_eq!(
            classify(&pod(Some("DaemonSet"), false, "Running"), &o),
            Verdict::Refuse(DAEMONSET_FATAL)
        );
        assert_eq!(
            classify(&pod(Some("ReplicaSet"), true, "Running"), &o),
            Verdict::Refuse(LOCAL_STORAGE_FATAL)
        );
        let forced = Options {
            force: true,
            ignore_daemonsets: true,
            delete_emptydir_data: true,
            ..Options::default()
        };
        assert_eq!(
            classify(&pod(None, false, "Running"), &forced),
            Verdict::Evict(Some("deleting Pods that declare no controller"))
        );
        assert_eq!(
            classify(&pod(Some("DaemonSet"), false, "Running"), &forced),
            Verdict::Skip(Some("ignoring DaemonSet-managed Pods"))
        );
    }
}
