//! HCL files -> typed configuration with source spans.
//!
//! Loads every `*.hcl` file of a directory with `hcl-edit` (which keeps byte spans), sorts the
//! blocks into `variable`, `locals`, `provider`, `data`, `step` and `output`, and records every
//! reference an expression makes. It collects every diagnostic before it stops.

pub mod arith;
/// Guard blocks (issue 11): `window`, `precondition`/`postcondition`, `check`.
pub mod conditions;
pub mod diagnostic;
pub mod eval;
pub mod execution;
pub mod format;
pub mod functions;
pub mod modules;
pub mod refs;
pub mod syntax;
pub mod types;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::Span as _;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use refs::{RefRoot, Reference};

/// One loaded configuration file: its path, text and line index.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as shown to the user (relative to the working directory when possible).
    pub display: String,
    /// Full text of the file.
    pub text: String,
    line_starts: Vec<usize>,
    /// For a file of a module instance: `in module.x, called at main.hcl:3:1` (a note on its
    /// diagnostics).
    pub called_from: Option<String>,
}

impl SourceFile {
    /// Builds a source file from its display name and text. A leading UTF-8 byte order mark
    /// is dropped, so that offsets and columns count from the first character after it.
    pub fn new(display: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let mut text = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            display: display.into(),
            text,
            line_starts,
            called_from: None,
        }
    }

    /// The largest character boundary at or before `offset` (clamped to the text).
    pub fn floor_char_boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// The smallest character boundary at or after `offset` (clamped to the text).
    pub fn ceil_char_boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset += 1;
        }
        offset
    }

    /// 1-based line and column (in characters) of a byte offset. An offset inside a
    /// multi-byte character counts as that character; one past the end, as the end.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char_boundary(offset);
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line_idx];
        let col = self.text[start..offset].chars().count() + 1;
        (line_idx + 1, col)
    }

    /// Byte offset where 1-based line `line` starts (the end of the text past the last line).
    pub fn line_start(&self, line: usize) -> usize {
        self.line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len())
    }

    /// The text of 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map(|e| e.saturating_sub(1))
            .unwrap_or(self.text.len());
        self.text[start..end.max(start)].trim_end_matches('\r')
    }
}

/// All source files of a configuration, indexed by [`Span::file`].
#[derive(Debug, Default)]
pub struct Sources {
    /// The files, in load order (sorted by name).
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// `file:line:col` of a span's start.
    pub fn location(&self, span: &Span) -> String {
        match self.files.get(span.file) {
            Some(file) => {
                let (line, col) = file.line_col(span.range.start);
                format!("{}:{}:{}", file.display, line, col)
            }
            None => "<unknown>".to_string(),
        }
    }
}

/// A byte range in one source file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    /// Index into [`Sources::files`].
    pub file: usize,
    /// Byte range within the file.
    pub range: Range<usize>,
}

/// One attribute (`name = expression`) of a block, with its references.
#[derive(Debug, Clone)]
pub struct Attr {
    /// The attribute name.
    pub name: String,
    /// The expression, in the form `hcl-rs` evaluates.
    pub expr: hcl::Expression,
    /// Span of the value expression.
    pub span: Span,
    /// Span of the attribute key.
    pub key_span: Span,
    /// Every reference the expression makes (`var.x`, `step.t.n`, ...).
    pub refs: Vec<Reference>,
    /// Functions the expression calls: name and span.
    pub functions: Vec<(String, Span)>,
}

/// What kind of top-level block a [`BlockDef`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKind {
    /// `step "TYPE" "NAME"`.
    Step,
    /// `data "TYPE" "NAME"`.
    Data,
}

impl BlockKind {
    /// The keyword (`step` or `data`).
    pub fn keyword(self) -> &'static str {
        match self {
            BlockKind::Step => "step",
            BlockKind::Data => "data",
        }
    }
}

