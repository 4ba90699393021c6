//! Saved plans (`opsctl plan --out FILE`, `opsctl apply FILE`, `opsctl show FILE`): the
//! on-disk format, its digest, the checks `apply FILE` makes before and during the run, and
//! the human and JSON renderings `show` prints.
//!
//! A saved plan is one JSON document, written atomically ([`super::write_atomic`]):
//!
//! ```json
//! { "format_version": "1.0", "digest": "<sha256 hex of the canonical body>", "body": { ... } }
//! ```
//!
//! The body holds the resolved variables (a sensitive one only as the salted argon2id hash the
//! journal uses, to be supplied again at apply), the path and SHA-256 of every configuration
//! file, the provider settings (secret-looking or secret-derived arguments redacted), and per
//! step instance its address, type, target, action, dependencies, effects and the `before` and
//! `after` of every field it manages. Values derived from a sensitive value are never written:
//! such a field is stored as `"sensitive": true` with no value. The digest is the SHA-256 of
//! the body serialized by `serde_json` (compact); any edit of the body changes it, so a file
//! edited by hand is refused. A reader refuses a major format version other than
//! [`FORMAT_MAJOR`]; minor versions only add fields.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::Digest as _;

use crate::config::eval::{is_unknown, json_is_unknown, to_json as value_to_json, UNKNOWN};
use crate::config::Config;
use crate::plan::redact::REDACTED;
use crate::plan::{Counts, Plan};
use crate::provider::{Action, FieldChange, ProviderArgs};

/// The format version this opsctl writes.
pub const FORMAT_VERSION: &str = "1.0";
/// The major format version this opsctl reads.
pub const FORMAT_MAJOR: u64 = 1;

/// A saved plan as stored in its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    /// `MAJOR.MINOR`.
    pub format_version: String,
    /// SHA-256 (lowercase hex) of the canonical body; see [`SavedPlan::digest`].
    pub digest: String,
    /// What was planned.
    pub body: Body,
}

/// The content of a saved plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Body {
    /// The opsctl version that made the plan.
    pub opsctl_version: String,
    /// When the plan was made (RFC 3339, UTC).
    pub created_at: String,
    /// The configuration digest (as the journal records it).
    pub config_digest: String,
    /// Every configuration file, in load order.
    pub config_files: Vec<ConfigFile>,
    /// Variable values; a sensitive one as `{"sensitive": true, "argon2": PHC}`.
    pub variables: serde_json::Map<String, Json>,
    /// Evaluated provider block arguments by provider key (`NAME` or `NAME.ALIAS`); a
    /// secret argument as `{"sensitive": true}`.
    pub providers: BTreeMap<String, serde_json::Map<String, Json>>,
    /// Step instances, dependencies first.
    pub steps: Vec<SavedStep>,
    /// Outputs as known at plan time.
    pub outputs: Vec<SavedOutput>,
    /// The plan's JSON document as `plan --format json` prints it (`docs/plan.schema.json`),
    /// which `show --json` prints; Null in a file written before it was kept.
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub document: Json,
}

/// One configuration file the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Path as opsctl shows it (relative to the working directory).
    pub path: String,
    /// SHA-256 (lowercase hex) of its text as loaded (a UTF-8 byte order mark dropped).
    pub sha256: String,
}

/// One step instance of a saved plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedStep {
    /// `step.TYPE.NAME[KEY]`.
    pub address: String,
    /// The step type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Target address (`(sensitive value)` when derived from a sensitive value).
    pub target: String,
    /// `noop`, `run`, `create`, `update`, `delete` or `replace`.
    pub action: String,
    /// Addresses of the instances it comes after.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Every managed field.
    #[serde(default)]
    pub fields: Vec<SavedField>,
    /// Effects (pods evicted, command run), redacted.
    #[serde(default)]
    pub summary: Vec<String>,
    /// Whether an argument derives from a sensitive value.
    #[serde(default)]
    pub sensitive: bool,
}

/// One managed field of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedField {
    /// Dotted path (`spec.replicas`).
    pub path: String,
    /// Value when the plan was made (read, or predicted by an earlier step); absent when the
    /// object did not exist, or when the field is sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Json>,
    /// Value after apply; absent when removed, or when the field is sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Json>,
    /// Derived from a sensitive value: no value is stored, and apply does not compare it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// For a sensitive field: whether it changes (`before != after`), and which sides exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
}

