//! RDS: the `rds_snapshot` step (`aws rds create-db-snapshot`, then wait until the snapshot is
//! `available`) and the `rds_db_instance` data source (`aws rds describe-db-instances`).

use async_trait::async_trait;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{DbSnapshot, Tag};
use serde_json::{json, Value as Json};

use super::waiter::{transient_or_fatal, Poll, Waiter};
use super::{region_of, sdk_error};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, DataSourceType, FieldChange, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// `rds_snapshot`: a manual DB snapshot of an instance.
pub struct Snapshot;

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "db_instance",
        ty: ArgType::String,
        required: true,
        doc: "DB instance identifier",
    },
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "DB snapshot identifier",
    },
    ArgSpec {
        name: "tags",
        ty: ArgType::MapOfString,
        required: false,
        doc: "tags for the snapshot",
    },
    ArgSpec {
        name: "copy_tags",
        ty: ArgType::Bool,
        required: false,
        doc: "copy the instance's tags to the snapshot (as CopyTagsToSnapshot does; `tags` win)",
    },
];

const DATA_ARGS: &[ArgSpec] = &[ArgSpec {
    name: "identifier",
    ty: ArgType::String,
    required: true,
    doc: "DB instance identifier",
}];

pub(super) fn snapshot_json(s: &DbSnapshot) -> Json {
    json!({
        "identifier": s.db_snapshot_identifier(),
        "db_instance": s.db_instance_identifier(),
        "arn": s.db_snapshot_arn(),
        "status": s.status(),
        "snapshot_type": s.snapshot_type(),
        "engine": s.engine(),
        "engine_version": s.engine_version(),
        "allocated_storage": s.allocated_storage(),
        "snapshot_create_time": s.snapshot_create_time().map(|t| t.to_string()),
    })
}

pub(super) async fn describe_snapshot(
    ctx: &StepContext,
    id: &str,
) -> Result<Option<Json>, ProviderError> {
    match ctx
        .client::<super::AwsClients>()?
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_snapshots().first().map(snapshot_json)),
        Err(err) if err.code() == Some("DBSnapshotNotFound") => Ok(None),
        Err(err) => Err(sdk_error(&format!("DescribeDBSnapshots `{id}`"), err)),
    }
}

