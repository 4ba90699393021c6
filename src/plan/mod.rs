//! Plan: evaluate the configuration, expand `count`/`for_each` into step instances, read every
//! target once (concurrently, bounded), then walk the instances in dependency order computing
//! each change against the *predicted* state of its target.

pub mod conditions;
pub mod redact;
pub mod vars;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hcl::{Map, Value};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;
use tokio::sync::{OnceCell, Semaphore};

use crate::config::eval::{self, evaluate, from_json, is_unknown, json_is_unknown, to_json, Scope};
use crate::config::refs::{IndexKey, Reference};
use crate::config::{Attr, BlockKind, Config, Diagnostic, Diagnostics, RefRoot};
use crate::graph::{self, ConfigGraph, Node, Writer};
use crate::provider::builtin::parse_duration;
use crate::provider::{
    Action, Change, Current, Inputs, Provider, ProviderArgs, ProviderClient, ProviderError,
    Registry, StepContext, TargetEnv,
};

/// Default time a step may take to apply and converge.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default time a read of a step's target may take (an `exec` guard, for instance) when the
/// step sets no `timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Maximum concurrent reads (and, for apply, concurrent steps).
    pub parallelism: usize,
    /// Whether to talk to the APIs (false for `validate`: data and targets stay unknown).
    pub read: bool,
    /// Outputs of steps already finished in the run being resumed, by step address; for a
    /// sensitive step the journal holds [`sensitive_marker`] instead, and plan derives its
    /// outputs again from its inputs where it can (see [`Instance::sensitive`]).
    pub finished_outputs: HashMap<String, Json>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            parallelism: 10,
            read: true,
            finished_outputs: HashMap::new(),
        }
    }
}

/// An instance key of a counted (`[0]`) or `for_each` (`["key"]`) block.
pub type InstanceKey = IndexKey;

/// One step instance and its planned change.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `step.TYPE.NAME`, `step.TYPE.NAME[0]` or `step.TYPE.NAME["key"]`.
    pub address: String,
    /// Index into `config.blocks`.
    pub block: usize,
    /// Instance key.
    pub key: Option<InstanceKey>,
    /// The step type name.
    pub type_name: String,
    /// Indices (into [`Plan::instances`]) of the instances it depends on.
    pub deps: Vec<usize>,
    /// Evaluated arguments (unknown values marked).
    pub inputs: Inputs,
    /// Target address.
    pub target: String,
    /// Provider key (`NAME` or `NAME.ALIAS`).
    pub provider: Option<String>,
    /// Apply timeout.
    pub timeout: Duration,
    /// How long a read of its target may take: `timeout` when the block sets one, else
    /// [`DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Duration,
    /// The planned change.
    pub change: Change,
    /// The state the change was planned against (read or predicted), if any.
    pub before: Option<Json>,
    /// Outputs as known at plan time.
    pub planned_outputs: Json,
    /// `each.value` of a `for_each` instance.
    pub each_value: Option<Json>,
    /// Arguments whose value derives from a sensitive value (a `sensitive` variable, or a
    /// local, step or data source fed by one): shown as `(sensitive value)`.
    pub sensitive_args: Vec<String>,
    /// Whether any argument derives from a sensitive value. Then every output of the step is
    /// sensitive too: the journal records [`sensitive_marker`] instead of them, and nothing
    /// prints them.
    pub sensitive: bool,
}

/// What the journal records instead of the outputs (and observed state) of a sensitive step.
pub fn sensitive_marker() -> Json {
    serde_json::json!({ "sensitive": true })
}

/// Whether recorded outputs are [`sensitive_marker`].
pub fn is_sensitive_marker(v: &Json) -> bool {
    *v == sensitive_marker()
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Steps that run an operation.
    pub run: usize,
    /// Steps that create, update, delete or replace.
    pub change: usize,
    /// Steps with nothing to do.
    pub unchanged: usize,
}

/// A computed plan.
pub struct Plan {
    /// The configuration it came from.
    pub config: Arc<Config>,
    /// Variable values.
    pub variables: Map<String, Value>,
    /// Step instances, dependencies first.
    pub instances: Vec<Instance>,
    /// Local values as known at plan time.
    pub locals: HashMap<String, Value>,
    /// Data source values by address.
    pub data: HashMap<String, Value>,
    /// Outputs as known at plan time: (name, value, sensitive).
    pub outputs: Vec<(String, Value, bool)>,
    /// `config.blocks` index by block address (`step.T.N`).
    block_index: HashMap<String, usize>,
    /// For each block, the indices of its instances in `instances`.
    block_instances: Vec<Vec<usize>>,
    /// Secrets to scrub from messages: sensitive variable values, and values derived from
    /// them (sensitive arguments and outputs, including those of steps finished during apply).
    redactor: RwLock<redact::Redactor>,
    /// On resume: steps finished in an earlier attempt whose sensitive outputs the journal
    /// does not hold and the plan could not derive again, by block address.
    gone: Gone,
    /// When applying a saved plan: the `before` of each step's managed fields, checked
    /// against the live target before the step's side effect (set by `SavedPlan::bind`).
    pub saved: Option<Arc<crate::state::saved_plan::Expected>>,
}

/// Finished sensitive instances whose outputs are (partly) lost, by block address:
/// (instance address, instance key, outputs as derived again, with unknowns where lost).
type Gone = HashMap<String, Vec<(String, Option<IndexKey>, Json)>>;

impl Plan {
    /// Counts of steps by kind of action.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for i in &self.instances {
            match i.change.action {
                Action::NoOp => c.unchanged += 1,
                Action::Run => c.run += 1,
                _ => c.change += 1,
            }
        }
        c
    }

    /// Whether anything would happen.
    pub fn has_changes(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.change.action != Action::NoOp)
    }

    /// Re-evaluates an instance's arguments with the actual outputs of finished steps.
    ///
    /// # Errors
    ///
    /// A diagnostic when an argument cannot be evaluated or is still unknown.
    pub fn reevaluate(
        &self,
        idx: usize,
        outputs: &HashMap<String, Json>,
    ) -> Result<Inputs, Diagnostic> {
        let inst = &self.instances[idx];
        let block = &self.config.blocks[inst.block];
        let scope = ApplyScope {
            plan: self,
            outputs,
            count: match &inst.key {
                Some(IndexKey::Int(i)) if block.count.is_some() => Some(*i),
                _ => None,
            },
            each: self.each_of(inst),
        };
        let mut inputs = Inputs::new();
        for a in &block.args {
            let v = evaluate(a, &scope)?;
            if is_unknown(&v) {
                if let Some(d) = needs_gone_output(&inst.address, a, &self.config, &self.gone) {
                    return Err(d);
                }
                return Err(Diagnostic::error(format!(
                    "argument `{}` of `{}` is still unknown when the step is due to run",
                    a.name, inst.address
                ))
                .with_span(a.span.clone()));
            }
            inputs.insert(a.name.clone(), to_json(&v));
        }
        Ok(inputs)
    }

    /// Replaces every secret in `text` by `(sensitive value)`, for messages that reach the
    /// terminal or the journal (a failed command line, say): every leaf of every `sensitive`
    /// variable (strings, numbers, bools, in each textual form, see [`redact`]), and the
    /// longer strings derived from them (sensitive arguments, outputs of sensitive steps).
    pub fn redact(&self, text: &str) -> String {
        self.redactor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .redact(text)
    }

    /// Adds the outputs of a sensitive step, known only now that it ran, to the secrets
    /// [`Plan::redact`] scrubs.
    pub fn add_derived_secrets(&self, outputs: &Json) {
        self.redactor
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add_json(outputs, redact::Leaves::LongStrings);
    }

    /// Evaluates an expression (an output) with the actual outputs of finished steps.
    ///
    /// # Errors
    ///
    /// A diagnostic when it cannot be evaluated.
    pub fn evaluate_with_outputs(
        &self,
        attr: &Attr,
        outputs: &HashMap<String, Json>,
    ) -> Result<Value, Diagnostic> {
        let scope = ApplyScope {
            plan: self,
            outputs,
            count: None,
            each: None,
        };
        evaluate(attr, &scope)
    }

    fn each_of(&self, inst: &Instance) -> Option<(Value, Value)> {
        let block = &self.config.blocks[inst.block];
        block.for_each.as_ref()?;
        match &inst.key {
            Some(IndexKey::Str(k)) => {
                let value = inst
                    .each_value
                    .as_ref()
                    .map(from_json)
                    .unwrap_or_else(|| Value::String(k.clone()));
                Some((Value::String(k.clone()), value))
            }
            _ => None,
        }
    }
}

