//! `vault_kv`: write a KV version 2 secret with check-and-set (`vault kv put -cas=N`, `POST
//! /v1/MOUNT/data/PATH` with `options.cas`), and the `vault_kv` data source (`vault kv get`,
//! `GET /v1/MOUNT/data/PATH`). Values are secrets: the step's `data` and the data source's
//! `data` are declared secret ([`StepType::secret_args`], [`DataSourceType::secret_attributes`]),
//! so the engine shows them as `(sensitive value)`, keeps them out of the journal and redacts
//! them from messages. The step reads and compares the live secret by digest (SHA-256 of each
//! value's JSON text, held in memory only): plan names the keys added, changed and removed,
//! never a value, and is a no-op when every key matches.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::ReadSecretResponse;

use super::{api_error, authed, is_not_found, target_prefix};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_i64, arg_str, wait_until, Action, ArgSpec, ArgType, Change, Current, DataSourceType,
    FieldChange, Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

const STEP_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "mount",
        ty: ArgType::String,
        required: false,
        doc: "path of the KV version 2 engine (default `secret`)",
    },
    ArgSpec {
        name: "path",
        ty: ArgType::String,
        required: true,
        doc: "secret path under the mount, e.g. `app/db`",
    },
    ArgSpec {
        name: "data",
        ty: ArgType::MapOfString,
        required: true,
        doc: "the whole secret, key = value (sensitive; keys not listed are removed)",
    },
];

const DATA_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "mount",
        ty: ArgType::String,
        required: false,
        doc: "path of the KV version 2 engine (default `secret`)",
    },
    ArgSpec {
        name: "path",
        ty: ArgType::String,
        required: true,
        doc: "secret path under the mount, e.g. `app/db`",
    },
    ArgSpec {
        name: "version",
        ty: ArgType::Count,
        required: false,
        doc: "version to read (default: the current one)",
    },
];

/// `vault_kv` (step).
pub struct Kv;

/// `vault_kv` (data source).
pub struct KvData;

fn mount(inputs: &Inputs) -> &str {
    arg_str(inputs, "mount").unwrap_or("secret")
}

fn path(inputs: &Inputs) -> &str {
    arg_str(inputs, "path").unwrap_or_default()
}

/// `secret/app/db`, as messages name a secret.
fn describe(inputs: &Inputs) -> String {
    format!("{}/{}", mount(inputs), path(inputs))
}

/// The digest of one value: SHA-256 of its JSON text, hex.
fn digest(v: &Json) -> Json {
    let text = serde_json::to_string(v).unwrap_or_default();
    Json::String(format!("{:x}", Sha256::digest(text.as_bytes())))
}

/// Key -> digest of each value of a secret's data.
fn digests(data: &Json) -> BTreeMap<String, Json> {
    data.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), digest(v))).collect())
        .unwrap_or_default()
}

/// Reads a secret (a given version, else the current one); None when it does not exist or its
/// current version is deleted or destroyed. `what` names it in errors.
async fn read_secret(
    ctx: &StepContext,
    inputs: &Inputs,
    version: Option<u64>,
    what: &str,
) -> Result<Option<ReadSecretResponse>, ProviderError> {
    let clients = authed(ctx)?;
    let endpoint = ReadSecretRequest::builder()
        .mount(mount(inputs))
        .path(path(inputs))
        .version(version)
        .build()
        .map_err(|e| ProviderError::new(format!("read {what}: {e}")))?;
    match vaultrs::api::exec_with_result(&clients.client, endpoint).await {
        Ok(r) if r.data.is_null() => Ok(None),
        Ok(r) => Ok(Some(r)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_error(&format!("read {what}"), &e)),
    }
}

/// The version a write must name for check-and-set: the secret's current version (deleted or
/// not), 0 when it has never been written.
async fn current_version(ctx: &StepContext, inputs: &Inputs) -> Result<u64, ProviderError> {
    let clients = authed(ctx)?;
    match vaultrs::kv2::read_metadata(&clients.client, mount(inputs), path(inputs)).await {
        Ok(m) => Ok(m.current_version),
        Err(e) if is_not_found(&e) => Ok(0),
        Err(e) => Err(api_error(
            &format!("read the metadata of secret `{}`", describe(inputs)),
            &e,
        )),
    }
}

