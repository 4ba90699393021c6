//! Custom conditions (issue 11, Terraform's syntax): a step's `precondition`s, checked at plan
//! (a known-false one fails the plan at its `file:line:col`; an unknown one is deferred) and
//! again just before the step runs; its `postcondition`s, checked once it has converged with
//! `self` bound to its value (arguments overlaid by outputs); and top-level `check` blocks,
//! whose `assert`s are reported as warnings in plan and after apply, failing neither.

use std::collections::HashMap;

use hcl::Value;
use serde_json::Value as Json;

use super::{instance_value, ApplyScope, Plan};
use crate::config::conditions::ConditionKind;
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::eval::{evaluate, is_unknown, Scope};
use crate::config::refs::{IndexKey, RefRoot};
use crate::config::Attr;

/// An [`ApplyScope`] that also binds `self`.
struct SelfScope<'a> {
    inner: ApplyScope<'a>,
    own: Option<Value>,
}

impl Scope for SelfScope<'_> {
    fn var(&self, name: &str) -> Option<Value> {
        self.inner.var(name)
    }
    fn local(&self, name: &str) -> Option<Value> {
        self.inner.local(name)
    }
    fn block(&self, address: &str) -> Option<Value> {
        self.inner.block(address)
    }
    fn count_index(&self) -> Option<u64> {
        self.inner.count_index()
    }
    fn each(&self) -> Option<(Value, Value)> {
        self.inner.each()
    }
    fn self_value(&self) -> Option<Value> {
        self.own.clone()
    }
}

/// What a condition said.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It holds.
    Holds,
    /// It does not: its `error_message`.
    Fails(String),
    /// It depends on values known only after apply.
    Unknown,
}

/// Evaluates `condition` (a bool) and, when false, `message`, in `scope`.
fn judge(condition: &Attr, message: &Attr, scope: &dyn Scope) -> Result<Verdict, Diagnostic> {
    // A comparison with an unknown value evaluates to a known `false`: look at what the
    // condition refers to first (the referenced attribute, as deep as the path names it).
    for r in &condition.refs {
        let (value, path) = match r.root {
            RefRoot::Var => (
                r.parts.get(1).and_then(|n| scope.var(n)),
                &r.parts[2.min(r.parts.len())..],
            ),
            RefRoot::Local => (
                r.parts.get(1).and_then(|n| scope.local(n)),
                &r.parts[2.min(r.parts.len())..],
            ),
            RefRoot::Step | RefRoot::Data if r.parts.len() >= 3 => {
                (scope.block(&r.subject()), &r.parts[3..])
            }
            RefRoot::Other if r.parts.first().map(String::as_str) == Some("self") => {
                (scope.self_value(), &r.parts[1..])
            }
            _ => continue,
        };
        let Some(mut value) = value else { continue };
        for key in path {
            match value.as_object().and_then(|m| m.get(key.as_str())) {
                Some(v) => value = v.clone(),
                None => break,
            }
        }
        if is_unknown(&value) {
            return Ok(Verdict::Unknown);
        }
    }
    let v = evaluate(condition, scope)?;
    if is_unknown(&v) {
        return Ok(Verdict::Unknown);
    }
    match v {
        Value::Bool(true) => Ok(Verdict::Holds),
        Value::Bool(false) => {
            let text = match evaluate(message, scope) {
                Ok(Value::String(s)) if !s.contains(crate::config::eval::UNKNOWN) => s,
                Ok(other) if !is_unknown(&other) => other.to_string(),
                _ => "(the error message is not known yet)".to_string(),
            };
            Ok(Verdict::Fails(text))
        }
        other => Err(Diagnostic::error(format!(
            "`condition` must be `true` or `false`, not `{other}`"
        ))
        .with_span(condition.span.clone())),
    }
}

impl Plan {
    fn scope_of<'a>(
        &'a self,
        idx: usize,
        outputs: &'a HashMap<String, Json>,
        own: Option<Value>,
    ) -> SelfScope<'a> {
        let inst = &self.instances[idx];
        let block = &self.config.blocks[inst.block];
        SelfScope {
            inner: ApplyScope {
                plan: self,
                outputs,
                count: match &inst.key {
                    Some(IndexKey::Int(i)) if block.count.is_some() => Some(*i),
                    _ => None,
                },
                each: self.each_of(inst),
            },
            own,
        }
    }

    /// Checks the `kind` conditions of instance `idx` with the outputs of finished steps
    /// (`outputs`; planned outputs stand in for the others) and, for postconditions, `self`
    /// bound to the instance's arguments overlaid by `own_outputs`.
    ///
    /// Returns Ok(true) when all hold, Ok(false) when one is still unknown (and none fails).
    ///
    /// # Errors
    ///
    /// A diagnostic at the failing condition's span: `precondition of `ADDR` failed: MESSAGE`,
    /// or an evaluation error.
    pub fn check_conditions(
        &self,
        idx: usize,
        kind: ConditionKind,
        outputs: &HashMap<String, Json>,
        own_outputs: Option<&Json>,
    ) -> Result<bool, Diagnostic> {
        let inst = &self.instances[idx];
        let block = &self.config.blocks[inst.block];
        let own = own_outputs.map(|o| instance_value(&inst.inputs, o));
        let scope = self.scope_of(idx, outputs, own);
        let mut known = true;
        for c in block.conditions.iter().filter(|c| c.kind == kind) {
            match judge(&c.condition, &c.error_message, &scope)? {
                Verdict::Holds => {}
                Verdict::Unknown => known = false,
                Verdict::Fails(msg) => {
                    return Err(Diagnostic::error(format!(
                        "{} of `{}` failed: {}",
                        kind.keyword(),
                        inst.address,
                        self.redact(&msg)
                    ))
                    .with_span(c.condition.span.clone()))
                }
            }
        }
        Ok(known)
    }

    /// Every precondition at plan time: the errors of those known false.
    pub fn plan_preconditions(&self) -> Diagnostics {
        let none = HashMap::new();
        let mut diags = Diagnostics::default();
        for idx in 0..self.instances.len() {
            if let Err(d) = self.check_conditions(idx, ConditionKind::Pre, &none, None) {
                diags.push(d);
            }
        }
        diags.attach_sources(&self.config.sources);
        diags
    }

    /// Evaluates every `check` block's asserts with the outputs of finished steps
    /// (`outputs`; planned outputs for the others): `(check name, location, verdict)`.
    pub fn run_checks(&self, outputs: &HashMap<String, Json>) -> Vec<(String, String, Verdict)> {
        let scope = ApplyScope {
            plan: self,
            outputs,
            count: None,
            each: None,
        };
        let mut out = Vec::new();
        for check in &self.config.checks {
            for (cond, msg) in &check.asserts {
                let verdict = match judge(cond, msg, &scope) {
                    Ok(v) => v,
                    Err(d) => Verdict::Fails(d.message),
                };
                let verdict = match verdict {
                    Verdict::Fails(m) => Verdict::Fails(self.redact(&m)),
                    v => v,
                };
                out.push((
                    check.name.clone(),
                    self.config.sources.location(&cond.span),
                    verdict,
                ));
            }
        }
        out
    }
}
