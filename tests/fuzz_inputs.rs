//! Property tests: no input makes opsctl panic (issue 5, "what must be true" #3).
//!
//! Generated configurations (a small HCL grammar: variables, locals, `noop`/`exec` steps with
//! meta-arguments, outputs; expressions with every built-in function, arithmetic, templates,
//! `for`, conditionals, references, odd numbers and strings), then byte-mutated; generated
//! variable values and environment values (not always UTF-8); and byte-mutated journals
//! (some with their checksums recomputed, so that the records themselves are damaged, not only
//! their framing) go through:
//!
//! - in process, for volume: `config::load_sources` -> `graph::build` -> variables ->
//!   `plan` without reads (what `validate` does), rendering every diagnostic; and
//!   `state::journal::read_journal` -> `replay`;
//! - the real binary, fewer cases: `validate` and `plan` of mutated files with `--var`
//!   values and environment variables, and `apply --resume` of a mutated journal.
//!
//! Each must end without a panic, and a failure must say something: exit code never 101, no
//! "panicked at" on stderr, no death by signal, and a non-zero exit has a message on stderr.
//!
//! Cases per property: `OPSCTL_FUZZ_CASES` (default 64; the in-process properties run four
//! times as many). The longer run the issue asks for:
//! `OPSCTL_FUZZ_CASES=2000 cargo test --release --test fuzz_inputs`. Measured on the 2-core
//! development machine (debug build, 2026-11-22): 2,000 cases per property in 75 s and 3,000
//! in 108 s; in process alone 100,000 cases per property in 201 s; through the binary alone
//! 6,000 cases per property in 187 s. No panic found (a reverted division-by-zero fix was
//! found and shrunk, which shows the properties can fail).

mod support;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use opsctl::config::{self, SourceFile};
use opsctl::plan::vars::VarInputs;
use opsctl::plan::{plan, PlanOptions};
use opsctl::provider::Registry;
use support::{opsctl, run, Output, Workdir};

// ---------------------------------------------------------------------------------------
// Case counts and the property check.
// ---------------------------------------------------------------------------------------

/// Cases for the properties that run the binary.
fn binary_cases() -> u32 {
    std::env::var("OPSCTL_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// Cases for the in-process properties.
fn in_process_cases() -> u32 {
    binary_cases().saturating_mul(4)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A failure prints its (shrunk) input; nothing is written into the source tree.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

/// Runs `test` on `cases` inputs from `strategy`, failing with the shrunk input on a panic or
/// an error.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
    eprintln!("{cases} cases in {:.1?}", started.elapsed());
}

/// The property every run of the binary must hold.
fn no_panic(out: &Output, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.code >= 0, "{what}: killed by a signal\n{out}");
    prop_assert!(out.code != 101, "{what}: exit code 101 (a panic)\n{out}");
    prop_assert!(
        !out.stderr.contains("panicked at"),
        "{what}: panicked\n{out}"
    );
    if out.code != 0 {
        prop_assert!(
            !out.stderr.trim().is_empty(),
            "{what}: failed without a message\n{out}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Generators: expressions, configurations, byte mutations.
// ---------------------------------------------------------------------------------------

fn function_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&str> = config::functions::definitions()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.push("frobnicate");
        names
    })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("0".to_string()),
        4 => (1u64..4).prop_map(|n| n.to_string()),
        2 => (0u64..100).prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        1 => (0u32..320).prop_map(|e| format!("1e{e}")),
        1 => prop::sample::select(vec![
            "999999999999999999999",
            "18446744073709551615",
            "9223372036854775808",
            "1e999999",
            "0.5",
            "1e308",
            "4.9e-324",
        ])
        .prop_map(str::to_string),
    ]
}

