//! Redaction: replaces the values of `sensitive` variables (and values derived from them) by
//! `(sensitive value)` in text bound for the terminal or the journal.
//!
//! Every leaf of a value is a secret of its own, in every textual form it can take: a string
//! as is, JSON-escaped and Rust-escaped (as `{:?}` shows it), and line by line; a number as
//! `5`, `5.0`, `5e0`...; a bool as `true`/`false`. Short strings, numbers and bools match only
//! as whole tokens, so that a secret `5` does not eat the `5` of `15` or `1.5`. Overlapping
//! matches are merged, so a secret never shows in part.

use std::collections::HashSet;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use serde_json::Value as Json;

/// What a redacted value shows as.
pub const REDACTED: &str = "(sensitive value)";

/// Strings shorter than this (in characters) match only as whole tokens.
const MIN_ANYWHERE: usize = 4;

/// How much of a value to treat as secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaves {
    /// Every leaf: the value of a `sensitive` variable.
    All,
    /// Only strings of 4 characters or more: values merely derived from a secret (a step's
    /// outputs, a command line), whose short leaves (`0`, `true`, `ok`) are rarely the
    /// secret itself and would blank out every message.
    LongStrings,
}

/// A set of secrets and a matcher for them (built on first use after a change, so that adding
/// the outputs of many steps one by one stays linear).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// (form, whole token only).
    patterns: Vec<(String, bool)>,
    known: HashSet<(String, bool)>,
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl Redactor {
    /// An empty redactor (changes nothing).
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Whether it knows no secret.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds every leaf of `value` (per `leaves`) in all its textual forms.
    pub fn add_json(&mut self, value: &Json, leaves: Leaves) {
        let before = self.patterns.len();
        self.collect(value, leaves);
        if self.patterns.len() != before {
            self.matcher = OnceLock::new();
        }
    }

    /// Adds every leaf of an HCL value (per `leaves`).
    pub fn add_value(&mut self, value: &hcl::Value, leaves: Leaves) {
        self.add_json(&crate::config::eval::to_json(value), leaves);
    }

    /// Adds a raw text (as given on the command line) as one string secret.
    pub fn add_text(&mut self, text: &str) {
        self.add_json(&Json::String(text.to_string()), Leaves::All);
    }

    fn push(&mut self, form: String, token: bool) {
        if form.is_empty() || form.contains(crate::config::eval::UNKNOWN) {
            return;
        }
        if self.known.insert((form.clone(), token)) {
            self.patterns.push((form, token));
        }
    }

    fn collect(&mut self, value: &Json, leaves: Leaves) {
        match value {
            Json::Null => {}
            Json::Bool(b) if leaves == Leaves::All => self.push(b.to_string(), true),
            Json::Number(n) if leaves == Leaves::All => {
                self.push(n.to_string(), true);
                if let Some(f) = n.as_f64() {
                    self.push(format!("{f}"), true);
                    self.push(format!("{f:?}"), true);
                    self.push(format!("{f:e}"), true);
                    if f.fract() == 0.0 && f.abs() < 1e17 {
                        self.push(format!("{}", f as i64), true);
                        self.push(format!("{}.0", f as i64), true);
                    }
                }
            }
            Json::Bool(_) | Json::Number(_) => {}
            Json::String(s) => {
                let long = s.chars().count() >= MIN_ANYWHERE;
                if leaves == Leaves::LongStrings && !long {
                    return;
                }
                let mut forms = vec![s.clone()];
                let trimmed = s.trim();
                if trimmed != s && !trimmed.is_empty() {
                    forms.push(trimmed.to_string());
                }
                if let Ok(json) = serde_json::to_string(s) {
                    forms.push(json[1..json.len() - 1].to_string());
                }
                let debug = format!("{s:?}");
                forms.push(debug[1..debug.len() - 1].to_string());
                for form in forms {
                    let token = form.chars().count() < MIN_ANYWHERE;
                    self.push(form, token);
                }
                // Multi-line text (a command's output) shows up line by line in messages.
                if s.contains('\n') {
                    for line in s.lines().map(str::trim) {
                        if line.chars().count() >= MIN_ANYWHERE {
                            self.push(line.to_string(), false);
                        }
                    }
                }
            }
            Json::Array(items) => {
                for v in items {
                    self.collect(v, leaves);
                }
            }
            Json::Object(map) => {
                for v in map.values() {
                    self.collect(v, leaves);
                }
            }
        }
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        if self.patterns.is_empty() {
            return text.to_string();
        }
        let matcher = self
            .matcher
            .get_or_init(|| AhoCorasick::new(self.patterns.iter().map(|(f, _)| f.as_str())).ok());
        let Some(matcher) = matcher else {
            // Cannot happen with these sizes; never show a secret if it does.
            return REDACTED.to_string();
        };
        let mut ranges: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(text)
            .filter(|m| {
                !self.patterns[m.pattern().as_usize()].1 || bounded(text, m.start(), m.end())
            })
            .map(|m| (m.start(), m.end()))
            .collect();
        if ranges.is_empty() {
            return text.to_string();
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut i = 0;
        while i < ranges.len() {
            let (start, mut end) = ranges[i];
            i += 1;
            while i < ranges.len() && ranges[i].0 < end {
                end = end.max(ranges[i].1);
                i += 1;
            }
            out.push_str(&text[pos..start]);
            out.push_str(REDACTED);
            pos = end;
        }
        out.push_str(&text[pos..]);
        out
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `text[start..end]` is a whole token: no word character (or a decimal point inside
/// a number) right before or after it.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let before = &text[..start];
    let after = &text[end..];
    let mut back = before.chars().rev();
    let ok_before = match back.next() {
        None => true,
        Some('.') => !back.next().is_some_and(|c| c.is_ascii_digit()),
        Some(c) => !is_word(c),
    };
    let mut fwd = after.chars();
    let ok_after = match fwd.next() {
        None => true,
        Some('.') => !fwd.next().is_some_and(|c| c.is_ascii_digit()),
        Some(c) => !is_word(c),
    };
    ok_before && ok_after
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor(v: Json) -> Redactor {
        let mut r = Redactor::new();
        r.add_json(&v, Leaves::All);
        r
    }

    #[test]
    fn strings_in_every_form() {
        let r = redactor(json!("pa\"ss\\word\nline-two"));
        assert_eq!(
            r.redact("x pa\"ss\\word\nline-two y"),
            "x (sensitive value) y"
        );
        assert_eq!(
            r.redact(r#"{"k":"pa\"ss\\word\nline-two"}"#),
            r#"{"k":"(sensitive value)"}"#
        );
        assert_eq!(r.redact("tail: line-two"), "tail: (sensitive value)");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn numbers_as_whole_tokens_in_every_form() {
        let r = redactor(json!(5));
        assert_eq!(
            r.redact("exit 5, 5.0, [5]"),
            "exit (sensitive value), (sensitive value), [(sensitive value)]"
        );
        assert_eq!(r.redact("15 1.5 5a v5 2.55"), "15 1.5 5a v5 2.55");
        assert_eq!(r.redact("status 5."), "status (sensitive value).");
        let r = redactor(json!(1234.5));
        assert_eq!(r.redact("n=1234.5!"), "n=(sensitive value)!");
    }

    #[test]
    fn composite_values_leaf_by_leaf() {
        let r =
            redactor(json!({"user": "opsbot", "token": "tok-1", "n": 42, "on": true, "l": ["ab"]}));
        let text = r#"{"l":["ab"],"n":42,"on":true,"token":"tok-1","user":"opsbot"} user ab"#;
        assert_eq!(
            r.redact(text),
            r#"{"l":["(sensitive value)"],"n":(sensitive value),"on":(sensitive value),"token":"(sensitive value)","user":"(sensitive value)"} user (sensitive value)"#
        );
        // Short strings only as whole tokens.
        assert_eq!(r.redact("abc cab ab."), "abc cab (sensitive value).");
    }

    #[test]
    fn overlapping_secrets_never_show_in_part() {
        let mut r = redactor(json!("abcdef"));
        r.add_json(&json!("defghi"), Leaves::All);
        assert_eq!(r.redact("<abcdefghi>"), "<(sensitive value)>");
    }

    #[test]
    fn derived_values_skip_short_leaves() {
        let mut r = Redactor::new();
        r.add_json(
            &json!({"exit_code": 0, "stdout": "secret-out\n", "stderr": ""}),
            Leaves::LongStrings,
        );
        assert_eq!(r.redact("exit 0: secret-out"), "exit 0: (sensitive value)");
    }
}
