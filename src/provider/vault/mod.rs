//! The Vault provider (Vault and OpenBao): `vault_policy`, `vault_kv`, `vault_lease_revoke`,
//! `vault_database_rotate_root`, `vault_database_role`, `vault_database_config`, `vault_unseal`,
//! and the data sources `vault_kv`, `vault_leases`,
//! `vault_seal_status` and `vault_raft_peers`, through the `vaultrs` crate (rustls). Connects like the `vault` CLI: the block's
//! `address` else `VAULT_ADDR`, `token` else `VAULT_TOKEN` else `~/.vault-token` (or an `auth`
//! login: userpass or approle), `namespace`
//! else `VAULT_NAMESPACE` (sent as `X-Vault-Namespace`), `ca_cert` else `VAULT_CACERT`,
//! `skip_verify` else `VAULT_SKIP_VERIFY`. Targets are `vault/<host:port>[/ns/<namespace>]/<API
//! path>` (the path of Vault's HTTP API the step writes, without `/v1/`).

mod database;
mod dbusers;
mod kv;
mod lease;
mod policy;
mod seal;
mod unseal;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{
    ArgSpec, ArgType, Client, DataSourceType, Provider, ProviderArgs, ProviderError, StepType,
};

/// The Vault step types.
pub fn step_types() -> Vec<Arc<dyn StepType>> {
    vec![
        Arc::new(policy::Policy),
        Arc::new(kv::Kv),
        Arc::new(lease::LeaseRevoke),
        Arc::new(database::RotateRoot),
        Arc::new(database::Role),
        Arc::new(database::Config),
        Arc::new(unseal::Unseal),
    ]
}

/// The Vault data sources.
pub fn data_sources() -> Vec<Arc<dyn DataSourceType>> {
    vec![
        Arc::new(kv::KvData),
        Arc::new(lease::LeasesData),
        Arc::new(seal::SealStatus),
        Arc::new(seal::RaftPeers),
    ]
}

/// A connected Vault server: one address, token and namespace.
pub struct VaultClients {
    /// The address, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// The namespace every request is sent in (`X-Vault-Namespace`), if any.
    pub namespace: Option<String>,
    /// The API client.
    pub client: VaultClient,
    /// Why no token was found, when none was (the seal status and unseal endpoints need none;
    /// every other request is refused with this message through [`authed`]).
    pub no_token: Option<String>,
}

/// The provider's clients for a request that needs a token (every endpoint but `sys/seal-status`
/// and `sys/unseal`).
///
/// # Errors
///
/// The provider has no client, or no token was found (`token`, `VAULT_TOKEN`, `~/.vault-token`).
pub fn authed(ctx: &super::StepContext) -> Result<&VaultClients, ProviderError> {
    let clients = ctx.client::<VaultClients>()?;
    match &clients.no_token {
        Some(why) => Err(ProviderError::new(format!("{}: {why}", ctx.target))),
        None => Ok(clients),
    }
}

/// Arguments the `provider "vault"` block accepts.
pub const PROVIDER_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "address",
        ty: ArgType::String,
        required: false,
        doc: "server URL, e.g. `https://vault.example.com:8200` (default: `VAULT_ADDR`, else `https://127.0.0.1:8200`)",
    },
    ArgSpec {
        name: "token",
        ty: ArgType::String,
        required: false,
        doc: "token (default: `VAULT_TOKEN`, else the file `~/.vault-token`); pass it through a `sensitive` variable",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace, sent as `X-Vault-Namespace` (default: `VAULT_NAMESPACE`, else none)",
    },
    ArgSpec {
        name: "auth",
        ty: ArgType::Any,
        required: false,
        doc: "log in instead of using a token: `{ method = \"userpass\", username = ..., password = var.pw }` or `{ method = \"approle\", role_id = ..., secret_id = var.secret_id }`, with `mount` (default: the method's name)",
    },
    ArgSpec {
        name: "ca_cert",
        ty: ArgType::String,
        required: false,
        doc: "PEM file of the CA that signed the server's certificate (default: `VAULT_CACERT`)",
    },
    ArgSpec {
        name: "skip_verify",
        ty: ArgType::Bool,
        required: false,
        doc: "do not verify the server's certificate (default: `VAULT_SKIP_VERIFY`, else false)",
    },
];

/// Time one request may take before it fails (an unreachable address, a hung server).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `vault` provider: [`VaultClients`] per provider key.
pub struct Vault;

#[async_trait]
impl Provider for Vault {
    fn name(&self) -> &'static str {
        "vault"
    }
    fn args(&self) -> &'static [ArgSpec] {
        PROVIDER_ARGS
    }
    async fn connect(&self, args: &ProviderArgs) -> Result<Client, ProviderError> {
        Ok(Arc::new(connect(args).await?))
    }
    fn step_types(&self) -> Vec<Arc<dyn StepType>> {
        step_types()
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSourceType>> {
        data_sources()
    }
}

