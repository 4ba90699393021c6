//! RDS operations without a desired state of their own: `rds_reboot` (RebootDBInstance, then
//! wait until `available`), `rds_snapshot_export` (StartExportTask of a snapshot to S3 with a
//! KMS key and an IAM role, then DescribeExportTasks until `COMPLETE`), and the data source
//! `rds_snapshots` (DescribeDBSnapshots, newest first).

use async_trait::async_trait;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::ExportTask;
use serde_json::{json, Value as Json};

use super::rds_instance::{
    describe_instance, instance_outputs, instance_target, is_available, time_json, wait_instance,
};
use super::waiter::{Poll, Waiter};
use super::{region_of, sdk_error, AwsClients};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_str, Action, ArgSpec, ArgType, Change, Current, DataSourceType, FieldChange,
    InDoubt, Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

/// `rds_reboot`: reboots a DB instance (`aws rds reboot-db-instance [--force-failover]`).
pub struct Reboot;

const REBOOT_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "DB instance identifier",
    },
    ArgSpec {
        name: "force_failover",
        ty: ArgType::Bool,
        required: false,
        doc: "reboot through a failover to the standby (Multi-AZ instances only)",
    },
];

#[async_trait]
impl StepType for Reboot {
    fn name(&self) -> &'static str {
        "rds_reboot"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        REBOOT_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        instance_target(env, arg_str(inputs, "identifier"))
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        describe_instance(ctx, arg_str(inputs, "identifier").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let Current::Known(state) = current else {
            return Err(format!("DB instance `{id}` not found"));
        };
        let failover = arg_bool(inputs, "force_failover").unwrap_or(false);
        if failover && state.get("multi_az").and_then(Json::as_bool) == Some(false) {
            return Err(format!(
                "InvalidParameterCombination: force_failover needs a Multi-AZ instance; `{id}` is single-AZ"
            ));
        }
        let mut summary = vec![if failover {
            format!("reboots DB instance `{id}` with a failover to its standby (brief outage while DNS moves)")
        } else {
            format!("reboots DB instance `{id}` (outage until it is `available` again)")
        }];
        if state.get("parameter_apply_status").and_then(Json::as_str) == Some("pending-reboot") {
            summary.push("applies the parameter group changes pending a reboot".into());
        }
        Ok(Change {
            action: Action::Run,
            fields: vec![FieldChange {
                path: "force_failover".into(),
                before: None,
                after: Some(Json::from(failover)),
            }],
            summary,
        })
    }
    fn predict(&self, _inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(s) = current else {
            return None;
        };
        let mut s = s.clone();
        s["status"] = json!("available");
        if s.get("parameter_apply_status").and_then(Json::as_str) == Some("pending-reboot") {
            s["parameter_apply_status"] = json!("in-sync");
        }
        Some(s)
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier")
            .unwrap_or_default()
            .to_string();
        let failover = arg_bool(inputs, "force_failover");
        ctx.client::<AwsClients>()?
            .rds
            .reboot_db_instance()
            .db_instance_identifier(&id)
            .set_force_failover(failover)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("RebootDBInstance `{id}`"), e))?;
        let state =
            wait_instance(ctx, &id, "to be available after the reboot", is_available).await?;
        Ok(instance_outputs(&state))
    }
    /// A reboot leaves no trace once it is over: `rebooting` means the interrupted attempt
    /// rebooted it (done); any other status cannot tell, so resume asks rather than reboot
    /// again.
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        Ok(match describe_instance(ctx, id).await? {
            Some(s) if s.get("status").and_then(Json::as_str) == Some("rebooting") => InDoubt::Done,
            _ => InDoubt::CannotTell,
        })
    }
}

/// `rds_snapshot_export`: exports a DB snapshot to S3 (`aws rds start-export-task`).
pub struct SnapshotExport;

const EXPORT_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "export task identifier",
    },
    ArgSpec {
        name: "snapshot",
        ty: ArgType::String,
        required: true,
        doc: "DB snapshot identifier or ARN",
    },
    ArgSpec {
        name: "s3_bucket",
        ty: ArgType::String,
        required: true,
        doc: "S3 bucket the export is written to",
    },
    ArgSpec {
        name: "s3_prefix",
        ty: ArgType::String,
        required: false,
        doc: "key prefix in the bucket",
    },
    ArgSpec {
        name: "iam_role_arn",
        ty: ArgType::String,
        required: true,
        doc: "IAM role RDS assumes to write to the bucket",
    },
    ArgSpec {
        name: "kms_key_id",
        ty: ArgType::String,
        required: true,
        doc: "KMS key (ARN, id or alias) that encrypts the exported data",
    },
    ArgSpec {
        name: "export_only",
        ty: ArgType::ListOfString,
        required: false,
        doc: "databases, schemas or tables to export (default: all)",
    },
];

