//! Input variables: defaults, `OPSCTL_VAR_name`, `--var-file` and `--var k=v`, in Terraform's
//! order of precedence, converted to each variable's type and checked by its `validation`s.

use std::collections::HashMap;

use hcl::{Map, Value};

use crate::config::eval::{evaluate, Scope};
use crate::config::{Config, Diagnostic, Diagnostics};

/// Raw variable values from outside the configuration, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `OPSCTL_VAR_name=value` pairs from the environment.
    pub env: Vec<(String, String)>,
    /// `--var-file` files: (path as given, text).
    pub files: Vec<(String, String)>,
    /// `--var name=value` in command-line order.
    pub cli: Vec<(String, String)>,
}

enum Raw {
    /// A string from the command line or environment: literal for string types, else HCL.
    Text(String),
    /// A value from a var file.
    Value(Value),
}

/// Resolves every declared variable.
///
/// Returns `var` values by name.
///
/// # Errors
///
/// Diagnostics for: a value for an undeclared variable, a required variable with no value, a
/// value of the wrong type, a failed `validation`, an unreadable var file.
pub fn resolve(config: &Config, inputs: &VarInputs) -> Result<Map<String, Value>, Diagnostics> {
    resolve_with(config, inputs, false)
}

/// As [`resolve`], but a required variable with no value is unknown instead of an error (for
/// `validate`, which checks the configuration without its inputs).
///
/// # Errors
///
/// As [`resolve`], except for missing values.
pub fn resolve_lenient(
    config: &Config,
    inputs: &VarInputs,
) -> Result<Map<String, Value>, Diagnostics> {
    resolve_with(config, inputs, true)
}

