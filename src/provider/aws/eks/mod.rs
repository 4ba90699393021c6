//! EKS: the `eks_nodegroup_scaling` step (desired/min/max, labels and taints of a managed
//! nodegroup, as `aws eks update-nodegroup-config`), the `eks_nodegroup`, `eks_cluster` and
//! `eks_nodegroups` data sources (`aws eks describe-nodegroup`, `describe-cluster`,
//! `list-nodegroups`), and the helpers the version steps share (cluster_version.rs,
//! nodegroup_version.rs): descriptions, update polls, the update in flight.

mod cluster_version;
mod nodegroup_version;

pub use cluster_version::ClusterVersion;
pub use nodegroup_version::NodegroupVersion;

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_eks::types::{
    NodegroupScalingConfig, Taint, TaintEffect, UpdateLabelsPayload, UpdateTaintsPayload,
};
use serde_json::{json, Value as Json};

use super::waiter::{transient_or_fatal, Poll, PollError, Waiter};
use super::{region_of, sdk_error};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_i64, arg_str, Action, ArgSpec, ArgType, Change, Current, DataSourceType, FieldChange,
    Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

const SIZES: [&str; 3] = ["desired_size", "min_size", "max_size"];

/// `eks_nodegroup_scaling`: pins `scaling_config` of a managed nodegroup.
pub struct NodegroupScaling;

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "cluster",
        ty: ArgType::String,
        required: true,
        doc: "EKS cluster name",
    },
    ArgSpec {
        name: "nodegroup",
        ty: ArgType::String,
        required: true,
        doc: "managed nodegroup name",
    },
    ArgSpec {
        name: "desired_size",
        ty: ArgType::Count,
        required: false,
        doc: "scalingConfig.desiredSize",
    },
    ArgSpec {
        name: "min_size",
        ty: ArgType::Count,
        required: false,
        doc: "scalingConfig.minSize",
    },
    ArgSpec {
        name: "max_size",
        ty: ArgType::Count,
        required: false,
        doc: "scalingConfig.maxSize",
    },
    ArgSpec {
        name: "labels",
        ty: ArgType::MapOfString,
        required: false,
        doc: "Kubernetes labels to add or update (labels.addOrUpdateLabels)",
    },
    ArgSpec {
        name: "remove_labels",
        ty: ArgType::ListOfString,
        required: false,
        doc: "label keys to remove (labels.removeLabels)",
    },
    ArgSpec {
        name: "taints",
        ty: ArgType::Any,
        required: false,
        doc: "taints to add or update: a list of { key, value, effect } (NoSchedule, NoExecute, PreferNoSchedule) (taints.addOrUpdateTaints)",
    },
    ArgSpec {
        name: "remove_taints",
        ty: ArgType::Any,
        required: false,
        doc: "taints to remove: a list of { key, effect } (taints.removeTaints)",
    },
];

/// Label and taint arguments of `eks_nodegroup_scaling`.
const META: [&str; 4] = ["labels", "remove_labels", "taints", "remove_taints"];

/// Taint effects: (Kubernetes spelling, EKS API spelling).
const EFFECTS: [(&str, &str); 3] = [
    ("NoSchedule", "NO_SCHEDULE"),
    ("NoExecute", "NO_EXECUTE"),
    ("PreferNoSchedule", "PREFER_NO_SCHEDULE"),
];

/// The EKS API spelling of a taint effect given in either spelling.
fn effect_api(effect: &str) -> Option<&'static str> {
    EFFECTS
        .iter()
        .find(|(k, a)| *k == effect || *a == effect)
        .map(|(_, a)| *a)
}

/// A taint as `(key, value, effect in API spelling)`.
type TaintSpec = (String, Option<String>, String);

