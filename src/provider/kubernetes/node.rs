//! `kubernetes_cordon` / `kubernetes_uncordon`: set or clear a Node's `spec.unschedulable`
//! (what `kubectl cordon` / `kubectl uncordon` do), through a merge patch of the Node.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value as Json};

// The node's state is shared with `kubernetes_drain` (same target). Cordon and uncordon read
// the node alone; a procedure that also drains it reads it with the drain's deeper read (its
// pods and their PodDisruptionBudgets, `read_depth`), which cordon's predict keeps.
use super::drain::read_node_only;
use super::{context_and_namespace, write_approved, KubeClients};
use crate::config::eval::UNKNOWN;
use crate::provider::wait_until;
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[ArgSpec {
    name: "node",
    ty: ArgType::String,
    required: true,
    doc: "Node name",
}];

/// `kubernetes_cordon` (`unschedulable: true`) or `kubernetes_uncordon` (`false`).
pub struct Cordon {
    /// The `spec.unschedulable` the step sets.
    pub unschedulable: bool,
}

const FIELD: &str = "spec.unschedulable";

#[async_trait]
impl StepType for Cordon {
    fn name(&self) -> &'static str {
        if self.unschedulable {
            "kubernetes_cordon"
        } else {
            "kubernetes_uncordon"
        }
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        let (context, _) = context_and_namespace(&env.provider_args);
        format!(
            "k8s/{context}/v1/Node/{}",
            arg_str(inputs, "node").unwrap_or(UNKNOWN)
        )
    }
    fn reads(&self) -> bool {
        true
    }
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        read_node_only(ctx, arg_str(inputs, "node").unwrap_or_default()).await
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let node = arg_str(inputs, "node").unwrap_or_default();
        let want = Json::Bool(self.unschedulable);
        match current {
            Current::Known(state) => {
                let now = state
                    .get("unschedulable")
                    .cloned()
                    .unwrap_or(Json::Bool(false));
                let field = FieldChange {
                    path: FIELD.into(),
                    before: Some(now.clone()),
                    after: Some(want.clone()),
                };
                if now == want {
                    return Ok(Change::noop(vec![field]));
                }
                Ok(Change {
                    action: Action::Update,
                    fields: vec![field],
                    summary: vec![if self.unschedulable {
                        format!("marks node `{node}` unschedulable; its pods keep running")
                    } else {
                        format!("marks node `{node}` schedulable again")
                    }],
                })
            }
            Current::Absent => Err(format!("node `{node}` not found")),
            Current::NotRead => Ok(Change {
                action: Action::Update,
                fields: vec![FieldChange {
                    path: FIELD.into(),
                    before: Some(Json::from(UNKNOWN)),
                    after: Some(want),
                }],
                summary: Vec::new(),
            }),
        }
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        // The rest of the node's state (its pods) is unchanged.
        let mut next = match current {
            Current::Known(s) if s.is_object() => s.clone(),
            _ => json!({ "name": inputs.get("node") }),
        };
        next["unschedulable"] = Json::Bool(self.unschedulable);
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "node": inputs.get("node"), "unschedulable": self.unschedulable })
    }
    fn outputs_from_state(&self, inputs: &Inputs, state: &Json) -> Option<Json> {
        Some(json!({ "node": inputs.get("node"), "unschedulable": state.get("unschedulable") }))
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let name = arg_str(inputs, "node").unwrap_or_default().to_string();
        let api: Api<Node> = Api::all(ctx.client::<KubeClients>()?.client.clone());
        // Conditional on the resource version the approved plan read (kubectl `cordon` patches
        // unconditionally; a change since approval is reported instead of overwritten).
        write_approved(
            self,
            ctx,
            inputs,
            "patch",
            &format!("node `{name}` ({})", ctx.target),
            |version| {
                let mut patch = json!({ "spec": { "unschedulable": self.unschedulable } });
                if let Some(v) = version {
                    patch["metadata"] = json!({ "resourceVersion": v });
                }
                let (api, name) = (&api, &name);
                async move {
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
        let want = self.unschedulable;
        wait_until(
            &format!("node `{name}` to have spec.unschedulable = {want}"),
            ctx.timeout,
            || async {
                match read_node_only(ctx, &name).await? {
                    Some(s) if s.get("unschedulable") == Some(&Json::Bool(want)) => Ok(Some(())),
                    Some(_) => Ok(None),
                    None => Err(ProviderError::new(format!(
                        "{}: node `{name}` disappeared",
                        ctx.target
                    ))),
                }
            },
        )
        .await?;
        Ok(json!({ "node": name, "unschedulable": want }))
    }
}
