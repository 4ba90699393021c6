//! `opsctl plan --format markdown`: the plan as a pull-request comment (GitHub-flavoured
//! Markdown). The summary line comes first, then one collapsible `<details>` section per step
//! that does something, grouped by module, with its diff in a ```` ```diff ```` block and its
//! effects. The comment stays under GitHub's 65,536-character limit: the longest sections are
//! shortened first, then whole sections are left out, and a note says what was cut.

use std::fmt::Write as _;

use crate::plan::redact::REDACTED;
use crate::plan::{Instance, Plan};
use crate::provider::{Action, FieldChange};

use super::json::{effects, field_is_sensitive, module_of, shown_target};
use super::{show_value, summary_line};

/// GitHub's limit on a comment body, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The size the rendering keeps under, in bytes (a byte count is never below the character
/// count GitHub applies), leaving room for a wrapper a workflow may add around the plan.
pub const MARKDOWN_CAP: usize = 60_000;

/// The longest diff line shown whole, in bytes.
const MAX_LINE: usize = 1_000;

/// One step's section: a fixed head and tail, and the lines that may be cut.
struct Section {
    /// The module heading this section is under (None: the root module).
    module: Option<String>,
    action: Action,
    head: String,
    diff: Vec<String>,
    effects: Vec<String>,
    fence: String,
}

/// How much of a section is shown.
#[derive(Clone, Copy)]
struct Shown {
    diff: usize,
    effects: usize,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A fence of backticks longer than any run of backticks in `lines` (CommonMark).
fn fence_for(lines: &[String]) -> String {
    let longest = lines
        .iter()
        .map(|l| l.split(|c| c != '`').map(str::len).max().unwrap_or(0))
        .max()
        .unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::NoOp => "is up to date",
        Action::Run => "will run",
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Delete => "will be deleted",
        Action::Replace => "will be replaced",
    }
}

/// The lines of one field in diff form: `-` before, `+` after, ` ` unchanged.
fn field_lines(plan: &Plan, inst: &Instance, f: &FieldChange, out: &mut Vec<String>) {
    let scrub = |s: String| {
        if inst.sensitive {
            plan.redact(&s)
        } else {
            s
        }
    };
    if field_is_sensitive(inst, &f.path) {
        match (&f.before, &f.after) {
            (Some(b), Some(a)) if b == a => out.push(format!("  {}: {REDACTED}", f.path)),
            (Some(_), Some(_)) => {
                out.push(format!("- {}: {REDACTED}", f.path));
                out.push(format!("+ {}: {REDACTED}", f.path));
            }
            (None, Some(_)) => out.push(format!("+ {}: {REDACTED}", f.path)),
            (Some(_), None) => out.push(format!("- {}: {REDACTED}", f.path)),
            (None, None) => {}
        }
        return;
    }
    let text = |v: &serde_json::Value| v.as_str().is_some_and(|s| s.contains('\n'));
    match (&f.before, &f.after) {
        (Some(b), Some(a)) if b == a => out.push(scrub(format!("  {}: {}", f.path, show_value(a)))),
        (Some(b), Some(a)) if text(b) || text(a) => {
            out.push(format!("  {}:", f.path));
            let diff = similar::TextDiff::from_lines(
                b.as_str().unwrap_or_default(),
                a.as_str().unwrap_or_default(),
            );
            for change in diff.iter_all_changes() {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                let line = change.value().trim_end_matches('\n');
                out.push(scrub(format!("{sign}     {line}")));
            }
        }
        (Some(b), Some(a)) => {
            out.push(scrub(format!("- {}: {}", f.path, show_value(b))));
            out.push(scrub(format!("+ {}: {}", f.path, show_value(a))));
        }
        (None, Some(a)) if text(a) => {
            out.push(format!("+ {}:", f.path));
            for line in a.as_str().unwrap_or_default().lines() {
                out.push(scrub(format!("+     {line}")));
            }
        }
        (Some(b), None) if text(b) => {
            out.push(format!("- {}:", f.path));
            for line in b.as_str().unwrap_or_default().lines() {
                out.push(scrub(format!("-     {line}")));
            }
        }
        (None, Some(a)) => out.push(scrub(format!("+ {}: {}", f.path, show_value(a)))),
        (Some(b), None) => out.push(scrub(format!("- {}: {}", f.path, show_value(b)))),
        (None, None) => {}
    }
}

