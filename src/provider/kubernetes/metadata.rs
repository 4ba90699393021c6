//! `kubernetes_annotate` / `kubernetes_label`: set or remove annotations or labels of any object
//! (kind through discovery), as `kubectl annotate` / `kubectl label` (`KEY=VALUE`, and `KEY-`
//! written as the value `"-"`), by a JSON merge patch conditional on the resourceVersion the
//! plan read ([`super::write_approved`]).

use async_trait::async_trait;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value as Json};

use super::delete::{object_target, resolve_named};
use super::{write_approved, RESOURCE_VERSION};
use crate::provider::{
    arg_str, Action, ArgSpec, ArgType, Change, Current, FieldChange, Inputs, ProviderError,
    StepContext, StepType, TargetEnv,
};

/// The value that removes a key (kubectl's `KEY-`).
const REMOVE: &str = "-";

const fn args(field: &'static str, doc: &'static str) -> [ArgSpec; 5] {
    [
        ArgSpec {
            name: "api_version",
            ty: ArgType::String,
            required: true,
            doc: "`GROUP/VERSION` of the kind (`v1`, `apps/v1`)",
        },
        ArgSpec {
            name: "kind",
            ty: ArgType::String,
            required: true,
            doc: "kind, resolved through discovery (custom resources too)",
        },
        ArgSpec {
            name: "namespace",
            ty: ArgType::String,
            required: false,
            doc: "namespace of a namespaced kind (default: the provider's)",
        },
        ArgSpec {
            name: "name",
            ty: ArgType::String,
            required: true,
            doc: "object name",
        },
        ArgSpec {
            name: field,
            ty: ArgType::MapOfString,
            required: true,
            doc,
        },
    ]
}

const ANNOTATE_ARGS: &[ArgSpec] = &args(
    "annotations",
    "annotations to set; the value `\"-\"` removes the key (kubectl `KEY-`)",
);
const LABEL_ARGS: &[ArgSpec] = &args(
    "labels",
    "labels to set; the value `\"-\"` removes the key (kubectl `KEY-`)",
);

/// `kubernetes_annotate` (`field` = `annotations`) or `kubernetes_label` (`labels`).
pub struct Metadata {
    /// `annotations` or `labels`.
    pub field: &'static str,
}

impl Metadata {
    fn wanted(&self, inputs: &Inputs) -> Vec<(String, Option<Json>)> {
        let mut w: Vec<(String, Option<Json>)> = inputs
            .get(self.field)
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let after = (v.as_str() != Some(REMOVE)).then(|| v.clone());
                        (k.clone(), after)
                    })
                    .collect()
            })
            .unwrap_or_default();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    }
}

