//! The database secrets engine: `vault_database_config` and `vault_database_role` write a
//! connection and a role (below);
//! `vault_database_rotate_root` rotates the root credentials of a database secrets engine's
//! connection (`vault write -force database/rotate-root/NAME`, `POST
//! /v1/MOUNT/rotate-root/NAME`): Vault sets a new password for the user it logs in with, which
//! only Vault knows from then on. Plan reads the connection (`GET /v1/MOUNT/config/NAME`, which
//! never returns the password) and names its user and plugin; a missing connection is a plan
//! error. The rotation is an operation (`>`), planned on every run.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{api_error, authed, is_not_found, raw, target_prefix, Method};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "mount",
        ty: ArgType::String,
        required: false,
        doc: "path of the database secrets engine (default `database`)",
    },
    ArgSpec {
        name: "connection",
        ty: ArgType::String,
        required: true,
        doc: "connection name (`MOUNT/config/NAME`)",
    },
];

/// `vault_database_rotate_root`.
pub struct RotateRoot;

fn mount(inputs: &Inputs) -> &str {
    arg_str(inputs, "mount")
        .unwrap_or("database")
        .trim_matches('/')
}

fn connection(inputs: &Inputs) -> &str {
    arg_str(inputs, "connection").unwrap_or_default()
}

/// The connection as `{"username": U, "plugin_name": P}`, None when it does not exist.
async fn read_connection(
    ctx: &StepContext,
    inputs: &Inputs,
) -> Result<Option<Json>, ProviderError> {
    let clients = authed(ctx)?;
    let (mount, name) = (mount(inputs), connection(inputs));
    match vaultrs::database::connection::read(&clients.client, mount, name).await {
        Ok(c) => Ok(Some(json!({
            "username": c.connection_details.username,
            "plugin_name": c.plugin_name,
        }))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_error(
            &format!("read database connection `{mount}/config/{name}`"),
            &e,
        )),
    }
}

#[async_trait]
impl StepType for RotateRoot {
    fn name(&self) -> &'static str {
        "vault_database_rotate_root"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/{}/config/{}",
            target_prefix(&env.provider_args),
            mount(inputs),
            arg_str(inputs, "connection").unwrap_or(UNKNOWN)
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
        read_connection(ctx, inputs).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let (mount, name) = (mount(inputs), connection(inputs));
        let (user, plugin) = match current {
            Current::Known(s) => (
                s.get("username").and_then(Json::as_str).unwrap_or_default(),
                s.get("plugin_name")
                    .and_then(Json::as_str)
                    .unwrap_or_default(),
            ),
            Current::Absent => {
                return Err(format!(
                    "database connection `{mount}/config/{name}` not found"
                ))
            }
            Current::NotRead => (UNKNOWN, UNKNOWN),
        };
        Ok(Change {
            action: Action::Run,
            fields: vec![FieldChange {
                path: "username".into(),
                before: Some(Json::from(user)),
                after: Some(Json::from(user)),
            }],
            summary: vec![format!(
                "rotates the password of `{user}`, the user connection `{name}` ({plugin}) logs in with; only Vault knows the new one"
            )],
        })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let (mount, name) = (mount(inputs), connection(inputs));
        vaultrs::database::connection::rotate(&clients.client, mount, name)
            .await
            .map_err(|e| {
                api_error(
                    &format!("rotate the root credentials of `{mount}/config/{name}`"),
                    &e,
                )
            })?;
        // Verify: the connection is still configured (Vault answered only once it could log
        // in with the new password and store it).
        read_connection(ctx, inputs).await?.ok_or_else(|| {
            ProviderError::new(format!(
                "database connection `{mount}/config/{name}` is gone after the rotation"
            ))
        })?;
        Ok(json!({ "connection": name }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        // Rotating again leaves the same outcome: a password only Vault knows.
        true
    }
}

const ROLE_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "mount",
        ty: ArgType::String,
        required: false,
        doc: "path of the database secrets engine (default `database`)",
    },
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "role name (`MOUNT/roles/NAME`; credentials are read from `MOUNT/creds/NAME`)",
    },
    ArgSpec {
        name: "db_name",
        ty: ArgType::String,
        required: true,
        doc: "the connection it uses (`MOUNT/config/DB_NAME`)",
    },
    ArgSpec {
        name: "creation_statements",
        ty: ArgType::ListOfString,
        required: true,
        doc: "SQL run to create a user (`{{name}}`, `{{password}}`, `{{expiration}}`)",
    },
    ArgSpec {
        name: "revocation_statements",
        ty: ArgType::ListOfString,
        required: false,
        doc: "SQL run to drop a user (default: the plugin's)",
    },
    ArgSpec {
        name: "default_ttl",
        ty: ArgType::Duration,
        required: false,
        doc: "lease duration of its credentials (default: the mount's)",
    },
    ArgSpec {
        name: "max_ttl",
        ty: ArgType::Duration,
        required: false,
        doc: "longest a lease can be renewed to (default: the mount's)",
    },
];

