//! The `vault_seal_status` data source: `vault status` (`GET /v1/sys/seal-status`, through
//! Vault's HTTP API: vaultrs cannot parse OpenBao's answer to `sys/health` and `sys/status`).

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{raw, Method, VaultClients};
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
