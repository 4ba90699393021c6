//! `opsctl validate`: syntax, references, types and the graph, without talking to any API.
//! With `--json`, one document in Terraform's `validate -json` shape ([`render::json`]).

use crate::config::Diagnostics;
use crate::plan::{plan, PlanError, PlanOptions};
use crate::render;

use super::common::{load_resolved, print_diags, print_error};
use super::{exit, ValidateArgs};

/// Runs `validate`; returns the exit code (0 valid, 1 not).
pub async fn run(args: ValidateArgs) -> i32 {
    let json = args.json;
    match check(args).await {
        Ok(summary) => {
            if json {
                crate::outln!(
                    "{}",
                    render::json::validate_document(&Diagnostics::default())
                );
            } else {
                crate::outln!("{summary}");
            }
            exit::OK
        }
        Err(Problem::Diagnostics(d)) => {
            if json {
                crate::outln!("{}", render::json::validate_document(&d));
            } else {
                print_diags(&d);
            }
            exit::ERROR
        }
        Err(Problem::Message(msg)) => {
            if json {
                let d = Diagnostics::single(crate::config::Diagnostic::error(msg));
                crate::outln!("{}", render::json::validate_document(&d));
            } else {
                print_error(&msg);
            }
            exit::ERROR
        }
    }
}

enum Problem {
    Diagnostics(Diagnostics),
    Message(String),
}

/// Loads, resolves variables leniently and plans without reading; the summary line when valid.
async fn check(args: ValidateArgs) -> Result<String, Problem> {
    let (loaded, vars) = load_resolved(&args.vars, true).map_err(|e| match e {
        Ok(d) => Problem::Diagnostics(d),
        Err(msg) => Problem::Message(msg),
    })?;
    let opts = PlanOptions {
        read: false,
        ..PlanOptions::default()
    };
    match plan(
        loaded.config.clone(),
        loaded.graph.clone(),
        &loaded.registry,
        vars,
        &opts,
    )
    .await
    {
        Ok((p, _)) => Ok(format!(
            "The configuration is valid: {} step(s), {} data source(s), {} variable(s).",
            p.instances.len(),
            p.data.len(),
            p.variables.len()
        )),
        Err(PlanError::Diagnostics(d)) => Err(Problem::Diagnostics(d)),
    }
}
