//! `opsctl plan`: read the live state and show what apply would change.

use crate::plan::{plan, PlanError, PlanOptions};
use crate::render;

use super::common::{load_with_vars, print_diags};
use super::{exit, PlanArgs, PlanFormat};

/// Runs `plan`; returns the exit code (with `--detailed-exitcode`: 0 nothing to do,
/// 2 changes pending, 1 error). `--format` picks the rendering: human text, a Markdown
/// pull-request comment ([`render::markdown`]) or the JSON document ([`render::json`]).
pub async fn run(args: PlanArgs) -> i32 {
    let loaded = if args.format == PlanFormat::Json {
        // A configuration that does not load is an errored document too.
        load_diagnosed(&args.vars).map_err(|d| {
            print_diags(&d);
            crate::outln!("{}", render::json::errored_plan_document(&d));
        })
    } else {
        load_with_vars(&args.vars, false).ok_or(())
    };
    let Ok((loaded, vars)) = loaded else {
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
            match args.format {
                PlanFormat::Human => {
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
                }
                PlanFormat::Markdown => crate::out!("{}", render::markdown::plan_markdown(&p)),
                PlanFormat::Json => crate::outln!("{}", render::json::plan_document(&p)),
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
            if args.format == PlanFormat::Json {
                crate::outln!("{}", render::json::errored_plan_document(&d));
            }
            exit::ERROR
        }
    }
}

/// Loads the configuration and resolves its variables, returning what went wrong as
/// diagnostics (for the JSON document) instead of printing it.
fn load_diagnosed(
    args: &super::VarArgs,
) -> Result<(super::common::Loaded, hcl::Map<String, hcl::Value>), crate::config::Diagnostics> {
    super::common::load_resolved(args, false).map_err(|e| {
        e.unwrap_or_else(|msg| {
            crate::config::Diagnostics::single(crate::config::Diagnostic::error(msg))
        })
    })
}