/// The taints of argument `name` (a list of `{ key, value, effect }`).
fn taint_inputs(inputs: &Inputs, name: &str) -> Result<Vec<TaintSpec>, String> {
    let Some(v) = inputs.get(name).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| format!("`{name}` must be a list of {{ key, value, effect }}"))?;
    list.iter()
        .map(|t| {
            let key = t.get("key").and_then(Json::as_str).ok_or_else(|| {
                format!("every taint of `{name}` needs a string `key`, got {t}")
            })?;
            let effect = t.get("effect").and_then(Json::as_str).unwrap_or_default();
            let api = effect_api(effect).ok_or_else(|| {
                format!(
                    "taint `{key}` of `{name}`: `effect` must be NoSchedule, NoExecute or PreferNoSchedule, got {:?}",
                    effect
                )
            })?;
            let value = t.get("value").and_then(Json::as_str).map(str::to_string);
            Ok((key.to_string(), value, api.to_string()))
        })
        .collect()
}

/// The taints of a nodegroup state.
fn state_taints(state: &Json) -> Vec<TaintSpec> {
    state
        .get("taints")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("key")?.as_str()?.to_string(),
                        t.get("value").and_then(Json::as_str).map(str::to_string),
                        t.get("effect")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn taints_json(taints: &[TaintSpec]) -> Json {
    Json::Array(
        taints
            .iter()
            .map(|(k, v, e)| json!({ "key": k, "value": v, "effect": e }))
            .collect(),
    )
}

/// The label and taint changes of the inputs against `state`: the plan's fields (labels
/// as `labels.KEY`, taints as `taints.KEY:EFFECT` with the value), whether anything
/// changes, and the labels and taints after the change.
fn meta_changes(
    inputs: &Inputs,
    state: &Json,
) -> Result<(Vec<FieldChange>, bool, Json, Json), String> {
    let mut labels = state
        .get("labels")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut fields = Vec::new();
    let mut changed = false;
    let add = inputs
        .get("labels")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let remove: Vec<String> = inputs
        .get("remove_labels")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &add {
        if remove.contains(k) {
            return Err(format!(
                "label `{k}` is both in `labels` and in `remove_labels`"
            ));
        }
        let before = labels.get(k).cloned();
        changed |= before.as_ref() != Some(v);
        fields.push(FieldChange {
            path: format!("labels.{k}"),
            before,
            after: Some(v.clone()),
        });
        labels.insert(k.clone(), v.clone());
    }
    for k in &remove {
        let before = labels.remove(k);
        changed |= before.is_some();
        fields.push(FieldChange {
            path: format!("labels.{k}"),
            before,
            after: None,
        });
    }
    let mut taints = state_taints(state);
    let add_t = taint_inputs(inputs, "taints")?;
    let remove_t = taint_inputs(inputs, "remove_taints")?;
    for (k, v, e) in &add_t {
        if remove_t.iter().any(|(rk, _, re)| rk == k && re == e) {
            return Err(format!(
                "taint `{k}:{e}` is both in `taints` and in `remove_taints`"
            ));
        }
        let pos = taints.iter().position(|(tk, _, te)| tk == k && te == e);
        let before = pos.map(|i| json!(taints[i].1.clone().unwrap_or_default()));
        let after = json!(v.clone().unwrap_or_default());
        changed |= before.as_ref() != Some(&after);
        fields.push(FieldChange {
            path: format!("taints.{k}:{e}"),
            before,
            after: Some(after),
        });
        match pos {
            Some(i) => taints[i].1 = v.clone(),
            None => taints.push((k.clone(), v.clone(), e.clone())),
        }
    }
    for (k, _, e) in &remove_t {
        let pos = taints.iter().position(|(tk, _, te)| tk == k && te == e);
        let before = pos.map(|i| json!(taints.remove(i).1.unwrap_or_default()));
        changed |= before.is_some();
        fields.push(FieldChange {
            path: format!("taints.{k}:{e}"),
            before,
            after: None,
        });
    }
    Ok((fields, changed, Json::Object(labels), taints_json(&taints)))
}

/// Whether two taint lists hold the same taints, in any order.
fn same_taints(a: &Json, b: &Json) -> bool {
    let key = |j: &Json| {
        let mut t = state_taints(&json!({ "taints": j }));
        t.sort();
        t
    };
    key(a) == key(b)
}

const DATA_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "cluster",
        ty: ArgType::String,
        required: true,
        doc: "EKS cluster name",
    },
    ArgSpec {
        name: "nodegroup",
        ty: ArgType::String,
        required: true,
        doc: "managed nodegroup name",
    },
];

