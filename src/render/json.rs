//! Machine-readable renderings: the versioned JSON plan document (`opsctl plan --format json`,
//! modelled on Terraform's `terraform show -json` plan representation) and the diagnostics
//! document of `opsctl validate --json` (Terraform's `terraform validate -json` shape). The
//! schemas are written down in `docs/plan.schema.json` and `docs/validate.schema.json`.

use serde_json::{json, Map, Value as Json};

use crate::config::eval::{is_unknown, json_is_unknown, to_json};
use crate::config::{Diagnostic, Diagnostics, Severity};
use crate::plan::redact::REDACTED;
use crate::plan::{Instance, Plan};
use crate::provider::{Action, FieldChange};

/// The version of the plan document: `MAJOR.MINOR`. A reader refuses an unknown major version;
/// minor versions only add fields.
pub const PLAN_FORMAT_VERSION: &str = "1.0";

/// The version of the `validate --json` document.
pub const VALIDATE_FORMAT_VERSION: &str = "1.0";

/// Whether field `path` of `inst` holds a sensitive value: the field of a sensitive argument, or
/// a field under one (`data.password` under `data`). The same rule as the human plan.
pub fn field_is_sensitive(inst: &Instance, path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    inst.sensitive_args.iter().any(|a| {
        a == path
            || a == last
            || path
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The target of `inst` as it may be shown: `(sensitive value)` when it derives from a secret.
pub fn shown_target(inst: &Instance) -> &str {
    if inst.sensitive_args.iter().any(|a| a == "target") {
        REDACTED
    } else {
        inst.target.as_str()
    }
}

/// The effect lines of `inst`'s change (pods evicted, leases revoked, command run), scrubbed of
/// secrets when the step is sensitive.
pub fn effects(plan: &Plan, inst: &Instance) -> Vec<String> {
    inst.change
        .summary
        .iter()
        .map(|l| {
            if inst.sensitive {
                plan.redact(l)
            } else {
                l.clone()
            }
        })
        .collect()
}

/// Scrubs every string of `v` with [`Plan::redact`] (a sensitive step's fields may carry a
/// secret under another name than its argument).
fn redact_json(plan: &Plan, v: &Json) -> Json {
    match v {
        Json::String(s) => Json::String(plan.redact(s)),
        Json::Array(items) => Json::Array(items.iter().map(|i| redact_json(plan, i)).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), redact_json(plan, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A value as the document shows it: unknown parts become `null` (their paths are listed in
/// `after_unknown`).
fn known_part(v: &Json) -> Json {
    match v {
        Json::String(s) if s.contains(crate::config::eval::UNKNOWN) => Json::Null,
        Json::Array(items) => Json::Array(items.iter().map(known_part).collect()),
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), known_part(v))).collect())
        }
        other => other.clone(),
    }
}

/// The before/after maps, unknown and sensitive paths of one step.
struct Fields {
    before: Option<Map<String, Json>>,
    after: Option<Map<String, Json>>,
    after_unknown: Map<String, Json>,
    sensitive: Vec<String>,
}

fn fields(plan: &Plan, inst: &Instance) -> Fields {
    let mut before = Map::new();
    let mut after = Map::new();
    let mut after_unknown = Map::new();
    let mut sensitive = Vec::new();
    let mut any_before = false;
    let mut any_after = false;
    for FieldChange {
        path,
        before: b,
        after: a,
    } in &inst.change.fields
    {
        let secret = field_is_sensitive(inst, path);
        // A field of a sensitive step that carries a secret under another name: its value
        // changes when scrubbed.
        let scrubbed = |v: &Option<Json>| {
            v.as_ref().is_some_and(|v| {
                v.as_str()
                    .is_some_and(|s| s.starts_with("(sensitive value"))
                    || redact_json(plan, &known_part(v)) != known_part(v)
            })
        };
        if secret || (inst.sensitive && (scrubbed(b) || scrubbed(a))) {
            sensitive.push(path.clone());
        }
        let show = |v: &Json| {
            if secret {
                Json::String(REDACTED.to_string())
            } else if inst.sensitive {
                redact_json(plan, &known_part(v))
            } else {
                known_part(v)
            }
        };
        if let Some(b) = b {
            any_before = true;
            before.insert(path.clone(), show(b));
        }
        if let Some(a) = a {
            any_after = true;
            if json_is_unknown(a) {
                after_unknown.insert(path.clone(), Json::Bool(true));
            }
            after.insert(path.clone(), show(a));
        }
    }
    Fields {
        // A step that creates has nothing before; one that deletes has nothing after.
        before: (any_before || inst.change.action != Action::Create).then_some(before),
        after: (any_after || inst.change.action != Action::Delete).then_some(after),
        after_unknown,
        sensitive,
    }
}

/// The module address of a step address: the part before `.step.` (`module.db` of
/// `module.db.step.exec.x`), or None for a step of the root module.
pub fn module_of(address: &str) -> Option<&str> {
    address
        .find(".step.")
        .map(|i| &address[..i])
        .filter(|m| m.starts_with("module."))
}

/// One step of the document.
fn step_json(plan: &Plan, inst: &Instance) -> Json {
    let f = fields(plan, inst);
    let mut step = json!({
        "address": inst.address,
        "module_address": module_of(&inst.address),
        "type": inst.type_name,
        "target": shown_target(inst),
        "provider": inst.provider,
        "action": inst.change.action.as_str(),
        "before": f.before,
        "after": f.after,
        "after_unknown": f.after_unknown,
        "sensitive": f.sensitive,
        "effects": effects(plan, inst),
        "depends_on": inst.deps.iter().map(|&d| plan.instances[d].address.as_str()).collect::<Vec<_>>(),
    });
    if let (Some(key), Json::Object(m)) = (&inst.key, &mut step) {
        let index = match key {
            crate::config::refs::IndexKey::Int(i) => json!(i),
            crate::config::refs::IndexKey::Str(s) => json!(s),
        };
        m.insert("index".into(), index);
    }
    step
}

/// The JSON plan document of `plan`: `format_version`, `counts` (as in the summary line),
/// `changes` (a boolean: whether apply would do anything), `steps` (every step instance in
/// apply order, no-ops included), `outputs` and `diagnostics` (empty for a plan that was
/// made). Sensitive values are `(sensitive value)` and their paths listed per step;
/// unknown values are `null` and their paths listed in `after_unknown`.
///
/// A pure function of the plan (no clock, no environment), so that a saved plan renders the
/// same document. Schema: `docs/plan.schema.json`.
pub fn plan_document(plan: &Plan) -> Json {
    let counts = plan.counts();
    let steps: Vec<Json> = plan.instances.iter().map(|i| step_json(plan, i)).collect();
    let mut outputs = Map::new();
    for (name, value, sensitive) in &plan.outputs {
        let known = !is_unknown(value);
        let shown = if *sensitive || !known {
            Json::Null
        } else {
            to_json(value)
        };
        outputs.insert(
            name.clone(),
            json!({ "sensitive": sensitive, "known": known, "value": shown }),
        );
    }
    let mut data: Vec<&str> = plan.data.keys().map(String::as_str).collect();
    data.sort_unstable();
    json!({
        "format_version": PLAN_FORMAT_VERSION,
        "opsctl_version": env!("CARGO_PKG_VERSION"),
        "errored": false,
        "changes": plan.has_changes(),
        "counts": counts,
        "steps": steps,
        "data_sources": data,
        "outputs": outputs,
        "diagnostics": [],
    })
}

/// The plan document of a plan that could not be made: no steps, the diagnostics that stopped
/// it, `errored: true`.
pub fn errored_plan_document(diags: &Diagnostics) -> Json {
    json!({
        "format_version": PLAN_FORMAT_VERSION,
        "opsctl_version": env!("CARGO_PKG_VERSION"),
        "errored": true,
        "changes": false,
        "counts": crate::plan::Counts::default(),
        "steps": [],
        "data_sources": [],
        "outputs": {},
        "diagnostics": diagnostics_json(diags),
    })
}

/// One diagnostic as Terraform's `validate -json` shows it: `severity`, `summary` (the
/// message), `detail` (the notes, one per line), and `range` (`filename`, `start` and `end`
/// with 1-based `line` and `column`) when the diagnostic points into a file.
pub fn diagnostic_json(d: &Diagnostic) -> Json {
    let mut out = json!({
        "severity": match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        "summary": d.message,
        "detail": d.notes.join("\n"),
    });
    if let (Some(loc), Json::Object(m)) = (&d.located, &mut out) {
        let end_col = loc.col
            + loc
                .source_line
                .get(loc.range.clone())
                .map_or(0, |s| s.chars().count());
        m.insert(
            "range".into(),
            json!({
                "filename": loc.path,
                "start": { "line": loc.line, "column": loc.col },
                "end": { "line": loc.line, "column": end_col },
            }),
        );
        m.insert(
            "snippet".into(),
            json!({ "code": loc.source_line, "start_line": loc.line }),
        );
    }
    out
}

/// Every diagnostic, in order.
pub fn diagnostics_json(diags: &Diagnostics) -> Vec<Json> {
    diags.0.iter().map(diagnostic_json).collect()
}

/// The `opsctl validate --json` document (Terraform's `validate -json`): `format_version`,
/// `valid`, `error_count`, `warning_count`, `diagnostics`. Schema: `docs/validate.schema.json`.
pub fn validate_document(diags: &Diagnostics) -> Json {
    let errors = diags
        .0
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    json!({
        "format_version": VALIDATE_FORMAT_VERSION,
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": diags.0.len() - errors,
        "diagnostics": diagnostics_json(diags),
    })
}
