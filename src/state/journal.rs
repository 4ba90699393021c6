//! The append-only, durable journal of one apply run: one file per run at
//! `<state_dir>/journal/<run_id>.jsonl`, one checksummed JSON record per line, written by a
//! group-committing background thread so that an `append` returns only once its record is
//! on disk.
//!
//! Line format: `<crc32 of the JSON bytes as 8 lowercase hex digits> <compact JSON>\n`. The
//! JSON object starts with `"seq"`, the record's 1-based sequence number in the file: a
//! missing, duplicated or reordered record is damage reported with file and line, not a gap
//! that replay would silently read past. A journal file never exists without its first
//! record: it is created by writing `run_started` to a temporary file and linking it in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{io_err, parent_dir, sync_dir, StateError};

/// The journal format version this build writes and reads (recorded in `run_started`).
pub const JOURNAL_FORMAT_VERSION: u32 = 2;

/// Name of the testing-only fault-injection environment variable; see [`JournalWriter`].
pub const FAULT_ENV: &str = "OPSCTL_FAULT_JOURNAL_KILL_AT";

/// One journal record. Serialised as JSON with a `type` tag in snake_case
/// (e.g. `{"type":"step_started",...}`). Timestamps (`at`) are RFC 3339 UTC strings as made
/// by [`super::now_rfc3339`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first record of every journal: what is being applied, by whom.
    RunStarted {
        /// The run ID (also the journal's file stem).
        run_id: String,
        /// Journal format version; must equal [`JOURNAL_FORMAT_VERSION`] to be read.
        format_version: u32,
        /// The operation (runbook) being applied.
        operation: String,
        /// Digest of the configuration the plan was made from.
        config_digest: String,
        /// The variable values of the run.
        variables: serde_json::Map<String, serde_json::Value>,
        /// User who started the run.
        who: String,
        /// Host the run started on.
        host: String,
        /// Process ID of the starting opsctl.
        pid: u32,
        /// When the run started.
        at: String,
        /// Number of steps in the plan.
        n_steps: usize,
        /// The unfinished run this one replaced (`apply --discard-unfinished`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discarded_run: Option<String>,
        /// The digest of the saved plan this run applies (`opsctl apply FILE`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan_digest: Option<String>,
    },
    /// An interrupted run was picked up again by a (possibly different) process.
    RunResumed {
        /// The run ID being resumed.
        run_id: String,
        /// User who resumed.
        who: String,
        /// Host the resume runs on.
        host: String,
        /// Process ID of the resuming opsctl.
        pid: u32,
        /// When the run was resumed.
        at: String,
    },
    /// A step is about to act; until a later finish/fail/resolve it is *in doubt*.
    StepStarted {
        /// Step address.
        step: String,
        /// 1-based attempt number.
        attempt: u32,
        /// When the attempt started.
        at: String,
        /// What the step type chose before acting ([`crate::provider::StepType::prepare`], e.g.
        /// the `restartedAt` value of a rollout restart), so that resume can tell from the live
        /// object whether the attempt acted. Absent for step types that choose nothing (and in
        /// journals written before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prepared: Option<serde_json::Value>,
    },
    /// A step completed.
    StepFinished {
        /// Step address.
        step: String,
        /// When it finished.
        at: String,
        /// The action that was taken (e.g. `create`, `update`, `run`).
        action: String,
        /// The step's outputs.
        outputs: serde_json::Value,
        /// What was observed after the action.
        observed: serde_json::Value,
    },
    /// A step failed.
    StepFailed {
        /// Step address.
        step: String,
        /// When it failed.
        at: String,
        /// The error message.
        error: String,
        /// Set when the step's `retry` tries it again after this long (milliseconds): the
        /// failure is one attempt's, and a `step_started` with the next attempt number follows.
        /// Absent otherwise (and in journals written before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// A step was stopped while it acted (its timeout passed, or the run was aborted): it may
    /// or may not have taken effect, so resume treats it as in doubt.
    StepInDoubt {
        /// Step address.
        step: String,
        /// When it was stopped.
        at: String,
        /// Why it is in doubt, e.g. `timed out after 1s; ...`.
        reason: String,
    },
    /// An operator decided the outcome of an in-doubt or failed step.
    StepResolved {
        /// Step address.
        step: String,
        /// When it was resolved.
        at: String,
        /// `done` marks the step finished; anything else (e.g. `redo`) makes it run again.
        resolution: String,
        /// Why the operator decided so.
        reason: String,
    },
    /// The run was stopped before completion (signal, failure policy, ...).
    RunInterrupted {
        /// When it was stopped.
        at: String,
        /// Why.
        reason: String,
    },
    /// An unfinished run was given up by `apply --discard-unfinished`: it will not be
    /// resumed; its finished steps may run again in the new run.
    RunDiscarded {
        /// When it was discarded.
        at: String,
        /// User who discarded it.
        who: String,
        /// Host of the discarding opsctl.
        host: String,
        /// Process ID of the discarding opsctl.
        pid: u32,
        /// The run that replaces it.
        by_run: String,
    },
    /// The run ended.
    RunFinished {
        /// When it ended.
        at: String,
        /// Final status (e.g. `succeeded`, `failed`).
        status: String,
    },
    /// A guard decision of the run (issue 11), e.g. it started outside its maintenance window
    /// with `--ignore-window`. Changes no step's state.
    RunNote {
        /// When.
        at: String,
        /// Who.
        who: String,
        /// What, e.g. `ignore_window`.
        note: String,
        /// Details for people.
        detail: String,
    },
}

impl Record {
    /// The snake_case `type` tag of this record, e.g. `step_started`.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::RunStarted { .. } => "run_started",
            Record::RunResumed { .. } => "run_resumed",
            Record::StepStarted { .. } => "step_started",
            Record::StepFinished { .. } => "step_finished",
            Record::StepFailed { .. } => "step_failed",
            Record::StepInDoubt { .. } => "step_in_doubt",
            Record::StepResolved { .. } => "step_resolved",
            Record::RunInterrupted { .. } => "run_interrupted",
            Record::RunDiscarded { .. } => "run_discarded",
            Record::RunFinished { .. } => "run_finished",
            Record::RunNote { .. } => "run_note",
        }
    }
}

/// The directory holding all journals: `<state_dir>/journal`.
pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// The journal file of run `run_id`: `<state_dir>/journal/<run_id>.jsonl`.
pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    journal_dir(state_dir).join(format!("{run_id}.jsonl"))
}