/// `(major, minor)` of a Kubernetes version such as `1.30` (a patch part is ignored).
pub(crate) fn minor_version(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A cluster as the steps and data sources show it.
fn cluster_json(c: &aws_sdk_eks::types::Cluster) -> Json {
    json!({
        "name": c.name(),
        "cluster": c.name(),
        "arn": c.arn(),
        "status": c.status().map(|s| s.as_str().to_string()),
        "version": c.version(),
        "platform_version": c.platform_version(),
        "endpoint": c.endpoint(),
        "role_arn": c.role_arn(),
        "tags": c.tags(),
    })
}

/// `DescribeCluster`: the cluster, or None when it does not exist.
pub(crate) async fn describe_cluster(
    ctx: &StepContext,
    cluster: &str,
) -> Result<Option<Json>, ProviderError> {
    let aws = ctx.client::<super::AwsClients>()?;
    match aws.eks.describe_cluster().name(cluster).send().await {
        Ok(out) => Ok(out.cluster().map(cluster_json)),
        Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(err) => Err(sdk_error(&format!("DescribeCluster `{cluster}`"), err)),
    }
}

/// The cluster's description for a waiter's poll (throttling and transient errors retried).
pub(crate) async fn cluster_polled(ctx: &StepContext, cluster: &str) -> Result<Json, PollError> {
    let aws = ctx.client::<super::AwsClients>()?;
    let out = aws
        .eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|e| transient_or_fatal(&format!("DescribeCluster `{cluster}`"), e))?;
    out.cluster().map(cluster_json).ok_or_else(|| {
        PollError::Fatal(ProviderError::new(format!(
            "DescribeCluster `{cluster}` answered no cluster"
        )))
    })
}

/// How many of the newest updates [`in_flight_version_update`] looks at.
const RECENT_UPDATES: usize = 20;

/// The `InProgress` `VersionUpdate` of a cluster (`nodegroup` None) or of one of its
/// nodegroups, as `(update id, target version)`, found with `ListUpdates` and
/// `DescribeUpdate` over the newest updates; None when there is none.
pub(crate) async fn in_flight_version_update(
    ctx: &StepContext,
    cluster: &str,
    nodegroup: Option<&str>,
) -> Result<Option<(String, String)>, ProviderError> {
    let eks = &ctx.client::<super::AwsClients>()?.eks;
    let what = match nodegroup {
        Some(ng) => format!("nodegroup `{ng}` of cluster `{cluster}`"),
        None => format!("cluster `{cluster}`"),
    };
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let out = eks
            .list_updates()
            .name(cluster)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("ListUpdates of {what}"), e))?;
        ids.extend(out.update_ids().iter().cloned());
        token = out.next_token().map(str::to_string);
        if token.is_none() || ids.len() > 1000 {
            break;
        }
    }
    for id in ids.iter().rev().take(RECENT_UPDATES) {
        let out = eks
            .describe_update()
            .name(cluster)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .update_id(id)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("DescribeUpdate `{id}` of {what}"), e))?;
        let Some(u) = out.update() else { continue };
        let in_progress = u.status().map(|s| s.as_str()) == Some("InProgress");
        let version_update = u.r#type().map(|t| t.as_str()) == Some("VersionUpdate");
        if in_progress && version_update {
            let version = u
                .params()
                .iter()
                .find(|p| p.r#type().map(|t| t.as_str()) == Some("Version"))
                .and_then(|p| p.value())
                .unwrap_or_default()
                .to_string();
            return Ok(Some((id.clone(), version)));
        }
    }
    Ok(None)
}