/// Errors of planning: configuration or evaluation diagnostics, or failed reads.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Configuration, evaluation, validation or provider diagnostics (sources attached).
    #[error("{0}")]
    Diagnostics(Diagnostics),
}

impl From<Diagnostics> for PlanError {
    fn from(d: Diagnostics) -> Self {
        PlanError::Diagnostics(d)
    }
}

/// Lazily connected providers, one connection per provider key (`NAME` or `NAME.ALIAS`),
/// made the first time a step or data source of that key needs it.
#[derive(Default)]
pub struct Providers {
    cells: std::sync::Mutex<HashMap<String, Arc<OnceCell<ProviderClient>>>>,
    args: HashMap<String, ProviderArgs>,
    kinds: HashMap<&'static str, Arc<dyn Provider>>,
}

impl Providers {
    /// The registry's providers, configured from evaluated provider block arguments (by key).
    pub fn new(registry: &Registry, args: HashMap<String, ProviderArgs>) -> Providers {
        Providers {
            cells: Default::default(),
            args,
            kinds: registry
                .provider_names()
                .into_iter()
                .filter_map(|n| registry.provider(n).map(|p| (n, p.clone())))
                .collect(),
        }
    }

    /// The evaluated provider block arguments, by provider key (for a saved plan).
    pub fn args(&self) -> &HashMap<String, ProviderArgs> {
        &self.args
    }

    /// The connected provider for `key` (`NAME`, `NAME.ALIAS`), connected on first use; a
    /// failed connection is cached too and reported by [`StepContext::client`].
    pub async fn client(&self, key: &str) -> ProviderClient {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(key.to_string()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let name = key.split_once('.').map_or(key, |(n, _)| n);
            let client = match self.kinds.get(name) {
                Some(p) => {
                    let args = self.args.get(key).cloned().unwrap_or_default();
                    p.connect(&args).await
                }
                None => Err(ProviderError::new(format!("unknown provider `{name}`"))),
            };
            ProviderClient {
                key: key.to_string(),
                client,
            }
        })
        .await
        .clone()
    }

    /// A step context for an instance.
    pub async fn context(&self, inst: &Instance) -> StepContext {
        let provider = match &inst.provider {
            Some(key) => Some(self.client(key).await),
            None => None,
        };
        StepContext {
            address: inst.address.clone(),
            target: inst.target.clone(),
            provider,
            timeout: inst.timeout,
            read_timeout: inst.read_timeout,
            planned_state: None,
            cancel: Default::default(),
            prepared: None,
        }
    }
}

struct PlanScope<'a> {
    vars: &'a Map<String, Value>,
    locals: &'a HashMap<String, Value>,
    blocks: &'a HashMap<String, Value>,
    count: Option<u64>,
    each: Option<(Value, Value)>,
}

impl Scope for PlanScope<'_> {
    fn var(&self, name: &str) -> Option<Value> {
        self.vars.get(name).cloned()
    }
    fn local(&self, name: &str) -> Option<Value> {
        self.locals.get(name).cloned()
    }
    fn block(&self, address: &str) -> Option<Value> {
        self.blocks.get(address).cloned()
    }
    fn count_index(&self) -> Option<u64> {
        self.count
    }
    fn each(&self) -> Option<(Value, Value)> {
        self.each.clone()
    }
}

/// Scope at apply time: block values from actual outputs, locals re-evaluated when their plan
/// value was unknown.
struct ApplyScope<'a> {
    plan: &'a Plan,
    outputs: &'a HashMap<String, Json>,
    count: Option<u64>,
    each: Option<(Value, Value)>,
}

impl Scope for ApplyScope<'_> {
    fn var(&self, name: &str) -> Option<Value> {
        self.plan.variables.get(name).cloned()
    }
    fn local(&self, name: &str) -> Option<Value> {
        let planned = self.plan.locals.get(name)?;
        if !is_unknown(planned) {
            return Some(planned.clone());
        }
        let def = self
            .plan
            .config
            .locals
            .iter()
            .find(|l| l.attr.name == name)?;
        let inner = ApplyScope {
            plan: self.plan,
            outputs: self.outputs,
            count: None,
            each: None,
        };
        evaluate(&def.attr, &inner).ok()
    }
    fn block(&self, address: &str) -> Option<Value> {
        if address.starts_with("data.") {
            return self.plan.data.get(address).cloned();
        }
        let bi = *self.plan.block_index.get(address)?;
        let block = &self.plan.config.blocks[bi];
        let insts: Vec<&Instance> = self.plan.block_instances[bi]
            .iter()
            .map(|&i| &self.plan.instances[i])
            .collect();
        let value_of = |inst: &Instance| {
            let outputs = self
                .outputs
                .get(&inst.address)
                .unwrap_or(&inst.planned_outputs);
            instance_value(&inst.inputs, outputs)
        };
        Some(if block.count.is_some() {
            Value::Array(insts.iter().map(|i| value_of(i)).collect())
        } else if block.for_each.is_some() {
            Value::Object(
                insts
                    .iter()
                    .map(|i| match &i.key {
                        Some(IndexKey::Str(k)) => (k.clone(), value_of(i)),
                        _ => (String::new(), value_of(i)),
                    })
                    .collect(),
            )
        } else {
            insts.first().map(|i| value_of(i)).unwrap_or(Value::Null)
        })
    }
    fn count_index(&self) -> Option<u64> {
        self.count
    }
    fn each(&self) -> Option<(Value, Value)> {
        self.each.clone()
    }
}

