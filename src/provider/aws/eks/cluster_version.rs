//! `eks_cluster_version`: upgrades an EKS control plane one minor version, as
//! `aws eks update-cluster-version --name N --kubernetes-version V` followed by
//! `aws eks wait cluster-active` (EKS API `UpdateClusterVersion`, `DescribeUpdate`,
//! `DescribeCluster`, `ListUpdates`).
//!
//! Resume safety: the update id is not known before the call, so instead of journaling it
//! beforehand the step finds it afterwards: apply (and a resumed apply) first looks for an
//! `InProgress` `VersionUpdate` of the cluster (`ListUpdates` + `DescribeUpdate`) and waits
//! for that one; it sends `UpdateClusterVersion` only when there is none and the cluster is
//! not yet at the version. `in_doubt` answers Done when the cluster is `ACTIVE` at the
//! version, else NotDone (apply again, which adopts the update in flight). So an interrupted
//! run never sends a second `UpdateClusterVersion`.

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;
use serde_json::{json, Value as Json};

use super::{
    cluster_polled, describe_cluster, in_flight_version_update, minor_version, update_poll,
};
use crate::config::eval::UNKNOWN;
use crate::provider::aws::waiter::{Poll, Waiter};
use crate::provider::aws::{region_of, sdk_error, AwsClients};
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// `eks_cluster_version`: the Kubernetes version of an EKS control plane.
pub struct ClusterVersion;

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "cluster",
        ty: ArgType::String,
        required: true,
        doc: "EKS cluster name",
    },
    ArgSpec {
        name: "version",
        ty: ArgType::String,
        required: true,
        doc: "target Kubernetes version, quoted (\"1.30\"): at most one minor version above the cluster's",
    },
];

/// Checks that `target` is the cluster's version or the next minor one, as EKS does.
/// Ok(false): already at the version; Ok(true): an upgrade; Err: refused, naming both.
pub(super) fn check_upgrade(cluster: &str, current: &str, target: &str) -> Result<bool, String> {
    let (Some(cur), Some(new)) = (minor_version(current), minor_version(target)) else {
        return Err(format!(
            "cannot compare versions: cluster `{cluster}` is at `{current}`, `version` is `{target}` (expected MAJOR.MINOR, e.g. \"1.30\")"
        ));
    };
    if new == cur {
        return Ok(false);
    }
    if new < cur {
        return Err(format!(
            "`version` {target} is a downgrade of cluster `{cluster}` from {current}: EKS cannot downgrade a control plane"
        ));
    }
    if new.0 != cur.0 || new.1 != cur.1 + 1 {
        return Err(format!(
            "`version` {target} is more than one minor version above cluster `{cluster}`'s {current}: EKS upgrades one minor version at a time ({current} -> {}.{} first)",
            cur.0,
            cur.1 + 1
        ));
    }
    Ok(true)
}

fn outputs(cluster: &str, state: &Json, previous: &Json, update_id: Json) -> Json {
    json!({
        "cluster": cluster,
        "version": state.get("version"),
        "previous_version": previous,
        "platform_version": state.get("platform_version"),
        "status": state.get("status"),
        "update_id": update_id,
    })
}

