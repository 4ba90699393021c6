//! RDS DB instances: the state every instance step reads (`aws rds describe-db-instances`), the
//! shared wait until an instance is `available` with a change visible, and the `rds_instance`
//! step (`aws rds modify-db-instance`), which plans current -> target per field and says, per
//! the ModifyDBInstance API reference
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html>),
//! which changes wait for the maintenance window and which cause an outage or a reboot.

use async_trait::async_trait;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{DbInstance, Tag};
use aws_smithy_types::date_time::Format;
use serde_json::{json, Value as Json};

use super::waiter::{transient_or_fatal, Poll, PollError, Waiter};
use super::{region_of, sdk_error, AwsClients};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// The target address of DB instance `id`: `aws/REGION/rds/instance/ID`.
pub(super) fn instance_target(env: &TargetEnv, id: Option<&str>) -> String {
    format!(
        "aws/{}/rds/instance/{}",
        region_of(&env.provider_args),
        id.unwrap_or(UNKNOWN)
    )
}

/// Tags as a JSON map `{key: value}`.
pub(super) fn tags_json(tags: &[Tag]) -> Json {
    Json::Object(
        tags.iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    Json::from(t.value().unwrap_or_default()),
                )
            })
            .collect(),
    )
}

/// A `tags` argument (a map of strings) as SDK tags, plus `extra` pairs.
pub(super) fn tags_arg(inputs: &Inputs, extra: &[(&str, String)]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = inputs
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
    for (k, v) in extra {
        tags.push(Tag::builder().key(*k).value(v).build());
    }
    tags
}

/// An SDK timestamp as RFC 3339 (`2026-11-23T01:02:03Z`).
pub(super) fn time_json(t: Option<&aws_smithy_types::DateTime>) -> Json {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
        .map(Json::from)
        .unwrap_or(Json::Null)
}

/// The state of a DB instance as every RDS instance step sees it: the fields `rds_instance`
/// manages (the argument names), the values waiting for the maintenance window under
/// `pending`, status, endpoint, tags, replica source and latest restorable time.
pub(super) fn instance_json(db: &DbInstance) -> Json {
    let pending = db.pending_modified_values().map(|p| {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Json| {
            if !v.is_null() {
                m.insert(k.to_string(), v);
            }
        };
        put("instance_class", json!(p.db_instance_class()));
        put("allocated_storage", json!(p.allocated_storage()));
        put("storage_type", json!(p.storage_type()));
        put("iops", json!(p.iops()));
        put("engine_version", json!(p.engine_version()));
        put("multi_az", json!(p.multi_az()));
        put(
            "backup_retention_period",
            json!(p.backup_retention_period()),
        );
        if p.master_user_password().is_some() {
            put("master_user_password", json!("****"));
        }
        Json::Object(m)
    });
    let address = db.endpoint().and_then(|e| e.address());
    let port = db.endpoint().and_then(|e| e.port());
    json!({
        "identifier": db.db_instance_identifier(),
        "arn": db.db_instance_arn(),
        "status": db.db_instance_status(),
        "engine": db.engine(),
        "engine_version": db.engine_version(),
        "instance_class": db.db_instance_class(),
        "allocated_storage": db.allocated_storage(),
        "storage_type": db.storage_type(),
        "iops": db.iops(),
        "multi_az": db.multi_az(),
        "backup_retention_period": db.backup_retention_period(),
        "parameter_group": db.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()),
        "parameter_apply_status": db.db_parameter_groups().first().and_then(|g| g.parameter_apply_status()),
        "manage_master_user_password": db.master_user_secret().is_some(),
        "pending": pending.unwrap_or_else(|| json!({})),
        "address": address,
        "port": port,
        "endpoint": match (address, port) {
            (Some(a), Some(p)) => Json::from(format!("{a}:{p}")),
            _ => Json::Null,
        },
        "read_replica_source": db.read_replica_source_db_instance_identifier(),
        "latest_restorable_time": time_json(db.latest_restorable_time()),
        "tags": tags_json(db.tag_list()),
    })
}

/// Whether an SDK error says the DB instance does not exist.
pub(super) fn is_instance_not_found<E: ProvideErrorMetadata>(err: &E) -> bool {
    matches!(
        err.code(),
        Some("DBInstanceNotFound") | Some("DBInstanceNotFoundFault")
    )
}

