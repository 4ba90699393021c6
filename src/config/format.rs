//! The formatter behind `opsctl fmt`: Terraform's canonical layout (`terraform fmt`, hclwrite's
//! `Format`) applied to an `hcl-edit` document by rewriting its whitespace decor only.
//!
//! `hcl-edit` parses a file into structures and expressions that keep every piece of whitespace
//! and every comment in a [`Decor`] (a prefix and a suffix around each item) and prints the
//! document back from them. [`format`] walks the document and replaces each decor with the
//! canonical one while carrying its comments over; the tokens themselves (strings, heredocs,
//! numbers, templates) are printed by `hcl-edit` exactly as they were read. The layout:
//!
//! - two-space indentation per nesting level (blocks, multi-line arrays, objects, function
//!   calls and `for` expressions); `{` on the block's header line, `}` on a line of its own;
//! - one space around `=` and between a block's type and labels; the `=` of a run of
//!   consecutive single-line attributes (or object items) aligned, a run ending at a blank
//!   line, a comment line, a block or a multi-line value, as hclwrite's `formatCells` does;
//!   the trailing comments of consecutive lines in a run aligned too;
//! - at most one blank line in a row; exactly one between two blocks; none after `{`, before
//!   `}` or at the ends of the file;
//!   no trailing whitespace; the file ends with one newline;
//! - a line break inside an expression (before or after a binary operator, inside brackets)
//!   kept, each line inside parentheses one level in, as hclwrite indents by the brackets open
//!   at the start of a line;
//! - comments (`#`, `//`, `/* */`, trailing) kept where they were, re-indented; heredocs and
//!   quoted strings untouched.

use hcl_edit::expr::{
    Array, Expression, FuncArgs, Object, ObjectValueTerminator, TraversalOperator,
};
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::visit_mut::{self, VisitMut};
use hcl_edit::{Decor, Decorate, Span as _};

/// One indentation level.
const INDENT: &str = "  ";

/// Formats HCL source text in the canonical layout.
///
/// Takes the file's text and returns the formatted text (empty for a file with nothing but
/// whitespace, else ending with exactly one newline). Formatting formatted text returns it
/// unchanged.
///
/// # Errors
///
/// The `hcl-edit` parse error when `text` is not valid HCL (the caller turns it into a
/// `file:line:col` diagnostic, see [`super::syntax`]).
pub fn format(text: &str) -> Result<String, hcl_edit::parser::Error> {
    let mut body = hcl_edit::parser::parse_body(text)?;
    OperatorDecor { text }.visit_body_mut(&mut body);
    format_items(&mut body, "");
    let suffix = raw(body.decor().suffix());
    let suffix = trail(&suffix, "", "", false, body.is_empty());
    body.decor_mut().set_prefix("");
    body.decor_mut().set_suffix(suffix);
    body.set_prefer_omit_trailing_newline(false);
    let out = body.to_string();
    let out = out.trim_end_matches(['\n', '\r', ' ', '\t']);
    if out.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("{out}\n"))
}

/// Reads the whitespace and comments around every binary operator from the source.
///
/// hcl-edit 0.10 leaves an operator's decor pointing into the source text (its `despan` skips
/// the operator), where it reads as empty: a line break before or after `&&` would be lost.
/// The decor is exactly the text between the operands and the operator (operands carry no
/// decor of their own inside an operation), so it is taken from there.
struct OperatorDecor<'a> {
    text: &'a str,
}

impl VisitMut for OperatorDecor<'_> {
    fn visit_binary_op_mut(&mut self, node: &mut hcl_edit::expr::BinaryOp) {
        let spans = (
            node.lhs_expr.span(),
            node.operator.span(),
            node.rhs_expr.span(),
        );
        if let (Some(l), Some(o), Some(r)) = spans {
            if let (Some(before), Some(after)) =
                (self.text.get(l.end..o.start), self.text.get(o.end..r.start))
            {
                node.operator.decor_mut().set_prefix(before.to_string());
                node.operator.decor_mut().set_suffix(after.to_string());
            }
        }
        visit_mut::visit_binary_op_mut(self, node);
    }
}

