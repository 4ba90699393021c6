//! The Kubernetes provider: `kubernetes_cordon`, `kubernetes_uncordon`, `kubernetes_drain`,
//! `kubernetes_scale`, `kubernetes_rollout_restart`, `kubernetes_rollout_undo` and
//! `kubernetes_set_image` through the `kube` crate (rustls). Connects from a kubeconfig: the block's `config_path`,
//! else `KUBECONFIG` (a colon-separated list) or `~/.kube/config`, with its `context` and
//! `namespace` overriding the kubeconfig's current context and that context's namespace.

pub mod discovery;
mod drain;
mod node;
pub mod rollout;
mod scale;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value as Json;

use super::{
    ArgSpec, ArgType, Client, DataSourceType, Provider, ProviderArgs, ProviderError, StepType,
};

/// The Kubernetes step types.
pub fn step_types() -> Vec<Arc<dyn StepType>> {
    vec![
        Arc::new(node::Cordon {
            unschedulable: true,
        }),
        Arc::new(node::Cordon {
            unschedulable: false,
        }),
        Arc::new(drain::Drain),
        Arc::new(scale::Scale),
        Arc::new(rollout::RolloutRestart),
        Arc::new(rollout::RolloutUndo),
        Arc::new(rollout::SetImage),
    ]
}

/// A connected cluster: one kubeconfig context.
#[derive(Clone)]
pub struct KubeClients {
    /// The context name, as used in target addresses.
    pub context: String,
    /// The namespace steps use when they name none.
    pub namespace: String,
    /// The API client.
    pub client: kube::Client,
    /// What the server serves, discovered on first use and shared by every step of this key.
    pub discovery: Arc<discovery::Discovery>,
}

/// Arguments the `provider "kubernetes"` block accepts.
pub const PROVIDER_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "config_path",
        ty: ArgType::String,
        required: false,
        doc:
            "kubeconfig file (default: `KUBECONFIG`, a colon-separated list, else `~/.kube/config`)",
    },
    ArgSpec {
        name: "context",
        ty: ArgType::String,
        required: false,
        doc: "kubeconfig context (default: the kubeconfig's current context)",
    },
    ArgSpec {
        name: "namespace",
        ty: ArgType::String,
        required: false,
        doc: "namespace of steps that name none (default: the context's, else `default`)",
    },
];

/// The `kubernetes` provider: [`KubeClients`] per provider key.
pub struct Kubernetes;

#[async_trait]
impl Provider for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
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
        Vec::new()
    }
}

fn read_kubeconfig(args: &ProviderArgs) -> Result<Kubeconfig, ProviderError> {
    match args.get("config_path").and_then(Json::as_str) {
        Some(path) => Kubeconfig::read_from(Path::new(path)).map_err(|e| {
            ProviderError::new(format!("cannot load kubeconfig `{path}`: {}", chain(&e)))
        }),
        None => Kubeconfig::read().map_err(|e| {
            ProviderError::new(format!(
                "cannot load a kubeconfig (KUBECONFIG or ~/.kube/config): {}",
                chain(&e)
            ))
        }),
    }
}

/// The context and default namespace a provider block resolves to, read from its arguments
/// and the kubeconfig (`default` for what neither names).
pub fn context_and_namespace(args: &ProviderArgs) -> (String, String) {
    let arg = |n: &str| args.get(n).and_then(Json::as_str).map(str::to_string);
    let config = read_kubeconfig(args).ok();
    let context = arg("context")
        .or_else(|| config.as_ref().and_then(|c| c.current_context.clone()))
        .unwrap_or_else(|| "default".to_string());
    let namespace = arg("namespace")
        .or_else(|| {
            config.as_ref().and_then(|c| {
                c.contexts
                    .iter()
                    .find(|n| n.name == context)
                    .and_then(|n| n.context.as_ref())
                    .and_then(|c| c.namespace.clone())
            })
        })
        .unwrap_or_else(|| "default".to_string());
    (context, namespace)
}

/// Builds a client from a provider block's evaluated arguments.
///
/// # Errors
///
/// When the kubeconfig cannot be read, or names no such context, or its credentials cannot be
/// loaded.
pub async fn connect(args: &ProviderArgs) -> Result<KubeClients, ProviderError> {
    let kubeconfig = read_kubeconfig(args)?;
    let (context, namespace) = context_and_namespace(args);
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        cluster: None,
        user: None,
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            ProviderError::new(format!(
                "cannot use kubeconfig context `{context}`: {}",
                chain(&e)
            ))
        })?;
    let client = kube::Client::try_from(config).map_err(|e| {
        ProviderError::new(format!(
            "cannot build a client for context `{context}`: {}",
            chain(&e)
        ))
    })?;
    Ok(KubeClients {
        context,
        namespace,
        client,
        discovery: Arc::default(),
    })
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

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 404)
}

/// Renders an API error: `OPERATION TARGET: the server answered CODE REASON: MESSAGE`.
pub fn api_error(operation: &str, target: &str, e: &kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(r) => ProviderError::new(format!(
            "{operation} {target}: the server answered {} {}: {}",
            r.code, r.reason, r.message
        )),
        other => ProviderError::new(format!("{operation} {target}: {}", chain(other))),
    }
}
