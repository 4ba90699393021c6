//! Command line: clap types (raw arguments) and their resolution into settings, one file per
//! command. Only this module knows clap and the process environment.
//!
//! Terraform's single-dash spellings (`-var`, `-auto-approve`, `-chdir=DIR`, ...) are rewritten
//! to their GNU forms before parsing, so that muscle memory works.

mod apply;
mod common;
mod plan;
mod unlock;
mod validate;

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
    Validate(VarArgs),
    /// Read the live state and show what apply would change.
    Plan(PlanArgs),
    /// Plan, ask for approval, then apply the steps with a durable journal.
    Apply(ApplyArgs),
    /// Remove the state lock left by another run, given its ID.
    ForceUnlock(UnlockArgs),
}

/// Variable flags shared by every command that evaluates the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: `--var NAME=VALUE` (repeatable; later wins).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variables from an HCL file of `name = value` lines (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
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
    /// With `--resume`: treat interrupted steps that cannot tell whether they took effect.
    #[arg(long, value_enum, value_name = "rerun|done", requires = "resume")]
    pub in_doubt: Option<InDoubtArg>,
    /// State directory (journals and lock).
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

/// `opsctl force-unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The lock ID, as printed by the command that found the state locked.
    pub id: String,
    /// State directory.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
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
    "help",
    "version",
];

/// Rewrites Terraform's single-dash flags (`-var`, `-chdir=DIR`) to GNU form.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_dashdash = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || after_dashdash {
            out.push(a);
            continue;
        }
        if a == "--" {
            after_dashdash = true;
            out.push(a);
            continue;
        }
        if let Some(rest) = a.strip_prefix('-').filter(|r| !r.starts_with('-')) {
            let name = rest.split('=').next().unwrap_or(rest);
            if SINGLE_DASH.contains(&name) {
                out.push(format!("--{rest}"));
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Runs the command line; returns the exit code.
pub async fn run(args: Vec<String>) -> i32 {
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
    match cli.command {
        Command::Validate(a) => validate::run(a).await,
        Command::Plan(a) => plan::run(a).await,
        Command::Apply(a) => apply::run(a).await,
        Command::ForceUnlock(a) => unlock::run(a),
    }
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
            .map(String::from),
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
