//! API discovery for the `kubernetes` provider: which group/version serves a kind, asked from the
//! server (`/api`, `/apis/GROUP`) rather than assumed, once per API group and provider key.
//!
//! PodDisruptionBudget, for example, is `policy/v1` on current clusters and only
//! `policy/v1beta1` on older ones (1.20 and before); [`Discovery::resolve`] with no version picks
//! the group's preferred version that serves the kind, as kubectl does.

use std::collections::HashMap;
use std::sync::Arc;

use kube::discovery::{ApiCapabilities, ApiGroup, ApiResource};

use super::api_error;
use crate::provider::ProviderError;

/// The API groups a client has discovered so far (one entry per group name, `""` for core).
#[derive(Default)]
pub struct Discovery {
    groups: tokio::sync::Mutex<HashMap<String, Arc<ApiGroup>>>,
}

/// A kind the server serves: its resource (group, version, plural) and capabilities (scope,
/// subresources, verbs).
#[derive(Debug, Clone)]
pub struct Served {
    /// Group, version, kind and plural, for building an `Api<DynamicObject>`.
    pub resource: ApiResource,
    /// Scope (namespaced or cluster), subresources and verbs.
    pub capabilities: ApiCapabilities,
}

impl Served {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> &str {
        &self.resource.api_version
    }

    /// Whether the kind is served with the named subresource (`scale`, `status`, `eviction`).
    pub fn has_subresource(&self, name: &str) -> bool {
        self.capabilities
            .subresources
            .iter()
            .any(|(r, _)| r.plural == name)
    }
}

impl Discovery {
    /// The group's discovery document, fetched on first use (one request for the group list,
    /// one per served version) and cached for the run. Concurrent callers wait for the first
    /// fetch, so a plan reading 200 Deployments asks once.
    async fn group(
        &self,
        client: &kube::Client,
        group: &str,
        target: &str,
    ) -> Result<Arc<ApiGroup>, ProviderError> {
        let mut groups = self.groups.lock().await;
        if let Some(g) = groups.get(group) {
            return Ok(g.clone());
        }
        let g = match kube::discovery::group(client, group).await {
            Ok(g) => Arc::new(g),
            Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
                return Err(ProviderError::new(format!(
                    "{target}: the server does not serve the API group `{group}`"
                )))
            }
            Err(e) => {
                return Err(api_error(
                    "discover API group",
                    &format!("`{group}` for {target}"),
                    &e,
                ))
            }
        };
        groups.insert(group.to_string(), g.clone());
        Ok(g)
    }

    /// Resolves `kind` in `group` (`""` for core, `apps`, `policy`): at `version` when given,
    /// else at the group's preferred version if it serves the kind, else the newest version
    /// that does.
    ///
    /// # Errors
    ///
    /// When discovery fails (the server's answer), or the server does not serve the group, that
    /// version of it, or the kind in it — naming `target` and what the server does serve.
    pub async fn resolve(
        &self,
        client: &kube::Client,
        group: &str,
        version: Option<&str>,
        kind: &str,
        target: &str,
    ) -> Result<Served, ProviderError> {
        let g = self.group(client, group, target).await?;
        let gv = |v: &str| {
            if group.is_empty() {
                v.to_string()
            } else {
                format!("{group}/{v}")
            }
        };
        let versions: Vec<&str> = match version {
            Some(v) => {
                if !g.versions().any(|x| x == v) {
                    return Err(ProviderError::new(format!(
                        "{target}: the server does not serve `{}` (it serves: {})",
                        gv(v),
                        g.versions().map(gv).collect::<Vec<_>>().join(", ")
                    )));
                }
                vec![v]
            }
            None => {
                let preferred = g.preferred_version_or_latest();
                std::iter::once(preferred)
                    .chain(g.versions().filter(|v| *v != preferred))
                    .collect()
            }
        };
        for v in &versions {
            if let Some((resource, capabilities)) = g
                .versioned_resources(v)
                .into_iter()
                .find(|(r, _)| r.kind == kind)
            {
                return Ok(Served {
                    resource,
                    capabilities,
                });
            }
        }
        Err(ProviderError::new(format!(
            "{target}: the server does not serve kind `{kind}` in {}",
            versions
                .iter()
                .map(|v| format!("`{}`", gv(v)))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