fn section(plan: &Plan, inst: &Instance) -> Section {
    let mut diff = Vec::new();
    for f in &inst.change.fields {
        field_lines(plan, inst, f, &mut diff);
    }
    // One line longer than a screen is cut on its own (a long single-line value).
    for line in &mut diff {
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            let cut = line[end..].chars().count();
            line.truncate(end);
            let _ = write!(line, " … ({cut} more characters)");
        }
    }
    let effects = effects(plan, inst);
    let head = format!(
        "<details><summary><code>{} {}</code> {} — <code>{}</code></summary>\n\n",
        html_escape(inst.change.action.symbol()),
        html_escape(&inst.address),
        describe(inst.change.action),
        html_escape(shown_target(inst)),
    );
    Section {
        module: module_of(&inst.address).map(str::to_string),
        action: inst.change.action,
        fence: fence_for(&diff),
        head,
        diff,
        effects,
    }
}

fn render_section(s: &Section, shown: Shown, out: &mut String) {
    out.push_str(&s.head);
    if !s.diff.is_empty() {
        let _ = writeln!(out, "{}diff", s.fence);
        for l in &s.diff[..shown.diff] {
            out.push_str(l);
            out.push('\n');
        }
        let _ = writeln!(out, "{}", s.fence);
        let cut = s.diff.len() - shown.diff;
        if cut > 0 {
            let _ = writeln!(out, "\n_… {cut} more diff line(s) cut to fit the comment._");
        }
    }
    if !s.effects.is_empty() {
        out.push_str("\nEffects:\n");
        for l in &s.effects[..shown.effects] {
            let _ = writeln!(out, "- {}", html_escape(l));
        }
        let cut = s.effects.len() - shown.effects;
        if cut > 0 {
            let _ = writeln!(out, "- _… {cut} more effect(s) cut to fit the comment._");
        }
    }
    out.push_str("\n</details>\n\n");
}

fn rendered_len(s: &Section, shown: Shown) -> usize {
    let mut out = String::new();
    render_section(s, shown, &mut out);
    out.len()
}

/// The most of `s` that fits in `limit` bytes (diff lines first, then effects); the bare
/// section when nothing does.
fn fit(s: &Section, limit: usize) -> Shown {
    let full = Shown {
        diff: s.diff.len(),
        effects: s.effects.len(),
    };
    let mut shown = Shown {
        diff: 0,
        effects: 0,
    };
    let whole = rendered_len(s, full);
    let mut len = rendered_len(s, shown);
    // Whole when it fits, or when cutting would not make it shorter (the cut notes take room).
    if whole <= limit || whole <= len {
        return full;
    }
    while shown.diff < s.diff.len() {
        let add = s.diff[shown.diff].len() + 1;
        if len + add > limit {
            return shown;
        }
        len += add;
        shown.diff += 1;
    }
    while shown.effects < s.effects.len() {
        let add = s.effects[shown.effects].len() + 3;
        if len + add > limit {
            return shown;
        }
        len += add;
        shown.effects += 1;
    }
    shown
}

/// The plan as a pull-request comment, at most [`MARKDOWN_CAP`] bytes.
pub fn plan_markdown(plan: &Plan) -> String {
    plan_markdown_capped(plan, MARKDOWN_CAP)
}

