//! Steps that create a DB instance from a source: `rds_restore_point_in_time`
//! (RestoreDBInstanceToPointInTime), `rds_restore_snapshot` (RestoreDBInstanceFromDBSnapshot)
//! and `rds_read_replica` (CreateDBInstanceReadReplica). Each waits until the new instance is
//! `available` and outputs `endpoint`, `address` and `port`.
//!
//! Where the instance came from: a restore tags it `opsctl:restored-from` =
//! `instance:SOURCE` or `snapshot:SNAPSHOT` (RDS keeps no record of a restore's source);
//! a replica is known by RDS's own `ReadReplicaSourceDBInstanceIdentifier`. A target that
//! exists from the same source plans as no-op (or, still being created, as a wait that sends
//! nothing), from another source as an error; resume and apply never send a second create
//! when the target exists.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::rds_instance::{
    describe_instance, instance_outputs, instance_target, is_available, require_instance, tags_arg,
    wait_instance,
};
use super::{sdk_error, AwsClients};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// The tag a restore puts on the instance it creates.
pub const RESTORED_FROM: &str = "opsctl:restored-from";

/// Which create-from-source operation a step performs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PointInTime,
    Snapshot,
    Replica,
}

/// `rds_restore_point_in_time`, `rds_restore_snapshot` or `rds_read_replica`.
pub struct CreateFrom(Kind);

/// `rds_restore_point_in_time`.
pub const POINT_IN_TIME: CreateFrom = CreateFrom(Kind::PointInTime);
/// `rds_restore_snapshot`.
pub const SNAPSHOT: CreateFrom = CreateFrom(Kind::Snapshot);
/// `rds_read_replica`.
pub const REPLICA: CreateFrom = CreateFrom(Kind::Replica);

const PITR_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "source",
        ty: ArgType::String,
        required: true,
        doc: "source DB instance identifier",
    },
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "identifier of the new DB instance",
    },
    ArgSpec {
        name: "restore_time",
        ty: ArgType::String,
        required: false,
        doc: "`latest` (default) or an RFC 3339 time, checked against the source's LatestRestorableTime at plan",
    },
    ArgSpec {
        name: "instance_class",
        ty: ArgType::String,
        required: false,
        doc: "DB instance class (default: the source's)",
    },
    ArgSpec {
        name: "multi_az",
        ty: ArgType::Bool,
        required: false,
        doc: "Multi-AZ deployment",
    },
    ArgSpec {
        name: "tags",
        ty: ArgType::MapOfString,
        required: false,
        doc: "tags for the new instance",
    },
];

const SNAPSHOT_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "snapshot",
        ty: ArgType::String,
        required: true,
        doc: "DB snapshot identifier or ARN (e.g. `data.rds_snapshots.x.latest`)",
    },
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "identifier of the new DB instance",
    },
    ArgSpec {
        name: "instance_class",
        ty: ArgType::String,
        required: false,
        doc: "DB instance class (default: the snapshot's instance's)",
    },
    ArgSpec {
        name: "multi_az",
        ty: ArgType::Bool,
        required: false,
        doc: "Multi-AZ deployment",
    },
    ArgSpec {
        name: "tags",
        ty: ArgType::MapOfString,
        required: false,
        doc: "tags for the new instance",
    },
];

const REPLICA_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "source",
        ty: ArgType::String,
        required: true,
        doc: "source (primary) DB instance identifier",
    },
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "identifier of the read replica",
    },
    ArgSpec {
        name: "instance_class",
        ty: ArgType::String,
        required: false,
        doc: "DB instance class (default: the source's)",
    },
    ArgSpec {
        name: "tags",
        ty: ArgType::MapOfString,
        required: false,
        doc: "tags for the replica",
    },
];

impl CreateFrom {
    /// What the new instance is made from: `instance:X`, `snapshot:Y` (the tag's value), or
    /// the source instance for a replica.
    fn origin(&self, inputs: &Inputs) -> String {
        match self.0 {
            Kind::PointInTime => {
                format!("instance:{}", arg_str(inputs, "source").unwrap_or_default())
            }
            Kind::Snapshot => format!(
                "snapshot:{}",
                arg_str(inputs, "snapshot").unwrap_or_default()
            ),
            Kind::Replica => arg_str(inputs, "source").unwrap_or_default().to_string(),
        }
    }

