//! `vault_lease_revoke`: revoke every lease under a prefix (`vault lease revoke -prefix
//! [-sync] PREFIX`, `PUT /v1/sys/leases/revoke-prefix/PREFIX`), e.g. every database credential
//! of a role (`database/creds/readonly`). Plan lists the leases that will end, with the role
//! each belongs to, from `LIST /v1/sys/leases/lookup/PREFIX` (through Vault's HTTP API: vaultrs
//! has no lease endpoints); a prefix with no leases plans as a no-op. Apply then waits until
//! none is listed: revoking database leases can meet PostgreSQL's "tuple concurrently updated"
//! on one of them, which the server retries about 15 s later, so the last one can take ~30 s.
//! With `database_url`, plan also names the database users the leases stand for (Vault's API
//! never does: see `dbusers`), and apply waits until PostgreSQL has dropped them.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{authed, dbusers, raw, target_prefix, Method};
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
    ArgSpec {
        name: "database_url",
        ty: ArgType::String,
        required: false,
        doc: "a PostgreSQL connection string (secret) to the database the leases' credentials live in: plan then names the database users that end, and apply waits until they are dropped",
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

fn names(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The database users `leases` stand for (see `dbusers`), from the database at `url`.
async fn users_of(ctx: &StepContext, url: &str, leases: &[String]) -> Result<Json, ProviderError> {
    let pairs: Vec<(String, String)> = leases
        .iter()
        .map(|id| (id.clone(), role_of(id).to_string()))
        .collect();
    dbusers::users_of(authed(ctx)?, url, &pairs).await
}

/// Plan lines naming the database users that end with the leases, and the leases none was
/// found for.
fn users_summary(state: &Json, url: &str) -> Vec<String> {
    let users = names(&state["database_users"]);
    let unmatched = names(&state["unmatched"]);
    let mut lines = Vec::new();
    let at = dbusers::describe(url);
    if !users.is_empty() {
        let n = users.len();
        lines.push(format!(
            "ends {n} database user{} at {at} (PostgreSQL login roles):",
            if n == 1 { "" } else { "s" }
        ));
        lines.extend(users.iter().map(|u| format!("  {u}")));
    }
    if !unmatched.is_empty() {
        lines.push(format!(
            "no database user at {at} found for {} lease{} (a user without VALID UNTIL, or a custom username_template): {}",
            unmatched.len(),
            if unmatched.len() == 1 { "" } else { "s" },
            unmatched.join(", ")
        ));
    }
    lines
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
    /// `{"leases": [{"id": ID, "role": ROLE}, ...]}`, and with `database_url` also
    /// `"database_users": [NAME, ...], "unmatched": [LEASE ID, ...]`; never None (no leases is
    /// an empty list).
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let leases = list_leases(ctx, prefix(inputs)).await?;
        let mut state = json!({
            "leases": leases
                .iter()
                .map(|id| json!({ "id": id, "role": role_of(id) }))
                .collect::<Vec<_>>(),
        });
        if let Some(url) = arg_str(inputs, "database_url") {
            let users = users_of(ctx, url, &leases).await?;
            state["database_users"] = users["database_users"].clone();
            state["unmatched"] = users["unmatched"].clone();
        }
        Ok(Some(state))
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
        if let (Current::Known(s), Some(url)) = (current, arg_str(inputs, "database_url")) {
            summary.extend(users_summary(s, url));
        }
        Ok(Change {
            action: Action::Delete,
            fields: Vec::new(),
            summary,
        })
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        Some(if inputs.contains_key("database_url") {
            json!({ "leases": [], "database_users": [], "unmatched": [] })
        } else {
            json!({ "leases": [] })
        })
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "revoked": UNKNOWN, "database_users": UNKNOWN })
    }
    fn outputs_from_state(&self, _inputs: &Inputs, _state: &Json) -> Option<Json> {
        Some(json!({ "revoked": [], "database_users": [] }))
    }
    fn secret_args(&self) -> &'static [&'static str] {
        &["database_url"]
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let prefix = prefix(inputs);
        let before = list_leases(ctx, prefix).await?;
        let url = arg_str(inputs, "database_url");
        let users: Vec<String> = match url {
            Some(url) => names(&users_of(ctx, url, &before).await?["database_users"]),
            None => Vec::new(),
        };
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
        if let (Some(url), false) = (url, users.is_empty()) {
            let at = dbusers::describe(url);
            let what = format!("the database users of these leases to be dropped at {at}");
            let left = || async {
                let live: Vec<String> = dbusers::login_roles(url)
                    .await?
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect();
                Ok::<_, ProviderError>(
                    users
                        .iter()
                        .filter(|u| live.contains(u))
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            };
            let waited = wait_until(&what, ctx.timeout, || async {
                Ok(left().await?.is_empty().then_some(()))
            })
            .await;
            if let Err(e) = waited {
                let left = left().await.unwrap_or_default();
                return Err(ProviderError::new(format!(
                    "{e}; still in pg_roles: {}",
                    left.join(", ")
                )));
            }
        }
        Ok(json!({ "revoked": before, "database_users": users }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}

const DATA_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "prefix",
        ty: ArgType::String,
        required: true,
        doc: "lease prefix, e.g. `database/creds/readonly`",
    },
    ArgSpec {
        name: "database_url",
        ty: ArgType::String,
        required: false,
        doc: "a PostgreSQL connection string to the database the leases' credentials live in: then `database_users` names their users",
    },
];

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
    /// `{"ids": [ID, ...], "leases": [{"id": ID, "role": ROLE}, ...], "count": N}`, sorted;
    /// with `database_url` also `"database_users": [NAME, ...]` and `"unmatched": [ID, ...]`.
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let leases = list_leases(ctx, prefix(inputs)).await?;
        let mut out = json!({
            "count": leases.len(),
            "leases": leases
                .iter()
                .map(|id| json!({ "id": id, "role": role_of(id) }))
                .collect::<Vec<_>>(),
        });
        if let Some(url) = arg_str(inputs, "database_url") {
            let users = users_of(ctx, url, &leases).await?;
            out["database_users"] = users["database_users"].clone();
            out["unmatched"] = users["unmatched"].clone();
        }
        out["ids"] = json!(leases);
        Ok(out)
    }
}