/// [`plan_markdown`] with a given cap in bytes (tests use small caps).
pub fn plan_markdown_capped(plan: &Plan, cap: usize) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "**{}**\n", summary_line(plan.counts()));
    let acting: Vec<&Instance> = plan
        .instances
        .iter()
        .filter(|i| i.change.action != Action::NoOp)
        .collect();
    if acting.is_empty() {
        head.push_str("No changes. The live state already matches the procedure.\n");
    }
    let mut tail = String::new();
    let outputs: Vec<_> = plan.outputs.iter().collect();
    if !outputs.is_empty() {
        tail.push_str("<details><summary>Outputs</summary>\n\n");
        for (name, value, sensitive) in outputs {
            let shown = if *sensitive {
                REDACTED.to_string()
            } else if crate::config::eval::is_unknown(value) {
                "(known after apply)".to_string()
            } else {
                show_value(&crate::config::eval::to_json(value))
            };
            let _ = writeln!(tail, "- `{name}` = {}", html_escape(&shown));
        }
        tail.push_str("\n</details>\n");
    }
    // Sections sorted into modules, in plan order within each (the root module first).
    let mut sections: Vec<Section> = acting.iter().map(|i| section(plan, i)).collect();
    sections.sort_by(|a, b| {
        a.module
            .is_some()
            .cmp(&b.module.is_some())
            .then(a.module.cmp(&b.module))
    });
    let full: Vec<usize> = sections
        .iter()
        .map(|s| {
            rendered_len(
                s,
                Shown {
                    diff: s.diff.len(),
                    effects: s.effects.len(),
                },
            )
        })
        .collect();
    let module_heads: usize = {
        let mut ms: Vec<&String> = sections.iter().filter_map(|s| s.module.as_ref()).collect();
        ms.dedup();
        ms.iter().map(|m| m.len() + 16).sum()
    };
    // Room for the note saying what was cut.
    const NOTE_ROOM: usize = 600;
    let budget = cap
        .saturating_sub(head.len() + tail.len() + module_heads + NOTE_ROOM)
        .max(1);
    let total: usize = full.iter().sum();
    let mut limits: Vec<usize> = full.clone();
    let mut dropped = 0usize;
    if total > budget {
        // Shorten the longest sections first: the largest per-section limit L such that every
        // section cut to L fits (sections shorter than L are untouched).
        let minimal: Vec<usize> = sections
            .iter()
            .zip(&full)
            .map(|(s, &f)| {
                f.min(rendered_len(
                    s,
                    Shown {
                        diff: 0,
                        effects: 0,
                    },
                ))
            })
            .collect();
        let cost = |l: usize| -> usize {
            full.iter()
                .zip(&minimal)
                .map(|(&f, &m)| f.min(l).max(m))
                .sum()
        };
        let (mut lo, mut hi) = (0usize, *full.iter().max().unwrap_or(&0));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if cost(mid) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        for (l, &f) in limits.iter_mut().zip(&full) {
            *l = f.min(lo);
        }
        // Still too long with every section at its bare minimum: leave out the last ones.
        let mut used = 0usize;
        let mut keep = sections.len();
        for (i, (&l, &m)) in limits.iter().zip(&minimal).enumerate() {
            if used + l.max(m) > budget {
                keep = i;
                break;
            }
            used += l.max(m);
        }
        dropped = sections.len() - keep;
    }
    let mut out = head;
    let mut shortened = 0usize;
    let mut cut_lines = 0usize;
    let mut module: Option<&String> = None;
    let kept = sections.len() - dropped;
    for (s, &l) in sections.iter().zip(&limits).take(kept) {
        if s.module.as_ref() != module {
            module = s.module.as_ref();
            if let Some(m) = module {
                let _ = writeln!(out, "### `{m}`\n");
            }
        }
        let shown = fit(s, l);
        let cut = (s.diff.len() - shown.diff) + (s.effects.len() - shown.effects);
        if cut > 0 {
            shortened += 1;
            cut_lines += cut;
        }
        render_section(s, shown, &mut out);
    }
    if shortened > 0 || dropped > 0 {
        let mut note =
            String::from("> [!NOTE]\n> This plan was shortened to fit a GitHub comment (");
        let _ = write!(note, "{} characters at most):", GITHUB_COMMENT_LIMIT);
        if shortened > 0 {
            let _ = write!(
                note,
                " {cut_lines} line(s) were cut from the {shortened} longest step section(s);"
            );
        }
        if dropped > 0 {
            let mut by_action: Vec<(&str, usize)> = Vec::new();
            for s in sections.iter().skip(kept) {
                let name = s.action.as_str();
                match by_action.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, n)) => *n += 1,
                    None => by_action.push((name, 1)),
                }
            }
            let list: Vec<String> = by_action
                .iter()
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
            let _ = write!(
                note,
                " {dropped} step section(s) were left out ({}), the last in apply order;",
                list.join(", ")
            );
        }
        note.push_str(" run `opsctl plan` for the full plan.\n\n");
        out.push_str(&note);
    }
    out.push_str(&tail);
    out
}
