//! `approval`: a gate that pauses apply until a person approves (on a terminal) or the run was
//! started with `--approve NAME`. The decision is made by the approver the CLI installs
//! ([`set_approver`]), so that this step type never knows the terminal or the flags.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::super::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, InDoubt, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};

/// What an approval gate asks for.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// The gate's name: the block's name label (`step "approval" "prod"` -> `prod`).
    pub name: String,
    /// The step address, e.g. `step.approval.prod`.
    pub address: String,
    /// The `message` argument.
    pub message: String,
}

/// Decides an approval: Ok with the record to journal as the step's outputs (`approved_by`,
/// `approved_at`, `plan_digest`, `via`), or Err with why it was refused. Called on a blocking
/// thread (it may read a terminal).
pub type Approver = dyn Fn(&ApprovalRequest) -> Result<Json, String> + Send + Sync;

static APPROVER: RwLock<Option<Arc<Approver>>> = RwLock::new(None);

/// Installs (or with None removes) the process's approver. Without one every approval gate
/// fails with a message naming `--approve`.
pub fn set_approver(approver: Option<Arc<Approver>>) {
    if let Ok(mut slot) = APPROVER.write() {
        *slot = approver;
    }
}

fn approver() -> Option<Arc<Approver>> {
    APPROVER.read().ok().and_then(|slot| slot.clone())
}

/// The gate's name from its address: `step.approval.prod[0]` -> `prod`.
pub fn gate_name(address: &str) -> String {
    let rest = address.strip_prefix("step.approval.").unwrap_or(address);
    rest.split('[').next().unwrap_or(rest).to_string()
}

/// `approval`: arguments `message` (required, shown when asking).
pub struct Approval;

const APPROVAL_ARGS: &[ArgSpec] = &[ArgSpec {
    name: "message",
    ty: ArgType::String,
    required: true,
    doc: "what the approver is asked, e.g. `\"Proceed with the production nodegroup update?\"`",
}];

#[async_trait]
impl StepType for Approval {
    fn name(&self) -> &'static str {
        "approval"
    }
    fn provider(&self) -> Option<&'static str> {
        None
    }
    fn args(&self) -> &'static [ArgSpec] {
        APPROVAL_ARGS
    }
    fn target(&self, env: &TargetEnv, _inputs: &Inputs) -> String {
        format!("approval/{}", env.address)
    }
    fn plan(&self, inputs: &Inputs, _current: Current<'_>) -> Result<Change, String> {
        Ok(Change {
            action: Action::Run,
            fields: Vec::new(),
            summary: vec![format!(
                "approval required: {}",
                arg_str(inputs, "message").unwrap_or("")
            )],
        })
    }
    fn planned_outputs(&self, _inputs: &Inputs) -> Json {
        let unknown = Json::String(crate::config::eval::UNKNOWN.to_string());
        json!({ "approved_by": unknown.clone(), "approved_at": unknown.clone(), "plan_digest": unknown })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let request = ApprovalRequest {
            name: gate_name(&ctx.address),
            address: ctx.address.clone(),
            message: arg_str(inputs, "message").unwrap_or("").to_string(),
        };
        let Some(approver) = approver() else {
            return Err(ProviderError::new(format!(
                "approval `{}` is required and nothing can grant it; run with `--approve {}`",
                request.name, request.name
            )));
        };
        let ask = tokio::task::spawn_blocking(move || approver(&request));
        tokio::select! {
            r = ask => match r {
                Ok(Ok(record)) => Ok(record),
                Ok(Err(msg)) => Err(ProviderError::new(msg)),
                Err(e) => Err(ProviderError::new(format!("the approval prompt ended abnormally: {e}"))),
            },
            _ = ctx.cancel.cancelled() => Err(ProviderError::new("stopped while waiting for approval".to_string())),
        }
    }
    async fn in_doubt(
        &self,
        _ctx: &StepContext,
        _inputs: &Inputs,
    ) -> Result<InDoubt, ProviderError> {
        // An approval interrupted before its record was journaled was not given: ask again.
        Ok(InDoubt::NotDone)
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}