#[async_trait]
impl StepType for Metadata {
    fn name(&self) -> &'static str {
        if self.field == "labels" {
            "kubernetes_label"
        } else {
            "kubernetes_annotate"
        }
    }
    fn provider(&self) -> Option<&'static str> {
        Some("kubernetes")
    }
    fn args(&self) -> &'static [ArgSpec] {
        if self.field == "labels" {
            LABEL_ARGS
        } else {
            ANNOTATE_ARGS
        }
    }
    /// The object's target with `#labels` / `#annotations`: these steps' state (the map they
    /// set) is theirs alone, not the state other step types read of the same object (a Node's
    /// `unschedulable`), so that each plans against what it reads.
    fn target(&self, env: &TargetEnv, inputs: &Inputs) -> String {
        format!("{}#{}", object_target(env, inputs), self.field)
    }
    fn reads(&self) -> bool {
        true
    }
    /// `{"uid", "resource_version", "labels", "annotations"}` of the live object.
    async fn read(
        &self,
        ctx: &StepContext,
        inputs: &Inputs,
    ) -> Result<Option<Json>, ProviderError> {
        let obj = resolve_named(ctx, inputs).await?;
        Ok(obj.get(&ctx.target).await?.map(|o| {
            json!({
                "uid": o.metadata.uid,
                RESOURCE_VERSION: o.metadata.resource_version,
                "labels": o.metadata.labels.unwrap_or_default(),
                "annotations": o.metadata.annotations.unwrap_or_default(),
            })
        }))
    }
    fn plan(&self, inputs: &Inputs, current: Current<'_>) -> Result<Change, String> {
        let kind = arg_str(inputs, "kind").unwrap_or_default();
        let name = arg_str(inputs, "name").unwrap_or_default();
        let now = match current {
            Current::Known(s) => s.get(self.field).cloned().unwrap_or(json!({})),
            Current::Absent => {
                return Err(format!(
                    "{kind} `{}{name}` not found",
                    arg_str(inputs, "namespace")
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default()
                ))
            }
            Current::NotRead => json!({}),
        };
        let fields: Vec<FieldChange> = self
            .wanted(inputs)
            .into_iter()
            .map(|(k, after)| FieldChange {
                path: format!("{}[{k:?}]", self.field),
                before: now.get(&k).cloned(),
                after,
            })
            .collect();
        let changed = fields.iter().filter(|f| f.before != f.after).count();
        if changed == 0 {
            return Ok(Change::noop(fields));
        }
        Ok(Change {
            action: Action::Update,
            fields,
            summary: vec![format!(
                "changes {changed} {} of {kind} `{}{name}` (merge patch)",
                if changed == 1 {
                    self.field.trim_end_matches('s')
                } else {
                    self.field
                },
                arg_str(inputs, "namespace")
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default()
            )],
        })
    }
    fn predict(&self, inputs: &Inputs, current: Current<'_>) -> Option<Json> {
        let Current::Known(state) = current else {
            return None;
        };
        let mut next = state.clone();
        let map = next
            .as_object_mut()?
            .entry(self.field)
            .or_insert_with(|| json!({}))
            .as_object_mut()?;
        for (k, after) in self.wanted(inputs) {
            match after {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Some(next)
    }
    fn planned_outputs(&self, inputs: &Inputs) -> Json {
        json!({ self.field: inputs.get(self.field) })
    }
    async fn apply(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Json, ProviderError> {
        let obj = resolve_named(ctx, inputs).await?;
        let values: serde_json::Map<String, Json> = self
            .wanted(inputs)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(Json::Null)))
            .collect();
        let field = self.field;
        write_approved(
            self,
            ctx,
            inputs,
            "patch",
            &format!("{} ({})", obj.describe(), ctx.target),
            |version| {
                let mut patch = json!({ "metadata": { field: values.clone() } });
                if let Some(v) = version {
                    patch["metadata"]["resourceVersion"] = json!(v);
                }
                let obj = &obj;
                async move {
                    obj.api
                        .patch(&obj.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
        Ok(json!({ field: inputs.get(field) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_removes_a_key_and_what_is_already_so_is_a_noop() {
        let step = Metadata { field: "labels" };
        let inputs = json!({
            "api_version": "v1", "kind": "Node", "name": "n1",
            "labels": { "a": "1", "b": "-", "c": "3" },
        })
        .as_object()
        .unwrap()
        .clone();
        let state = json!({ "labels": { "a": "1", "b": "2" } });
        let c = step.plan(&inputs, Current::Known(&state)).unwrap();
        assert_eq!(c.action, Action::Update);
        let f: Vec<_> = c
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.before.clone(), f.after.clone()))
            .collect();
        assert_eq!(
            f,
            vec![
                ("labels[\"a\"]", Some(json!("1")), Some(json!("1"))),
                ("labels[\"b\"]", Some(json!("2")), None),
                ("labels[\"c\"]", None, Some(json!("3"))),
            ]
        );
        let next = step.predict(&inputs, Current::Known(&state)).unwrap();
        assert_eq!(next["labels"], json!({ "a": "1", "c": "3" }));
        let c = step.plan(&inputs, Current::Known(&next)).unwrap();
        assert_eq!(c.action, Action::NoOp);
        assert!(step
            .plan(&inputs, Current::Absent)
            .unwrap_err()
            .contains("`n1` not found"));
    }
}
