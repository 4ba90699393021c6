//! Command line: clap types (raw arguments) and their resolution into settings, one file per
//! command. Only this module knows clap and the process environment.
//!
//! Terraform's single-dash spellings (`-var`, `-auto-approve`, `-chdir=DIR`, ...) are rewritten
//! to their GNU forms before parsing, so that muscle memory works.

mod apply;
mod common;
mod fmt;
mod graph;
mod guards;
mod plan;
mod runs;
mod saved;
mod unlock;
mod validate;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Process exit codes.
pub mod exit {
    /// Success; for `plan --detailed-exitcode`, nothing to do.
    pub const OK: i32 = 0;
    /// Any error.
    pub const ERROR: i32 = 1;
    /// `plan --detailed-exitcode`: changes pending.
    pub const CHANGES: i32 = 2;
}

/// opsctl: plan and apply operational maintenance procedures written in HCL.
#[derive(Debug, Parser)]
#[command(name = "opsctl", version, about, long_about = None, disable_help_subcommand = true)]
pub struct Cli {
    /// Switch to DIR before doing anything (the configuration is every `*.hcl` file there).
    #[arg(long, global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration: syntax, references, types, graph; talks to no API.
    Validate(ValidateArgs),
    /// Read the live state and show what apply would change.
    Plan(PlanArgs),
    /// Plan, ask for approval, then apply the steps with a durable journal.
    Apply(ApplyArgs),
    /// Remove the state lock left by another run, given its ID.
    ForceUnlock(UnlockArgs),
    /// Rewrite configuration files in the canonical layout (as `terraform fmt`).
    Fmt(FmtArgs),
    /// Show a saved plan (`opsctl plan --out FILE`) as text, or as JSON with `--json`.
    Show(ShowArgs),
    /// The audit log of apply runs: `runs list`, `runs show ID`.
    Runs(RunsArgs),
    /// Print the dependency graph of the steps and data sources in DOT (Graphviz).
    Graph(GraphArgs),
}

/// Variable flags shared by every command that evaluates the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: `--var NAME=VALUE` (repeatable; later wins).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = Utf8Text("--var"))]
    pub vars: Vec<String>,
    /// Read variables from an HCL file of `name = value` lines (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

/// `opsctl validate`.
#[derive(Debug, Args, Clone, Default)]
pub struct ValidateArgs {
    /// Variables.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Print one JSON document (Terraform's `validate -json` shape; docs/json-format.md).
    #[arg(long)]
    pub json: bool,
}

/// `opsctl graph`.
#[derive(Debug, Args, Clone, Default)]
pub struct GraphArgs {
    /// Variable values (for modules whose `count`/`for_each` use them).
    #[command(flatten)]
    pub vars: VarArgs,
}

/// How `opsctl plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PlanFormat {
    /// Text for a terminal.
    #[default]
    Human,
    /// A pull-request comment (GitHub-flavoured Markdown, under 65,536 characters).
    Markdown,
    /// One versioned JSON document (docs/json-format.md).
    Json,
}

/// A clap value parser for text arguments: like clap's own, but a value that is not UTF-8 is
/// reported with the flag and the value (lossily decoded) instead of "invalid UTF-8 was
/// detected in one or more arguments".
#[derive(Debug, Clone, Copy)]
pub struct Utf8Text(pub &'static str);

impl clap::builder::TypedValueParser for Utf8Text {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        value.to_str().map(str::to_owned).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                format!(
                    "`{} {}` is not valid UTF-8; it must be text\n",
                    self.0,
                    value.to_string_lossy()
                ),
            )
        })
    }
}

/// `opsctl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Variables.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// How many targets to read at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub parallelism: u32,
    /// State directory (journals and lock).
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
    /// Save the plan to FILE, for `opsctl apply FILE` to apply exactly.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How to print the plan: `human`, `markdown` (a pull-request comment) or `json`.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human, value_name = "FORMAT")]
    pub format: PlanFormat,
}