/// The diagnostic for a file that does not parse, located at `file:line:col` as
/// [`super::load_sources`] reports it: the lexical problem [`super::syntax::explain`] finds, or
/// else where the parser gave up.
///
/// Takes the file's name as shown, its text and the parse error; returns the diagnostics with
/// their source attached, ready to print.
pub fn syntax_error(
    display: &str,
    text: &str,
    err: &hcl_edit::parser::Error,
) -> super::Diagnostics {
    use super::{Diagnostic, Diagnostics, SourceFile, Sources, Span};
    let diag = match super::syntax::explain(text) {
        Some(problem) => {
            let d =
                Diagnostic::error(format!("syntax error: {}", problem.message)).with_span(Span {
                    file: 0,
                    range: problem.range,
                });
            match problem.note {
                Some(note) => d.with_note(note),
                None => d,
            }
        }
        None => {
            let offset = err.location().offset();
            Diagnostic::error(format!("syntax error: {}", err.message())).with_span(Span {
                file: 0,
                range: offset..offset + 1,
            })
        }
    };
    let mut diags = Diagnostics::single(diag);
    diags.attach_sources(&Sources {
        files: vec![SourceFile::new(display, text)],
    });
    diags
}

// ---------------------------------------------------------------------------------------------
// Trivia: the whitespace and comments of one decor.

/// A comment found in a decor, with the number of line breaks before it.
struct Comment {
    /// Line breaks between the previous comment (or the start of the decor) and this one.
    newlines: usize,
    /// The comment, trailing whitespace removed.
    text: String,
}

impl Comment {
    /// Whether the comment runs to the end of its line (`#`, `//`).
    fn is_line(&self) -> bool {
        self.text.starts_with('#') || self.text.starts_with("//")
    }
}

/// The comments of a decor and the line breaks after the last one.
struct Trivia {
    comments: Vec<Comment>,
    newlines_after: usize,
}

/// Splits a decor's text into its comments and line breaks (whitespace is dropped).
fn scan(raw: &str) -> Trivia {
    let mut comments = Vec::new();
    let mut newlines = 0;
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '\n' {
            newlines += 1;
            rest = &rest[1..];
            continue;
        }
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = if c == '#' || rest.starts_with("//") {
            rest.find('\n').unwrap_or(rest.len())
        } else if let Some(body) = rest.strip_prefix("/*") {
            body.find("*/").map_or(rest.len(), |i| i + 4)
        } else {
            // Decor holds only whitespace and comments; anything else is kept verbatim.
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        comments.push(Comment {
            newlines,
            text: rest[..end].trim_end().to_string(),
        });
        newlines = 0;
        rest = &rest[end..];
    }
    Trivia {
        comments,
        newlines_after: newlines,
    }
}

/// The text of an optional decor part.
fn raw(part: Option<&hcl_edit::RawString>) -> String {
    part.map(|r| r.to_string()).unwrap_or_default()
}

/// Whether a decor part holds a line break.
fn breaks(part: Option<&hcl_edit::RawString>) -> bool {
    part.is_some_and(|r| r.contains('\n'))
}

/// Writes the separation before the next piece of output: `newlines` line breaks in the source
/// become none (same line, one space), one, or one blank line at most.
///
/// `at_line_start`: the output is at the start of a line (its line break already written).
/// `no_blank`: drop a blank line (right after an opening bracket).
fn separate(
    out: &mut String,
    newlines: usize,
    ind: &str,
    at_line_start: &mut bool,
    no_blank: bool,
) {
    if newlines == 0 {
        if *at_line_start {
            out.push_str(ind);
        } else {
            out.push(' ');
        }
    } else {
        if !*at_line_start {
            out.push('\n');
        }
        if newlines >= 2 && !no_blank {
            out.push('\n');
        }
        out.push_str(ind);
    }
    *at_line_start = false;
}

/// The decor before an item that starts a line at indentation `ind` (a structure in a body,
/// an element of a multi-line array, object or argument list).
///
/// `open`: the decor follows a token on the same line (`[`, `,`), so its first comments, if on
/// that line, stay there; otherwise it starts at the beginning of a line. `first`: the item is
/// the first in its container (no blank line before it).
fn lead(raw: &str, ind: &str, open: bool, first: bool) -> String {
    let t = scan(raw);
    let mut out = String::new();
    let mut at_line_start = !open;
    // The line break the encoder wrote before a fresh decor counts as one.
    let mut carried = usize::from(!open);
    let mut own_line = false;
    let mut last_is_line = false;
    for c in &t.comments {
        let mut newlines = c.newlines + carried;
        carried = 0;
        if last_is_line && newlines == 0 {
            newlines = 1;
        }
        separate(
            &mut out,
            newlines,
            ind,
            &mut at_line_start,
            first && !own_line,
        );
        own_line |= newlines > 0 || !open;
        out.push_str(&c.text);
        last_is_line = c.is_line();
    }
    let mut newlines = t.newlines_after + carried;
    if newlines == 0 && (t.comments.is_empty() || last_is_line) {
        newlines = 1;
    }
    separate(
        &mut out,
        newlines,
        ind,
        &mut at_line_start,
        first && !own_line,
    );
    out
}