/// A `step` or `data` block: its type, name, arguments and meta-arguments.
#[derive(Debug, Clone)]
pub struct BlockDef {
    /// Step or data source.
    pub kind: BlockKind,
    /// The type label, e.g. `eks_nodegroup_scaling`.
    pub type_name: String,
    /// The name label.
    pub name: String,
    /// Span of the block header (keyword and labels).
    pub span: Span,
    /// Span of the type label.
    pub type_span: Span,
    /// Type-specific arguments, in source order.
    pub args: Vec<Attr>,
    /// `depends_on` references.
    pub depends_on: Vec<Reference>,
    /// `depends_on` attribute span, if any.
    pub depends_on_span: Option<Span>,
    /// `count = N`.
    pub count: Option<Attr>,
    /// `for_each = set or map`.
    pub for_each: Option<Attr>,
    /// `provider = aws.west`: the provider key and its span.
    pub provider: Option<(String, Span)>,
    /// `timeout = "60m"`.
    pub timeout: Option<Attr>,
    /// `retry`, `rollout`, `on_failure`, `rollback` ([`execution`]).
    pub execution: execution::Execution,
    /// `precondition` and `postcondition` blocks, in source order.
    pub conditions: Vec<conditions::ConditionDef>,
}

impl BlockDef {
    /// The block address without instance key: `step.TYPE.NAME` or `data.TYPE.NAME`.
    pub fn address(&self) -> String {
        modules::address(self.kind.keyword(), &self.type_name, &self.name)
    }

    /// Every reference of the block: arguments, meta-arguments and `depends_on`.
    pub fn all_refs(&self) -> impl Iterator<Item = &Reference> {
        self.args
            .iter()
            .chain(self.count.iter())
            .chain(self.for_each.iter())
            .chain(self.timeout.iter())
            .flat_map(|a| a.refs.iter())
            .chain(self.depends_on.iter())
            .chain(self.conditions.iter().flat_map(|c| c.refs()))
    }
}

/// A `variable "NAME"` block.
#[derive(Debug, Clone)]
pub struct VariableDef {
    /// Variable name.
    pub name: String,
    /// Span of the block header.
    pub span: Span,
    /// Type constraint (`any` when not given).
    pub ty: types::TypeConstraint,
    /// Default value expression.
    pub default: Option<Attr>,
    /// Description.
    pub description: Option<String>,
    /// Whether the value is sensitive.
    pub sensitive: bool,
    /// `validation { condition, error_message }` blocks.
    pub validations: Vec<(Attr, Attr)>,
}

/// One `name = expr` entry of a `locals` block.
#[derive(Debug, Clone)]
pub struct LocalDef {
    /// The attribute.
    pub attr: Attr,
    /// Set when the local is a module input (or sensitive output): its type and validations.
    pub input: Option<Box<modules::ModuleInput>>,
}

/// A `provider "NAME"` block.
#[derive(Debug, Clone)]
pub struct ProviderDef {
    /// Provider name (`aws`).
    pub name: String,
    /// `alias`, if any.
    pub alias: Option<String>,
    /// Span of the block header.
    pub span: Span,
    /// Arguments other than `alias`.
    pub args: Vec<Attr>,
}

impl ProviderDef {
    /// `aws` or `aws.ALIAS`.
    pub fn key(&self) -> String {
        match &self.alias {
            Some(alias) => format!("{}.{}", self.name, alias),
            None => self.name.clone(),
        }
    }
}

/// An `output "NAME"` block.
#[derive(Debug, Clone)]
pub struct OutputDef {
    /// Output name.
    pub name: String,
    /// Span of the header.
    pub span: Span,
    /// The `value` attribute.
    pub value: Attr,
    /// Whether the value is sensitive.
    pub sensitive: bool,
}

/// A whole configuration: every block of every `*.hcl` file in a directory.
#[derive(Debug, Default)]
pub struct Config {
    /// The files the configuration came from.
    pub sources: Sources,
    /// `variable` blocks.
    pub variables: Vec<VariableDef>,
    /// `locals` entries.
    pub locals: Vec<LocalDef>,
    /// `provider` blocks.
    pub providers: Vec<ProviderDef>,
    /// `data` and `step` blocks.
    pub blocks: Vec<BlockDef>,
    /// `output` blocks.
    pub outputs: Vec<OutputDef>,
    /// SHA-256 of the file names and contents, hex.
    pub digest: String,
    /// `module` calls not yet expanded (empty once [`load_dir`] returns).
    pub module_calls: Vec<modules::ModuleCall>,
    /// The maintenance `window`, if any.
    pub window: Option<conditions::WindowDef>,
    /// `check` blocks.
    pub checks: Vec<conditions::CheckDef>,
}