/// A nodegroup as the steps and data sources show it.
fn nodegroup_json(cluster: &str, nodegroup: &str, ng: &aws_sdk_eks::types::Nodegroup) -> Json {
    let sc = ng.scaling_config();
    json!({
        "cluster": cluster,
        "nodegroup": nodegroup,
        "arn": ng.nodegroup_arn(),
        "status": ng.status().map(|s| s.as_str().to_string()),
        "version": ng.version(),
        "release_version": ng.release_version(),
        "instance_types": ng.instance_types(),
        "labels": ng.labels(),
        "taints": ng.taints().iter().map(|t| json!({
            "key": t.key(),
            "value": t.value(),
            "effect": t.effect().map(|e| e.as_str()),
        })).collect::<Vec<_>>(),
        "scaling_config": {
            "desired_size": sc.and_then(|s| s.desired_size()),
            "min_size": sc.and_then(|s| s.min_size()),
            "max_size": sc.and_then(|s| s.max_size()),
        },
    })
}

async fn describe(
    ctx: &StepContext,
    cluster: &str,
    nodegroup: &str,
) -> Result<Option<Json>, ProviderError> {
    let aws = ctx.client::<super::AwsClients>()?;
    match aws
        .eks
        .describe_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(nodegroup)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .nodegroup()
            .map(|ng| nodegroup_json(cluster, nodegroup, ng))),
        Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(err) => Err(sdk_error(
            &format!("DescribeNodegroup `{nodegroup}` in cluster `{cluster}`"),
            err,
        )),
    }
}

/// The nodegroup's description for a waiter's poll: throttling and transient errors are
/// [`PollError::Transient`]; a nodegroup that is gone is fatal.
async fn describe_polled(
    ctx: &StepContext,
    cluster: &str,
    nodegroup: &str,
) -> Result<Json, PollError> {
    let aws = ctx.client::<super::AwsClients>()?;
    let out = aws
        .eks
        .describe_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(nodegroup)
        .send()
        .await
        .map_err(|e| {
            transient_or_fatal(
                &format!("DescribeNodegroup `{nodegroup}` in cluster `{cluster}`"),
                e,
            )
        })?;
    out.nodegroup()
        .map(|ng| nodegroup_json(cluster, nodegroup, ng))
        .ok_or_else(|| {
            PollError::Fatal(ProviderError::new(format!(
                "DescribeNodegroup `{nodegroup}` in cluster `{cluster}` answered no nodegroup"
            )))
        })
}

/// One poll of EKS update `id` of a cluster (or of one of its nodegroups)
/// (`aws eks describe-update`): `Done` with the update's JSON when `Successful`, `Failed`
/// with its `errors` when `Failed` or `Cancelled`, else `Pending` with its status.
pub(crate) async fn update_poll(
    ctx: &StepContext,
    cluster: &str,
    nodegroup: Option<&str>,
    id: &str,
) -> Result<Poll<Json>, PollError> {
    let aws = ctx.client::<super::AwsClients>()?;
    let out = aws
        .eks
        .describe_update()
        .name(cluster)
        .set_nodegroup_name(nodegroup.map(str::to_string))
        .update_id(id)
        .send()
        .await
        .map_err(|e| {
            transient_or_fatal(&format!("DescribeUpdate `{id}` of cluster `{cluster}`"), e)
        })?;
    let Some(u) = out.update() else {
        return Ok(Poll::Pending("unknown".into()));
    };
    let status = u.status().map(|s| s.as_str()).unwrap_or("unknown");
    Ok(match status {
        "Successful" => Poll::Done(update_json(u)),
        "Failed" | "Cancelled" => {
            Poll::Failed(format!("update `{id}` {status}: {}", update_errors(u)))
        }
        other => Poll::Pending(other.to_string()),
    })
}

/// An EKS update as JSON: `id`, `status`, `type`, `params` ({type: value}), `errors`.
pub(crate) fn update_json(u: &aws_sdk_eks::types::Update) -> Json {
    let params: serde_json::Map<String, Json> = u
        .params()
        .iter()
        .filter_map(|p| {
            Some((
                p.r#type()?.as_str().to_string(),
                Json::from(p.value().unwrap_or_default()),
            ))
        })
        .collect();
    json!({
        "id": u.id(),
        "status": u.status().map(|s| s.as_str()),
        "type": u.r#type().map(|t| t.as_str()),
        "params": params,
        "errors": update_errors(u),
    })
}

