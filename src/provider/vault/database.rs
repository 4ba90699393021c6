//! `vault_database_rotate_root`: rotate the root credentials of a database secrets engine's
//! connection (`vault write -force database/rotate-root/NAME`, `POST
//! /v1/MOUNT/rotate-root/NAME`): Vault sets a new password for the user it logs in with, which
//! only Vault knows from then on. Plan reads the connection (`GET /v1/MOUNT/config/NAME`, which
//! never returns the password) and names its user and plugin; a missing connection is a plan
//! error. The rotation is an operation (`>`), planned on every run.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{api_error, is_not_found, target_prefix, VaultClients};
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
    let clients = ctx.client::<VaultClients>()?;
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
            arg_str(inputs, "mount")
                .unwrap_or("database")
                .trim_matches('/'),
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
        let clients = ctx.client::<VaultClients>()?;
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
