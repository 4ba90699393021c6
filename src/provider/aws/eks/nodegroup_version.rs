//! `eks_nodegroup_version`: rolls a managed nodegroup to a Kubernetes version and AMI
//! release, as `aws eks update-nodegroup-version --cluster-name C --nodegroup-name N
//! [--kubernetes-version V] [--release-version R] [--force]` followed by
//! `aws eks wait nodegroup-active` (EKS API `UpdateNodegroupVersion`, `DescribeUpdate`,
//! `DescribeNodegroup`, `ListUpdates`).
//!
//! The target version: `version` when set, else the cluster's version as read at plan.
//! After an `eks_cluster_version` step in the same procedure, pass its output
//! (`version = step.eks_cluster_version.NAME.version`): it is known at plan time, so the
//! plan shows the exact target, and the reference runs this step after the control plane.
//! Without `release_version` the nodegroup gets the newest AMI release of the version, which
//! only the API knows: the plan shows it as known after apply, and a nodegroup already at the
//! version is a no-op.
//!
//! Resume safety as `eks_cluster_version`: an `InProgress` `VersionUpdate` of the nodegroup
//! is waited for, never sent twice.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{
    describe, describe_cluster, describe_polled, in_flight_version_update, minor_version,
    update_poll,
};
use crate::config::eval::UNKNOWN;
use crate::provider::aws::waiter::{Poll, Waiter};
use crate::provider::aws::{sdk_error, AwsClients};
use crate::provider::{
    arg_bool, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// `eks_nodegroup_version`: the Kubernetes version and AMI release of a managed nodegroup.
pub struct NodegroupVersion;

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
        name: "version",
        ty: ArgType::String,
        required: false,
        doc: "target Kubernetes version (default: the cluster's; after an eks_cluster_version step pass its `version` output)",
    },
    ArgSpec {
        name: "release_version",
        ty: ArgType::String,
        required: false,
        doc: "AMI release version (default: the newest for the version)",
    },
    ArgSpec {
        name: "force",
        ty: ArgType::Bool,
        required: false,
        doc: "replace nodes even when pod disruption budgets block draining (--force)",
    },
];

/// The version the step moves to: `version`, else the cluster's (read with the nodegroup).
fn target_version(inputs: &Inputs, state: &Json) -> Option<String> {
    arg_str(inputs, "version")
        .or_else(|| state.get("cluster_version").and_then(Json::as_str))
        .map(str::to_string)
}

/// Whether the nodegroup `state` already is what the inputs ask for.
fn satisfied(inputs: &Inputs, state: &Json, version: &str) -> bool {
    state.get("version").and_then(Json::as_str) == Some(version)
        && arg_str(inputs, "release_version")
            .is_none_or(|r| state.get("release_version").and_then(Json::as_str) == Some(r))
}

fn outputs(state: &Json, previous: &Json, update_id: Json) -> Json {
    json!({
        "cluster": state.get("cluster"),
        "nodegroup": state.get("nodegroup"),
        "version": state.get("version"),
        "release_version": state.get("release_version"),
        "previous_version": previous,
        "status": state.get("status"),
        "update_id": update_id,
    })
}

