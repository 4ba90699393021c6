//! Crash and resume of `opsctl apply`, end to end with the real binary.
//!
//! - SIGKILL between steps, during a step (by the journal writer's fault injection
//!   `OPSCTL_FAULT_JOURNAL_KILL_AT`, and by a real `kill -9` from outside while a step runs),
//!   and in the middle of a journal write (`N:torn`), then `apply --resume`;
//! - Ctrl-C / SIGTERM (first signal: running steps finish; second: they are abandoned);
//! - the state lock (a second apply, `force-unlock`, stale-lock takeover);
//! - a damaged journal, and the cases where resume must refuse.
//!
//! Every exec step appends its own name to `effects.log`, so counting the lines per name tells
//! exactly which side effects happened and how many times. The journal is checked through its
//! on-disk format (`<crc32 8 hex> <json>\n` per line, the JSON led by its sequence number
//! `seq`), independently of opsctl's reader.
//!
//! Line numbers for fault injection in a linear chain `s1 -> s2 -> ... -> sN` of exec steps:
//! line 1 is `run_started`, line `2j` the `step_started` of `sj`, line `2j+1` its
//! `step_finished`, line `2N+2` the `run_finished`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{opsctl, run, Output, Workdir};

/// The fault-injection variable of the journal writer.
const FAULT_ENV: &str = "OPSCTL_FAULT_JOURNAL_KILL_AT";
/// Polling step and timeout when waiting for something a background opsctl does.
const POLL: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(20);
/// Longest a background opsctl may take to exit once it should.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The message finished steps get on resume.
const SKIPPED: &str = "skipped (finished in an earlier attempt of this run)";

// ---------------------------------------------------------------------------------------------
// Procedures
// ---------------------------------------------------------------------------------------------

/// One exec step of a generated procedure: its name and the names of the steps it depends on.
struct StepSpec {
    name: String,
    deps: Vec<String>,
}

/// `s1 -> s2 -> ... -> sN`.
fn linear(n: usize) -> Vec<StepSpec> {
    (1..=n)
        .map(|i| StepSpec {
            name: format!("s{i}"),
            deps: if i == 1 {
                Vec::new()
            } else {
                vec![format!("s{}", i - 1)]
            },
        })
        .collect()
}

/// Three chains `a1..a8`, `b1..b8`, `c1..c8` run in parallel, then `join` after all three
/// (25 steps).
fn three_chains_and_join() -> Vec<StepSpec> {
    let mut steps = Vec::new();
    for chain in ["a", "b", "c"] {
        for i in 1..=8 {
            steps.push(StepSpec {
                name: format!("{chain}{i}"),
                deps: if i == 1 {
                    Vec::new()
                } else {
                    vec![format!("{chain}{}", i - 1)]
                },
            });
        }
    }
    steps.push(StepSpec {
        name: "join".into(),
        deps: vec!["a8".into(), "b8".into(), "c8".into()],
    });
    steps
}

fn addr(name: &str) -> String {
    format!("step.exec.{name}")
}

fn hcl_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The default command of step `name`: record its side effect.
fn effect_command(name: &str) -> String {
    format!("echo {name} >> effects.log")
}

/// What a step looks like when it is not the default: its command and extra attribute lines.
struct Custom {
    command: String,
    extra: String,
}

/// The HCL of `steps`; `custom(name)` may replace a step's command and add attributes.
fn render(steps: &[StepSpec], custom: impl Fn(&str) -> Option<Custom>) -> String {
    let mut text = String::new();
    for s in steps {
        let (command, extra) = match custom(&s.name) {
            Some(c) => (c.command, c.extra),
            None => (effect_command(&s.name), String::new()),
        };
        text.push_str(&format!(
            "step \"exec\" \"{}\" {{\n  command = {}\n{extra}",
            s.name,
            hcl_string(&command)
        ));
        if !s.deps.is_empty() {
            let deps: Vec<String> = s.deps.iter().map(|d| addr(d)).collect();
            text.push_str(&format!("  depends_on = [{}]\n", deps.join(", ")));
        }
        text.push_str("}\n\n");
    }
    text
}

/// A procedure of `steps` where only step `name` is customised.
fn render_with(steps: &[StepSpec], name: &str, command: &str, extra: &str) -> String {
    render(steps, |n| {
        (n == name).then(|| Custom {
            command: command.to_string(),
            extra: extra.to_string(),
        })
    })
}

/// A slow step: appends its effect, then — only the first time it runs, so that a re-run is
/// quick — writes its shell's pid to `started-NAME` (the marker a test polls for) and waits
/// about 30 s in short sleeps (so that no long-lived orphan outlives the shell); `tail` runs
/// at the very end (e.g. creating a guard file).
fn slow_once_command(name: &str, tail: &str) -> String {
    format!(
        "echo {name} >> effects.log; if [ ! -e started-{name} ]; then \
         echo $$ > started-{name}.tmp; mv started-{name}.tmp started-{name}; \
         n=0; while [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; fi{tail}"
    )
}

// ---------------------------------------------------------------------------------------------
// Side effects
// ---------------------------------------------------------------------------------------------

/// Lines of `effects.log` per step name (empty if the file does not exist).
fn effects(work: &Workdir) -> BTreeMap<String, usize> {
    let path = work.path().join("effects.log");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

/// `count` for each of `names`.
fn each(names: &[StepSpec], count: usize) -> BTreeMap<String, usize> {
    names.iter().map(|s| (s.name.clone(), count)).collect()
}

/// Every step's effect exactly once, except the steps in `twice`: exactly two times.
fn assert_each_once_except(work: &Workdir, steps: &[StepSpec], twice: &[&str]) {
    let want: BTreeMap<String, usize> = steps
        .iter()
        .map(|s| {
            let n = if twice.contains(&s.name.as_str()) {
                2
            } else {
                1
            };
            (s.name.clone(), n)
        })
        .collect();
    assert_eq!(
        effects(work),
        want,
        "side effects (lines of effects.log per step); only {twice:?} may run twice"
    );
}

// ---------------------------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------------------------

fn journal_files(work: &Workdir) -> Vec<PathBuf> {
    let dir = work.state_dir().join("journal");
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("journal dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// The only journal of the workdir.
fn the_journal(work: &Workdir) -> PathBuf {
    let files = journal_files(work);
    assert_eq!(files.len(), 1, "expected exactly one journal: {files:?}");
    files.into_iter().next().unwrap()
}

/// One journal line (without its newline) if it is intact: checksum matches, JSON parses.
fn parse_line(line: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let (crc, json) = text
        .split_once(' ')
        .ok_or_else(|| "no `<crc> ` prefix".to_string())?;
    let expected =
        u32::from_str_radix(crc, 16).map_err(|e| format!("bad checksum `{crc}`: {e}"))?;
    if crc.len() != 8 {
        return Err(format!("checksum `{crc}` is not 8 hex digits"));
    }
    let actual = crc32fast::hash(json.as_bytes());
    if actual != expected {
        return Err(format!("checksum mismatch: {expected:08x} vs {actual:08x}"));
    }
    serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))
}

/// Every record of a journal that no process is writing; panics naming the line if any
/// line is incomplete or damaged.
fn read_records(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "journal {} does not end with a newline",
        path.display()
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            parse_line(line)
                .unwrap_or_else(|e| panic!("journal {} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The complete, intact records of a journal that may be being written right now.
fn records_so_far(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).unwrap_or_default();
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => return Vec::new(),
    };
    complete
        .split(|&b| b == b'\n')
        .filter_map(|l| parse_line(l).ok())
        .collect()
}

fn kind(r: &Value) -> &str {
    r["type"].as_str().unwrap_or("")
}

fn step_of(r: &Value) -> Option<&str> {
    r["step"].as_str()
}

fn of_kind<'a>(records: &'a [Value], k: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| kind(r) == k).collect()
}

fn step_records<'a>(records: &'a [Value], k: &str, step: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| kind(r) == k && step_of(r) == Some(step))
        .collect()
}

/// The last word of each step: `started`, `finished` (or resolved `done`), `failed`, or
/// cleared (resolved otherwise).
fn last_words(records: &[Value]) -> BTreeMap<String, &'static str> {
    let mut words = BTreeMap::new();
    for r in records {
        let Some(step) = step_of(r) else { continue };
        let word = match kind(r) {
            "step_started" => "started",
            "step_finished" => "finished",
            "step_failed" => "failed",
            "step_resolved" if r["resolution"] == "done" => "finished",
            "step_resolved" => "cleared",
            _ => continue,
        };
        words.insert(step.to_string(), word);
    }
    words
}

/// Steps that started and have no later word: in doubt.
fn in_doubt(records: &[Value]) -> BTreeSet<String> {
    last_words(records)
        .into_iter()
        .filter(|(_, w)| *w == "started")
        .map(|(s, _)| s)
        .collect()
}

/// Steps whose last word says they are finished.
fn finished(records: &[Value]) -> BTreeSet<String> {
    last_words(records)
        .into_iter()
        .filter(|(_, w)| *w == "finished")
        .map(|(s, _)| s)
        .collect()
}

/// The single `step_resolved` record of `step`.
fn resolution_of<'a>(records: &'a [Value], step: &str) -> &'a Value {
    let resolved = step_records(records, "step_resolved", step);
    assert_eq!(
        resolved.len(),
        1,
        "expected one step_resolved for {step}: {records:#?}"
    );
    resolved[0]
}

