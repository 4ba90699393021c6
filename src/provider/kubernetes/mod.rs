//! The Kubernetes provider: `kubernetes_cordon`, `kubernetes_uncordon`, `kubernetes_drain`,
//! `kubernetes_manifest`, `kubernetes_patch`,
//! `kubernetes_scale`, `kubernetes_rollout_restart`, `kubernetes_rollout_undo` and
//! `kubernetes_set_image`, `kubernetes_wait`, `kubernetes_job`, `kubernetes_delete`,
//! `kubernetes_annotate`, `kubernetes_label` and data sources `kubernetes_nodes`, `_pods`,
//! `_objects`, `_object` through the `kube` crate (rustls). Connects as kubectl does (see [`source`]): the block's
//! `config_path`, else `KUBECONFIG` (a colon-separated list, missing files skipped, merged) or
//! `~/.kube/config`, with its `context` and `namespace` overriding the kubeconfig's current
//! context and that context's namespace; with no kubeconfig and `KUBERNETES_SERVICE_HOST` set
//! (in a pod), the pod's service account. Credentials: whatever the kubeconfig user holds that
//! `kube::Config::from_custom_kubeconfig` loads — bearer token (or token file), client
//! certificate and key, exec plugin (`client.authentication.k8s.io` ExecCredential), basic auth.

mod data;
mod delete;
pub mod discovery;
mod drain;
mod job;
mod manifest;
mod metadata;
mod node;
mod object;
mod patch;
pub mod rollout;
mod scale;
mod wait;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value as Json;

use super::{
    Action, ArgSpec, ArgType, Change, Client, Current, DataSourceType, Inputs, Provider,
    ProviderArgs, ProviderError, StepContext, StepType,
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
        Arc::new(manifest::Manifest),
        Arc::new(patch::KubePatch),
        Arc::new(wait::Wait),
        Arc::new(job::Job),
        Arc::new(delete::Delete),
        Arc::new(metadata::Metadata {
            field: "annotations",
        }),
        Arc::new(metadata::Metadata { field: "labels" }),
    ]
}

/// The Kubernetes data sources.
pub fn data_sources() -> Vec<Arc<dyn DataSourceType>> {
    vec![
        Arc::new(data::Nodes),
        Arc::new(data::Pods),
        Arc::new(data::Objects),
        Arc::new(data::Object),
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
        data_sources()
    }
}

/// Where a provider block's cluster configuration comes from, in kubectl's order
/// (client-go `ClientConfigLoadingRules.Load` and `DeferredLoadingClientConfig.ClientConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The block's `config_path`: that file, which must exist.
    Path(PathBuf),
    /// `KUBECONFIG`: the files of the list that exist, merged (the first to set a value wins);
    /// missing files are skipped, as kubectl does.
    List(Vec<PathBuf>),
    /// `~/.kube/config`.
    Home(PathBuf),
    /// No kubeconfig and `KUBERNETES_SERVICE_HOST` set: the pod's service account
    /// (`/var/run/secrets/kubernetes.io/serviceaccount/`), context [`IN_CLUSTER`].
    InCluster,
    /// None of the above: names what was looked for.
    Nothing(String),
}

/// The context name of an in-cluster configuration, as used in target addresses.
pub const IN_CLUSTER: &str = "in-cluster";

