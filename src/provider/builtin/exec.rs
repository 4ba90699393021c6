//! `exec`: run a local command. Plan shows the command; apply records the exit code and output;
//! a non-zero exit fails the step. Ansible-style guards (`creates`, `unless`) make it a no-op
//! when its effect is already there, and let resume tell whether an interrupted run finished.

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::process::{self, Ended, KILL_GRACE};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_bool, arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, InDoubt, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

/// The `exec` step type.
pub struct Exec;

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "command",
        ty: ArgType::StringOrList,
        required: true,
        doc: "a shell command (run with `sh -c`) or an argv list",
    },
    ArgSpec {
        name: "environment",
        ty: ArgType::MapOfString,
        required: false,
        doc: "extra environment variables",
    },
    ArgSpec {
        name: "working_dir",
        ty: ArgType::String,
        required: false,
        doc: "directory to run in (default: the configuration directory)",
    },
    ArgSpec {
        name: "creates",
        ty: ArgType::String,
        required: false,
        doc: "a path; when it exists the step is already done (Ansible `creates`)",
    },
    ArgSpec {
        name: "unless",
        ty: ArgType::String,
        required: false,
        doc: "a shell command; when it exits 0 the step is already done",
    },
    ArgSpec {
        name: "idempotent",
        ty: ArgType::Bool,
        required: false,
        doc: "the command is safe to repeat (resume re-runs it when in doubt)",
    },
    ArgSpec {
        name: "target",
        ty: ArgType::String,
        required: false,
        doc: "address of the object the command changes, for ordering checks",
    },
];