const STEP_META: &[&str] = &["depends_on", "count", "for_each", "provider", "timeout"];

/// Loads every `*.hcl` file of `dir` (sorted by name).
///
/// Like Terraform, skips hidden and editor files: names starting with `.` (`.main.hcl`,
/// Emacs' `.#main.hcl` lock links), ending with `~` (backups) or enclosed in `#` (autosaves).
///
/// # Errors
///
/// Returns every diagnostic found: unreadable files, a `*.hcl` symbolic link whose target is
/// missing (naming the link and its target), a file that is not UTF-8 (at the `file:line:col`
/// of the first bad byte), syntax errors (with `file:line:col`), unknown block types,
/// duplicate addresses, malformed meta-arguments; and as [`modules::expand`] without
/// variable values (a module whose instances depend on a root variable is an error).
pub fn load_dir(dir: &Path) -> Result<Config, Diagnostics> {
    load_root(dir).and_then(|config| modules::expand(config, dir, None))
}

/// Loads every `*.hcl` file of `dir` as [`load_dir`] does, but leaves its `module` calls in
/// [`Config::module_calls`]: the root variables are read from this configuration, then
/// [`modules::expand`] takes their values (a module's `for_each` may use them).
///
/// # Errors
///
/// As [`load_dir`], module expansion aside.
pub fn load_root(dir: &Path) -> Result<Config, Diagnostics> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            return Err(Diagnostics::single(Diagnostic::error(format!(
                "cannot read configuration directory `{}`: {err}",
                dir.display()
            ))))
        }
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let display_of = |path: &Path| {
        path.strip_prefix(&cwd)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut diags = Diagnostics::default();
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                diags.push(Diagnostic::error(format!(
                    "cannot read configuration directory `{}`: {err}",
                    dir.display()
                )));
                continue;
            }
        };
        if !is_config_file_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => paths.push(path),
            Err(err) => {
                let display = display_of(&path);
                diags.push(Diagnostic::error(match std::fs::read_link(&path) {
                    Ok(target) if err.kind() == std::io::ErrorKind::NotFound => format!(
                        "`{display}` is a symbolic link to `{}`, which does not exist",
                        target.display()
                    ),
                    Ok(target) => format!(
                        "cannot read `{display}`, a symbolic link to `{}`: {err}",
                        target.display()
                    ),
                    Err(_) => format!("cannot read `{display}`: {err}"),
                }));
            }
        }
    }
    paths.sort();
    if paths.is_empty() && !diags.has_errors() {
        return Err(Diagnostics::single(Diagnostic::error(format!(
            "no configuration files (`*.hcl`) in `{}`",
            dir.display()
        ))));
    }
    let mut files = Vec::new();
    for path in paths {
        let display = display_of(&path);
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push(SourceFile::new(display, text)),
                Err(err) => {
                    let bad = err.utf8_error().valid_up_to();
                    let byte = err.as_bytes()[bad];
                    let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
                    // `SourceFile::new` drops a byte order mark; offsets follow.
                    let at = if text.starts_with('\u{feff}') {
                        bad - 3
                    } else {
                        bad
                    };
                    diags.push(
                        Diagnostic::error(format!(
                            "`{display}` is not valid UTF-8: invalid byte 0x{byte:02X}"
                        ))
                        .with_span(Span {
                            file: files.len(),
                            range: at..at + 1,
                        })
                        .with_note("configuration files must be UTF-8 text"),
                    );
                    files.push(SourceFile::new(display, text));
                }
            },
            Err(err) => diags.push(Diagnostic::error(format!("cannot read `{display}`: {err}"))),
        }
    }
    if diags.has_errors() {
        diags.attach_sources(&Sources { files });
        return Err(diags);
    }
    load_sources(files)
}

