//! `vault_policy`: write an ACL policy (`vault policy write NAME FILE`, `PUT
//! /v1/sys/policy/NAME`) or delete it (`ensure = "absent"`, `vault policy delete NAME`). Plan
//! shows a line diff of the policy text against the live one and is a no-op when they are
//! identical.

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use super::{api_error, authed, is_not_found, target_prefix};
use crate::config::eval::UNKNOWN;
use crate::provider::{
    arg_str, wait_until, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs,
    ProviderError, StepContext, StepType, TargetEnv,
};

const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "name",
        ty: ArgType::String,
        required: true,
        doc: "policy name",
    },
    ArgSpec {
        name: "policy",
        ty: ArgType::String,
        required: false,
        doc: "the policy text (HCL or JSON; required unless `ensure = \"absent\"`)",
    },
    ArgSpec {
        name: "ensure",
        ty: ArgType::String,
        required: false,
        doc: "`present` (default) writes the policy; `absent` deletes it",
    },
];

/// `vault_policy`.
pub struct Policy;

/// Whether the step deletes the policy; an error for an `ensure` that is neither value.
fn absent(inputs: &Inputs) -> Result<bool, String> {
    match arg_str(inputs, "ensure").unwrap_or("present") {
        "present" => Ok(false),
        "absent" => Ok(true),
        e if e.contains(UNKNOWN) => Ok(false),
        other => Err(format!(
            "`ensure` must be \"present\" or \"absent\", not {other:?}"
        )),
    }
}

/// The live policy text, None when there is no such policy.
async fn read_policy(ctx: &StepContext, name: &str) -> Result<Option<String>, ProviderError> {
    let clients = authed(ctx)?;
    match vaultrs::sys::policy::read(&clients.client, name).await {
        Ok(p) => Ok(Some(p.rules)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_error(&format!("read policy `{name}`"), &e)),
    }
}

#[async_trait]
impl StepType for Policy {
    fn name(&self) -> &'static str {
        "vault_policy"
    }
    fn provider(&self) -> Option<&'static str> {
        Some("vault")
    }
    fn args(&self) -> &'static [ArgSpec] {
        ARGS
    }
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!(
            "{}/sys/policy/{}",
            target_prefix(&env.provider_args),
            arg_str(inputs, "name").unwrap_or(UNKNOWN)
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
        let name = arg_str(inputs, "name").unwrap_or_default();
        Ok(read_policy(ctx, name)
            .await?
            .map(|text| json!({ "policy": text })))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let name = arg_str(inputs, "name").unwrap_or_default();
        let live = match current {
            Current::Known(s) => Some(s.get("policy").cloned().unwrap_or(Json::Null)),
            Current::Absent => None,
            Current::NotRead => Some(Json::from(UNKNOWN)),
        };
        if absent(inputs)? {
            return Ok(match live {
                None => Change::noop(Vec::new()),
                Some(text) => Change {
                    action: Action::Delete,
                    fields: vec![FieldChange {
                        path: "policy".into(),
                        before: Some(text),
                        after: None,
                    }],
                    summary: vec![format!("deletes policy `{name}`")],
                },
            });
        }
        let Some(want) = inputs.get("policy").cloned() else {
            return Err(format!(
                "policy `{name}`: `policy` is required unless `ensure = \"absent\"`"
            ));
        };
        let field = FieldChange {
            path: "policy".into(),
            before: live.clone(),
            after: Some(want.clone()),
        };
        Ok(match live {
            Some(text) if text == want => Change::noop(vec![field]),
            Some(_) => Change {
                action: Action::Update,
                fields: vec![field],
                summary: vec![format!("writes policy `{name}`")],
            },
            None => Change {
                action: Action::Create,
                fields: vec![field],
                summary: vec![format!("creates policy `{name}`")],
            },
        })
    }
    fn predict(&self, inputs: &Inputs, _current: Current<'_>) -> Option<Json> {
        match absent(inputs) {
            Ok(false) => Some(json!({ "policy": inputs.get("policy") })),
            _ => None,
        }
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ "name": inputs.get("name") })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let clients = authed(ctx)?;
        let name = arg_str(inputs, "name").unwrap_or_default();
        let delete = absent(inputs).map_err(ProviderError::new)?;
        let want = if delete {
            vaultrs::sys::policy::delete(&clients.client, name)
                .await
                .map_err(|e| api_error(&format!("delete policy `{name}`"), &e))?;
            None
        } else {
            let text = arg_str(inputs, "policy").unwrap_or_default();
            vaultrs::sys::policy::set(&clients.client, name, text)
                .await
                .map_err(|e| api_error(&format!("write policy `{name}`"), &e))?;
            Some(text.to_string())
        };
        // Verify: read it back until it is what was written (or gone).
        let what = format!("policy `{name}` to read back as written");
        wait_until(&what, ctx.timeout, || async {
            let live = read_policy(ctx, name).await?;
            Ok((live == want).then_some(()))
        })
        .await?;
        Ok(json!({ "name": name }))
    }
    fn idempotent(&self, _inputs: &Inputs) -> bool {
        true
    }
}