/// `DescribeDBInstances` of one instance: its [`instance_json`], None when it does not exist.
///
/// # Errors
///
/// The server's answer (credentials, throttling given up, ...).
pub(super) async fn describe_instance(
    ctx: &StepContext,
    id: &str,
) -> Result<Option<Json>, ProviderError> {
    match ctx
        .client::<AwsClients>()?
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().map(instance_json)),
        Err(err) if is_instance_not_found(&err) => Ok(None),
        Err(err) => Err(sdk_error(&format!("DescribeDBInstances `{id}`"), err)),
    }
}

/// Statuses from which an instance does not become `available` by itself, with what they mean
/// (DB instance status table of the RDS User Guide,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html>).
const TERMINAL: &[(&str, &str)] = &[
    ("failed", "the instance has failed and RDS can't recover it"),
    (
        "incompatible-parameters",
        "RDS can't start the instance: its parameter group's values are incompatible with it",
    ),
    (
        "incompatible-restore",
        "RDS can't do a point-in-time restore of the instance",
    ),
    (
        "incompatible-network",
        "RDS can't recover the instance's network (subnets, ENIs)",
    ),
    (
        "incompatible-option-group",
        "an option group change failed and RDS couldn't roll it back",
    ),
    (
        "storage-full",
        "the instance has reached its storage capacity",
    ),
    (
        "inaccessible-encryption-credentials",
        "the KMS key that encrypts the instance is disabled or not accessible",
    ),
    ("deleting", "the instance is being deleted"),
    ("stopped", "the instance is stopped"),
];

/// Polls the instance with the shared AWS [`Waiter`] until `done(state)` holds (the instance
/// `available` with the change visible), within the step's timeout; progress shows the status
/// RDS reports; throttling and transient errors are polled again.
///
/// # Errors
///
/// The instance disappears, enters a [`TERMINAL`] status (named with what RDS documents it
/// means), a describe fails for good, or the timeout passes (naming the last status seen).
pub(super) async fn wait_instance(
    ctx: &StepContext,
    id: &str,
    what: &str,
    done: impl Fn(&Json) -> bool,
) -> Result<Json, ProviderError> {
    let rds = &ctx.client::<AwsClients>()?.rds;
    Waiter::new(ctx, format!("DB instance `{id}` {what}"))
        .wait(ctx, || async {
            let out = match rds
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if is_instance_not_found(&e) => {
                    return Err(PollError::Fatal(ProviderError::new(format!(
                        "DB instance `{id}` does not exist (waiting for it {what})"
                    ))))
                }
                Err(e) => {
                    return Err(transient_or_fatal(
                        &format!("DescribeDBInstances `{id}`"),
                        e,
                    ))
                }
            };
            let Some(s) = out.db_instances().first().map(instance_json) else {
                return Ok(Poll::Pending("not visible yet".into()));
            };
            let status = s
                .get("status")
                .and_then(Json::as_str)
                .unwrap_or("unknown")
                .to_string();
            if let Some((st, why)) = TERMINAL.iter().find(|(st, _)| *st == status) {
                return Ok(Poll::Failed(format!("entered status `{st}`: {why}")));
            }
            Ok(if done(&s) {
                Poll::Done(s)
            } else {
                Poll::Pending(status)
            })
        })
        .await
}

/// Whether a state's status is `available`.
pub(super) fn is_available(s: &Json) -> bool {
    s.get("status").and_then(Json::as_str) == Some("available")
}

/// `rds_instance`: modifies an existing DB instance (`aws rds modify-db-instance`).
pub struct Instance;