/// Whether a directory entry named `name` is a configuration file: `*.hcl`, and neither
/// hidden (`.x.hcl`) nor an editor's backup (`x.hcl~`) or autosave (`#x.hcl#`).
pub(crate) fn is_config_file_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    // Backups (`main.hcl~`) and autosaves (`#main.hcl#`) do not end in `.hcl`; Emacs' lock
    // links (`.#main.hcl`) are hidden.
    name.ends_with(b".hcl") && !name.starts_with(b".")
}

/// Parses already-read files into a [`Config`].
///
/// # Errors
///
/// As [`load_dir`].
pub fn load_sources(files: Vec<SourceFile>) -> Result<Config, Diagnostics> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for file in &files {
        hasher.update(file.display.as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
        hasher.update([0]);
    }
    let mut config = Config {
        digest: hex(&hasher.finalize()),
        ..Config::default()
    };
    let mut diags = Diagnostics::default();
    let mut bodies = Vec::new();
    for (file_idx, file) in files.iter().enumerate() {
        match hcl_edit::parser::parse_body(&file.text) {
            Ok(body) => bodies.push((file_idx, body)),
            Err(err) => {
                // The parser says where it gave up; the lexer, when it finds one, says what
                // is wrong and where it starts (an unterminated string, a stray character).
                let diag = match syntax::explain(&file.text) {
                    Some(problem) => {
                        let d = Diagnostic::error(format!("syntax error: {}", problem.message))
                            .with_span(Span {
                                file: file_idx,
                                range: problem.range,
                            });
                        match problem.note {
                            Some(note) => d.with_note(note),
                            None => d,
                        }
                    }
                    None => {
                        let offset = err.location().offset();
                        Diagnostic::error(format!("syntax error: {}", err.message())).with_span(
                            Span {
                                file: file_idx,
                                range: offset..offset + 1,
                            },
                        )
                    }
                };
                diags.push(diag);
            }
        }
    }
    for (file_idx, body) in &bodies {
        let mut check = NumberCheck {
            file: *file_idx,
            text: &files[*file_idx].text,
            diags: &mut diags,
        };
        hcl_edit::visit::visit_body(&mut check, body);
    }
    config.sources.files = files;
    for (_, body) in &mut bodies {
        modules::rename_root(body);
    }
    for (file_idx, body) in &bodies {
        load_body(&mut config, *file_idx, body, &mut diags);
    }
    check_duplicates(&config, &mut diags);
    execution::check(&config, &mut diags);
    if diags.has_errors() {
        diags.attach_sources(&config.sources);
        return Err(diags);
    }
    Ok(config)
}

/// Evaluates a value given as text outside the configuration (`--var`, `OPSCTL_VAR_*`):
/// literals, collections and arithmetic; no references or function calls.
///
/// # Errors
///
/// A message when the text does not parse, does not evaluate, or holds a whole number out of
/// range.
pub fn eval_value_text(text: &str) -> Result<hcl::Value, String> {
    let mut expr = hcl_edit::parser::parse_expr(text).map_err(|e| {
        format!(
            "cannot parse `{text}`: {} at column {}",
            e.message(),
            e.location().column()
        )
    })?;
    let file = SourceFile::new("", text);
    eval_value_expr(&file, 0, &mut expr).map_err(|d| format!("`{text}`: {}", d.message))
}