/// A step's value as seen by references: its inputs overlaid with its outputs.
fn instance_value(inputs: &Inputs, outputs: &Json) -> Value {
    let mut map = Map::new();
    for (k, v) in inputs {
        map.insert(k.clone(), from_json(v));
    }
    if let Json::Object(o) = outputs {
        for (k, v) in o {
            map.insert(k.clone(), from_json(v));
        }
    }
    Value::Object(map)
}

fn diag_at(msg: String, span: &crate::config::Span) -> Diagnostic {
    Diagnostic::error(msg).with_span(span.clone())
}

fn eval_meta_timeout(
    attr: &Option<Attr>,
    scope: &dyn Scope,
    lenient: bool,
) -> Result<Duration, Diagnostic> {
    let Some(a) = attr else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let timeout = match evaluate(a, scope)? {
        v if lenient && is_unknown(&v) => return Ok(DEFAULT_TIMEOUT),
        Value::String(s) if !s.contains(eval::UNKNOWN) => parse_duration(&s),
        Value::Number(n) => crate::provider::builtin::duration_from_secs(n.as_f64().unwrap_or(0.0))
            .map_err(|e| format!("invalid duration `{n}`: {e}")),
        _ => {
            return Err(diag_at(
                "`timeout` must be a known duration such as `\"30m\"`".into(),
                &a.span,
            ))
        }
    };
    match timeout {
        Ok(t) if t.is_zero() => Err(diag_at(
            "`timeout` must be longer than zero".into(),
            &a.span,
        )),
        Ok(t) => Ok(t),
        Err(e) => Err(diag_at(format!("invalid `timeout`: {e}"), &a.span)),
    }
}

/// The most instances one `step` or `data` block may expand to (`count`, `for_each`).
pub const MAX_INSTANCES_PER_BLOCK: usize = 10_000;

/// The most step and data instances a procedure may have in all. Plan and apply hold every
/// instance in memory (about 3 KiB each for a `noop`; BENCHMARKS.md measures up to 20,000).
pub const MAX_INSTANCES: usize = 50_000;

fn too_many_instances(
    block: &crate::config::BlockDef,
    meta: &str,
    n: u64,
    span: &crate::config::Span,
) -> Diagnostic {
    diag_at(
        format!(
            "`{meta}` of `{}` asks for {n} instances; a block may have at most {MAX_INSTANCES_PER_BLOCK}",
            block.address()
        ),
        span,
    )
}

/// Expansion of one block: instance keys with their `count.index` / `each`.
/// One instance of an expanded block: its key, `count.index` and `each`.
type Expansion = (Option<IndexKey>, Option<u64>, Option<(Value, Value)>);

/// With `lenient` (validate, where variables may be unknown) an unknown `count` or `for_each`
/// expands to one placeholder instance instead of an error.
fn expand(
    block: &crate::config::BlockDef,
    scope: &dyn Scope,
    lenient: bool,
) -> Result<Vec<Expansion>, Diagnostic> {
    if let Some(c) = &block.count {
        let v = evaluate(c, scope)?;
        if lenient && is_unknown(&v) {
            return Ok(vec![(Some(IndexKey::Int(0)), Some(0), None)]);
        }
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let n = n.ok_or_else(|| {
            if is_unknown(&v) {
                diag_at("`count` depends on a value known only after apply; it must be known at plan time".into(), &c.span)
            } else {
                diag_at(format!("`count` must be a whole number >= 0, got {}", crate::config::types::describe_value(&v)), &c.span)
            }
        })?;
        // Checked before anything is allocated for the instances.
        if n > MAX_INSTANCES_PER_BLOCK as u64 {
            return Err(too_many_instances(block, "count", n, &c.span));
        }
        return Ok((0..n)
            .map(|i| (Some(IndexKey::Int(i)), Some(i), None))
            .collect());
    }
    if let Some(f) = &block.for_each {
        let v = evaluate(f, scope)?;
        if lenient && is_unknown(&v) {
            return Ok(vec![(
                Some(IndexKey::Str("(known after apply)".into())),
                None,
                Some((eval::unknown(), eval::unknown())),
            )]);
        }
        if is_unknown(&v) {
            return Err(diag_at("`for_each` depends on a value known only after apply; it must be known at plan time".into(), &f.span));
        }
        let n = match &v {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if n > MAX_INSTANCES_PER_BLOCK {
            return Err(too_many_instances(block, "for_each", n as u64, &f.span));
        }
        return match v {
            Value::Object(map) => Ok(map
                .into_iter()
                .map(|(k, v)| {
                    (
                        Some(IndexKey::Str(k.clone())),
                        None,
                        Some((Value::String(k), v)),
                    )
                })
                .collect()),
            Value::Array(items) => {
                let mut keys: Vec<String> = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => {
                            if !keys.contains(&s) {
                                keys.push(s)
                            }
                        }
                        other => {
                            return Err(diag_at(
                                format!(
                                    "`for_each` over a set needs strings, got {}",
                                    crate::config::types::describe_value(&other)
                                ),
                                &f.span,
                            ))
                        }
                    }
                }
                keys.sort();
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        (
                            Some(IndexKey::Str(k.clone())),
                            None,
                            Some((Value::String(k.clone()), Value::String(k))),
                        )
                    })
                    .collect())
            }
            other => Err(diag_at(
                format!(
                    "`for_each` must be a map or a set of strings, got {}",
                    crate::config::types::describe_value(&other)
                ),
                &f.span,
            )),
        };
    }
    Ok(vec![(None, None, None)])
}

fn instance_address(base: &str, key: &Option<IndexKey>) -> String {
    match key {
        None => base.to_string(),
        Some(IndexKey::Int(i)) => format!("{base}[{i}]"),
        Some(IndexKey::Str(s)) => format!("{base}[{s:?}]"),
    }
}

/// Computes the plan, in the passes of [`Planner`]: evaluate the configuration in graph order
/// (locals, providers, blocks expanded into instances with their inputs and targets, data
/// sources read), link instances (dependencies, unordered writers), read every distinct
/// target once, plan each change against the predicted state, and evaluate the outputs.
///
/// # Errors
///
/// [`PlanError::Diagnostics`] with every problem found: evaluation errors, argument type
/// errors, unordered writers, failed reads (naming the step, its target and the server's
/// answer), and changes a step cannot make.
pub async fn plan(
    config: Arc<Config>,
    cgraph: Arc<ConfigGraph>,
    registry: &Registry,
    variables: Map<String, Value>,
    opts: &PlanOptions,
) -> Result<(Plan, Arc<Providers>), PlanError> {
    let mut p = Planner::new(&config, &cgraph, registry, &variables, opts);
    p.evaluate_config().await?;
    p.link_instances()?;
    let providers = p.providers();
    let reads = p.read_targets(&providers).await?;
    p.plan_changes(&reads)?;
    let Planner {
        diags,
        locals,
        data,
        instances,
        block_instances,
        sens,
        redactor,
        gone,
        ..
    } = p;
    let block_index = config
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (b.address(), i))
        .collect();
    let plan = Plan {
        config,
        variables,
        instances,
        locals,
        data,
        outputs: Vec::new(),
        block_index,
        block_instances,
        redactor: RwLock::new(redactor),
        gone,
        saved: None,
    };
    let plan = evaluate_outputs(plan, &sens, diags)?;
    // A precondition known false fails the plan; an unknown one waits for apply.
    let pre = plan.plan_preconditions();
    if pre.has_errors() {
        return Err(pre.into());
    }
    Ok((plan, providers))
}