/// Text for inside a quoted string: plain characters (any but `"`, `\`, `{` and controls),
/// valid escapes, format verbs, non-ASCII characters. Byte mutations break the rest.
fn string_body() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-z0-9 _.%/$-]{0,6}",
            2 => prop::sample::select(vec![
                "\\n", "\\\"", "\\\\", "\\u00e9", "\\U0001F600", "$${", "%%{", "%", "$", "}",
                "\u{201c}", "\u{a0}", "\u{1f600}", "é", "%s", "%d", "%5.2f", "%v", "%q", "%[2]s",
                "%.99999f", "%999999999d", "%*d", "%!", "%-08.3e", "%#x", "%t", "%[0]d",
            ])
            .prop_map(str::to_string),
            1 => any::<char>()
                .prop_filter("plain", |c| !matches!(c, '"' | '\\' | '{') && !c.is_control())
                .prop_map(|c| c.to_string()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => prop::sample::select(vec![
            "var.v0",
            "var.v1",
            "local.l0",
            "local.l1",
            "step.noop.s0.result",
            "step.noop.s1.result",
            "step.noop.s2",
            "step.exec.e0.stdout",
            "step.exec.e0",
            "path.cwd",
        ]),
        2 => prop::sample::select(vec![
            "count.index",
            "each.key",
            "each.value",
            "step.noop.s0[0].result",
            "step.noop.s1[\"a\"].result",
        ]),
        1 => prop::sample::select(vec![
            "var.nope",
            "data.eks_nodegroup.x.scaling",
            "var",
            "step.noop",
            "local.nope",
        ]),
    ]
    .prop_map(str::to_string)
}

/// A literal: what a variable default or a `--var` may be.
fn literal() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => number(),
        3 => string_body().prop_map(|s| format!("\"{s}\"")),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_string),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        5 => number(),
        3 => string_body().prop_map(|s| format!("\"{s}\"")),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_string),
        3 => reference(),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            5 => (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            1 => (prop::sample::select(vec!["-", "!"]), inner.clone())
                .prop_map(|(op, a)| format!("{op}{a}")),
            4 => (
                prop::sample::select(function_names()),
                prop::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            2 => prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            1 => prop::collection::vec(("[a-z]{1,3}", inner.clone()), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
            1 => (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("{c} ? {a} : {b}")),
            1 => (inner.clone(), inner.clone())
                .prop_map(|(list, body)| format!("[for i, x in {list} : [i, x, {body}]]")),
            2 => (string_body(), inner.clone(), string_body())
                .prop_map(|(a, e, b)| format!("\"{a}${{{e}}}{b}\"")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("{a}[{i}]")),
            1 => inner.clone().prop_map(|a| format!("({a})")),
            1 => (inner.clone(), string_body())
                .prop_map(|(a, b)| format!("<<EOT\n{b} ${{{a}}}\nEOT\n")),
        ]
    })
}

/// An expression generator: [`expr`] (anything) or [`simple_expr`] (mostly valid).
type Expr = fn() -> BoxedStrategy<String>;

fn any_expr() -> BoxedStrategy<String> {
    expr().boxed()
}

/// Expressions that mostly evaluate: literals, references to what the configuration
/// declares, a little arithmetic and a few functions.
fn simple_expr() -> BoxedStrategy<String> {
    let known = || {
        prop::sample::select(vec![
            "var.v0",
            "var.v1",
            "local.l0",
            "local.l1",
            "step.noop.s0.result",
            "step.exec.e0.stdout",
            "path.cwd",
        ])
    };
    prop_oneof![
        3 => literal(),
        2 => known().prop_map(str::to_string),
        1 => (known(), number()).prop_map(|(r, n)| format!("{r} + {n}")),
        1 => known().prop_map(|r| format!("\"x-${{{r}}}\"")),
        1 => known().prop_map(|r| format!("length(tostring({r}))")),
        1 => known().prop_map(|r| format!("jsonencode({r})")),
    ]
    .boxed()
}

fn duration(e: Expr) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"1s\"",
            "\"0s\"",
            "\"1e30\"",
            "\"1h30m\"",
            "\"500ms\"",
            "\"366d\"",
            "\"-5s\"",
            "\"inf\"",
            "\"NaN\"",
            "1e30",
            "0",
            "30",
            "-1",
            "\"\"",
            "\"1.5.5s\"",
            "\"99999999999999999999h\"",
        ])
        .prop_map(str::to_string),
        e(),
    ]
}