/// Where the configuration comes from, given the block's `config_path`, the value of
/// `KUBECONFIG`, the home directory and whether `KUBERNETES_SERVICE_HOST` is set. Looks only at
/// which files exist.
pub fn source(
    config_path: Option<&str>,
    kubeconfig_env: Option<&OsStr>,
    home: Option<&Path>,
    service_host: bool,
) -> Source {
    if let Some(p) = config_path {
        return Source::Path(PathBuf::from(p));
    }
    let mut looked = Vec::new();
    let listed: Vec<PathBuf> = kubeconfig_env
        .map(|v| {
            std::env::split_paths(v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        let existing: Vec<PathBuf> = listed.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Source::List(existing);
        }
        looked.push(format!(
            "none of the files in KUBECONFIG exists ({})",
            listed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if let Some(home) = home {
        let p = home.join(".kube").join("config");
        if p.exists() {
            return Source::Home(p);
        }
        looked.push(format!("no KUBECONFIG and no `{}`", p.display()));
    } else {
        looked.push("no KUBECONFIG and no home directory".to_string());
    }
    if service_host {
        return Source::InCluster;
    }
    looked.push("not in a pod (KUBERNETES_SERVICE_HOST is not set)".to_string());
    Source::Nothing(looked.join("; "))
}

/// A loaded configuration: a kubeconfig, or an in-cluster one.
#[derive(Clone)]
enum Loaded {
    Kubeconfig(Arc<Kubeconfig>),
    InCluster(Arc<kube::Config>),
}

/// What decides where the configuration comes from: `config_path`, `KUBECONFIG`, `HOME`,
/// whether `KUBERNETES_SERVICE_HOST` is set.
type LoadKey = (
    Option<String>,
    Option<std::ffi::OsString>,
    Option<PathBuf>,
    bool,
);

/// Loaded configurations by what decides their source, so that computing the target of each
/// of 10,000 steps neither looks for nor parses the kubeconfig 10,000 times.
static LOADED: OnceLock<Mutex<HashMap<LoadKey, Result<Loaded, String>>>> = OnceLock::new();

fn load(args: &ProviderArgs) -> Result<Loaded, ProviderError> {
    let key: LoadKey = (
        args.get("config_path")
            .and_then(Json::as_str)
            .map(str::to_string),
        std::env::var_os("KUBECONFIG"),
        std::env::var_os("HOME").map(PathBuf::from),
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    );
    let cache = LOADED.get_or_init(Default::default);
    if let Some(l) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return l.clone().map_err(ProviderError::new);
    }
    let src = source(key.0.as_deref(), key.1.as_deref(), key.2.as_deref(), key.3);
    let loaded = load_source(&src);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, loaded.clone());
    loaded.map_err(ProviderError::new)
}

fn load_source(src: &Source) -> Result<Loaded, String> {
    let read = |p: &Path| {
        Kubeconfig::read_from(p)
            .map_err(|e| format!("cannot load kubeconfig `{}`: {}", p.display(), chain(&e)))
    };
    let config = match src {
        Source::Path(p) | Source::Home(p) => read(p)?,
        Source::List(paths) => {
            let mut merged = Kubeconfig::default();
            for p in paths {
                merged = merged.merge(read(p)?).map_err(|e| {
                    format!("cannot merge kubeconfig `{}`: {}", p.display(), chain(&e))
                })?;
            }
            merged
        }
        Source::InCluster => {
            return kube::Config::incluster()
                .map(|c| Loaded::InCluster(Arc::new(c)))
                .map_err(|e| {
                    format!(
                        "no kubeconfig, and the in-cluster configuration (KUBERNETES_SERVICE_HOST) cannot be loaded: {}",
                        chain(&e)
                    )
                })
        }
        Source::Nothing(why) => return Err(format!("no Kubernetes configuration: {why}")),
    };
    Ok(Loaded::Kubeconfig(Arc::new(config)))
}

/// The context and default namespace a provider block resolves to, read from its arguments
/// and the kubeconfig (`default` for what neither names; for an in-cluster configuration,
/// context [`IN_CLUSTER`] and the service account's namespace). The kubeconfig is read once
/// per process and source.
pub fn context_and_namespace(args: &ProviderArgs) -> (String, String) {
    let arg = |n: &str| args.get(n).and_then(Json::as_str).map(str::to_string);
    let loaded = load(args).ok();
    let context = arg("context")
        .or_else(|| match &loaded {
            Some(Loaded::Kubeconfig(c)) => c.current_context.clone(),
            Some(Loaded::InCluster(_)) => Some(IN_CLUSTER.to_string()),
            None => None,
        })
        .unwrap_or_else(|| "default".to_string());
    let namespace = arg("namespace")
        .or_else(|| match &loaded {
            Some(Loaded::Kubeconfig(c)) => c
                .contexts
                .iter()
                .find(|n| n.name == context)
                .and_then(|n| n.context.as_ref())
                .and_then(|c| c.namespace.clone()),
            Some(Loaded::InCluster(c)) => Some(c.default_namespace.clone()),
            None => None,
        })
        .unwrap_or_else(|| "default".to_string());
    (context, namespace)
}

/// Builds a client from a provider block's evaluated arguments: from the kubeconfig (see
/// [`source`]) with its bearer token, client certificate or exec plugin, as
/// `kube::Config::from_custom_kubeconfig` loads them, or in a pod from its service account
/// (`kube::Config::incluster`).
///
/// # Errors
///
/// When no configuration is found, the kubeconfig cannot be read, or names no such context,
/// or its credentials cannot be loaded.
pub async fn connect(args: &ProviderArgs) -> Result<KubeClients, ProviderError> {
    let loaded = load(args)?;
    let (context, namespace) = context_and_namespace(args);
    let config = match loaded {
        Loaded::Kubeconfig(kubeconfig) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                cluster: None,
                user: None,
            };
            kube::Config::from_custom_kubeconfig((*kubeconfig).clone(), &options)
                .await
                .map_err(|e| {
                    ProviderError::new(format!(
                        "cannot use kubeconfig context `{context}`: {}",
                        chain(&e)
                    ))
                })?
        }
        Loaded::InCluster(config) => (*config).clone(),
    };
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    // Errors that come without an answer (connection refused, TLS, timeouts) name the server,
    // as kubectl's "The connection to the server HOST was refused" does.
    let name_server = tower::util::MapErrLayer::new(move |e: tower::BoxError| -> tower::BoxError {
        Box::new(Unanswered {
            server: server.clone(),
            source: e,
        })
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| {
            ProviderError::new(format!(
                "cannot build a client for context `{context}`: {}",
                chain(&e)
            ))
        })?
        .with_layer(&name_server)
        .build();
    Ok(KubeClients {
        context,
        namespace,
        client,
        discovery: Arc::default(),
    })
}

/// A request the API server did not answer: the server's URL, then why.
#[derive(Debug)]
struct Unanswered {
    server: String,
    source: tower::BoxError,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer from the API server {}", self.server)
    }
}

