//! `vault_lease_revoke`: revoke every lease under a prefix (`vault lease revoke -prefix
//! [-sync] PREFIX`, `PUT /v1/sys/leases/revoke-prefix/PREFIX`), e.g. every database credential
//! of a role (`database/creds/readonly`). Plan lists the leases that will end, with the role
//! each belongs to, from `LIST /v1/sys/leases/lookup/PREFIX` (through Vault's HTTP API: vaultrs
//! has no lease endpoints); a prefix with no leases plans as a no-op. Apply then waits until
//! none is listed: revoking database leases can meet PostgreSQL's "tuple concurrently updated"
//! on one of them, which the server retries about 15 s later, so the last one can take ~30 s.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{authed, raw, target_prefix, Method};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_str, wait_until, Action, ArgSpec, ArgType, Change, Current, DataSourceType,
    Inputs, ProviderError, StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "prefix",
        ty: ArgType::String,
        required: true,
        doc: "lease prefix, e.g. `database/creds/readonly`",
    },
    ArgSpec {
        name: "sync",
        ty: ArgType::Bool,
        required: false,
        doc: "the server revokes before it answers (default true); apply waits for the leases to be gone either way",
    },
];

/// At most this many leases are listed (a bound on a plan's size).
const MAX_LEASES: usize = 10_000;

/// `vault_lease_revoke`.
pub struct LeaseRevoke;

fn prefix(inputs: &Inputs) -> &str {
    arg_str(inputs, "prefix")
        .unwrap_or_default()
        .trim_matches('/')
}

/// Every lease id under `prefix`, sorted, walking `sys/leases/lookup` folder by folder.
async fn list_leases(ctx: &StepContext, prefix: &str) -> Result<Vec<String>, ProviderError> {
    let clients = authed(ctx)?;
    let mut found = Vec::new();
    let mut folders = vec![prefix.to_string()];
    while let Some(folder) = folders.pop() {
        let what = format!("list the leases under `{folder}`");
        let Some(answer) = raw(
            clients,
            Method::List,
            &format!("sys/leases/lookup/{folder}/"),
            &Json::Null,
            &what,
        )
        .await?
        else {
            continue;
        };
        let keys = answer
            .pointer("/data/keys")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for k in keys.iter().filter_map(Json::as_str) {
            let path = format!("{folder}/{}", k.trim_end_matches('/'));
            if k.ends_with('/') {
                folders.push(path);
            } else {
                found.push(path);
            }
            if found.len() > MAX_LEASES {
                return Err(ProviderError::new(format!(
                    "more than {MAX_LEASES} leases under `{prefix}`: revoke a narrower prefix"
                )));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The role (the secret path's last part) a lease belongs to: `readonly` for
/// `database/creds/readonly/ID`.
fn role_of(lease: &str) -> &str {
    lease
        .rsplit_once('/')
        .map(|(path, _)| path.rsplit('/').next().unwrap_or(path))
        .unwrap_or_default()
}

fn leases_of(state: &Json) -> Vec<String> {
    state
        .get("leases")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get("id").and_then(Json::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl StepType for LeaseRevoke {
    fn name(&self) -> &'static str {
        "vault_lease_revoke"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/sys/leases/lookup/{}",
            target_prefix(&env.provider_args),
            arg_str(inputs, "prefix")
                .map(|p| p.trim_matches('/'))
                .unwrap_or(UNKNOWN)
        )
    }
    fn reads(&self) -> bool {
        true
    }
    /// `{"leases": [{"id": ID, "role": ROLE}, ...]}`; never None (no leases is an empty list).
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let leases = list_leases(ctx, prefix(inputs)).await?;
        Ok(Some(json!({
            "leases": leases
                .iter()
                .map(|id| json!({ "id": id, "role": role_of(id) }))
                .collect::<Vec<_>>(),
        })))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let prefix = prefix(inputs);
        let leases = match current {
            Current::Known(s) => leases_of(s),
            Current::Absent => Vec::new(),
            Current::NotRead => {
                return Ok(Change {
                    action: Action::Delete,
                    fields: Vec::new(),
                    summary: vec![format!("revokes every lease under `{prefix}`")],
                })
            }
        };
        if leases.is_empty() {
            return Ok(Change::noop(Vec::new()));
        }
        let n = leases.len();
        let mut summary = vec![format!(
            "revokes {n} lease{} under `{prefix}`{}:",
            if n == 1 { "" } else { "s" },
            if arg_bool(inputs, "sync").unwrap_or(true) {
                " (sync)"
            } else {
                ""
            }
        )];
        summary.extend(
            leases
                .iter()
                .map(|id| format!("  {id} (role `{}`)", role_of(id))),
        );
        Ok(Change {
            action: Action::Delete,
            fields: Vec::new(),
            summary,
        })
    }
    fn predict(&self, _inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        Some(json!({ "leases": [] }))
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "revoked": UNKNOWN })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, _state: &Json) -> Option<Json> {
        Some(json!({ "revoked": [] }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let prefix = prefix(inputs);
        let before = list_leases(ctx, prefix).await?;
        let sync = arg_bool(inputs, "sync").unwrap_or(true);
        let revoked = raw(
            clients,
            Method::Put,
            &format!("sys/leases/revoke-prefix/{prefix}"),
            &json!({ "sync": sync }),
            &format!("revoke the leases under `{prefix}`"),
        )
        .await;
        if let Err(e) = revoked {
            // The server may have revoked some and retry the rest later (a database lease
            // that met a concurrent update): wait for them then. If nothing went, fail now.
            if list_leases(ctx, prefix).await? == before {
                return Err(e);
            }
        }
        let what = format!("the leases under `{prefix}` to be gone");
        let waited = wait_until(&what, ctx.timeout, || async {
            Ok(list_leases(ctx, prefix).await?.is_empty().then_some(()))
        })
        .await;
        if let Err(e) = waited {
            let left = list_leases(ctx, prefix).await.unwrap_or_default();
            return Err(ProviderError::new(format!(
                "{e}; still listed: {}",
                left.join(", ")
            )));
        }
        Ok(json!({ "revoked": before }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

const DATA_ARGS: &[ArgSpec] = &[ArgSpec {
    name: "prefix",
    ty: ArgType::String,
    required: true,
    doc: "lease prefix, e.g. `database/creds/readonly`",
}];

/// The `vault_leases` data source: the leases under a prefix (`vault list
/// sys/leases/lookup/PREFIX`, walked folder by folder).
pub struct LeasesData;

#[async_trait]
impl DataSourceType for LeasesData {
    fn name(&self) -> &'static str {
        "vault_leases"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        DATA_ARGS
    }
    /// `{"ids": [ID, ...], "leases": [{"id": ID, "role": ROLE}, ...], "count": N}`, sorted.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let leases = list_leases(ctx, prefix(inputs)).await?;
        Ok(json!({
            "count": leases.len(),
            "leases": leases
                .iter()
                .map(|id| json!({ "id": id, "role": role_of(id) }))
                .collect::<Vec<_>>(),
            "ids": leases,
        }))
    }
}