/// A new run ID such as `20261121T213800.123Z-1a2b`: the UTC start time to the millisecond,
/// then the process ID in hex. IDs sort by start time as strings; within one process they
/// are strictly increasing (the time is bumped by 1 ms if needed), across processes the pid
/// keeps them unique.
pub fn new_run_id() -> String {
    static LAST_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = chrono::Utc::now().timestamp_millis();
    let mut last = LAST_MS.load(Ordering::Relaxed);
    let ms = loop {
        let candidate = if now > last {
            now
        } else {
            last.saturating_add(1)
        };
        match LAST_MS.compare_exchange_weak(last, candidate, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break candidate,
            Err(actual) => last = actual,
        }
    };
    let time = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now);
    format!(
        "{}-{:x}",
        time.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

/// The newest run in a state directory, as found by [`latest_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRun {
    /// The run ID (the journal's file stem).
    pub id: String,
    /// The journal file.
    pub path: PathBuf,
    /// Newer journal files that were passed over because they are empty: left by a crash
    /// (or a full disk) of an older opsctl between creating a journal and writing its first
    /// record. They hold nothing; the caller should warn about them.
    pub skipped_empty: Vec<PathBuf>,
}

/// The newest run in `state_dir`: chosen by greatest run ID among the non-empty `*.jsonl`
/// files of [`journal_dir`] (hidden files, such as a journal being created, are ignored).
///
/// Returns `None` if the journal directory is missing or holds no non-empty journal.
///
/// # Errors
///
/// [`StateError::Io`] if the journal directory exists but cannot be listed.
pub fn latest_run(state_dir: &Path) -> Result<Option<LatestRun>, StateError> {
    let dir = journal_dir(state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&dir, e)),
    };
    // (id, path, empty)
    let mut runs: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if id.is_empty() || id.starts_with('.') {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        runs.push((id.to_string(), path, meta.len() == 0));
    }
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    let mut skipped_empty = Vec::new();
    for (id, path, empty) in runs {
        if empty {
            skipped_empty.push(path);
            continue;
        }
        return Ok(Some(LatestRun {
            id,
            path,
            skipped_empty,
        }));
    }
    Ok(None)
}

/// Encode `record` as compact JSON (without its sequence number; the writer adds it).
fn encode_json(record: &Record) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(record).map_err(|e| StateError::Encode(e.to_string()))
}

/// Frame the JSON of a record (as made by [`encode_json`]: an object) as journal line
/// number `seq`: `{"seq":N,` is spliced in front of its fields, the checksum is put before
/// it and a newline after it.
fn frame_line(seq: u64, json: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    // The checksum goes first but covers what follows: leave room, fill it in after.
    let crc_at = out.len();
    out.extend_from_slice(b"00000000 ");
    let body_at = out.len();
    let _ = write!(out, "{{\"seq\":{seq}");
    match json.get(1..) {
        Some(rest) if rest != b"}" => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
    let crc = format!("{:08x}", crc32fast::hash(&out[body_at..]));
    out[crc_at..crc_at + 8].copy_from_slice(crc.as_bytes());
    out.push(b'\n');
}

/// Encode `record` as journal line number `seq`, trailing newline included.
#[cfg(test)]
fn encode_line(record: &Record, seq: u64) -> Result<Vec<u8>, StateError> {
    let mut line = Vec::new();
    frame_line(seq, &encode_json(record)?, &mut line);
    Ok(line)
}

/// The result of [`read_journal`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalRead {
    /// Every intact record, in file order. The first, if any, is `RunStarted`.
    pub records: Vec<Record>,
    /// The incomplete last line left by a crash mid-write, if there is one.
    pub torn_tail: Option<TornTail>,
}

impl JournalRead {
    /// The sequence number the next appended record gets: one more than the number of
    /// intact records (sequence numbers start at 1 and have no gaps).
    pub fn next_seq(&self) -> u64 {
        self.records.len() as u64 + 1
    }
}

/// An incomplete last journal line (a write cut short by a crash). [`JournalWriter::open_append`]
/// cuts it off before appending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number of the torn line.
    pub line: usize,
    /// Length of the torn line in bytes; it is the last `bytes` bytes of the file.
    pub bytes: usize,
}

/// Why one complete line could not be read.
enum LineError {
    /// Framing, checksum, sequence or content failure.
    Damaged(String),
    /// A `run_started` record with a format version this build does not read.
    Version(u32),
}

/// Verify the checksum of one line (without its newline) and return its JSON bytes.
fn checked_json(line: &[u8]) -> Result<&[u8], LineError> {
    if line.len() < 9 || line[8] != b' ' {
        return Err(LineError::Damaged(
            "line does not start with an 8-digit checksum and a space".into(),
        ));
    }
    let hex = std::str::from_utf8(&line[..8])
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| LineError::Damaged("checksum is not 8 hex digits".into()))?;
    let expected = u32::from_str_radix(hex, 16)
        .map_err(|e| LineError::Damaged(format!("checksum `{hex}` is unreadable: {e}")))?;
    let json = &line[9..];
    let actual = crc32fast::hash(json);
    if actual != expected {
        return Err(LineError::Damaged(format!(
            "checksum mismatch: line says `{expected:08x}`, content hashes to `{actual:08x}`"
        )));
    }
    Ok(json)
}

/// Parse line number `line_no` (1-based): checksum, sequence number, then the record; the
/// first line must be a supported `run_started`, no later one may be.
fn parse_line(line: &[u8], line_no: usize) -> Result<Record, LineError> {
    let json = checked_json(line)?;
    let mut value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| LineError::Damaged(format!("invalid JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    if line_no == 1 {
        if kind != "run_started" {
            return Err(LineError::Damaged(format!(
                "first record is `{kind}`, expected `run_started`"
            )));
        }
        if let Some(found) = value.get("format_version").and_then(|v| v.as_u64()) {
            if found != u64::from(JOURNAL_FORMAT_VERSION) {
                return Err(LineError::Version(u32::try_from(found).unwrap_or(u32::MAX)));
            }
        }
    } else if kind == "run_started" {
        return Err(LineError::Damaged(
            "`run_started` may only be the first record".into(),
        ));
    }
    let seq = value
        .as_object_mut()
        .and_then(|o| o.remove("seq"))
        .and_then(|s| s.as_u64())
        .ok_or_else(|| LineError::Damaged("record has no sequence number `seq`".into()))?;
    let expected = line_no as u64;
    if seq < expected {
        return Err(LineError::Damaged(format!(
            "record {seq} appears again where record {expected} belongs (a duplicated or reordered record)"
        )));
    }
    if seq > expected {
        return Err(LineError::Damaged(if seq == expected + 1 {
            format!("record {expected} is missing (found record {seq} in its place)")
        } else {
            format!(
                "records {expected} to {} are missing (found record {seq} in place of record {expected})",
                seq - 1
            )
        }));
    }
    serde_json::from_value(value).map_err(|e| LineError::Damaged(format!("invalid record: {e}")))
}

/// Read and verify the journal at `path` without modifying it.
///
/// Only a last line *without its trailing newline* is torn — reported in
/// [`JournalRead::torn_tail`], not an error: that is what a crash in the middle of a write
/// leaves. A complete line (newline-terminated) that fails its checksum is damage, wherever
/// it is. An empty file gives no records.
///
/// # Errors
///
/// - [`StateError::Io`] if the file cannot be read.
/// - [`StateError::Damaged`] with the 1-based line number if any complete line fails its
///   checksum or framing, is not a valid record, carries the wrong sequence number (a
///   missing, duplicated or reordered record), if the first record is not `run_started`, or
///   a later one is.
/// - [`StateError::UnsupportedVersion`] if the `run_started` format version is not
///   [`JOURNAL_FORMAT_VERSION`].
pub fn read_journal(path: &Path) -> Result<JournalRead, StateError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_err(path, e))?;

    let mut records = Vec::new();
    let mut torn_tail = None;
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < bytes.len() {
        line_no += 1;
        let rest = &bytes[start..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            torn_tail = Some(TornTail {
                line: line_no,
                bytes: rest.len(),
            });
            break;
        };
        match parse_line(&rest[..newline], line_no) {
            Ok(record) => records.push(record),
            Err(LineError::Damaged(reason)) => {
                return Err(StateError::Damaged {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                });
            }
            Err(LineError::Version(found)) => {
                return Err(StateError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: JOURNAL_FORMAT_VERSION,
                });
            }
        }
        start += newline + 1;
    }
    Ok(JournalRead { records, torn_tail })
}

