//! Configuration -> petgraph DAG of locals, providers, data sources, steps and outputs.
//!
//! Built in ordered passes: index every addressable block, check each block against the
//! registry (known type, known and required arguments, literal argument types), resolve every
//! reference into an edge (unknown references are errors), add `depends_on` edges, then reject
//! cycles naming every member. Also holds [`unordered_writers`], the check that two steps
//! acting on one object are ordered.

use std::collections::{HashMap, HashSet};

use petgraph::algo::{has_path_connecting, tarjan_scc, toposort, DfsSpace};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::config::refs::IndexKey;
use crate::config::{BlockKind, Config, Diagnostic, Diagnostics, RefRoot, Reference, Span};
use crate::provider::Registry;

/// A node of the configuration graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// `config.locals[i]`.
    Local(usize),
    /// `config.providers[i]`.
    Provider(usize),
    /// `config.blocks[i]` (a step or data source).
    Block(usize),
    /// `config.outputs[i]`.
    Output(usize),
}

/// A dependency of a block on another step or data block, with the instance key when the
/// reference names one (`step.t.n[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockDep {
    /// Index into `config.blocks`.
    pub block: usize,
    /// Instance key, or None for every instance.
    pub index: Option<IndexKey>,
}

/// The validated configuration graph.
#[derive(Debug)]
pub struct ConfigGraph {
    /// Edges point from a dependency to its dependent.
    pub graph: DiGraph<Node, ()>,
    /// Every node, dependencies first.
    pub order: Vec<Node>,
    /// For each block, the step and data blocks it depends on, directly or through locals.
    pub block_deps: Vec<Vec<BlockDep>>,
    /// For each block, the provider key it uses (`NAME` or `NAME.ALIAS`), if its type has one.
    pub block_provider: Vec<Option<String>>,
}