#[async_trait]
impl StepType for NodegroupVersion {
    fn name(&self) -> &'static str {
        "eks_nodegroup_version"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        super::nodegroup_target(env, inputs)
    }
    fn reads(&self) -> bool {
        true
    }
    /// Reads the nodegroup and its cluster's version (`cluster_version`): deeper than
    /// `eks_nodegroup_scaling`'s read of the same target.
    fn read_depth(&self) -> u8 {
        1
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default();
        let Some(mut state) = describe(ctx, cluster, nodegroup).await? else {
            return Ok(None);
        };
        if let Some(c) = describe_cluster(ctx, cluster).await? {
            state["cluster_version"] = c.get("version").cloned().unwrap_or(Json::Null);
        }
        Ok(Some(state))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default();
        let state = match current {
            Current::Known(s) => s,
            Current::Absent => {
                return Err(format!(
                    "nodegroup `{nodegroup}` not found in cluster `{cluster}`"
                ))
            }
            Current::NotRead => {
                return Ok(Change {
                    action: Action::Update,
                    fields: vec![FieldChange {
                        path: "version".into(),
                        before: Some(json!(UNKNOWN)),
                        after: Some(inputs.get("version").cloned().unwrap_or(json!(UNKNOWN))),
                    }],
                    summary: Vec::new(),
                })
            }
        };
        let before_v = state.get("version").cloned().unwrap_or(Json::Null);
        let before_r = state.get("release_version").cloned().unwrap_or(Json::Null);
        let target = target_version(inputs, state).unwrap_or_else(|| UNKNOWN.to_string());
        let release_in = inputs.get("release_version").cloned();
        let unknown = target == UNKNOWN || release_in.as_ref().is_some_and(|r| r == UNKNOWN);
        if !unknown {
            if let (Some(cur), Some(new)) = (
                before_v.as_str().and_then(minor_version),
                minor_version(&target),
            ) {
                if new < cur {
                    return Err(format!(
                        "`version` {target} is a downgrade of nodegroup `{nodegroup}` from {}: EKS cannot downgrade a nodegroup",
                        before_v.as_str().unwrap_or_default()
                    ));
                }
            } else {
                return Err(format!(
                    "cannot compare versions: nodegroup `{nodegroup}` is at {before_v}, the target is `{target}` (expected MAJOR.MINOR, e.g. \"1.30\")"
                ));
            }
            if satisfied(inputs, state, &target) {
                return Ok(Change::noop(vec![
                    FieldChange {
                        path: "version".into(),
                        before: Some(before_v.clone()),
                        after: Some(before_v),
                    },
                    FieldChange {
                        path: "release_version".into(),
                        before: Some(before_r.clone()),
                        after: Some(before_r),
                    },
                ]));
            }
        }
        let after_r = release_in.unwrap_or_else(|| json!(UNKNOWN));
        let release = match arg_str(inputs, "release_version") {
            Some(r) => format!(" release {r}"),
            None => String::new(),
        };
        let mut summary = vec![format!(
            "rolls nodegroup `{nodegroup}` of cluster `{cluster}` to {target}{release} (UpdateNodegroupVersion): every node is replaced and its pods evicted"
        )];
        if arg_bool(inputs, "force") == Some(true) {
            summary.push(
                "force: nodes are replaced even when a pod disruption budget blocks the drain"
                    .into(),
            );
        }
        Ok(Change {
            action: Action::Update,
            fields: vec![
                FieldChange {
                    path: "version".into(),
                    before: Some(before_v),
                    after: Some(json!(target)),
                },
                FieldChange {
                    path: "release_version".into(),
                    before: Some(before_r),
                    after: Some(after_r),
                },
            ],
            summary,
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let target = target_version(inputs, state)?;
        let mut next = state.clone();
        if !satisfied(inputs, state, &target) {
            next["release_version"] = inputs
                .get("release_version")
                .cloned()
                .unwrap_or_else(|| json!(UNKNOWN));
        }
        next["version"] = json!(target);
        next["status"] = json!("ACTIVE");
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "cluster": inputs.get("cluster"),
            "nodegroup": inputs.get("nodegroup"),
            "version": inputs.get("version").cloned().unwrap_or(json!(UNKNOWN)),
            "release_version": inputs.get("release_version").cloned().unwrap_or(json!(UNKNOWN)),
            "previous_version": UNKNOWN,
            "status": UNKNOWN,
            "update_id": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        let version = state.get("version").cloned().unwrap_or(Json::Null);
        Some(outputs(state, &version, Json::Null))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default().to_string();
        let nodegroup = arg_str(inputs, "nodegroup").unwrap_or_default().to_string();
        let state = self.read(ctx, inputs).await?.ok_or_else(|| {
            ProviderError::new(format!(
                "nodegroup `{nodegroup}` not found in cluster `{cluster}`"
            ))
        })?;
        let target = target_version(inputs, &state).ok_or_else(|| {
            ProviderError::new(format!("cannot tell the version of cluster `{cluster}`"))
        })?;
        let release = arg_str(inputs, "release_version").map(str::to_string);
        let previous = state.get("version").cloned().unwrap_or(Json::Null);
        let waiter = Waiter::new(
            ctx,
            format!("the roll of nodegroup `{nodegroup}` of cluster `{cluster}` to {target}"),
        );
        let id = match in_flight_version_update(ctx, &cluster, Some(&nodegroup)).await? {
            Some((id, version)) if version == target => id,
            Some((id, version)) => {
                return Err(ProviderError::new(format!(
                    "nodegroup `{nodegroup}` has version update `{id}` to {version} in progress; wait for it before rolling to {target}"
                )))
            }
            None => {
                if satisfied(inputs, &state, &target)
                    && state.get("status").and_then(Json::as_str) == Some("ACTIVE")
                {
                    return Ok(outputs(&state, &previous, Json::Null));
                }
                let out = ctx
                    .client::<AwsClients>()?
                    .eks
                    .update_nodegroup_version()
                    .cluster_name(&cluster)
                    .nodegroup_name(&nodegroup)
                    .version(&target)
                    .set_release_version(release.clone())
                    .set_force(arg_bool(inputs, "force"))
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_error(
                            &format!(
                                "UpdateNodegroupVersion `{nodegroup}` in cluster `{cluster}` to {target}"
                            ),
                            e,
                        )
                    })?;
                out.update()
                    .and_then(|u| u.id())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ProviderError::new(format!(
                            "UpdateNodegroupVersion `{nodegroup}` answered no update id"
                        ))
                    })?
            }
        };
        let observed = waiter
            .wait(ctx, || async {
                let ng = describe_polled(ctx, &cluster, &nodegroup).await?;
                let status = ng
                    .get("status")
                    .and_then(Json::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                Ok(
                    match update_poll(ctx, &cluster, Some(&nodegroup), &id).await? {
                        Poll::Failed(reason) => Poll::Failed(reason),
                        Poll::Pending(u) => Poll::Pending(format!("{status} (update {id} {u})")),
                        Poll::Done(_)
                            if status == "ACTIVE"
                                && ng.get("version").and_then(Json::as_str)
                                    == Some(target.as_str()) =>
                        {
                            Poll::Done(ng)
                        }
                        Poll::Done(_) => {
                            Poll::Pending(format!("{status} (update {id} Successful)"))
                        }
                    },
                )
            })
            .await?;
        Ok(outputs(&observed, &previous, json!(id)))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let Some(state) = self.read(ctx, inputs).await? else {
            return Ok(InDoubt::NotDone);
        };
        let done = target_version(inputs, &state).is_some_and(|t| satisfied(inputs, &state, &t))
            && state.get("status").and_then(Json::as_str) == Some("ACTIVE");
        // Not done: apply again, which waits for an update in flight instead of sending one.
        Ok(if done {
            InDoubt::Done
        } else {
            InDoubt::NotDone
        })
    }
}