#[async_trait]
impl StepType for ClusterVersion {
    fn name(&self) -> &'static str {
        "eks_cluster_version"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "aws/{}/eks/{}",
            region_of(&env.provider_args),
            arg_str(inputs, "cluster").unwrap_or(UNKNOWN)
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
        describe_cluster(ctx, arg_str(inputs, "cluster").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let target = inputs.get("version").cloned().unwrap_or(Json::Null);
        let state = match current {
            Current::Known(s) => s,
            Current::Absent => return Err(format!("cluster `{cluster}` not found")),
            Current::NotRead => {
                return Ok(Change {
                    action: Action::Update,
                    fields: vec![FieldChange {
                        path: "version".into(),
                        before: Some(Json::String(UNKNOWN.into())),
                        after: Some(target),
                    }],
                    summary: Vec::new(),
                })
            }
        };
        let before = state.get("version").cloned().unwrap_or(Json::Null);
        let field = |after: Json| FieldChange {
            path: "version".into(),
            before: Some(before.clone()),
            after: Some(after),
        };
        let (Some(cur), Some(want)) = (before.as_str(), target.as_str()) else {
            return Ok(Change {
                action: Action::Update,
                fields: vec![field(target.clone())],
                summary: Vec::new(),
            });
        };
        if want == UNKNOWN {
            return Ok(Change {
                action: Action::Update,
                fields: vec![field(target.clone())],
                summary: Vec::new(),
            });
        }
        if !check_upgrade(cluster, cur, want)? {
            return Ok(Change::noop(vec![field(target.clone())]));
        }
        Ok(Change {
            action: Action::Update,
            fields: vec![field(target.clone())],
            summary: vec![format!(
                "upgrades the control plane of `{cluster}` from {cur} to {want} (UpdateClusterVersion), then waits until it is ACTIVE; nodegroups stay at their version until upgraded"
            )],
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let mut next = state.clone();
        next["version"] = inputs.get("version").cloned().unwrap_or(Json::Null);
        next["status"] = json!("ACTIVE");
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "cluster": inputs.get("cluster"),
            "version": inputs.get("version"),
            "previous_version": UNKNOWN,
            "platform_version": UNKNOWN,
            "status": UNKNOWN,
            "update_id": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, inputs: &Inputs, state: &Json) -> Option<Json> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let version = state.get("version").cloned().unwrap_or(Json::Null);
        Some(outputs(cluster, state, &version, Json::Null))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default().to_string();
        let target = arg_str(inputs, "version").unwrap_or_default().to_string();
        let waiter = Waiter::new(
            ctx,
            format!("the upgrade of cluster `{cluster}` to {target}"),
        );
        let state = describe_cluster(ctx, &cluster)
            .await?
            .ok_or_else(|| ProviderError::new(format!("cluster `{cluster}` not found")))?;
        let previous = state.get("version").cloned().unwrap_or(Json::Null);

        // An update already in flight (a resumed run, or someone else's): wait for it when it
        // goes to our version, refuse otherwise; never send a second one.
        let id = match in_flight_version_update(ctx, &cluster, None).await? {
            Some((id, version)) if version == target => id,
            Some((id, version)) => {
                return Err(ProviderError::new(format!(
                    "cluster `{cluster}` has version update `{id}` to {version} in progress; wait for it before upgrading to {target}"
                )))
            }
            None => {
                let current = previous.as_str().unwrap_or_default();
                if !check_upgrade(&cluster, current, &target).map_err(ProviderError::new)?
                    && state.get("status").and_then(Json::as_str) == Some("ACTIVE")
                {
                    return Ok(outputs(&cluster, &state, &previous, Json::Null));
                }
                let out = ctx
                    .client::<AwsClients>()?
                    .eks
                    .update_cluster_version()
                    .name(&cluster)
                    .version(&target)
                    .send()
                    .await
                    .map_err(|e| {
                        let code = e.code().unwrap_or_default().to_string();
                        let mut err =
                            sdk_error(&format!("UpdateClusterVersion `{cluster}` to {target}"), e);
                        if code == "ResourceInUseException" {
                            err.message.push_str(" (an update is in progress: run again to wait for it)");
                        }
                        err
                    })?;
                out.update()
                    .and_then(|u| u.id())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ProviderError::new(format!(
                            "UpdateClusterVersion `{cluster}` answered no update id"
                        ))
                    })?
            }
        };
        let observed = waiter
            .wait(ctx, || async {
                let cl = cluster_polled(ctx, &cluster).await?;
                let status = cl
                    .get("status")
                    .and_then(Json::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                Ok(match update_poll(ctx, &cluster, None, &id).await? {
                    Poll::Failed(reason) => Poll::Failed(reason),
                    Poll::Pending(u) => Poll::Pending(format!("{status} (update {id} {u})")),
                    Poll::Done(_)
                        if status == "ACTIVE"
                            && cl.get("version").and_then(Json::as_str)
                                == Some(target.as_str()) =>
                    {
                        Poll::Done(cl)
                    }
                    Poll::Done(_) => Poll::Pending(format!("{status} (update {id} Successful)")),
                })
            })
            .await?;
        Ok(outputs(&cluster, &observed, &previous, json!(id)))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let cluster = arg_str(inputs, "cluster").unwrap_or_default();
        let target = arg_str(inputs, "version").unwrap_or_default();
        let Some(state) = describe_cluster(ctx, cluster).await? else {
            return Ok(InDoubt::NotDone);
        };
        let done = state.get("version").and_then(Json::as_str) == Some(target)
            && state.get("status").and_then(Json::as_str) == Some("ACTIVE");
        // Not done: apply again, which waits for an update in flight instead of sending one.
        Ok(if done {
            InDoubt::Done
        } else {
            InDoubt::NotDone
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_upgrade;

    #[test]
    fn one_minor_version_up_is_an_upgrade_and_anything_else_is_refused() {
        assert_eq!(check_upgrade("c", "1.29", "1.30"), Ok(true));
        assert_eq!(check_upgrade("c", "1.29", "1.29"), Ok(false));
        let jump = check_upgrade("c", "1.29", "1.31").unwrap_err();
        assert!(
            jump.contains("1.31") && jump.contains("1.29") && jump.contains("1.30 first"),
            "{jump}"
        );
        let down = check_upgrade("c", "1.29", "1.28").unwrap_err();
        assert!(
            down.contains("downgrade") && down.contains("1.28") && down.contains("1.29"),
            "{down}"
        );
        assert!(check_upgrade("c", "1.29", "2.0").is_err());
        assert!(check_upgrade("c", "1.29", "latest").is_err());
    }
}
