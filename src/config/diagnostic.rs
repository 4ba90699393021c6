//! Diagnostics: an error or warning about the configuration, pointing at `file:line:col`.
//!
//! A diagnostic carries a [`Span`]; [`Diagnostics::attach_sources`] resolves it to a location
//! and the offending source line so that the rendered text needs nothing else.

use std::fmt;

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
    /// 1-based line number.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The text of the line.
    pub source_line: String,
    /// Width of the underline, in characters (at least 1).
    pub width: usize,
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

    /// Resolves the span against `sources`.
    pub fn locate(&mut self, sources: &Sources) {
        if self.located.is_some() {
            return;
        }
        let Some(span) = &self.span else { return };
        let Some(file) = sources.files.get(span.file) else {
            return;
        };
        let (line, col) = file.line_col(span.range.start);
        let source_line = file.line_text(line).to_string();
        let (end_line, end_col) = file.line_col(span.range.end);
        let width = if end_line == line && end_col > col {
            end_col - col
        } else {
            source_line.chars().count().saturating_sub(col - 1).max(1)
        };
        self.located = Some(Box::new(Located {
            location: format!("{}:{}:{}", file.display, line, col),
            line,
            col,
            source_line,
            width: width.max(1),
        }));
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        if let Some(loc) = &self.located {
            let gutter = loc.line.to_string().len();
            writeln!(f, "{:gutter$}--> {}", "", loc.location)?;
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", loc.line, loc.source_line)?;
            // Keep tabs under tabs so that the carets line up however tabs are shown.
            let pad: String = loc
                .source_line
                .chars()
                .take(loc.col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {pad}{}", "", "^".repeat(loc.width))?;
        }
        for note in &self.notes {
            writeln!(f, "  = note: {note}")?;
        }
        Ok(())
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

    #[test]
    fn renders_location_source_line_and_carets_under_tabs() {
        let sources = Sources {
            files: vec![SourceFile::new("main.hcl", "a = 1\n\tb = bad\n")],
        };
        let mut d = Diagnostic::error("bad value").with_span(Span {
            file: 0,
            range: 11..14,
        });
        d.locate(&sources);
        assert_eq!(
            d.to_string(),
            "error: bad value\n --> main.hcl:2:6\n  |\n2 | \tb = bad\n  | \t    ^^^\n"
        );
    }
}