fn export_json(t: &ExportTask) -> Json {
    json!({
        "identifier": t.export_task_identifier(),
        "source_arn": t.source_arn(),
        "status": t.status().map(str::to_ascii_uppercase),
        "s3_bucket": t.s3_bucket(),
        "s3_prefix": t.s3_prefix(),
        "iam_role_arn": t.iam_role_arn(),
        "kms_key_id": t.kms_key_id(),
        "percent_progress": t.percent_progress(),
        "failure_cause": t.failure_cause(),
        "task_end_time": time_json(t.task_end_time()),
    })
}

async fn describe_export(ctx: &StepContext, id: &str) -> Result<Option<Json>, ProviderError> {
    match ctx
        .client::<AwsClients>()?
        .rds
        .describe_export_tasks()
        .export_task_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.export_tasks().first().map(export_json)),
        Err(e)
            if matches!(
                e.code(),
                Some("ExportTaskNotFound") | Some("ExportTaskNotFoundFault")
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(&format!("DescribeExportTasks `{id}`"), e)),
    }
}

/// Whether an export task's source ARN is snapshot `snapshot` (an id or an ARN).
fn same_snapshot(source_arn: &str, snapshot: &str) -> bool {
    source_arn == snapshot || source_arn.ends_with(&format!(":snapshot:{snapshot}"))
}

#[async_trait]
impl StepType for SnapshotExport {
    fn name(&self) -> &'static str {
        "rds_snapshot_export"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        EXPORT_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "aws/{}/rds/export/{}",
            region_of(&env.provider_args),
            arg_str(inputs, "identifier").unwrap_or(UNKNOWN)
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
        describe_export(ctx, arg_str(inputs, "identifier").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let snapshot = arg_str(inputs, "snapshot").unwrap_or_default();
        let bucket = arg_str(inputs, "s3_bucket").unwrap_or_default();
        let prefix = arg_str(inputs, "s3_prefix").unwrap_or_default();
        match current {
            Current::Known(state) => {
                let src = state.get("source_arn").and_then(Json::as_str).unwrap_or("");
                if !snapshot.contains(UNKNOWN) && !same_snapshot(src, snapshot) {
                    return Err(format!(
                        "export task `{id}` already exists for `{src}`, not snapshot `{snapshot}`"
                    ));
                }
                let status = state.get("status").and_then(Json::as_str).unwrap_or("");
                match status {
                    "COMPLETE" => Ok(Change::noop(vec![FieldChange {
                        path: "status".into(),
                        before: Some(Json::from(status)),
                        after: Some(Json::from(status)),
                    }])),
                    "FAILED" | "CANCELED" | "CANCELING" => Err(format!(
                        "export task `{id}` exists with status `{status}`{}: an export task identifier cannot be reused; choose another",
                        state
                            .get("failure_cause")
                            .and_then(Json::as_str)
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    )),
                    _ => Ok(Change {
                        action: Action::Update,
                        fields: vec![FieldChange {
                            path: "status".into(),
                            before: Some(Json::from(status)),
                            after: Some(Json::from("COMPLETE")),
                        }],
                        summary: vec![format!(
                            "export task `{id}` is running; waits for it (no second export is started)"
                        )],
                    }),
                }
            }
            Current::Absent | Current::NotRead => Ok(Change {
                action: Action::Create,
                fields: vec![
                    FieldChange {
                        path: "snapshot".into(),
                        before: None,
                        after: Some(Json::from(snapshot)),
                    },
                    FieldChange {
                        path: "destination".into(),
                        before: None,
                        after: Some(Json::from(format!("s3://{bucket}/{prefix}"))),
                    },
                    FieldChange {
                        path: "iam_role_arn".into(),
                        before: None,
                        after: inputs.get("iam_role_arn").cloned(),
                    },
                    FieldChange {
                        path: "kms_key_id".into(),
                        before: None,
                        after: inputs.get("kms_key_id").cloned(),
                    },
                    FieldChange {
                        path: "status".into(),
                        before: None,
                        after: Some(Json::from("COMPLETE")),
                    },
                ],
                summary: vec![format!(
                    "exports snapshot `{snapshot}` to s3://{bucket}/{prefix} (StartExportTask) and waits until the task is COMPLETE"
                )],
            }),
        }
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        Some(json!({
            "identifier": inputs.get("identifier"),
            "source_arn": UNKNOWN,
            "status": "COMPLETE",
            "s3_bucket": inputs.get("s3_bucket"),
            "s3_prefix": inputs.get("s3_prefix"),
        }))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "identifier": inputs.get("identifier"),
            "source_arn": UNKNOWN,
            "status": UNKNOWN,
            "s3_bucket": inputs.get("s3_bucket"),
            "s3_prefix": inputs.get("s3_prefix"),
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(state.clone())
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier")
            .unwrap_or_default()
            .to_string();
        let waiter = Waiter::new(ctx, format!("export task `{id}`"));
        if describe_export(ctx, &id).await?.is_none() {
            let snapshot = arg_str(inputs, "snapshot").unwrap_or_default();
            let arn = if snapshot.starts_with("arn:") {
                snapshot.to_string()
            } else {
                super::rds::describe_snapshot(ctx, snapshot)
                    .await?
                    .and_then(|s| s.get("arn").and_then(Json::as_str).map(str::to_string))
                    .ok_or_else(|| {
                        ProviderError::new(format!("DB snapshot `{snapshot}` not found"))
                    })?
            };
            let only: Option<Vec<String>> = inputs.get("export_only").and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
            });
            ctx.client::<AwsClients>()?
                .rds
                .start_export_task()
                .export_task_identifier(&id)
                .source_arn(&arn)
                .s3_bucket_name(arg_str(inputs, "s3_bucket").unwrap_or_default())
                .set_s3_prefix(arg_str(inputs, "s3_prefix").map(str::to_string))
                .iam_role_arn(arg_str(inputs, "iam_role_arn").unwrap_or_default())
                .kms_key_id(arg_str(inputs, "kms_key_id").unwrap_or_default())
                .set_export_only(only)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("StartExportTask `{id}` of `{arn}`"), e))?;
        }
        waiter
            .wait(ctx, || async {
                let t = describe_export(ctx, &id).await?;
                let Some(t) = t else {
                    return Ok(Poll::Pending("not visible yet".into()));
                };
                Ok(match t.get("status").and_then(Json::as_str).unwrap_or("") {
                    "COMPLETE" => Poll::Done(t),
                    s @ ("FAILED" | "CANCELED" | "CANCELING") => Poll::Failed(format!(
                        "status `{s}`: {}",
                        t.get("failure_cause")
                            .and_then(Json::as_str)
                            .unwrap_or("no failure cause given")
                    )),
                    s => Poll::Pending(s.to_string()),
                })
            })
            .await
    }
}

