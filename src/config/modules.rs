//! Modules: `module "NAME" { source = "../modules/x" ... }` calls, expanded when the
//! configuration loads into the caller's own blocks with prefixed names.
//!
//! Follows Terraform's module semantics (<https://developer.hashicorp.com/terraform/language/modules/syntax>):
//! the module's `variable` blocks are its inputs (type-checked, defaults, validations,
//! sensitive), its `output` blocks are read as `module.NAME.OUTPUT`; `count`, `for_each`,
//! `depends_on` and `providers` work on the call; modules nest; only local paths (`./`, `../`).
//!
//! Expansion keeps the engine unchanged: every block of every module instance becomes an
//! ordinary block of the one configuration, so graph, unordered-writer check, plan, journal,
//! resume and lock see no difference. Names are rewritten into valid identifiers that carry the
//! instance prefix ([`mangle`]), and [`address`] turns them back into Terraform's readable form
//! (`module.drain["node-a"].step.kubernetes_drain.this`):
//! - a module input `var.X` becomes a local holding the caller's argument (its diagnostics point
//!   at the caller's line) with the variable's type and validations ([`ModuleInput`]);
//! - a module's locals, steps and data sources get the prefix; outputs become locals;
//! - `module.NAME` becomes a local holding the instance object (a list under `count`, a map
//!   under `for_each`) that also refers to every block of the module, so that
//!   `depends_on = [module.NAME]` orders after all of them;
//! - `each.key`, `each.value`, `count.index` in the call's arguments become per-instance locals.
//!
//! A module's `count`/`for_each` is decided before plan, once the root variables are resolved
//! ([`expand`] takes them): literals, functions, locals (module inputs included) and root
//! variables, not steps or data sources (whose values are only known while planning). Without
//! variable values (`opsctl validate` with a variable left out) a call whose instances depend on
//! one expands to a single placeholder instance `[*]`, so its body is still checked.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use hcl_edit::expr::{Expression, ObjectKey, Traversal, TraversalOperator};
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::visit_mut::{self, VisitMut};
use hcl_edit::{Decorated, Ident, Span as _};

use super::eval::{evaluate, Scope};
use super::{
    header_span, load_body, make_attr, span_of, Attr, Config, Diagnostic, Diagnostics, LocalDef,
    RefRoot, Reference, SourceFile, Span,
};

/// Start of every mangled name: `module__ENCODED-PREFIX__NAME`.
const MARK: &str = "module__";

/// A `module` block as written, kept until expansion.
#[derive(Debug, Clone)]
pub struct ModuleCall {
    /// The call's name label.
    pub name: String,
    /// File of the call.
    pub file: usize,
    /// Span of the call's header.
    pub span: Span,
    /// The block (its expressions already renamed into the caller's scope).
    pub block: Block,
    /// Instance prefix of the caller (`""` at the root).
    pub prefix: String,
    /// Directory `source` is relative to.
    pub dir: PathBuf,
    /// Aggregate locals of the enclosing calls (every block also belongs to them).
    pub ancestors: Vec<String>,
    /// Provider keys of the caller as the module sees them (`kubernetes` -> `kubernetes.prod`).
    pub providers: BTreeMap<String, String>,
}

/// What makes a local a module input: the variable's type, validations and sensitivity.
#[derive(Debug, Clone)]
pub struct ModuleInput {
    /// `module.NAME[KEY].var.X`, for messages.
    pub display: String,
    /// The variable's type constraint.
    pub ty: super::types::TypeConstraint,
    /// Its `validation` blocks (renamed: they refer to the input's local).
    pub validations: Vec<(Attr, Attr)>,
    /// The local's name (what validations refer to).
    pub local: String,
    /// Whether the value is sensitive (a `sensitive` variable or output).
    pub sensitive: bool,
}

/// A valid identifier naming `base` inside the module instance `prefix`
/// (`module.drain["a"]`): `module__ENC__base`, ENC escaping every byte that is not a letter or
/// digit as `_HH`. Never contains `__` inside ENC, so [`unmangle`] splits it unambiguously.
pub fn mangle(prefix: &str, base: &str) -> String {
    let mut out = String::from(MARK);
    for b in prefix.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out.push_str("__");
    out.push_str(base);
    out
}

/// The (prefix, base name) of a name made by [`mangle`]; None for an ordinary name.
pub fn unmangle(name: &str) -> Option<(String, &str)> {
    let rest = name.strip_prefix(MARK)?;
    let (enc, base) = rest.split_once("__")?;
    let mut bytes = Vec::new();
    let raw = enc.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'_' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    Some((String::from_utf8(bytes).ok()?, base))
}

