//! `opsctl plan`: read the live state and show what apply would change.

use crate::plan::{plan, PlanError, PlanOptions};
use crate::render;

use super::common::{load, print_diags, print_error, var_inputs};
use super::{exit, PlanArgs};

/// Runs `plan`; returns the exit code (with `--detailed-exitcode`: 0 nothing to do,
/// 2 changes pending, 1 error).
pub async fn run(args: PlanArgs) -> i32 {
    let loaded = match load() {
        Ok(l) => l,
        Err(d) => {
            print_diags(&d);
            return exit::ERROR;
        }
    };
    let inputs = match var_inputs(&args.vars) {
        Ok(i) => i,
        Err(msg) => {
            print_error(&msg);
            return exit::ERROR;
        }
    };
    let vars = match crate::plan::vars::resolve(&loaded.config, &inputs) {
        Ok(v) => v,
        Err(d) => {
            print_diags(&d);
            return exit::ERROR;
        }
    };
    let opts = PlanOptions {
        parallelism: args.parallelism as usize,
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
            print!("{}", render::plan_text(&p));
            if args.detailed_exitcode && p.has_changes() {
                exit::CHANGES
            } else {
                exit::OK
            }
        }
        Err(PlanError::Diagnostics(d)) => {
            print_diags(&d);
            exit::ERROR
        }
    }
}
