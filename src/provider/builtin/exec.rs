//! `exec`: run a local command. Plan shows the command; apply records the exit code and output;
//! a non-zero exit fails the step. Ansible-style guards (`creates`, `unless`) make it a no-op
//! when its effect is already there, and let resume tell whether an interrupted run finished.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::{json, Value as Json};

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
    cmd.stdin(Stdio::null());
    cmd.kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // The command dies with opsctl, so that an interrupted run leaves no orphan whose
            // effect lands after resume has decided what to do.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
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

/// Checks the guards: true when the effect is already there.
async fn guard_satisfied(inputs: &Inputs) -> Result<Option<bool>, ProviderError> {
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
        let mut cmd = build_command(inputs, vec!["sh".into(), "-c".into(), unless.to_string()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let status = cmd
            .status()
            .await
            .map_err(|e| ProviderError::new(format!("cannot run `unless` guard: {e}")))?;
        return Ok(Some(status.success()));
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
        _ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        if crate::config::eval::map_is_unknown(inputs) {
            return Ok(None);
        }
        Ok(guard_satisfied(inputs)
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
    async fn apply(&self, _ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let argv = argv_of(inputs)?;
        let mut cmd = build_command(inputs, argv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = cmd.output().await.map_err(|e| {
            ProviderError::new(format!("cannot start `{}`: {e}", command_text(inputs)))
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code().unwrap_or(-1);
        if !output.status.success() {
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
                "command `{}` exited with status {code}{}",
                command_text(inputs),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        }
        Ok(json!({ "exit_code": code, "stdout": stdout, "stderr": stderr }))
    }
    async fn in_doubt(
        &self,
        _ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<InDoubt, ProviderError> {
        match guard_satisfied(inputs).await? {
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