/// What a run did, reconstructed from its records by [`replay`]; used to resume it.
///
/// A step's state is decided by the last record that names it ("last word").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// The run's `RunStarted` record, if present.
    pub run_started: Option<Record>,
    /// Finished steps: `(action, outputs, observed)`. Steps resolved as `done` appear with
    /// action `resolved` and `Null` outputs and observed.
    pub finished: BTreeMap<String, (String, serde_json::Value, serde_json::Value)>,
    /// Steps that started but have no later finish, failure or resolution: they may or may
    /// not have acted.
    pub in_doubt: BTreeSet<String>,
    /// Steps whose last word is a failure, with the error message.
    pub failed: BTreeMap<String, String>,
    /// The status of `RunFinished`, if the run finished.
    pub finished_status: Option<String>,
    /// The run that replaced this one, if it was discarded (`apply --discard-unfinished`).
    pub discarded_by: Option<String>,
    /// Number of `RunInterrupted` plus `RunResumed` records.
    pub interruptions: usize,
    /// The highest attempt number seen per step.
    pub attempts: BTreeMap<String, u32>,
    /// What the latest `StepStarted` of each step that has not finished or failed since
    /// recorded as prepared (see [`Record::StepStarted`]).
    pub prepared: BTreeMap<String, serde_json::Value>,
}

/// Reconstruct what a run did from its `records` (as returned by [`read_journal`]).
///
/// A `StepResolved` with resolution `done` counts as finished; any other resolution clears
/// the step from every set so that it runs again. Never fails.
pub fn replay(records: &[Record]) -> Replay {
    let mut r = Replay::default();
    for record in records {
        match record {
            Record::RunStarted { .. } => r.run_started = Some(record.clone()),
            Record::RunResumed { .. } | Record::RunInterrupted { .. } => r.interruptions += 1,
            Record::StepStarted {
                step,
                attempt,
                prepared,
                ..
            } => {
                r.finished.remove(step);
                r.failed.remove(step);
                match prepared {
                    Some(p) => r.prepared.insert(step.clone(), p.clone()),
                    None => r.prepared.remove(step),
                };
                r.in_doubt.insert(step.clone());
                let best = r.attempts.entry(step.clone()).or_insert(*attempt);
                *best = (*best).max(*attempt);
            }
            Record::StepFinished {
                step,
                action,
                outputs,
                observed,
                ..
            } => {
                r.in_doubt.remove(step);
                r.failed.remove(step);
                r.prepared.remove(step);
                r.finished.insert(
                    step.clone(),
                    (action.clone(), outputs.clone(), observed.clone()),
                );
            }
            Record::StepFailed { step, error, .. } => {
                r.in_doubt.remove(step);
                r.prepared.remove(step);
                r.finished.remove(step);
                r.failed.insert(step.clone(), error.clone());
            }
            Record::StepInDoubt { step, .. } => {
                r.finished.remove(step);
                r.failed.remove(step);
                r.in_doubt.insert(step.clone());
            }
            Record::StepResolved {
                step, resolution, ..
            } => {
                r.in_doubt.remove(step);
                r.failed.remove(step);
                r.finished.remove(step);
                if resolution == "done" {
                    r.prepared.remove(step);
                    r.finished.insert(
                        step.clone(),
                        (
                            "resolved".to_string(),
                            serde_json::Value::Null,
                            serde_json::Value::Null,
                        ),
                    );
                }
            }
            Record::RunFinished { status, .. } => r.finished_status = Some(status.clone()),
            Record::RunDiscarded { by_run, .. } => r.discarded_by = Some(by_run.clone()),
            Record::RunNote { .. } => {}
        }
    }
    r
}

/// Counters of a [`JournalWriter`], for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written to the file.
    pub records: u64,
    /// Group-commit batches written (one `write` + one `fdatasync` each, normally).
    pub batches: u64,
    /// `fdatasync` calls made.
    pub syncs: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
}

/// Lines written by all journal writers of this process; drives fault injection.
static LINES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Testing-only crash injection parsed from [`FAULT_ENV`].
#[derive(Debug, Clone, Copy)]
struct Fault {
    at: u64,
    torn: bool,
}

fn fault_from_env() -> Result<Option<Fault>, StateError> {
    let Some(raw) = std::env::var_os(FAULT_ENV) else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy().into_owned();
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (n, torn) = match value.split_once(':') {
        Some((n, "torn")) => (n, true),
        Some(_) => return Err(StateError::Fault(raw)),
        None => (value, false),
    };
    match n.trim().parse::<u64>() {
        Ok(at) if at >= 1 => Ok(Some(Fault { at, torn })),
        _ => Err(StateError::Fault(raw)),
    }
}

/// The error a failed batch reports to its waiters (io::Error is not Clone).
#[derive(Debug, Clone)]
struct WriteFailure {
    kind: io::ErrorKind,
    message: String,
}

impl WriteFailure {
    fn new(what: &str, e: &io::Error) -> Self {
        WriteFailure {
            kind: e.kind(),
            message: format!("{what}: {e}"),
        }
    }
}

type BatchResult = Result<(), WriteFailure>;

enum Reply {
    Async(oneshot::Sender<BatchResult>),
    Blocking(mpsc::Sender<BatchResult>),
}

struct Msg {
    /// The record's JSON (see [`encode_json`]); the writer frames it with its sequence number.
    json: Vec<u8>,
    reply: Reply,
}

struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    done: oneshot::Receiver<()>,
    thread: JoinHandle<()>,
    counters: Arc<Counters>,
}

/// Durable, group-committing journal writer. Cheap to clone; `Send + Sync`.
///
/// A dedicated thread owns the file. Appenders queue encoded records; the thread takes the
/// first queued record, drains everything else already queued, numbers them (the sequence
/// numbers follow the order of the file), writes the batch with one `write`, calls
/// `fdatasync` once and then wakes every appender of the batch. So many concurrent appenders
/// share one fsync. After an I/O error the writer is poisoned: that batch and every later
/// append fail. The thread ends when the last clone is dropped.
///
/// **Testing only — fault injection.** If the environment variable
/// `OPSCTL_FAULT_JOURNAL_KILL_AT` is `N` (or `N:torn`) when the writer is created or opened,
/// the writer sends `SIGKILL` to its own process just before writing the `N`-th line
/// (1-based, counted over all journal writes of this process, the first record of a new
/// journal included). With `:torn` it first writes and syncs the first half of that line,
/// leaving a torn record. In this mode lines are written one at a time so the count is
/// exact. Never set it outside crash tests.
#[derive(Clone)]
pub struct JournalWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl JournalWriter {
    /// Create the journal file at `path` for a new run, holding `first` (the run's
    /// `RunStarted`) as record 1, and start the writer thread.
    ///
    /// The file appears atomically with its first record: the record is written and fsynced
    /// to a hidden temporary file in the same directory, which is then hard-linked to `path`
    /// (failing if `path` exists) and the directory fsynced. So a crash or a full disk never
    /// leaves a journal without its header; on failure the temporary file is removed.
    /// Creates missing parent directories.
    ///
    /// # Errors
    ///
    /// - [`StateError::Io`] if directories or the file cannot be created or written — in
    ///   particular if the file already exists (`AlreadyExists`) or the disk is full
    ///   (`StorageFull`) — or the fsyncs or thread start fail.
    /// - [`StateError::Encode`] if `first` cannot be encoded.
    /// - [`StateError::Fault`] if `OPSCTL_FAULT_JOURNAL_KILL_AT` is set but malformed.
    pub fn create(path: &Path, first: &Record) -> Result<JournalWriter, StateError> {
        let fault = fault_from_env()?;
        let dir = parent_dir(path);
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut line = Vec::new();
        frame_line(1, &encode_json(first)?, &mut line);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = (|| -> Result<(), StateError> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, e))?;
            let counters = Counters::default();
            write_lines(&mut file, &line, &[line.len()], fault, &counters)
                .map_err(|f| io_err(&tmp, io::Error::new(f.kind, f.message)))?;
            fs::hard_link(&tmp, path).map_err(|e| io_err(path, e))
        })();
        let _ = fs::remove_file(&tmp);
        written?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let writer = Self::start(path, file, fault, 2)?;
        writer
            .inner
            .counters
            .records
            .fetch_add(1, Ordering::Relaxed);
        Ok(writer)
    }

    /// Open an existing journal to append to it (resuming a run). `read` is what
    /// [`read_journal`] returned for this file: if it found a torn tail, the file is first
    /// truncated to the end of the last intact line and fsynced; appended records continue
    /// its sequence numbers ([`JournalRead::next_seq`]).
    ///
    /// # Errors
    ///
    /// - [`StateError::Io`] if the file cannot be opened, truncated or synced.
    /// - [`StateError::Damaged`] if the torn tail does not match the file (the cut would not
    ///   land after a newline — the file changed since it was read), or if there is no torn
    ///   tail but the file does not end with a newline (appending would corrupt it).
    /// - [`StateError::Fault`] if `OPSCTL_FAULT_JOURNAL_KILL_AT` is set but malformed.
    pub fn open_append(path: &Path, read: &JournalRead) -> Result<JournalWriter, StateError> {
        let fault = fault_from_env()?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len();
        let damaged = |line: usize, reason: String| StateError::Damaged {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let end = match &read.torn_tail {
            Some(torn) => {
                let cut = u64::try_from(torn.bytes)
                    .ok()
                    .and_then(|b| len.checked_sub(b))
                    .ok_or_else(|| {
                        damaged(
                            torn.line,
                            format!(
                                "torn tail of `{}` bytes is longer than the file (`{len}` bytes)",
                                torn.bytes
                            ),
                        )
                    })?;
                if cut > 0
                    && last_byte_before(&mut file, cut).map_err(|e| io_err(path, e))? != b'\n'
                {
                    return Err(damaged(
                        torn.line,
                        format!(
                            "torn tail of `{}` bytes does not start a line; the journal changed since it was read",
                            torn.bytes
                        ),
                    ));
                }
                file.set_len(cut).map_err(|e| io_err(path, e))?;
                file.sync_all().map_err(|e| io_err(path, e))?;
                cut
            }
            None => len,
        };
        if end > 0 && last_byte_before(&mut file, end).map_err(|e| io_err(path, e))? != b'\n' {
            let line = fs::read(path)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1)
                .unwrap_or(0);
            return Err(damaged(
                line,
                "the journal ends with an incomplete line; read it and pass its torn tail".into(),
            ));
        }
        Self::start(path, file, fault, read.next_seq())
    }

    fn start(
        path: &Path,
        file: File,
        fault: Option<Fault>,
        next_seq: u64,
    ) -> Result<JournalWriter, StateError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (done_tx, done) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("opsctl-journal".into())
            .spawn(move || {
                writer_loop(file, &rx, fault, &thread_counters, next_seq);
                drop(done_tx);
            })
            .map_err(|e| io_err(path, e))?;
        Ok(JournalWriter {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                tx,
                done,
                thread,
                counters,
            }),
        })
    }

    /// The journal file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Counters of records written, batches and `fdatasync` calls so far.
    pub fn stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
        }
    }

    fn stopped(&self) -> StateError {
        io_err(
            &self.inner.path,
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "journal writer thread has stopped",
            ),
        )
    }

    fn failure(&self, f: WriteFailure) -> StateError {
        io_err(&self.inner.path, io::Error::new(f.kind, f.message))
    }

    fn submit(&self, record: &Record, reply: Reply) -> Result<(), StateError> {
        let json = encode_json(record)?;
        self.inner
            .tx
            .send(Msg { json, reply })
            .map_err(|_| self.stopped())
    }

    /// Append `record` and wait until it is durable (written and `fdatasync`ed). Many
    /// concurrent calls share one fsync. If the future is dropped early the record is still
    /// written, but without confirmation.
    ///
    /// # Errors
    ///
    /// - [`StateError::Encode`] if the record cannot be encoded.
    /// - [`StateError::Io`] naming the journal if the write or sync of its batch failed, if
    ///   an earlier one failed (the writer is poisoned), or the writer thread is gone.
    pub async fn append(&self, record: &Record) -> Result<(), StateError> {
        let (tx, rx) = oneshot::channel();
        self.submit(record, Reply::Async(tx))?;
        match rx.await {
            Ok(result) => result.map_err(|f| self.failure(f)),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Queue `record` now, in order after every record queued before it, and return a handle
    /// to wait for its durability later. Because the journal is one append-only file synced
    /// in order, any later record that is waited for makes this one durable too: apply
    /// queues a step's `step_finished` and lets its dependents' `step_started` (which they
    /// wait for) carry it to disk, saving one fsync wait per step in a chain.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append), for encoding or a stopped writer.
    pub fn enqueue(&self, record: &Record) -> Result<Durable, StateError> {
        let (tx, rx) = oneshot::channel();
        self.submit(record, Reply::Async(tx))?;
        Ok(Durable {
            rx,
            writer: self.clone(),
        })
    }

    /// Like [`append`](Self::append) but blocks the calling thread; for non-async callers.
    /// Do not call from inside an async task (it would block an executor thread).
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    pub fn append_blocking(&self, record: &Record) -> Result<(), StateError> {
        let (tx, rx) = mpsc::channel();
        self.submit(record, Reply::Blocking(tx))?;
        match rx.recv() {
            Ok(result) => result.map_err(|f| self.failure(f)),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Drop this handle; if it is the last one, wait (without blocking the executor) until
    /// the writer thread has written everything queued and closed the file. If other
    /// clones exist it only drops this one.
    pub async fn close(self) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return;
        };
        let Inner {
            tx, done, thread, ..
        } = inner;
        drop(tx);
        let _ = done.await;
        let _ = thread.join();
    }
}

/// A queued record (see [`JournalWriter::enqueue`]); [`Durable::wait`] resolves once it is
/// written and synced.
pub struct Durable {
    rx: oneshot::Receiver<BatchResult>,
    writer: JournalWriter,
}

impl Durable {
    /// Waits until the record is durable.
    ///
    /// # Errors
    ///
    /// As [`JournalWriter::append`].
    pub async fn wait(self) -> Result<(), StateError> {
        match self.rx.await {
            Ok(result) => result.map_err(|f| self.writer.failure(f)),
            Err(_) => Err(self.writer.stopped()),
        }
    }
}

/// The byte at offset `end - 1` of `file` (`end` >= 1).
fn last_byte_before(file: &mut File, end: u64) -> io::Result<u8> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(end - 1))?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