/// Last pass: the `output` blocks, as known now (planned outputs, or observed ones for steps
/// with nothing to do). An output that refers to a sensitive value must say `sensitive`.
fn evaluate_outputs(
    mut plan: Plan,
    sens: &Sensitivity,
    mut diags: Diagnostics,
) -> Result<Plan, PlanError> {
    let known: HashMap<String, Json> = plan
        .instances
        .iter()
        .map(|i| (i.address.clone(), i.planned_outputs.clone()))
        .collect();
    let mut outputs = Vec::new();
    for o in &plan.config.outputs {
        if !o.sensitive && sens.refers(&o.value) {
            diags.push(diag_at(
                format!(
                    "output `{}` refers to a sensitive value; add `sensitive = true` to the output to show it as `(sensitive value)`",
                    o.name
                ),
                &o.value.span,
            ));
            continue;
        }
        match plan.evaluate_with_outputs(&o.value, &known) {
            Ok(v) => outputs.push((o.name.clone(), v, o.sensitive)),
            Err(d) => diags.push(d),
        }
    }
    if diags.has_errors() {
        let redactor = plan.redactor.read().unwrap_or_else(|e| e.into_inner());
        return Err(failed(diags, &plan.config, &redactor));
    }
    plan.outputs = outputs;
    Ok(plan)
}

/// One instance of a block being evaluated: its address, key, `count.index` and `each`.
struct InstanceEval {
    address: String,
    key: Option<IndexKey>,
    count: Option<u64>,
    each: Option<(Value, Value)>,
}

/// The state of one plan, pass by pass. Each pass collects diagnostics; a pass that found
/// errors ends the plan with all of them ([`Planner::check`]).
struct Planner<'a> {
    config: &'a Config,
    cgraph: &'a ConfigGraph,
    registry: &'a Registry,
    variables: &'a Map<String, Value>,
    opts: &'a PlanOptions,
    diags: Diagnostics,
    /// Evaluated locals.
    locals: HashMap<String, Value>,
    /// Values of step and data blocks as references see them, by block address.
    blocks: HashMap<String, Value>,
    /// Values of data source instances, by address.
    data: HashMap<String, Value>,
    /// Evaluated provider block arguments, by provider key.
    provider_args: HashMap<String, ProviderArgs>,
    instances: Vec<Instance>,
    /// For each block, indices of its step instances.
    block_instances: Vec<Vec<usize>>,
    /// Created when the first data source is read, else after the instances are linked.
    providers: Option<Arc<Providers>>,
    /// What is sensitive.
    sens: Sensitivity,
    /// The secrets to scrub from messages.
    redactor: redact::Redactor,
    gone: Gone,
    total_instances: usize,
}

