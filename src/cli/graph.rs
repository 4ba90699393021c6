//! `opsctl graph`: the dependency graph of the configuration's steps and data sources in DOT,
//! following `terraform graph` (Terraform 1.7 and later): `digraph G`, right-to-left ranks,
//! rectangular nodes labelled with addresses, an edge from each block to each block it depends
//! on (directly, through locals, or by `depends_on`), and one cluster per module. Talks to no
//! API. Render it with Graphviz: `opsctl graph | dot -Tsvg > graph.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Config;
use crate::graph::ConfigGraph;
use crate::render::json::module_of;

use super::common::load_with_vars;
use super::{exit, GraphArgs};

/// Runs `graph`; returns the exit code (1 when the configuration is invalid). Variables are
/// resolved as `validate` does (a missing one is unknown): a module whose `for_each` uses one
/// is drawn with its instances, or one placeholder instance `[*]` without a value.
pub fn run(args: GraphArgs) -> i32 {
    match load_with_vars(&args.vars, true) {
        Some((loaded, _)) => {
            crate::out!("{}", dot(&loaded.config, &loaded.graph));
            exit::OK
        }
        None => exit::ERROR,
    }
}

/// A DOT quoted ID: backslashes and double quotes escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The DOT text of the graph of `config`'s blocks (steps and data sources), in configuration
/// order; edges point from a block to its dependency, as in `terraform graph`.
pub fn dot(config: &Config, graph: &ConfigGraph) -> String {
    let mut out = String::from(
        "digraph G {\n  rankdir = \"RL\";\n  node [shape = rect, fontname = \"sans-serif\"];\n",
    );
    let addresses: Vec<String> = config.blocks.iter().map(|b| b.address()).collect();
    let mut modules: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in &addresses {
        match module_of(a) {
            Some(m) => modules.entry(m).or_default().push(a),
            None => {
                let _ = writeln!(out, "  {} [label={}];", quoted(a), quoted(a));
            }
        }
    }
    for (m, members) in &modules {
        let _ = writeln!(out, "  subgraph {} {{", quoted(&format!("cluster_{m}")));
        let _ = writeln!(out, "    label = {};", quoted(m));
        let _ = writeln!(out, "    fontname = \"sans-serif\";");
        for a in members {
            let _ = writeln!(out, "    {} [label={}];", quoted(a), quoted(a));
        }
        out.push_str("  }\n");
    }
    for (i, deps) in graph.block_deps.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for d in deps {
            if seen.insert(d.block) {
                let _ = writeln!(
                    out,
                    "  {} -> {};",
                    quoted(&addresses[i]),
                    quoted(&addresses[d.block])
                );
            }
        }
    }
    out.push_str("}\n");
    out
}
