//! The step contract and the registry of step types and data sources.
//!
//! Every step type implements [`StepType`] (modelled on Terraform's provider protocol): a stable
//! target address, a read of the live target, a plan against the predicted state, a prediction
//! of the state after the change, and an apply that waits for convergence. Providers know
//! nothing of the CLI, the graph or the journal.
//!
//! A provider ([`Provider`]) bundles a name, the arguments of its `provider` block, a lazy
//! `connect` that builds its typed clients, and its step types and data sources. The engine
//! reaches clients only through [`StepContext::client`], so it never names a provider.

pub mod aws;
pub mod builtin;
pub mod kubernetes;
pub mod vault;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

/// Evaluated step arguments: a JSON object; values known only after apply carry
/// [`crate::config::eval::UNKNOWN`].
pub type Inputs = serde_json::Map<String, Json>;

/// The type an argument accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A string.
    String,
    /// A number.
    Number,
    /// A whole number >= 0.
    Count,
    /// `true` or `false`.
    Bool,
    /// A list of strings.
    ListOfString,
    /// A string or a list of strings.
    StringOrList,
    /// A map of strings.
    MapOfString,
    /// A duration string such as `"30s"` or `"1h30m"` (see [`builtin::parse_duration`]).
    Duration,
    /// Anything.
    Any,
}

impl ArgType {
    /// Checks a known JSON value against the type; returns what was expected on mismatch.
    pub fn check(self, v: &Json) -> Result<(), &'static str> {
        let ok = match self {
            ArgType::String => v.is_string(),
            ArgType::Number => v.is_number(),
            ArgType::Count => v.as_u64().is_some(),
            ArgType::Bool => v.is_boolean(),
            ArgType::ListOfString => v.as_array().is_some_and(|a| a.iter().all(Json::is_string)),
            ArgType::StringOrList => {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Json::is_string))
            }
            ArgType::MapOfString => v
                .as_object()
                .is_some_and(|m| m.values().all(Json::is_string)),
            ArgType::Duration => v
                .as_str()
                .is_some_and(|s| builtin::parse_duration(s).is_ok()),
            ArgType::Any => true,
        };
        if ok || v.is_null() {
            Ok(())
        } else {
            Err(self.describe())
        }
    }

    /// `a string`, `a whole number`, ...
    pub fn describe(self) -> &'static str {
        match self {
            ArgType::String => "a string",
            ArgType::Number => "a number",
            ArgType::Count => "a whole number",
            ArgType::Bool => "a bool",
            ArgType::ListOfString => "a list of strings",
            ArgType::StringOrList => "a string or a list of strings",
            ArgType::MapOfString => "a map of strings",
            ArgType::Duration => "a duration such as \"30s\" or \"1h30m\"",
            ArgType::Any => "any value",
        }
    }
}

/// One argument a step type, data source or provider block takes.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Argument name.
    pub name: &'static str,
    /// Accepted type.
    pub ty: ArgType,
    /// Whether it must be set.
    pub required: bool,
    /// One line of documentation.
    pub doc: &'static str,
}

/// What a step will do to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing: the target already matches.
    NoOp,
    /// An operation with no persistent desired state (a command, a restart).
    Run,
    /// A new object is created.
    Create,
    /// Fields of an existing object change in place.
    Update,
    /// An object is deleted.
    Delete,
    /// An object is deleted and created again.
    Replace,
}

impl Action {
    /// The plan symbol: `+`, `~`, `-`, `-/+`, `>` or ` `.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Run => ">",
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
        }
    }

    /// Lowercase name as recorded in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoOp => "noop",
            Action::Run => "run",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
        }
    }
}

/// One field of a change: `path: before -> after`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldChange {
    /// Dotted field path, e.g. `scaling_config.desired_size`.
    pub path: String,
    /// The value now (None when the object does not exist yet).
    pub before: Option<Json>,
    /// The value after apply (may be unknown; None when removed).
    pub after: Option<Json>,
}