impl std::error::Error for Unanswered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
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
/// Marked transient (for `retry { on = "transient" }`) when client-go's `IsTooManyRequests`,
/// `IsServerTimeout`/`IsTimeout`, `IsServiceUnavailable`/`IsInternalError` would hold, or when
/// no answer came (connection, TLS, HTTP errors).
pub fn api_error(operation: &str, target: &str, e: &kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(r) => {
            let message = format!(
                "{operation} {target}: the server answered {} {}: {}",
                r.code, r.reason, r.message
            );
            if matches!(r.code, 429 | 500 | 502 | 503 | 504) {
                ProviderError::new_transient(message)
            } else {
                ProviderError::new(message)
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ProviderError::new_transient(format!("{operation} {target}: {}", chain(e)))
        }
        other => ProviderError::new(format!("{operation} {target}: {}", chain(other))),
    }
}

/// Whether an API error is a 409 (a failed precondition, or an object that already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 409)
}

/// The key of a step's state that holds the object's `metadata.resourceVersion`.
pub const RESOURCE_VERSION: &str = "resource_version";

/// How many times [`write_approved`] writes again after a 409 whose fresh object still yields
/// the approved change (a controller updating the status meanwhile, say).
const CONFLICT_RETRIES: usize = 5;

/// Makes a step's write conditional on the object being as the approved plan read it (what
/// `kubectl scale --resource-version` and kubectl's patch-retry loop do: the
/// `metadata.resourceVersion` precondition of `ScaleSimple`, `RetryOnConflict`).
///
/// `write` is called with the resource version to require (the one in
/// [`StepContext::planned_state`], None when the plan predicted the state instead of reading
/// it). When the server answers 409 Conflict (the object changed since it was read), the step
/// reads the object again and plans against it: if the change is still the approved one (only
/// fields the step does not manage changed, such as the status), `write` is called again with
/// the fresh version; if the object now needs no change, nothing is written; otherwise the
/// write fails, naming what changed and telling to plan again.
///
/// # Errors
///
/// The write's error (through [`api_error`], naming `operation` and `what`), a failed re-read,
/// or a change since approval.
pub async fn write_approved<W, Fut>(
    step: &dyn StepType,
    ctx: &StepContext,
    inputs: &Inputs,
    operation: &str,
    what: &str,
    mut write: W,
) -> Result<(), ProviderError>
where
    W: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let approved = ctx.planned_state.as_ref();
    let mut version = approved
        .and_then(|s| s.get(RESOURCE_VERSION))
        .and_then(Json::as_str)
        .map(str::to_string);
    let mut conflicts = 0;
    loop {
        let e = match write(version.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let (Some(approved), true) = (approved, is_conflict(&e) && version.is_some()) else {
            return Err(api_error(operation, what, &e));
        };
        conflicts += 1;
        let fresh = step.read(ctx, inputs).await?;
        let now = match &fresh {
            Some(s) => step.plan(inputs, Current::Known(s)),
            None => step.plan(inputs, Current::Absent),
        };
        let then = step.plan(inputs, Current::Known(approved));
        match (now, then) {
            (Ok(now), _) if now.action == Action::NoOp => return Ok(()),
            (Ok(now), Ok(then)) if now == then && conflicts <= CONFLICT_RETRIES => {
                version = fresh
                    .as_ref()
                    .and_then(|s| s.get(RESOURCE_VERSION))
                    .and_then(Json::as_str)
                    .map(str::to_string);
            }
            (now, then) => {
                let changed = match (&now, &then) {
                    (Ok(now), Ok(then)) if now != then => {
                        format!("approved: {}; now: {}", fields(then), fields(now))
                    }
                    (Err(msg), _) => format!("now: {msg}"),
                    _ => format!("{conflicts} conflicts in a row"),
                };
                return Err(ProviderError::new(format!(
                    "{}. The object changed since the plan was approved ({changed}): run `opsctl plan` again and apply the new plan (`opsctl apply --resume` continues this run)",
                    api_error(operation, what, &e)
                )));
            }
        }
    }
}