impl<'a> Planner<'a> {
    fn new(
        config: &'a Config,
        cgraph: &'a ConfigGraph,
        registry: &'a Registry,
        variables: &'a Map<String, Value>,
        opts: &'a PlanOptions,
    ) -> Planner<'a> {
        let mut redactor = redact::Redactor::new();
        for v in config.variables.iter().filter(|v| v.sensitive) {
            if let Some(value) = variables.get(&v.name) {
                redactor.add_value(value, redact::Leaves::All);
            }
        }
        Planner {
            config,
            cgraph,
            registry,
            variables,
            opts,
            diags: Diagnostics::default(),
            locals: HashMap::new(),
            blocks: HashMap::with_capacity(config.blocks.len()),
            data: HashMap::new(),
            provider_args: HashMap::new(),
            instances: Vec::with_capacity(config.blocks.len()),
            block_instances: vec![Vec::new(); config.blocks.len()],
            providers: None,
            sens: Sensitivity::new(config),
            redactor,
            gone: Gone::new(),
            total_instances: 0,
        }
    }

    /// The evaluation scope of what has been evaluated so far.
    fn scope(&self, count: Option<u64>, each: Option<(Value, Value)>) -> PlanScope<'_> {
        PlanScope {
            vars: self.variables,
            locals: &self.locals,
            blocks: &self.blocks,
            count,
            each,
        }
    }

    /// Ends the plan when a pass found errors: every diagnostic, sources attached, secrets
    /// scrubbed.
    fn check(&mut self) -> Result<(), PlanError> {
        if self.diags.has_errors() {
            let diags = std::mem::take(&mut self.diags);
            return Err(failed(diags, self.config, &self.redactor));
        }
        Ok(())
    }

    /// The providers, connected lazily (shared with apply).
    fn providers(&mut self) -> Arc<Providers> {
        let (registry, args) = (self.registry, &self.provider_args);
        self.providers
            .get_or_insert_with(|| Arc::new(Providers::new(registry, args.clone())))
            .clone()
    }

    /// Pass 1: evaluates every node in graph order: locals, provider blocks, and step and data
    /// blocks (expanded into instances, data sources read).
    async fn evaluate_config(&mut self) -> Result<(), PlanError> {
        let cgraph = self.cgraph;
        for node in &cgraph.order {
            match *node {
                Node::Local(i) => self.eval_local(i),
                Node::Provider(i) => self.eval_provider(i),
                Node::Block(bi) => self.eval_block(bi).await?,
                Node::Output(_) => {}
            }
        }
        self.check()
    }

    /// A local; one that refers to a sensitive value is sensitive.
    fn eval_local(&mut self, i: usize) {
        let attr = &self.config.locals[i].attr;
        let input = self.config.locals[i].input.as_deref();
        let secret = self.sens.refers(attr) || input.is_some_and(|m| m.sensitive);
        if secret {
            self.sens.names.insert(format!("local.{}", attr.name));
        }
        let result = evaluate(attr, &self.scope(None, None));
        let result = match (input, result) {
            (Some(m), Ok(v)) => crate::config::modules::check_input(m, attr, v),
            (_, r) => r,
        };
        match result {
            Ok(v) => {
                if secret {
                    self.redactor.add_value(&v, redact::Leaves::LongStrings);
                }
                self.locals.insert(attr.name.clone(), v);
            }
            Err(d) => {
                self.diags.push(d);
                self.locals.insert(attr.name.clone(), eval::unknown());
            }
        }
    }

    /// A provider block's arguments, typed by the provider's own table (unknown providers and
    /// arguments were reported when the graph was built). They must be known at plan time.
    fn eval_provider(&mut self, i: usize) {
        let p = &self.config.providers[i];
        let specs = self
            .registry
            .provider(&p.name)
            .map_or(&[][..], |k| k.args());
        let mut args = ProviderArgs::new();
        for a in &p.args {
            let Some(spec) = specs.iter().find(|s| s.name == a.name) else {
                continue;
            };
            let result = evaluate(a, &self.scope(None, None));
            match result {
                Ok(v) if is_unknown(&v) && !self.opts.read => {}
                Ok(v) if is_unknown(&v) => self.diags.push(diag_at(
                    format!("provider argument `{}` must be known at plan time", a.name),
                    &a.span,
                )),
                Ok(v) => {
                    let j = to_json(&v);
                    if let Err(expected) = spec.ty.check(&j) {
                        self.diags.push(diag_at(
                            graph::arg_type_message(&a.name, None, spec.ty, expected, &j),
                            &a.span,
                        ));
                        continue;
                    }
                    args.insert(a.name.clone(), j);
                }
                Err(d) => self.diags.push(d),
            }
        }
        self.provider_args.insert(p.key(), args);
    }

    /// A step or data block: expands `count`/`for_each` into instances, evaluates each
    /// instance's inputs, reads data sources, and records step instances with their targets.
    /// Sets the block's value for later references.
    ///
    /// # Errors
    ///
    /// At once when the procedure grows past [`MAX_INSTANCES`].
    async fn eval_block(&mut self, bi: usize) -> Result<(), PlanError> {
        let config = self.config;
        let block = &config.blocks[bi];
        let base = block.address();
        // A secret must not become an instance key or count (they show in addresses).
        if let Some(meta) = [&block.count, &block.for_each]
            .into_iter()
            .flatten()
            .find(|m| self.sens.refers(m))
        {
            self.diags.push(diag_at(
                format!(
                    "`{}` of `{base}` derives from a sensitive value; instance keys show in addresses, plan and journal, so they cannot be sensitive",
                    meta.name
                ),
                &meta.span,
            ));
            self.blocks.insert(base, eval::unknown());
            return Ok(());
        }
        // Arguments that derive from a sensitive value (the same for every instance), and those
        // its type declares secret whatever they refer to (a KV secret's `data`).
        let (secret_args, secret_attrs): (&[&str], &[&str]) = match block.kind {
            BlockKind::Step => (
                self.registry
                    .step(&block.type_name)
                    .map_or(&[], |t| t.secret_args()),
                &[],
            ),
            BlockKind::Data => (
                &[],
                self.registry
                    .data(&block.type_name)
                    .map_or(&[], |t| t.secret_attributes()),
            ),
        };
        let sensitive_args: Vec<String> = block
            .args
            .iter()
            .filter(|a| self.sens.refers(a) || secret_args.contains(&a.name.as_str()))
            .map(|a| a.name.clone())
            .collect();
        // A data source that reads secrets is sensitive as a whole, like one fed by a secret.
        let secret_source = !secret_attrs.is_empty();
        // A secret argument must not take a variable that is not `sensitive`: the journal
        // records such a variable's value in clear.
        for a in block
            .args
            .iter()
            .filter(|a| secret_args.contains(&a.name.as_str()))
        {
            for r in a.refs.iter().filter(|r| r.root == RefRoot::Var) {
                if !self.sens.is_sensitive(r) {
                    self.diags.push(diag_at(
                        format!(
                            "`{}` of `{base}` is a secret, but `{}` is not declared `sensitive = true`; declare it so, or the journal records its value in clear",
                            a.name,
                            r.subject()
                        ),
                        &a.span,
                    ));
                }
            }
        }
        let mut output_names: HashSet<String> = HashSet::new();
        let expansion = expand(block, &self.scope(None, None), !self.opts.read);
        let expansion = match expansion {
            Ok(e) => e,
            Err(d) => {
                self.diags.push(d);
                self.blocks.insert(base, eval::unknown());
                return Ok(());
            }
        };
        self.total_instances += expansion.len();
        if self.total_instances > MAX_INSTANCES {
            self.diags.push(diag_at(
                format!(
                    "the procedure has more than {MAX_INSTANCES} step and data instances (the limit per procedure) once `{base}` is expanded; split it into several procedures"
                ),
                &block.span,
            ));
            // Stop here: expanding further would only allocate more.
            let mut diags = std::mem::take(&mut self.diags);
            diags.attach_sources(&config.sources);
            return Err(diags.into());
        }
        let mut values: Vec<(Option<IndexKey>, Value)> = Vec::with_capacity(expansion.len());
        for (key, count, each) in expansion {
            let ie = InstanceEval {
                address: instance_address(&base, &key),
                key,
                count,
                each,
            };
            let Some(inputs) = self.eval_inputs(block, &ie) else {
                values.push((ie.key, eval::unknown()));
                continue;
            };
            let provider_key = self.cgraph.block_provider[bi].clone();
            let value = match block.kind {
                BlockKind::Data => {
                    self.read_data(
                        block,
                        &ie,
                        inputs,
                        provider_key,
                        (!sensitive_args.is_empty(), secret_attrs),
                    )
                    .await
                }
                BlockKind::Step => self.add_step_instance(
                    bi,
                    &ie,
                    inputs,
                    provider_key,
                    (&sensitive_args, secret_args),
                    &mut output_names,
                ),
            };
            values.push((ie.key, value));
        }
        if !sensitive_args.is_empty() || secret_source {
            self.sens.blocks.insert(
                base.clone(),
                SensitiveBlock {
                    data: block.kind == BlockKind::Data,
                    args: block.args.iter().map(|a| a.name.clone()).collect(),
                    sensitive_args: sensitive_args.iter().cloned().collect(),
                    outputs: output_names,
                },
            );
        }
        let block_value = if block.count.is_some() {
            Value::Array(values.into_iter().map(|(_, v)| v).collect())
        } else if block.for_each.is_some() {
            Value::Object(
                values
                    .into_iter()
                    .map(|(k, v)| match k {
                        Some(IndexKey::Str(s)) => (s, v),
                        _ => (String::new(), v),
                    })
                    .collect(),
            )
        } else {
            values.pop().map(|(_, v)| v).unwrap_or(Value::Null)
        };
        self.blocks.insert(base, block_value);
        Ok(())
    }

    /// The inputs of one instance, each checked against its type's argument table. None when
    /// an argument failed (reported), or needs an output lost on resume.
    fn eval_inputs(
        &mut self,
        block: &crate::config::BlockDef,
        ie: &InstanceEval,
    ) -> Option<Inputs> {
        let config = self.config;
        let address = &ie.address;
        let mut inputs = Inputs::new();
        let mut ok = true;
        let arg_specs = match block.kind {
            BlockKind::Step => self.registry.step(&block.type_name).map(|t| t.args()),
            BlockKind::Data => self.registry.data(&block.type_name).map(|t| t.args()),
        }
        .unwrap_or(&[]);
        let resumed_finished = self.opts.finished_outputs.contains_key(address);
        for a in &block.args {
            let result = evaluate(a, &self.scope(ie.count, ie.each.clone()));
            match result {
                Ok(v) => {
                    if is_unknown(&v) && !resumed_finished {
                        if let Some(d) = needs_gone_output(address, a, config, &self.gone) {
                            self.diags.push(d);
                            ok = false;
                        }
                    }
                    let j = to_json(&v);
                    if !json_is_unknown(&j) {
                        if let Some(spec) = arg_specs.iter().find(|s| s.name == a.name) {
                            if let Err(expected) = spec.ty.check(&j) {
                                self.diags.push(diag_at(
                                    graph::arg_type_message(
                                        &a.name,
                                        Some(address),
                                        spec.ty,
                                        expected,
                                        &j,
                                    ),
                                    &a.span,
                                ));
                                ok = false;
                            }
                        }
                    }
                    if !j.is_null() {
                        inputs.insert(a.name.clone(), j);
                    }
                }
                Err(d) => {
                    self.diags.push(d);
                    ok = false;
                }
            }
        }
        ok.then_some(inputs)
    }

    /// Reads a data source instance (when reading and its inputs are known); returns its value:
    /// its inputs overlaid with what it read, or unknown. `sensitive`: whether an argument
    /// derives from a sensitive value (then its longer strings are redacted, as derived
    /// values), and the attributes its type reads as secrets themselves (every leaf redacted;
    /// not its arguments, such as a secret's path, which name the secret without being it).
    async fn read_data(
        &mut self,
        block: &crate::config::BlockDef,
        ie: &InstanceEval,
        inputs: Inputs,
        provider_key: Option<String>,
        sensitive: (bool, &[&str]),
    ) -> Value {
        let (fed_by_secret, secret_attrs) = sensitive;
        let address = &ie.address;
        let value = if self.opts.read && !crate::config::eval::map_is_unknown(&inputs) {
            let provs = self.providers();
            let ds = self
                .registry
                .data(&block.type_name)
                .expect("validated type");
            let ctx = StepContext {
                address: address.clone(),
                target: String::new(),
                provider: match &provider_key {
                    Some(k) => Some(provs.client(k).await),
                    None => None,
                },
                timeout: DEFAULT_TIMEOUT,
                read_timeout: DEFAULT_READ_TIMEOUT,
                planned_state: None,
                cancel: Default::default(),
                prepared: None,
            };
            match ds.read(&ctx, &inputs).await {
                Ok(v) => from_json(&v),
                Err(e) => {
                    self.diags
                        .push(diag_at(format!("reading `{address}`: {e}"), &block.span));
                    eval::unknown()
                }
            }
        } else {
            eval::unknown()
        };
        let mut merged = instance_value(&inputs, &Json::Null);
        if let (Value::Object(m), Value::Object(v)) = (&mut merged, &value) {
            m.extend(v.clone());
        } else if is_unknown(&value) {
            merged = eval::unknown();
        }
        if fed_by_secret {
            self.redactor
                .add_value(&merged, redact::Leaves::LongStrings);
        }
        if let Value::Object(read) = &value {
            for a in secret_attrs {
                if let Some(v) = read.get(*a) {
                    self.redactor.add_value(v, redact::Leaves::All);
                }
            }
        }
        self.data.insert(address.clone(), merged.clone());
        merged
    }

    /// Records a step instance: its timeout, target and planned outputs (derived again on
    /// resume for a sensitive step finished earlier). `sensitive`: the arguments that derive
    /// from a sensitive value, and those of them its type declares secret themselves (every
    /// leaf redacted). Returns its value for references.
    fn add_step_instance(
        &mut self,
        bi: usize,
        ie: &InstanceEval,
        inputs: Inputs,
        provider_key: Option<String>,
        sensitive: (&[String], &[&str]),
        output_names: &mut HashSet<String>,
    ) -> Value {
        let (sensitive_args, secret_args) = sensitive;
        let config = self.config;
        let block = &config.blocks[bi];
        let address = ie.address.clone();
        let st = self
            .registry
            .step(&block.type_name)
            .expect("validated type");
        let timeout = eval_meta_timeout(
            &block.timeout,
            &self.scope(ie.count, ie.each.clone()),
            !self.opts.read,
        );
        let timeout = match timeout {
            Ok(t) => t,
            Err(d) => {
                self.diags.push(d);
                DEFAULT_TIMEOUT
            }
        };
        let env = TargetEnv {
            address: address.clone(),
            provider_args: provider_key
                .as_ref()
                .and_then(|k| self.provider_args.get(k).cloned())
                .unwrap_or_default(),
        };
        let target = st.target(&env, &inputs);
        let planned_outputs = match self.opts.finished_outputs.get(&address) {
            // The journal holds no sensitive outputs: derive them again from the inputs
            // (re-supplied sensitive variables) where the step type can; what it cannot stays
            // unknown, and a step still to run that needs it is refused (`needs_gone_output`).
            Some(o) if is_sensitive_marker(o) => {
                let mut derived = st.planned_outputs(&inputs);
                if block
                    .args
                    .iter()
                    .any(|a| calls_impure(a, config, &mut HashSet::new()))
                {
                    // `timestamp()` would derive another value than the one the step ran with.
                    if let Json::Object(o) = &mut derived {
                        for v in o.values_mut() {
                            *v = Json::String(eval::UNKNOWN.into());
                        }
                    }
                }
                if json_is_unknown(&derived) {
                    self.gone.entry(block.address()).or_default().push((
                        address.clone(),
                        ie.key.clone(),
                        derived.clone(),
                    ));
                }
                derived
            }
            Some(o) => o.clone(),
            None => st.planned_outputs(&inputs),
        };
        if !sensitive_args.is_empty() {
            for a in sensitive_args {
                if let Some(v) = inputs.get(a) {
                    let leaves = if secret_args.contains(&a.as_str()) {
                        redact::Leaves::All
                    } else {
                        redact::Leaves::LongStrings
                    };
                    self.redactor.add_json(v, leaves);
                }
            }
            self.redactor
                .add_json(&planned_outputs, redact::Leaves::LongStrings);
        }
        if let Json::Object(o) = &planned_outputs {
            output_names.extend(o.keys().cloned());
        }
        let value = instance_value(&inputs, &planned_outputs);
        self.block_instances[bi].push(self.instances.len());
        self.instances.push(Instance {
            address,
            block: bi,
            key: ie.key.clone(),
            type_name: block.type_name.clone(),
            deps: Vec::new(),
            inputs,
            target,
            provider: provider_key,
            timeout,
            read_timeout: if block.timeout.is_some() {
                timeout
            } else {
                DEFAULT_READ_TIMEOUT
            },
            change: Change::noop(Vec::new()),
            before: None,
            planned_outputs,
            each_value: ie.each.as_ref().map(|(_, v)| to_json(v)),
            sensitive: !sensitive_args.is_empty(),
            sensitive_args: sensitive_args.to_vec(),
        });
        value
    }

    /// Pass 2: instance dependencies (from block dependencies and instance keys), then two
    /// instances with the same target and no path between them are refused.
    fn link_instances(&mut self) -> Result<(), PlanError> {
        let config = self.config;
        let cgraph = self.cgraph;
        let instances = &mut self.instances;
        let block_instances = &self.block_instances;
        for idx in 0..instances.len() {
            let bi = instances[idx].block;
            let mut deps = Vec::new();
            for dep in &cgraph.block_deps[bi] {
                if config.blocks[dep.block].kind != BlockKind::Step {
                    continue;
                }
                for &j in &block_instances[dep.block] {
                    if dep.index.is_none() || dep.index == instances[j].key {
                        deps.push(j);
                    }
                }
            }
            if let Some(d) = cgraph.block_deps[bi].iter().find(|d| {
                d.index.is_some()
                    && !block_instances[d.block]
                        .iter()
                        .any(|&j| instances[j].key == d.index)
            }) {
                self.diags.push(diag_at(
                    format!(
                        "`{}` refers to instance {:?} of `{}`, which does not exist",
                        instances[idx].address,
                        d.index
                            .as_ref()
                            .map(|k| match k {
                                IndexKey::Int(i) => i.to_string(),
                                IndexKey::Str(s) => s.clone(),
                            })
                            .unwrap_or_default(),
                        config.blocks[d.block].address()
                    ),
                    &config.blocks[bi].span,
                ));
            }
            deps.sort_unstable();
            deps.dedup();
            instances[idx].deps = deps;
        }
        // Topological order of instances (blocks are already in order; instances of a block
        // follow all instances they depend on).
        let igraph = instance_graph(&self.instances);
        let writers: Vec<Writer<'_>> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.target.contains(eval::UNKNOWN))
            .map(|(n, i)| Writer {
                node: NodeIndex::new(n),
                address: &i.address,
                target: &i.target,
                span: &config.blocks[i.block].span,
            })
            .collect();
        let unordered = graph::unordered_writers(&igraph, &writers, config);
        self.diags.extend(unordered);
        self.check()
    }

    /// Pass 3: reads every distinct target once, concurrently (bounded by `parallelism`);
    /// returns the state of each target (None: it does not exist). Nothing when not reading.
    async fn read_targets(
        &mut self,
        providers: &Arc<Providers>,
    ) -> Result<BTreeMap<String, Option<Json>>, PlanError> {
        let mut reads: BTreeMap<String, Option<Json>> = BTreeMap::new();
        if !self.opts.read {
            return Ok(reads);
        }
        let sem = Arc::new(Semaphore::new(self.opts.parallelism.max(1)));
        let mut set = tokio::task::JoinSet::new();
        // One read per target: that of its deepest reader (`StepType::read_depth`), the first
        // in order among equals.
        let mut reader: HashMap<&str, (u8, usize)> = HashMap::new();
        for (idx, inst) in self.instances.iter().enumerate() {
            let st = self.registry.step(&inst.type_name).expect("validated type");
            if !st.reads() || crate::config::eval::map_is_unknown(&inst.inputs) {
                continue;
            }
            let depth = st.read_depth();
            match reader.get(inst.target.as_str()) {
                Some(&(d, _)) if d >= depth => {}
                _ => {
                    reader.insert(&inst.target, (depth, idx));
                }
            }
        }
        let mut readers: Vec<usize> = reader.into_values().map(|(_, idx)| idx).collect();
        readers.sort_unstable();
        for idx in readers {
            let inst = &self.instances[idx];
            let st = self.registry.step(&inst.type_name).expect("validated type");
            let st = st.clone();
            let sem = sem.clone();
            let providers = providers.clone();
            let inst = inst.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let ctx = providers.context(&inst).await;
                let r = st.read(&ctx, &inst.inputs).await;
                (idx, inst.target, r)
            });
        }
        while let Some(res) = set.join_next().await {
            match res {
                Ok((_, target, Ok(state))) => {
                    reads.insert(target, state);
                }
                Ok((idx, target, Err(e))) => self.diags.push(diag_at(
                    format!("`{}`: reading `{target}`: {e}", self.instances[idx].address),
                    &self.config.blocks[self.instances[idx].block].span,
                )),
                Err(e) => self
                    .diags
                    .push(Diagnostic::error(format!("a read task failed: {e}"))),
            }
        }
        self.check()?;
        Ok(reads)
    }

    /// Pass 4: walks the instances in order, planning each change against the *predicted*
    /// state of its target: what was read, overridden by the `predict` of earlier steps on the
    /// same target.
    fn plan_changes(&mut self, reads: &BTreeMap<String, Option<Json>>) -> Result<(), PlanError> {
        let mut predicted: HashMap<String, Option<Json>> = HashMap::new();
        // Per instance (in order, so dependencies come first): the address of a step it
        // depends on, directly or not, that changes something (for gates, see `StepType::gate`).
        let mut changed_upstream: Vec<Option<String>> = Vec::with_capacity(self.instances.len());
        for i in 0..self.instances.len() {
            let upstream = self.instances[i].deps.iter().find_map(|&d| {
                let dep = &self.instances[d];
                (dep.change.action != Action::NoOp)
                    .then(|| dep.address.clone())
                    .or_else(|| changed_upstream.get(d).cloned().flatten())
            });
            changed_upstream.push(upstream);
            let inst = &mut self.instances[i];
            let st = self.registry.step(&inst.type_name).expect("validated type");
            let state: Option<Option<Json>> = predicted
                .get(&inst.target)
                .cloned()
                .or_else(|| reads.get(&inst.target).cloned());
            let current = match &state {
                Some(Some(s)) => Current::Known(s),
                Some(None) => Current::Absent,
                None => Current::NotRead,
            };
            let plan_inputs = &inst.inputs;
            let finished = self.opts.finished_outputs.contains_key(&inst.address);
            match st.plan(plan_inputs, current) {
                Ok(change) => {
                    inst.change = if finished {
                        Change {
                            action: Action::NoOp,
                            fields: change.fields,
                            summary: vec!["finished in the run being resumed".into()],
                        }
                    } else {
                        change
                    };
                }
                Err(msg) => {
                    self.diags.push(diag_at(
                        format!("`{}` on `{}`: {msg}", inst.address, inst.target),
                        &self.config.blocks[inst.block].span,
                    ));
                    continue;
                }
            }
            if st.gate() && inst.change.action == Action::NoOp && !finished {
                if let Some(up) = &changed_upstream[i] {
                    inst.change.action = Action::Run;
                    inst.change.summary.push(format!(
                        "runs all the same: it comes after `{up}`, which changes something"
                    ));
                }
            }
            if inst.change.action == Action::NoOp && !finished {
                if let Some(Some(observed)) = &state {
                    if let Some(o) = st.outputs_from_state(plan_inputs, observed) {
                        inst.planned_outputs = o;
                    }
                }
            }
            inst.before = state.clone().flatten();
            if let Some(next) = st.predict(plan_inputs, current) {
                predicted.insert(inst.target.clone(), Some(next));
            } else if state.is_some() {
                predicted.insert(inst.target.clone(), state.flatten());
            }
        }
        self.check()
    }
}