/// The planned change of one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// Field-level before/after, including unchanged managed fields (before == after).
    pub fields: Vec<FieldChange>,
    /// Human lines describing effects (pods evicted, snapshot created, command run).
    pub summary: Vec<String>,
}

impl Change {
    /// A no-op change with the given managed fields unchanged.
    pub fn noop(fields: Vec<FieldChange>) -> Change {
        Change {
            action: Action::NoOp,
            fields,
            summary: Vec::new(),
        }
    }
}

/// The state of a target as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub enum Current<'a> {
    /// The step type does not read its target.
    NotRead,
    /// The target does not exist.
    Absent,
    /// The observed or predicted state.
    Known(&'a Json),
}

/// Whether the effect of a step that started but did not finish is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDoubt {
    /// The effect is there: mark the step finished.
    Done,
    /// The effect is not there: apply again.
    NotDone,
    /// The step cannot tell, but it is declared safe to repeat: apply again.
    Repeat,
    /// The step cannot tell.
    CannotTell,
}

/// An error from a provider call: what the server or the operation said.
#[derive(Debug, Clone)]
pub struct ProviderError {
    /// The message, including the server's answer.
    pub message: String,
    /// Whether trying again may succeed (throttling, a 5xx answer, a dropped connection):
    /// a step's `retry { on = "transient" }` retries only these.
    pub transient: bool,
}

impl ProviderError {
    /// A new error.
    pub fn new(message: impl Into<String>) -> ProviderError {
        ProviderError {
            message: message.into(),
            transient: false,
        }
    }

    /// A new error that trying again may cure (see [`ProviderError::transient`]).
    pub fn new_transient(message: impl Into<String>) -> ProviderError {
        ProviderError {
            message: message.into(),
            transient: true,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}

/// A connected provider: what [`Provider::connect`] built (the typed clients of one provider
/// key), or why it could not connect. Step types reach it through [`StepContext::client`].
#[derive(Clone)]
pub struct ProviderClient {
    /// The provider key (`aws`, `aws.west`).
    pub key: String,
    /// The clients, or the error connecting gave.
    pub client: Result<Client, ProviderError>,
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderClient")
            .field("key", &self.key)
            .field("connected", &self.client.is_ok())
            .finish()
    }
}

/// What a provider's [`Provider::connect`] returns: its typed clients, behind `Any` so that the
/// engine never names them. Step types downcast through [`StepContext::client`].
pub type Client = Arc<dyn Any + Send + Sync>;

/// What a step sees while it reads or applies.
#[derive(Clone)]
pub struct StepContext {
    /// The step address, e.g. `step.rds_snapshot.before`.
    pub address: String,
    /// The target address.
    pub target: String,
    /// The provider instance, for step types that have one.
    pub provider: Option<ProviderClient>,
    /// How long apply may wait for convergence.
    pub timeout: Duration,
    /// How long a read of the live target may take (for `exec`: its `creates`/`unless`
    /// guard): the step's `timeout` when it sets one, else
    /// [`crate::plan::DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Duration,
    /// The state of the target this step's approved change was planned against: what plan
    /// read (or predicted from earlier steps on the same target), set at apply; None at plan
    /// time and for steps that do not read. A step may make its write conditional on it (an
    /// API precondition such as a resource version), so that a change made between approval
    /// and apply is not silently overwritten.
    pub planned_state: Option<Json>,
    /// Cancelled when the step must stop: its timeout passed, or the run was aborted. A step
    /// that runs something long-lived stops it when this fires and returns an error; apply
    /// then records the step in doubt. Never cancelled at plan time.
    pub cancel: CancellationToken,
    /// What [`StepType::prepare`] chose for this attempt (recorded in the journal's
    /// `step_started` before the step acts): set for `apply` and, on resume, for `in_doubt`
    /// (the value the interrupted attempt recorded). None at plan time and for step types that
    /// prepare nothing.
    pub prepared: Option<Json>,
}

impl StepContext {
    /// The typed clients of this step's provider, e.g. `ctx.client::<aws::AwsClients>()`.
    ///
    /// # Errors
    ///
    /// When the step has no provider, when connecting to it failed (the provider's message),
    /// or when its clients are not a `T`.
    pub fn client<T: Any + Send + Sync>(&self) -> Result<&T, ProviderError> {
        let Some(p) = &self.provider else {
            return Err(ProviderError::new(format!(
                "no provider configured for `{}`",
                self.address
            )));
        };
        match &p.client {
            Ok(c) => c.downcast_ref::<T>().ok_or_else(|| {
                ProviderError::new(format!(
                    "provider `{}` does not provide the clients `{}` needs",
                    p.key, self.address
                ))
            }),
            Err(e) => Err(ProviderError::new(format!(
                "provider `{}`: {}",
                p.key, e.message
            ))),
        }
    }
}

/// Evaluated arguments of a `provider` block (empty for a provider used without a block).
pub type ProviderArgs = serde_json::Map<String, Json>;

/// The provider contract: one per folder under `src/provider/` (`aws/`), listed once in
/// [`providers`]. The engine knows providers only through it.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The name used in `provider "NAME"` blocks and `provider = NAME.ALIAS`.
    fn name(&self) -> &'static str;
    /// The arguments its `provider` block takes; checked like step arguments (unknown,
    /// required, literal types when the graph is built; evaluated types at plan).
    fn args(&self) -> &'static [ArgSpec];
    /// Builds the clients of one provider key from the block's evaluated arguments. Called
    /// lazily, at most once per provider key (name and alias), the first time a data source or
    /// step of that key needs it; the result (success or error) is cached for the run.
    ///
    /// # Errors
    ///
    /// A message when the configuration cannot be loaded (e.g. a missing kubeconfig); every
    /// step of that key then fails with it when it uses the client.
    async fn connect(&self, args: &ProviderArgs) -> Result<Client, ProviderError>;
    /// Its step types.
    fn step_types(&self) -> Vec<Arc<dyn StepType>>;
    /// Its data sources.
    fn data_sources(&self) -> Vec<Arc<dyn DataSourceType>>;
}