/// The readable address of block `KIND.TYPE.NAME`: `module.x["k"].KIND.TYPE.BASE` for a block
/// inside a module instance, else `KIND.TYPE.NAME`.
pub fn address(keyword: &str, type_name: &str, name: &str) -> String {
    match unmangle(name) {
        Some((prefix, base)) if !prefix.is_empty() => {
            format!("{prefix}.{keyword}.{type_name}.{base}")
        }
        _ => format!("{keyword}.{type_name}.{name}"),
    }
}

/// Whether a reference names a module call (`module.NAME`, renamed to its aggregate local).
pub fn is_call_ref(r: &Reference) -> bool {
    r.root == RefRoot::Local
        && r.parts
            .get(1)
            .and_then(|n| unmangle(n))
            .is_some_and(|(_, base)| base.starts_with("mod--"))
}

/// The module instance a block address belongs to (`module.drain["a"]`), or None at the root.
pub fn instance_of(address: &str) -> Option<&str> {
    let mut end = None;
    for kw in [".step.", ".data."] {
        if let Some(i) = address.rfind(kw) {
            end = Some(end.map_or(i, |e: usize| e.max(i)));
        }
    }
    end.filter(|_| address.starts_with("module."))
        .map(|e| &address[..e])
}

/// Renames the references of an expression tree into a module instance's names.
struct Renamer<'a> {
    /// Instance prefix; `None` at the root (only `module.X` is renamed there).
    prefix: Option<&'a str>,
    /// Caller prefix, for `module.X` at this level.
    scope: &'a str,
    /// For a call's arguments: the instance whose `each`/`count` to substitute.
    each: Option<&'a str>,
}

fn ident(name: &str) -> Decorated<Ident> {
    Decorated::new(Ident::new_unchecked(name))
}

fn set_attr(op: &mut Decorated<TraversalOperator>, name: &str) {
    *op = Decorated::new(TraversalOperator::GetAttr(ident(name)));
}

fn attr_name(op: &Decorated<TraversalOperator>) -> Option<String> {
    match op.value() {
        TraversalOperator::GetAttr(i) => Some(i.as_str().to_string()),
        _ => None,
    }
}

impl VisitMut for Renamer<'_> {
    fn visit_traversal_mut(&mut self, node: &mut Traversal) {
        if let Expression::Variable(var) = &node.expr {
            let root = var.as_str().to_string();
            let first = node.operators.first().and_then(attr_name);
            match (root.as_str(), first) {
                ("module", Some(call)) => {
                    node.expr = Expression::Variable(ident("local"));
                    set_attr(
                        &mut node.operators[0],
                        &mangle(self.scope, &format!("mod--{call}")),
                    );
                }
                ("var", Some(name)) if self.each.is_none() => {
                    if let Some(p) = self.prefix {
                        node.expr = Expression::Variable(ident("local"));
                        set_attr(&mut node.operators[0], &mangle(p, &format!("var--{name}")));
                    }
                }
                ("local", Some(name)) if self.each.is_none() => {
                    if let Some(p) = self.prefix {
                        set_attr(
                            &mut node.operators[0],
                            &mangle(p, &format!("local--{name}")),
                        );
                    }
                }
                ("step" | "data", Some(_)) if self.each.is_none() => {
                    if let (Some(p), Some(name)) =
                        (self.prefix, node.operators.get(1).and_then(attr_name))
                    {
                        set_attr(&mut node.operators[1], &mangle(p, &name));
                    }
                }
                ("each" | "count", Some(what)) => {
                    if let Some(inst) = self.each {
                        node.expr = Expression::Variable(ident("local"));
                        set_attr(
                            &mut node.operators[0],
                            &mangle(inst, &format!("{root}--{what}")),
                        );
                    }
                }
                _ => {}
            }
        }
        visit_mut::visit_traversal_mut(self, node);
    }
}

/// Renames `module.X` references of a root file (before its blocks are read).
pub(super) fn rename_root(body: &mut Body) {
    let mut r = Renamer {
        prefix: None,
        scope: "",
        each: None,
    };
    r.visit_body_mut(body);
}