    /// Where an existing instance came from, as [`CreateFrom::origin`] spells it.
    fn origin_of(&self, state: &Json) -> Option<String> {
        match self.0 {
            Kind::Replica => state
                .get("read_replica_source")
                .and_then(Json::as_str)
                .map(str::to_string),
            _ => state
                .get("tags")
                .and_then(|t| t.get(RESTORED_FROM))
                .and_then(Json::as_str)
                .map(str::to_string),
        }
    }

    fn describe(&self, inputs: &Inputs) -> String {
        match self.0 {
            Kind::PointInTime => format!(
                "restores DB instance `{}` to {} (RestoreDBInstanceToPointInTime)",
                arg_str(inputs, "source").unwrap_or_default(),
                match restore_time(inputs) {
                    None => "its latest restorable time".to_string(),
                    Some(t) => t.to_string(),
                }
            ),
            Kind::Snapshot => format!(
                "restores DB snapshot `{}` into a new instance (RestoreDBInstanceFromDBSnapshot)",
                arg_str(inputs, "snapshot").unwrap_or_default()
            ),
            Kind::Replica => format!(
                "creates a read replica of DB instance `{}` (CreateDBInstanceReadReplica)",
                arg_str(inputs, "source").unwrap_or_default()
            ),
        }
    }

    /// Sends the create call (once: callers check the target does not exist).
    async fn send(&self, ctx: &StepContext, inputs: &Inputs) -> Result<(), ProviderError> {
        let rds = &ctx.client::<AwsClients>()?.rds;
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let class = arg_str(inputs, "instance_class").map(str::to_string);
        let multi_az = arg_bool(inputs, "multi_az");
        match self.0 {
            Kind::PointInTime => {
                let source = arg_str(inputs, "source").unwrap_or_default();
                let tags = tags_arg(inputs, &[(RESTORED_FROM, self.origin(inputs))]);
                let mut req = rds
                    .restore_db_instance_to_point_in_time()
                    .source_db_instance_identifier(source)
                    .target_db_instance_identifier(id)
                    .set_db_instance_class(class)
                    .set_multi_az(multi_az)
                    .set_tags(Some(tags));
                req = match restore_time(inputs) {
                    None => req.use_latest_restorable_time(true),
                    Some(t) => req.restore_time(
                        aws_smithy_types::DateTime::from_str(
                            t,
                            aws_smithy_types::date_time::Format::DateTime,
                        )
                        .map_err(|e| {
                            ProviderError::new(format!("restore_time `{t}` is not RFC 3339: {e}"))
                        })?,
                    ),
                };
                req.send().await.map_err(|e| {
                    sdk_error(
                        &format!("RestoreDBInstanceToPointInTime `{source}` -> `{id}`"),
                        e,
                    )
                })?;
            }
            Kind::Snapshot => {
                let snapshot = arg_str(inputs, "snapshot").unwrap_or_default();
                let tags = tags_arg(inputs, &[(RESTORED_FROM, self.origin(inputs))]);
                rds.restore_db_instance_from_db_snapshot()
                    .db_snapshot_identifier(snapshot)
                    .db_instance_identifier(id)
                    .set_db_instance_class(class)
                    .set_multi_az(multi_az)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_error(
                            &format!("RestoreDBInstanceFromDBSnapshot `{snapshot}` -> `{id}`"),
                            e,
                        )
                    })?;
            }
            Kind::Replica => {
                let source = arg_str(inputs, "source").unwrap_or_default();
                let tags = tags_arg(inputs, &[]);
                rds.create_db_instance_read_replica()
                    .source_db_instance_identifier(source)
                    .db_instance_identifier(id)
                    .set_db_instance_class(class)
                    .set_tags(if tags.is_empty() { None } else { Some(tags) })
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_error(
                            &format!("CreateDBInstanceReadReplica `{source}` -> `{id}`"),
                            e,
                        )
                    })?;
            }
        }
        Ok(())
    }
}