/// Meta-arguments and arguments of a step, as lines.
fn step_body(exec: bool, e: Expr, lines: usize) -> impl Strategy<Value = Vec<String>> {
    let arg = if exec {
        prop_oneof![
            e().prop_map(|e| format!("environment = {{ B = {e} }}")),
            e().prop_map(|e| format!("environment = {{ A = {e} }}")),
            e().prop_map(|e| format!("working_dir = {e}")),
            e().prop_map(|e| format!("idempotent = {e}")),
            e().prop_map(|e| format!("target = {e}")),
        ]
        .boxed()
    } else {
        prop_oneof![
            e().prop_map(|e| format!("result = {e}")),
            e().prop_map(|e| format!("target = {e}")),
            duration(e).prop_map(|d| format!("delay = {d}")),
        ]
        .boxed()
    };
    let meta = prop_oneof![
        prop_oneof![
            number(),
            e(),
            Just("10001".to_string()),
            Just("3".to_string())
        ]
        .prop_map(|n| format!("count = {n}")),
        e().prop_map(|e| format!("for_each = {e}")),
        Just("for_each = toset([\"a\", \"b\"])".to_string()),
        duration(e).prop_map(|d| format!("timeout = {d}")),
        prop_oneof![
            6 => prop::sample::select(vec!["step.noop.s0", "step.noop.s1", "step.noop.s2", "step.exec.e0"])
                .prop_map(str::to_string),
            1 => reference(),
        ]
        .prop_map(|r| format!("depends_on = [{r}]")),
    ];
    prop::collection::vec(prop_oneof![3 => arg, 1 => meta], 0..lines).prop_map(|lines| {
        // One of each argument: a repeated attribute is a syntax error that hides the rest.
        let mut seen = std::collections::HashSet::new();
        lines
            .into_iter()
            .filter(|l| seen.insert(l.split(" = ").next().unwrap_or_default().to_string()))
            .collect()
    })
}

/// A whole configuration: variables `v0`, `v1`, locals `l0`, `l1`, `noop` steps `s0`..`s2`,
/// an `exec` step `e0` (each present or not) and outputs, so that most references resolve.
fn configuration(e: Expr, lines: usize) -> impl Strategy<Value = String> {
    let variable = move |i: usize| {
        prop::option::weighted(
            0.95,
            (
                prop_oneof![
                    20 => prop::sample::select(vec![
                        "string", "number", "bool", "list(string)", "map(number)",
                        "set(string)", "any", "object({ a = number })", "list(any)",
                    ]),
                    1 => Just("strng"),
                ],
                prop::option::of(literal()),
                prop::bool::weighted(0.2),
                prop::option::weighted(
                    0.3,
                    prop_oneof![
                        Just(format!("length(tostring(var.v{i})) < 100")),
                        e(),
                    ],
                ),
            ),
        )
        .prop_map(move |v| {
            let Some((ty, default, sensitive, cond)) = v else {
                return String::new();
            };
            let mut s = format!("variable \"v{i}\" {{\n  type = {ty}\n");
            if let Some(d) = default {
                s.push_str(&format!("  default = {d}\n"));
            }
            if sensitive {
                s.push_str("  sensitive = true\n");
            }
            if let Some(c) = cond {
                s.push_str(&format!(
                    "  validation {{\n    condition = {c}\n    error_message = \"bad ${{var.v{i}}}\"\n  }}\n"
                ));
            }
            s.push_str("}\n");
            s
        })
    };
    let locals = prop::option::weighted(
        0.9,
        (
            prop::option::weighted(0.9, e()),
            prop::option::weighted(0.9, e()),
        ),
    )
    .prop_map(|ls| match ls {
        Some((a, b)) => {
            let mut body = String::new();
            if let Some(a) = a {
                body.push_str(&format!("  l0 = {a}\n"));
            }
            if let Some(b) = b {
                body.push_str(&format!("  l1 = {b}\n"));
            }
            format!("locals {{\n{body}}}\n")
        }
        None => String::new(),
    });
    let noop = move |i: usize| {
        prop::option::weighted(0.95, step_body(false, e, lines)).prop_map(
            move |lines| match lines {
                Some(lines) => format!("step \"noop\" \"s{i}\" {{\n  {}\n}}\n", lines.join("\n  ")),
                None => String::new(),
            },
        )
    };
    let exec =
        prop::option::weighted(0.9, step_body(true, e, lines)).prop_map(|lines| match lines {
            Some(lines) => format!(
                "step \"exec\" \"e0\" {{\n  command = \"true\"\n  {}\n}}\n",
                lines.join("\n  ")
            ),
            None => String::new(),
        });
    let output = (0usize..2, e(), any::<bool>()).prop_map(|(i, e, sensitive)| {
        format!("output \"o{i}\" {{\n  value = {e}\n  sensitive = {sensitive}\n}}\n")
    });
    (
        (variable(0), variable(1), locals),
        (noop(0), noop(1), noop(2), exec),
        prop::collection::vec(output, 0..2),
    )
        .prop_map(|((v0, v1, locals), (s0, s1, s2, e0), outputs)| {
            let mut s = String::new();
            for part in [v0, v1, locals, s0, s1, s2, e0] {
                s.push_str(&part);
            }
            s.push_str(&outputs.concat());
            if s.is_empty() {
                s.push_str("step \"noop\" \"s0\" {}\n");
            }
            s
        })
}