/// Records a `module` block for [`expand`].
pub(super) fn load_call(config: &mut Config, file: usize, block: &Block, diags: &mut Diagnostics) {
    if block.labels.len() != 1 {
        diags.push(
            Diagnostic::error("`module` block takes 1 label(s): module \"NAME\"")
                .with_span(header_span(file, block)),
        );
        return;
    }
    config.module_calls.push(ModuleCall {
        name: block.labels[0].as_str().to_string(),
        file,
        span: header_span(file, block),
        block: block.clone(),
        prefix: String::new(),
        dir: PathBuf::new(),
        ancestors: Vec::new(),
        providers: BTreeMap::new(),
    });
}

/// One instance key of a call.
#[derive(Debug, Clone)]
enum Key {
    Single,
    Index(u64),
    Each(String, hcl::Value),
    /// The instances are not known yet (a variable without a value, in `validate`).
    Unknown,
}

impl Key {
    fn suffix(&self) -> String {
        match self {
            Key::Single => String::new(),
            Key::Index(i) => format!("[{i}]"),
            Key::Each(k, _) => format!("[{}]", serde_json::Value::String(k.clone())),
            Key::Unknown => "[*]".to_string(),
        }
    }
}

/// Evaluates a call's `count`/`for_each` before plan: literals, functions, locals and the
/// resolved root variables.
struct LoadScope<'a> {
    config: &'a Config,
    vars: Option<&'a hcl::Map<String, hcl::Value>>,
    depth: usize,
}

impl Scope for LoadScope<'_> {
    fn var(&self, name: &str) -> Option<hcl::Value> {
        self.vars?.get(name).cloned()
    }
    fn local(&self, name: &str) -> Option<hcl::Value> {
        if self.depth > 64 {
            return None;
        }
        let l = self.config.locals.iter().find(|l| l.attr.name == name)?;
        evaluate(
            &l.attr,
            &LoadScope {
                config: self.config,
                vars: self.vars,
                depth: self.depth + 1,
            },
        )
        .ok()
    }
    fn block(&self, _: &str) -> Option<hcl::Value> {
        None
    }
}

/// What keeps an expression from deciding a module's instances before plan.
enum Problem {
    /// It refers to a step, a data source or (without variable values) a root variable.
    NotKnown(String, Span),
    /// It refers to a sensitive root variable (its value would show in the addresses).
    Sensitive(String, Span),
}

/// Why an expression cannot decide a module's instances before plan, if it cannot. `vars`
/// tells whether root variables are resolved yet.
fn load_time_problem(config: &Config, attr: &Attr, vars: bool, depth: usize) -> Option<Problem> {
    for r in &attr.refs {
        match r.root {
            RefRoot::Local if depth < 64 => {
                let name = r.parts.get(1)?;
                if let Some(l) = config.locals.iter().find(|l| &l.attr.name == name) {
                    if let Some(p) = load_time_problem(config, &l.attr, vars, depth + 1) {
                        return Some(p);
                    }
                }
            }
            RefRoot::Local | RefRoot::Path => {}
            RefRoot::Var if vars => {
                let name = r.parts.get(1)?;
                if config
                    .variables
                    .iter()
                    .any(|v| &v.name == name && v.sensitive)
                {
                    return Some(Problem::Sensitive(r.text(), r.span.clone()));
                }
            }
            _ => return Some(Problem::NotKnown(r.text(), r.span.clone())),
        }
    }
    None
}