fn writer_loop(
    mut file: File,
    rx: &mpsc::Receiver<Msg>,
    fault: Option<Fault>,
    c: &Counters,
    mut next_seq: u64,
) {
    let mut poisoned: Option<WriteFailure> = None;
    // Framed lines of a batch, back to back, and where each ends; reused across batches.
    let mut buf: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match &poisoned {
            Some(f) => Err(WriteFailure {
                kind: f.kind,
                message: format!("journal writer failed earlier: {}", f.message),
            }),
            None => {
                buf.clear();
                ends.clear();
                for msg in &batch {
                    frame_line(next_seq, &msg.json, &mut buf);
                    next_seq += 1;
                    ends.push(buf.len());
                }
                write_lines(&mut file, &buf, &ends, fault, c)
            }
        };
        if let Err(f) = &result {
            poisoned.get_or_insert_with(|| f.clone());
        }
        for msg in batch {
            // A waiter that gave up (dropped its future) is not an error.
            let _ = match msg.reply {
                Reply::Async(tx) => tx.send(result.clone()).is_ok(),
                Reply::Blocking(tx) => tx.send(result.clone()).is_ok(),
            };
        }
    }
}

fn sync(file: &File, c: &Counters) -> BatchResult {
    c.syncs.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
        .map_err(|e| WriteFailure::new("cannot sync journal", &e))
}

