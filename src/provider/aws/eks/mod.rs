//! EKS: the `eks_nodegroup_scaling` step (desired/min/max of a managed nodegroup, as
//! `aws eks update-nodegroup-config --scaling-config`) and the `eks_nodegroup` data source
//! (`aws eks describe-nodegroup`).

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_eks::types::NodegroupScalingConfig;
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
];

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
        format!(
            "aws/{}/eks/{}/nodegroup/{}",
            region_of(&env.provider_args),
            arg_str(inputs, "cluster").unwrap_or(UNKNOWN),
            arg_str(inputs, "nodegroup").unwrap_or(UNKNOWN)
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
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default();
        describe(ctx, cluster, nodegroup).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        if SIZES.iter().all(|f| !inputs.contains_key(*f)) {
            return Err("set at least one of `desired_size`, `min_size`, `max_size`".into());
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
        let config = NodegroupScalingConfig::builder()
            .set_desired_size(d.map(|v| v as i32))
            .set_min_size(lo.map(|v| v as i32))
            .set_max_size(hi.map(|v| v as i32))
            .build();
        let out = ctx
            .client::<super::AwsClients>()?
            .eks
            .update_nodegroup_config()
            .cluster_name(&cluster)
            .nodegroup_name(&nodegroup)
            .scaling_config(config)
            .send()
            .await
            .map_err(|e| {
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
            Ok(
                if status == "ACTIVE" && SIZES.map(|f| size_of(&s, f)) == want {
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