/// An update's `errors` as one line: `CODE: message (resources)`, `; `-separated.
pub(crate) fn update_errors(u: &aws_sdk_eks::types::Update) -> String {
    let errs: Vec<String> = u
        .errors()
        .iter()
        .map(|e| {
            let mut s = format!(
                "{}: {}",
                e.error_code().map(|c| c.as_str()).unwrap_or("Unknown"),
                e.error_message().unwrap_or_default()
            );
            if !e.resource_ids().is_empty() {
                s.push_str(&format!(" ({})", e.resource_ids().join(", ")));
            }
            s
        })
        .collect();
    if errs.is_empty() {
        "no errors reported".into()
    } else {
        errs.join("; ")
    }
}

fn size_of(state: &Json, field: &str) -> Option<i64> {
    state
        .get("scaling_config")
        .and_then(|s| s.get(field))
        .and_then(Json::as_i64)
}

/// The target of a step on the nodegroup its inputs name (`cluster`, `nodegroup`):
/// `aws/<region>/eks/<cluster>/nodegroup/<nodegroup>`, one for every nodegroup step type, so
/// that they share its state and the unordered-writer check.
pub(super) fn nodegroup_target(env: &TargetEnv, inputs: &Inputs) -> String {
    format!(
        "aws/{}/eks/{}/nodegroup/{}",
        region_of(&env.provider_args),
        arg_str(inputs, "cluster").unwrap_or(UNKNOWN),
        arg_str(inputs, "nodegroup").unwrap_or(UNKNOWN)
    )
}

/// The scaling config after applying the inputs to `state`.
fn merged(inputs: &Inputs, state: &Json) -> [Option<i64>; 3] {
    SIZES.map(|f| arg_i64(inputs, f).or_else(|| size_of(state, f)))
}

