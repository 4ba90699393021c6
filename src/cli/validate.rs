//! `opsctl validate`: syntax, references, types and the graph, without talking to any API.

use crate::plan::{plan, PlanError, PlanOptions};

use super::common::{load_with_vars, print_diags};
use super::{exit, VarArgs};

/// Runs `validate`; returns the exit code.
pub async fn run(args: VarArgs) -> i32 {
    let Some((loaded, vars)) = load_with_vars(&args, true) else {
        return exit::ERROR;
    };
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
        Ok((p, _)) => {
            crate::outln!(
                "The configuration is valid: {} step(s), {} data source(s), {} variable(s).",
                p.instances.len(),
                p.data.len(),
                p.variables.len()
            );
            exit::OK
        }
        Err(PlanError::Diagnostics(d)) => {
            print_diags(&d);
            exit::ERROR
        }
    }
}