fn command_text(inputs: &Inputs) -> String {
    match inputs.get("command") {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn has_guard(inputs: &Inputs) -> bool {
    inputs.contains_key("creates") || inputs.contains_key("unless")
}

fn build_command(inputs: &Inputs, argv: Vec<String>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(dir) = arg_str(inputs, "working_dir") {
        cmd.current_dir(dir);
    }
    if let Some(Json::Object(env)) = inputs.get("environment") {
        for (k, v) in env {
            cmd.env(k, v.as_str().unwrap_or_default());
        }
    }
    cmd
}

/// Checks `working_dir` before anything runs in it, so that a bad directory is named as such
/// rather than blamed on the command.
fn check_working_dir(inputs: &Inputs) -> Result<(), ProviderError> {
    let Some(dir) = arg_str(inputs, "working_dir") else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ProviderError::new(format!(
            "working directory `{dir}` is not a directory"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ProviderError::new(format!(
            "working directory `{dir}` does not exist"
        ))),
        Err(e) => Err(ProviderError::new(format!(
            "working directory `{dir}` cannot be used: {e}"
        ))),
    }
}

fn argv_of(inputs: &Inputs) -> Result<Vec<String>, ProviderError> {
    match inputs.get("command") {
        Some(Json::String(s)) => Ok(vec!["sh".into(), "-c".into(), s.clone()]),
        Some(Json::Array(items)) if !items.is_empty() => Ok(items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()),
        _ => Err(ProviderError::new(
            "`command` must be a string or a non-empty list",
        )),
    }
}

/// Checks the guards: true when the effect is already there. An `unless` guard runs like the
/// command (own process group, same directory and environment) for at most the step's read
/// timeout, and is stopped when `ctx.cancel` fires.
async fn guard_satisfied(
    ctx: &StepContext,
    inputs: &Inputs,
) -> Result<Option<bool>, ProviderError> {
    if let Some(path) = arg_str(inputs, "creates") {
        let mut p = PathBuf::from(path);
        if p.is_relative() {
            if let Some(dir) = arg_str(inputs, "working_dir") {
                p = PathBuf::from(dir).join(p);
            }
        }
        if p.exists() {
            return Ok(Some(true));
        }
        if !inputs.contains_key("unless") {
            return Ok(Some(false));
        }
    }
    if let Some(unless) = arg_str(inputs, "unless") {
        check_working_dir(inputs)?;
        let cmd = build_command(inputs, vec!["sh".into(), "-c".into(), unless.to_string()]);
        let done = process::run(cmd, false, ctx.read_timeout, &ctx.cancel)
            .await
            .map_err(|e| {
                ProviderError::new(format!("cannot run `unless` guard `{unless}`: {e}"))
            })?;
        return match done.ended {
            Ended::Exited(st) if st.success() => Ok(Some(true)),
            Ended::Exited(st) if st.code().is_some() => Ok(Some(false)),
            Ended::Exited(st) => Err(ProviderError::new(format!(
                "`unless` guard `{unless}` {}",
                process::describe(st)
            ))),
            Ended::TimedOut => Err(ProviderError::new(format!(
                "`unless` guard `{unless}` timed out after {}; it was stopped (set the step's `timeout` to allow longer)",
                humantime::format_duration(ctx.read_timeout)
            ))),
            Ended::Cancelled => Err(ProviderError::new(format!(
                "`unless` guard `{unless}` was stopped"
            ))),
        };
    }
    Ok(None)
}

#[async_trait]
impl StepType for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }
    fn provider(&self) -> Option<&'static str> {
        None
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        match arg_str(inputs, "target") {
            Some(t) => t.to_string(),
            None => format!("local/{}", env.address),
        }
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        if crate::config::eval::map_is_unknown(inputs) {
            return Ok(None);
        }
        Ok(guard_satisfied(ctx, inputs)
            .await?
            .map(|done| json!({ "guard_satisfied": done })))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let command = command_text(inputs);
        let fields = vec![FieldChange {
            path: "command".into(),
            before: None,
            after: Some(Json::String(command)),
        }];
        if let Current::Known(state) = current {
            if state.get("guard_satisfied") == Some(&Json::Bool(true)) {
                let why = if inputs.contains_key("creates") {
                    format!(
                        "skipped: `{}` exists",
                        arg_str(inputs, "creates").unwrap_or_default()
                    )
                } else {
                    "skipped: the `unless` guard succeeds".to_string()
                };
                return Ok(Change {
                    action: Action::NoOp,
                    fields: Vec::new(),
                    summary: vec![why],
                });
            }
        }
        Ok(Change {
            action: Action::Run,
            fields,
            summary: Vec::new(),
        })
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        has_guard(inputs).then(|| json!({ "guard_satisfied": true }))
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        json!({ "exit_code": UNKNOWN, "stdout": UNKNOWN, "stderr": UNKNOWN })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let argv = argv_of(inputs)?;
        check_working_dir(inputs)?;
        let cmd = build_command(inputs, argv);
        // Apply stops the command through `ctx.cancel` when the step's timeout passes; the
        // deadline here is a backstop a little later.
        let done = process::run(
            cmd,
            true,
            ctx.timeout.saturating_add(KILL_GRACE),
            &ctx.cancel,
        )
        .await
        .map_err(|e| ProviderError::new(format!("cannot start `{}`: {e}", command_text(inputs))))?;
        let stdout = done.stdout.text();
        let stderr = done.stderr.text();
        let status = match done.ended {
            Ended::Exited(st) => st,
            Ended::TimedOut => {
                return Err(ProviderError::new(format!(
                    "command `{}` timed out after {}; its process group was terminated",
                    command_text(inputs),
                    humantime::format_duration(ctx.timeout)
                )))
            }
            Ended::Cancelled => {
                return Err(ProviderError::new(format!(
                    "command `{}` was stopped; its process group was terminated",
                    command_text(inputs)
                )))
            }
        };
        if !status.success() {
            let tail: String = stderr
                .trim_end()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ProviderError::new(format!(
                "command `{}` {}{}",
                command_text(inputs),
                process::describe(status),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        }
        let code = status.code().unwrap_or_default();
        Ok(json!({ "exit_code": code, "stdout": stdout, "stderr": stderr }))
    }
    async fn in_doubt(&self, ctx: &StepContext, inputs: &Inputs) -> Result<InDoubt, ProviderError> {
        match guard_satisfied(ctx, inputs).await? {
            Some(true) => Ok(InDoubt::Done),
            Some(false) => Ok(InDoubt::NotDone),
            None if self.idempotent(inputs) => Ok(InDoubt::Repeat),
            None => Ok(InDoubt::CannotTell),
        }
    }
    fn idempotent(&self, inputs: &Inputs) -> bool {
        arg_bool(inputs, "idempotent").unwrap_or(false)
    }
}
