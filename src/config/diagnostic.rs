//! Diagnostics: an error or warning about the configuration, pointing at `file:line:col`.
//!
//! A diagnostic carries a [`Span`]; [`Diagnostics::attach_sources`] resolves it to a location
//! and the offending source line so that the rendered text needs nothing else.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::{Sources, Span};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops validate, plan and apply.
    Error,
    /// Shown, does not stop.
    Warning,
}

/// The resolved position of a diagnostic: `file:line:col` and the source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// `file:line:col`.
    pub location: String,
    /// The file as shown to the user.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// The text of the line, without its line ending.
    pub source_line: String,
    /// Byte range of `source_line` to underline (empty: a single caret at its start).
    pub range: Range<usize>,
}

/// One error or warning about the configuration or its evaluation.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Lowercase message, values in backticks.
    pub message: String,
    /// Where it happened, if known.
    pub span: Option<Span>,
    /// Resolved position (set by [`Diagnostics::attach_sources`]).
    pub located: Option<Box<Located>>,
    /// Further lines (`= note: ...`).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A new error without a position.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: None,
            located: None,
            notes: Vec::new(),
        }
    }

    /// A new warning without a position.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Sets the span.
    pub fn with_span(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Resolves the span against `sources`. Spans that are out of range or fall inside a
    /// multi-byte character are widened to whole characters; a span running over several
    /// lines is underlined to the end of its first line.
    pub fn locate(&mut self, sources: &Sources) {
        if self.located.is_some() {
            return;
        }
        let Some(span) = &self.span else { return };
        let Some(file) = sources.files.get(span.file) else {
            return;
        };
        let start = file.floor_char_boundary(span.range.start);
        let end = file.ceil_char_boundary(span.range.end.max(start));
        let (line, col) = file.line_col(start);
        let source_line = file.line_text(line).to_string();
        let line_start = file.line_start(line);
        let from = (start - line_start).min(source_line.len());
        let to = end
            .saturating_sub(line_start)
            .clamp(from, source_line.len());
        self.located = Some(Box::new(Located {
            location: format!("{}:{}:{}", file.display, line, col),
            path: file.display.clone(),
            line,
            col,
            source_line,
            range: from..to,
        }));
        if let Some(called) = &file.called_from {
            self.notes.push(called.clone());
        }
    }
}

impl fmt::Display for Diagnostic {
    /// Renders like rustc (through `annotate-snippets`): `error: message`, then
    /// `--> file:line:col`, the source line with carets under the span, and `= note:` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(self.message.as_str());
        let mut group = match &self.located {
            Some(loc) => title.element(
                Snippet::source(loc.source_line.as_str())
                    .line_start(loc.line)
                    .path(loc.path.as_str())
                    .annotation(AnnotationKind::Primary.span(loc.range.clone())),
            ),
            None => Group::with_title(title),
        };
        for note in &self.notes {
            group = group.element(Level::NOTE.message(note.as_str()));
        }
        writeln!(f, "{}", Renderer::plain().render(&[group]))
    }
}

/// A list of diagnostics, collected before stopping.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A list of one.
    pub fn single(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }

    /// Appends one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Appends all of another list.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Resolves every span to `file:line:col` and the source line.
    pub fn attach_sources(&mut self, sources: &Sources) {
        for d in &mut self.0 {
            d.locate(sources);
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n_errors = self
            .0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        if n_errors > 1 {
            writeln!(f, "\n{n_errors} errors")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceFile, Span};

    fn render(text: &str, range: std::ops::Range<usize>) -> String {
        let sources = Sources {
            files: vec![SourceFile::new("main.hcl", text)],
        };
        let mut d = Diagnostic::error("bad value").with_span(Span { file: 0, range });
        d.locate(&sources);
        d.to_string()
    }

    /// The display column of the first caret and of `needle` in the rendered source line.
    fn caret_and_needle_columns(rendered: &str, needle: &str) -> (usize, usize) {
        let lines: Vec<&str> = rendered.lines().collect();
        let source = lines
            .iter()
            .find(|l| l.contains(needle) && l.contains(" | "))
            .unwrap();
        let carets = lines.iter().find(|l| l.contains('^')).unwrap();
        // Display width: emoji take two columns in a terminal.
        let width = |s: &str| -> usize {
            s.chars()
                .map(|c| if c as u32 >= 0x1f000 { 2 } else { 1 })
                .sum()
        };
        let needle_col = width(&source[..source.find(needle).unwrap()]);
        let caret_col = width(&carets[..carets.find('^').unwrap()]);
        (caret_col, needle_col)
    }

    #[test]
    fn renders_location_source_line_and_carets_under_tabs() {
        let out = render("a = 1\n\tb = bad\n", 11..14);
        assert!(
            out.starts_with("error: bad value\n --> main.hcl:2:6\n"),
            "{out}"
        );
        let (caret, needle) = caret_and_needle_columns(&out, "bad");
        assert_eq!(caret, needle, "carets not under `bad`:\n{out}");
        assert!(out.contains("^^^\n"), "{out}");
    }

    #[test]
    fn non_ascii_text_at_and_before_the_span_is_char_safe() {
        // Typographic quotes, a no-break space and an emoji before the span; offsets inside
        // a multi-byte character; a span past the end of the text.
        let text = "x = \u{201c}a\u{201d}\u{a0}\u{1f600} bad\n";
        let at = text.find("bad").unwrap();
        let out = render(text, at..at + 3);
        assert!(out.contains("--> main.hcl:1:11\n"), "{out}");
        let (caret, needle) = caret_and_needle_columns(&out, "bad");
        assert_eq!(caret, needle, "carets not under `bad`:\n{out}");
        let reversed = std::ops::Range { start: 7, end: 6 };
        for range in [5..6, 4..5, 0..1000, 1000..1001, reversed] {
            let out = render(text, range.clone());
            assert!(
                out.starts_with("error: bad value\n --> main.hcl:"),
                "{range:?}: {out}"
            );
        }
        let out = render(text, 5..6);
        assert!(
            out.contains("--> main.hcl:1:5\n"),
            "inside the opening quote: {out}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_columns_count_from_after_it() {
        let file = SourceFile::new("main.hcl", "\u{feff}ab\ncd");
        assert_eq!(file.text, "ab\ncd");
        assert_eq!(file.line_col(1), (1, 2));
        assert_eq!(file.line_col(3), (2, 1));
    }
}