/// `data "rds_snapshots"`: DB snapshots, newest first (`aws rds describe-db-snapshots`).
pub struct SnapshotsData;

const SNAPSHOTS_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "db_instance",
        ty: ArgType::String,
        required: false,
        doc: "only the snapshots of this DB instance",
    },
    ArgSpec {
        name: "snapshot_type",
        ty: ArgType::String,
        required: false,
        doc: "`manual` or `automated` (default: both)",
    },
];

#[async_trait]
impl DataSourceType for SnapshotsData {
    fn name(&self) -> &'static str {
        "rds_snapshots"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        SNAPSHOTS_ARGS
    }
    /// `{items: [...], latest: ID|null, count: N}`: every snapshot (all pages) as
    /// `rds_snapshot` describes it, newest `snapshot_create_time` first; `latest` is the
    /// newest `available` one.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let instance = arg_str(inputs, "db_instance");
        let kind = arg_str(inputs, "snapshot_type");
        let mut pages = ctx
            .client::<AwsClients>()?
            .rds
            .describe_db_snapshots()
            .set_db_instance_identifier(instance.map(str::to_string))
            .set_snapshot_type(kind.map(str::to_string))
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                sdk_error(
                    &format!("DescribeDBSnapshots of `{}`", instance.unwrap_or("*")),
                    e,
                )
            })?;
            items.extend(page.db_snapshots().iter().map(super::rds::snapshot_json));
        }
        items.sort_by(|a, b| {
            // By instant, not by text (fractions of a second vary in length); a snapshot
            // still being created (no time yet) counts as the newest.
            let t = |v: &Json| {
                v.get("snapshot_create_time")
                    .and_then(Json::as_str)
                    .map(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            };
            let key = |v: &Json| match t(v) {
                None => (1, None),
                Some(at) => (0, at),
            };
            key(b).cmp(&key(a)).then_with(|| {
                let i = |v: &Json| {
                    v.get("identifier")
                        .cloned()
                        .unwrap_or(Json::Null)
                        .to_string()
                };
                i(a).cmp(&i(b))
            })
        });
        let latest = items
            .iter()
            .find(|s| s.get("status").and_then(Json::as_str) == Some("available"))
            .and_then(|s| s.get("identifier").cloned())
            .unwrap_or(Json::Null);
        Ok(json!({ "count": items.len(), "latest": latest, "items": items }))
    }
}