fn resolve_with(
    config: &Config,
    inputs: &VarInputs,
    lenient: bool,
) -> Result<Map<String, Value>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut raw: HashMap<String, (Raw, String)> = HashMap::new();
    let declared = |name: &str| config.variables.iter().any(|v| v.name == name);
    for (name, value) in &inputs.env {
        if declared(name) {
            raw.insert(
                name.clone(),
                (Raw::Text(value.clone()), format!("OPSCTL_VAR_{name}")),
            );
        }
    }
    for (path, text) in &inputs.files {
        match crate::config::parse_var_file(path, text) {
            Ok(entries) => {
                for (name, value) in entries {
                    if !declared(&name) {
                        diags.push(Diagnostic::error(format!(
                            "var file `{path}` sets `{name}`, which is not a declared variable"
                        )));
                        continue;
                    }
                    match value {
                        Ok(v) => {
                            raw.insert(name, (Raw::Value(v), format!("var file `{path}`")));
                        }
                        Err(mut d) => {
                            d.message = format!("var file `{path}`: `{name}`: {}", d.message);
                            diags.push(d);
                        }
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    for (name, value) in &inputs.cli {
        if !declared(name) {
            diags.push(Diagnostic::error(format!(
                "`--var {name}=...` sets an undeclared variable `{name}`; declare it with `variable \"{name}\" {{}}`"
            )));
            continue;
        }
        raw.insert(
            name.clone(),
            (Raw::Text(value.clone()), format!("`--var {name}`")),
        );
    }

    let mut values = Map::new();
    for var in &config.variables {
        // A type error quotes the value given: scrub it for a sensitive variable.
        let mut redactor = super::redact::Redactor::new();
        if var.sensitive {
            match raw.get(&var.name) {
                Some((Raw::Text(t), _)) => {
                    redactor.add_text(t);
                    if let Ok(v) = parse_hcl_value(t) {
                        redactor.add_value(&v, super::redact::Leaves::All);
                    }
                }
                Some((Raw::Value(v), _)) => redactor.add_value(v, super::redact::Leaves::All),
                None => {}
            }
        }
        let value = match raw.remove(&var.name) {
            Some((Raw::Value(v), from)) => var
                .ty
                .convert(v)
                .map_err(|e| format!("invalid value for variable `{}` from {from}: {e}", var.name)),
            Some((Raw::Text(text), from)) => {
                let parsed = if var.ty.is_string() {
                    Ok(Value::String(text.clone()))
                } else {
                    // Not valid HCL: take it as a string, so that the type conversion says what
                    // was expected (`expected a number, got `abc``).
                    Ok(parse_hcl_value(&text).unwrap_or_else(|_| Value::String(text.clone())))
                };
                parsed.and_then(|v| var.ty.convert(v)).map_err(|e| {
                    format!("invalid value for variable `{}` from {from}: {e}", var.name)
                })
            }
            None => match &var.default {
                Some(d) => evaluate(d, &NoScope).map_err(|d| d.message).and_then(|v| {
                    var.ty
                        .convert(v)
                        .map_err(|e| format!("default of variable `{}`: {e}", var.name))
                }),
                None if lenient => Ok(crate::config::eval::unknown()),
                None => {
                    diags.push(
                        Diagnostic::error(format!("no value for required variable `{}`", var.name))
                            .with_span(var.span.clone())
                            .with_note(format!(
                                "set it with `--var {0}=VALUE`, a `--var-file`, or the environment variable `OPSCTL_VAR_{0}`",
                                var.name
                            )),
                    );
                    continue;
                }
            },
        };
        match value {
            Ok(v) => {
                values.insert(var.name.clone(), v);
            }
            Err(msg) => {
                diags.push(Diagnostic::error(redactor.redact(&msg)).with_span(var.span.clone()))
            }
        }
    }
    if !diags.has_errors() {
        for var in &config.variables {
            let Some(value) = values.get(&var.name) else {
                continue;
            };
            if crate::config::eval::is_unknown(value) {
                continue;
            }
            let scope = OneVar(&var.name, value);
            // An `error_message` may interpolate the value: scrub it for a sensitive variable.
            let mut redactor = super::redact::Redactor::new();
            if var.sensitive {
                redactor.add_value(value, super::redact::Leaves::All);
            }
            for (cond, msg) in &var.validations {
                match evaluate(cond, &scope) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => {
                        let text = match evaluate(msg, &scope) {
                            Ok(Value::String(s)) => s,
                            _ => "validation failed".to_string(),
                        };
                        diags.push(
                            Diagnostic::error(format!(
                                "invalid value for variable `{}`: {}",
                                var.name,
                                redactor.redact(&text)
                            ))
                            .with_span(cond.span.clone()),
                        );
                    }
                    Ok(_) => diags.push(
                        Diagnostic::error("a validation `condition` must be `true` or `false`")
                            .with_span(cond.span.clone()),
                    ),
                    Err(mut d) => {
                        d.message = redactor.redact(&d.message);
                        diags.push(d);
                    }
                }
            }
        }
    }
    if diags.has_errors() {
        diags.attach_sources(&config.sources);
        return Err(diags);
    }
    Ok(values)
}

fn parse_hcl_value(text: &str) -> Result<Value, String> {
    crate::config::eval_value_text(text)
}

struct NoScope;

impl Scope for NoScope {
    fn var(&self, _: &str) -> Option<Value> {
        None
    }
    fn local(&self, _: &str) -> Option<Value> {
        None
    }
    fn block(&self, _: &str) -> Option<Value> {
        None
    }
}

struct OneVar<'a>(&'a str, &'a Value);

impl Scope for OneVar<'_> {
    fn var(&self, name: &str) -> Option<Value> {
        (name == self.0).then(|| self.1.clone())
    }
    fn local(&self, _: &str) -> Option<Value> {
        None
    }
    fn block(&self, _: &str) -> Option<Value> {
        None
    }
}

/// Parses `name=value` as given to `--var`.
///
/// # Errors
///
/// A message when there is no `=` or the name is empty.
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("invalid `--var` `{s}`: expected `NAME=VALUE`")),
    }
}
