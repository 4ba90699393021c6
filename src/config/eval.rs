//! Expression evaluation with `hcl-rs`: builds a minimal context holding only the values an
//! expression refers to, and tracks values that are only known after apply.
//!
//! An unknown value is a string carrying [`UNKNOWN`]; any result that contains it (or whose
//! evaluation failed while it referred to one) is unknown as a whole.

use std::collections::HashMap;
use std::sync::OnceLock;

use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};

use super::{Attr, Diagnostic, RefRoot};

/// Marker of a value known only after apply.
pub const UNKNOWN: &str = "\u{1}(known after apply)\u{1}";

/// The unknown value.
pub fn unknown() -> Value {
    Value::String(UNKNOWN.to_string())
}

/// Whether `v` is, or contains, an unknown value.
pub fn is_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(UNKNOWN),
        Value::Array(items) => items.iter().any(is_unknown),
        Value::Object(map) => map.values().any(is_unknown),
        _ => false,
    }
}

/// Whether any value of an object (step inputs) is, or contains, an unknown value.
pub fn map_is_unknown(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.values().any(json_is_unknown)
}

/// Whether a JSON value is, or contains, an unknown value.
pub fn json_is_unknown(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(UNKNOWN),
        serde_json::Value::Array(items) => items.iter().any(json_is_unknown),
        serde_json::Value::Object(map) => map_is_unknown(map),
        _ => false,
    }
}

/// What an expression can see: variables, locals, blocks, `count`/`each`.
pub trait Scope {
    /// `var.NAME`.
    fn var(&self, name: &str) -> Option<Value>;
    /// `local.NAME`.
    fn local(&self, name: &str) -> Option<Value>;
    /// The value of block `step.T.N` or `data.T.N` (an object, or a list/map of instances).
    fn block(&self, address: &str) -> Option<Value>;
    /// `count.index`, if inside a counted block.
    fn count_index(&self) -> Option<u64> {
        None
    }
    /// `each.key` and `each.value`, if inside a `for_each` block.
    fn each(&self) -> Option<(Value, Value)> {
        None
    }
    /// `self`: the step's own value, in a `postcondition` only.
    fn self_value(&self) -> Option<Value> {
        None
    }
}

fn functions_context() -> &'static Context<'static> {
    static CTX: OnceLock<Context<'static>> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = Context::new();
        super::functions::declare_all(&mut ctx);
        ctx
    })
}