#[async_trait]
impl StepType for NodegroupScaling {
    fn name(&self) -> &'static str {
        "eks_nodegroup_scaling"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        nodegroup_target(env, inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default();
        describe(ctx, cluster, nodegroup).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        if SIZES
            .iter()
            .chain(META.iter())
            .all(|f| !inputs.contains_key(*f))
        {
            return Err("set at least one of `desired_size`, `min_size`, `max_size`, `labels`, `remove_labels`, `taints`, `remove_taints`".into());
        }
        let state = match current {
            Current::Known(s) => s,
            Current::Absent => {
                return Err(format!(
                    "nodegroup `{}` not found in cluster `{}`",
                    arg_str(inputs, "nodegroup").unwrap_or_default(),
                    arg_str(inputs, "cluster").unwrap_or_default()
                ))
            }
            Current::NotRead => {
                // Target unknown at plan time: every managed field changes to its input.
                let fields = SIZES
                    .iter()
                    .filter_map(|f| {
                        inputs.get(*f).map(|v| FieldChange {
                            path: format!("scaling_config.{f}"),
                            before: Some(Json::String(UNKNOWN.into())),
                            after: Some(v.clone()),
                        })
                    })
                    .collect();
                return Ok(Change {
                    action: Action::Update,
                    fields,
                    summary: Vec::new(),
                });
            }
        };
        let [desired, min, max] = merged(inputs, state);
        if let (Some(d), Some(lo), Some(hi)) = (desired, min, max) {
            if lo > hi {
                return Err(format!("`min_size` {lo} is greater than `max_size` {hi}"));
            }
            if d < lo || d > hi {
                return Err(format!(
                    "`desired_size` {d} is outside [`min_size` {lo}, `max_size` {hi}]"
                ));
            }
        }
        let mut fields = Vec::new();
        let mut changed = false;
        for (f, after) in SIZES.iter().zip([desired, min, max]) {
            let before = size_of(state, f);
            if inputs.contains_key(*f) || before != after {
                changed |= before != after;
                fields.push(FieldChange {
                    path: format!("scaling_config.{f}"),
                    before: before.map(Json::from),
                    after: after.map(Json::from),
                });
            }
        }
        let (meta_fields, meta_changed, _, _) = meta_changes(inputs, state)?;
        fields.extend(meta_fields);
        changed |= meta_changed;
        let action = if changed {
            Action::Update
        } else {
            Action::NoOp
        };
        let mut summary = Vec::new();
        if changed {
            if let (Some(b), Some(a)) = (size_of(state, "desired_size"), desired) {
                if a > b {
                    summary.push(format!("adds {} node(s)", a - b));
                } else if a < b {
                    summary.push(format!("removes {} node(s)", b - a));
                }
            }
        }
        Ok(Change {
            action,
            fields,
            summary,
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let mut next = state.clone();
        let [d, lo, hi] = merged(inputs, state);
        next["scaling_config"] = json!({ "desired_size": d, "min_size": lo, "max_size": hi });
        if let Ok((_, _, labels, taints)) = meta_changes(inputs, state) {
            next["labels"] = labels;
            next["taints"] = taints;
        }
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "cluster": inputs.get("cluster"),
            "nodegroup": inputs.get("nodegroup"),
            "update_id": UNKNOWN,
            "status": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({
            "cluster": state.get("cluster"),
            "nodegroup": state.get("nodegroup"),
            "update_id": Json::Null,
            "status": state.get("status"),
            "scaling_config": state.get("scaling_config"),
        }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default().to_string();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default().to_string();
        let state = describe(ctx, &cluster, &nodegroup).await?.ok_or_else(|| {
            ProviderError::new(format!(
                "nodegroup `{nodegroup}` not found in cluster `{cluster}`"
            ))
        })?;
        let [d, lo, hi] = merged(inputs, &state);
        let (_, _, want_labels, want_taints) =
            meta_changes(inputs, &state).map_err(ProviderError::new)?;
        let mut call = ctx
            .client::<super::AwsClients>()?
            .eks
            .update_nodegroup_config()
            .cluster_name(&cluster)
            .nodegroup_name(&nodegroup);
        if SIZES.iter().any(|f| inputs.contains_key(*f)) {
            call = call.scaling_config(
                NodegroupScalingConfig::builder()
                    .set_desired_size(d.map(|v| v as i32))
                    .set_min_size(lo.map(|v| v as i32))
                    .set_max_size(hi.map(|v| v as i32))
                    .build(),
            );
        }
        if inputs.contains_key("labels") || inputs.contains_key("remove_labels") {
            let add: std::collections::HashMap<String, String> = inputs
                .get("labels")
                .and_then(Json::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let remove: Vec<String> = inputs
                .get("remove_labels")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            call = call.labels(
                UpdateLabelsPayload::builder()
                    .set_add_or_update_labels((!add.is_empty()).then_some(add))
                    .set_remove_labels((!remove.is_empty()).then_some(remove))
                    .build(),
            );
        }
        if inputs.contains_key("taints") || inputs.contains_key("remove_taints") {
            let build = |name: &str| -> Result<Option<Vec<Taint>>, ProviderError> {
                let list = taint_inputs(inputs, name).map_err(ProviderError::new)?;
                Ok((!list.is_empty()).then(|| {
                    list.into_iter()
                        .map(|(k, v, e)| {
                            Taint::builder()
                                .key(k)
                                .set_value(v)
                                .effect(TaintEffect::from(e.as_str()))
                                .build()
                        })
                        .collect()
                }))
            };
            call = call.taints(
                UpdateTaintsPayload::builder()
                    .set_add_or_update_taints(build("taints")?)
                    .set_remove_taints(build("remove_taints")?)
                    .build(),
            );
        }
        let out = call.send().await.map_err(|e| {
            sdk_error(
                &format!("UpdateNodegroupConfig `{nodegroup}` in cluster `{cluster}`"),
                e,
            )
        })?;
        let update_id = out.update().and_then(|u| u.id()).map(str::to_string);
        // Wait until the nodegroup is ACTIVE again with the new sizes (and the update, when
        // EKS answered one, Successful).
        let want = [d, lo, hi];
        let observed = Waiter::new(
            ctx,
            format!("nodegroup `{nodegroup}` of cluster `{cluster}`"),
        )
        .wait(ctx, || async {
            if let Some(id) = &update_id {
                match update_poll(ctx, &cluster, Some(&nodegroup), id).await? {
                    Poll::Done(_) => {}
                    Poll::Failed(reason) => return Ok(Poll::Failed(reason)),
                    Poll::Pending(status) => return Ok(Poll::Pending(format!("update {status}"))),
                }
            }
            let s = describe_polled(ctx, &cluster, &nodegroup).await?;
            let status = s.get("status").and_then(Json::as_str).unwrap_or("unknown");
            let empty = json!({});
            let labels = s.get("labels").filter(|l| !l.is_null()).unwrap_or(&empty);
            let meta_ok = labels == &want_labels
                && same_taints(s.get("taints").unwrap_or(&Json::Null), &want_taints);
            Ok(
                if status == "ACTIVE" && SIZES.map(|f| size_of(&s, f)) == want && meta_ok {
                    Poll::Done(s)
                } else {
                    Poll::Pending(status.to_string())
                },
            )
        })
        .await?;
        Ok(json!({
            "cluster": cluster,
            "nodegroup": nodegroup,
            "update_id": update_id,
            "status": observed.get("status"),
            "scaling_config": observed.get("scaling_config"),
            "labels": observed.get("labels"),
            "taints": observed.get("taints"),
        }))
    }
}

/// `data "eks_nodegroup"`: the live description of a managed nodegroup.
pub struct NodegroupData;

#[async_trait]
impl DataSourceType for NodegroupData {
    fn name(&self) -> &'static str {
        "eks_nodegroup"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        DATA_ARGS
    }
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default();
        describe(ctx, cluster, nodegroup).await?.ok_or_else(|| {
            ProviderError::new(format!(
                "nodegroup `{nodegroup}` not found in cluster `{cluster}`"
            ))
        })
    }
}

const CLUSTER_DATA_ARGS: &[ArgSpec] = &[ArgSpec {
    name: "cluster",
    ty: ArgType::String,
    required: true,
    doc: "EKS cluster name",
}];

/// `data "eks_cluster"`: the live description of an EKS cluster (`aws eks describe-cluster`):
/// `name`, `arn`, `status`, `version`, `platform_version`, `endpoint`, `role_arn`, `tags`.
pub struct ClusterData;

#[async_trait]
impl DataSourceType for ClusterData {
    fn name(&self) -> &'static str {
        "eks_cluster"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        CLUSTER_DATA_ARGS
    }
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        describe_cluster(ctx, cluster)
            .await?
            .ok_or_else(|| ProviderError::new(format!("cluster `{cluster}` not found")))
    }
}

