//! `vault_unseal`: unseal a sealed server with key shares (`vault operator unseal`, `PUT
//! /v1/sys/unseal` once per share, through Vault's HTTP API). The shares come from a secure
//! input, never the configuration: environment variables named by `keys_from_env`, or a file
//! (`keys_file`, one share per line). Plan shows the seal status and progress
//! (`sys/seal-status`) and is a no-op when the server is unsealed; the shares are read only at
//! apply and appear in no message.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{raw, target_prefix, Method, VaultClients};
use crate::provider::{
    wait_until, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "keys_from_env",
        ty: ArgType::ListOfString,
        required: false,
        doc: "names of environment variables, each holding one unseal key share",
    },
    ArgSpec {
        name: "keys_file",
        ty: ArgType::String,
        required: false,
        doc: "a file holding one unseal key share per line (keep it readable by you only)",
    },
];

/// `vault_unseal`.
pub struct Unseal;

/// Where the shares come from, for messages: `UNSEAL_KEY_1, UNSEAL_KEY_2` or `file `...``.
fn sources(inputs: &Inputs) -> String {
    let mut s: Vec<String> = inputs
        .get("keys_from_env")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(|n| format!("`{n}`"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(f) = inputs.get("keys_file").and_then(Json::as_str) {
        s.push(format!("file `{f}`"));
    }
    s.join(", ")
}

/// The key shares, in order: the environment variables, then the file's lines.
fn key_shares(inputs: &Inputs) -> Result<Vec<String>, ProviderError> {
    let mut keys = Vec::new();
    if let Some(names) = inputs.get("keys_from_env").and_then(Json::as_array) {
        for n in names.iter().filter_map(Json::as_str) {
            match std::env::var(n) {
                Ok(v) if !v.trim().is_empty() => keys.push(v.trim().to_string()),
                _ => {
                    return Err(ProviderError::new(format!(
                        "environment variable `{n}` (an unseal key share) is not set"
                    )))
                }
            }
        }
    }
    if let Some(f) = inputs.get("keys_file").and_then(Json::as_str) {
        let text = std::fs::read_to_string(f).map_err(|e| {
            ProviderError::new(format!("cannot read the unseal key file `{f}`: {e}"))
        })?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if keys.is_empty() {
        return Err(ProviderError::new(
            "no unseal key share: set `keys_from_env` or `keys_file`",
        ));
    }
    Ok(keys)
}

/// `{"initialized", "sealed", "threshold", "progress"}` from `sys/seal-status`.
async fn seal_status(ctx: &StepContext) -> Result<Json, ProviderError> {
    let clients = ctx.client::<VaultClients>()?;
    let s = raw(
        clients,
        Method::Get,
        "sys/seal-status",
        &Json::Null,
        "read the seal status",
    )
    .await?
    .unwrap_or(Json::Null);
    Ok(json!({
        "initialized": s.get("initialized"),
        "sealed": s.get("sealed"),
        "threshold": s.get("t"),
        "progress": s.get("progress"),
    }))
}

fn progress(state: &Json) -> String {
    format!(
        "{}/{}",
        state.get("progress").and_then(Json::as_u64).unwrap_or(0),
        state.get("threshold").and_then(Json::as_u64).unwrap_or(0)
    )
}

#[async_trait]
impl StepType for Unseal {
    fn name(&self) -> &'static str {
        "vault_unseal"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, _inputs: &Inputs) -> String {
        format!("{}/sys/seal", target_prefix(&env.provider_args))
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        _inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        Ok(Some(seal_status(ctx).await?))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        if inputs.get("keys_from_env").is_none() && inputs.get("keys_file").is_none() {
            return Err("set `keys_from_env` or `keys_file` (never the keys themselves)".into());
        }
        let Current::Known(state) = current else {
            return Ok(Change {
                action: Action::Update,
                fields: Vec::new(),
                summary: vec![format!(
                    "unseals with the key shares of {}",
                    sources(inputs)
                )],
            });
        };
        if state.get("initialized") == Some(&Json::Bool(false)) {
            return Err("the server is not initialised: there is nothing to unseal yet".into());
        }
        let sealed = state.get("sealed").cloned().unwrap_or(Json::Null);
        let field = FieldChange {
            path: "sealed".into(),
            before: Some(sealed.clone()),
            after: Some(Json::Bool(false)),
        };
        if sealed == Json::Bool(false) {
            return Ok(Change::noop(vec![field]));
        }
        Ok(Change {
            action: Action::Update,
            fields: vec![
                field,
                FieldChange {
                    path: "progress".into(),
                    before: Some(Json::from(progress(state))),
                    after: Some(Json::from(progress(state))),
                },
            ],
            summary: vec![format!(
                "unseals with the key shares of {} ({} needed)",
                sources(inputs),
                state.get("threshold").and_then(Json::as_u64).unwrap_or(0)
            )],
        })
    }
    fn predict(&self, _inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        match current {
            Current::Known(s) => {
                let mut s = s.clone();
                s["sealed"] = Json::Bool(false);
                s["progress"] = Json::from(0);
                Some(s)
            }
            _ => None,
        }
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = ctx.client::<VaultClients>()?;
        let keys = key_shares(inputs)?;
        let mut status = Json::Null;
        for (i, key) in keys.iter().enumerate() {
            status = raw(
                clients,
                Method::Put,
                "sys/unseal",
                &json!({ "key": key }),
                &format!("unseal with key share {} of {}", i + 1, keys.len()),
            )
            .await?
            .unwrap_or(Json::Null);
            if status.get("sealed") == Some(&Json::Bool(false)) {
                break;
            }
        }
        if status.get("sealed") != Some(&Json::Bool(false)) {
            return Err(ProviderError::new(format!(
                "still sealed after {} key share(s) from {} (progress {}/{})",
                keys.len(),
                sources(inputs),
                status.get("progress").and_then(Json::as_u64).unwrap_or(0),
                status.get("t").and_then(Json::as_u64).unwrap_or(0)
            )));
        }
        // Verify: the server reports itself unsealed.
        wait_until(
            "the server to report itself unsealed",
            ctx.timeout,
            || async {
                let s = seal_status(ctx).await?;
                Ok((s.get("sealed") == Some(&Json::Bool(false))).then_some(()))
            },
        )
        .await?;
        Ok(json!({ "sealed": false }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}