/// Every provider opsctl knows. A new provider is one folder under `src/provider/` and one
/// line here.
pub fn providers() -> Vec<Arc<dyn Provider>> {
    vec![
        Arc::new(aws::Aws),
        Arc::new(kubernetes::Kubernetes),
        Arc::new(vault::Vault),
    ]
}

/// Provider settings a target address may depend on (e.g. the AWS region).
#[derive(Debug, Clone, Default)]
pub struct TargetEnv {
    /// The step address.
    pub address: String,
    /// The evaluated provider arguments (`region`, ...), empty for built-in steps.
    pub provider_args: serde_json::Map<String, Json>,
}

/// The step contract. See DESIGN.md "How a step works".
#[async_trait]
pub trait StepType: Send + Sync {
    /// The type name used in `step "TYPE" "NAME"`.
    fn name(&self) -> &'static str;
    /// The provider this type belongs to (`aws`), or None for built-in steps.
    fn provider(&self) -> Option<&'static str>;
    /// The arguments it takes.
    fn args(&self) -> &'static [ArgSpec];
    /// The stable address of the live object it acts on.
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String;
    /// Whether [`StepType::read`] fetches live state (plan reads every such target once).
    fn reads(&self) -> bool {
        false
    }
    /// When several steps of a procedure act on one target, plan reads it once, with the read
    /// of the step whose `read_depth` is highest (the first in order among equals). A step type
    /// whose read fetches more of the same state (a Deployment with its ReplicaSet revisions)
    /// declares a higher depth than one that reads less of it (replicas only), so that every
    /// step on the target plans against the fuller state, and a procedure of shallow steps
    /// pays only for shallow reads. Default 0.
    fn read_depth(&self) -> u8 {
        0
    }
    /// Fetches the current state of the target; None when it does not exist.
    ///
    /// # Errors
    ///
    /// The server's answer when the read fails.
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let _ = (ctx, inputs);
        Ok(None)
    }
    /// The change against the current (observed or predicted) state.
    ///
    /// # Errors
    ///
    /// A message when the inputs cannot be applied to this state.
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String>;
    /// The target's state after the change, so that later steps on the same target plan
    /// against it. None when unknown or not tracked.
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let _ = (inputs, current);
        None
    }
    /// A value the step chooses before it acts (an idempotency key, e.g. the `restartedAt` of a
    /// rollout restart), journaled in `step_started` before the side effect and handed to
    /// [`StepType::apply`] and, on resume, [`StepType::in_doubt`] as
    /// [`StepContext::prepared`], so that resume can tell from the live object whether the
    /// interrupted attempt acted. A step applied again after an in-doubt attempt gets the value
    /// that attempt recorded, not a new one. The value is journaled in clear: never derive it
    /// from a sensitive input. None (the default) chooses nothing.
    fn prepare(&self, inputs: &Inputs) -> Option<Json> {
        let _ = inputs;
        None
    }
    /// [`StepType::prepare`] given also the state the approved change was planned against
    /// ([`StepContext::planned_state`]), for a step whose idempotency key is a property of that
    /// state rather than of its inputs (the uid of an object `kubernetes_delete` deletes). The
    /// same rules apply. Default: [`StepType::prepare`].
    fn prepare_for(&self, inputs: &Inputs, planned: Option<&Json>) -> Option<Json> {
        let _ = planned;
        self.prepare(inputs)
    }
    /// Outputs as known at plan time (unknown markers for values known only after apply).
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        let _ = inputs;
        Json::Object(Default::default())
    }
    /// Outputs of a step that has nothing to do, taken from the observed state of its target
    /// (e.g. the ARN of a snapshot that already exists). None keeps the planned outputs.
    fn outputs_from_state(&self, inputs: &Inputs, state: &Json) -> Option<Json> {
        let _ = (inputs, state);
        None
    }
    /// Performs the change through the real API and waits until it has converged.
    /// Returns the step's outputs.
    ///
    /// # Errors
    ///
    /// The server's answer, a failed command, or a timeout.
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError>;
    /// For a step that started but did not finish: is its effect there? Steps that can read
    /// their target answer from the live state; others cannot tell.
    ///
    /// # Errors
    ///
    /// The server's answer when the check fails.
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        if !self.reads() {
            return Ok(if self.idempotent(inputs) {
                InDoubt::Repeat
            } else {
                InDoubt::CannotTell
            });
        }
        let state = self.read(ctx, inputs).await?;
        let current = match &state {
            Some(s) => Current::Known(s),
            None => Current::Absent,
        };
        Ok(match self.plan(inputs, current) {
            Ok(c) if c.action == Action::NoOp => InDoubt::Done,
            _ => InDoubt::NotDone,
        })
    }
    /// Whether the step is declared safe to repeat.
    fn idempotent(&self, inputs: &Inputs) -> bool {
        let _ = inputs;
        false
    }
    /// Arguments that always carry a secret, whatever they refer to (a KV secret's `data`):
    /// a step that sets one is sensitive exactly as if the argument referred to a `sensitive`
    /// variable (shown as `(sensitive value)`, outputs kept out of the journal, every leaf of
    /// the value redacted from messages; see `plan::Sensitivity`). None by default.
    fn secret_args(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether the step is a gate: it only waits for its target to satisfy a condition
    /// (`kubernetes_wait`) and its `plan` answers `NoOp` when the condition holds now. The
    /// engine then plans it as `Run` all the same when a step it depends on (directly or not)
    /// changes anything, since that change can undo the condition; and apply re-checks a gate
    /// planned as `NoOp`, since time passes between plan and apply. False by default.
    fn gate(&self) -> bool {
        false
    }
}