/// Evaluates an attribute's expression in `scope`.
///
/// Returns the value; a value that depends on something known only after apply is unknown
/// (see [`is_unknown`]).
///
/// # Errors
///
/// A diagnostic at the attribute's span: an undefined reference, a function error, a type error.
pub fn evaluate(attr: &Attr, scope: &dyn Scope) -> Result<Value, Diagnostic> {
    // Fast path: literals need no context at all.
    if attr.refs.is_empty() && attr.functions.is_empty() {
        if let Some(v) = literal(&attr.expr) {
            return Ok(v);
        }
    }
    // Arithmetic alone needs only its five checked functions, not the whole library.
    let mut ctx = if attr
        .functions
        .iter()
        .any(|(name, _)| !super::arith::is_internal(name))
    {
        functions_context().clone()
    } else if !attr.functions.is_empty() {
        super::arith::context().clone()
    } else {
        Context::new()
    };
    let mut roots: HashMap<&'static str, Map<String, Value>> = HashMap::new();
    let mut any_unknown = false;
    for r in &attr.refs {
        match r.root {
            RefRoot::Var => {
                let Some(name) = r.parts.get(1) else { continue };
                let v = scope.var(name).ok_or_else(|| {
                    Diagnostic::error(format!("undefined variable `var.{name}`"))
                        .with_span(r.span.clone())
                })?;
                any_unknown |= is_unknown(&v);
                roots.entry("var").or_default().insert(name.clone(), v);
            }
            RefRoot::Local => {
                let Some(name) = r.parts.get(1) else { continue };
                let v = scope.local(name).ok_or_else(|| {
                    Diagnostic::error(format!("undefined local value `local.{name}`"))
                        .with_span(r.span.clone())
                })?;
                any_unknown |= is_unknown(&v);
                roots.entry("local").or_default().insert(name.clone(), v);
            }
            RefRoot::Step | RefRoot::Data => {
                if r.parts.len() < 3 {
                    continue;
                }
                let address = r.subject();
                let v = scope.block(&address).ok_or_else(|| {
                    Diagnostic::error(format!("reference to undeclared `{address}`"))
                        .with_span(r.span.clone())
                })?;
                any_unknown |= is_unknown(&v);
                let root = if r.root == RefRoot::Step {
                    "step"
                } else {
                    "data"
                };
                let types = roots.entry(root).or_default();
                let by_type = types
                    .entry(r.parts[1].clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = by_type {
                    m.insert(r.parts[2].clone(), v);
                }
            }
            RefRoot::Count => {
                let index = scope.count_index().ok_or_else(|| {
                    Diagnostic::error(
                        "`count.index` is only available in a block that sets `count`",
                    )
                    .with_span(r.span.clone())
                })?;
                roots
                    .entry("count")
                    .or_default()
                    .insert("index".into(), Value::from(index));
            }
            RefRoot::Each => {
                let (key, value) = scope.each().ok_or_else(|| {
                    Diagnostic::error("`each` is only available in a block that sets `for_each`")
                        .with_span(r.span.clone())
                })?;
                any_unknown |= is_unknown(&value);
                let m = roots.entry("each").or_default();
                m.insert("key".into(), key);
                m.insert("value".into(), value);
            }
            RefRoot::Path => {
                let cwd = std::env::current_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| ".".into());
                let m = roots.entry("path").or_default();
                m.insert("module".into(), Value::from("."));
                m.insert("root".into(), Value::from("."));
                m.insert("cwd".into(), Value::from(cwd));
            }
            RefRoot::Other if r.parts.first().map(String::as_str) == Some("self") => {
                let Some(Value::Object(own)) = scope.self_value() else {
                    return Err(Diagnostic::error(
                        "`self` is only available in a step's `postcondition`",
                    )
                    .with_span(r.span.clone()));
                };
                any_unknown |= own.values().any(is_unknown);
                roots.entry("self").or_default().extend(own);
            }
            RefRoot::Other => {
                return Err(
                    Diagnostic::error(format!("unknown reference `{}`", r.text()))
                        .with_span(r.span.clone()),
                )
            }
        }
    }
    for (name, map) in roots {
        ctx.declare_var(name, Value::Object(map));
    }
    match attr.expr.evaluate(&ctx) {
        Ok(v) => {
            if is_unknown(&v) {
                Ok(collapse_unknown(v))
            } else {
                Ok(v)
            }
        }
        Err(_) if any_unknown => Ok(unknown()),
        Err(err) => Err(Diagnostic::error(format!(
            "cannot evaluate `{}`: {}",
            attr.name,
            error_message(&err)
        ))
        .with_span(attr.span.clone())),
    }
}

/// A string that merely embeds an unknown becomes the unknown marker itself.
fn collapse_unknown(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains(UNKNOWN) => unknown(),
        Value::Array(items) => Value::Array(items.into_iter().map(collapse_unknown).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, collapse_unknown(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The message of an evaluation error, without the expression hcl-rs appends (which may span
/// lines, and shows arithmetic as the internal functions of `arith`).
pub fn error_message(err: &hcl::eval::Error) -> String {
    match err.kind() {
        hcl::eval::ErrorKind::FuncCall(name, msg)
            if super::arith::is_internal(&name.to_string()) =>
        {
            msg.clone()
        }
        kind => kind.to_string(),
    }
}

fn literal(expr: &hcl::Expression) -> Option<Value> {
    use hcl::Expression as E;
    Some(match expr {
        E::Null => Value::Null,
        E::Bool(b) => Value::Bool(*b),
        E::Number(n) => Value::Number(*n),
        E::String(s) => Value::String(s.clone()),
        E::Array(items) => Value::Array(items.iter().map(literal).collect::<Option<Vec<_>>>()?),
        _ => return None,
    })
}

/// Converts an HCL value to JSON.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// Converts a JSON value to HCL.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                hcl::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}