/// What to do with an interrupted step that cannot tell whether it took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InDoubtArg {
    /// Apply it again.
    Rerun,
    /// Mark it finished.
    Done,
}

/// `opsctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Variables.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Apply without asking for `yes`.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many steps to run at once (and targets to read).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub parallelism: u32,
    /// Continue the last unfinished run: finished steps are skipped with their recorded outputs.
    #[arg(long)]
    pub resume: bool,
    /// Give up the last run although it did not finish, and start a new one: its finished
    /// steps run again. Without it, `apply` refuses while an unfinished run exists.
    #[arg(long, conflicts_with = "resume")]
    pub discard_unfinished: bool,
    /// With `--resume`: treat interrupted steps that cannot tell whether they took effect.
    #[arg(long, value_enum, value_name = "rerun|done", requires = "resume")]
    pub in_doubt: Option<InDoubtArg>,
    /// State directory (journals and lock).
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
    /// After a failed step, let independent steps finish; the failed step's dependents are
    /// skipped (as `on_failure = "continue"` on every step).
    #[arg(long)]
    pub continue_on_error: bool,
    /// Stop the whole run after this long (`90s`, `30m`, `1h`): running steps are stopped and
    /// journaled in doubt; the run is resumable.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// A saved plan (`opsctl plan --out FILE`) to apply exactly: refused if the configuration
    /// changed or it was applied already; each step stops before acting if its target is no
    /// longer as planned ("plan is stale").
    #[arg(value_name = "FILE", conflicts_with = "discard_unfinished")]
    pub plan_file: Option<PathBuf>,
    /// With `--resume` of a run of a saved plan: plan the remaining steps again from the
    /// configuration (shown and approved as a normal apply) instead of the saved plan.
    #[arg(long, requires = "resume", conflicts_with = "plan_file")]
    pub replan: bool,
    /// With a saved plan: ask for `yes` before applying (a saved plan was approved when it
    /// was reviewed, so apply does not ask otherwise).
    #[arg(long)]
    pub confirm: bool,
    /// Approve the approval gate `step "approval" "NAME"` without asking (repeatable).
    #[arg(long = "approve", value_name = "NAME", value_parser = Utf8Text("--approve"))]
    pub approve: Vec<String>,
    /// Start although the procedure's maintenance `window` is closed (journaled).
    #[arg(long)]
    pub ignore_window: bool,
    /// Print one JSON event per line on standard output instead of the human output
    /// (docs/json-format.md); needs `--auto-approve`, or a saved plan.
    #[arg(long)]
    pub json: bool,
}

/// `opsctl show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The saved plan.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the plan as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `opsctl runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: RunsCommand,
    /// State directory (its `runs.jsonl`).
    #[arg(long, value_name = "DIR", default_value = "state", global = true)]
    pub state_dir: PathBuf,
}