/// A data source: a read-only lookup evaluated at plan time.
#[async_trait]
pub trait DataSourceType: Send + Sync {
    /// The type name used in `data "TYPE" "NAME"`.
    fn name(&self) -> &'static str;
    /// The provider it belongs to.
    fn provider(&self) -> Option<&'static str>;
    /// The arguments it takes.
    fn args(&self) -> &'static [ArgSpec];
    /// Reads the object; returns its attributes.
    ///
    /// # Errors
    ///
    /// The server's answer, or "not found".
    async fn read(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError>;
    /// Attributes it reads that are secrets themselves (a KV secret's `data`). When there are
    /// any, the data source is sensitive as a whole, exactly like one fed by a `sensitive`
    /// variable (everything that refers to it is sensitive; see `plan::Sensitivity`), and every
    /// leaf of these attributes is redacted from messages. None by default.
    fn secret_attributes(&self) -> &'static [&'static str] {
        &[]
    }
}

/// All providers, step types and data sources opsctl knows.
pub struct Registry {
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
    steps: BTreeMap<&'static str, Arc<dyn StepType>>,
    data: BTreeMap<&'static str, Arc<dyn DataSourceType>>,
}

impl Registry {
    /// The registry of the built-in step types and every provider in [`providers`].
    pub fn standard() -> Registry {
        Registry::with_providers(providers())
    }