/// Parses and evaluates a var file: `name = value` lines, whose values are literals,
/// collections and arithmetic. Returns each entry's name with its value or error. Diagnostics
/// are located in the var file (`path:line:col`).
///
/// # Errors
///
/// A syntax error, or a block where only attributes belong.
#[allow(clippy::type_complexity)]
pub fn parse_var_file(
    path: &str,
    text: &str,
) -> Result<Vec<(String, Result<hcl::Value, Diagnostic>)>, Diagnostic> {
    let sources = Sources {
        files: vec![SourceFile::new(path, text)],
    };
    let text = &sources.files[0].text;
    let located = |mut d: Diagnostic| {
        d.locate(&sources);
        d
    };
    let body = match hcl_edit::parser::parse_body(text) {
        Ok(body) => body,
        Err(err) => {
            let (message, range, note) = match syntax::explain(text) {
                Some(p) => (p.message, p.range, p.note),
                None => {
                    let at = err.location().offset();
                    (err.message().to_string(), at..at + 1, None)
                }
            };
            let mut d = Diagnostic::error(format!("syntax error in var file `{path}`: {message}"))
                .with_span(Span { file: 0, range });
            if let Some(note) = note {
                d = d.with_note(note);
            }
            return Err(located(d));
        }
    };
    let mut out = Vec::new();
    for structure in body.into_iter() {
        match structure {
            Structure::Attribute(mut attr) => {
                let name = attr.key.as_str().to_string();
                let value = eval_value_expr(&sources.files[0], 0, &mut attr.value).map_err(located);
                out.push((name, value));
            }
            Structure::Block(block) => {
                return Err(located(
                    Diagnostic::error(format!(
                        "var file `{path}` may only set variables (`name = value`), not hold a `{}` block",
                        block.ident.as_str()
                    ))
                    .with_span(header_span(0, &block)),
                ))
            }
        }
    }
    Ok(out)
}

/// Evaluates an expression that may not refer to anything: checks its number literals,
/// rewrites its arithmetic, evaluates it with the arithmetic functions only.
fn eval_value_expr(
    file: &SourceFile,
    file_idx: usize,
    expr: &mut hcl_edit::expr::Expression,
) -> Result<hcl::Value, Diagnostic> {
    use hcl::eval::Evaluate as _;
    let span = span_of(file_idx, hcl_edit::Span::span(&*expr));
    let mut diags = Diagnostics::default();
    let mut check = NumberCheck {
        file: file_idx,
        text: &file.text,
        diags: &mut diags,
    };
    hcl_edit::visit::Visit::visit_expr(&mut check, expr);
    if let Some(d) = diags.0.into_iter().next() {
        return Err(d);
    }
    arith::rewrite(file_idx, expr);
    hcl::Expression::from(expr.clone())
        .evaluate(arith::context())
        .map_err(|e| {
            Diagnostic::error(format!("cannot evaluate: {}", eval::error_message(&e)))
                .with_span(span)
        })
}

/// Rejects whole-number literals that do not fit in 64 bits: `hcl-edit` would silently turn
/// `999999999999999999999` into the float `1e21`.
struct NumberCheck<'a> {
    file: usize,
    text: &'a str,
    diags: &'a mut Diagnostics,
}