/// `opsctl runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every recorded apply run, oldest first.
    List {
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: each step's result, attempts and duration. ID is `RUN.N`, a run ID (all its
    /// invocations) or a unique prefix.
    Show {
        /// The run.
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `opsctl force-unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The lock ID, as printed by the command that found the state locked.
    #[arg(value_parser = Utf8Text("force-unlock"))]
    pub id: String,
    /// Remove the lock even though its holder is still running.
    #[arg(long)]
    pub force: bool,
    /// State directory.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

/// `opsctl fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Write nothing; exit 3 when a file is not in the canonical layout (listing it).
    #[arg(long)]
    pub check: bool,
    /// Print a unified diff of the changes.
    #[arg(long)]
    pub diff: bool,
    /// Also format the `*.hcl` files of sub-directories (hidden ones skipped).
    #[arg(long)]
    pub recursive: bool,
    /// Files or directories (default: the current directory); `-` formats standard input to
    /// standard output.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

const SINGLE_DASH: &[&str] = &[
    "var",
    "var-file",
    "auto-approve",
    "parallelism",
    "chdir",
    "detailed-exitcode",
    "state-dir",
    "resume",
    "in-doubt",
    "continue-on-error",
    "timeout",
    "out",
    "replan",
    "confirm",
    "json",
    "help",
    "version",
    "check",
    "diff",
    "recursive",
    "approve",
    "ignore-window",
    "format",
];

/// Rewrites Terraform's single-dash flags (`-var`, `-chdir=DIR`) to GNU form. Arguments need
/// not be UTF-8 (`-var=x=<bytes>` is rewritten too).
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut after_dashdash = false;
    for (i, a) in args.into_iter().enumerate() {
        let a: OsString = a.into();
        if i == 0 || after_dashdash {
            out.push(a);
            continue;
        }
        let bytes = a.as_bytes();
        if bytes == b"--" {
            after_dashdash = true;
            out.push(a);
            continue;
        }
        if let Some(rest) = bytes.strip_prefix(b"-").filter(|r| !r.starts_with(b"-")) {
            let name = rest.split(|&b| b == b'=').next().unwrap_or(rest);
            if SINGLE_DASH.iter().any(|f| f.as_bytes() == name) {
                let mut long = b"--".to_vec();
                long.extend_from_slice(rest);
                out.push(OsString::from_vec(long));
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Runs the command line (`args` as the process received them, program name first); returns
/// the exit code.
pub async fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    if let Some(dir) = &cli.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            crate::errln!("error: cannot change to directory `{}`: {e}", dir.display());
            return exit::ERROR;
        }
    }
    let state_dir = match &cli.command {
        Command::Apply(a) => Some(&a.state_dir),
        Command::ForceUnlock(a) => Some(&a.state_dir),
        Command::Validate(_)
        | Command::Plan(_)
        | Command::Fmt(_)
        | Command::Show(_)
        | Command::Runs(_)
        | Command::Graph(_) => None,
    };
    if let Some(Err(msg)) = state_dir.map(|d| check_state_dir(d)) {
        common::print_error(&msg);
        return exit::ERROR;
    }
    match cli.command {
        Command::Validate(a) => validate::run(a).await,
        Command::Plan(a) => plan::run(a).await,
        Command::Apply(a) => apply::run(a).await,
        Command::ForceUnlock(a) => unlock::run(a),
        Command::Fmt(a) => fmt::run(a),
        Command::Show(a) => saved::run_show(a),
        Command::Runs(a) => runs::run(a),
        Command::Graph(a) => graph::run(a),
    }
}

/// Checks that the state directory is, or can be created as, a directory: neither it nor
/// any existing ancestor is a file.
///
/// # Errors
///
/// A message naming the path that is a file.
fn check_state_dir(dir: &std::path::Path) -> Result<(), String> {
    for path in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) if path == dir => {
                return Err(format!(
                    "the state directory `{}` is a file, not a directory; pass a directory with `--state-dir`",
                    dir.display()
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "cannot create the state directory `{}`: `{}` is a file, not a directory",
                    dir.display(),
                    path.display()
                ))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue
            }
            // Anything else (permissions) is reported by whatever uses the directory.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_spellings_become_gnu_flags() {
        let args = normalize_args(
            [
                "opsctl",
                "-chdir=ex",
                "plan",
                "-var",
                "a=1",
                "-detailed-exitcode",
                "-parallelism=3",
                "-x",
            ]
            .map(OsString::from),
        );
        assert_eq!(
            args,
            [
                "opsctl",
                "--chdir=ex",
                "plan",
                "--var",
                "a=1",
                "--detailed-exitcode",
                "--parallelism=3",
                "-x"
            ]
        );
        let cli = Cli::try_parse_from(args.into_iter().take(7)).unwrap();
        match cli.command {
            Command::Plan(p) => {
                assert!(p.detailed_exitcode);
                assert_eq!(p.parallelism, 3);
                assert_eq!(p.vars.vars, vec!["a=1"]);
            }
            other => panic!("expected plan, got {other:?}"),
        }
    }
}
