//! The `vault_seal_status` data source: `vault status` (`GET /v1/sys/seal-status`, through
//! Vault's HTTP API: vaultrs cannot parse OpenBao's answer to `sys/health` and `sys/status`),
//! and `vault_raft_peers` (below).

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{authed, raw, Method, VaultClients};
use crate::provider::{ArgSpec, DataSourceType, Inputs, ProviderError, StepContext};

/// `vault_seal_status`.
pub struct SealStatus;

#[async_trait]
impl DataSourceType for SealStatus {
    fn name(&self) -> &'static str {
        "vault_seal_status"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        &[]
    }
    /// `{"initialized", "sealed", "threshold", "shares", "progress", "version", "storage"}`
    /// (`threshold`: key shares needed to unseal; `progress`: shares given so far).
    async fn read(&self, ctx: &StepContext, _inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = ctx.client::<VaultClients>()?;
        let what = format!("read the seal status of `{}`", clients.address);
        let s = raw(clients, Method::Get, "sys/seal-status", &Json::Null, &what)
            .await?
            .ok_or_else(|| ProviderError::new(format!("{what}: not found")))?;
        Ok(json!({
            "initialized": s.get("initialized"),
            "sealed": s.get("sealed"),
            "threshold": s.get("t"),
            "shares": s.get("n"),
            "progress": s.get("progress"),
            "version": s.get("version"),
            "storage": s.get("storage_type"),
        }))
    }
}

/// The `vault_raft_peers` data source: `vault operator raft list-peers` (`GET
/// /v1/sys/storage/raft/configuration`).
pub struct RaftPeers;

#[async_trait]
impl DataSourceType for RaftPeers {
    fn name(&self) -> &'static str {
        "vault_raft_peers"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        &[]
    }
    /// `{"peers": [{"node_id", "address", "leader", "voter"}], "count": N, "leader": NODE_ID}`.
    async fn read(&self, ctx: &StepContext, _inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let what = format!("read the raft peers of `{}`", clients.address);
        let c = raw(
            clients,
            Method::Get,
            "sys/storage/raft/configuration",
            &Json::Null,
            &what,
        )
        .await?
        .ok_or_else(|| ProviderError::new(format!("{what}: not found (no raft storage?)")))?;
        let servers = c
            .pointer("/data/config/servers")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let peers: Vec<Json> = servers
            .iter()
            .map(|s| {
                json!({
                    "node_id": s.get("node_id"),
                    "address": s.get("address"),
                    "leader": s.get("leader"),
                    "voter": s.get("voter"),
                })
            })
            .collect();
        let leader = servers
            .iter()
            .find(|s| s.get("leader") == Some(&Json::Bool(true)))
            .and_then(|s| s.get("node_id").cloned())
            .unwrap_or(Json::Null);
        Ok(json!({ "count": peers.len(), "peers": peers, "leader": leader }))
    }
}