/// The journal ends with a successful `run_finished`.
fn assert_succeeded(records: &[Value]) {
    let last = records.last().expect("journal has records");
    assert_eq!(kind(last), "run_finished", "last record: {last}");
    assert_eq!(last["status"], "succeeded", "last record: {last}");
}

/// Records present before resume are kept as they were; resume appended, starting with
/// `run_resumed`. Returns the appended records.
fn appended_by_resume<'a>(before: &[Value], after: &'a [Value]) -> &'a [Value] {
    assert!(
        after.len() > before.len(),
        "resume appended nothing: {after:#?}"
    );
    assert_eq!(
        &after[..before.len()],
        before,
        "resume must only append to the journal"
    );
    let appended = &after[before.len()..];
    assert_eq!(
        kind(&appended[0]),
        "run_resumed",
        "the first record of a resume: {}",
        appended[0]
    );
    appended
}

// ---------------------------------------------------------------------------------------------
// Running opsctl
// ---------------------------------------------------------------------------------------------

fn lock_path(work: &Workdir) -> PathBuf {
    work.state_dir().join("opsctl.lock")
}

/// The lock file's contents, if it holds a complete lock record.
fn lock_info(work: &Workdir) -> Option<Value> {
    let text = fs::read_to_string(lock_path(work)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["id"].is_string().then_some(v)
}

fn apply_cmd(work: &Workdir, args: &[&str]) -> Command {
    let mut cmd = opsctl(work, None);
    cmd.arg("apply").args(args);
    cmd
}

fn apply(work: &Workdir) -> Output {
    run(&mut apply_cmd(work, &["--auto-approve"]))
}

/// `apply`, SIGKILLed by fault injection just before journal line `at` (`N` or `N:torn`).
fn apply_crashing_at(work: &Workdir, at: &str) -> Output {
    let out = run(apply_cmd(work, &["--auto-approve"]).env(FAULT_ENV, at));
    assert_eq!(
        out.code, -1,
        "expected opsctl to be killed before journal line {at}\n{out}"
    );
    out
}

/// `apply --resume --auto-approve EXTRA...`.
fn resume(work: &Workdir, extra: &[&str]) -> Output {
    let mut args = vec!["--resume", "--auto-approve"];
    args.extend_from_slice(extra);
    run(&mut apply_cmd(work, &args))
}

/// Polls `cond` every 50 ms for up to 20 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

/// Whether process `pid` is gone (no longer exists, or a zombie waiting to be reaped).
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
            .unwrap_or(false),
    }
}