#[async_trait]
impl StepType for Kv {
    fn name(&self) -> &'static str {
        "vault_kv"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        STEP_ARGS
    }
    fn secret_args(&self) -> &'static [&'static str] {
        &["data"]
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/{}/data/{}",
            target_prefix(&env.provider_args),
            mount(inputs),
            arg_str(inputs, "path").unwrap_or(UNKNOWN)
        )
    }
    fn reads(&self) -> bool {
        true
    }
    /// The live secret as `{"version": N, "digests": {key: digest}}` (never a value).
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let what = format!("secret `{}`", describe(inputs));
        Ok(read_secret(ctx, inputs, None, &what)
            .await?
            .map(|r| json!({ "version": r.metadata.version, "digests": digests(&r.data) })))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let want = inputs.get("data").cloned().unwrap_or(Json::Null);
        if want.as_str().is_some_and(|s| s.contains(UNKNOWN)) {
            return Ok(Change {
                action: Action::Update,
                fields: Vec::new(),
                summary: vec![
                    "writes the secret with check-and-set (keys known after apply)".to_string(),
                ],
            });
        }
        let want = digests(&want);
        let (live, version) = match current {
            Current::Known(s) => (
                s.get("digests")
                    .and_then(Json::as_object)
                    .map(|m| m.clone().into_iter().collect::<BTreeMap<_, _>>()),
                s.get("version").and_then(Json::as_u64),
            ),
            Current::Absent => (None, None),
            Current::NotRead => (None, None),
        };
        let before = live.clone().unwrap_or_default();
        let mut fields = Vec::new();
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for (k, d) in &want {
            let b = before.get(k);
            match b {
                None => added.push(k.as_str()),
                Some(b) if b != d => changed.push(k.as_str()),
                Some(_) => {}
            }
            fields.push(FieldChange {
                path: format!("data.{k}"),
                before: b.cloned(),
                after: Some(d.clone()),
            });
        }
        for (k, b) in &before {
            if !want.contains_key(k) {
                removed.push(k.as_str());
                fields.push(FieldChange {
                    path: format!("data.{k}"),
                    before: Some(b.clone()),
                    after: None,
                });
            }
        }
        if live.is_some() && added.is_empty() && changed.is_empty() && removed.is_empty() {
            return Ok(Change::noop(fields));
        }
        let list = |keys: &[&str]| {
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut summary = Vec::new();
        summary.push(match version {
            Some(v) => format!("writes version {} with check-and-set (cas = {v})", v + 1),
            None => "writes version 1 with check-and-set (cas = 0)".to_string(),
        });
        for (what, keys) in [
            ("adds", &added),
            ("changes", &changed),
            ("removes", &removed),
        ] {
            if !keys.is_empty() {
                summary.push(format!(
                    "{what} key{} {}",
                    if keys.len() == 1 { "" } else { "s" },
                    list(keys)
                ));
            }
        }
        Ok(Change {
            action: if live.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            fields,
            summary,
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let version = match current {
            Current::Known(s) => s.get("version").and_then(Json::as_u64).map(|v| v + 1),
            Current::Absent => None,
            Current::NotRead => return None,
        };
        Some(json!({
            "version": version,
            "digests": digests(inputs.get("data").unwrap_or(&Json::Null)),
        }))
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        // Never the mount or path: the outputs of a sensitive step are redacted from messages.
        json!({ "version": UNKNOWN })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({ "version": state.get("version") }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let data = inputs.get("data").cloned().unwrap_or(Json::Null);
        let cas = current_version(ctx, inputs).await?;
        let secret = describe(inputs);
        let cas_u32 = u32::try_from(cas).map_err(|_| {
            ProviderError::new(format!(
                "write secret `{secret}`: version {cas} is beyond check-and-set's range"
            ))
        })?;
        let written = vaultrs::kv2::set_with_options(
            &clients.client,
            mount(inputs),
            path(inputs),
            &data,
            SetSecretRequestOptions { cas: cas_u32 },
        )
        .await
        .map_err(|e| {
            api_error(
                &format!("write secret `{secret}` (check-and-set, cas = {cas})"),
                &e,
            )
        })?;
        // Verify: the version written holds what was asked (by digest).
        let want = digests(&data);
        let what = format!("version {} of secret `{secret}`", written.version);
        wait_until(&format!("{what} to be readable"), ctx.timeout, || async {
            Ok(read_secret(ctx, inputs, Some(written.version), &what)
                .await?
                .map(|r| digests(&r.data)))
        })
        .await
        .and_then(|live| {
            if live == want {
                Ok(())
            } else {
                Err(ProviderError::new(format!(
                    "{what} does not hold the values written"
                )))
            }
        })?;
        Ok(json!({ "version": written.version }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

#[async_trait]
impl DataSourceType for KvData {
    fn name(&self) -> &'static str {
        "vault_kv"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        DATA_ARGS
    }
    fn secret_attributes(&self) -> &'static [&'static str] {
        &["data"]
    }
    /// `{"data": {key: value}, "version": N}`.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let what = format!("secret `{}` at `{}`", describe(inputs), clients.address);
        let version = arg_i64(inputs, "version").and_then(|v| u64::try_from(v).ok());
        match read_secret(ctx, inputs, version, &what).await? {
            Some(r) => Ok(json!({ "data": r.data, "version": r.metadata.version })),
            None => Err(ProviderError::new(format!(
                "read {what}: not found{}",
                match version {
                    Some(v) => format!(" (version {v}, or it is deleted)"),
                    None => " (or its current version is deleted)".to_string(),
                }
            ))),
        }
    }
}
