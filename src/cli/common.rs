//! Shared steps of the commands: load and validate the configuration, gather variable inputs
//! from flags, files and the environment, print diagnostics.

use std::os::unix::ffi::OsStrExt as _;
use std::sync::Arc;

use crate::config::{self, Config, Diagnostics};
use crate::graph::{self, ConfigGraph};
use crate::plan::vars::{parse_assignment, VarInputs};
use crate::provider::Registry;

use super::VarArgs;

/// A loaded, validated configuration.
pub struct Loaded {
    /// The configuration.
    pub config: Arc<Config>,
    /// Its graph.
    pub graph: Arc<ConfigGraph>,
    /// The step type registry.
    pub registry: Arc<Registry>,
}

/// The root configuration of the current directory, read but with its `module` calls not yet
/// expanded: its `variable` blocks are what variable inputs resolve against.
pub struct Root {
    /// The root configuration ([`Config::module_calls`] still holds the calls).
    pub config: Config,
    dir: std::path::PathBuf,
}

/// Reads `*.hcl` from the current directory ([`config::load_root`]).
///
/// # Errors
///
/// Every configuration diagnostic of the root files, with sources attached.
pub fn load_root() -> Result<Root, Diagnostics> {
    let dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let config = config::load_root(&dir)?;
    Ok(Root { config, dir })
}

impl Root {
    /// Expands the module calls with the resolved root variables `vars` (their `for_each` and
    /// `count` may use them; an unknown value, as `validate` leaves a missing one, gives a
    /// placeholder instance) and builds the graph.
    ///
    /// # Errors
    ///
    /// Every diagnostic of [`config::modules::expand`] and [`graph::build`], with sources.
    pub fn expand(self, vars: &hcl::Map<String, hcl::Value>) -> Result<Loaded, Diagnostics> {
        let registry = Arc::new(Registry::standard());
        let config = config::modules::expand(self.config, &self.dir, Some(vars))?;
        let graph = graph::build(&config, &registry)?;
        Ok(Loaded {
            config: Arc::new(config),
            graph: Arc::new(graph),
            registry,
        })
    }
}

/// Gathers raw variable inputs: `OPSCTL_VAR_*`, `--var-file`, `--var`.
///
/// # Errors
///
/// A malformed `--var`, an unreadable or non-UTF-8 var file, or an `OPSCTL_VAR_*` variable
/// that is not UTF-8 (other environment variables may hold any bytes).
pub fn var_inputs(args: &VarArgs) -> Result<VarInputs, String> {
    let mut inputs = VarInputs::default();
    let mut env: Vec<(String, String)> = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(name) = key.as_bytes().strip_prefix(b"OPSCTL_VAR_") else {
            continue;
        };
        let (Ok(name), Some(value)) = (std::str::from_utf8(name), value.to_str()) else {
            return Err(format!(
                "the environment variable `{}` is not valid UTF-8; variable values must be text",
                key.to_string_lossy()
            ));
        };
        env.push((name.to_string(), value.to_string()));
    }
    env.sort();
    inputs.env = env;
    for path in &args.var_files {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read var file `{}`: {e}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "var file `{}` is not valid UTF-8 (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        inputs.files.push((path.display().to_string(), text));
    }
    for v in &args.vars {
        inputs.cli.push(parse_assignment(v)?);
    }
    Ok(inputs)
}

/// Loads the configuration and resolves its variables from `args`, printing any problem.
/// `lenient` leaves missing required variables unknown (for `validate`).
///
/// Returns None after printing the diagnostics when anything is wrong.
pub fn load_with_vars(
    args: &VarArgs,
    lenient: bool,
) -> Option<(Loaded, hcl::Map<String, hcl::Value>)> {
    load_resolved(args, lenient)
        .map_err(|e| match e {
            Err(msg) => print_error(&msg),
            Ok(d) => print_diags(&d),
        })
        .ok()
}

/// Loads the configuration, resolves its variables from `args` (`lenient` as in
/// [`load_with_vars`]) and expands its modules with them.
///
/// # Errors
///
/// `Err(message)` for unusable variable flags, `Ok(diagnostics)` for everything else.
pub fn load_resolved(
    args: &VarArgs,
    lenient: bool,
) -> Result<(Loaded, hcl::Map<String, hcl::Value>), Result<Diagnostics, String>> {
    let root = load_root().map_err(Ok)?;
    let inputs = var_inputs(args).map_err(Err)?;
    let vars = if lenient {
        crate::plan::vars::resolve_lenient(&root.config, &inputs)
    } else {
        crate::plan::vars::resolve(&root.config, &inputs)
    }
    .map_err(Ok)?;
    let loaded = root.expand(&vars).map_err(Ok)?;
    Ok((loaded, vars))
}

/// Leaves a large structure (a plan, a configuration) to the OS instead of freeing it: the
/// process exits right after, and freeing 10,000 steps' worth of small allocations one by one
/// costs more than the exit (measured in BENCHMARKS.md).
pub fn leak_at_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Prints diagnostics to standard error.
pub fn print_diags(d: &Diagnostics) {
    crate::err!("{d}");
}

/// Prints a one-line error to standard error.
pub fn print_error(msg: &str) {
    crate::errln!("error: {msg}");
}