    /// The registry of the built-in step types and the given providers' types.
    pub fn with_providers(providers: Vec<Arc<dyn Provider>>) -> Registry {
        let mut r = Registry {
            providers: BTreeMap::new(),
            steps: BTreeMap::new(),
            data: BTreeMap::new(),
        };
        for s in builtin::step_types() {
            r.steps.insert(s.name(), s);
        }
        for p in providers {
            for s in p.step_types() {
                r.steps.insert(s.name(), s);
            }
            for d in p.data_sources() {
                r.data.insert(d.name(), d);
            }
            r.providers.insert(p.name(), p);
        }
        r
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Names of all providers.
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.providers.keys().copied().collect()
    }

    /// A step type by name.
    pub fn step(&self, name: &str) -> Option<&Arc<dyn StepType>> {
        self.steps.get(name)
    }

    /// A data source by name.
    pub fn data(&self, name: &str) -> Option<&Arc<dyn DataSourceType>> {
        self.data.get(name)
    }

    /// Names of all step types.
    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.keys().copied().collect()
    }

    /// Names of all data sources.
    pub fn data_names(&self) -> Vec<&'static str> {
        self.data.keys().copied().collect()
    }
}

/// Reads a string argument.
pub fn arg_str<'a>(inputs: &'a Inputs, name: &str) -> Option<&'a str> {
    inputs.get(name).and_then(Json::as_str)
}

/// Reads an integer argument.
pub fn arg_i64(inputs: &Inputs, name: &str) -> Option<i64> {
    inputs.get(name).and_then(Json::as_i64)
}

/// Reads a bool argument.
pub fn arg_bool(inputs: &Inputs, name: &str) -> Option<bool> {
    inputs.get(name).and_then(Json::as_bool)
}

/// Polls `check` until it returns `Some`, backing off from 0.2 s up to 5 s, until `timeout`.
///
/// # Errors
///
/// The first error `check` returns, or a timeout naming `what`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ProviderError>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(ProviderError::new(format!(
                "timed out after {}s waiting for {what}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A sink for progress lines of steps that wait (see [`report_progress`]).
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

static PROGRESS_SINK: std::sync::RwLock<Option<ProgressSink>> = std::sync::RwLock::new(None);

/// Sets (or with None clears) where [`report_progress`] sends lines: apply sets its
/// `Reporter::notice` for the run, so providers never write to the terminal themselves.
pub fn set_progress_sink(sink: Option<ProgressSink>) {
    *PROGRESS_SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// Reports one progress line of a step that waits (e.g. `step.eks_cluster_version.cp: the
/// upgrade of cluster `prod` to 1.30: UPDATING [40s elapsed]`); dropped when no sink is set
/// (plan, unit tests).
pub fn report_progress(line: &str) {
    let sink = PROGRESS_SINK
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(sink) = sink {
        sink(line);
    }
}