/// Bytes that show as an escaped string when a failing case is printed.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (position % len) with a value.
    Set(usize, u8),
    /// Insert bytes at (position % (len + 1)).
    Insert(usize, Vec<u8>),
    /// Delete up to n bytes at (position % len).
    Delete(usize, usize),
    /// Copy up to n bytes from one position to another.
    Duplicate(usize, usize, usize),
    /// Keep only the first (position % (len + 1)) bytes.
    Truncate(usize),
}

fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"\""[..],
            b"{",
            b"}",
            b"${",
            b"%{",
            b"\n",
            b"\\",
            b"#",
            b"/*",
            b"<<EOT\n",
            b"=",
            b"[",
            b"]",
            b"(",
            b",",
            b"\xff",
            b"\xc3",
            b"\xef\xbb\xbf",
            "\u{201c}".as_bytes(),
            "\u{a0}".as_bytes(),
            "\u{1f600}".as_bytes(),
            b"\0",
            b"\r",
            b"\t",
            b"0",
            b"9",
            b"-",
            b"e999",
            b"step",
            b"count = ",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        3 => (any::<usize>(), interesting_bytes()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply_mutations(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Set(p, b) if len > 0 => bytes[p % len] = *b,
            Mutation::Insert(p, b) => {
                let at = p % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(p, n) if len > 0 => {
                let at = p % len;
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(from, to, n) if len > 0 => {
                let from = from % len;
                let chunk: Vec<u8> = bytes[from..(from + n).min(len)].to_vec();
                let to = to % (len + 1);
                bytes.splice(to..to, chunk);
            }
            Mutation::Truncate(p) => bytes.truncate(p % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// A configuration, mutated half of the time.
fn mutated_configuration() -> impl Strategy<Value = Bytes> {
    (
        prop_oneof![configuration(any_expr, 5), configuration(simple_expr, 3)],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(mutation(), 1..5),
        ],
    )
        .prop_map(|(text, mutations)| Bytes(apply_mutations(text.into_bytes(), &mutations)))
}

/// A variable value as given on the command line or in the environment.
fn var_value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => literal().prop_map(String::into_bytes),
        1 => expr().prop_map(String::into_bytes),
        1 => number().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
        1 => string_body().prop_map(String::into_bytes),
    ]
    .prop_map(Bytes)
}

// ---------------------------------------------------------------------------------------
// Configurations, variables and environment values.
// ---------------------------------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// How far in-process cases got: load error, graph error, variable error, plan error, planned.
static STAGES: [std::sync::atomic::AtomicUsize; 5] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 5];

fn reached(stage: usize) {
    STAGES[stage].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What `validate` does, in process: load, build the graph, resolve variables, plan without
/// reading anything. Every diagnostic is rendered (the renderer must not panic either) and
/// must say something.
fn validate_in_process(text: &str, vars: &[(String, String)]) -> Result<(), TestCaseError> {
    let check_diags = |d: &config::Diagnostics| -> Result<(), TestCaseError> {
        let rendered = d.to_string();
        prop_assert!(!d.is_empty(), "an error without a diagnostic");
        prop_assert!(rendered.starts_with("error: ") || rendered.starts_with("warning: "));
        Ok(())
    };
    let config = match config::load_sources(vec![SourceFile::new("main.hcl", text)]) {
        Ok(c) => c,
        Err(d) => {
            reached(0);
            if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
                eprintln!("---\n{text}\n{d}");
            }
            return check_diags(&d);
        }
    };
    let registry = Registry::standard();
    let graph = match opsctl::graph::build(&config, &registry) {
        Ok(g) => g,
        Err(d) => {
            reached(1);
            if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
                eprintln!("---\n{text}\n{d}");
            }
            return check_diags(&d);
        }
    };
    let inputs = VarInputs {
        cli: vars.to_vec(),
        ..VarInputs::default()
    };
    let variables = match opsctl::plan::vars::resolve_lenient(&config, &inputs) {
        Ok(v) => v,
        Err(d) => {
            reached(2);
            if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
                eprintln!("---\n{text}\n{d}");
            }
            return check_diags(&d);
        }
    };
    let opts = PlanOptions {
        read: false,
        ..PlanOptions::default()
    };
    let result = runtime().block_on(plan(
        Arc::new(config),
        Arc::new(graph),
        &registry,
        variables,
        &opts,
    ));
    match result {
        Ok((p, _)) => {
            reached(4);
            let _ = opsctl::render::plan_text(&p);
            Ok(())
        }
        Err(opsctl::plan::PlanError::Diagnostics(d)) => {
            reached(3);
            if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
                eprintln!("---\n{text}\n{d}");
            }
            check_diags(&d)
        }
    }
}