/// `vault_database_role`: write a role of the database secrets engine (`vault write
/// database/roles/NAME ...`); plan compares each field with the live role (statements as a line
/// diff) and is a no-op when they match.
pub struct Role;

/// The fields a role step manages, as the API reads them: statements joined by lines, TTLs in
/// seconds.
fn role_fields(inputs: &Inputs) -> Vec<(&'static str, Json)> {
    let lines = |k: &str| {
        inputs.get(k).and_then(Json::as_array).map(|a| {
            Json::from(
                a.iter()
                    .filter_map(Json::as_str)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>(),
            )
        })
    };
    let secs = |k: &str| {
        arg_str(inputs, k).map(|d| match crate::provider::builtin::parse_duration(d) {
            Ok(d) => Json::from(d.as_secs()),
            Err(_) => Json::from(d),
        })
    };
    let mut f = vec![(
        "db_name",
        inputs.get("db_name").cloned().unwrap_or(Json::Null),
    )];
    for (k, v) in [
        ("creation_statements", lines("creation_statements")),
        ("revocation_statements", lines("revocation_statements")),
        ("default_ttl", secs("default_ttl")),
        ("max_ttl", secs("max_ttl")),
    ] {
        if let Some(v) = v {
            f.push((k, v));
        }
    }
    f
}

fn role_path(inputs: &Inputs) -> String {
    format!(
        "{}/roles/{}",
        mount(inputs),
        arg_str(inputs, "name").unwrap_or_default()
    )
}

async fn read_role(ctx: &StepContext, inputs: &Inputs) -> Result<Option<Json>, ProviderError> {
    let clients = authed(ctx)?;
    let path = role_path(inputs);
    let Some(r) = raw(
        clients,
        Method::Get,
        &path,
        &Json::Null,
        &format!("read database role `{path}`"),
    )
    .await?
    else {
        return Ok(None);
    };
    let d = r.get("data").cloned().unwrap_or(Json::Null);
    let lines = |k: &str| {
        Json::from(
            d.get(k)
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                })
                .unwrap_or_default(),
        )
    };
    Ok(Some(json!({
        "db_name": d.get("db_name"),
        "creation_statements": lines("creation_statements"),
        "revocation_statements": lines("revocation_statements"),
        "default_ttl": d.get("default_ttl"),
        "max_ttl": d.get("max_ttl"),
    })))
}

#[async_trait]
impl StepType for Role {
    fn name(&self) -> &'static str {
        "vault_database_role"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ROLE_ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/{}/roles/{}",
            target_prefix(&env.provider_args),
            mount(inputs),
            arg_str(inputs, "name").unwrap_or(UNKNOWN)
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
        read_role(ctx, inputs).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let path = role_path(inputs);
        Ok(write_change(
            current,
            role_fields(inputs),
            None,
            format!("writes database role `{path}`"),
        ))
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let mut s = match current {
            Current::Known(s) => s.clone(),
            _ => json!({}),
        };
        for (k, v) in role_fields(inputs) {
            s[k] = v;
        }
        Some(s)
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let path = role_path(inputs);
        write_verified(
            ctx,
            inputs,
            &path,
            &[
                "db_name",
                "creation_statements",
                "revocation_statements",
                "default_ttl",
                "max_ttl",
            ],
            role_fields(inputs),
            "database role",
            read_role(ctx, inputs),
        )
        .await?;
        Ok(json!({ "name": arg_str(inputs, "name") }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

const CONFIG_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "mount",
        ty: ArgType::String,
        required: false,
        doc: "path of the database secrets engine (default `database`)",
    },
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "connection name (`MOUNT/config/NAME`)",
    },
    ArgSpec {
        name: "plugin_name",
        ty: ArgType::String,
        required: true,
        doc: "e.g. `postgresql-database-plugin`",
    },
    ArgSpec {
        name: "connection_url",
        ty: ArgType::String,
        required: true,
        doc: "e.g. `postgresql://{{username}}:{{password}}@db:5432/postgres`",
    },
    ArgSpec {
        name: "username",
        ty: ArgType::String,
        required: true,
        doc: "the user Vault logs in with",
    },
    ArgSpec {
        name: "password",
        ty: ArgType::String,
        required: true,
        doc: "its password (sensitive; Vault never returns it, so it is written when the connection is created or another field changes)",
    },
    ArgSpec {
        name: "allowed_roles",
        ty: ArgType::ListOfString,
        required: false,
        doc: "roles that may use it (default: none; `[\"*\"]` for all)",
    },
];

/// `vault_database_config`: configure a connection of the database secrets engine (`vault write
/// database/config/NAME ...`). Its `password` is secret ([`StepType::secret_args`]); Vault never
/// returns it, so plan compares the other fields and is a no-op when they match.
pub struct Config;

/// The non-secret fields a config step manages.
fn config_fields(inputs: &Inputs) -> Vec<(&'static str, Json)> {
    let mut f = Vec::new();
    for k in ["plugin_name", "connection_url", "username"] {
        f.push((k, inputs.get(k).cloned().unwrap_or(Json::Null)));
    }
    f.push((
        "allowed_roles",
        inputs
            .get("allowed_roles")
            .cloned()
            .unwrap_or_else(|| json!([])),
    ));
    f
}