/// `data "eks_nodegroups"`: every managed nodegroup of a cluster (`aws eks list-nodegroups`,
/// then `describe-nodegroup` each): `cluster`, `names` (sorted) and `items` (one
/// `eks_nodegroup` description each, in name order), for `for_each = { for ng in
/// data.eks_nodegroups.all.items : ng.nodegroup => ng }`.
pub struct NodegroupsData;

#[async_trait]
impl DataSourceType for NodegroupsData {
    fn name(&self) -> &'static str {
        "eks_nodegroups"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        CLUSTER_DATA_ARGS
    }
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let eks = &ctx.client::<super::AwsClients>()?.eks;
        let mut names: Vec<String> = Vec::new();
        let mut token = None;
        loop {
            let out = match eks
                .list_nodegroups()
                .cluster_name(cluster)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    return Err(ProviderError::new(format!("cluster `{cluster}` not found")))
                }
                Err(e) => {
                    return Err(sdk_error(
                        &format!("ListNodegroups of cluster `{cluster}`"),
                        e,
                    ))
                }
            };
            names.extend(out.nodegroups().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        let mut items = Vec::new();
        for name in &names {
            // A nodegroup deleted between the list and the describe is left out.
            if let Some(ng) = describe(ctx, cluster, name).await? {
                items.push(ng);
            }
        }
        Ok(json!({ "cluster": cluster, "names": names, "items": items }))
    }
}