/// A string argument, else a non-empty environment variable.
fn arg_or_env(args: &ProviderArgs, name: &str, var: &str) -> Option<String> {
    args.get(name)
        .and_then(Json::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// The address a provider block resolves to (its `address`, `VAULT_ADDR`, or the `vault`
/// CLI's default `https://127.0.0.1:8200`).
pub fn address(args: &ProviderArgs) -> String {
    arg_or_env(args, "address", "VAULT_ADDR").unwrap_or_else(|| "https://127.0.0.1:8200".into())
}

/// The namespace a provider block resolves to (its `namespace`, else `VAULT_NAMESPACE`), without
/// surrounding slashes; None for the root namespace.
pub fn namespace(args: &ProviderArgs) -> Option<String> {
    arg_or_env(args, "namespace", "VAULT_NAMESPACE")
        .map(|n| n.trim_matches('/').to_string())
        .filter(|n| !n.is_empty())
}

/// The prefix of every target of a provider block: `vault/<host:port>[/ns/<namespace>]`.
pub fn target_prefix(args: &ProviderArgs) -> String {
    let address = address(args);
    let host = address
        .split_once("://")
        .map_or(address.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    match namespace(args) {
        Some(ns) => format!("vault/{host}/ns/{ns}"),
        None => format!("vault/{host}"),
    }
}

/// The token: the block's `token`, `VAULT_TOKEN`, or the first line of `~/.vault-token`
/// (where `vault login` stores it).
fn token(args: &ProviderArgs) -> Result<String, ProviderError> {
    if let Some(t) = arg_or_env(args, "token", "VAULT_TOKEN") {
        return Ok(t);
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    if let Some(file) = home.map(|h| h.join(".vault-token")) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let t = text.trim();
            if !t.is_empty() {
                return Ok(t.to_string());
            }
        }
    }
    Err(ProviderError::new(
        "no Vault token: set `token` in the provider block, VAULT_TOKEN, or log in with `vault login` (~/.vault-token)",
    ))
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "yes" | "y"
    )
}

/// Whether a header can carry `v` (vaultrs panics on one that cannot).
fn header_safe(v: &str) -> bool {
    v.chars().all(|c| c.is_ascii_graphic())
}

/// The `auth` block: (method, mount, login name, secret), checked.
fn auth_args(auth: &Json) -> Result<(&str, &str, &str, &str), ProviderError> {
    let get = |k: &str| auth.get(k).and_then(Json::as_str);
    let method = get("method")
        .ok_or_else(|| ProviderError::new("`auth` needs `method`: \"userpass\" or \"approle\""))?;
    let (id_key, secret_key) = match method {
        "userpass" => ("username", "password"),
        "approle" => ("role_id", "secret_id"),
        other => {
            return Err(ProviderError::new(format!(
                "`auth` method {other:?} is not supported: \"userpass\" or \"approle\""
            )))
        }
    };
    let need = |k: &str| {
        get(k).ok_or_else(|| {
            ProviderError::new(format!("`auth` with method \"{method}\" needs `{k}`"))
        })
    };
    Ok((
        method,
        get("mount").unwrap_or(method).trim_matches('/'),
        need(id_key)?,
        need(secret_key)?,
    ))
}

/// Builds a client from a provider block's evaluated arguments, logging in first when the block
/// has `auth` (the only request it sends: a wrong address or token shows in the first step that
/// uses it).
///
/// # Errors
///
/// No token anywhere, an address that is not a URL, a CA file that cannot be read, a token or
/// namespace an HTTP header cannot carry, or a failed login (the server's answer).
pub async fn connect(args: &ProviderArgs) -> Result<VaultClients, ProviderError> {
    let auth = args.get("auth").filter(|a| !a.is_null());
    let login = auth.map(auth_args).transpose()?;
    // Without a token the provider still connects: an unseal (seed 001's emergency) runs
    // before anyone can have one; every other request is refused through `authed`.
    let (token, no_token) = if login.is_some() {
        (String::new(), None)
    } else {
        match token(args) {
            Ok(t) => (t, None),
            Err(e) => (String::new(), Some(e.message)),
        }
    };
    let mut clients = client(args, token)?;
    clients.no_token = no_token;
    if let Some((method, mount, id, secret)) = login {
        let logged_in = match method {
            "userpass" => vaultrs::auth::userpass::login(&clients.client, mount, id, secret).await,
            _ => vaultrs::auth::approle::login(&clients.client, mount, id, secret).await,
        };
        let info = logged_in.map_err(|e| {
            let who = if method == "userpass" {
                format!(" as `{id}`")
            } else {
                String::new()
            };
            api_error(
                &format!(
                    "log in to `{}` with {method} (mount `{mount}`){who}",
                    clients.address
                ),
                &e,
            )
        })?;
        if !header_safe(&info.client_token) {
            return Err(ProviderError::new(format!(
                "log in to `{}`: the token returned cannot be sent in a header",
                clients.address
            )));
        }
        clients.client.set_token(&info.client_token);
    }
    Ok(clients)
}

/// The client of a provider block with `token` (empty: none, to log in).
fn client(args: &ProviderArgs, token: String) -> Result<VaultClients, ProviderError> {
    let address = address(args);
    let namespace = namespace(args);
    if !header_safe(&token) {
        return Err(ProviderError::new(
            "the Vault token contains characters an HTTP header cannot carry (spaces, newlines, non-ASCII)",
        ));
    }
    if let Some(ns) = namespace.as_deref().filter(|ns| !header_safe(ns)) {
        return Err(ProviderError::new(format!(
            "Vault namespace {ns:?} contains characters an HTTP header cannot carry"
        )));
    }
    let skip_verify = match args.get("skip_verify").and_then(Json::as_bool) {
        Some(b) => b,
        None => std::env::var("VAULT_SKIP_VERIFY").is_ok_and(|v| truthy(&v)),
    };
    // vaultrs panics on an address that is not a URL: check it first.
    match url::Url::parse(&address) {
        Ok(u) if ["http", "https"].contains(&u.scheme()) => {}
        Ok(u) => {
            return Err(ProviderError::new(format!(
                "Vault address `{address}`: scheme `{}` is not http or https",
                u.scheme()
            )))
        }
        Err(e) => {
            return Err(ProviderError::new(format!(
                "Vault address `{address}` is not a URL: {e}"
            )))
        }
    }
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&address)
        .token(token)
        .namespace(namespace.clone())
        .verify(!skip_verify)
        .ca_certs(
            arg_or_env(args, "ca_cert", "VAULT_CACERT")
                .into_iter()
                .collect(),
        )
        .timeout(Some(REQUEST_TIMEOUT));
    let settings = settings
        .build()
        .map_err(|e| ProviderError::new(format!("invalid Vault settings for `{address}`: {e}")))?;
    let client = VaultClient::new(settings).map_err(|e| {
        ProviderError::new(format!(
            "cannot build a Vault client for `{address}`: {}",
            chain(&e)
        ))
    })?;
    Ok(VaultClients {
        address,
        namespace,
        client,
        no_token: None,
    })
}