fn instance_keys(
    config: &Config,
    vars: Option<&hcl::Map<String, hcl::Value>>,
    call: &ModuleCall,
    count: Option<&Attr>,
    for_each: Option<&Attr>,
) -> Result<Vec<Key>, Diagnostic> {
    let (attr, what) = match (count, for_each) {
        (None, None) => return Ok(vec![Key::Single]),
        (Some(_), Some(_)) => {
            return Err(Diagnostic::error(format!(
                "`module.{}` sets both `count` and `for_each`; use one",
                call.name
            ))
            .with_span(call.span.clone()))
        }
        (Some(c), None) => (c, "count"),
        (None, Some(f)) => (f, "for_each"),
    };
    match load_time_problem(config, attr, vars.is_some(), 0) {
        Some(Problem::NotKnown(text, span)) => {
            return Err(Diagnostic::error(format!(
                "the `{what}` of `module.{}` refers to `{text}`, which is not known before plan",
                call.name
            ))
            .with_span(span)
            .with_note(
                "module instances are decided before plan: use literals, functions, locals (module inputs included) and variables, not steps or data sources",
            ))
        }
        Some(Problem::Sensitive(text, span)) if what == "for_each" => {
            return Err(Diagnostic::error(format!(
                "the `for_each` of `module.{}` refers to the sensitive `{text}`; its keys would show in every address, plan and journal",
                call.name
            ))
            .with_span(span)
            .with_note(
                "use a non-sensitive variable for the keys, or `nonsensitive(...)` if the keys are not secret",
            ))
        }
        _ => {}
    }
    let value = evaluate(
        attr,
        &LoadScope {
            config,
            vars,
            depth: 0,
        },
    )?;
    if super::eval::is_unknown(&value) {
        // Only without variable values (`validate`): one placeholder instance.
        return Ok(vec![Key::Unknown]);
    }
    match (what, value) {
        ("count", hcl::Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 10_000) => {
            Ok((0..n.as_u64().unwrap_or(0)).map(Key::Index).collect())
        }
        ("count", v) => Err(Diagnostic::error(format!(
            "`count` of `module.{}` must be a whole number from 0 to 10000, got {}",
            call.name,
            super::types::describe_value(&v)
        ))
        .with_span(attr.span.clone())),
        (_, hcl::Value::Object(map)) => {
            let mut keys: Vec<Key> = map.into_iter().map(|(k, v)| Key::Each(k, v)).collect();
            keys.sort_by_key(|k| k.suffix());
            Ok(keys)
        }
        (_, hcl::Value::Array(items)) => {
            let mut keys = BTreeMap::new();
            for item in items {
                match item {
                    hcl::Value::String(s) => {
                        keys.insert(s.clone(), Key::Each(s.clone(), hcl::Value::String(s)));
                    }
                    other => {
                        return Err(Diagnostic::error(format!(
                        "`for_each` of `module.{}` must be a map or a set of strings, but holds {}",
                        call.name,
                        super::types::describe_value(&other)
                    ))
                        .with_span(attr.span.clone()))
                    }
                }
            }
            Ok(keys.into_values().collect())
        }
        (_, v) => Err(Diagnostic::error(format!(
            "`for_each` of `module.{}` must be a map or a set of strings, got {}",
            call.name,
            super::types::describe_value(&v)
        ))
        .with_span(attr.span.clone())),
    }
}

/// Reads the `*.hcl` files of a module directory: (display, text).
fn read_module_dir(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{e}"))?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| super::is_config_file_name(&e.file_name()))
        .map(|e| e.path())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err("it holds no `*.hcl` files".into());
    }
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let display = pathdiff(&path, &cwd);
        out.push((display, text));
    }
    Ok(out)
}