/// Sends `signal` (e.g. `INT`) to `pid` with the `kill` command.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// An opsctl running in the background, its output going to files in the workdir. Killed
/// (SIGKILL) if still running when dropped, so a failing test leaves nothing behind.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn spawn(mut cmd: Command, work: &Workdir, label: &str) -> Background {
        let stdout = work.path().join(format!("{label}.stdout"));
        let stderr = work.path().join(format!("{label}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout file"))
            .stderr(File::create(&stderr).expect("create stderr file"));
        let child = cmd.spawn().expect("spawn opsctl");
        Background {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self, code: i32) -> Output {
        Output {
            code,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// Polls `cond` like [`wait_until`], failing early (with its output) if opsctl exits.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "opsctl exited ({status}) while waiting for {what}\n{}",
                    self.output(status.code().unwrap_or(-1))
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}\n{}",
                self.output(0)
            );
            thread::sleep(POLL);
        }
    }

    /// Waits until opsctl exits by itself.
    fn wait(&mut self) -> Output {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.output(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "opsctl did not exit within {EXIT_TIMEOUT:?}\n{}",
                    self.output(-1)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` from outside: SIGKILL, then reap it.
    fn kill9(&mut self) -> Output {
        self.child.kill().expect("SIGKILL opsctl");
        let status = self.child.wait().expect("wait for opsctl");
        assert_eq!(
            status.signal(),
            Some(9),
            "opsctl should have died of SIGKILL: {status}"
        );
        self.output(-1)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1a. SIGKILL between steps
// ---------------------------------------------------------------------------------------------

/// A 24-step chain killed just before journal line `line`, an even number `2j` (the
/// `step_started` of `sj`, or `run_finished` for `j = 25`): `s1..s(j-1)` finished, nothing
/// in doubt. Resume runs the rest, each exactly once.
fn sigkill_between_steps(line: usize) {
    assert!(line % 2 == 0 && (2..=50).contains(&line));
    let work = Workdir::new();
    let steps = linear(24);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, &line.to_string());

    let done = line / 2 - 1;
    assert_eq!(
        effects(&work),
        each(&steps[..done], 1),
        "before the crash, exactly s1..s{done} ran"
    );
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(before.len(), line - 1, "{before:#?}");
    assert_eq!(kind(&before[0]), "run_started");
    assert!(in_doubt(&before).is_empty(), "{before:#?}");
    assert!(of_kind(&before, "run_finished").is_empty());
    assert!(
        lock_path(&work).exists(),
        "the killed apply leaves its lock file behind"
    );

    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stdout
            .contains(&format!("{done} step(s) finished, 0 in doubt, 0 failed")),
        "{out}"
    );
    for s in &steps[..done] {
        assert!(
            out.stdout
                .contains(&format!("{}: {SKIPPED}", addr(&s.name))),
            "{} should be skipped\n{out}",
            s.name
        );
    }
    assert_each_once_except(&work, &steps, &[]);

    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    assert!(of_kind(&after, "step_resolved").is_empty(), "{after:#?}");
    for s in &steps {
        let starts = step_records(&after, "step_started", &addr(&s.name));
        assert_eq!(
            starts.len(),
            1,
            "{} started once in all: {after:#?}",
            s.name
        );
        assert_eq!(starts[0]["attempt"], 1);
    }
    for s in &steps[..done] {
        assert!(
            step_records(appended, "step_started", &addr(&s.name)).is_empty(),
            "{} finished before the crash and must not start again",
            s.name
        );
    }
    assert_succeeded(&after);
    assert!(!lock_path(&work).exists(), "lock released after resume");
}

#[test]
fn sigkill_before_the_first_step_then_resume() {
    sigkill_between_steps(2);
}

#[test]
fn sigkill_between_steps_in_the_middle_then_resume() {
    sigkill_between_steps(20);
}

#[test]
fn sigkill_after_the_last_step_before_run_finished_then_resume() {
    sigkill_between_steps(50);
}

// ---------------------------------------------------------------------------------------------
// 1b. SIGKILL during a step: fault injection before its `step_finished`
// ---------------------------------------------------------------------------------------------

/// A 24-step chain where `s12` is `command` + `extra`, killed just before the
/// `step_finished` of `s12` (line 25): its effect happened, its finish is not recorded.
/// Returns the workdir, the steps, the journal and its records.
fn sigkill_before_finish_of_s12(
    command: &str,
    extra: &str,
) -> (Workdir, Vec<StepSpec>, PathBuf, Vec<Value>) {
    let work = Workdir::new();
    let steps = linear(24);
    work.write("main.hcl", &render_with(&steps, "s12", command, extra));
    apply_crashing_at(&work, "25");
    assert_eq!(effects(&work), each(&steps[..12], 1));
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(before.len(), 24);
    assert_eq!(
        in_doubt(&before),
        BTreeSet::from([addr("s12")]),
        "{before:#?}"
    );
    (work, steps, journal, before)
}

#[test]
fn sigkill_after_a_guarded_steps_effect_is_resolved_done_by_its_guard() {
    let (work, steps, journal, before) = sigkill_before_finish_of_s12(
        "echo s12 >> effects.log; touch done-s12",
        "  creates = \"done-s12\"\n",
    );
    assert!(work.path().join("done-s12").exists());

    let out = resume(&work, &[]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &[]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    let r = resolution_of(appended, &addr("s12"));
    assert_eq!(r["resolution"], "done", "{r}");
    assert!(
        step_records(appended, "step_started", &addr("s12")).is_empty(),
        "the guard says s12 is done: it must not run again"
    );
    assert_succeeded(&after);
}

#[test]
fn sigkill_after_a_plain_steps_effect_stops_resume_then_rerun_repeats_only_it() {
    let (work, steps, journal, before) = sigkill_before_finish_of_s12(&effect_command("s12"), "");
    let bytes = fs::read(&journal).unwrap();

    let out = resume(&work, &[]);
    out.expect_code(1);
    for needle in [
        "`step.exec.s12`",
        "cannot tell whether it took effect",
        "--in-doubt=rerun",
        "--in-doubt=done",
    ] {
        assert!(out.stderr.contains(needle), "missing {needle:?}\n{out}");
    }
    assert_eq!(
        fs::read(&journal).unwrap(),
        bytes,
        "a refused resume leaves the journal alone"
    );
    assert_eq!(effects(&work), each(&steps[..12], 1), "nothing ran");
    assert!(
        !lock_path(&work).exists(),
        "a refused resume releases the lock"
    );

    let out = resume(&work, &["--in-doubt=rerun"]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &["s12"]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    let r = resolution_of(appended, &addr("s12"));
    assert_eq!(r["resolution"], "rerun", "{r}");
    let again = step_records(appended, "step_started", &addr("s12"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["attempt"], 2);
    for s in &steps[..11] {
        assert!(step_records(appended, "step_started", &addr(&s.name)).is_empty());
    }
    assert_succeeded(&after);
}

// ---------------------------------------------------------------------------------------------
// 1b. SIGKILL during a step: a real `kill -9` from outside while the step runs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Slow {
    /// `creates = "done-b5"`, the file made at the end of the command.
    Guarded,
    /// `idempotent = true`.
    Idempotent,
    /// No guard, not idempotent.
    Plain,
}

/// Three chains and a join; `b5` is slow. Starts apply, waits until `b5` runs and chains
/// `a` and `c` are finished (so `b5` is the only step in flight), then `kill -9`s opsctl and
/// checks that `b5`'s command died with it. Returns the workdir, steps, journal, records.
fn kill9_while_b5_runs(variant: Slow) -> (Workdir, Vec<StepSpec>, PathBuf, Vec<Value>) {
    let work = Workdir::new();
    let steps = three_chains_and_join();
    let (tail, extra) = match variant {
        Slow::Guarded => ("; touch done-b5", "  creates = \"done-b5\"\n"),
        Slow::Idempotent => ("", "  idempotent = true\n"),
        Slow::Plain => ("", ""),
    };
    work.write(
        "main.hcl",
        &render_with(&steps, "b5", &slow_once_command("b5", tail), extra),
    );

    let mut bg = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "killed");
    let marker = work.path().join("started-b5");
    let others: BTreeSet<String> = steps
        .iter()
        .filter(|s| !s.name.starts_with('b') && s.name != "join")
        .map(|s| addr(&s.name))
        .collect();
    bg.wait_for("b5 to run and chains a and c to finish", || {
        marker.exists()
            && journal_files(&work)
                .first()
                .is_some_and(|j| finished(&records_so_far(j)).is_superset(&others))
    });
    let shell: u32 = fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .expect("pid in the marker");
    bg.kill9();
    wait_until("b5's command to die with opsctl (PR_SET_PDEATHSIG)", || {
        process_gone(shell)
    });

    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(
        in_doubt(&before),
        BTreeSet::from([addr("b5")]),
        "{before:#?}"
    );
    let mut want = each(&steps, 1);
    for gone in ["b6", "b7", "b8", "join"] {
        want.remove(gone);
    }
    assert_eq!(effects(&work), want, "side effects when killed");
    assert!(!work.path().join("done-b5").exists());
    (work, steps, journal, before)
}

/// Resume re-ran `b5` on its own (step_resolved `rerun`, attempt 2) and the run succeeded.
fn assert_b5_rerun(before: &[Value], after: &[Value]) {
    let appended = appended_by_resume(before, after);
    let r = resolution_of(appended, &addr("b5"));
    assert_eq!(r["resolution"], "rerun", "{r}");
    let again = step_records(appended, "step_started", &addr("b5"));
    assert_eq!(again.len(), 1, "{appended:#?}");
    assert_eq!(again[0]["attempt"], 2);
    for finished_before in finished(before) {
        assert!(
            step_records(appended, "step_started", &finished_before).is_empty(),
            "{finished_before} finished before the crash and must not start again"
        );
    }
    assert_succeeded(after);
}

#[test]
fn kill9_mid_step_with_unsatisfied_guard_reruns_it() {
    let (work, steps, journal, before) = kill9_while_b5_runs(Slow::Guarded);
    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stdout.contains(&format!("{}: {SKIPPED}", addr("a8"))),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &["b5"]);
    assert!(work.path().join("done-b5").exists());
    assert_b5_rerun(&before, &read_records(&journal));
}

#[test]
fn kill9_mid_idempotent_step_reruns_it() {
    let (work, steps, journal, before) = kill9_while_b5_runs(Slow::Idempotent);
    let out = resume(&work, &[]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &["b5"]);
    assert_b5_rerun(&before, &read_records(&journal));
}

/// A plain in-doubt step: resume refuses, naming it, and changes nothing.
fn assert_resume_refuses_b5(
    work: &Workdir,
    journal: &Path,
    want_effects: &BTreeMap<String, usize>,
) {
    let bytes = fs::read(journal).unwrap();
    let out = resume(work, &[]);
    out.expect_code(1);
    for needle in [
        "`step.exec.b5`",
        "cannot tell whether it took effect",
        "--in-doubt=rerun",
        "--in-doubt=done",
    ] {
        assert!(out.stderr.contains(needle), "missing {needle:?}\n{out}");
    }
    assert_eq!(fs::read(journal).unwrap(), bytes, "journal unchanged");
    assert_eq!(&effects(work), want_effects, "nothing ran");
}

#[test]
fn kill9_mid_plain_step_stops_resume_then_done_completes_without_repeating_it() {
    let (work, steps, journal, before) = kill9_while_b5_runs(Slow::Plain);
    assert_resume_refuses_b5(&work, &journal, &effects(&work));

    let out = resume(&work, &["--in-doubt=done"]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &[]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    let r = resolution_of(appended, &addr("b5"));
    assert_eq!(r["resolution"], "done", "{r}");
    assert!(step_records(appended, "step_started", &addr("b5")).is_empty());
    for s in ["b6", "b7", "b8", "join"] {
        assert_eq!(
            step_records(appended, "step_finished", &addr(s)).len(),
            1,
            "{s} ran after b5 was marked done"
        );
    }
    assert_succeeded(&after);
}

#[test]
fn kill9_mid_plain_step_stops_resume_then_rerun_repeats_exactly_it() {
    let (work, steps, journal, before) = kill9_while_b5_runs(Slow::Plain);
    assert_resume_refuses_b5(&work, &journal, &effects(&work));

    let out = resume(&work, &["--in-doubt=rerun"]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &["b5"]);
    assert_b5_rerun(&before, &read_records(&journal));
}

// ---------------------------------------------------------------------------------------------
// 1c. SIGKILL in the middle of a journal write (torn record)
// ---------------------------------------------------------------------------------------------

#[test]
fn torn_step_started_record_is_discarded_with_a_warning() {
    let work = Workdir::new();
    let steps = linear(24);
    work.write("main.hcl", &render(&steps, |_| None));
    // Line 20 is the step_started of s10: half of it is written, then the process dies,
    // before s10's command.
    apply_crashing_at(&work, "20:torn");
    assert_eq!(effects(&work), each(&steps[..9], 1));
    let journal = the_journal(&work);
    let bytes = fs::read(&journal).unwrap();
    assert!(!bytes.ends_with(b"\n"), "the last line is torn");
    let intact = records_so_far(&journal);
    assert_eq!(intact.len(), 19);

    let out = resume(&work, &[]);
    out.expect_success();
    let name = journal.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        out.stderr.contains("ends with a torn record at line 20") && out.stderr.contains(&name),
        "torn-record warning naming {name}\n{out}"
    );
    assert_each_once_except(&work, &steps, &[]);
    // The torn bytes were cut: every line is intact, and the resume starts at line 20.
    let after = read_records(&journal);
    let appended = appended_by_resume(&intact, &after);
    assert!(of_kind(&after, "step_resolved").is_empty());
    assert_eq!(
        step_records(appended, "step_started", &addr("s10"))[0]["attempt"],
        1
    );
    for s in &steps {
        assert_eq!(
            step_records(&after, "step_started", &addr(&s.name)).len(),
            1,
            "{}",
            s.name
        );
    }
    assert_succeeded(&after);
}

#[test]
fn torn_step_finished_record_of_an_idempotent_step_reruns_it() {
    let work = Workdir::new();
    let steps = linear(24);
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s10",
            &effect_command("s10"),
            "  idempotent = true\n",
        ),
    );
    // Line 21 is the step_finished of s10: s10 ran, its finish is half written.
    apply_crashing_at(&work, "21:torn");
    assert_eq!(effects(&work), each(&steps[..10], 1));
    let journal = the_journal(&work);
    let intact = records_so_far(&journal);
    assert_eq!(intact.len(), 20);
    assert_eq!(in_doubt(&intact), BTreeSet::from([addr("s10")]));

    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stderr.contains("ends with a torn record at line 21"),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &["s10"]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&intact, &after);
    assert_eq!(resolution_of(appended, &addr("s10"))["resolution"], "rerun");
    assert_succeeded(&after);
}

// ---------------------------------------------------------------------------------------------
// 1. Many kill points in a parallel procedure; a crash during resume
// ---------------------------------------------------------------------------------------------

/// 25 idempotent steps in three parallel chains and a join, killed before journal line N for
/// several N (which steps are in flight then depends on scheduling). Whatever the state,
/// resume completes; finished steps are not repeated; each in-doubt step is resolved `rerun`
/// and its effect happens exactly once more; steps that never started run exactly once.
#[test]
fn sigkill_at_many_points_of_a_parallel_procedure() {
    let steps = three_chains_and_join();
    // 52 lines in all: run_started, 25 x (started, finished), run_finished.
    for line in [3, 8, 15, 22, 29, 36, 43, 50, 52] {
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &render(&steps, |n| {
                Some(Custom {
                    command: effect_command(n),
                    extra: "  idempotent = true\n".into(),
                })
            }),
        );
        apply_crashing_at(&work, &line.to_string());
        // Let commands killed with opsctl (PR_SET_PDEATHSIG) die before counting.
        thread::sleep(Duration::from_millis(200));
        let journal = the_journal(&work);
        let before = read_records(&journal);
        assert_eq!(before.len(), line - 1, "kill at {line}: {before:#?}");
        let doubt = in_doubt(&before);
        let done = finished(&before);
        let effects_before = effects(&work);
        for s in &steps {
            let a = addr(&s.name);
            let n = effects_before.get(&s.name).copied().unwrap_or(0);
            if done.contains(&a) {
                assert_eq!(n, 1, "kill at {line}: finished {a} ran once");
            } else if !doubt.contains(&a) {
                assert_eq!(n, 0, "kill at {line}: {a} had not started");
            } else {
                assert!(n <= 1, "kill at {line}: in-doubt {a} ran at most once");
            }
        }

        let out = resume(&work, &[]);
        out.expect_success();
        let after = read_records(&journal);
        let appended = appended_by_resume(&before, &after);
        let effects_after = effects(&work);
        for s in &steps {
            let a = addr(&s.name);
            let n = effects_after.get(&s.name).copied().unwrap_or(0);
            if doubt.contains(&a) {
                assert_eq!(resolution_of(appended, &a)["resolution"], "rerun");
                assert_eq!(
                    n,
                    effects_before.get(&s.name).copied().unwrap_or(0) + 1,
                    "kill at {line}: in-doubt {a} re-ran exactly once"
                );
            } else {
                assert_eq!(n, 1, "kill at {line}: {a} ran exactly once\n{out}");
            }
            if done.contains(&a) {
                assert!(step_records(appended, "step_started", &a).is_empty());
            }
        }
        assert_eq!(
            of_kind(appended, "step_resolved").len(),
            doubt.len(),
            "kill at {line}: one resolution per in-doubt step"
        );
        assert_succeeded(&after);
    }
}

#[test]
fn a_crash_during_resume_is_resumed_again() {
    let work = Workdir::new();
    let steps = linear(24);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, "20"); // s1..s9 finished
    let journal = the_journal(&work);

    // The resuming process writes run_resumed (its line 1), then s10 started/finished
    // (2, 3), s11 (4, 5), s12 (6, 7): killed before s13 starts.
    let out = run(apply_cmd(&work, &["--resume", "--auto-approve"]).env(FAULT_ENV, "8"));
    assert_eq!(out.code, -1, "{out}");
    assert_eq!(effects(&work), each(&steps[..12], 1));
    let middle = read_records(&journal);
    assert!(in_doubt(&middle).is_empty());

    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stdout
            .contains("12 step(s) finished, 0 in doubt, 0 failed"),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &[]);
    let after = read_records(&journal);
    appended_by_resume(&middle, &after);
    assert_eq!(of_kind(&after, "run_resumed").len(), 2);
    for s in &steps {
        assert_eq!(
            step_records(&after, "step_started", &addr(&s.name)).len(),
            1,
            "{}",
            s.name
        );
    }
    assert_succeeded(&after);
}

// ---------------------------------------------------------------------------------------------
// 2. Ctrl-C and SIGTERM
// ---------------------------------------------------------------------------------------------

/// `s1` (slow: 2 s) then `s2..s5`. One `signal` once `s1` runs: `s1` finishes, nothing else
/// starts, exit 1 with `run_interrupted`; resume finishes the rest without repeats.
fn interrupt_once_with(signal: &str) {
    let work = Workdir::new();
    let steps = linear(5);
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s1",
            "touch started-s1; sleep 2; echo s1 >> effects.log",
            "",
        ),
    );
    let mut bg = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "apply");
    let marker = work.path().join("started-s1");
    bg.wait_for("s1 to start", || marker.exists());
    send_signal(bg.pid(), signal);
    let out = bg.wait();
    out.expect_code(1);
    assert!(
        out.stderr.contains("Apply interrupted")
            && out.stderr.contains("Continue with `opsctl apply --resume`"),
        "{out}"
    );
    assert_eq!(
        effects(&work),
        each(&steps[..1], 1),
        "s1 finished, nothing else ran"
    );
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(step_records(&before, "step_finished", &addr("s1")).len(), 1);
    for s in &steps[1..] {
        assert!(
            step_records(&before, "step_started", &addr(&s.name)).is_empty(),
            "{} must not start after the interrupt: {before:#?}",
            s.name
        );
    }
    assert_eq!(
        kind(before.last().unwrap()),
        "run_interrupted",
        "{before:#?}"
    );
    assert!(of_kind(&before, "run_finished").is_empty());
    assert!(
        !lock_path(&work).exists(),
        "an interrupted apply releases the lock"
    );

    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stdout.contains(&format!("{}: {SKIPPED}", addr("s1"))),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &[]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    assert!(step_records(appended, "step_started", &addr("s1")).is_empty());
    assert!(of_kind(appended, "step_resolved").is_empty());
    assert_succeeded(&after);
}

#[test]
fn ctrl_c_lets_the_running_step_finish_and_resume_does_the_rest() {
    interrupt_once_with("INT");
}

#[test]
fn sigterm_lets_the_running_step_finish_and_resume_does_the_rest() {
    interrupt_once_with("TERM");
}

#[test]
fn second_ctrl_c_abandons_the_running_step_which_resume_reruns() {
    let work = Workdir::new();
    let steps = linear(4);
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s1",
            &slow_once_command("s1", ""),
            "  idempotent = true\n",
        ),
    );
    let mut bg = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "apply");
    let marker = work.path().join("started-s1");
    bg.wait_for("s1 to start", || marker.exists());
    let shell: u32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    send_signal(bg.pid(), "INT");
    let stdout = bg.stdout.clone();
    bg.wait_for("the first interrupt to be noticed", || {
        fs::read_to_string(&stdout).is_ok_and(|s| s.contains("interrupt received"))
    });
    send_signal(bg.pid(), "INT");
    let started = Instant::now();
    let out = bg.wait();
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the second interrupt must not wait for s1 (~30 s)"
    );
    assert!(out.stderr.contains("Apply interrupted"), "{out}");
    wait_until("s1's command to be killed", || process_gone(shell));
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(in_doubt(&before), BTreeSet::from([addr("s1")]));
    let last = before.last().unwrap();
    assert_eq!(kind(last), "run_interrupted", "{before:#?}");
    assert_eq!(effects(&work), each(&steps[..1], 1));

    let out = resume(&work, &[]);
    out.expect_success();
    assert_each_once_except(&work, &steps, &["s1"]);
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    assert_eq!(resolution_of(appended, &addr("s1"))["resolution"], "rerun");
    assert_succeeded(&after);
}

// ---------------------------------------------------------------------------------------------
// 3. The state lock
// ---------------------------------------------------------------------------------------------

const SLOW_NOOP: &str = r#"
step "noop" "wait" {
  delay = "5s"
}

step "exec" "after" {
  command    = "echo after >> effects.log"
  depends_on = [step.noop.wait]
}
"#;

#[test]
fn lock_blocks_a_second_apply_and_a_stale_lock_is_taken_over() {
    let work = Workdir::new();
    work.write("main.hcl", SLOW_NOOP);

    // A running apply holds the lock.
    let mut first = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "first");
    first.wait_for("the lock file", || lock_info(&work).is_some());
    let info = lock_info(&work).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["pid"], first.pid(), "{info}");
    assert_eq!(info["operation"], "apply", "{info}");
    let holder = format!(
        "{}@{}",
        info["who"].as_str().unwrap(),
        info["host"].as_str().unwrap()
    );
    let lock_bytes = fs::read(lock_path(&work)).unwrap();

    let second = apply(&work);
    second.expect_code(1);
    let pid = first.pid().to_string();
    for needle in [id.as_str(), pid.as_str(), holder.as_str(), "locked"] {
        assert!(
            second.stderr.contains(needle),
            "the refusal must name the holder ({needle:?})\n{second}"
        );
    }
    let second_resume = resume(&work, &[]);
    second_resume.expect_code(1);
    assert!(second_resume.stderr.contains(&id), "{second_resume}");

    let wrong = run(opsctl(&work, None).args(["force-unlock", "0123456789abcdef0123456789abcdef"]));
    assert_ne!(
        wrong.code, 0,
        "force-unlock with a wrong ID must fail\n{wrong}"
    );
    assert!(wrong.stderr.contains(&id), "{wrong}");
    assert_eq!(
        fs::read(lock_path(&work)).unwrap(),
        lock_bytes,
        "the lock is untouched by the refusals"
    );

    let out = first.wait();
    out.expect_success();
    assert!(!lock_path(&work).exists(), "released at the end");
    assert_eq!(
        journal_files(&work).len(),
        1,
        "the refused applies started no run"
    );
    assert_eq!(effects(&work), BTreeMap::from([("after".to_string(), 1)]));

    // A new run is SIGKILLed while the noop waits: its lock file stays, no process holds it.
    let mut killed = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "killed");
    killed.wait_for("the noop to start in the second run", || {
        journal_files(&work).len() == 2
            && !step_records(
                &records_so_far(&journal_files(&work)[1]),
                "step_started",
                "step.noop.wait",
            )
            .is_empty()
    });
    let stale = lock_info(&work).expect("lock of the running apply");
    assert_eq!(stale["pid"], killed.pid());
    let stale_id = stale["id"].as_str().unwrap().to_string();
    killed.kill9();
    assert!(
        lock_path(&work).exists(),
        "a killed apply leaves its lock file"
    );

    // The in-doubt noop needs a decision: see
    // `in_doubt_noop_step_is_rerun_because_it_is_declared_idempotent`.
    let out = resume(&work, &["--in-doubt=rerun"]);
    out.expect_success();
    assert!(
        out.stderr.contains("took over a stale lock") && out.stderr.contains(&stale_id),
        "{out}"
    );
    assert!(!lock_path(&work).exists());
    assert_eq!(effects(&work), BTreeMap::from([("after".to_string(), 2)]));
    let records = read_records(&journal_files(&work)[1]);
    assert_eq!(of_kind(&records, "run_resumed").len(), 1);
    assert_succeeded(&records);

    // A lock left by a crash can also be removed by its ID; the resume then takes no stale lock.
    apply_crashing_at(&work, "2");
    let left = lock_info(&work).expect("lock left by the crash");
    let left_id = left["id"].as_str().unwrap();
    let unlock = run(opsctl(&work, None).args(["force-unlock", left_id]));
    unlock.expect_success();
    assert!(
        !lock_path(&work).exists(),
        "force-unlock removes the lock file"
    );
    let out = resume(&work, &[]);
    out.expect_success();
    assert!(!out.stderr.contains("stale lock"), "{out}");
    assert_eq!(effects(&work), BTreeMap::from([("after".to_string(), 3)]));
}

// ---------------------------------------------------------------------------------------------
// 4. A damaged journal
// ---------------------------------------------------------------------------------------------

#[test]
fn damaged_middle_line_stops_resume_and_changes_nothing() {
    let work = Workdir::new();
    let steps = linear(24);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, "20");
    let journal = the_journal(&work);

    // Flip one byte in the middle of line 5 (the step_finished of s2) of 19 lines.
    let bytes = flip_a_letter_in_line(&journal, 5);

    let out = resume(&work, &[]);
    out.expect_code(1);
    let name = journal.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        out.stderr.contains(&name) && out.stderr.contains("is damaged at line 5"),
        "the error names the file and line 5\n{out}"
    );
    assert_eq!(
        fs::read(&journal).unwrap(),
        bytes,
        "journal bytes unchanged"
    );
    assert_eq!(effects(&work), each(&steps[..9], 1), "nothing ran");
    assert_eq!(journal_files(&work).len(), 1, "no new run");
    assert!(
        !lock_path(&work).exists(),
        "the failed resume released the lock"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Resume refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn resume_with_no_runs_or_after_success_has_nothing_to_resume() {
    let work = Workdir::new();
    let steps = linear(3);
    work.write("main.hcl", &render(&steps, |_| None));

    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("nothing to resume"), "{out}");
    assert!(effects(&work).is_empty());

    apply(&work).expect_success();
    let journal = the_journal(&work);
    let bytes = fs::read(&journal).unwrap();
    let out = resume(&work, &[]);
    out.expect_code(1);
    let id = journal.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        out.stderr.contains("nothing to resume") && out.stderr.contains(&id),
        "{out}"
    );
    assert_eq!(fs::read(&journal).unwrap(), bytes);
    assert_each_once_except(&work, &steps, &[]);
}

#[test]
fn resume_refuses_a_configuration_changed_since_the_crash() {
    let work = Workdir::new();
    let steps = linear(24);
    let original = render(&steps, |_| None);
    work.write("main.hcl", &original);
    apply_crashing_at(&work, "20");
    let journal = the_journal(&work);
    let bytes = fs::read(&journal).unwrap();
    let id = journal.file_stem().unwrap().to_string_lossy().into_owned();

    work.write(
        "main.hcl",
        &render_with(&steps, "s15", "echo s15-changed >> effects.log", ""),
    );
    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("the configuration changed since run `{id}`")),
        "{out}"
    );
    assert_eq!(fs::read(&journal).unwrap(), bytes, "journal unchanged");
    assert_eq!(effects(&work), each(&steps[..9], 1), "nothing ran");

    // With the configuration restored, the run resumes.
    work.write("main.hcl", &original);
    resume(&work, &[]).expect_success();
    assert_each_once_except(&work, &steps, &[]);
}

// ---------------------------------------------------------------------------------------------
// 6. Exactly once: a damaged or forged journal, unfinished runs, a full disk, a live lock
// ---------------------------------------------------------------------------------------------

/// Byte ranges `(start, end_without_newline)` of every line of `bytes`.
fn line_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i));
            start = i + 1;
        }
    }
    out
}

/// Flips one bit of a letter in the second half of journal line `line` (1-based), writes
/// the journal back and returns its new bytes.
fn flip_a_letter_in_line(journal: &Path, line: usize) -> Vec<u8> {
    let mut bytes = fs::read(journal).unwrap();
    let (start, end) = line_ranges(&bytes)[line - 1];
    let pos = (start + 9..end)
        .find(|&i| i >= (start + end) / 2 && bytes[i].is_ascii_alphanumeric())
        .expect("a letter to flip");
    bytes[pos] ^= 0x01;
    fs::write(journal, &bytes).unwrap();
    bytes
}

/// Writes `records` as a journal with consistent sequence numbers and checksums: what a
/// careful forger (or a bug) could produce, which checksums alone cannot catch.
fn write_renumbered(path: &Path, records: &[Value]) {
    let mut out = Vec::new();
    for (seq, r) in (1u64..).zip(records) {
        let mut r = r.clone();
        let obj = r.as_object_mut().unwrap();
        obj.remove("seq");
        let mut fields = serde_json::Map::new();
        fields.insert("seq".into(), seq.into());
        fields.extend(obj.clone());
        let json = serde_json::to_string(&Value::Object(fields)).unwrap();
        out.extend_from_slice(
            format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).as_bytes(),
        );
    }
    fs::write(path, out).unwrap();
}

#[test]
fn a_deleted_step_finished_record_is_damage_named_by_file_and_line() {
    let work = Workdir::new();
    let steps = linear(20);
    work.write("main.hcl", &render(&steps, |_| None));
    // Killed before line 30: s1..s14 finished.
    apply_crashing_at(&work, "30");
    let journal = the_journal(&work);
    let bytes = fs::read(&journal).unwrap();
    let lines = line_ranges(&bytes);
    // Line 11 is the step_finished of s5.
    let (start, end) = lines[10];
    let line: Value = serde_json::from_slice(&bytes[start + 9..end]).unwrap();
    assert_eq!(
        (kind(&line), step_of(&line)),
        ("step_finished", Some(addr("s5").as_str()))
    );
    let mut edited = bytes[..start].to_vec();
    edited.extend_from_slice(&bytes[end + 1..]);
    fs::write(&journal, &edited).unwrap();

    let out = resume(&work, &["--in-doubt=rerun"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("is damaged at line 11") && out.stderr.contains("record 11 is missing"),
        "{out}"
    );
    assert_eq!(effects(&work), each(&steps[..14], 1), "nothing ran again");
    assert_eq!(
        fs::read(&journal).unwrap(),
        edited,
        "the journal is untouched"
    );
}

#[test]
fn a_forged_journal_that_finishes_a_step_before_its_dependency_is_refused() {
    let work = Workdir::new();
    let steps = linear(20);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, "30");
    let journal = the_journal(&work);
    let records = read_records(&journal);
    // Drop s5's step_finished and renumber: every checksum and sequence number is right, but
    // s6..s14 are finished while s5 is only started.
    let forged: Vec<Value> = records
        .iter()
        .filter(|r| !(kind(r) == "step_finished" && step_of(r) == Some(addr("s5").as_str())))
        .cloned()
        .collect();
    write_renumbered(&journal, &forged);

    let out = resume(&work, &["--in-doubt=rerun"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "`{}` is recorded as finished but the step it depends on, `{}`, is not",
            addr("s6"),
            addr("s5")
        )),
        "{out}"
    );
    assert_eq!(effects(&work), each(&steps[..14], 1), "nothing ran again");
    let after = read_records(&journal);
    assert!(of_kind(&after, "run_finished").is_empty(), "{after:#?}");
}

#[test]
fn a_flipped_byte_in_the_complete_last_record_is_damage_not_a_torn_write() {
    let work = Workdir::new();
    let steps = linear(10);
    work.write("main.hcl", &render(&steps, |_| None));
    // Killed before line 9 (step_finished of s4): the last record is s4's step_started.
    apply_crashing_at(&work, "9");
    let journal = the_journal(&work);
    let bytes = flip_a_letter_in_line(&journal, 8);
    assert_eq!(line_ranges(&bytes).len(), 8);

    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("is damaged at line 8"), "{out}");
    assert!(!out.stderr.contains("torn"), "{out}");
    assert_eq!(effects(&work), each(&steps[..4], 1), "s4 is not run again");
    assert_eq!(fs::read(&journal).unwrap(), bytes);
}

#[test]
fn a_plain_apply_after_an_unfinished_run_is_refused_until_discarded_explicitly() {
    let work = Workdir::new();
    let steps = linear(20);
    work.write("main.hcl", &render(&steps, |_| None));
    // Killed before line 10: s1..s4 finished.
    apply_crashing_at(&work, "10");
    let journal = the_journal(&work);
    let id = journal.file_stem().unwrap().to_string_lossy().into_owned();
    let before = fs::read(&journal).unwrap();

    let out = apply(&work);
    out.expect_code(1);
    for needle in [
        format!("the last run `{id}` did not finish"),
        "4 of 20 step(s) finished".to_string(),
        "opsctl apply --resume".to_string(),
        "--discard-unfinished".to_string(),
    ] {
        assert!(out.stderr.contains(&needle), "missing {needle:?}\n{out}");
    }
    assert_eq!(effects(&work), each(&steps[..4], 1), "nothing ran");
    assert_eq!(journal_files(&work).len(), 1, "no new run");
    assert_eq!(fs::read(&journal).unwrap(), before);

    // Starting over takes the explicit flag, and is journaled on both sides.
    let out = run(&mut apply_cmd(
        &work,
        &["--auto-approve", "--discard-unfinished"],
    ));
    out.expect_success();
    assert!(
        out.stderr
            .contains(&format!("discarded unfinished run `{id}`")),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &["s1", "s2", "s3", "s4"]);
    let files = journal_files(&work);
    assert_eq!(files.len(), 2);
    let old = read_records(&files[0]);
    let new = read_records(&files[1]);
    let new_id = files[1].file_stem().unwrap().to_string_lossy().into_owned();
    let last = old.last().unwrap();
    assert_eq!(kind(last), "run_discarded", "{old:#?}");
    assert_eq!(last["by_run"], new_id.as_str());
    assert_eq!(new[0]["discarded_run"], id.as_str());
    assert_succeeded(&new);

    // The discarded run is not resumable; the new one finished.
    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("nothing to resume"), "{out}");
}

#[test]
fn an_empty_newest_journal_is_ignored_with_a_warning_and_the_run_before_resumes() {
    let work = Workdir::new();
    let steps = linear(6);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, "6");
    let journal = the_journal(&work);
    // What an older opsctl left when the disk filled up right after creating a journal.
    let empty = work
        .state_dir()
        .join("journal")
        .join("99991231T235959.999Z-1.jsonl");
    fs::write(&empty, b"").unwrap();

    let out = resume(&work, &[]);
    out.expect_success();
    assert!(
        out.stderr.contains("warning: ignoring empty journal")
            && out.stderr.contains("99991231T235959"),
        "{out}"
    );
    assert_each_once_except(&work, &steps, &[]);
    assert_succeeded(&read_records(&journal));
}

/// A state directory on a tiny tmpfs (in a private mount namespace, `unshare -rm`), filled
/// to the last page: the crashed run's lock file keeps its page, a new journal gets none.
#[test]
fn a_full_disk_when_a_new_run_starts_leaves_the_previous_run_resumable() {
    let work = Workdir::new();
    let steps = linear(6);
    work.write("main.hcl", &render(&steps, |_| None));
    apply_crashing_at(&work, "6");
    let before = fs::read(the_journal(&work)).unwrap();

    let probe = opsctl(&work, None);
    let bin = probe.get_program().to_string_lossy().into_owned();
    let script = format!(
        r#"set -u
small="$PWD/small"
mkdir -p "$small" && mount -t tmpfs -o size=512k tmpfs "$small" || exit 90
cp -a state/. "$small"/
i=0
while dd if=/dev/zero of="$small/fill$i" bs=4096 count=1 2>/dev/null; do i=$((i+1)); done
rm -f "$small/fill$i"
"{bin}" apply --auto-approve --discard-unfinished --state-dir "$small" >full.stdout 2>full.stderr
echo $? > full.code
ls -a "$small/journal" > full.listing
rm -f "$small"/fill*
"{bin}" apply --auto-approve --resume --state-dir "$small" >resume.stdout 2>resume.stderr
echo $? > resume.code
rm -rf state-after && cp -a "$small" state-after
"#
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", &script])
        .current_dir(work.path());
    for (k, v) in probe.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let status = cmd.status().expect("run unshare");
    assert!(
        status.success(),
        "the tmpfs scenario could not run (needs `unshare -rm` and tmpfs): {status}"
    );
    let code = work.read("full.code");
    let stderr = work.read("full.stderr");
    assert_eq!(code.trim(), "1", "{stderr}");
    assert!(
        stderr.contains("no space left on device"),
        "a full disk is said plainly:\n{stderr}"
    );
    let listing = work.read("full.listing");
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(".jsonl")).count(),
        1,
        "no new (empty) journal is left behind: {listing}"
    );
    assert_eq!(
        work.read("resume.code").trim(),
        "0",
        "the previous run resumes once space is free:\n{}",
        work.read("resume.stderr")
    );
    assert_each_once_except(&work, &steps, &[]);
    let files: Vec<PathBuf> = fs::read_dir(work.path().join("state-after/journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let after = read_records(&files[0]);
    assert!(fs::read(&files[0]).unwrap().starts_with(&before));
    assert!(of_kind(&after, "run_discarded").is_empty(), "{after:#?}");
    assert_succeeded(&after);
}

#[test]
fn force_unlock_refuses_while_the_holder_is_alive_unless_forced() {
    let work = Workdir::new();
    work.write("main.hcl", SLOW_NOOP);
    let mut first = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "first");
    first.wait_for("the lock file", || lock_info(&work).is_some());
    let info = lock_info(&work).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    let pid = first.pid().to_string();

    let out = run(opsctl(&work, None).args(["force-unlock", &id]));
    out.expect_code(1);
    assert!(
        out.stderr.contains("held by a live process")
            && out.stderr.contains(&pid)
            && out.stderr.contains("--force"),
        "{out}"
    );
    assert!(lock_path(&work).exists(), "the live lock is kept");
    let second = apply(&work);
    second.expect_code(1);
    assert!(second.stderr.contains("locked"), "{second}");

    let out = run(opsctl(&work, None).args(["force-unlock", "--force", &id]));
    out.expect_success();
    assert!(out.stderr.contains("still running"), "{out}");
    assert!(!lock_path(&work).exists());
    first.wait().expect_success();
    assert_eq!(effects(&work), BTreeMap::from([("after".to_string(), 1)]));
}

// ---------------------------------------------------------------------------------------------
// 7. Crash consistency: killed after every journal record in turn
// ---------------------------------------------------------------------------------------------

/// 30 steps: a chain of 10 plain steps `p1..p10`, then a chain of 10 guarded steps
/// `g1..g10` (`creates`), then 10 idempotent steps `i1..i10` in parallel after `g10`. Plain
/// and guarded steps never run beside another step, so a crash in the journal writer never
/// cuts one of their commands in half (a command cut in half has half an effect, which no
/// engine can count as once).
fn crash_matrix_procedure() -> (Vec<StepSpec>, String) {
    let mut steps = linear(10);
    for s in &mut steps {
        s.name = s.name.replace('s', "p");
        for d in &mut s.deps {
            *d = d.replace('s', "p");
        }
    }
    for i in 1..=10 {
        steps.push(StepSpec {
            name: format!("g{i}"),
            deps: vec![if i == 1 {
                "p10".to_string()
            } else {
                format!("g{}", i - 1)
            }],
        });
    }
    for i in 1..=10 {
        steps.push(StepSpec {
            name: format!("i{i}"),
            deps: vec!["g10".to_string()],
        });
    }
    let text = render(&steps, |name| match &name[..1] {
        "g" => Some(Custom {
            command: format!("echo {name} >> effects.log; touch done-{name}"),
            extra: format!("  creates = \"done-{name}\"\n"),
        }),
        "i" => Some(Custom {
            command: effect_command(name),
            extra: "  idempotent = true\n".into(),
        }),
        _ => None,
    });
    (steps, text)
}

/// One crash point: kill before journal line `at`, resume (deciding a plain in-doubt step as
/// an operator would, from whether its effect is there), and check exactly-once.
fn crash_and_resume_at(at: usize) {
    let work = Workdir::new();
    let (steps, text) = crash_matrix_procedure();
    work.write("main.hcl", &text);
    let out = run(apply_cmd(&work, &["--auto-approve"]).env(FAULT_ENV, at.to_string()));
    assert_eq!(out.code, -1, "line {at}: expected a crash\n{out}");

    if at == 1 {
        // Killed before the run existed: no journal; a new apply runs everything once.
        assert!(journal_files(&work).is_empty());
        assert!(effects(&work).is_empty());
        apply(&work).expect_success();
        assert_each_once_except(&work, &steps, &[]);
        return;
    }
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(before.len(), at - 1, "line {at}");
    let doubt = in_doubt(&before);
    let plain_in_doubt: Vec<&String> = doubt.iter().filter(|s| s.starts_with(&addr("p"))).collect();
    let mut extra: Vec<&str> = Vec::new();
    if let Some(step) = plain_in_doubt.first() {
        // A plain step cannot tell: resume stops and asks.
        let out = resume(&work, &[]);
        out.expect_code(1);
        assert!(out.stderr.contains(step.as_str()), "line {at}\n{out}");
        let name = step.trim_start_matches("step.exec.");
        extra.push(if effects(&work).contains_key(name) {
            "--in-doubt=done"
        } else {
            "--in-doubt=rerun"
        });
    }
    let out = resume(&work, &extra);
    out.expect_success();
    let after = read_records(&journal);
    assert_succeeded(&after);
    let finished_steps = finished(&after);
    for s in &steps {
        assert!(
            finished_steps.contains(&addr(&s.name)),
            "line {at}: {} is not finished: {after:#?}",
            s.name
        );
    }
    // Plain and guarded steps ran exactly once; an idempotent step in doubt ran once or
    // twice (the crash may have come before or after its command), no other repeated.
    let counts = effects(&work);
    for s in &steps {
        let n = counts.get(&s.name).copied().unwrap_or(0);
        let may_repeat = s.name.starts_with('i') && doubt.contains(&addr(&s.name));
        assert!(
            n == 1 || (may_repeat && n == 2),
            "line {at}: {} ran {n} times; in doubt: {doubt:?}; effects: {counts:?}",
            s.name
        );
    }
    // Success was recorded once, at the very end.
    assert_eq!(of_kind(&after, "run_finished").len(), 1, "line {at}");
}

#[test]
fn killed_after_every_journal_record_in_turn_then_resumed_every_step_runs_exactly_once() {
    let (steps, _) = crash_matrix_procedure();
    let total_lines = 1 + 2 * steps.len() + 1;
    assert_eq!(total_lines, 62);
    // Two workers: each crash point is independent.
    let points: Vec<usize> = (1..=total_lines).collect();
    let (a, b): (Vec<usize>, Vec<usize>) = points.iter().partition(|&&p| p % 2 == 0);
    let handles: Vec<_> = [a, b]
        .into_iter()
        .map(|part| {
            thread::spawn(move || {
                for at in part {
                    crash_and_resume_at(at);
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .expect("a crash point failed (see its message above)");
    }
}

// ---------------------------------------------------------------------------------------------
// In doubt: a step type that declares itself idempotent
// ---------------------------------------------------------------------------------------------

/// `noop` declares itself idempotent (`Noop::idempotent` is `true`: it has no side
/// effects), so resume must repeat an in-doubt noop without asking, like an exec step with
/// `idempotent = true`.
#[test]
fn in_doubt_noop_step_is_rerun_because_it_is_declared_idempotent() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        r#"
step "exec" "first" {
  command = "echo first >> effects.log"
}

step "noop" "barrier" {
  depends_on = [step.exec.first]
}

step "exec" "last" {
  command    = "echo last >> effects.log"
  depends_on = [step.noop.barrier]
}
"#,
    );
    // Lines: 1 run_started, 2-3 first, 4 started barrier, 5 finished barrier (killed).
    apply_crashing_at(&work, "5");
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(
        in_doubt(&before),
        BTreeSet::from(["step.noop.barrier".to_string()])
    );

    let out = resume(&work, &[]);
    out.expect_success();
    let after = read_records(&journal);
    let appended = appended_by_resume(&before, &after);
    assert_eq!(
        resolution_of(appended, "step.noop.barrier")["resolution"],
        "rerun"
    );
    assert_eq!(
        effects(&work),
        BTreeMap::from([("first".to_string(), 1), ("last".to_string(), 1)])
    );
    assert_succeeded(&after);
}

/// A sensitive variable is never written to the journal in clear; resume asks for it again
/// and checks it against the recorded digest.
#[test]
fn sensitive_variable_stays_out_of_the_journal_and_is_resupplied_on_resume() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        r#"
variable "token" {
  type      = string
  sensitive = true
}
variable "who" {
  type    = string
  default = "ops"
}
step "exec" "a" {
  command = "echo a >> effects.log"
}
step "exec" "b" {
  command    = "echo b >> effects.log"
  depends_on = [step.exec.a]
}
"#,
    );
    let secret = "s3cr3t-value-123";
    let out = run(apply_cmd(&work, &["--auto-approve"])
        .env(FAULT_ENV, "4")
        .env("OPSCTL_VAR_token", secret));
    assert_eq!(out.code, -1, "{out}");
    let journal = std::fs::read_to_string(the_journal(&work)).unwrap();
    assert!(!journal.contains(secret), "secret in journal:\n{journal}");
    assert!(journal.contains("\"sensitive\":true"), "{journal}");
    assert!(journal.contains("\"who\":\"ops\""), "{journal}");

    // Resume refuses: without the secret, with a different one, or when a non-sensitive
    // variable is given again.
    for (vars, expected) in [
        (&[][..], "variable `token` is sensitive"),
        (
            &["--var", "token=other"][..],
            "differs from the one the run started with",
        ),
        (
            &["--var", "who=me"][..],
            "can only re-supply a sensitive variable",
        ),
    ] {
        let out = resume(&work, vars);
        assert_eq!(out.code, 1, "{out}");
        assert!(out.stderr.contains(expected), "missing {expected:?}\n{out}");
    }
    // With the same value, resume finishes.
    let out =
        run(apply_cmd(&work, &["--resume", "--auto-approve"]).env("OPSCTL_VAR_token", secret));
    assert_eq!(out.code, 0, "{out}");
    let effects = work.read("effects.log");
    assert_eq!(
        effects.lines().filter(|l| *l == "b").count(),
        1,
        "{effects}"
    );
    let journal = std::fs::read_to_string(the_journal(&work)).unwrap();
    assert!(!journal.contains(secret), "secret in journal:\n{journal}");
}

// ---------------------------------------------------------------------------------------------
// 6. Commands: process groups, signals, timeouts
// ---------------------------------------------------------------------------------------------

/// An `apply` in a process group of its own, as a shell puts a foreground job: a terminal's
/// Ctrl-C is SIGINT to that whole group, sent with [`signal_group`].
fn apply_in_own_group(work: &Workdir, args: &[&str]) -> Background {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = apply_cmd(work, args);
    cmd.process_group(0);
    Background::spawn(cmd, work, "apply")
}

/// `kill -SIGNAL -- -PGID`: the signal to every process of the group, as a terminal sends it.
fn signal_group(pgid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} -- -{pgid}: {status}");
}

/// A command that records its effect, then starts a child that writes the pid of its
/// `sleep` to `child.pid` and sleeps `secs` before writing `NAME-late` to `effects.log`, and
/// waits for it: the grandchild is what a process-group kill must reach.
fn with_sleeping_child(name: &str, secs: u32) -> String {
    format!(
        "echo {name} >> effects.log; \
         sh -c 'echo $$ > child.pid.tmp; mv child.pid.tmp child.pid; sleep {secs}; echo {name}-late >> effects.log' & wait"
    )
}

/// The pid in `child.pid` (written by [`with_sleeping_child`]).
fn child_pid(work: &Workdir) -> u32 {
    work.read("child.pid")
        .trim()
        .parse()
        .expect("pid in child.pid")
}

/// Asserts that process `pid` is gone within `within`.
fn assert_gone_within(pid: u32, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !process_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) still runs {within:?} later"
        );
        thread::sleep(POLL);
    }
}

/// Item 2: a terminal's Ctrl-C reaches opsctl's whole process group. The command runs in its
/// own group, so it is not killed: the step finishes (once), the run is interrupted, and
/// resume does the rest without repeating it.
#[test]
fn terminal_ctrl_c_to_the_process_group_lets_the_running_step_finish_once() {
    let work = Workdir::new();
    let steps = linear(3);
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s1",
            "touch started-s1; sleep 2; echo s1 >> effects.log",
            "",
        ),
    );
    let mut bg = apply_in_own_group(&work, &["--auto-approve"]);
    let marker = work.path().join("started-s1");
    bg.wait_for("s1 to start", || marker.exists());
    signal_group(bg.pid(), "INT");
    let out = bg.wait();
    out.expect_code(1);
    assert!(out.stderr.contains("Apply interrupted"), "{out}");
    assert!(!out.to_string().contains("status -1"), "{out}");
    assert_eq!(effects(&work), each(&steps[..1], 1), "s1 finished once");
    let journal = the_journal(&work);
    let before = read_records(&journal);
    assert_eq!(
        finished(&before),
        BTreeSet::from([addr("s1")]),
        "{before:#?}"
    );
    assert!(of_kind(&before, "step_failed").is_empty(), "{before:#?}");

    resume(&work, &[]).expect_success();
    assert_each_once_except(&work, &steps, &[]);
    assert_succeeded(&read_records(&journal));
}

/// Item 2: a second Ctrl-C stops the running command: its whole process group (the child it
/// started too) is terminated, the step is journaled in doubt (not failed), and resume
/// applies the in-doubt rules to it.
#[test]
fn second_terminal_ctrl_c_terminates_the_commands_group_and_leaves_the_step_in_doubt() {
    let work = Workdir::new();
    let steps = linear(3);
    work.write(
        "main.hcl",
        &render_with(&steps, "s1", &with_sleeping_child("s1", 30), ""),
    );
    let mut bg = apply_in_own_group(&work, &["--auto-approve"]);
    let pid_file = work.path().join("child.pid");
    bg.wait_for("s1's child to start", || pid_file.exists());
    let child = child_pid(&work);
    signal_group(bg.pid(), "INT");
    let stdout = bg.stdout.clone();
    bg.wait_for("the first interrupt to be noticed", || {
        fs::read_to_string(&stdout).is_ok_and(|s| s.contains("interrupt received"))
    });
    assert!(
        !process_gone(child),
        "the first Ctrl-C must not reach the command"
    );
    signal_group(bg.pid(), "INT");
    let started = Instant::now();
    let out = bg.wait();
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the second interrupt must not wait for s1 (~30 s)"
    );
    assert!(out.stderr.contains("Apply interrupted"), "{out}");
    assert!(
        out.stderr.contains(&format!("in doubt: {}", addr("s1"))),
        "{out}"
    );
    assert!(!out.to_string().contains("status -1"), "{out}");
    assert_gone_within(child, Duration::from_secs(1), "s1's child");
    let journal = the_journal(&work);
    let before = read_records(&journal);
    let marked = step_records(&before, "step_in_doubt", &addr("s1"));
    assert_eq!(marked.len(), 1, "{before:#?}");
    assert!(
        marked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("second interrupt"),
        "{before:#?}"
    );
    assert!(of_kind(&before, "step_failed").is_empty(), "{before:#?}");
    assert_eq!(kind(before.last().unwrap()), "run_interrupted");

    // Not idempotent, no guard: resume asks; `done` completes the rest without repeating it.
    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains(&format!("`{}`", addr("s1"))), "{out}");
    resume(&work, &["--in-doubt=done"]).expect_success();
    assert_each_once_except(&work, &steps, &[]);
    assert_succeeded(&read_records(&journal));
}

/// Item 2: a command killed by a signal is reported by the signal's name.
#[test]
fn a_command_killed_by_a_signal_is_reported_by_the_signals_name() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &render_with(&linear(2), "s1", "kill -TERM $$", ""),
    );
    let out = apply(&work);
    out.expect_code(1);
    assert!(out.stderr.contains("killed by signal SIGTERM"), "{out}");
    assert!(!out.to_string().contains("status -1"), "{out}");
}

/// Item 3: at the deadline the whole process group is terminated (the child that would write
/// 8 s later too), on time; the step is in doubt, the run failed; resume applies the in-doubt
/// rules.
#[test]
fn a_timeout_terminates_the_whole_group_on_time_and_leaves_the_step_in_doubt() {
    let work = Workdir::new();
    let steps = linear(2);
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s1",
            &with_sleeping_child("s1", 8),
            "  timeout = \"1s\"\n",
        ),
    );
    let started = Instant::now();
    let out = apply(&work);
    let elapsed = started.elapsed();
    out.expect_code(1);
    assert!(
        elapsed < Duration::from_secs(4),
        "a 1 s timeout fired after {elapsed:?}\n{out}"
    );
    assert!(
        out.stderr
            .contains("timed out after 1s; it may have acted, so it is in doubt"),
        "{out}"
    );
    assert_gone_within(child_pid(&work), Duration::from_secs(1), "s1's child");
    let journal = the_journal(&work);
    let before = read_records(&journal);
    let marked = step_records(&before, "step_in_doubt", &addr("s1"));
    assert_eq!(marked.len(), 1, "{before:#?}");
    assert!(
        marked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{before:#?}"
    );
    assert!(of_kind(&before, "step_failed").is_empty(), "{before:#?}");
    assert!(step_records(&before, "step_started", &addr("s2")).is_empty());
    let last = before.last().unwrap();
    assert_eq!(kind(last), "run_finished", "{before:#?}");
    assert_eq!(last["status"], "failed", "{before:#?}");
    assert_eq!(
        effects(&work),
        each(&steps[..1], 1),
        "the child never wrote"
    );

    let out = resume(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains(&format!("`{}`", addr("s1"))), "{out}");
    resume(&work, &["--in-doubt=done"]).expect_success();
    assert_each_once_except(&work, &steps, &[]);
}

/// Item 3: a slow `unless` guard obeys the step's timeout at plan, with a clear error that
/// names the step's block.
#[test]
fn a_slow_unless_guard_times_out_at_plan_with_a_clear_error() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"exec\" \"guarded\" {\n  command = \"echo guarded >> effects.log\"\n  unless  = \"sleep 30\"\n  timeout = \"1s\"\n}\n",
    );
    let started = Instant::now();
    let out = run(opsctl(&work, None).arg("plan"));
    let elapsed = started.elapsed();
    out.expect_code(1);
    assert!(
        elapsed < Duration::from_secs(4),
        "the guard's 1 s timeout fired after {elapsed:?}\n{out}"
    );
    assert!(
        out.stderr
            .contains("`unless` guard `sleep 30` timed out after 1s"),
        "{out}"
    );
    assert!(out.stderr.contains("main.hcl:1:"), "{out}");
}

/// Item 11: a command printing 50 MB finishes; what is kept of its output is capped (head and
/// tail), the journal line stays small, and the output says how much was cut.
#[test]
fn huge_command_output_is_capped_and_says_how_much_was_cut() {
    let work = Workdir::new();
    // Whole lines of 11 bytes, about 50 MB.
    const TOTAL: u64 = 11 * 4_545_455;
    work.write(
        "main.hcl",
        &render_with(
            &linear(1),
            "s1",
            &format!("yes 0123456789 | head -c {TOTAL}; echo s1 >> effects.log"),
            "",
        ),
    );
    apply(&work).expect_success();
    let journal = the_journal(&work);
    let size = fs::metadata(&journal).unwrap().len();
    assert!(size < 300_000, "journal is {size} bytes");
    let records = read_records(&journal);
    let done = step_records(&records, "step_finished", &addr("s1"));
    let stdout = done[0]["outputs"]["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("0123456789\n0123456789\n"),
        "{}",
        &stdout[..40]
    );
    assert!(stdout.ends_with("0123456789\n"));
    let cut = TOTAL - 64 * 1024;
    assert!(
        stdout.contains(&format!("cut {cut} bytes of {TOTAL}")),
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("cut"))
            .unwrap_or("no cut line")
    );
    assert!(stdout.len() < 64 * 1024 + 200, "{}", stdout.len());
}

/// Item 12: `opsctl apply | head -3`: a closed standard output is not a failure of the run.
/// The apply goes on to the end, journals every step and exits 0.
#[test]
fn apply_piped_into_a_reader_that_closes_early_finishes_every_step() {
    use std::io::BufRead as _;
    let work = Workdir::new();
    let steps = linear(20);
    // s1 waits until the reader has gone, so that later output meets a closed pipe.
    work.write(
        "main.hcl",
        &render_with(
            &steps,
            "s1",
            "n=0; while [ ! -e reader-closed ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n+1)); done; echo s1 >> effects.log",
            "",
        ),
    );
    let mut child = apply_cmd(&work, &["--auto-approve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(work.path().join("apply.stderr")).unwrap())
        .spawn()
        .expect("spawn opsctl");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a line");
    }
    drop(reader);
    fs::write(work.path().join("reader-closed"), "").unwrap();
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("opsctl did not exit");
        }
        thread::sleep(POLL);
    };
    let stderr = work.read("apply.stderr");
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_each_once_except(&work, &steps, &[]);
    let records = read_records(&the_journal(&work));
    assert_eq!(finished(&records).len(), 20, "{records:#?}");
    assert_succeeded(&records);
}

/// Item 14: a missing or non-directory `working_dir` is named as such, not blamed on the
/// command; also for a guard at plan.
#[test]
fn a_bad_working_dir_is_named_not_blamed_on_the_command() {
    let work = Workdir::new();
    work.write("a-file", "");
    for (dir, problem) in [
        ("/nonexistent/dir", "does not exist"),
        ("a-file", "is not a directory"),
    ] {
        work.write(
            "main.hcl",
            &render_with(
                &linear(1),
                "s1",
                "echo hi",
                &format!("  working_dir = {}\n", hcl_string(dir)),
            ),
        );
        let out = apply(&work);
        out.expect_code(1);
        assert!(
            out.stderr
                .contains(&format!("working directory `{dir}` {problem}")),
            "{out}"
        );
        assert!(!out.stderr.contains("cannot start"), "{out}");
        fs::remove_dir_all(work.state_dir()).unwrap();

        work.write(
            "main.hcl",
            &render_with(
                &linear(1),
                "s1",
                "echo hi",
                &format!("  working_dir = {}\n  unless = \"true\"\n", hcl_string(dir)),
            ),
        );
        let out = run(opsctl(&work, None).arg("plan"));
        out.expect_code(1);
        assert!(
            out.stderr
                .contains(&format!("working directory `{dir}` {problem}")),
            "{out}"
        );
    }
}

/// If opsctl dies (SIGKILL) while a command runs, what the command started dies too: not
/// only the command's own process (PDEATHSIG) but its whole process group.
#[test]
fn kill9_of_opsctl_ends_the_commands_children_too() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &render_with(&linear(2), "s1", &with_sleeping_child("s1", 30), ""),
    );
    let mut bg = Background::spawn(apply_cmd(&work, &["--auto-approve"]), &work, "apply");
    let pid_file = work.path().join("child.pid");
    bg.wait_for("s1's child to start", || pid_file.exists());
    let child = child_pid(&work);
    bg.kill9();
    assert_gone_within(
        child,
        Duration::from_secs(5),
        "s1's child after opsctl died",
    );
    assert_eq!(effects(&work), BTreeMap::from([("s1".to_string(), 1)]));
}

/// Item 12, for `plan`: its text (larger than a pipe's buffer) meets a reader that closed
/// after one line; opsctl exits 0 without a panic.
#[test]
fn plan_piped_into_a_reader_that_closes_early_exits_0() {
    use std::io::BufRead as _;
    let work = Workdir::new();
    let steps: String = (0..2000)
        .map(|i| format!("step \"noop\" \"n{i}\" {{\n  result = \"{i}\"\n}}\n"))
        .collect();
    work.write("main.hcl", &steps);
    let mut child = opsctl(&work, None)
        .arg("plan")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(work.path().join("plan.stderr")).unwrap())
        .spawn()
        .expect("spawn opsctl");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a line");
    drop(reader);
    let status = child.wait().expect("wait for opsctl");
    let stderr = work.read("plan.stderr");
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