fn config_path(inputs: &Inputs) -> String {
    format!(
        "{}/config/{}",
        mount(inputs),
        arg_str(inputs, "name").unwrap_or_default()
    )
}

async fn read_config(ctx: &StepContext, inputs: &Inputs) -> Result<Option<Json>, ProviderError> {
    let clients = authed(ctx)?;
    let path = config_path(inputs);
    let Some(r) = raw(
        clients,
        Method::Get,
        &path,
        &Json::Null,
        &format!("read database connection `{path}`"),
    )
    .await?
    else {
        return Ok(None);
    };
    let d = r.get("data").cloned().unwrap_or(Json::Null);
    let details = d.get("connection_details").cloned().unwrap_or(Json::Null);
    Ok(Some(json!({
        "plugin_name": d.get("plugin_name"),
        "connection_url": details.get("connection_url"),
        "username": details.get("username"),
        "allowed_roles": d.get("allowed_roles").cloned().unwrap_or_else(|| json!([])),
    })))
}

#[async_trait]
impl StepType for Config {
    fn name(&self) -> &'static str {
        "vault_database_config"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        CONFIG_ARGS
    }
    fn secret_args(&self) -> &'static [&'static str] {
        &["password"]
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/{}/config/{}",
            target_prefix(&env.provider_args),
            mount(inputs),
            arg_str(inputs, "name").unwrap_or(UNKNOWN)
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
        read_config(ctx, inputs).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let path = config_path(inputs);
        // The password is written with the rest; never readable, so never compared.
        let password = FieldChange {
            path: "password".into(),
            before: None,
            after: Some(Json::from(UNKNOWN)),
        };
        Ok(write_change(
            current,
            config_fields(inputs),
            Some(password),
            format!("writes database connection `{path}`; Vault checks that it can log in"),
        ))
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        let mut s = json!({});
        for (k, v) in config_fields(inputs) {
            s[k] = v;
        }
        Some(s)
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let path = config_path(inputs);
        write_verified(
            ctx,
            inputs,
            &path,
            &[
                "plugin_name",
                "connection_url",
                "username",
                "password",
                "allowed_roles",
            ],
            config_fields(inputs),
            "database connection",
            read_config(ctx, inputs),
        )
        .await?;
        Ok(json!({}))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

/// PUTs the `keys` of `inputs` that are set to `path`, then reads the object back (`read_back`,
/// which must read after the write: it is awaited only then) and checks that each of `want`
/// reads back as written. `what` names the object in errors (`database role`).
///
/// # Errors
///
/// The server's answer to the write or the read, or the fields that do not read back.
async fn write_verified(
    ctx: &StepContext,
    inputs: &Inputs,
    path: &str,
    keys: &[&str],
    want: Vec<(&'static str, Json)>,
    what: &str,
    read_back: impl std::future::Future<Output = Result<Option<Json>, ProviderError>>,
) -> Result<(), ProviderError> {
    let clients = authed(ctx)?;
    let body: serde_json::Map<String, Json> = keys
        .iter()
        .filter_map(|k| inputs.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    raw(
        clients,
        Method::Put,
        path,
        &Json::Object(body),
        &format!("write {what} `{path}`"),
    )
    .await?;
    let live = read_back.await?;
    let differs: Vec<&str> = want
        .into_iter()
        .filter(|(k, want)| live.as_ref().and_then(|l| l.get(*k)) != Some(want))
        .map(|(k, _)| k)
        .collect();
    if !differs.is_empty() {
        return Err(ProviderError::new(format!(
            "{what} `{path}` does not read back as written: {}",
            differs.join(", ")
        )));
    }
    Ok(())
}

/// The change of writing `want` (field, value) over `current`, field by field: a no-op when the
/// object exists and every field reads as wanted, else an update (or a create, when absent)
/// with `write_only` (a field Vault never returns, such as a password) appended, never
/// compared. Unread: an update without fields.
fn write_change(
    current: Current<'_>,
    want: Vec<(&'static str, Json)>,
    write_only: Option<FieldChange>,
    summary: String,
) -> Change {
    let live = match current {
        Current::Known(s) => Some(s),
        Current::Absent => None,
        Current::NotRead => {
            return Change {
                action: Action::Update,
                fields: Vec::new(),
                summary: vec![summary],
            }
        }
    };
    let mut fields: Vec<FieldChange> = want
        .into_iter()
        .map(|(k, want)| FieldChange {
            path: k.into(),
            before: live.map(|s| s.get(k).cloned().unwrap_or(Json::Null)),
            after: Some(want),
        })
        .collect();
    if live.is_some() && fields.iter().all(|f| f.before == f.after) {
        return Change::noop(fields);
    }
    fields.extend(write_only);
    Change {
        action: if live.is_some() {
            Action::Update
        } else {
            Action::Create
        },
        fields,
        summary: vec![summary],
    }
}