const INSTANCE_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "identifier",
        ty: ArgType::String,
        required: true,
        doc: "DB instance identifier",
    },
    ArgSpec {
        name: "instance_class",
        ty: ArgType::String,
        required: false,
        doc: "DB instance class, e.g. `db.r6g.xlarge` (outage during the change)",
    },
    ArgSpec {
        name: "allocated_storage",
        ty: ArgType::Count,
        required: false,
        doc: "storage in GiB (no outage)",
    },
    ArgSpec {
        name: "storage_type",
        ty: ArgType::String,
        required: false,
        doc: "`gp2`, `gp3`, `io1`, `io2` or `standard`",
    },
    ArgSpec {
        name: "iops",
        ty: ArgType::Count,
        required: false,
        doc: "provisioned IOPS (no outage)",
    },
    ArgSpec {
        name: "engine_version",
        ty: ArgType::String,
        required: false,
        doc: "engine version; a major upgrade is allowed when the major version differs (outage)",
    },
    ArgSpec {
        name: "multi_az",
        ty: ArgType::Bool,
        required: false,
        doc: "Multi-AZ deployment (no outage)",
    },
    ArgSpec {
        name: "backup_retention_period",
        ty: ArgType::Count,
        required: false,
        doc: "days of automated backups (0 disables them; brief I/O suspension when turned on or off)",
    },
    ArgSpec {
        name: "parameter_group",
        ty: ArgType::String,
        required: false,
        doc: "DB parameter group name (parameters take effect at the next reboot)",
    },
    ArgSpec {
        name: "manage_master_user_password",
        ty: ArgType::Bool,
        required: false,
        doc: "let RDS manage the master password in Secrets Manager",
    },
    ArgSpec {
        name: "master_user_password",
        ty: ArgType::String,
        required: false,
        doc: "new master password (secret: never shown, journaled or logged; set on every apply, as RDS never returns it)",
    },
    ArgSpec {
        name: "apply_immediately",
        ty: ArgType::Bool,
        required: false,
        doc: "apply now instead of in the next maintenance window (default false, as the API)",
    },
];

/// When a field's change takes effect, per the ModifyDBInstance API reference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// In the next maintenance window unless `ApplyImmediately` ("The change is applied
    /// during the next maintenance window, unless ApplyImmediately is enabled").
    Window,
    /// As soon as possible whatever `ApplyImmediately` says.
    Now,
}

/// One managed field: argument/state name, when it applies, and its impact as documented.
struct Field {
    name: &'static str,
    when: When,
    impact: &'static str,
}

/// The fields of ModifyDBInstance `rds_instance` manages. Impacts quote the API reference:
/// DBInstanceClass "the change causes an outage"; AllocatedStorage and Iops "doesn't result in
/// an outage"; StorageType migrations keep the instance available "but might experience
/// performance degradation"; EngineVersion upgrades restart the engine (outage); MultiAZ
/// "doesn't result in an outage"; BackupRetentionPeriod "Enabling and disabling backups can
/// result in a brief I/O suspension"; DBParameterGroupName "doesn't result in an outage ...
/// the actual parameter changes are not applied until you reboot the instance";
/// MasterUserPassword "doesn't result in an outage and the change is asynchronously applied as
/// soon as possible".
const FIELDS: &[Field] = &[
    Field {
        name: "instance_class",
        when: When::Window,
        impact: "causes an outage while the instance class changes",
    },
    Field {
        name: "allocated_storage",
        when: When::Window,
        impact: "no outage; performance may degrade during storage optimization",
    },
    Field {
        name: "storage_type",
        when: When::Window,
        impact: "no outage; performance may degrade while the storage migrates",
    },
    Field {
        name: "iops",
        when: When::Window,
        impact: "no outage",
    },
    Field {
        name: "engine_version",
        when: When::Window,
        impact: "causes an outage: the engine is upgraded and the instance restarts",
    },
    Field {
        name: "multi_az",
        when: When::Window,
        impact: "no outage",
    },
    Field {
        name: "backup_retention_period",
        when: When::Now,
        impact: "no outage",
    },
    Field {
        name: "parameter_group",
        when: When::Now,
        impact: "no outage; its parameters take effect only at the next reboot (pending-reboot), which opsctl does not do",
    },
    Field {
        name: "manage_master_user_password",
        when: When::Now,
        impact: "no outage; the password moves to a Secrets Manager secret",
    },
];

/// When a change of `f` from `before` to `want` applies: backup retention turned on or off
/// (0 <-> N) waits for the window; from one non-zero value to another it is applied at once.
fn when(f: &Field, before: &Json, want: &Json) -> When {
    if f.name == "backup_retention_period" {
        let on = |v: &Json| v.as_u64().unwrap_or(0) > 0;
        if on(before) != on(want) {
            return When::Window;
        }
    }
    f.when
}

fn impact(f: &Field, before: &Json, want: &Json) -> &'static str {
    if f.name == "backup_retention_period" && when(f, before, want) == When::Window {
        return "brief I/O suspension while backups are turned on or off";
    }
    f.impact
}