/// The decor before a closing bracket (or the end of the file): its comments on lines of their
/// own at `inner`, then a line break and `outer`, the closing bracket's indentation.
///
/// `open`: the decor follows a token on the same line; `empty`: the container has no items.
fn trail(raw: &str, inner: &str, outer: &str, open: bool, empty: bool) -> String {
    let t = scan(raw);
    let mut out = String::new();
    let mut at_line_start = !open;
    let mut carried = usize::from(!open);
    let mut own_line = false;
    let mut last_is_line = false;
    for c in &t.comments {
        let mut newlines = c.newlines + carried;
        carried = 0;
        if last_is_line && newlines == 0 {
            newlines = 1;
        }
        separate(
            &mut out,
            newlines,
            inner,
            &mut at_line_start,
            empty && !own_line,
        );
        own_line |= newlines > 0 || !open;
        out.push_str(&c.text);
        last_is_line = c.is_line();
    }
    if !at_line_start {
        out.push('\n');
    }
    out.push_str(outer);
    out
}

/// A decor inside a line: `default` (the encoder's own spacing) when it holds no comment and
/// no line break; otherwise its comments, separated by single spaces, and its line breaks,
/// each followed by `ind`.
fn inline(raw: &str, default: &str, ind: &str) -> String {
    let t = scan(raw);
    if t.comments.is_empty() && !raw.contains('\n') {
        return default.to_string();
    }
    let mut out = String::new();
    let mut at_line_start = false;
    let mut last_is_line = false;
    let mut pending = default.starts_with(' ');
    for c in &t.comments {
        let mut newlines = c.newlines.min(1);
        if last_is_line {
            newlines = 1;
        }
        // `(/* c */x`: nothing before a first comment where the default has no space.
        if newlines > 0 || pending || !out.is_empty() {
            separate(&mut out, newlines, ind, &mut at_line_start, true);
        }
        pending = false;
        out.push_str(&c.text);
        last_is_line = c.is_line();
    }
    let newlines = if last_is_line {
        1
    } else {
        t.newlines_after.min(1)
    };
    if t.comments.is_empty() {
        // Only a line break: keep it, re-indented.
        separate(&mut out, newlines, ind, &mut at_line_start, true);
    } else if newlines > 0 || !default.is_empty() {
        separate(&mut out, newlines, ind, &mut at_line_start, true);
    }
    out
}

/// A trailing decor at the end of a line (after a structure or an item): its comments after
/// one space, nothing else.
fn tail(raw: &str) -> String {
    let t = scan(raw);
    let mut out = String::new();
    for c in &t.comments {
        out.push(' ');
        out.push_str(&c.text);
    }
    out
}

/// The decor after an expression at the end of a line: [`tail`], except that the line break
/// closing a heredoc (`EOT` then a new line) is kept, re-indented to `ind`.
fn end_of(expr: &Expression, raw: &str, ind: &str) -> String {
    if is_heredoc(expr) && raw.contains('\n') {
        inline(raw, "", ind)
    } else {
        tail(raw)
    }
}

/// Whether an expression is a heredoc (`<<EOT`), which always ends a line.
fn is_heredoc(expr: &Expression) -> bool {
    matches!(expr, Expression::HeredocTemplate(_))
}

/// Whether an element of an array or argument list starts or ends a line, which makes the list
/// one element per line (the line break closing a heredoc does not count).
fn breaks_around(expr: &Expression) -> bool {
    breaks(expr.decor().prefix()) || (!is_heredoc(expr) && breaks(expr.decor().suffix()))
}

/// Sets both parts of a decor with [`inline`].
fn fix(decor: &mut Decor, prefix: &str, suffix: &str, ind: &str) {
    let p = inline(&raw(decor.prefix()), prefix, ind);
    let s = inline(&raw(decor.suffix()), suffix, ind);
    decor.set_prefix(p);
    decor.set_suffix(s);
}

// ---------------------------------------------------------------------------------------------
// Structures.