#[async_trait]
impl StepType for Snapshot {
    fn name(&self) -> &'static str {
        "rds_snapshot"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "aws/{}/rds/snapshot/{}",
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
        describe_snapshot(ctx, arg_str(inputs, "identifier").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let instance = arg_str(inputs, "db_instance").unwrap_or_default();
        match current {
            Current::Known(state) => {
                let of = state
                    .get("db_instance")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                if of != instance && !instance.contains(UNKNOWN) {
                    return Err(format!(
                        "snapshot `{id}` already exists for DB instance `{of}`, not `{instance}`"
                    ));
                }
                let status = state.get("status").and_then(Json::as_str).unwrap_or("");
                if status == "creating" {
                    return Ok(Change {
                        action: Action::Update,
                        fields: vec![FieldChange {
                            path: "status".into(),
                            before: Some(Json::from(status)),
                            after: Some(Json::from("available")),
                        }],
                        summary: vec![format!(
                            "snapshot `{id}` is being created; waits for it (no second snapshot is sent)"
                        )],
                    });
                }
                Ok(Change::noop(vec![FieldChange {
                    path: "identifier".into(),
                    before: Some(Json::from(id)),
                    after: Some(Json::from(id)),
                }]))
            }
            Current::Absent | Current::NotRead => Ok(Change {
                action: Action::Create,
                fields: vec![
                    FieldChange {
                        path: "identifier".into(),
                        before: None,
                        after: Some(Json::from(id)),
                    },
                    FieldChange {
                        path: "db_instance".into(),
                        before: None,
                        after: Some(Json::from(instance)),
                    },
                    FieldChange {
                        path: "arn".into(),
                        before: None,
                        after: Some(Json::from(UNKNOWN)),
                    },
                    FieldChange {
                        path: "status".into(),
                        before: None,
                        after: Some(Json::from("available")),
                    },
                ],
                summary: vec![format!(
                    "creates a manual snapshot of DB instance `{instance}`"
                )],
            }),
        }
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        Some(json!({
            "identifier": inputs.get("identifier"),
            "db_instance": inputs.get("db_instance"),
            "arn": UNKNOWN,
            "status": "available",
        }))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "identifier": inputs.get("identifier"),
            "db_instance": inputs.get("db_instance"),
            "arn": UNKNOWN,
            "status": UNKNOWN,
            "snapshot_create_time": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(state.clone())
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier")
            .unwrap_or_default()
            .to_string();
        let instance = arg_str(inputs, "db_instance")
            .unwrap_or_default()
            .to_string();
        let tags: Vec<Tag> = inputs
            .get("tags")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        Tag::builder()
                            .key(k)
                            .value(v.as_str().unwrap_or_default())
                            .build()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut tags = tags;
        if crate::provider::arg_bool(inputs, "copy_tags") == Some(true) {
            let db = super::rds_instance::require_instance(ctx, &instance, "source").await?;
            if let Some(m) = db.get("tags").and_then(Json::as_object) {
                for (k, v) in m {
                    if !tags.iter().any(|t| t.key() == Some(k.as_str())) {
                        tags.push(
                            Tag::builder()
                                .key(k)
                                .value(v.as_str().unwrap_or_default())
                                .build(),
                        );
                    }
                }
            }
        }
        // An earlier attempt's snapshot (resume) is waited for, never created again.
        let exists = describe_snapshot(ctx, &id).await?.is_some();
        if !exists {
            ctx.client::<super::AwsClients>()?
                .rds
                .create_db_snapshot()
                .db_instance_identifier(&instance)
                .db_snapshot_identifier(&id)
                .set_tags(if tags.is_empty() { None } else { Some(tags) })
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        &format!("CreateDBSnapshot `{id}` of DB instance `{instance}`"),
                        e,
                    )
                })?;
        }
        let rds = &ctx.client::<super::AwsClients>()?.rds;
        Waiter::new(ctx, format!("snapshot `{id}`"))
            .wait(ctx, || async {
                let out = match rds
                    .describe_db_snapshots()
                    .db_snapshot_identifier(&id)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) if e.code() == Some("DBSnapshotNotFound") => {
                        return Ok(Poll::Pending("not visible yet".into()))
                    }
                    Err(e) => {
                        return Err(transient_or_fatal(
                            &format!("DescribeDBSnapshots `{id}`"),
                            e,
                        ))
                    }
                };
                let Some(s) = out.db_snapshots().first().map(snapshot_json) else {
                    return Ok(Poll::Pending("not visible yet".into()));
                };
                Ok(match s.get("status").and_then(Json::as_str) {
                    Some("available") => Poll::Done(s),
                    Some("failed") => Poll::Failed("status `failed`".into()),
                    other => Poll::Pending(other.unwrap_or("unknown").to_string()),
                })
            })
            .await
    }
}

/// `data "rds_db_instance"`: the live description of a DB instance.
pub struct DbInstanceData;

#[async_trait]
impl DataSourceType for DbInstanceData {
    fn name(&self) -> &'static str {
        "rds_db_instance"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        DATA_ARGS
    }
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let out = ctx
            .client::<super::AwsClients>()?
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| {
                if e.code() == Some("DBInstanceNotFound") {
                    ProviderError::new(format!("DB instance `{id}` not found"))
                } else {
                    sdk_error(&format!("DescribeDBInstances `{id}`"), e)
                }
            })?;
        let db = out
            .db_instances()
            .first()
            .ok_or_else(|| ProviderError::new(format!("DB instance `{id}` not found")))?;
        Ok(json!({
            "identifier": db.db_instance_identifier(),
            "arn": db.db_instance_arn(),
            "status": db.db_instance_status(),
            "engine": db.engine(),
            "engine_version": db.engine_version(),
            "instance_class": db.db_instance_class(),
            "allocated_storage": db.allocated_storage(),
            "multi_az": db.multi_az(),
            "endpoint_address": db.endpoint().and_then(|e| e.address()),
            "endpoint_port": db.endpoint().and_then(|e| e.port()),
        }))
    }
}
