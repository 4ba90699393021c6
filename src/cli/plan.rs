//! `opsctl plan`: read the live state and show what apply would change.

use crate::plan::{plan, PlanError, PlanOptions};
use crate::render;

use super::common::{load_with_vars, print_diags};
use super::{exit, PlanArgs};

/// Runs `plan`; returns the exit code (with `--detailed-exitcode`: 0 nothing to do,
/// 2 changes pending, 1 error).
pub async fn run(args: PlanArgs) -> i32 {
    let Some((loaded, vars)) = load_with_vars(&args.vars, false) else {
        return exit::ERROR;
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
        Ok((p, providers)) => {
            crate::out!("{}", render::plan_text(&p));
            super::guards::print_checks(&p, &Default::default(), "at plan");
            match super::guards::clock() {
                Ok(clock) => {
                    if let Some(line) = super::guards::window_text(&loaded.config, &clock) {
                        crate::outln!("\n{line}");
                    }
                }
                Err(msg) => {
                    super::common::print_error(&msg);
                    return exit::ERROR;
                }
            }
            if let Some(out) = &args.out {
                if let Err(msg) = super::saved::write_plan(out, &p, &providers) {
                    super::common::print_error(&msg);
                    return exit::ERROR;
                }
            }
            let code = if args.detailed_exitcode && p.has_changes() {
                exit::CHANGES
            } else {
                exit::OK
            };
            super::common::leak_at_exit((p, loaded));
            code
        }
        Err(PlanError::Diagnostics(d)) => {
            print_diags(&d);
            exit::ERROR
        }
    }
}