/// `path` relative to `base` when it is below it, else `path` with `..` components kept short.
fn pathdiff(path: &Path, base: &Path) -> String {
    let path = normalize(path);
    let base = normalize(base);
    if let Ok(rel) = path.strip_prefix(&base) {
        return rel.display().to_string();
    }
    // Walk up from base until it is a prefix.
    let mut up = PathBuf::new();
    let mut b = base.as_path();
    while let Some(parent) = b.parent() {
        up.push("..");
        if let Ok(rel) = path.strip_prefix(parent) {
            return up.join(rel).display().to_string();
        }
        b = parent;
    }
    path.display().to_string()
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Provider key `aws.x` or `kubernetes` written as an expression.
fn provider_key(file: usize, expr: &Expression) -> Option<String> {
    let (refs, _) = super::refs::collect(file, expr);
    (refs.len() == 1 && refs[0].parts.len() <= 2).then(|| refs[0].parts.join("."))
}

/// One module instance: its key, its address prefix and its output names.
type InstanceOutputs = (Key, String, Vec<String>);

/// Expands every `module` call of `config` (loaded from `dir`), nested calls included.
/// `vars` are the resolved root variables a call's `count`/`for_each` may use (None: no
/// variable may be used; an unknown value gives the placeholder instance `[*]`). Returns the
/// configuration with every module instance's blocks in it and its digest covering the
/// modules' files.
///
/// # Errors
///
/// Every diagnostic: a source that is not a local path or cannot be read, a syntax error in a
/// module, unknown or missing inputs, a provider block inside a module, a `count`/`for_each`
/// not known before plan (a step, a data source, or a variable when `vars` is None) or a
/// `for_each` over a sensitive variable.
pub fn expand(
    mut config: Config,
    dir: &Path,
    vars: Option<&hcl::Map<String, hcl::Value>>,
) -> Result<Config, Diagnostics> {
    if config.module_calls.is_empty() {
        return Ok(config);
    }
    let mut diags = Diagnostics::default();
    let mut queue: VecDeque<ModuleCall> = std::mem::take(&mut config.module_calls)
        .into_iter()
        .map(|mut c| {
            c.dir = dir.to_path_buf();
            c
        })
        .collect();
    // Aggregate local name -> (call span, instances: (key, instance prefix, output names)).
    let mut aggregates: Vec<(String, ModuleCall, Vec<InstanceOutputs>)> = Vec::new();
    // Aggregate local name -> addresses of every block inside (nested ones included).
    let mut members: HashMap<String, Vec<(String, String, String, RefRoot)>> = HashMap::new();
    let mut expanded = 0usize;
    while let Some(call) = queue.pop_front() {
        expanded += 1;
        if expanded > 10_000 {
            diags.push(
                Diagnostic::error("modules nest too deeply (a module that calls itself?)")
                    .with_span(call.span.clone()),
            );
            break;
        }
        let agg = mangle(&call.prefix, &format!("mod--{}", call.name));
        let file = call.file;
        // The call's arguments.
        let mut source = None;
        let mut meta: HashMap<&str, Attr> = HashMap::new();
        let mut inputs: Vec<hcl_edit::structure::Attribute> = Vec::new();
        let mut providers = call.providers.clone();
        let mut bad = false;
        for s in call.block.body.iter() {
            match s {
                Structure::Attribute(a) => match a.key.as_str() {
                    "source" => match hcl::Expression::from(a.value.clone()) {
                        hcl::Expression::String(s) => {
                            source = Some((s, span_of(file, a.value.span())))
                        }
                        _ => {
                            diags.push(
                                Diagnostic::error("`source` must be a literal string such as \"../modules/drain-node\"")
                                    .with_span(span_of(file, a.value.span())),
                            );
                            bad = true;
                        }
                    },
                    "count" => {
                        meta.insert("count", make_attr(file, a));
                    }
                    "for_each" => {
                        meta.insert("for_each", make_attr(file, a));
                    }
                    "depends_on" => {
                        let attr = make_attr(file, a);
                        let ok = matches!(attr.expr, hcl::Expression::Array(_))
                            && attr.refs.iter().all(|r| {
                                matches!(r.root, RefRoot::Step | RefRoot::Data) || is_call_ref(r)
                            });
                        if !ok {
                            diags.push(
                                Diagnostic::error("`depends_on` must be a list of references such as `[step.TYPE.NAME]` or `[module.NAME]`")
                                    .with_span(attr.span.clone()),
                            );
                            bad = true;
                        }
                        meta.insert("depends_on", attr);
                    }
                    "providers" => match &a.value {
                        Expression::Object(obj) => {
                            for (k, v) in obj.iter() {
                                let key = match k {
                                    ObjectKey::Ident(i) => Some(i.as_str().to_string()),
                                    ObjectKey::Expression(e) => provider_key(file, e),
                                };
                                match (key, provider_key(file, v.expr())) {
                                    (Some(k), Some(v)) => {
                                        let v = call.providers.get(&v).cloned().unwrap_or(v);
                                        providers.insert(k, v);
                                    }
                                    _ => {
                                        diags.push(
                                            Diagnostic::error("`providers` maps a provider name to a provider, as in `{ kubernetes = kubernetes.prod }`")
                                                .with_span(span_of(file, a.value.span())),
                                        );
                                        bad = true;
                                    }
                                }
                            }
                        }
                        _ => {
                            diags.push(
                                Diagnostic::error("`providers` must be an object such as `{ kubernetes = kubernetes.prod }`")
                                    .with_span(span_of(file, a.value.span())),
                            );
                            bad = true;
                        }
                    },
                    _ => inputs.push(a.clone()),
                },
                Structure::Block(b) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "unexpected block `{}` in `module.{}`; arguments are written `name = value`",
                            b.ident.as_str(),
                            call.name
                        ))
                        .with_span(header_span(file, b)),
                    );
                    bad = true;
                }
            }
        }
        let Some((source, source_span)) = source else {
            diags.push(
                Diagnostic::error(format!("`module.{}` requires a `source`", call.name))
                    .with_span(call.span.clone()),
            );
            continue;
        };
        if !(source.starts_with("./") || source.starts_with("../")) {
            diags.push(
                Diagnostic::error(format!(
                    "module source `{source}` is not a local path; opsctl loads modules from local directories only: start it with `./` or `../`"
                ))
                .with_span(source_span),
            );
            continue;
        }
        if bad {
            continue;
        }
        let module_dir = call.dir.join(&source);
        let files = match read_module_dir(&module_dir) {
            Ok(files) => files,
            Err(msg) => {
                diags.push(
                    Diagnostic::error(format!(
                        "cannot load module `{source}` (`{}`): {msg}",
                        module_dir.display()
                    ))
                    .with_span(source_span),
                );
                continue;
            }
        };
        let keys = match instance_keys(
            &config,
            vars,
            &call,
            meta.get("count"),
            meta.get("for_each"),
        ) {
            Ok(keys) => keys,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let call_site = config.sources.location(&call.span);
        let mut instances = Vec::new();
        for key in keys {
            let base = if call.prefix.is_empty() {
                String::new()
            } else {
                format!("{}.", call.prefix)
            };
            let prefix = format!("{base}module.{}{}", call.name, key.suffix());
            let mut temp = Config::default();
            let mut ok = true;
            for (display, text) in &files {
                let fi = config.sources.files.len();
                let mut src = SourceFile::new(display.clone(), text.clone());
                src.called_from = Some(format!("in {prefix}, called at {call_site}"));
                config.sources.files.push(src);
                match hcl_edit::parser::parse_body(&config.sources.files[fi].text) {
                    Ok(mut body) => {
                        let mut r = Renamer {
                            prefix: Some(&prefix),
                            scope: &prefix,
                            each: None,
                        };
                        r.visit_body_mut(&mut body);
                        load_body(&mut temp, fi, &body, &mut diags);
                    }
                    Err(err) => {
                        let at = err.location().offset();
                        diags.push(
                            Diagnostic::error(format!("syntax error: {}", err.message()))
                                .with_span(Span {
                                    file: fi,
                                    range: at..at + 1,
                                }),
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                continue;
            }
            for p in &temp.providers {
                diags.push(
                    Diagnostic::error(format!(
                        "module `{source}` declares `provider \"{}\"`; a module uses its caller's providers: declare them at the root and pass them with `providers = {{ {} = {} }}`",
                        p.name, p.name, p.key()
                    ))
                    .with_span(p.span.clone()),
                );
            }
            // Per-instance `each`/`count`.
            let literal = |name: &str, v: hcl::Value| LocalDef {
                attr: Attr {
                    name: mangle(&prefix, name),
                    expr: hcl::Expression::from(v),
                    span: call.span.clone(),
                    key_span: call.span.clone(),
                    refs: Vec::new(),
                    functions: Vec::new(),
                },
                input: None,
            };
            match &key {
                Key::Single => {}
                Key::Index(i) => config
                    .locals
                    .push(literal("count--index", hcl::Value::from(*i))),
                Key::Each(k, v) => {
                    config
                        .locals
                        .push(literal("each--key", hcl::Value::from(k.clone())));
                    config.locals.push(literal("each--value", v.clone()));
                }
                Key::Unknown => {
                    for name in ["count--index", "each--key", "each--value"] {
                        config.locals.push(literal(name, super::eval::unknown()));
                    }
                }
            }
            // Inputs.
            for a in &inputs {
                if !temp.variables.iter().any(|v| v.name == a.key.as_str()) {
                    let declared: Vec<&str> =
                        temp.variables.iter().map(|v| v.name.as_str()).collect();
                    diags.push(
                        Diagnostic::error(format!(
                            "unknown input `{}` for module `{source}`; its inputs are: {}",
                            a.key.as_str(),
                            if declared.is_empty() {
                                "(none)".to_string()
                            } else {
                                declared.join(", ")
                            }
                        ))
                        .with_span(span_of(file, a.key.span())),
                    );
                }
            }
            for v in &temp.variables {
                let local = mangle(&prefix, &format!("var--{}", v.name));
                let attr = match inputs.iter().find(|a| a.key.as_str() == v.name) {
                    Some(a) => {
                        let mut a = a.clone();
                        let mut r = Renamer {
                            prefix: None,
                            scope: &call.prefix,
                            each: Some(&prefix),
                        };
                        r.visit_expr_mut(&mut a.value);
                        let mut attr = make_attr(file, &a);
                        attr.name = local.clone();
                        attr
                    }
                    None => match &v.default {
                        Some(d) => {
                            let mut d = d.clone();
                            d.name = local.clone();
                            d
                        }
                        None => {
                            diags.push(
                                Diagnostic::error(format!(
                                    "`module.{}` misses the required input `{}` of module `{source}`",
                                    call.name, v.name
                                ))
                                .with_span(call.span.clone())
                                .with_note(format!(
                                    "declared at {}",
                                    config.sources.location(&v.span)
                                )),
                            );
                            continue;
                        }
                    },
                };
                config.locals.push(LocalDef {
                    attr,
                    input: Some(Box::new(ModuleInput {
                        display: format!("{prefix}.var.{}", v.name),
                        ty: v.ty.clone(),
                        validations: v.validations.clone(),
                        local: local.clone(),
                        sensitive: v.sensitive,
                    })),
                });
            }
            for mut l in temp.locals {
                l.attr.name = mangle(&prefix, &format!("local--{}", l.attr.name));
                config.locals.push(l);
            }
            let call_deps = meta
                .get("depends_on")
                .map(|a| a.refs.clone())
                .unwrap_or_default();
            for mut b in temp.blocks {
                b.name = mangle(&prefix, &b.name);
                let provider_name = b.type_name.split('_').next().unwrap_or("").to_string();
                match &b.provider {
                    Some((k, span)) => {
                        if let Some(v) = providers.get(k) {
                            b.provider = Some((v.clone(), span.clone()));
                        }
                    }
                    None => {
                        if let Some(v) = providers.get(&provider_name) {
                            b.provider = Some((v.clone(), call.span.clone()));
                        }
                    }
                }
                if !call_deps.is_empty() {
                    b.depends_on.extend(call_deps.iter().cloned());
                    if b.depends_on_span.is_none() {
                        b.depends_on_span = meta.get("depends_on").map(|a| a.span.clone());
                    }
                }
                let member = (
                    b.kind.keyword().to_string(),
                    b.type_name.clone(),
                    b.name.clone(),
                    if b.kind == super::BlockKind::Step {
                        RefRoot::Step
                    } else {
                        RefRoot::Data
                    },
                );
                for a in call.ancestors.iter().chain(std::iter::once(&agg)) {
                    members.entry(a.clone()).or_default().push(member.clone());
                }
                config.blocks.push(b);
            }
            let mut outputs = Vec::new();
            for o in temp.outputs {
                let local = mangle(&prefix, &format!("out--{}", o.name));
                let mut attr = o.value;
                attr.name = local.clone();
                config.locals.push(LocalDef {
                    attr,
                    input: o.sensitive.then(|| {
                        Box::new(ModuleInput {
                            display: format!("{prefix}.output.{}", o.name),
                            ty: super::types::TypeConstraint::Any,
                            validations: Vec::new(),
                            local: local.clone(),
                            sensitive: true,
                        })
                    }),
                });
                outputs.push(o.name);
            }
            let mut ancestors = call.ancestors.clone();
            ancestors.push(agg.clone());
            for mut nested in temp.module_calls {
                nested.prefix = prefix.clone();
                nested.dir = module_dir.clone();
                nested.ancestors = ancestors.clone();
                nested.providers = providers.clone();
                queue.push_back(nested);
            }
            instances.push((key, prefix, outputs));
        }
        aggregates.push((agg, call, instances));
    }
    // The `module.NAME` values.
    for (agg, call, instances) in aggregates {
        let object = |prefix: &str, outputs: &[String]| {
            let fields: Vec<String> = outputs
                .iter()
                .map(|o| format!("{o} = local.{}", mangle(prefix, &format!("out--{o}"))))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        };
        let text = match instances.first().map(|i| &i.0) {
            None => match call.block.body.get_attribute("count") {
                Some(_) => "[]".to_string(),
                None => "{}".to_string(),
            },
            Some(Key::Single) => object(&instances[0].1, &instances[0].2),
            Some(Key::Unknown) => serde_json::Value::String(
                super::eval::unknown()
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .to_string()
            .replace("${", "$${"),
            Some(Key::Index(_)) => format!(
                "[{}]",
                instances
                    .iter()
                    .map(|(_, p, o)| object(p, o))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(Key::Each(..)) => format!(
                "{{ {} }}",
                instances
                    .iter()
                    .filter_map(|(k, p, o)| match k {
                        Key::Each(k, _) => Some(format!(
                            "{} = {}",
                            serde_json::Value::String(k.clone())
                                .to_string()
                                .replace("${", "$${"),
                            object(p, o)
                        )),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let expr = match hcl_edit::parser::parse_expr(&text) {
            Ok(e) => hcl::Expression::from(e),
            Err(e) => {
                diags.push(
                    Diagnostic::error(format!(
                        "internal error building `module.{}`: {e}",
                        call.name
                    ))
                    .with_span(call.span.clone()),
                );
                continue;
            }
        };
        let mut refs: Vec<Reference> = instances
            .iter()
            .flat_map(|(_, p, outputs)| {
                outputs.iter().map(|o| Reference {
                    root: RefRoot::Local,
                    parts: vec!["local".into(), mangle(p, &format!("out--{o}"))],
                    index: None,
                    span: call.span.clone(),
                })
            })
            .collect();
        for (kw, ty, name, root) in members.get(&agg).into_iter().flatten() {
            refs.push(Reference {
                root: *root,
                parts: vec![kw.clone(), ty.clone(), name.clone()],
                index: None,
                span: call.span.clone(),
            });
        }
        config.locals.push(LocalDef {
            attr: Attr {
                name: agg,
                expr,
                span: call.span.clone(),
                key_span: call.span.clone(),
                refs,
                functions: Vec::new(),
            },
            input: None,
        });
    }
    if diags.has_errors() {
        diags.attach_sources(&config.sources);
        return Err(diags);
    }
    {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(config.digest.as_bytes());
        for file in &config.sources.files {
            if file.called_from.is_some() {
                hasher.update(file.display.as_bytes());
                hasher.update([0]);
                hasher.update(file.text.as_bytes());
                hasher.update([0]);
            }
        }
        config.digest = super::hex(&hasher.finalize());
    }
    let mut check = Diagnostics::default();
    super::check_duplicates(&config, &mut check);
    if check.has_errors() {
        check.attach_sources(&config.sources);
        return Err(check);
    }
    Ok(config)
}

/// Converts and validates a module input's value (the local's evaluated value), as a root
/// variable is: its type constraint, then each `validation`. Diagnostics point at the value
/// (the caller's argument) or the failed condition; a sensitive value is never quoted.
///
/// # Errors
///
/// The type error or the failed validation.
pub fn check_input(
    input: &ModuleInput,
    attr: &Attr,
    value: hcl::Value,
) -> Result<hcl::Value, Diagnostic> {
    if super::eval::is_unknown(&value) {
        return Ok(value);
    }
    let value = input.ty.convert(value).map_err(|e| {
        let msg = if input.sensitive {
            format!(
                "invalid value for module input `{}`: expected {}",
                input.display,
                input.ty.describe()
            )
        } else {
            format!("invalid value for module input `{}`: {e}", input.display)
        };
        Diagnostic::error(msg).with_span(attr.span.clone())
    })?;
    struct One<'a>(&'a str, &'a hcl::Value);
    impl Scope for One<'_> {
        fn var(&self, _: &str) -> Option<hcl::Value> {
            None
        }
        fn local(&self, name: &str) -> Option<hcl::Value> {
            (name == self.0).then(|| self.1.clone())
        }
        fn block(&self, _: &str) -> Option<hcl::Value> {
            None
        }
    }
    let scope = One(&input.local, &value);
    for (cond, msg) in &input.validations {
        match evaluate(cond, &scope) {
            Ok(hcl::Value::Bool(true)) => {}
            Ok(hcl::Value::Bool(false)) => {
                let text = match evaluate(msg, &scope) {
                    Ok(hcl::Value::String(s)) if !input.sensitive => s,
                    _ => "validation failed".to_string(),
                };
                return Err(Diagnostic::error(format!(
                    "invalid value for module input `{}`: {text}",
                    input.display
                ))
                .with_span(attr.span.clone()));
            }
            Ok(_) => {
                return Err(
                    Diagnostic::error("a validation `condition` must be `true` or `false`")
                        .with_span(cond.span.clone()),
                )
            }
            Err(d) => return Err(d),
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangled_names_round_trip_and_read_as_addresses() {
        let p = "module.drain[\"node-a.x_y\"].module.inner[0]";
        let m = mangle(p, "this");
        assert!(super::super::is_identifier(&m), "{m}");
        assert_eq!(unmangle(&m), Some((p.to_string(), "this")));
        assert_eq!(
            address("step", "kubernetes_drain", &m),
            format!("{p}.step.kubernetes_drain.this")
        );
        assert_eq!(address("step", "noop", "a"), "step.noop.a");
        assert_eq!(
            instance_of("module.a[\"x\"].step.noop.b[\"k\"]"),
            Some("module.a[\"x\"]")
        );
        assert_eq!(instance_of("step.noop.b"), None);
    }
}