/// A method of Vault's HTTP API that vaultrs does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET PATH`.
    Get,
    /// `GET PATH?list=true` (Vault's `LIST`).
    List,
    /// `PUT PATH` with a JSON body.
    Put,
}

/// Calls Vault's HTTP API where vaultrs falls short (the lease endpoints), through the same
/// reqwest client, token and namespace as vaultrs. Returns the response's JSON (Null for 204),
/// None for a 404 with no error message (nothing at that path).
///
/// # Errors
///
/// The server's answer ([`api_error`]), or what kept the request from getting one; `what`
/// names the operation.
pub async fn raw(
    clients: &VaultClients,
    method: Method,
    path: &str,
    body: &Json,
    what: &str,
) -> Result<Option<Json>, ProviderError> {
    let settings = &clients.client.settings;
    let url = format!(
        "{}/v1/{}",
        settings.address.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    let http = &clients.client.http.http;
    let mut req = match method {
        Method::Get => http.get(url),
        Method::List => http.get(format!("{url}?list=true")),
        Method::Put => http
            .put(url)
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    };
    req = req
        .header("X-Vault-Request", "true")
        .header("X-Vault-Token", settings.token.as_str());
    if let Some(ns) = &clients.namespace {
        req = req.header("X-Vault-Namespace", ns.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ProviderError::new(format!("{what}: {}", chain(&e))))?;
    let code = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ProviderError::new(format!("{what}: {}", chain(&e))))?;
    let json: Json = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Json::Null)
    };
    if (200..300).contains(&code) {
        return Ok(Some(json));
    }
    let errors: Vec<String> = json
        .get("errors")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let e = ClientError::APIError { code, errors };
    if is_not_found(&e) {
        return Ok(None);
    }
    Err(api_error(what, &e))
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Whether an API error is Vault's answer for a missing policy or secret: 404 with no error
/// message. A 404 that says something (`no handler for route "nosuch/data/x"`: a missing
/// mount) is an error, not an absent object.
pub fn is_not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, errors } if errors.is_empty())
}

/// Renders an API error: `WHAT: the server answered CODE: ERRORS` (Vault's multi-error text
/// `1 error occurred: * permission denied` flattened to `permission denied`), or what kept the
/// request from getting an answer (connection refused, TLS, timeout). `what` names the
/// operation and object (`read policy `p``); the engine adds the step and its target.
pub fn api_error(what: &str, e: &ClientError) -> ProviderError {
    match e {
        ClientError::APIError { code, errors } => {
            let said: Vec<String> = errors
                .iter()
                .flat_map(|e| e.lines())
                .map(|l| l.trim().trim_start_matches("* ").trim())
                .filter(|l| !l.is_empty() && !l.ends_with("occurred:"))
                .map(str::to_string)
                .collect();
            let said = if said.is_empty() {
                match code {
                    403 => "permission denied".to_string(),
                    404 => "not found".to_string(),
                    503 => "Vault is sealed or unavailable".to_string(),
                    _ => "no error message".to_string(),
                }
            } else {
                said.join("; ")
            };
            ProviderError::new(format!("{what}: the server answered {code}: {said}"))
        }
        other => ProviderError::new(format!("{what}: {}", chain(other))),
    }
}