/// The major part of an engine version: `15` of `15.4`, `5.7` of `5.7.44` (MySQL before 8).
fn major(version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match parts.as_slice() {
        [a, b, ..] if a.parse::<u32>().is_ok_and(|n| n < 8) && !a.is_empty() => {
            format!("{a}.{b}")
        }
        [a, ..] => (*a).to_string(),
        [] => String::new(),
    }
}

fn is_unknown(v: &Json) -> bool {
    v.as_str().is_some_and(|s| s.contains(UNKNOWN))
}

/// The requested fields: (field, wanted value), in table order.
fn wanted(inputs: &Inputs) -> Vec<(&'static Field, Json)> {
    FIELDS
        .iter()
        .filter_map(|f| match inputs.get(f.name) {
            None | Some(Json::Null) => None,
            Some(v) => Some((f, v.clone())),
        })
        .collect()
}

/// Whether field `f` already has `want` (live, or pending for the window when `immediate` is
/// false and the field waits for it).
fn field_done(state: &Json, f: &Field, want: &Json, immediate: bool) -> bool {
    let cur = state.get(f.name).unwrap_or(&Json::Null);
    if cur == want {
        return true;
    }
    let pending = state.get("pending").and_then(|p| p.get(f.name));
    !immediate && when(f, cur, want) == When::Window && pending == Some(want)
}

