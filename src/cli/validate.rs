//! `opsctl validate`: syntax, references, types and the graph, without talking to any API.

use crate::plan::{plan, PlanError, PlanOptions};

use super::common::{load, print_diags, print_error, var_inputs};
use super::{exit, VarArgs};

/// Runs `validate`; returns the exit code.
pub async fn run(args: VarArgs) -> i32 {
    let loaded = match load() {
        Ok(l) => l,
        Err(d) => {
            print_diags(&d);
            return exit::ERROR;
        }
    };
    let inputs = match var_inputs(&args) {
        Ok(i) => i,
        Err(msg) => {
            print_error(&msg);
            return exit::ERROR;
        }
    };
    let vars = match crate::plan::vars::resolve_lenient(&loaded.config, &inputs) {
        Ok(v) => v,
        Err(d) => {
            print_diags(&d);
            return exit::ERROR;
        }
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
            println!(
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