/// Writes `buf` (framed lines back to back; line `i` ends at `ends[i]`) with one `write` (one
/// line at a time under fault injection), then one `fdatasync`.
fn write_lines(
    file: &mut File,
    buf: &[u8],
    ends: &[usize],
    fault: Option<Fault>,
    c: &Counters,
) -> BatchResult {
    let write_err = |e: io::Error| WriteFailure::new("cannot write journal", &e);
    match fault {
        None => {
            file.write_all(buf).map_err(write_err)?;
            LINES_WRITTEN.fetch_add(ends.len() as u64, Ordering::Relaxed);
        }
        Some(fault) => {
            let mut start = 0;
            for &end in ends {
                let line = &buf[start..end];
                start = end;
                let n = LINES_WRITTEN.fetch_add(1, Ordering::Relaxed) + 1;
                if n == fault.at {
                    if fault.torn {
                        file.write_all(&line[..line.len() / 2]).map_err(write_err)?;
                    }
                    sync(file, c)?;
                    kill_self();
                }
                file.write_all(line).map_err(write_err)?;
            }
        }
    }
    sync(file, c)?;
    c.records.fetch_add(ends.len() as u64, Ordering::Relaxed);
    c.batches.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Fault injection: die as abruptly as a crash would.
fn kill_self() -> ! {
    // SAFETY: plain syscalls with no memory arguments.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::thread::sleep(std::time::Duration::from_secs(5));
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn started(run_id: &str) -> Record {
        let mut variables = serde_json::Map::new();
        variables.insert("cluster".into(), json!("prod-eu"));
        Record::RunStarted {
            run_id: run_id.into(),
            format_version: JOURNAL_FORMAT_VERSION,
            operation: "rotate-certs".into(),
            config_digest: "sha256:abc".into(),
            variables,
            who: "alice".into(),
            host: "box".into(),
            pid: 42,
            at: "2026-11-21T21:38:00.123Z".into(),
            n_steps: 3,
            discarded_run: None,
            plan_digest: None,
        }
    }

    fn step_started(step: &str, attempt: u32) -> Record {
        Record::StepStarted {
            step: step.into(),
            attempt,
            at: "t".into(),
            prepared: None,
        }
    }

    fn step_finished(step: &str) -> Record {
        Record::StepFinished {
            step: step.into(),
            at: "t".into(),
            action: "update".into(),
            outputs: json!({"id": step}),
            observed: json!({"ok": true}),
        }
    }

    fn all_kinds() -> Vec<Record> {
        vec![
            started("r1"),
            Record::RunResumed {
                run_id: "r1".into(),
                who: "bob".into(),
                host: "h2".into(),
                pid: 7,
                at: "t".into(),
            },
            step_started("a", 1),
            step_finished("a"),
            Record::StepFailed {
                step: "b".into(),
                at: "t".into(),
                error: "boom \"quoted\"\nnewline".into(),
                retry_in_ms: None,
            },
            Record::StepResolved {
                step: "b".into(),
                at: "t".into(),
                resolution: "done".into(),
                reason: "checked by hand".into(),
            },
            step_started("c", 1),
            Record::StepInDoubt {
                step: "c".into(),
                at: "t".into(),
                reason: "timed out after 1s; it may have acted".into(),
            },
            Record::RunInterrupted {
                at: "t".into(),
                reason: "SIGINT".into(),
            },
            Record::RunDiscarded {
                at: "t".into(),
                who: "carol".into(),
                host: "h3".into(),
                pid: 8,
                by_run: "r2".into(),
            },
            Record::RunFinished {
                at: "t".into(),
                status: "succeeded".into(),
            },
        ]
    }

    fn raw_journal(records: &[Record]) -> Vec<u8> {
        raw_journal_from(records, 1)
    }

    /// Lines for `records` numbered from `first_seq`.
    fn raw_journal_from(records: &[Record], first_seq: u64) -> Vec<u8> {
        records
            .iter()
            .zip(first_seq..)
            .flat_map(|(r, seq)| encode_line(r, seq).unwrap())
            .collect()
    }

    fn line_with_bad_crc(record: &Record, seq: u64) -> Vec<u8> {
        let mut line = encode_line(record, seq).unwrap();
        line[0] = if line[0] == b'0' { b'1' } else { b'0' };
        line
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "r1");
        let records = all_kinds();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = JournalWriter::create(&path, &records[0]).unwrap();
            for r in &records[1..4] {
                w.append(r).await.unwrap();
            }
            w.close().await;
        });
        let w = JournalWriter::open_append(&path, &read_journal(&path).unwrap()).unwrap();
        for r in &records[4..] {
            w.append_blocking(r).unwrap();
        }
        drop(w);
        let read = read_journal(&path).unwrap();
        assert_eq!(read.torn_tail, None);
        assert_eq!(read.records, records);

        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), records.len());
        for (seq, line) in (1..).zip(text.lines()) {
            let (crc, json) = line.split_once(' ').unwrap();
            assert_eq!(crc.len(), 8);
            assert!(crc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(crc, format!("{:08x}", crc32fast::hash(json.as_bytes())));
            let prefix = format!("{{\"seq\":{seq},\"type\":\"");
            assert!(json.starts_with(&prefix), "{json}");
        }
    }

    #[test]
    fn create_refuses_an_existing_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "r1");
        drop(JournalWriter::create(&path, &started("r1")).unwrap());
        let before = fs::read(&path).unwrap();
        let err = JournalWriter::create(&path, &started("r2")).unwrap_err();
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "the existing journal is untouched"
        );
        let names: Vec<_> = fs::read_dir(journal_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        match err {
            StateError::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn run_ids_are_unique_sortable_and_well_formed() {
        let ids: Vec<String> = (0..200).map(|_| new_run_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        let id = &ids[0];
        let (time, pid) = id.split_once('-').unwrap();
        assert_eq!(time.len(), "20261121T213800.123Z".len(), "{id}");
        assert!(chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.3fZ").is_ok());
        assert_eq!(
            u32::from_str_radix(pid, 16).unwrap(),
            std::process::id(),
            "{id}"
        );
    }

    #[test]
    fn latest_run_picks_the_greatest_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest_run(dir.path()).unwrap(), None);
        let jdir = journal_dir(dir.path());
        fs::create_dir_all(&jdir).unwrap();
        assert_eq!(latest_run(dir.path()).unwrap(), None);
        for id in [
            "20261121T213800.123Z-10",
            "20261122T080000.000Z-2",
            "20261121T235959.999Z-ff",
        ] {
            fs::write(journal_path(dir.path(), id), b"x").unwrap();
        }
        fs::write(jdir.join("zzz.tmp"), b"x").unwrap();
        fs::write(jdir.join(".zzz.jsonl.tmp-1"), b"x").unwrap();
        fs::write(jdir.join(".zzz.jsonl"), b"x").unwrap();
        let latest = latest_run(dir.path()).unwrap().unwrap();
        assert_eq!(latest.id, "20261122T080000.000Z-2");
        assert_eq!(latest.path, journal_path(dir.path(), &latest.id));
        assert!(latest.skipped_empty.is_empty());

        // Newer empty journals (left by a crash between creating a file and writing its
        // first record, by older versions) are passed over and reported.
        let empty = journal_path(dir.path(), "20261123T000000.000Z-1");
        fs::write(&empty, b"").unwrap();
        let latest = latest_run(dir.path()).unwrap().unwrap();
        assert_eq!(latest.id, "20261122T080000.000Z-2");
        assert_eq!(latest.skipped_empty, vec![empty]);
    }

    #[test]
    fn missing_newline_on_last_line_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut bytes = raw_journal(&[started("r"), step_started("a", 1)]);
        let third = encode_line(&step_finished("a"), 3).unwrap();
        bytes.extend_from_slice(&third[..third.len() / 2]);
        fs::write(&path, &bytes).unwrap();

        let read = read_journal(&path).unwrap();
        assert_eq!(read.records, vec![started("r"), step_started("a", 1)]);
        assert_eq!(
            read.torn_tail,
            Some(TornTail {
                line: 3,
                bytes: third.len() / 2
            })
        );
        // A complete-looking line without its newline is torn too.
        let mut bytes = raw_journal(&[started("r")]);
        bytes.extend_from_slice(&third[..third.len() - 1]);
        fs::write(&path, &bytes).unwrap();
        let read = read_journal(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.torn_tail.unwrap().bytes, third.len() - 1);
        // Reading never modifies the file.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_complete_last_line_that_fails_its_checksum_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut bytes = raw_journal(&[started("r"), step_started("a", 1)]);
        let bad = line_with_bad_crc(&step_finished("a"), 3);
        bytes.extend_from_slice(&bad);
        fs::write(&path, &bytes).unwrap();
        match read_journal(&path).unwrap_err() {
            StateError::Damaged { line, reason, .. } => {
                assert_eq!(line, 3);
                assert!(reason.contains("checksum mismatch"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // One flipped byte in the JSON of a complete final record: damage too.
        let mut bytes = raw_journal(&[started("r"), step_started("a", 1)]);
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_journal(&path).unwrap_err(),
            StateError::Damaged { line: 2, .. }
        ));
        // Zero-filled garbage without a newline (a size update without the data) is torn.
        let mut bytes = raw_journal(&[started("r")]);
        bytes.extend_from_slice(&[0u8; 40]);
        fs::write(&path, &bytes).unwrap();
        let read = read_journal(&path).unwrap();
        assert_eq!(read.torn_tail, Some(TornTail { line: 2, bytes: 40 }));
    }

    #[test]
    fn missing_duplicated_or_reordered_records_are_damage_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let records = [
            started("r"),
            step_started("a", 1),
            step_finished("a"),
            step_started("b", 1),
            step_finished("b"),
        ];
        let lines: Vec<Vec<u8>> = records
            .iter()
            .zip(1..)
            .map(|(r, seq)| encode_line(r, seq).unwrap())
            .collect();
        let check = |order: &[usize], line: usize, says: &str| {
            let bytes: Vec<u8> = order.iter().flat_map(|&i| lines[i].clone()).collect();
            fs::write(&path, bytes).unwrap();
            match read_journal(&path).unwrap_err() {
                StateError::Damaged {
                    line: l, reason, ..
                } => {
                    assert_eq!(l, line, "{order:?}: {reason}");
                    assert!(reason.contains(says), "{order:?}: {reason}");
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        check(&[0, 1, 3, 4], 3, "record 3 is missing");
        check(&[0, 1, 4], 3, "records 3 to 4 are missing");
        check(&[0, 1, 2, 2, 3, 4], 4, "record 3 appears again");
        check(&[0, 2, 1, 3, 4], 2, "record 2 is missing");
        // The last complete record deleted looks like a crash before it was written: the
        // step is in doubt, which resume's rules handle.
        let bytes: Vec<u8> = [0, 1, 2, 3]
            .iter()
            .flat_map(|&i| lines[i].clone())
            .collect();
        fs::write(&path, bytes).unwrap();
        assert_eq!(read_journal(&path).unwrap().records.len(), 4);
    }

    #[test]
    fn damaged_middle_line_is_an_error_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut bytes = raw_journal(&[started("r"), step_started("a", 1)]);
        bytes.extend_from_slice(&line_with_bad_crc(&step_finished("a"), 3));
        bytes.extend_from_slice(&raw_journal_from(&[step_started("b", 1)], 4));
        fs::write(&path, &bytes).unwrap();
        match read_journal(&path).unwrap_err() {
            StateError::Damaged {
                path: p,
                line,
                reason,
            } => {
                assert_eq!(p, path);
                assert_eq!(line, 3);
                assert!(reason.contains("checksum mismatch"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn valid_checksum_with_invalid_record_is_damaged_even_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        // Missing field `attempt`, correct checksum.
        let json = br#"{"seq":2,"type":"step_started","step":"a","at":"t"}"#;
        let mut bytes = raw_journal(&[started("r")]);
        bytes.extend_from_slice(format!("{:08x} ", crc32fast::hash(json)).as_bytes());
        bytes.extend_from_slice(json);
        bytes.push(b'\n');
        fs::write(&path, &bytes).unwrap();
        match read_journal(&path).unwrap_err() {
            StateError::Damaged { line, reason, .. } => {
                assert_eq!(line, 2);
                assert!(reason.contains("attempt"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn first_record_must_be_a_supported_run_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        fs::write(&path, raw_journal(&[step_started("a", 1), started("r")])).unwrap();
        match read_journal(&path).unwrap_err() {
            StateError::Damaged { line, reason, .. } => {
                assert_eq!(line, 1);
                assert!(reason.contains("`step_started`"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }

        let mut future = started("r");
        if let Record::RunStarted { format_version, .. } = &mut future {
            *format_version = 3;
        }
        fs::write(&path, raw_journal(&[future])).unwrap();
        match read_journal(&path).unwrap_err() {
            StateError::UnsupportedVersion {
                found, supported, ..
            } => assert_eq!((found, supported), (3, 2)),
            other => panic!("unexpected {other:?}"),
        }
        // A version-1 journal (no sequence numbers) is refused by its version.
        let json = serde_json::to_vec(&started("r")).unwrap();
        let json = String::from_utf8(json)
            .unwrap()
            .replace("\"format_version\":2", "\"format_version\":1");
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        fs::write(&path, line).unwrap();
        assert!(matches!(
            read_journal(&path).unwrap_err(),
            StateError::UnsupportedVersion { found: 1, .. }
        ));

        fs::write(&path, raw_journal(&[started("r"), started("r")])).unwrap();
        assert!(matches!(
            read_journal(&path).unwrap_err(),
            StateError::Damaged { line: 2, .. }
        ));

        fs::write(&path, b"").unwrap();
        let read = read_journal(&path).unwrap();
        assert!(read.records.is_empty() && read.torn_tail.is_none());
    }

    #[test]
    fn open_append_cuts_the_torn_tail_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let good = raw_journal(&[started("r"), step_started("a", 1)]);
        let mut bytes = good.clone();
        let third = encode_line(&step_finished("a"), 3).unwrap();
        bytes.extend_from_slice(&third[..20]);
        fs::write(&path, &bytes).unwrap();

        let read = read_journal(&path).unwrap();
        let torn = read.torn_tail.clone().unwrap();
        // Without the torn tail, appending would corrupt the journal: refused.
        let without = JournalRead {
            records: read.records.clone(),
            torn_tail: None,
        };
        assert!(matches!(
            JournalWriter::open_append(&path, &without).unwrap_err(),
            StateError::Damaged { .. }
        ));
        // A torn tail that does not fit the file is refused too.
        let wrong = TornTail {
            line: 3,
            bytes: torn.bytes + 3,
        };
        let wrong = JournalRead {
            records: read.records.clone(),
            torn_tail: Some(wrong),
        };
        assert!(matches!(
            JournalWriter::open_append(&path, &wrong).unwrap_err(),
            StateError::Damaged { .. }
        ));
        assert_eq!(fs::read(&path).unwrap(), bytes, "refusals must not modify");

        assert_eq!(torn.line, 3);
        let w = JournalWriter::open_append(&path, &read).unwrap();
        assert_eq!(fs::read(&path).unwrap(), good);
        let resumed = Record::RunResumed {
            run_id: "r".into(),
            who: "bob".into(),
            host: "h".into(),
            pid: 9,
            at: "t".into(),
        };
        w.append_blocking(&resumed).unwrap();
        w.append_blocking(&step_finished("a")).unwrap();
        drop(w);
        let read = read_journal(&path).unwrap();
        assert_eq!(read.torn_tail, None);
        assert_eq!(
            read.records,
            vec![
                started("r"),
                step_started("a", 1),
                resumed,
                step_finished("a")
            ]
        );
    }

    #[test]
    fn concurrent_appends_are_durable_and_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "r");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let stats = rt.block_on(async {
            let w = JournalWriter::create(&path, &started("r")).unwrap();
            let mut tasks = Vec::new();
            for i in 0..1000 {
                let w = w.clone();
                tasks.push(tokio::spawn(async move {
                    w.append(&step_started(&format!("step.{i}"), 1)).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let stats = w.stats();
            w.close().await;
            stats
        });
        eprintln!("1001 appends (1000 concurrent): {stats:?}");
        assert_eq!(stats.records, 1001);
        assert!(
            stats.syncs < 1000,
            "group commit should share fsyncs: {stats:?}"
        );
        assert_eq!(stats.syncs, stats.batches);

        let read = read_journal(&path).unwrap();
        assert_eq!(read.torn_tail, None);
        assert_eq!(read.records.len(), 1001);
        let steps: BTreeSet<String> = read.records[1..]
            .iter()
            .map(|r| match r {
                Record::StepStarted { step, .. } => step.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(steps.len(), 1000);
    }

    #[test]
    fn writer_is_send_sync_and_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<JournalWriter>();
    }

    #[test]
    fn io_error_poisons_the_writer() {
        let dev_full = Path::new("/dev/full");
        if !dev_full.exists() {
            return;
        }
        let w = JournalWriter::open_append(dev_full, &JournalRead::default()).unwrap();
        let first = w.append_blocking(&started("r")).unwrap_err();
        assert!(matches!(first, StateError::Io { .. }), "{first:?}");
        assert!(first.to_string().contains("/dev/full"), "{first}");
        assert!(
            first.to_string().starts_with("no space left on device"),
            "a full disk is said plainly: {first}"
        );
        let second = w.append_blocking(&step_started("a", 1)).unwrap_err();
        assert!(
            second.to_string().contains("failed earlier"),
            "later appends must fail: {second}"
        );
        assert_eq!(w.stats().records, 0);
    }

    #[test]
    fn a_prepared_value_round_trips_is_optional_and_replays_until_the_step_finishes() {
        let with = Record::StepStarted {
            step: "s".into(),
            attempt: 1,
            at: "t".into(),
            prepared: Some(serde_json::json!({ "restarted_at": "2026-01-01T00:00:00Z" })),
        };
        let line = encode_line(&with, 2).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("\"prepared\":{\"restarted_at\""), "{text}");
        let back = parse_line(&line[..line.len() - 1], 2).ok().unwrap();
        assert_eq!(back, with);
        // A record without the field (older journals, step types that prepare nothing) reads
        // as None, and None is not written.
        let without = step_started("s", 1);
        let line = encode_line(&without, 2).unwrap();
        assert!(!String::from_utf8_lossy(&line).contains("prepared"));
        assert_eq!(
            parse_line(&line[..line.len() - 1], 2).ok().unwrap(),
            without
        );

        let r = replay(&[started("r"), with.clone()]);
        assert_eq!(
            r.prepared.get("s"),
            Some(&serde_json::json!({ "restarted_at": "2026-01-01T00:00:00Z" }))
        );
        let r = replay(&[started("r"), with, step_finished("s")]);
        assert!(r.prepared.is_empty());
    }

    #[test]
    fn replay_classifies_steps_by_their_last_word() {
        let failed = |step: &str, error: &str| Record::StepFailed {
            step: step.into(),
            at: "t".into(),
            error: error.into(),
            retry_in_ms: None,
        };
        let resolved = |step: &str, resolution: &str| Record::StepResolved {
            step: step.into(),
            at: "t".into(),
            resolution: resolution.into(),
            reason: "r".into(),
        };
        let records = vec![
            started("r"),
            step_started("done", 1),
            step_finished("done"),
            step_started("doubt", 1),
            step_started("fail", 1),
            failed("fail", "boom"),
            step_started("retried", 1),
            failed("retried", "first"),
            step_started("retried", 2),
            step_finished("retried"),
            step_started("rerun", 1),
            step_finished("rerun"),
            step_started("rerun", 2),
            step_started("manual", 1),
            resolved("manual", "done"),
            step_started("timed", 1),
            Record::StepInDoubt {
                step: "timed".into(),
                at: "t".into(),
                reason: "timed out".into(),
            },
            step_started("redo", 3),
            failed("redo", "x"),
            resolved("redo", "redo"),
            Record::RunInterrupted {
                at: "t".into(),
                reason: "SIGTERM".into(),
            },
            Record::RunResumed {
                run_id: "r".into(),
                who: "a".into(),
                host: "h".into(),
                pid: 1,
                at: "t".into(),
            },
            Record::RunFinished {
                at: "t".into(),
                status: "failed".into(),
            },
        ];
        let r = replay(&records);
        assert_eq!(r.run_started, Some(started("r")));
        assert_eq!(
            r.finished.keys().cloned().collect::<Vec<_>>(),
            vec!["done", "manual", "retried"]
        );
        assert_eq!(
            r.finished["done"],
            ("update".into(), json!({"id": "done"}), json!({"ok": true}))
        );
        assert_eq!(
            r.finished["manual"],
            (
                "resolved".into(),
                serde_json::Value::Null,
                serde_json::Value::Null
            )
        );
        assert_eq!(
            r.in_doubt.iter().cloned().collect::<Vec<_>>(),
            vec!["doubt", "rerun", "timed"]
        );
        assert_eq!(
            r.failed,
            BTreeMap::from([("fail".to_string(), "boom".to_string())])
        );
        assert_eq!(r.finished_status.as_deref(), Some("failed"));
        assert_eq!(r.interruptions, 2);
        assert_eq!(r.attempts["retried"], 2);
        assert_eq!(r.attempts["redo"], 3);
        assert_eq!(r.attempts["done"], 1);
        assert!(!r.attempts.contains_key("never"));
    }

    const FAULT_CHILD_DIR: &str = "OPSCTL_TEST_FAULT_CHILD_DIR";

    /// Child half of `fault_injection_kills_the_process`; does nothing when run normally.
    #[test]
    fn fault_injection_child() {
        let Some(dir) = std::env::var_os(FAULT_CHILD_DIR) else {
            return;
        };
        let path = journal_path(Path::new(&dir), "crash");
        let w = JournalWriter::create(&path, &started("crash")).unwrap();
        for i in 0..5 {
            w.append_blocking(&step_started(&format!("s{i}"), 1))
                .unwrap();
        }
    }

    fn run_fault_child(dir: &Path, fault: &str) -> std::process::ExitStatus {
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::fault_injection_child"),
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(FAULT_CHILD_DIR, dir)
            .env(FAULT_ENV, fault)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    }

    #[test]
    fn fault_injection_kills_the_process() {
        use std::os::unix::process::ExitStatusExt;

        let dir = tempfile::tempdir().unwrap();
        let status = run_fault_child(dir.path(), "3");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        let read = read_journal(&journal_path(dir.path(), "crash")).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.torn_tail, None);

        let dir = tempfile::tempdir().unwrap();
        let status = run_fault_child(dir.path(), "4:torn");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        let read = read_journal(&journal_path(dir.path(), "crash")).unwrap();
        assert_eq!(read.records.len(), 3);
        let line4 = encode_line(&step_started("s2", 1), 4).unwrap();
        assert_eq!(
            read.torn_tail,
            Some(TornTail {
                line: 4,
                bytes: line4.len() / 2
            })
        );

        let dir = tempfile::tempdir().unwrap();
        let status = run_fault_child(dir.path(), "3:sideways");
        assert!(!status.success() && status.signal().is_none(), "{status:?}");
    }
}
