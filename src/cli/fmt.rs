//! `opsctl fmt`: rewrites configuration files in the canonical layout, as `terraform fmt` does
//! (same flags: `--check`, `--diff`, `--recursive`, `-` for standard input; exit 3 from
//! `--check` when a file would change). The layout itself is [`crate::config::format`].

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::config::format;

use super::common::{print_diags, print_error};
use super::{exit, FmtArgs};

/// Exit code of `fmt --check` when a file is not in the canonical layout (Terraform's).
pub const NOT_FORMATTED: i32 = 3;

/// What happened to the files: some would change, some could not be read or parsed.
#[derive(Default)]
struct Outcome {
    changed: bool,
    failed: bool,
}

/// Runs `fmt`; returns the exit code: 0, 3 with `--check` when a file is not formatted, 1 on
/// an unreadable or unparsable file (the others are still formatted).
pub fn run(args: FmtArgs) -> i32 {
    let mut outcome = Outcome::default();
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    for path in &paths {
        if path.as_os_str() == "-" {
            stdin(&args, &mut outcome);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut files = Vec::new();
                if let Err(msg) = collect(path, args.recursive, &mut files) {
                    print_error(&msg);
                    outcome.failed = true;
                }
                for file in files {
                    one_file(&file, &args, &mut outcome);
                }
            }
            Ok(_) => one_file(path, &args, &mut outcome),
            Err(err) => {
                print_error(&format!("cannot read `{}`: {err}", path.display()));
                outcome.failed = true;
            }
        }
    }
    if outcome.failed {
        exit::ERROR
    } else if outcome.changed && args.check {
        NOT_FORMATTED
    } else {
        exit::OK
    }
}

/// The `*.hcl` files of `dir` (sorted), and with `recursive` those of its sub-directories.
/// Skips what configuration loading skips (hidden and editor files, see
/// [`crate::config::load_dir`]) and hidden directories (`.git`, `.terraform`); symbolic links
/// to directories are not followed.
///
/// # Errors
///
/// A message naming a directory that cannot be read.
fn collect(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
        let name = entry.file_name();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if recursive && !name.as_encoded_bytes().starts_with(b".") {
                dirs.push(entry.path());
            }
        } else if crate::config::is_config_file_name(&name) {
            files.push(entry.path());
        }
    }
    files.sort();
    dirs.sort();
    out.extend(files);
    for sub in dirs {
        collect(&sub, recursive, out)?;
    }
    Ok(())
}

/// Formats one file: writes it back (unless `--check`), lists it and prints its diff when it
/// changes.
fn one_file(path: &Path, args: &FmtArgs, outcome: &mut Outcome) {
    let display = path
        .strip_prefix("./")
        .unwrap_or(path)
        .display()
        .to_string();
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            print_error(&format!("`{display}` is not valid UTF-8 text"));
            outcome.failed = true;
            return;
        }
        Err(err) => {
            print_error(&format!("cannot read `{display}`: {err}"));
            outcome.failed = true;
            return;
        }
    };
    let Some(formatted) = format_text(&display, &text, outcome) else {
        return;
    };
    if formatted == text {
        return;
    }
    outcome.changed = true;
    crate::outln!("{display}");
    if args.diff {
        crate::out!("{}", unified_diff(&display, &text, &formatted));
    }
    if !args.check {
        if let Err(err) = std::fs::write(path, &formatted) {
            print_error(&format!("cannot write `{display}`: {err}"));
            outcome.failed = true;
        }
    }
}

/// Formats standard input to standard output (with `--check`, prints nothing but the diff
/// asked for by `--diff`).
fn stdin(args: &FmtArgs, outcome: &mut Outcome) {
    let mut text = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut text) {
        print_error(&format!("cannot read standard input: {err}"));
        outcome.failed = true;
        return;
    }
    let Some(formatted) = format_text("<stdin>", &text, outcome) else {
        return;
    };
    if formatted != text {
        outcome.changed = true;
    }
    if args.diff {
        if formatted != text {
            crate::out!("{}", unified_diff("<stdin>", &text, &formatted));
        }
    } else if !args.check {
        crate::out!("{formatted}");
    }
}

/// Formats `text`; on a syntax error prints its diagnostic and returns `None`.
fn format_text(display: &str, text: &str, outcome: &mut Outcome) -> Option<String> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format::format(body) {
        Ok(formatted) => Some(formatted),
        Err(err) => {
            print_diags(&format::syntax_error(display, text, &err));
            outcome.failed = true;
            None
        }
    }
}

/// A unified diff (`diff -u` style, 3 lines of context) from `old` to `new`, labelled
/// `old/FILE` and `new/FILE` as `terraform fmt -diff` labels them.
fn unified_diff(display: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("old/{display}"), &format!("new/{display}"))
        .missing_newline_hint(true)
        .to_string()
}