/// Diagnostics of a failed plan, sources attached and secrets scrubbed from their messages
/// (an evaluation error may quote a value).
fn failed(mut diags: Diagnostics, config: &Config, redactor: &redact::Redactor) -> PlanError {
    if !redactor.is_empty() {
        for d in &mut diags.0 {
            d.message = redactor.redact(&d.message);
            for n in &mut d.notes {
                *n = redactor.redact(n);
            }
        }
    }
    diags.attach_sources(&config.sources);
    diags.into()
}

/// What derives from a sensitive value, found from references (so that `validate` knows it
/// without values): variables declared `sensitive`, locals that refer to a sensitive value,
/// and steps and data sources with an argument that does.
struct Sensitivity {
    /// `var.X` and `local.Y` addresses.
    names: HashSet<String>,
    /// Step and data blocks fed by a sensitive value, by block address.
    blocks: HashMap<String, SensitiveBlock>,
}

/// A step or data block with an argument that derives from a sensitive value.
struct SensitiveBlock {
    /// A data source: all of its attributes are sensitive.
    data: bool,
    /// Names of all of its arguments.
    args: HashSet<String>,
    /// Names of the arguments that derive from a sensitive value.
    sensitive_args: HashSet<String>,
    /// Names of its outputs (all sensitive).
    outputs: HashSet<String>,
}