#[test]
fn generated_and_mutated_configurations_in_process() {
    let strategy = (
        mutated_configuration(),
        prop::collection::vec((0usize..3, var_value()), 0..3),
    );
    check(in_process_cases(), strategy, |(bytes, vars)| {
        let text = String::from_utf8_lossy(&bytes.0);
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(i, v)| (format!("v{i}"), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        for (_, v) in &vars {
            let _ = config::eval_value_text(v);
        }
        let _ = config::parse_var_file("x.vars", &text);
        validate_in_process(&text, &vars)
    });
    let n: Vec<usize> = STAGES
        .iter()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    eprintln!(
        "stopped at: load {}, graph {}, variables {}, plan {}; planned {}",
        n[0], n[1], n[2], n[3], n[4]
    );
}

/// What expressions see in [`expressions_in_process`]: every name is defined, with values
/// generated from literals, some of them unknown (known only after apply).
#[derive(Debug)]
struct FuzzScope(Vec<hcl::Value>);

impl FuzzScope {
    fn value(&self, i: usize) -> Option<hcl::Value> {
        self.0.get(i % self.0.len().max(1)).cloned()
    }
}

impl opsctl::config::eval::Scope for FuzzScope {
    fn var(&self, name: &str) -> Option<hcl::Value> {
        name.strip_prefix('v')
            .and_then(|i| self.value(i.parse().ok()?))
    }
    fn local(&self, name: &str) -> Option<hcl::Value> {
        name.strip_prefix('l')
            .and_then(|i| self.value(i.parse::<usize>().ok()? + 2))
    }
    fn block(&self, address: &str) -> Option<hcl::Value> {
        let v = self.value(address.len())?;
        let mut m = hcl::Map::new();
        m.insert("result".to_string(), v.clone());
        m.insert("stdout".to_string(), v);
        Some(hcl::Value::Object(m))
    }
    fn count_index(&self) -> Option<u64> {
        Some(1)
    }
    fn each(&self) -> Option<(hcl::Value, hcl::Value)> {
        Some((hcl::Value::from("a"), self.value(5)?))
    }
}

/// Every built-in function, arithmetic, templates and `for` expressions on generated values:
/// an expression evaluates to a value or an error with a message, never a panic, never a NaN.
#[test]
fn expressions_in_process() {
    let value = prop_oneof![
        4 => literal(),
        1 => Just("\"\u{1}(known after apply)\u{1}\"".to_string()),
    ];
    let strategy = (expr(), prop::collection::vec(value, 1..6));
    check(in_process_cases(), strategy, |(expr, values)| {
        let values: Vec<hcl::Value> = values
            .iter()
            .filter_map(|v| config::eval_value_text(v).ok())
            .collect();
        let scope = FuzzScope(values);
        let text = format!("output \"o\" {{\n  value = {expr}\n}}\n");
        let config = match config::load_sources(vec![SourceFile::new("main.hcl", text)]) {
            Ok(c) => c,
            Err(d) => {
                prop_assert!(d.to_string().starts_with("error: "));
                return Ok(());
            }
        };
        let result = opsctl::config::eval::evaluate(&config.outputs[0].value, &scope);
        if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
            match &result {
                Ok(v) => eprintln!("OK {expr} => {v:?}"),
                Err(d) => eprintln!("ERR {expr} => {}", d.message),
            }
        }
        match result {
            Ok(v) => {
                let json = opsctl::config::eval::to_json(&v).to_string();
                prop_assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
            }
            Err(mut d) => {
                d.locate(&config.sources);
                prop_assert!(d.to_string().starts_with("error: "));
                prop_assert!(!d.message.is_empty());
            }
        }
        Ok(())
    });
}