/// The `restore_time` argument: None for `latest` (or unset).
fn restore_time(inputs: &Inputs) -> Option<&str> {
    arg_str(inputs, "restore_time").filter(|t| *t != "latest")
}

/// Checks the source of a restore or replica at plan (read) time: it exists, and a point-in-time
/// restore's time is within what it can restore (not after its LatestRestorableTime).
async fn check_source(kind: Kind, ctx: &StepContext, inputs: &Inputs) -> Result<(), ProviderError> {
    match kind {
        Kind::PointInTime | Kind::Replica => {
            let source = arg_str(inputs, "source").unwrap_or_default();
            if source.contains(UNKNOWN) {
                return Ok(());
            }
            let s = require_instance(ctx, source, "source").await?;
            if kind == Kind::Replica {
                return Ok(());
            }
            let Some(t) = restore_time(inputs) else {
                return Ok(());
            };
            if t.contains(UNKNOWN) {
                return Ok(());
            }
            let want = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
                ProviderError::new(format!(
                    "restore_time `{t}` is neither `latest` nor an RFC 3339 time: {e}"
                ))
            })?;
            let latest = s.get("latest_restorable_time").and_then(Json::as_str);
            match latest.map(chrono::DateTime::parse_from_rfc3339) {
                Some(Ok(l)) if want > l => Err(ProviderError::new(format!(
                    "restore_time `{t}` is after the latest restorable time of DB instance `{source}` ({})",
                    latest.unwrap_or_default()
                ))),
                Some(Ok(_)) => Ok(()),
                _ => Err(ProviderError::new(format!(
                    "DB instance `{source}` reports no LatestRestorableTime (automated backups off?): it cannot be restored to a point in time"
                ))),
            }
        }
        Kind::Snapshot => {
            let snapshot = arg_str(inputs, "snapshot").unwrap_or_default();
            if snapshot.contains(UNKNOWN) || snapshot.starts_with("arn:") {
                return Ok(());
            }
            match super::rds::describe_snapshot(ctx, snapshot).await? {
                Some(_) => Ok(()),
                None => Err(ProviderError::new(format!(
                    "DB snapshot `{snapshot}` not found"
                ))),
            }
        }
    }
}