/// Lays out the structures of a body whose lines are indented by `ind`.
fn format_items(body: &mut Body, ind: &str) {
    let mut rows: Vec<Row> = Vec::with_capacity(body.len());
    let mut after_block = false;
    for i in 0..body.len() {
        let Some(structure) = body.get_mut(i) else {
            continue;
        };
        let mut prefix = lead(&raw(structure.decor().prefix()), ind, false, i == 0);
        // One blank line between two blocks (before the comments that open the second).
        let is_block = matches!(structure, Structure::Block(_));
        if after_block && is_block && !prefix.starts_with('\n') {
            prefix.insert(0, '\n');
        }
        after_block = is_block;
        let joins = prefix == ind;
        let suffix = tail(&raw(structure.decor().suffix()));
        structure.decor_mut().set_prefix(prefix);
        structure.decor_mut().set_suffix(suffix.clone());
        match structure {
            Structure::Attribute(attr) => {
                attr.key.decor_mut().set_prefix("");
                attr.key.decor_mut().set_suffix(" ");
                format_expr(&mut attr.value, ind);
                let p = inline(&raw(attr.value.decor().prefix()), " ", ind);
                let s = end_of(&attr.value, &raw(attr.value.decor().suffix()), ind);
                attr.value.decor_mut().set_prefix(p);
                attr.value.decor_mut().set_suffix(s);
                let value = attr.value.to_string();
                let heredoc = is_heredoc(&attr.value);
                rows.push(Row {
                    key_width: Some(attr.key.as_str().chars().count()),
                    value_width: value.chars().count(),
                    single_line: heredoc || !value.contains('\n'),
                    ends_run: heredoc,
                    joins,
                    comment: suffix,
                });
            }
            Structure::Block(block) => {
                format_block(block, ind);
                rows.push(Row::other());
            }
        }
    }
    let widths = align(&rows);
    for (i, (pad, comment)) in widths.into_iter().enumerate() {
        if let Some(Structure::Attribute(attr)) = body.get_mut(i) {
            attr.key.decor_mut().set_suffix(" ".repeat(pad + 1));
            if let Some(comment) = comment {
                attr.decor_mut().set_suffix(comment);
            }
        }
    }
}

/// One line of an aligned run: an attribute or object item (`key = value # comment`).
struct Row {
    /// The key's width in characters (`None`: not an assignment, e.g. a block).
    key_width: Option<usize>,
    /// The value's width in characters (with its leading space).
    value_width: usize,
    /// The value fits on the line.
    single_line: bool,
    /// Nothing but a line break before it (no blank line, no comment line).
    joins: bool,
    /// A heredoc: its `=` lines up with the run before it, its lines end the run.
    ends_run: bool,
    /// Its trailing comment (with its leading space) or nothing.
    comment: String,
}

impl Row {
    fn other() -> Row {
        Row {
            key_width: None,
            value_width: 0,
            single_line: false,
            ends_run: false,
            joins: false,
            comment: String::new(),
        }
    }
}