#[async_trait]
impl StepType for Instance {
    fn name(&self) -> &'static str {
        "rds_instance"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("aws")
    }
    fn args(&self) -> &'static [ArgSpec] {
        INSTANCE_ARGS
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
        let state = match current {
            Current::Known(s) => s,
            Current::Absent | Current::NotRead => {
                return Err(format!("DB instance `{id}` not found"))
            }
        };
        let immediate = arg_bool(inputs, "apply_immediately").unwrap_or(false);
        let password = sets_password(inputs);
        if password && arg_bool(inputs, "manage_master_user_password") == Some(true) {
            return Err("InvalidParameterCombination: `master_user_password` cannot be set together with `manage_master_user_password = true` (RDS then manages the password)".into());
        }
        let mut fields = Vec::new();
        let mut summary = Vec::new();
        let mut changed = false;
        for (f, want) in wanted(inputs) {
            let cur = state.get(f.name).cloned().unwrap_or(Json::Null);
            if !is_unknown(&want) && field_done(state, f, &want, immediate) {
                fields.push(FieldChange {
                    path: f.name.into(),
                    before: Some(cur.clone()),
                    after: Some(cur.clone()),
                });
                if cur != want {
                    summary.push(format!(
                        "{}: {} is already pending for the next maintenance window",
                        f.name, want
                    ));
                }
                continue;
            }
            changed = true;
            let applies = match when(f, &cur, &want) {
                When::Window if !immediate => "in the next maintenance window (pending modified value; set apply_immediately = true to apply now)",
                When::Window => "now (apply_immediately)",
                When::Now => "now",
            };
            summary.push(format!(
                "{}: applied {applies}; {}",
                f.name,
                impact(f, &cur, &want)
            ));
            if f.name == "engine_version" {
                if let (Some(a), Some(b)) = (cur.as_str(), want.as_str()) {
                    if major(a) != major(b) && !is_unknown(&want) {
                        summary.push(format!(
                            "engine_version: major version upgrade {} -> {} (AllowMajorVersionUpgrade is sent)",
                            major(a),
                            major(b)
                        ));
                    }
                }
            }
            fields.push(FieldChange {
                path: f.name.into(),
                before: Some(cur),
                after: Some(want),
            });
        }
        if password {
            changed = true;
            fields.push(FieldChange {
                path: "master_user_password".into(),
                before: None,
                after: Some(Json::from(UNKNOWN)),
            });
            summary.push("master_user_password: set on every apply (RDS never returns it, so it cannot be compared); applied now, no outage".into());
        }
        if !changed {
            return Ok(Change {
                action: Action::NoOp,
                fields,
                summary,
            });
        }
        let status = state.get("status").and_then(Json::as_str).unwrap_or("");
        if status != "available" {
            summary.push(format!(
                "the instance is `{status}` now; RDS accepts modifications only when it is `available`"
            ));
        }
        Ok(Change {
            // A password cannot be read back, so a step that sets one is an operation that
            // runs on every apply (`>`), not a convergent update: apply's wait verifies the
            // other fields instead of the engine's re-read.
            action: if password {
                Action::Run
            } else {
                Action::Update
            },
            fields,
            summary,
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let immediate = arg_bool(inputs, "apply_immediately").unwrap_or(false);
        let mut s = state.clone();
        for (f, want) in wanted(inputs) {
            let cur = state.get(f.name).cloned().unwrap_or(Json::Null);
            if immediate || when(f, &cur, &want) == When::Now {
                s[f.name] = want;
            } else if cur != want {
                s["pending"][f.name] = want;
            }
        }
        s["status"] = json!("available");
        Some(s)
    }
    /// No outputs when a password is set: the step is then sensitive as a whole, and every
    /// output (the identifier, the endpoint) would be redacted from all messages.
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        if sets_password(inputs) {
            return json!({});
        }
        json!({
            "identifier": inputs.get("identifier"),
            "arn": UNKNOWN,
            "status": UNKNOWN,
            "endpoint": UNKNOWN,
            "address": UNKNOWN,
            "port": UNKNOWN,
        })
    }
    fn outputs_from_state(&self, inputs: &Inputs, state: &Json) -> Option<Json> {
        if sets_password(inputs) {
            return Some(json!({}));
        }
        Some(instance_outputs(state))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let id = arg_str(inputs, "identifier")
            .unwrap_or_default()
            .to_string();
        let immediate = arg_bool(inputs, "apply_immediately").unwrap_or(false);
        let Some(mut live) = describe_instance(ctx, &id).await? else {
            return Err(ProviderError::new(format!("DB instance `{id}` not found")));
        };
        // A modification in flight (an earlier attempt that timed out or was killed, or
        // someone else's) is waited for first: RDS refuses another one meanwhile
        // (InvalidDBInstanceState), and it may be ours, so what is left is decided after it.
        if !is_available(&live) {
            live = wait_instance(
                ctx,
                &id,
                "to be available before it is modified",
                is_available,
            )
            .await?;
        }
        let todo: Vec<(&Field, Json)> = wanted(inputs)
            .into_iter()
            .filter(|(f, want)| !field_done(&live, f, want, immediate))
            .collect();
        let password = arg_str(inputs, "master_user_password");
        let mut req = ctx
            .client::<AwsClients>()?
            .rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .apply_immediately(immediate);
        for (f, want) in &todo {
            let s = want.as_str().unwrap_or_default().to_string();
            let n = want.as_i64().unwrap_or_default() as i32;
            let b = want.as_bool().unwrap_or_default();
            req = match f.name {
                "instance_class" => req.db_instance_class(s),
                "allocated_storage" => req.allocated_storage(n),
                "storage_type" => req.storage_type(s),
                "iops" => req.iops(n),
                "engine_version" => {
                    let cur = live
                        .get("engine_version")
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    let req = req.engine_version(&s);
                    if major(cur) != major(&s) {
                        req.allow_major_version_upgrade(true)
                    } else {
                        req
                    }
                }
                "multi_az" => req.multi_az(b),
                "backup_retention_period" => req.backup_retention_period(n),
                "parameter_group" => req.db_parameter_group_name(s),
                "manage_master_user_password" => req.manage_master_user_password(b),
                _ => req,
            };
        }
        if let Some(p) = password {
            req = req.master_user_password(p);
        }
        if !todo.is_empty() || password.is_some() {
            req.send()
                .await
                .map_err(|e| sdk_error(&format!("ModifyDBInstance `{id}`"), e))?;
        }
        let state = wait_instance(ctx, &id, "to be available with the change", |s| {
            is_available(s)
                && todo
                    .iter()
                    .all(|(f, want)| field_done(s, f, want, immediate))
        })
        .await?;
        if sets_password(inputs) {
            return Ok(json!({}));
        }
        Ok(instance_outputs(&state))
    }
    fn secret_args(&self) -> &'static [&'static str] {
        &["master_user_password"]
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

/// Whether the step sets the master password.
fn sets_password(inputs: &Inputs) -> bool {
    inputs
        .get("master_user_password")
        .is_some_and(|v| !v.is_null())
}

/// The outputs of a step on an instance: identifier, ARN, endpoint (`address:port`), address,
/// port, status.
pub(super) fn instance_outputs(state: &Json) -> Json {
    json!({
        "identifier": state.get("identifier"),
        "arn": state.get("arn"),
        "status": state.get("status"),
        "endpoint": state.get("endpoint"),
        "address": state.get("address"),
        "port": state.get("port"),
    })
}

/// Reads the instance; a not-found becomes an error naming it (for steps that need it).
pub(super) async fn require_instance(
    ctx: &StepContext,
    id: &str,
    role: &str,
) -> Result<Json, ProviderError> {
    describe_instance(ctx, id)
        .await?
        .ok_or_else(|| ProviderError::new(format!("{role} DB instance `{id}` not found")))
}

#[cfg(test)]
mod tests {
    use super::{major, Instance};
    use crate::provider::{Action, Current, Inputs, StepType};
    use serde_json::json;

    fn inputs(v: serde_json::Value) -> Inputs {
        v.as_object().unwrap().clone()
    }

    fn live() -> serde_json::Value {
        json!({"identifier": "db", "status": "available", "instance_class": "db.r6g.large",
               "allocated_storage": 100, "multi_az": true, "backup_retention_period": 7,
               "pending": {"allocated_storage": 200}})
    }

    #[test]
    fn a_pending_value_counts_as_done_unless_applied_immediately() {
        let s = live();
        let later = inputs(json!({"identifier": "db", "allocated_storage": 200}));
        let c = Instance.plan(&later, Current::Known(&s)).unwrap();
        assert_eq!(c.action, Action::NoOp);
        let now = inputs(
            json!({"identifier": "db", "allocated_storage": 200, "apply_immediately": true}),
        );
        let c = Instance.plan(&now, Current::Known(&s)).unwrap();
        assert_eq!(c.action, Action::Update);
        assert!(
            c.summary[0].starts_with("allocated_storage: applied now (apply_immediately)"),
            "{:?}",
            c.summary
        );
    }

    #[test]
    fn backup_retention_waits_for_the_window_only_when_turned_on_or_off() {
        let s = live();
        let c = Instance
            .plan(
                &inputs(json!({"identifier": "db", "backup_retention_period": 0})),
                Current::Known(&s),
            )
            .unwrap();
        assert!(
            c.summary[0].contains("next maintenance window")
                && c.summary[0].contains("brief I/O suspension"),
            "{:?}",
            c.summary
        );
        let c = Instance
            .plan(
                &inputs(json!({"identifier": "db", "backup_retention_period": 14})),
                Current::Known(&s),
            )
            .unwrap();
        assert_eq!(
            c.summary[0],
            "backup_retention_period: applied now; no outage"
        );
        // Predicted for later steps: immediate fields live, deferred ones pending.
        let p = Instance
            .predict(&inputs(json!({"identifier": "db", "backup_retention_period": 14, "instance_class": "db.r6g.xlarge"})), Current::Known(&s))
            .unwrap();
        assert_eq!(
            (
                p["backup_retention_period"].clone(),
                p["instance_class"].clone(),
                p["pending"]["instance_class"].clone()
            ),
            (json!(14), json!("db.r6g.large"), json!("db.r6g.xlarge"))
        );
    }

    #[test]
    fn a_password_is_a_run_and_cannot_go_with_managed_passwords() {
        let s = live();
        let c = Instance
            .plan(
                &inputs(json!({"identifier": "db", "master_user_password": "pw"})),
                Current::Known(&s),
            )
            .unwrap();
        assert_eq!(c.action, Action::Run);
        let e = Instance
            .plan(&inputs(json!({"identifier": "db", "master_user_password": "pw", "manage_master_user_password": true})), Current::Known(&s))
            .unwrap_err();
        assert!(e.starts_with("InvalidParameterCombination"), "{e}");
        let e = Instance
            .plan(&inputs(json!({"identifier": "db"})), Current::Absent)
            .unwrap_err();
        assert_eq!(e, "DB instance `db` not found");
    }

    #[test]
    fn major_versions_follow_the_engines_numbering() {
        assert_eq!(major("15.4"), "15");
        assert_eq!(major("16.1"), "16");
        assert_eq!(major("5.7.44"), "5.7");
        assert_eq!(major("8.0.35"), "8");
    }
}