impl Sensitivity {
    fn new(config: &Config) -> Sensitivity {
        Sensitivity {
            names: config
                .variables
                .iter()
                .filter(|v| v.sensitive)
                .map(|v| format!("var.{}", v.name))
                .collect(),
            blocks: HashMap::new(),
        }
    }

    /// Whether an expression refers to a sensitive value.
    fn refers(&self, attr: &Attr) -> bool {
        attr.refs.iter().any(|r| self.is_sensitive(r))
    }

    /// Whether a reference is to a sensitive value. Of a step fed by a secret, every output
    /// is sensitive, and so is the whole object; an argument that does not derive from the
    /// secret (and is not also an output) is not.
    fn is_sensitive(&self, r: &Reference) -> bool {
        match r.root {
            RefRoot::Var | RefRoot::Local => self.names.contains(&r.subject()),
            RefRoot::Step | RefRoot::Data => match self.blocks.get(&r.subject()) {
                None => false,
                Some(b) => match r.parts.get(3) {
                    None => true,
                    Some(attr) => {
                        b.data
                            || b.sensitive_args.contains(attr)
                            || b.outputs.contains(attr)
                            || !b.args.contains(attr)
                    }
                },
            },
            _ => false,
        }
    }
}

/// On resume: the error when argument `attr` of step `consumer` (still to run) needs an output
/// of a step finished in an earlier attempt that the journal does not hold (it derives from a
/// sensitive value) and the plan could not derive again. Follows locals.
fn needs_gone_output(
    consumer: &str,
    attr: &Attr,
    config: &Config,
    gone: &Gone,
) -> Option<Diagnostic> {
    if gone.is_empty() {
        return None;
    }
    let mut seen = HashSet::new();
    let (span, needed, producer) = find_gone(attr, config, gone, &mut seen)?;
    Some(diag_at(
        format!(
            "`{consumer}` needs `{needed}`, an output of `{producer}`, which finished in an earlier attempt of this run; \
             it derives from a sensitive value, so the journal does not hold it, and it cannot be derived again from the variables. \
             To run `{producer}` again, start a new run with `opsctl apply --discard-unfinished`"
        ),
        span,
    ))
}