/// For each row: the spaces to add after the key so that the `=` of a run line up, and the
/// re-aligned trailing comment, if any (hclwrite's `formatCells`).
fn align(rows: &[Row]) -> Vec<(usize, Option<String>)> {
    let mut out: Vec<(usize, Option<String>)> = rows.iter().map(|_| (0, None)).collect();
    let alignable = |r: &Row| r.key_width.is_some() && r.single_line;
    let mut start = 0;
    while start < rows.len() {
        if !alignable(&rows[start]) {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < rows.len()
            && !rows[end - 1].ends_run
            && alignable(&rows[end])
            && rows[end].joins
        {
            end += 1;
        }
        let width = rows[start..end]
            .iter()
            .filter_map(|r| r.key_width)
            .max()
            .unwrap_or(0);
        for (slot, row) in out[start..end].iter_mut().zip(&rows[start..end]) {
            slot.0 = width - row.key_width.unwrap_or(width);
        }
        // Trailing comments of consecutive lines of the run start in one column.
        let mut c = start;
        while c < end {
            if rows[c].comment.is_empty() {
                c += 1;
                continue;
            }
            let mut d = c + 1;
            while d < end && !rows[d].comment.is_empty() {
                d += 1;
            }
            if d - c > 1 {
                let column = rows[c..d].iter().map(|r| r.value_width).max().unwrap_or(0);
                for (slot, row) in out[c..d].iter_mut().zip(&rows[c..d]) {
                    let pad = column - row.value_width;
                    slot.1 = Some(format!("{}{}", " ".repeat(pad), row.comment));
                }
            }
            c = d;
        }
        start = end;
    }
    out
}

/// Lays out a block whose header line is indented by `ind`.
fn format_block(block: &mut Block, ind: &str) {
    fix(block.ident.decor_mut(), "", " ", ind);
    for label in &mut block.labels {
        fix(label.decor_mut(), "", " ", ind);
    }
    let inner = format!("{ind}{INDENT}");
    let body = &mut block.body;
    let prefix = raw(body.decor().prefix());
    let suffix = raw(body.decor().suffix());
    let has_comments = !scan(&prefix).comments.is_empty() || !scan(&suffix).comments.is_empty();
    if body.is_empty() && !has_comments {
        body.set_prefer_oneline(true);
        body.decor_mut().set_prefix("");
        body.decor_mut().set_suffix("");
        return;
    }
    let oneline = body.prefer_oneline()
        && body.len() == 1
        && matches!(body.get(0), Some(Structure::Attribute(_)))
        && !prefix.contains('\n')
        && !suffix.contains('\n');
    if oneline {
        // `name { key = value }` stays on its line.
        if let Some(Structure::Attribute(attr)) = body.get_mut(0) {
            let p = inline(&raw(attr.decor().prefix()), " ", ind);
            let s = inline(&raw(attr.decor().suffix()), " ", ind);
            attr.decor_mut().set_prefix(p);
            attr.decor_mut().set_suffix(s);
            attr.key.decor_mut().set_prefix("");
            attr.key.decor_mut().set_suffix(" ");
            format_expr(&mut attr.value, ind);
            fix(attr.value.decor_mut(), " ", "", ind);
        }
        body.decor_mut().set_prefix("");
        body.decor_mut().set_suffix("");
        return;
    }
    body.set_prefer_oneline(false);
    body.decor_mut().set_prefix(tail(&prefix));
    let empty = body.is_empty();
    format_items(body, &inner);
    body.decor_mut()
        .set_suffix(trail(&suffix, &inner, ind, false, empty));
}

// ---------------------------------------------------------------------------------------------
// Expressions.

/// Lays out the inside of an expression that starts on a line indented by `ind`. The
/// expression's own decor (before and after it) is left to the caller.
fn format_expr(expr: &mut Expression, ind: &str) {
    let inner = format!("{ind}{INDENT}");
    match expr {
        Expression::Array(array) => format_array(array, ind),
        Expression::Object(object) => format_object(object, ind),
        Expression::FuncCall(call) => {
            for part in &mut call.name.namespace {
                fix(part.decor_mut(), "", "", ind);
            }
            fix(call.name.name.decor_mut(), "", "", ind);
            format_args(&mut call.args, ind);
        }
        Expression::Parenthesis(paren) => {
            // Every line the parentheses hold is one level in, as hclwrite indents by the
            // brackets open at the start of a line: `(a &&` then `  b)`.
            let inner_ind = inner.as_str();
            format_expr(paren.inner_mut(), inner_ind);
            let p = inline(&raw(paren.inner().decor().prefix()), "", inner_ind);
            let suffix = raw(paren.inner().decor().suffix());
            // A comment after the last operand keeps its space: `b # why` then `)`.
            let default = if scan(&suffix).comments.is_empty() {
                ""
            } else {
                " "
            };
            let s = inline(&suffix, default, ind);
            paren.inner_mut().decor_mut().set_prefix(p);
            paren.inner_mut().decor_mut().set_suffix(s);
        }
        Expression::Conditional(cond) => {
            format_expr(&mut cond.cond_expr, ind);
            format_expr(&mut cond.true_expr, ind);
            format_expr(&mut cond.false_expr, ind);
            fix(cond.cond_expr.decor_mut(), "", " ", ind);
            fix(cond.true_expr.decor_mut(), " ", " ", ind);
            fix(cond.false_expr.decor_mut(), " ", "", ind);
        }
        Expression::UnaryOp(op) => {
            format_expr(&mut op.expr, ind);
            fix(op.expr.decor_mut(), "", "", ind);
        }
        Expression::BinaryOp(op) => {
            format_expr(&mut op.lhs_expr, ind);
            format_expr(&mut op.rhs_expr, ind);
            fix(op.lhs_expr.decor_mut(), "", "", ind);
            fix(op.operator.decor_mut(), " ", " ", ind);
            fix(op.rhs_expr.decor_mut(), "", "", ind);
        }
        Expression::Traversal(trav) => {
            format_expr(&mut trav.expr, ind);
            fix(trav.expr.decor_mut(), "", "", ind);
            for op in &mut trav.operators {
                fix(op.decor_mut(), "", "", ind);
                if let TraversalOperator::Index(index) = op.value_mut() {
                    format_expr(index, ind);
                    fix(index.decor_mut(), "", "", ind);
                }
            }
        }
        Expression::ForExpr(for_expr) => format_for(for_expr, ind),
        Expression::Null(_)
        | Expression::Bool(_)
        | Expression::Number(_)
        | Expression::String(_)
        | Expression::StringTemplate(_)
        | Expression::HeredocTemplate(_)
        | Expression::Variable(_) => {}
    }
}

/// Lays out a `for` expression: `[for v in list : expr]`, `{ for k, v in map : k => v if c }`
/// on one line as written, or when written over several lines, each of its line breaks kept
/// at one more level of indentation and the closing bracket back at `ind`.
fn format_for(f: &mut hcl_edit::expr::ForExpr, ind: &str) {
    let inner = format!("{ind}{INDENT}");
    let object = f.key_expr.is_some();
    let multi = for_decors(f)
        .iter()
        .any(|d| breaks(d.prefix()) || breaks(d.suffix()));
    let at = if multi { inner.as_str() } else { ind };
    // Decor pairs with no token between them are merged into the second one.
    let intro_suffix = raw(f.intro.decor().suffix());
    let open = raw(f.intro.decor().prefix());
    let pad = if object { " " } else { "" };
    f.intro
        .decor_mut()
        .set_prefix(inline(&open, if multi { "" } else { pad }, at));
    f.intro.decor_mut().set_suffix("");
    if multi && !f.intro.decor().prefix().is_some_and(|p| p.contains('\n')) {
        f.intro.decor_mut().set_prefix(format!("\n{at}"));
    }
    if let Some(key_var) = &mut f.intro.key_var {
        fix(key_var.decor_mut(), " ", "", at);
    }
    fix(f.intro.value_var.decor_mut(), " ", " ", at);
    format_expr(&mut f.intro.collection_expr, at);
    fix(f.intro.collection_expr.decor_mut(), " ", " ", at);
    let first: &mut Expression = match &mut f.key_expr {
        Some(key_expr) => key_expr,
        None => &mut f.value_expr,
    };
    let p = format!("{intro_suffix}{}", raw(first.decor().prefix()));
    first.decor_mut().set_prefix(p);
    if let Some(key_expr) = &mut f.key_expr {
        format_expr(key_expr, at);
        fix(key_expr.decor_mut(), " ", " ", at);
    }
    format_expr(&mut f.value_expr, at);
    let value_suffix = raw(f.value_expr.decor().suffix());
    let p = raw(f.value_expr.decor().prefix());
    f.value_expr.decor_mut().set_prefix(inline(&p, " ", at));
    f.value_expr.decor_mut().set_suffix("");
    let closing = match &mut f.cond {
        Some(cond) => {
            let p = format!("{value_suffix}{}", raw(cond.decor().prefix()));
            cond.decor_mut().set_prefix(inline(&p, " ", at));
            format_expr(&mut cond.expr, at);
            let p = raw(cond.expr.decor().prefix());
            cond.expr.decor_mut().set_prefix(inline(&p, " ", at));
            let closing = format!(
                "{}{}",
                raw(cond.expr.decor().suffix()),
                raw(cond.decor().suffix())
            );
            cond.expr.decor_mut().set_suffix("");
            cond.decor_mut().set_suffix("");
            closing
        }
        None => value_suffix,
    };
    let closing = if multi {
        trail(&closing, at, ind, true, false)
    } else {
        inline(&closing, pad, ind)
    };
    match &mut f.cond {
        Some(cond) => cond.decor_mut().set_suffix(closing),
        None => f.value_expr.decor_mut().set_suffix(closing),
    }
}

/// The decors inside a `for` expression, to tell whether it spans lines.
fn for_decors(f: &hcl_edit::expr::ForExpr) -> Vec<Decor> {
    let mut out = vec![f.intro.decor().clone(), f.intro.value_var.decor().clone()];
    out.push(f.intro.collection_expr.decor().clone());
    if let Some(key_expr) = &f.key_expr {
        out.push(key_expr.decor().clone());
    }
    out.push(f.value_expr.decor().clone());
    if let Some(cond) = &f.cond {
        out.push(cond.decor().clone());
        out.push(cond.expr.decor().clone());
    }
    out
}

/// Lays out an array: on one line (`[a, b]`) as written, or one element per line.
fn format_array(array: &mut Array, ind: &str) {
    let inner = format!("{ind}{INDENT}");
    let multi = array.iter().any(breaks_around) || array.trailing().contains('\n');
    if array.is_empty() {
        let t = raw(Some(array.trailing()));
        let t = if scan(&t).comments.is_empty() {
            String::new()
        } else {
            trail(&t, &inner, ind, true, true)
        };
        array.set_trailing(t);
        return;
    }
    let comma = array.trailing_comma();
    let len = array.len();
    let mut last_suffix = String::new();
    for (i, value) in array.iter_mut().enumerate() {
        if multi {
            let p = lead(&raw(value.decor().prefix()), &inner, true, i == 0);
            format_expr(value, &inner);
            let s = raw(value.decor().suffix());
            value.decor_mut().set_prefix(p);
            if i + 1 == len && !comma {
                last_suffix = s;
                value.decor_mut().set_suffix("");
            } else {
                let s = end_of(value, &s, &inner);
                value.decor_mut().set_suffix(s);
            }
        } else {
            format_expr(value, ind);
            fix(value.decor_mut(), if i == 0 { "" } else { " " }, "", ind);
        }
    }
    let t = raw(Some(array.trailing()));
    if multi {
        array.set_trailing(trail(
            &format!("{last_suffix}{t}"),
            &inner,
            ind,
            true,
            false,
        ));
    } else {
        array.set_trailing(inline(&t, "", ind));
    }
}

/// Lays out a function call's arguments like an array.
fn format_args(args: &mut FuncArgs, ind: &str) {
    let inner = format!("{ind}{INDENT}");
    let multi = args.iter().any(breaks_around) || args.trailing().contains('\n');
    let len = args.len();
    let comma = args.trailing_comma() || args.expand_final();
    let mut last_suffix = String::new();
    for (i, value) in args.iter_mut().enumerate() {
        if multi {
            let p = lead(&raw(value.decor().prefix()), &inner, true, i == 0);
            format_expr(value, &inner);
            let s = raw(value.decor().suffix());
            value.decor_mut().set_prefix(p);
            if i + 1 == len && !comma {
                last_suffix = s;
                value.decor_mut().set_suffix("");
            } else {
                let s = end_of(value, &s, &inner);
                value.decor_mut().set_suffix(s);
            }
        } else {
            format_expr(value, ind);
            fix(value.decor_mut(), if i == 0 { "" } else { " " }, "", ind);
        }
    }
    let t = raw(Some(args.trailing()));
    if multi {
        args.set_trailing(trail(
            &format!("{last_suffix}{t}"),
            &inner,
            ind,
            true,
            len == 0,
        ));
    } else {
        args.set_trailing(inline(&t, "", ind));
    }
}

/// Lays out an object: on one line (`{ a = 1, b = 2 }`) as written, or one item per line with
/// the `=` of consecutive single-line items aligned.
fn format_object(object: &mut Object, ind: &str) {
    let inner = format!("{ind}{INDENT}");
    let multi = object.iter().any(|(k, v)| {
        breaks(k.decor().prefix()) || v.terminator() == ObjectValueTerminator::Newline
    }) || object.trailing().contains('\n');
    if object.is_empty() {
        let t = raw(Some(object.trailing()));
        let t = if scan(&t).comments.is_empty() {
            String::new()
        } else {
            trail(&t, &inner, ind, true, true)
        };
        object.set_trailing(t);
        return;
    }
    let mut rows = Vec::with_capacity(object.len());
    let mut open = true;
    let mut last_newline = false;
    for (i, (mut key, value)) in object.iter_mut().enumerate() {
        if multi {
            let p = lead(&raw(key.decor().prefix()), &inner, open, i == 0);
            let joins = if open {
                p == format!("\n{inner}")
            } else {
                p == inner
            };
            key.decor_mut().set_prefix(p);
            key.decor_mut().set_suffix(" ");
            let expr = value.expr_mut();
            format_expr(expr, &inner);
            let vp = inline(&raw(expr.decor().prefix()), " ", &inner);
            let vs = end_of(expr, &raw(expr.decor().suffix()), &inner);
            expr.decor_mut().set_prefix(vp);
            expr.decor_mut().set_suffix(vs.clone());
            let width = expr.to_string().chars().count() - vs.chars().count();
            let text = expr.to_string();
            let heredoc = is_heredoc(expr);
            rows.push(Row {
                key_width: Some(key_text(key.get()).chars().count()),
                value_width: width,
                single_line: heredoc || !text.contains('\n'),
                ends_run: heredoc,
                joins,
                comment: vs,
            });
            open = value.terminator() != ObjectValueTerminator::Newline;
            last_newline = !open;
        } else {
            let p = inline(&raw(key.decor().prefix()), " ", ind);
            key.decor_mut().set_prefix(p);
            key.decor_mut().set_suffix(" ");
            let expr = value.expr_mut();
            format_expr(expr, ind);
            fix(expr.decor_mut(), " ", "", ind);
        }
    }
    let t = raw(Some(object.trailing()));
    if multi {
        let widths = align(&rows);
        for ((mut key, value), (pad, comment)) in object.iter_mut().zip(widths) {
            key.decor_mut().set_suffix(" ".repeat(pad + 1));
            if let Some(comment) = comment {
                value.expr_mut().decor_mut().set_suffix(comment);
            }
        }
        object.set_trailing(trail(&t, &inner, ind, !last_newline, false));
    } else {
        object.set_trailing(inline(&t, " ", ind));
    }
}

/// An object key as printed (for alignment).
fn key_text(key: &hcl_edit::expr::ObjectKey) -> String {
    let mut key = key.clone();
    key.decor_mut().clear();
    key.decor_mut().set_prefix("");
    key.decor_mut().set_suffix("");
    match key {
        hcl_edit::expr::ObjectKey::Ident(ident) => ident.to_string(),
        hcl_edit::expr::ObjectKey::Expression(expr) => expr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::format;

    /// Expressions over several lines, comments in brackets, empty and nested containers.
    const INPUT: &str = r#"

   # leading blank lines
a = 1 /* c */ # d
b = { a=1,b=2 }
c = {a=1,
  b = 2,
     ccc = 3 }
d = merge(var.x,
   { y = 1 })
e = (1 +
   2)
f = var.a ? "x" :   "y"
h = [for x in var.l: upper(x) if x != ""]
i = [
  # only a comment
]
j = {
  nested = {
    deep={x=1}
  }
}
k = {}
l = []
m = "${var.a}-x"
n = -1
o = !var.b
p = var.list[0].name
q = var.list.*.name
r = foo(
  1,
  2,
)
blk "x" "y" {
  inner {
    deeper { z = 1 }



  }


}
s = [ # after bracket
  1, # one

  2
]
"#;

    const EXPECTED: &str = r#"# leading blank lines
a = 1 /* c */ # d
b = { a = 1, b = 2 }
c = {
  a   = 1,
  b   = 2,
  ccc = 3
}
d = merge(
  var.x,
  { y = 1 }
)
e = (1 +
  2)
f = var.a ? "x" : "y"
h = [for x in var.l : upper(x) if x != ""]
i = [
  # only a comment
]
j = {
  nested = {
    deep = { x = 1 }
  }
}
k = {}
l = []
m = "${var.a}-x"
n = -1
o = !var.b
p = var.list[0].name
q = var.list.*.name
r = foo(
  1,
  2,
)
blk "x" "y" {
  inner {
    deeper { z = 1 }
  }
}
s = [ # after bracket
  1, # one

  2
]
"#;

    #[test]
    fn expressions_take_the_canonical_layout_and_keep_it() {
        let once = format(INPUT).unwrap();
        assert_eq!(once, EXPECTED);
        assert_eq!(format(&once).unwrap(), once);
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(format("").unwrap(), "");
        assert_eq!(format("\n\n  \n").unwrap(), "");
        assert_eq!(format("\n# only\n\n\n").unwrap(), "# only\n");
        assert_eq!(
            format("a=1\r\nb {\r\n  c=2\r\n}\r\n").unwrap(),
            "a = 1\nb {\n  c = 2\n}\n"
        );
    }

    #[test]
    fn a_heredoc_aligns_with_the_run_before_it_and_ends_it() {
        let text = "name = \"x\"\npolicy = <<EOT\n  a  \nEOT\nlonger_name = 1\nb = 2\n";
        assert_eq!(
            format(text).unwrap(),
            "name   = \"x\"\npolicy = <<EOT\n  a  \nEOT\nlonger_name = 1\nb           = 2\n"
        );
    }

    #[test]
    fn line_breaks_around_an_operator_are_kept_and_indented_inside_parentheses() {
        // hclwrite keeps them and indents by the brackets open at the start of the line.
        let text = "ok = (
var.a > 1
    && var.b < 2 # why
)
ok2 = (var.a > 1 &&
var.b < 2)
l = [
  a
      + b,
]
same = (a   +   b)
";
        let expected = "ok = (
  var.a > 1
  && var.b < 2 # why
)
ok2 = (var.a > 1 &&
  var.b < 2)
l = [
  a
  + b,
]
same = (a + b)
";
        assert_eq!(format(text).unwrap(), expected);
        assert_eq!(format(expected).unwrap(), expected);
    }

    #[test]
    fn two_blocks_are_separated_by_one_blank_line() {
        let text = "a \"x\" {\n  v = 1\n}\nb {\n  w = 2\n  inner {}\n  # about the second\n  inner {}\n}\n\n\n\nc {}\nx = 1\nd {}\n";
        let expected = "a \"x\" {\n  v = 1\n}\n\nb {\n  w = 2\n  inner {}\n\n  # about the second\n  inner {}\n}\n\nc {}\nx = 1\nd {}\n";
        assert_eq!(format(text).unwrap(), expected);
        assert_eq!(format(expected).unwrap(), expected);
    }
}