/// An output as known at plan time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedOutput {
    /// Output name.
    pub name: String,
    /// Its value, absent when sensitive or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
    /// Known only after apply.
    #[serde(default)]
    pub unknown: bool,
    /// Declared `sensitive`.
    #[serde(default)]
    pub sensitive: bool,
}

/// Parses an action name as [`Action::as_str`] writes it.
pub fn parse_action(s: &str) -> Option<Action> {
    Some(match s {
        "noop" => Action::NoOp,
        "run" => Action::Run,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        "replace" => Action::Replace,
        _ => return None,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of a body value serialized compactly by `serde_json`.
fn body_digest(body: &Json) -> String {
    sha256_hex(&serde_json::to_vec(body).unwrap_or_default())
}

/// The configuration files of `config` with their digests.
pub fn config_files(config: &Config) -> Vec<ConfigFile> {
    config
        .sources
        .files
        .iter()
        .map(|f| ConfigFile {
            path: f.display.clone(),
            sha256: sha256_hex(f.text.as_bytes()),
        })
        .collect()
}

/// Whether a provider argument name looks like a credential (`token`, `password`, ...).
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "password", "secret", "credential", "private_key"]
        .iter()
        .any(|s| n.contains(s))
}

/// Whether a value holds a secret the plan knows of (a sensitive variable or a value derived
/// from one), in any leaf.
fn leaks(plan: &Plan, v: &Json) -> bool {
    match v {
        Json::Array(a) => a.iter().any(|x| leaks(plan, x)),
        Json::Object(o) => o.values().any(|x| leaks(plan, x)),
        Json::String(s) => plan.redact(s) != *s,
        Json::Null => false,
        other => {
            let t = other.to_string();
            plan.redact(&t) != t
        }
    }
}

/// Whether field `path` belongs to a sensitive argument (`data.password` under `data`), the
/// rule the plan text uses.
fn sensitive_path(sensitive_args: &[String], path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    sensitive_args.iter().any(|a| {
        a == path
            || a == last
            || path
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

fn shape_of(f: &FieldChange) -> String {
    match (&f.before, &f.after) {
        (Some(b), Some(a)) if b == a => "same",
        (Some(_), Some(_)) => "changed",
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        (None, None) => "none",
    }
    .to_string()
}

impl SavedPlan {
    /// Builds the saved plan of `plan`: `variables` as the journal records them (sensitive
    /// ones hashed by the caller), `providers` the evaluated provider arguments by key.
    /// Every value derived from a sensitive value is left out. `document` is the plan's JSON
    /// document (`render::json::plan_document`, redacted), kept for `show --json`.
    pub fn build(
        plan: &Plan,
        variables: serde_json::Map<String, Json>,
        providers: &HashMap<String, ProviderArgs>,
        document: Json,
    ) -> SavedPlan {
        let steps = plan
            .instances
            .iter()
            .map(|inst| {
                let fields = inst
                    .change
                    .fields
                    .iter()
                    .map(|f| {
                        let secret = sensitive_path(&inst.sensitive_args, &f.path)
                            || (inst.sensitive
                                && (f.before.as_ref().is_some_and(|v| leaks(plan, v))
                                    || f.after.as_ref().is_some_and(|v| leaks(plan, v))));
                        if secret {
                            SavedField {
                                path: f.path.clone(),
                                before: None,
                                after: None,
                                sensitive: true,
                                shape: Some(shape_of(f)),
                            }
                        } else {
                            SavedField {
                                path: f.path.clone(),
                                before: f.before.clone(),
                                after: f.after.clone(),
                                sensitive: false,
                                shape: None,
                            }
                        }
                    })
                    .collect();
                let target = if inst.sensitive_args.iter().any(|a| a == "target") {
                    REDACTED.to_string()
                } else {
                    plan.redact(&inst.target)
                };
                SavedStep {
                    address: inst.address.clone(),
                    type_name: inst.type_name.clone(),
                    target,
                    action: inst.change.action.as_str().to_string(),
                    depends_on: inst
                        .deps
                        .iter()
                        .map(|&d| plan.instances[d].address.clone())
                        .collect(),
                    fields,
                    summary: inst.change.summary.iter().map(|l| plan.redact(l)).collect(),
                    sensitive: inst.sensitive,
                }
            })
            .collect();
        let outputs = plan
            .outputs
            .iter()
            .map(|(name, value, sensitive)| {
                let unknown = is_unknown(value);
                let json = value_to_json(value);
                let value = (!*sensitive && !unknown && !leaks(plan, &json)).then_some(json);
                SavedOutput {
                    name: name.clone(),
                    value,
                    unknown,
                    sensitive: *sensitive,
                }
            })
            .collect();
        let providers = providers
            .iter()
            .map(|(key, args)| {
                let args = args
                    .iter()
                    .map(|(k, v)| {
                        let v = if secret_name(k) || leaks(plan, v) {
                            serde_json::json!({ "sensitive": true })
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect();
                (key.clone(), args)
            })
            .collect();
        let body = Body {
            opsctl_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: super::now_rfc3339(),
            config_digest: plan.config.digest.clone(),
            config_files: config_files(&plan.config),
            variables,
            providers,
            steps,
            outputs,
            document,
        };
        let digest = body_digest(&serde_json::to_value(&body).unwrap_or_default());
        SavedPlan {
            format_version: FORMAT_VERSION.to_string(),
            digest,
            body,
        }
    }

    /// The plan digest: SHA-256 (lowercase hex) of the canonical body. Two files with the same
    /// digest describe the same plan; the journal records it for runs of a saved plan.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    /// The file's bytes (pretty-printed JSON, with a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Writes the plan to `path` atomically ([`super::write_atomic`]).
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        super::write_atomic(path, &self.to_bytes())
            .map_err(|e| format!("cannot write the plan to `{}`: {e}", path.display()))
    }

    /// Reads and checks a saved plan: its format version (an unknown major version is
    /// refused) and its digest (a body that does not match it was edited by hand).
    ///
    /// # Errors
    ///
    /// A message naming the file: unreadable, not JSON, unknown format version, digest
    /// mismatch, or a body this version cannot decode.
    pub fn load(path: &Path) -> Result<SavedPlan, String> {
        let p = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read plan `{p}`: {e}"))?;
        let doc: Json = serde_json::from_slice(&bytes)
            .map_err(|e| format!("`{p}` is not a saved plan: it is not JSON ({e})"))?;
        let version = doc
            .get("format_version")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                format!("`{p}` is not a saved plan: it has no `format_version` string")
            })?;
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .ok_or_else(|| {
                format!("`{p}` has format version `{version}`, which is not MAJOR.MINOR")
            })?;
        if major != FORMAT_MAJOR {
            return Err(format!(
                "plan `{p}` has format version {version}, which this opsctl ({}) cannot read: it reads saved plans of format {FORMAT_MAJOR}.x. \
                 Make the plan again with this opsctl, or apply it with the opsctl that wrote it",
                env!("CARGO_PKG_VERSION")
            ));
        }
        let recorded = doc.get("digest").and_then(Json::as_str).unwrap_or_default();
        let body = doc
            .get("body")
            .ok_or_else(|| format!("`{p}` is not a saved plan: it has no `body`"))?;
        let actual = body_digest(body);
        if recorded != actual {
            return Err(format!(
                "plan `{p}` was modified after opsctl wrote it (its digest `{}` does not match its content, `{}`); \
                 a saved plan is applied exactly as reviewed, never edited. Make a new plan with `opsctl plan --out`",
                short(recorded),
                short(&actual)
            ));
        }
        let body: Body = serde_json::from_value(body.clone())
            .map_err(|e| format!("plan `{p}` is damaged: {e}"))?;
        for s in &body.steps {
            if parse_action(&s.action).is_none() {
                return Err(format!(
                    "plan `{p}` is damaged: step `{}` has unknown action `{}`",
                    s.address, s.action
                ));
            }
        }
        Ok(SavedPlan {
            format_version: version.to_string(),
            digest: actual,
            body,
        })
    }

    /// Checks that `config` (the configuration in the working directory now) is the one the
    /// plan was made from.
    ///
    /// # Errors
    ///
    /// A message naming each changed, added or removed file.
    pub fn check_config(&self, config: &Config) -> Result<(), String> {
        let now = config_files(config);
        let then: HashMap<&str, &str> = self
            .body
            .config_files
            .iter()
            .map(|f| (f.path.as_str(), f.sha256.as_str()))
            .collect();
        let now_map: HashMap<&str, &str> = now
            .iter()
            .map(|f| (f.path.as_str(), f.sha256.as_str()))
            .collect();
        let mut problems = Vec::new();
        for f in &self.body.config_files {
            match now_map.get(f.path.as_str()) {
                None => problems.push(format!("`{}` was removed", f.path)),
                Some(d) if *d != f.sha256 => problems.push(format!(
                    "`{}` changed (sha256 {} when planned, {} now)",
                    f.path,
                    short(&f.sha256),
                    short(d)
                )),
                Some(_) => {}
            }
        }
        for f in &now {
            if !then.contains_key(f.path.as_str()) {
                problems.push(format!("`{}` was added", f.path));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the configuration changed since the plan was made: {}; this plan no longer describes it. Make a new plan with `opsctl plan --out`",
                problems.join(", ")
            ))
        }
    }

    /// Ties a plan made again from the same configuration at apply time to this saved plan:
    /// the same step instances (address, type, target) in the same order, each given the
    /// saved action, and the saved `before` of its managed fields as the expectation apply
    /// checks before the step's side effect ([`Expected::check`]).
    ///
    /// # Errors
    ///
    /// "plan is stale" naming the first step that is new, gone or has another target (a
    /// `for_each` over data that changed, say).
    pub fn bind(&self, plan: &mut Plan) -> Result<(), String> {
        let saved: HashMap<&str, &SavedStep> = self
            .body
            .steps
            .iter()
            .map(|s| (s.address.as_str(), s))
            .collect();
        let now: std::collections::HashSet<&str> =
            plan.instances.iter().map(|i| i.address.as_str()).collect();
        if let Some(gone) = self
            .body
            .steps
            .iter()
            .find(|s| !now.contains(s.address.as_str()))
        {
            return Err(format!(
                "plan is stale: step `{}` of the plan is no longer part of the procedure (the data it was expanded from changed); nothing was applied. Make a new plan",
                gone.address
            ));
        }
        let mut fields = HashMap::new();
        for inst in &mut plan.instances {
            let Some(s) = saved.get(inst.address.as_str()) else {
                return Err(format!(
                    "plan is stale: the procedure now has step `{}`, which the plan does not (the data it is expanded from changed); nothing was applied. Make a new plan",
                    inst.address
                ));
            };
            if s.type_name != inst.type_name || (s.target != REDACTED && s.target != inst.target) {
                return Err(format!(
                    "plan is stale: step `{}` now acts on `{}`, the plan on `{}`; nothing was applied. Make a new plan",
                    inst.address, inst.target, s.target
                ));
            }
            if let Some(a) = parse_action(&s.action) {
                inst.change.action = a;
            }
            fields.insert(inst.address.clone(), s.fields.clone());
        }
        plan.saved = Some(std::sync::Arc::new(Expected { fields }));
        Ok(())
    }

    /// Counts for the summary line.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.body.steps {
            match parse_action(&s.action) {
                Some(Action::NoOp) => c.unchanged += 1,
                Some(Action::Run) => c.run += 1,
                _ => c.change += 1,
            }
        }
        c
    }

    /// Whether applying it would do anything.
    pub fn has_changes(&self) -> bool {
        self.body.steps.iter().any(|s| s.action != "noop")
    }
}

/// The `before` of every managed field per step of a saved plan, which apply checks against
/// the live target just before the step's side effect.
#[derive(Debug, Default)]
pub struct Expected {
    fields: HashMap<String, Vec<SavedField>>,
}

impl Expected {
    /// Whether the plan holds expectations for step `address`.
    pub fn has(&self, address: &str) -> bool {
        self.fields.contains_key(address)
    }

    /// Compares the fields of the change planned against the live target now (`live`) with
    /// the saved plan's `before` of step `address`. Sensitive fields and values that were
    /// unknown at plan time are not compared.
    ///
    /// # Errors
    ///
    /// "plan is stale", naming the first field that differs, its planned and its live value.
    pub fn check(&self, address: &str, live: &[FieldChange]) -> Result<(), String> {
        let Some(saved) = self.fields.get(address) else {
            return Ok(());
        };
        for f in saved.iter().filter(|f| !f.sensitive) {
            if f.before.as_ref().is_some_and(json_is_unknown) {
                continue;
            }
            let now = live
                .iter()
                .find(|l| l.path == f.path)
                .and_then(|l| l.before.clone());
            if now != f.before {
                return Err(format!(
                    "plan is stale: `{}` was {} when the plan was made and is {} now, so the step was not applied. \
                     Make a new plan, or continue this run from the configuration as it is with `opsctl apply --resume --replan`",
                    f.path,
                    show_opt(&f.before),
                    show_opt(&now)
                ));
            }
        }
        Ok(())
    }
}

fn show_opt(v: &Option<Json>) -> String {
    match v {
        Some(v) => crate::render::show_value(v),
        None => "absent".into(),
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The human rendering of a saved plan: the text `opsctl plan` printed when it was made.
pub fn render_text(saved: &SavedPlan) -> String {
    let mut out = String::new();
    let acting: Vec<&SavedStep> = saved
        .body
        .steps
        .iter()
        .filter(|s| s.action != "noop")
        .collect();
    if acting.is_empty() {
        out.push_str("No changes. The live state already matches the procedure.\n\n");
    } else {
        out.push_str("opsctl will perform the following actions, in this order:\n\n");
        out.push_str("Symbols: + create, ~ update in place, - delete, -/+ replace, > run\n\n");
        for s in acting {
            let action = parse_action(&s.action).unwrap_or(Action::Run);
            let _ = writeln!(out, "  # {} {}", s.address, crate::render::describe(action));
            let _ = writeln!(out, "  #   target: {}", s.target);
            let deps: Vec<&str> = s.depends_on.iter().map(String::as_str).collect();
            crate::render::write_after_line(&mut out, &deps);
            let _ = writeln!(out, "  {} {}", action.symbol(), s.address);
            for f in &s.fields {
                if f.sensitive {
                    let sym = match f.shape.as_deref() {
                        Some("same") => " ",
                        Some("changed") => "~",
                        Some("added") if action == Action::Run => ">",
                        Some("added") => "+",
                        _ => "-",
                    };
                    let _ = writeln!(out, "      {sym} {}: {REDACTED}", f.path);
                } else {
                    let change = FieldChange {
                        path: f.path.clone(),
                        before: f.before.clone(),
                        after: f.after.clone(),
                    };
                    crate::render::render_field(&mut out, action, &change);
                }
            }
            for line in &s.summary {
                let _ = writeln!(out, "      # {line}");
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{}", crate::render::summary_line(saved.counts()));
    if !saved.body.outputs.is_empty() {
        out.push_str("\nOutputs:\n");
        for o in &saved.body.outputs {
            let shown = match &o.value {
                _ if o.sensitive => REDACTED.to_string(),
                _ if o.unknown => "(known after apply)".to_string(),
                Some(v) => crate::render::show_value(v),
                None => REDACTED.to_string(),
            };
            let _ = writeln!(out, "  {} = {shown}", o.name);
        }
    }
    out
}

/// Replaces values known only after apply by `null` and reports whether there were any.
fn known_or_null(v: &Json) -> (Json, bool) {
    match v {
        Json::String(s) if s.contains(UNKNOWN) => (Json::Null, true),
        Json::Array(a) => {
            let mut unknown = false;
            let items = a
                .iter()
                .map(|x| {
                    let (x, u) = known_or_null(x);
                    unknown |= u;
                    x
                })
                .collect();
            (Json::Array(items), unknown)
        }
        Json::Object(o) => {
            let mut unknown = false;
            let items = o
                .iter()
                .map(|(k, x)| {
                    let (x, u) = known_or_null(x);
                    unknown |= u;
                    (k.clone(), x)
                })
                .collect();
            (Json::Object(items), unknown)
        }
        other => (other.clone(), false),
    }
}

/// The JSON document of a saved plan (`opsctl show --json FILE`), modelled on Terraform's
/// JSON plan: `format_version`, `plan_digest`, `steps` (per step `address`, `type`,
/// `target`, `action`, `before` and `after` as objects of managed field paths,
/// `after_unknown` (paths known only after apply), `sensitive` (paths whose values are
/// withheld), `effects`, `depends_on`), `outputs` and `variables` (sensitive ones redacted).
pub fn to_json(saved: &SavedPlan) -> Json {
    let steps: Vec<Json> = saved
        .body
        .steps
        .iter()
        .map(|s| {
            let mut before = serde_json::Map::new();
            let mut after = serde_json::Map::new();
            let mut after_unknown = Vec::new();
            let mut sensitive = Vec::new();
            for f in &s.fields {
                if f.sensitive {
                    sensitive.push(Json::String(f.path.clone()));
                    continue;
                }
                if let Some(b) = &f.before {
                    before.insert(f.path.clone(), known_or_null(b).0);
                }
                if let Some(a) = &f.after {
                    let (a, unknown) = known_or_null(a);
                    if unknown {
                        after_unknown.push(Json::String(f.path.clone()));
                    }
                    after.insert(f.path.clone(), a);
                }
            }
            serde_json::json!({
                "address": s.address,
                "type": s.type_name,
                "target": s.target,
                "action": s.action,
                "before": before,
                "after": after,
                "after_unknown": after_unknown,
                "sensitive": sensitive,
                "effects": s.summary,
                "depends_on": s.depends_on,
            })
        })
        .collect();
    let outputs: serde_json::Map<String, Json> = saved
        .body
        .outputs
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                serde_json::json!({
                    "value": o.value.clone().unwrap_or(Json::Null),
                    "sensitive": o.sensitive,
                    "unknown": o.unknown,
                }),
            )
        })
        .collect();
    let variables: serde_json::Map<String, Json> = saved
        .body
        .variables
        .iter()
        .map(|(k, v)| {
            let sensitive = v.get("sensitive").and_then(Json::as_bool) == Some(true)
                && v.get("argon2").is_some();
            let shown = if sensitive {
                serde_json::json!({ "sensitive": true })
            } else {
                serde_json::json!({ "value": v })
            };
            (k.clone(), shown)
        })
        .collect();
    let c = saved.counts();
    serde_json::json!({
        "format_version": saved.format_version,
        "plan_digest": saved.digest,
        "opsctl_version": saved.body.opsctl_version,
        "created_at": saved.body.created_at,
        "configuration": {
            "digest": saved.body.config_digest,
            "files": saved.body.config_files,
        },
        "summary": { "run": c.run, "change": c.change, "unchanged": c.unchanged },
        "steps": steps,
        "outputs": outputs,
        "variables": variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedPlan {
        let body = Body {
            opsctl_version: "0".into(),
            created_at: "t".into(),
            config_digest: "d".into(),
            config_files: vec![],
            variables: serde_json::Map::new(),
            providers: BTreeMap::new(),
            steps: vec![SavedStep {
                address: "step.noop.a".into(),
                type_name: "noop".into(),
                target: "noop/a".into(),
                action: "update".into(),
                depends_on: vec![],
                fields: vec![SavedField {
                    path: "spec.replicas".into(),
                    before: Some(serde_json::json!(2)),
                    after: Some(serde_json::json!(3)),
                    sensitive: false,
                    shape: None,
                }],
                summary: vec![],
                sensitive: false,
            }],
            outputs: vec![],
            document: Json::Null,
        };
        let digest = body_digest(&serde_json::to_value(&body).unwrap());
        SavedPlan {
            format_version: FORMAT_VERSION.into(),
            digest,
            body,
        }
    }

    #[test]
    fn round_trip_keeps_the_digest_and_an_edit_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let p = sample();
        p.write(&path).unwrap();
        let back = SavedPlan::load(&path).unwrap();
        assert_eq!(back.digest(), p.digest());
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"after\": 3", "\"after\": 30");
        std::fs::write(&path, text).unwrap();
        let err = SavedPlan::load(&path).unwrap_err();
        assert!(err.contains("modified after opsctl wrote it"), "{err}");
    }

    #[test]
    fn stale_fields_are_named_with_both_values() {
        let p = sample();
        let e = Expected {
            fields: [("step.noop.a".to_string(), p.body.steps[0].fields.clone())].into(),
        };
        let live = |v: i64| FieldChange {
            path: "spec.replicas".into(),
            before: Some(serde_json::json!(v)),
            after: Some(serde_json::json!(3)),
        };
        assert!(e.check("step.noop.a", &[live(2)]).is_ok());
        let err = e.check("step.noop.a", &[live(5)]).unwrap_err();
        assert!(
            err.contains(
                "plan is stale: `spec.replicas` was 2 when the plan was made and is 5 now"
            ),
            "{err}"
        );
    }
}