#[async_trait]
impl StepType for CreateFrom {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::PointInTime => "rds_restore_point_in_time",
            Kind::Snapshot => "rds_restore_snapshot",
            Kind::Replica => "rds_read_replica",
        }
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        match self.0 {
            Kind::PointInTime => PITR_ARGS,
            Kind::Snapshot => SNAPSHOT_ARGS,
            Kind::Replica => REPLICA_ARGS,
        }
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        instance_target(env, arg_str(inputs, "identifier"))
    }
    fn reads(&self) -> bool {
        true
    }
    /// The new instance's state; when it does not exist yet, checks the source first (a
    /// missing source or a restore time past LatestRestorableTime fails the plan).
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        match describe_instance(ctx, id).await? {
            Some(s) => Ok(Some(s)),
            None => {
                check_source(self.0, ctx, inputs).await?;
                Ok(None)
            }
        }
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        let origin = self.origin(inputs);
        match current {
            Current::Known(state) => {
                let from = self.origin_of(state);
                if from.as_deref() != Some(origin.as_str()) && !origin.contains(UNKNOWN) {
                    return Err(format!(
                        "DB instance `{id}` already exists and did not come from {} ({}): refusing to touch it",
                        origin,
                        match from {
                            Some(f) => format!("it came from {f}"),
                            None => "its origin is unknown".into(),
                        }
                    ));
                }
                let status = state.get("status").and_then(Json::as_str).unwrap_or("");
                if status == "available" {
                    return Ok(Change::noop(vec![FieldChange {
                        path: "identifier".into(),
                        before: Some(Json::from(id)),
                        after: Some(Json::from(id)),
                    }]));
                }
                Ok(Change {
                    action: Action::Update,
                    fields: vec![FieldChange {
                        path: "status".into(),
                        before: Some(Json::from(status)),
                        after: Some(Json::from("available")),
                    }],
                    summary: vec![format!(
                        "DB instance `{id}` from {origin} is being created; waits for it (no second {} is sent)",
                        if self.0 == Kind::Replica { "replica" } else { "restore" }
                    )],
                })
            }
            Current::Absent | Current::NotRead => {
                let mut fields = vec![FieldChange {
                    path: "identifier".into(),
                    before: None,
                    after: Some(Json::from(id)),
                }];
                let source_field = match self.0 {
                    Kind::Snapshot => "snapshot",
                    _ => "source",
                };
                fields.push(FieldChange {
                    path: source_field.into(),
                    before: None,
                    after: inputs.get(source_field).cloned(),
                });
                if self.0 == Kind::PointInTime {
                    fields.push(FieldChange {
                        path: "restore_time".into(),
                        before: None,
                        after: Some(Json::from(restore_time(inputs).unwrap_or("latest"))),
                    });
                }
                for f in ["instance_class", "multi_az"] {
                    if let Some(v) = inputs.get(f).filter(|v| !v.is_null()) {
                        fields.push(FieldChange {
                            path: f.into(),
                            before: None,
                            after: Some(v.clone()),
                        });
                    }
                }
                fields.push(FieldChange {
                    path: "endpoint".into(),
                    before: None,
                    after: Some(Json::from(UNKNOWN)),
                });
                let mut summary = vec![self.describe(inputs)];
                if self.0 != Kind::Replica {
                    summary.push(format!("tags it `{RESTORED_FROM}` = `{origin}`"));
                }
                summary.push("waits until it is `available`".into());
                Ok(Change {
                    action: Action::Create,
                    fields,
                    summary,
                })
            }
        }
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        if let Current::Known(s) = current {
            let mut s = s.clone();
            s["status"] = json!("available");
            return Some(s);
        }
        let mut tags = inputs.get("tags").cloned().unwrap_or_else(|| json!({}));
        if self.0 != Kind::Replica {
            tags[RESTORED_FROM] = Json::from(self.origin(inputs));
        }
        Some(json!({
            "identifier": inputs.get("identifier"),
            "arn": UNKNOWN,
            "status": "available",
            "instance_class": inputs.get("instance_class").cloned().unwrap_or(Json::from(UNKNOWN)),
            "multi_az": inputs.get("multi_az").cloned().unwrap_or(Json::from(UNKNOWN)),
            "pending": {},
            "endpoint": UNKNOWN,
            "address": UNKNOWN,
            "port": UNKNOWN,
            "read_replica_source": if self.0 == Kind::Replica { inputs.get("source").cloned().unwrap_or(Json::Null) } else { Json::Null },
            "tags": tags,
        }))
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({
            "identifier": inputs.get("identifier"),
            "arn": UNKNOWN,
            "status": UNKNOWN,
            "endpoint": UNKNOWN,
            "address": UNKNOWN,
            "port": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(instance_outputs(state))
    }
    /// Sends the create only when the target does not exist; an existing target from the same
    /// source (an earlier attempt) is waited for, never created again.
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier")
            .unwrap_or_default()
            .to_string();
        match describe_instance(ctx, &id).await? {
            None => self.send(ctx, inputs).await?,
            Some(s) => {
                self.plan(inputs, Current::Known(&s))
                    .map_err(ProviderError::new)?;
            }
        }
        let state = wait_instance(ctx, &id, "to be available", is_available).await?;
        Ok(instance_outputs(&state))
    }
    /// Done when the instance exists from this source and is available; NotDone otherwise
    /// (apply then waits for an instance in creation without sending a second create).
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        let id = arg_str(inputs, "identifier").unwrap_or_default();
        Ok(match describe_instance(ctx, id).await? {
            Some(s) if is_available(&s) && self.origin_of(&s) == Some(self.origin(inputs)) => {
                InDoubt::Done
            }
            _ => InDoubt::NotDone,
        })
    }
}