/// `replicas: 3 -> 0, ...` (the fields a change sets).
fn fields(c: &Change) -> String {
    let show = |v: &Option<Json>| v.as_ref().map_or("absent".to_string(), Json::to_string);
    c.fields
        .iter()
        .map(|f| format!("{}: {} -> {}", f.path, show(&f.before), show(&f.after)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_follows_kubectls_order_then_falls_back_to_in_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let missing = dir.path().join("missing");
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".kube")).unwrap();
        let list = std::env::join_paths([&missing, &a, &b]).unwrap();

        // config_path wins over everything, existing or not.
        assert_eq!(
            source(Some("/x/kc"), Some(&list), Some(&home), true),
            Source::Path("/x/kc".into())
        );
        // KUBECONFIG: the files that exist, in order.
        assert_eq!(
            source(None, Some(&list), Some(&home), true),
            Source::List(vec![a.clone(), b.clone()])
        );
        // An empty KUBECONFIG is as none; ~/.kube/config only if it exists.
        assert_eq!(
            source(None, Some(OsStr::new("")), Some(&home), false),
            Source::Nothing(format!(
                "no KUBECONFIG and no `{}`; not in a pod (KUBERNETES_SERVICE_HOST is not set)",
                home.join(".kube/config").display()
            ))
        );
        std::fs::write(home.join(".kube/config"), "").unwrap();
        assert_eq!(
            source(None, None, Some(&home), true),
            Source::Home(home.join(".kube/config"))
        );
        // No kubeconfig found: in a pod, the service account.
        let only_missing = std::env::join_paths([&missing]).unwrap();
        assert_eq!(
            source(None, Some(&only_missing), Some(&home), true),
            Source::InCluster
        );
        assert_eq!(source(None, None, None, true), Source::InCluster);
        assert!(matches!(
            source(None, Some(&only_missing), Some(&home), false),
            Source::Nothing(why) if why.contains("none of the files in KUBECONFIG exists")
        ));
    }
}