/// `--var NAME=VALUE` arguments and `OPSCTL_VAR_*`/other environment variables, as bytes.
type Inputs = (Vec<(usize, Bytes)>, Vec<(usize, Bytes)>);

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        prop::collection::vec((0usize..3, var_value()), 0..3),
        prop::collection::vec((0usize..4, var_value()), 0..3),
    )
}

fn with_inputs(cmd: &mut std::process::Command, inputs: &Inputs) {
    for (i, v) in &inputs.0 {
        // Arguments cannot hold a NUL byte.
        let mut arg = format!("v{i}=").into_bytes();
        arg.extend(v.0.iter().copied().filter(|&b| b != 0));
        cmd.arg("--var").arg(OsStr::from_bytes(&arg));
    }
    for (i, v) in &inputs.1 {
        // Values with a NUL byte cannot be passed through the environment.
        let v: Vec<u8> = v.0.iter().copied().filter(|&b| b != 0).collect();
        let key = match i {
            0 | 1 => format!("OPSCTL_VAR_v{i}"),
            2 => "OPSCTL_VAR_nope".to_string(),
            _ => "UNRELATED".to_string(),
        };
        cmd.env(key, OsString::from(OsStr::from_bytes(&v)));
    }
}

#[test]
fn validate_and_plan_of_mutated_files_with_odd_variables_and_environment() {
    let strategy = (mutated_configuration(), inputs(), any::<bool>());
    check(binary_cases(), strategy, |(bytes, inputs, use_plan)| {
        let work = Workdir::new();
        std::fs::write(work.path().join("main.hcl"), &bytes.0).unwrap();
        let mut cmd = opsctl(&work, None);
        cmd.arg(if use_plan { "plan" } else { "validate" });
        with_inputs(&mut cmd, &inputs);
        no_panic(&run(&mut cmd), "validate/plan")
    });
}

// ---------------------------------------------------------------------------------------
// Journals.
// ---------------------------------------------------------------------------------------

/// A procedure whose apply fails part-way (its journal has every kind of step record), so
/// that `apply --resume` has something to continue.
const RESUMABLE: &str = r#"step "noop" "a" {
  count  = 3
  result = "a${count.index}"
}
step "noop" "b" {
  result     = step.noop.a[2].result
  depends_on = [step.noop.a]
}
step "exec" "c" {
  command    = "echo ${step.noop.b.result}; test -f go"
  depends_on = [step.noop.b]
}
step "noop" "d" {
  result     = step.exec.c.stdout
}
"#;

/// A workdir with [`RESUMABLE`] applied once (failed at `step.exec.c`); its journal's bytes.
fn template() -> &'static (Workdir, PathBuf, Vec<u8>) {
    static TEMPLATE: OnceLock<(Workdir, PathBuf, Vec<u8>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let work = Workdir::new();
        work.write("main.hcl", RESUMABLE);
        let out = run(opsctl(&work, None).args(["apply", "--auto-approve"]));
        assert_eq!(
            out.code, 1,
            "the template apply must fail at step.exec.c\n{out}"
        );
        let dir = work.state_dir().join("journal");
        let journal = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .expect("a journal");
        let bytes = std::fs::read(&journal).unwrap();
        let name = PathBuf::from(journal.file_name().unwrap());
        (work, name, bytes)
    })
}