/// Builds and validates the graph.
///
/// # Errors
///
/// Every diagnostic found, each with `file:line:col`: unknown step types and arguments, missing
/// arguments, wrongly typed literal arguments, unknown references, unknown providers, cycles.
pub fn build(config: &Config, registry: &Registry) -> Result<ConfigGraph, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut graph = DiGraph::<Node, ()>::with_capacity(
        config.locals.len() + config.blocks.len() + config.outputs.len(),
        config.blocks.len() * 2,
    );
    let mut index: HashMap<String, NodeIndex> = HashMap::with_capacity(config.blocks.len() * 2);
    for (i, l) in config.locals.iter().enumerate() {
        index.insert(
            format!("local.{}", l.attr.name),
            graph.add_node(Node::Local(i)),
        );
    }
    for (i, p) in config.providers.iter().enumerate() {
        check_provider_schema(p, registry, &mut diags);
        index.insert(
            format!("provider.{}", p.key()),
            graph.add_node(Node::Provider(i)),
        );
    }
    let block_nodes: Vec<NodeIndex> = config
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let n = graph.add_node(Node::Block(i));
            index.insert(b.address(), n);
            n
        })
        .collect();
    let output_nodes: Vec<NodeIndex> = (0..config.outputs.len())
        .map(|i| graph.add_node(Node::Output(i)))
        .collect();
    let vars: HashSet<&str> = config.variables.iter().map(|v| v.name.as_str()).collect();

    // Direct references of each node: (referenced node, instance key).
    let mut direct: HashMap<NodeIndex, Vec<(NodeIndex, Option<IndexKey>)>> = HashMap::new();
    let mut resolve = |from: NodeIndex,
                       r: &Reference,
                       has_count: bool,
                       has_each: bool,
                       diags: &mut Diagnostics| {
        let target = match r.root {
            RefRoot::Var => {
                if r.parts.len() < 2 {
                    diags.push(
                        Diagnostic::error(
                            "`var` must be followed by a variable name, as in `var.NAME`",
                        )
                        .with_span(r.span.clone()),
                    );
                } else if !vars.contains(r.parts[1].as_str()) {
                    diags.push(
                        Diagnostic::error(format!(
                            "unknown reference `{}`: no variable `{}` is declared",
                            r.text(),
                            r.parts.get(1).map(String::as_str).unwrap_or("")
                        ))
                        .with_span(r.span.clone()),
                    );
                }
                return;
            }
            RefRoot::Count => {
                if !has_count {
                    diags.push(
                        Diagnostic::error(
                            "`count.index` is only available in a block that sets `count`",
                        )
                        .with_span(r.span.clone()),
                    );
                }
                return;
            }
            RefRoot::Each => {
                if !has_each {
                    diags.push(
                        Diagnostic::error(
                            "`each` is only available in a block that sets `for_each`",
                        )
                        .with_span(r.span.clone()),
                    );
                }
                return;
            }
            RefRoot::Path => return,
            RefRoot::Other => {
                diags.push(
                    Diagnostic::error(format!("unknown reference `{}`", r.text()))
                        .with_span(r.span.clone()),
                );
                return;
            }
            RefRoot::Local | RefRoot::Step | RefRoot::Data => index.get(&r.subject()),
        };
        match target {
            Some(&t) => direct.entry(from).or_default().push((t, r.index.clone())),
            None => {
                let what = match r.root {
                    RefRoot::Local => "local value",
                    RefRoot::Step => "step",
                    _ => "data source",
                };
                diags.push(
                    Diagnostic::error(format!(
                        "unknown reference `{}`: no {what} `{}` is declared",
                        r.text(),
                        r.subject()
                    ))
                    .with_span(r.span.clone()),
                );
            }
        }
    };

    for l in &config.locals {
        let from = index[&format!("local.{}", l.attr.name)];
        for r in &l.attr.refs {
            resolve(from, r, false, false, &mut diags);
        }
    }
    for p in &config.providers {
        let from = index[&format!("provider.{}", p.key())];
        for a in &p.args {
            for r in &a.refs {
                resolve(from, r, false, false, &mut diags);
            }
        }
    }
    let mut block_provider = vec![None; config.blocks.len()];
    let mut provider_edges: Vec<(NodeIndex, NodeIndex)> = Vec::new();
    for (i, b) in config.blocks.iter().enumerate() {
        let from = block_nodes[i];
        for r in b.all_refs() {
            resolve(from, r, b.count.is_some(), b.for_each.is_some(), &mut diags);
        }
        block_provider[i] = check_block_schema(config, registry, i, &mut diags);
        if let Some(key) = &block_provider[i] {
            if let Some(&p) = index.get(&format!("provider.{key}")) {
                provider_edges.push((from, p));
            }
        }
        if b.kind == BlockKind::Data {
            for r in b.all_refs().filter(|r| r.root == RefRoot::Step) {
                diags.push(
                    Diagnostic::error(format!(
                        "data source `{}` refers to step `{}`; data sources are read at plan time, before any step runs",
                        b.address(),
                        r.subject()
                    ))
                    .with_span(r.span.clone()),
                );
            }
        }
    }
    for (i, o) in config.outputs.iter().enumerate() {
        for r in &o.value.refs {
            resolve(output_nodes[i], r, false, false, &mut diags);
        }
    }
    check_functions(config, &mut diags);
    for (from, p) in provider_edges {
        direct.entry(from).or_default().push((p, None));
    }
    if diags.has_errors() {
        diags.attach_sources(&config.sources);
        return Err(diags);
    }

    let mut edge_set = HashSet::new();
    // Insert edges in a fixed order so that the topological order (and the plan) is the same
    // on every run.
    let mut direct_sorted: Vec<_> = direct.iter().collect();
    direct_sorted.sort_by_key(|(to, _)| to.index());
    for (&to, deps) in direct_sorted {
        for (from, _) in deps {
            if edge_set.insert((*from, to)) {
                graph.add_edge(*from, to, ());
            }
        }
    }

    // Cycles: every strongly connected component with more than one node, or a self-loop.
    for scc in tarjan_scc(&graph) {
        let is_cycle = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !is_cycle {
            continue;
        }
        let mut members: Vec<(String, Span)> = scc
            .iter()
            .map(|&n| node_name_span(config, graph[n]))
            .collect();
        members.sort_by_key(|a| (a.1.file, a.1.range.start));
        let names: Vec<String> = members.iter().map(|(n, _)| format!("`{n}`")).collect();
        let mut d = Diagnostic::error(format!("dependency cycle between {}", names.join(", ")))
            .with_span(members[0].1.clone());
        for (name, span) in &members {
            d = d.with_note(format!(
                "`{name}` is declared at {}",
                config.sources.location(span)
            ));
        }
        diags.push(d);
    }
    if diags.has_errors() {
        diags.attach_sources(&config.sources);
        return Err(diags);
    }

    let order_idx = toposort(&graph, None)
        .map_err(|_| Diagnostics::single(Diagnostic::error("dependency cycle in configuration")))?;

    // Transitive block dependencies through locals and providers.
    let mut through: HashMap<NodeIndex, Vec<BlockDep>> = HashMap::new();
    let mut block_deps = vec![Vec::new(); config.blocks.len()];
    for &n in &order_idx {
        let mut deps: Vec<BlockDep> = Vec::new();
        if let Some(ds) = direct.get(&n) {
            for (d, key) in ds {
                match graph[*d] {
                    Node::Block(b) => deps.push(BlockDep {
                        block: b,
                        index: key.clone(),
                    }),
                    _ => {
                        if let Some(inner) = through.get(d) {
                            deps.extend(inner.iter().cloned());
                        }
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        deps.retain(|d| seen.insert(d.clone()));
        match graph[n] {
            Node::Block(b) => block_deps[b] = deps,
            _ => {
                through.insert(n, deps);
            }
        }
    }
    let order = order_idx.iter().map(|&n| graph[n]).collect();
    Ok(ConfigGraph {
        graph,
        order,
        block_deps,
        block_provider,
    })
}

/// Every function call must name a known function (checked here, because an expression whose
/// arguments are known only after apply is not evaluated until then).
fn check_functions(config: &Config, diags: &mut Diagnostics) {
    let attrs = config
        .locals
        .iter()
        .map(|l| &l.attr)
        .chain(config.providers.iter().flat_map(|p| p.args.iter()))
        .chain(config.blocks.iter().flat_map(|b| {
            b.args
                .iter()
                .chain(b.count.iter())
                .chain(b.for_each.iter())
                .chain(b.timeout.iter())
        }))
        .chain(config.outputs.iter().map(|o| &o.value))
        .chain(config.variables.iter().flat_map(|v| {
            v.default
                .iter()
                .chain(v.validations.iter().flat_map(|(c, m)| [c, m]))
        }));
    for attr in attrs {
        for (name, span) in &attr.functions {
            if !crate::config::functions::is_known(name) {
                diags.push(
                    Diagnostic::error(format!("unknown function `{name}`")).with_span(span.clone()),
                );
            }
        }
    }
}

fn node_name_span(config: &Config, node: Node) -> (String, Span) {
    match node {
        Node::Local(i) => (
            format!("local.{}", config.locals[i].attr.name),
            config.locals[i].attr.key_span.clone(),
        ),
        Node::Provider(i) => (
            format!("provider.{}", config.providers[i].key()),
            config.providers[i].span.clone(),
        ),
        Node::Block(i) => (config.blocks[i].address(), config.blocks[i].span.clone()),
        Node::Output(i) => (
            format!("output.{}", config.outputs[i].name),
            config.outputs[i].span.clone(),
        ),
    }
}

/// Checks the arguments of a block against an argument table: unknown arguments (at their
/// name), literal values of the wrong type, missing required arguments (at `span`). `what`
/// names the schema in messages (e.g. step type `exec`, provider `NAME`); `address` names
/// the block.
fn check_args(
    attrs: &[crate::config::Attr],
    specs: &[crate::provider::ArgSpec],
    what: &str,
    address: &str,
    span: &Span,
    diags: &mut Diagnostics,
) {
    for a in attrs {
        let Some(spec) = specs.iter().find(|s| s.name == a.name) else {
            let expected: Vec<&str> = specs.iter().map(|s| s.name).collect();
            diags.push(
                Diagnostic::error(format!(
                    "unknown argument `{}` for {what}; expected one of: {}",
                    a.name,
                    expected.join(", ")
                ))
                .with_span(a.key_span.clone()),
            );
            continue;
        };
        if a.refs.is_empty() && a.functions.is_empty() {
            if let Ok(v) = hcl::to_value(&a.expr).map(|v| crate::config::eval::to_json(&v)) {
                if matches!(
                    a.expr,
                    hcl::Expression::String(_)
                        | hcl::Expression::Number(_)
                        | hcl::Expression::Bool(_)
                        | hcl::Expression::Array(_)
                        | hcl::Expression::Object(_)
                ) {
                    if let Err(expected) = spec.ty.check(&v) {
                        diags.push(
                            Diagnostic::error(arg_type_message(
                                &a.name, None, spec.ty, expected, &v,
                            ))
                            .with_span(a.span.clone()),
                        );
                    }
                }
            }
        }
    }
    for spec in specs.iter().filter(|s| s.required) {
        if !attrs.iter().any(|a| a.name == spec.name) {
            diags.push(
                Diagnostic::error(format!(
                    "missing required argument `{}` in `{address}`",
                    spec.name
                ))
                .with_span(span.clone()),
            );
        }
    }
}

/// Checks a `provider` block: a known provider, and its arguments against the provider's own
/// table.
fn check_provider_schema(
    p: &crate::config::ProviderDef,
    registry: &Registry,
    diags: &mut Diagnostics,
) {
    match registry.provider(&p.name) {
        Some(kind) => check_args(
            &p.args,
            kind.args(),
            &format!("provider `{}`", p.name),
            &format!("provider.{}", p.key()),
            &p.span,
            diags,
        ),
        None => diags.push(
            Diagnostic::error(format!(
                "unknown provider `{}`; available: {}",
                p.name,
                registry.provider_names().join(", ")
            ))
            .with_span(p.span.clone()),
        ),
    }
}

/// Checks one block against its type's schema; returns the provider key it uses.
fn check_block_schema(
    config: &Config,
    registry: &Registry,
    i: usize,
    diags: &mut Diagnostics,
) -> Option<String> {
    let b = &config.blocks[i];
    let (args, provider) = match b.kind {
        BlockKind::Step => match registry.step(&b.type_name) {
            Some(t) => (t.args(), t.provider()),
            None => {
                diags.push(
                    Diagnostic::error(format!(
                        "unknown step type `{}`; known step types: {}",
                        b.type_name,
                        registry.step_names().join(", ")
                    ))
                    .with_span(b.type_span.clone()),
                );
                return None;
            }
        },
        BlockKind::Data => match registry.data(&b.type_name) {
            Some(t) => (t.args(), t.provider()),
            None => {
                diags.push(
                    Diagnostic::error(format!(
                        "unknown data source `{}`; known data sources: {}",
                        b.type_name,
                        registry.data_names().join(", ")
                    ))
                    .with_span(b.type_span.clone()),
                );
                return None;
            }
        },
    };
    check_args(
        &b.args,
        args,
        &format!("{} type `{}`", b.kind.keyword(), b.type_name),
        &b.address(),
        &b.span,
        diags,
    );
    let provider = provider?;
    match &b.provider {
        Some((key, span)) => {
            let (name, _) = key.split_once('.').unwrap_or((key.as_str(), ""));
            if name != provider {
                diags.push(
                    Diagnostic::error(format!(
                        "`{}` of type `{}` needs a `{provider}` provider, not `{key}`",
                        b.address(),
                        b.type_name
                    ))
                    .with_span(span.clone()),
                );
            } else if key.contains('.') && !config.providers.iter().any(|p| &p.key() == key) {
                diags.push(
                    Diagnostic::error(format!(
                        "unknown provider `{key}`: no `provider \"{name}\"` block has that alias"
                    ))
                    .with_span(span.clone()),
                );
            }
            Some(key.clone())
        }
        None => Some(provider.to_string()),
    }
}

/// The message for an argument value its type rejects: `wrong type for argument ...`, or for
/// a duration string what is wrong with it. `of` names the step instance, if known.
pub fn arg_type_message(
    name: &str,
    of: Option<&str>,
    ty: crate::provider::ArgType,
    expected: &str,
    v: &serde_json::Value,
) -> String {
    let of = of.map(|a| format!(" of `{a}`")).unwrap_or_default();
    if let (crate::provider::ArgType::Duration, Some(s)) = (ty, v.as_str()) {
        if let Err(e) = crate::provider::builtin::parse_duration(s) {
            return format!("invalid argument `{name}`{of}: {e}");
        }
    }
    format!(
        "wrong type for argument `{name}`{of}: expected {expected}, got {}",
        describe_json(v)
    )
}

/// `a string`, `a number`, ... for a JSON value.
pub fn describe_json(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One step instance for the ordering check: its address, its target and where it is declared.
pub struct Writer<'a> {
    /// Node in the instance graph.
    pub node: NodeIndex,
    /// Step address.
    pub address: &'a str,
    /// Target address.
    pub target: &'a str,
    /// Declaration span.
    pub span: &'a Span,
}

/// Finds pairs of steps that act on the same target with no path between them in `graph`
/// (edges point from dependency to dependent).
///
/// Returns one diagnostic per unordered pair, naming both steps and the object.
pub fn unordered_writers<N, E>(
    graph: &DiGraph<N, E>,
    writers: &[Writer<'_>],
    config: &Config,
) -> Diagnostics {
    let mut by_target: HashMap<&str, Vec<&Writer<'_>>> = HashMap::new();
    for w in writers {
        by_target.entry(w.target).or_default().push(w);
    }
    let mut diags = Diagnostics::default();
    let mut space = DfsSpace::new(graph);
    let mut groups: Vec<_> = by_target
        .into_iter()
        .filter(|(_, ws)| ws.len() > 1)
        .collect();
    groups.sort_by_key(|(t, _)| *t);
    for (target, mut ws) in groups {
        ws.sort_by_key(|w| (w.span.file, w.span.range.start));
        for (i, a) in ws.iter().enumerate() {
            for b in &ws[i + 1..] {
                let ordered = has_path_connecting(graph, a.node, b.node, Some(&mut space))
                    || has_path_connecting(graph, b.node, a.node, Some(&mut space));
                if !ordered {
                    diags.push(
                        Diagnostic::error(format!(
                            "`{}` and `{}` both act on `{target}` but neither depends on the other; add `depends_on` to order them",
                            a.address, b.address
                        ))
                        .with_span(b.span.clone())
                        .with_note(format!("`{}` is declared at {}", a.address, config.sources.location(a.span)))
                        .with_note(format!("`{}` is declared at {}", b.address, config.sources.location(b.span))),
                    );
                }
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_sources, SourceFile};

    fn build_src(text: &str) -> Result<(Config, ConfigGraph), Diagnostics> {
        let config = load_sources(vec![SourceFile::new("main.hcl", text)])?;
        let registry = Registry::standard();
        let g = build(&config, &registry)?;
        Ok((config, g))
    }

    #[test]
    fn order_puts_dependencies_first_through_locals() {
        let (config, g) = build_src(
            r#"
step "noop" "c" { result = local.x }
locals { x = step.noop.a.result }
step "noop" "a" {}
step "noop" "b" { depends_on = [step.noop.c] }
"#,
        )
        .unwrap();
        let pos = |name: &str| {
            let bi = config.blocks.iter().position(|b| b.name == name).unwrap();
            g.order.iter().position(|n| *n == Node::Block(bi)).unwrap()
        };
        assert!(pos("a") < pos("c"));
        assert!(pos("c") < pos("b"));
        // `c` depends on `a` through the local, not on the local itself.
        let c = config.blocks.iter().position(|b| b.name == "c").unwrap();
        let a = config.blocks.iter().position(|b| b.name == "a").unwrap();
        assert_eq!(
            g.block_deps[c],
            vec![BlockDep {
                block: a,
                index: None
            }]
        );
    }

    #[test]
    fn cycle_names_every_member_with_locations() {
        let err = build_src(
            "step \"noop\" \"a\" { depends_on = [step.noop.c] }\nstep \"noop\" \"b\" { depends_on = [step.noop.a] }\nstep \"noop\" \"c\" { result = step.noop.b.result }\nstep \"noop\" \"d\" {}\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dependency cycle between `step.noop.a`, `step.noop.b`, `step.noop.c`"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:1:1"), "{text}");
        assert!(
            text.contains("`step.noop.c` is declared at main.hcl:3:1"),
            "{text}"
        );
        assert!(!text.contains("step.noop.d"), "{text}");
    }

    #[test]
    fn literal_argument_types_and_unknown_arguments_are_checked() {
        let err = build_src("step \"exec\" \"x\" {\n  command = 42\n  bogus = 1\n}\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("wrong type for argument `command`: expected a string or a list of strings, got a number"), "{text}");
        assert!(text.contains("--> main.hcl:2:13"), "{text}");
        assert!(
            text.contains("unknown argument `bogus` for step type `exec`"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:3:3"), "{text}");
    }

    /// A provider known only to this test: its block arguments come from its own table.
    struct Fake;

    const FAKE_ARGS: &[crate::provider::ArgSpec] = &[crate::provider::ArgSpec {
        name: "endpoint",
        ty: crate::provider::ArgType::String,
        required: true,
        doc: "where it listens",
    }];

    #[async_trait::async_trait]
    impl crate::provider::Provider for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn args(&self) -> &'static [crate::provider::ArgSpec] {
            FAKE_ARGS
        }
        async fn connect(
            &self,
            _args: &crate::provider::ProviderArgs,
        ) -> Result<crate::provider::Client, crate::provider::ProviderError> {
            Ok(std::sync::Arc::new(()))
        }
        fn step_types(&self) -> Vec<std::sync::Arc<dyn crate::provider::StepType>> {
            Vec::new()
        }
        fn data_sources(&self) -> Vec<std::sync::Arc<dyn crate::provider::DataSourceType>> {
            Vec::new()
        }
    }

    #[test]
    fn provider_block_arguments_are_checked_against_the_providers_table() {
        let config = load_sources(vec![SourceFile::new(
            "main.hcl",
            "provider \"fake\" {\n  endpoint = 42\n  region = \"x\"\n}\nprovider \"fake\" {\n  alias = \"b\"\n}\nprovider \"nope\" {}\n",
        )])
        .unwrap();
        let registry = Registry::with_providers(vec![std::sync::Arc::new(Fake)]);
        let text = build(&config, &registry).unwrap_err().to_string();
        assert!(
            text.contains(
                "unknown argument `region` for provider `fake`; expected one of: endpoint"
            ),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:3:3"), "{text}");
        assert!(
            text.contains("wrong type for argument `endpoint`: expected a string, got a number"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:2:14"), "{text}");
        assert!(
            text.contains("missing required argument `endpoint` in `provider.fake.b`"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:5:1"), "{text}");
        assert!(
            text.contains("unknown provider `nope`; available: fake"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:8:1"), "{text}");
    }
}
