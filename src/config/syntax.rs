//! Explains a syntax error: finds the lexical problem behind it and where it is.
//!
//! `hcl-edit` reports where its parser gave up, which is often not where the problem is (an
//! unterminated string is reported as "invalid block body" at the start of the attribute, a
//! number too large for a float as "expected newline or eof"). When a file fails to parse,
//! [`explain`] scans it with a small HCL lexer (strings, interpolations, heredocs, comments,
//! numbers) and reports the first problem that is a syntax error wherever it appears: an
//! unterminated string, heredoc or comment, a number out of range, or a character HCL does
//! not allow outside strings (typographic quotes, a no-break space, an emoji).

use std::ops::Range;

/// A lexical problem: the message (without the `syntax error: ` prefix) and its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub message: String,
    /// Where: the bad character, or the start of the unterminated construct.
    pub range: Range<usize>,
    /// A hint, if any.
    pub note: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>, range: Range<usize>) -> Problem {
        Problem {
            message: message.into(),
            range,
            note: None,
        }
    }

    fn with_note(mut self, note: impl Into<String>) -> Problem {
        self.note = Some(note.into());
        self
    }
}

/// What the lexer is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Expressions and structure; the `usize` is the depth of `{` opened in this frame.
    Code(usize),
    /// A quoted string that started at the offset.
    Str(usize),
}

/// Returns the first lexical problem of `text`, if any.
pub fn explain(text: &str) -> Option<Problem> {
    let bytes = text.as_bytes();
    let mut stack: Vec<Mode> = vec![Mode::Code(0)];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let mode = *stack.last().unwrap_or(&Mode::Code(0));
        match mode {
            Mode::Str(start) => match b {
                b'\\' => {
                    i += 1;
                    i += char_len(text, i);
                }
                b'"' => {
                    stack.pop();
                    i += 1;
                }
                b'\n' => return Some(unterminated_string(start)),
                b'$' | b'%' if bytes.get(i + 1) == Some(&b'{') => {
                    stack.push(Mode::Code(0));
                    i += 2;
                }
                b'$' | b'%' if bytes.get(i + 1) == Some(&b) && bytes.get(i + 2) == Some(&b'{') => {
                    // `$${` and `%%{` are escapes for a literal `${` / `%{`.
                    i += 3;
                }
                _ => i += char_len(text, i),
            },
            Mode::Code(depth) => match b {
                b'#' => i = line_end(bytes, i),
                b'/' if bytes.get(i + 1) == Some(&b'/') => i = line_end(bytes, i),
                b'/' if bytes.get(i + 1) == Some(&b'*') => match text[i + 2..].find("*/") {
                    Some(end) => i += 2 + end + 2,
                    None => {
                        return Some(Problem::new(
                            "unterminated comment: `/*` is never closed by `*/`",
                            i..i + 2,
                        ))
                    }
                },
                b'"' => {
                    stack.push(Mode::Str(i));
                    i += 1;
                }
                b'\'' => {
                    return Some(
                        Problem::new("unexpected character `'`", i..i + 1)
                            .with_note("HCL strings are written in double quotes: \"...\""),
                    )
                }
                b'<' if bytes.get(i + 1) == Some(&b'<') => match heredoc(text, i) {
                    Ok(next) => i = next,
                    Err(problem) => return Some(problem),
                },
                b'{' => {
                    set_top(&mut stack, Mode::Code(depth + 1));
                    i += 1;
                }
                b'}' => {
                    if depth == 0 && stack.len() > 1 {
                        // The end of an interpolation or directive: back into its string.
                        stack.pop();
                    } else {
                        set_top(&mut stack, Mode::Code(depth.saturating_sub(1)));
                    }
                    i += 1;
                }
                b'0'..=b'9' => match number(text, i) {
                    Ok(next) => i = next,
                    Err(problem) => return Some(problem),
                },
                _ if b.is_ascii_alphabetic() || b == b'_' => {
                    // An identifier (which may contain digits and dashes).
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || bytes[i] == b'_'
                            || bytes[i] == b'-')
                    {
                        i += 1;
                    }
                }
                _ if b.is_ascii() => i += 1,
                _ => {
                    let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                    if c.is_alphanumeric() {
                        // Identifiers may use Unicode letters.
                        i += c.len_utf8();
                        continue;
                    }
                    return Some(unexpected_char(c, i));
                }
            },
        }
    }
    match stack.last() {
        Some(Mode::Str(start)) => Some(unterminated_string(*start)),
        _ => None,
    }
}

fn set_top(stack: &mut [Mode], mode: Mode) {
    if let Some(top) = stack.last_mut() {
        *top = mode;
    }
}

/// Length of the character at byte `i` (1 past the end, so that loops terminate).
fn char_len(text: &str, i: usize) -> usize {
    text.get(i..)
        .and_then(|t| t.chars().next())
        .map_or(1, char::len_utf8)
}

fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| i + p)
}

fn unterminated_string(start: usize) -> Problem {
    Problem::new(
        "unterminated string: no closing `\"` before the end of the line",
        start..start + 1,
    )
    .with_note("a quoted string ends on the line it starts on; use a heredoc (<<EOT ... EOT) for text over several lines")
}

fn unexpected_char(c: char, at: usize) -> Problem {
    let code = format!("U+{:04X}", c as u32);
    let range = at..at + c.len_utf8();
    match c {
        '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{ab}' | '\u{bb}' => Problem::new(
            format!("unexpected character `{c}` ({code}, a typographic quote)"),
            range,
        )
        .with_note("HCL strings are written in straight double quotes: \"...\""),
        '\u{2018}' | '\u{2019}' => Problem::new(
            format!("unexpected character `{c}` ({code}, a typographic quote)"),
            range,
        )
        .with_note("HCL strings are written in straight double quotes: \"...\""),
        c if c.is_whitespace() || c == '\u{200b}' || c == '\u{feff}' => Problem::new(
            format!("unexpected invisible character {code} (a non-ASCII space)"),
            range,
        )
        .with_note("replace it with an ordinary space"),
        c => Problem::new(format!("unexpected character `{c}` ({code})"), range),
    }
}

/// Skips a number literal starting at `start`; an out-of-range number is a problem.
fn number(text: &str, start: usize) -> Result<usize, Problem> {
    let bytes = text.as_bytes();
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i = digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(j);
        }
    }
    let literal = &text[start..i];
    match literal.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(i),
        _ => Err(
            Problem::new(format!("number `{literal}` is out of range"), start..i).with_note(
                "numbers must be finite 64-bit floating point values (at most about 1.8e308)",
            ),
        ),
    }
}

/// Skips a heredoc starting at `start` (`<<EOT` or `<<-EOT`, a newline, lines, then a line
/// holding only the marker). Returns the offset after the closing marker.
fn heredoc(text: &str, start: usize) -> Result<usize, Problem> {
    let bytes = text.as_bytes();
    let mut i = start + 2;
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
    {
        i += 1;
    }
    let name = &text[name_start..i];
    if name.is_empty() {
        // Not a heredoc: leave the error to the parser.
        return Ok(start + 2);
    }
    let body_start = match text[i..].find('\n') {
        Some(p) => i + p + 1,
        None => text.len(),
    };
    let mut line_start = body_start;
    while line_start < text.len() {
        let end = line_end(bytes, line_start);
        if text[line_start..end].trim() == name {
            return Ok(end);
        }
        line_start = end + 1;
    }
    Err(Problem::new(
        format!("unterminated heredoc: no line `{name}` closes it"),
        start..i,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> (String, Range<usize>) {
        let p = explain(text).unwrap_or_else(|| panic!("no problem found in {text:?}"));
        (p.message, p.range)
    }

    #[test]
    fn finds_unterminated_strings_at_their_start() {
        let text = "a {\n  b = \"abc\n}\n";
        let (msg, range) = problem(text);
        assert!(msg.starts_with("unterminated string"), "{msg}");
        assert_eq!(range.start, text.find('"').unwrap());
        let text = "a = \"x ${ \"y\" } z";
        assert_eq!(problem(text).1.start, 4);
    }

    #[test]
    fn valid_text_has_no_problem() {
        for text in [
            "a = \"x ${ {k = \"}\"}[\"k\"] } $${y} %%{z} \\\" \"\nb = 1.5e3\n",
            "c = <<-EOT\n  \"unbalanced\n  EOT\nd = 1 # it's a comment\n",
            "e = [for s in [\"a\"] : \"${s}\"] // \u{201c}\n/* 'x' \u{a0} */\nrésumé = 1\n",
            "f = \"%{ if true }yes%{ endif }\"\n",
        ] {
            assert_eq!(explain(text), None, "{text}");
        }
    }

    #[test]
    fn finds_numbers_out_of_range_and_stray_characters() {
        assert_eq!(problem("a = 1e999999\n").1, 4..12);
        assert!(problem("a = 1e999999\n")
            .0
            .contains("`1e999999` is out of range"));
        let (msg, range) = problem("a = \u{201c}x\u{201d}\n");
        assert!(msg.contains("U+201C"), "{msg}");
        assert_eq!(range, 4..7);
        assert!(problem("a =\u{a0}1\n").0.contains("U+00A0"));
        assert!(problem("a = \u{1f600}\n").0.contains("U+1F600"));
        assert!(problem("a = 'x'\n").0.contains("`'`"));
        assert!(problem("/* open\n").0.starts_with("unterminated comment"));
        assert!(problem("a = <<EOT\nx\n")
            .0
            .starts_with("unterminated heredoc"));
    }
}