impl hcl_edit::visit::Visit for NumberCheck<'_> {
    fn visit_number(&mut self, number: &hcl_edit::Formatted<hcl_edit::Number>) {
        if !number.value().is_f64() {
            return;
        }
        let Some(range) = number.span() else { return };
        let Some(literal) = self.text.get(range.clone()) else {
            return;
        };
        let digits = literal.trim_start_matches('-').trim_start();
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            self.diags.push(
                Diagnostic::error(format!(
                    "whole number `{literal}` is out of range: whole numbers must be between {} and {}",
                    i64::MIN,
                    u64::MAX
                ))
                .with_span(Span {
                    file: self.file,
                    range,
                })
                .with_note("write it as a string (\"...\") to keep every digit"),
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn span_of(file: usize, range: Option<Range<usize>>) -> Span {
    Span {
        file,
        range: range.unwrap_or(0..0),
    }
}

fn header_span(file: usize, block: &Block) -> Span {
    let start = block.ident.span().map(|r| r.start).unwrap_or(0);
    let end = block
        .labels
        .last()
        .and_then(label_span)
        .map(|r| r.end)
        .or_else(|| block.ident.span().map(|r| r.end))
        .unwrap_or(start);
    Span {
        file,
        range: start..end,
    }
}

fn label_span(label: &hcl_edit::structure::BlockLabel) -> Option<Range<usize>> {
    match label {
        hcl_edit::structure::BlockLabel::Ident(i) => i.span(),
        hcl_edit::structure::BlockLabel::String(s) => s.span(),
    }
}

fn make_attr(file: usize, attr: &hcl_edit::structure::Attribute) -> Attr {
    let (refs, mut functions) = refs::collect(file, &attr.value);
    let mut value = attr.value.clone();
    functions.extend(arith::rewrite(file, &mut value));
    Attr {
        functions,
        name: attr.key.as_str().to_string(),
        expr: hcl::Expression::from(value),
        span: span_of(file, attr.value.span()),
        key_span: span_of(file, attr.key.span()),
        refs,
    }
}

fn expect_labels(
    file: usize,
    block: &Block,
    n: usize,
    usage: &str,
    diags: &mut Diagnostics,
) -> bool {
    if block.labels.len() != n {
        diags.push(
            Diagnostic::error(format!(
                "`{}` block takes {n} label(s): {usage}",
                block.ident.as_str()
            ))
            .with_span(header_span(file, block)),
        );
        return false;
    }
    true
}

fn load_body(config: &mut Config, file: usize, body: &Body, diags: &mut Diagnostics) {
    for structure in body.iter() {
        let block = match structure {
            Structure::Block(block) => block,
            Structure::Attribute(attr) => {
                diags.push(
                    Diagnostic::error(format!(
                        "unexpected top-level attribute `{}`; expected a block such as `step`",
                        attr.key.as_str()
                    ))
                    .with_span(span_of(file, attr.key.span())),
                );
                continue;
            }
        };
        match block.ident.as_str() {
            "variable" => {
                if expect_labels(file, block, 1, "variable \"NAME\"", diags) {
                    load_variable(config, file, block, diags);
                }
            }
            "locals" => {
                for s in block.body.iter() {
                    match s {
                        Structure::Attribute(attr) => config.locals.push(LocalDef {
                            attr: make_attr(file, attr),
                            input: None,
                        }),
                        Structure::Block(b) => diags.push(
                            Diagnostic::error("`locals` takes only attributes")
                                .with_span(header_span(file, b)),
                        ),
                    }
                }
            }
            "provider" => {
                if expect_labels(file, block, 1, "provider \"NAME\"", diags) {
                    let mut def = ProviderDef {
                        name: block.labels[0].as_str().to_string(),
                        alias: None,
                        span: header_span(file, block),
                        args: Vec::new(),
                    };
                    for s in block.body.iter() {
                        match s {
                            Structure::Attribute(attr) if attr.key.as_str() == "alias" => {
                                match hcl::Expression::from(attr.value.clone()) {
                                    hcl::Expression::String(s) => def.alias = Some(s),
                                    _ => diags.push(
                                        Diagnostic::error("`alias` must be a literal string")
                                            .with_span(span_of(file, attr.value.span())),
                                    ),
                                }
                            }
                            Structure::Attribute(attr) => def.args.push(make_attr(file, attr)),
                            Structure::Block(b) => diags.push(
                                Diagnostic::error(format!(
                                    "unexpected block `{}` in provider",
                                    b.ident.as_str()
                                ))
                                .with_span(header_span(file, b)),
                            ),
                        }
                    }
                    config.providers.push(def);
                }
            }
            "step" | "data" => {
                let kind = if block.ident.as_str() == "step" {
                    BlockKind::Step
                } else {
                    BlockKind::Data
                };
                let usage = format!("{} \"TYPE\" \"NAME\"", kind.keyword());
                if expect_labels(file, block, 2, &usage, diags) {
                    load_step(config, file, block, kind, diags);
                }
            }
            "output" => {
                if expect_labels(file, block, 1, "output \"NAME\"", diags) {
                    let mut value = None;
                    let mut sensitive = false;
                    for s in block.body.iter() {
                        match s {
                            Structure::Attribute(attr) if attr.key.as_str() == "value" => {
                                value = Some(make_attr(file, attr))
                            }
                            Structure::Attribute(attr) if attr.key.as_str() == "sensitive" => {
                                sensitive = literal_bool(file, attr, diags)
                            }
                            Structure::Attribute(attr) if attr.key.as_str() == "description" => {}
                            other => diags.push(
                                Diagnostic::error("unexpected argument in `output`; expected `value`, `description` or `sensitive`")
                                    .with_span(span_of(file, other.span())),
                            ),
                        }
                    }
                    match value {
                        Some(value) => config.outputs.push(OutputDef {
                            name: block.labels[0].as_str().to_string(),
                            span: header_span(file, block),
                            value,
                            sensitive,
                        }),
                        None => diags.push(
                            Diagnostic::error("`output` requires a `value`")
                                .with_span(header_span(file, block)),
                        ),
                    }
                }
            }
            "module" => modules::load_call(config, file, block, diags),
            "window" => conditions::load_window(config, file, block, diags),
            "check" => conditions::load_check(config, file, block, diags),
            other => diags.push(
                Diagnostic::error(format!(
                    "unknown block type `{other}`; expected `variable`, `locals`, `provider`, `data`, `step`, `output`, `module`, `check` or `window`"
                ))
                .with_span(span_of(file, block.ident.span())),
            ),
        }
    }
}

fn literal_bool(
    file: usize,
    attr: &hcl_edit::structure::Attribute,
    diags: &mut Diagnostics,
) -> bool {
    match hcl::Expression::from(attr.value.clone()) {
        hcl::Expression::Bool(b) => b,
        _ => {
            diags.push(
                Diagnostic::error(format!("`{}` must be `true` or `false`", attr.key.as_str()))
                    .with_span(span_of(file, attr.value.span())),
            );
            false
        }
    }
}

fn load_variable(config: &mut Config, file: usize, block: &Block, diags: &mut Diagnostics) {
    let mut def = VariableDef {
        name: block.labels[0].as_str().to_string(),
        span: header_span(file, block),
        ty: types::TypeConstraint::Any,
        default: None,
        description: None,
        sensitive: false,
        validations: Vec::new(),
    };
    for s in block.body.iter() {
        match s {
            Structure::Attribute(attr) => match attr.key.as_str() {
                "type" => match types::TypeConstraint::parse(&hcl::Expression::from(attr.value.clone())) {
                    Ok(ty) => def.ty = ty,
                    Err(msg) => diags.push(
                        Diagnostic::error(msg).with_span(span_of(file, attr.value.span())),
                    ),
                },
                "default" => def.default = Some(make_attr(file, attr)),
                "description" => {
                    if let hcl::Expression::String(s) = hcl::Expression::from(attr.value.clone()) {
                        def.description = Some(s)
                    }
                }
                "sensitive" => def.sensitive = literal_bool(file, attr, diags),
                "nullable" => {}
                other => diags.push(
                    Diagnostic::error(format!(
                        "unknown argument `{other}` in `variable`; expected `type`, `default`, `description`, `sensitive` or `validation`"
                    ))
                    .with_span(span_of(file, attr.key.span())),
                ),
            },
            Structure::Block(b) if b.ident.as_str() == "validation" => {
                let cond = b.body.get_attribute("condition").map(|a| make_attr(file, a));
                let msg = b.body.get_attribute("error_message").map(|a| make_attr(file, a));
                match (cond, msg) {
                    (Some(c), Some(m)) => def.validations.push((c, m)),
                    _ => diags.push(
                        Diagnostic::error("`validation` requires `condition` and `error_message`")
                            .with_span(header_span(file, b)),
                    ),
                }
            }
            Structure::Block(b) => diags.push(
                Diagnostic::error(format!("unexpected block `{}` in `variable`", b.ident.as_str()))
                    .with_span(header_span(file, b)),
            ),
        }
    }
    if let Some(default) = &def.default {
        if !default.refs.is_empty() {
            diags.push(
                Diagnostic::error("a variable default cannot refer to other values")
                    .with_span(default.span.clone()),
            );
        }
    }
    config.variables.push(def);
}

fn load_step(
    config: &mut Config,
    file: usize,
    block: &Block,
    kind: BlockKind,
    diags: &mut Diagnostics,
) {
    let mut def = BlockDef {
        kind,
        type_name: block.labels[0].as_str().to_string(),
        name: block.labels[1].as_str().to_string(),
        span: header_span(file, block),
        type_span: span_of(file, label_span(&block.labels[0])),
        args: Vec::new(),
        depends_on: Vec::new(),
        depends_on_span: None,
        count: None,
        for_each: None,
        provider: None,
        timeout: None,
        execution: execution::Execution::default(),
        conditions: Vec::new(),
    };
    if !is_identifier(&def.name) {
        diags.push(
            Diagnostic::error(format!(
                "invalid name `{}`: names start with a letter or underscore and contain only letters, digits, `_` and `-`",
                def.name
            ))
            .with_span(span_of(file, label_span(&block.labels[1]))),
        );
    }
    for s in block.body.iter() {
        let attr = match s {
            Structure::Attribute(attr) => attr,
            Structure::Block(b)
                if kind == BlockKind::Step && execution::BLOCKS.contains(&b.ident.as_str()) =>
            {
                execution::parse_block(&mut def, file, b, diags);
                continue;
            }
            Structure::Block(b) => {
                if kind == BlockKind::Step {
                    if let Some(c) = conditions::load_condition(file, b, diags) {
                        def.conditions.extend(c);
                        continue;
                    }
                }
                diags.push(
                    Diagnostic::error(format!(
                        "unexpected block `{}` in `{}`; arguments are written `name = value`",
                        b.ident.as_str(),
                        def.address()
                    ))
                    .with_span(header_span(file, b)),
                );
                continue;
            }
        };
        let key = attr.key.as_str();
        if kind == BlockKind::Step && execution::ATTRS.contains(&key) {
            execution::parse_attr(&mut def, file, attr, diags);
            continue;
        }
        if STEP_META.contains(&key) {
            let a = make_attr(file, attr);
            match key {
                "depends_on" => {
                    let ok = matches!(a.expr, hcl::Expression::Array(_))
                        && a.refs.iter().all(|r| {
                            matches!(r.root, RefRoot::Step | RefRoot::Data)
                                || modules::is_call_ref(r)
                        });
                    if !ok {
                        diags.push(
                            Diagnostic::error(
                                "`depends_on` must be a list of references such as `[step.TYPE.NAME]`",
                            )
                            .with_span(a.span.clone()),
                        );
                    }
                    def.depends_on_span = Some(a.span.clone());
                    def.depends_on = a.refs;
                }
                "count" => def.count = Some(a),
                "for_each" => def.for_each = Some(a),
                "timeout" => def.timeout = Some(a),
                "provider" => {
                    let ok = a.refs.len() == 1 && a.refs[0].parts.len() <= 2;
                    match (&a.expr, ok) {
                        (hcl::Expression::Traversal(_) | hcl::Expression::Variable(_), true) => {
                            def.provider = Some((a.refs[0].parts.join("."), a.span.clone()))
                        }
                        _ => diags.push(
                            Diagnostic::error(
                                "`provider` must name a provider such as `aws` or `aws.west`",
                            )
                            .with_span(a.span.clone()),
                        ),
                    }
                }
                _ => {}
            }
        } else {
            def.args.push(make_attr(file, attr));
        }
    }
    if def.count.is_some() && def.for_each.is_some() {
        diags.push(
            Diagnostic::error(format!(
                "`{}` sets both `count` and `for_each`; use one",
                def.address()
            ))
            .with_span(def.span.clone()),
        );
    }
    config.blocks.push(def);
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_duplicates(config: &Config, diags: &mut Diagnostics) {
    let mut entries: Vec<(String, &Span)> = Vec::new();
    entries.extend(
        config
            .variables
            .iter()
            .map(|v| (format!("var.{}", v.name), &v.span)),
    );
    entries.extend(
        config
            .locals
            .iter()
            .map(|l| (format!("local.{}", l.attr.name), &l.attr.key_span)),
    );
    entries.extend(
        config
            .providers
            .iter()
            .map(|p| (format!("provider.{}", p.key()), &p.span)),
    );
    entries.extend(config.blocks.iter().map(|b| (b.address(), &b.span)));
    entries.extend(
        config
            .outputs
            .iter()
            .map(|o| (format!("output.{}", o.name), &o.span)),
    );
    let mut seen: HashMap<&str, &Span> = HashMap::new();
    for (addr, span) in &entries {
        if let Some(first) = seen.get(addr.as_str()) {
            diags.push(
                Diagnostic::error(format!("duplicate address `{addr}`"))
                    .with_span((*span).clone())
                    .with_note(format!(
                        "first defined at {}",
                        config.sources.location(first)
                    )),
            );
        } else {
            seen.insert(addr, span);
        }
    }
}