/// Functions whose result changes from one evaluation to the next.
const IMPURE_FUNCTIONS: &[&str] = &["timestamp"];

/// Whether `attr` calls an impure function, directly or through locals.
fn calls_impure(attr: &Attr, config: &Config, seen: &mut HashSet<String>) -> bool {
    attr.functions
        .iter()
        .any(|(f, _)| IMPURE_FUNCTIONS.contains(&f.as_str()))
        || attr.refs.iter().any(|r| {
            r.root == RefRoot::Local
                && r.parts.get(1).is_some_and(|name| {
                    seen.insert(name.clone())
                        && config
                            .locals
                            .iter()
                            .find(|l| &l.attr.name == name)
                            .is_some_and(|l| calls_impure(&l.attr, config, seen))
                })
        })
}

/// The first reference of `attr` (directly or through locals) to a lost output: (where it is
/// written in `attr`, the reference, the instance that produced the output).
fn find_gone<'a>(
    attr: &'a Attr,
    config: &Config,
    gone: &Gone,
    seen: &mut HashSet<String>,
) -> Option<(&'a crate::config::Span, String, String)> {
    for r in &attr.refs {
        match r.root {
            RefRoot::Local => {
                let Some(name) = r.parts.get(1) else { continue };
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(local) = config.locals.iter().find(|l| &l.attr.name == name) else {
                    continue;
                };
                if let Some((_, needed, producer)) = find_gone(&local.attr, config, gone, seen) {
                    return Some((&r.span, needed, producer));
                }
            }
            RefRoot::Step => {
                let Some(insts) = gone.get(&r.subject()) else {
                    continue;
                };
                for (address, key, outputs) in insts {
                    if r.index.is_some() && r.index != *key {
                        continue;
                    }
                    let lost = match r.parts.get(3) {
                        None => json_is_unknown(outputs),
                        Some(a) => outputs.get(a).is_some_and(json_is_unknown),
                    };
                    if lost {
                        return Some((&r.span, r.text(), address.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The instance dependency graph: node `i` is `instances[i]`, edges from dependency to
/// dependent.
pub fn instance_graph(instances: &[Instance]) -> DiGraph<(), ()> {
    let mut g = DiGraph::with_capacity(instances.len(), instances.len());
    for _ in instances {
        g.add_node(());
    }
    for (i, inst) in instances.iter().enumerate() {
        for &d in &inst.deps {
            g.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ArgSpec, Client, DataSourceType, ProviderArgs, StepType};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A provider that counts its connections and hands out its key's `name` argument.
    struct Counting(Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl Provider for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn args(&self) -> &'static [ArgSpec] {
            &[]
        }
        async fn connect(&self, args: &ProviderArgs) -> Result<Client, ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match args.get("name").and_then(Json::as_str) {
                Some(n) => Ok(Arc::new(n.to_string())),
                None => Err(ProviderError::new("no name")),
            }
        }
        fn step_types(&self) -> Vec<Arc<dyn StepType>> {
            Vec::new()
        }
        fn data_sources(&self) -> Vec<Arc<dyn DataSourceType>> {
            Vec::new()
        }
    }

    fn ctx(client: ProviderClient) -> StepContext {
        StepContext {
            address: "step.x.y".into(),
            target: String::new(),
            provider: Some(client),
            timeout: DEFAULT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            planned_state: None,
            cancel: Default::default(),
            prepared: None,
        }
    }

    #[tokio::test]
    async fn providers_connect_lazily_once_per_key_and_hand_out_typed_clients() {
        let count = Arc::new(AtomicUsize::new(0));
        let registry = Registry::with_providers(vec![Arc::new(Counting(count.clone()))]);
        let mut args = HashMap::new();
        args.insert(
            "counting".to_string(),
            serde_json::json!({"name": "main"})
                .as_object()
                .unwrap()
                .clone(),
        );
        args.insert(
            "counting.west".to_string(),
            serde_json::json!({"name": "west"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let providers = Providers::new(&registry, args);
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "connects only on first use"
        );
        let a = ctx(providers.client("counting").await);
        let _ = providers.client("counting").await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(a.client::<String>().unwrap(), "main");
        let w = ctx(providers.client("counting.west").await);
        assert_eq!(w.client::<String>().unwrap(), "west");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(a.client::<u32>().is_err(), "wrong client type is an error");
        // A failed connection is cached and reported when the client is used.
        let bad = ctx(providers.client("counting.none").await);
        let _ = providers.client("counting.none").await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        let err = bad.client::<String>().unwrap_err().to_string();
        assert_eq!(err, "provider `counting.none`: no name");
    }
}