/// A change to one record's JSON, framed again with a valid checksum.
#[derive(Debug, Clone)]
enum RecordEdit {
    /// Set a field (by index among the record's fields) to a value.
    Set(usize, serde_json::Value),
    /// Remove a field.
    Remove(usize),
    /// Replace the whole line by a JSON value.
    Replace(serde_json::Value),
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (0u32..5).prop_map(|n| json!(n)),
        string_body().prop_map(Value::String),
        prop::sample::select(vec![
            "run_started",
            "run_finished",
            "step_started",
            "step_finished",
            "step_failed",
            "step_resolved",
            "run_resumed",
            "run_interrupted",
            "step.noop.a[0]",
            "step.noop.b",
            "step.exec.c",
            "succeeded",
            "failed",
            "done",
            "rerun",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn record_edit() -> impl Strategy<Value = RecordEdit> {
    prop_oneof![
        3 => (any::<usize>(), json_value()).prop_map(|(i, v)| RecordEdit::Set(i, v)),
        1 => any::<usize>().prop_map(RecordEdit::Remove),
        1 => json_value().prop_map(RecordEdit::Replace),
    ]
}

/// Applies `edit` to line `line % lines` of a journal and frames it again with a checksum
/// (`crc32-hex SPACE json`), so that the damage is in the record, not its framing.
fn edit_record(bytes: &[u8], line: usize, edit: &RecordEdit) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return bytes.to_vec();
    }
    let i = line % lines.len();
    let json = lines[i].get(9..).unwrap_or_default();
    let mut value: serde_json::Value =
        serde_json::from_slice(json).unwrap_or(serde_json::Value::Null);
    match (edit, &mut value) {
        (RecordEdit::Set(k, v), serde_json::Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(k % map.len()).cloned().unwrap_or_default();
            map.insert(key, v.clone());
        }
        (RecordEdit::Remove(k), serde_json::Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(k % map.len()).cloned().unwrap_or_default();
            map.remove(&key);
        }
        (RecordEdit::Replace(v), _) => value = v.clone(),
        _ => {}
    }
    let json = serde_json::to_vec(&value).unwrap();
    let mut framed = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    framed.extend_from_slice(&json);
    lines[i] = framed;
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

/// Damage to a journal: record edits with valid checksums, and byte mutations.
type JournalDamage = (Vec<(usize, RecordEdit)>, Vec<Mutation>);

fn journal_damage() -> impl Strategy<Value = JournalDamage> {
    (
        prop::collection::vec((any::<usize>(), record_edit()), 0..3),
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec(mutation(), 1..4),
        ],
    )
}

fn damaged_journal(damage: &JournalDamage) -> Vec<u8> {
    let mut bytes = template().2.clone();
    for (line, edit) in &damage.0 {
        bytes = edit_record(&bytes, *line, edit);
    }
    apply_mutations(bytes, &damage.1)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn mutated_journals_in_process() {
    let dir = tempfile::tempdir().unwrap();
    check(in_process_cases(), journal_damage(), |damage| {
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, damaged_journal(&damage)).unwrap();
        if let Ok(read) = opsctl::state::journal::read_journal(&path) {
            let _ = opsctl::state::journal::replay(&read.records);
        }
        Ok(())
    });
}

#[test]
fn apply_resume_of_mutated_journals() {
    let (template_work, name, _) = template();
    check(binary_cases(), journal_damage(), |damage| {
        let work = Workdir::new();
        work.write("main.hcl", RESUMABLE);
        copy_dir(&template_work.state_dir(), &work.state_dir());
        let journal = work.state_dir().join("journal").join(name);
        std::fs::write(&journal, damaged_journal(&damage)).unwrap();
        let out = run(opsctl(&work, None).args(["apply", "--resume", "--auto-approve"]));
        if std::env::var_os("OPSCTL_FUZZ_DEBUG").is_some() {
            let first = out
                .stderr
                .trim()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            eprintln!("RESUME {} {first}", out.code);
        }
        no_panic(&out, "apply --resume")
    });
}
