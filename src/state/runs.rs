//! The audit log: `state/runs.jsonl`, one JSON record per `apply` invocation (a first attempt or
//! a resume): who, when, host, plan digest, and each step's result, attempts and duration.
//! Append-only: each record is one `write` of a whole line to a file opened with `O_APPEND`,
//! then fsync (and the directory's fsync when the file was created). A torn last line (the
//! process died mid-write) is skipped by readers.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::Record;
use super::StateError;

/// The format version of a run record.
pub const RUNS_FORMAT_VERSION: u32 = 1;

/// The audit log's path under a state directory.
pub fn runs_path(state_dir: &Path) -> PathBuf {
    state_dir.join("runs.jsonl")
}

/// One step's part in a run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    /// Step instance address.
    pub step: String,
    /// `changed`, `ran`, `unchanged`, `failed`, `in_doubt`, `skipped` (finished in an earlier
    /// attempt of the run) or `not_started`.
    pub result: String,
    /// The planned action (`run`, `update`, `no_op`, ...), when it finished now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Attempts of this step in the whole run (every `step_started`, earlier attempts
    /// included).
    pub attempts: u32,
    /// From its `step_started` to its last record in this invocation, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The failure or in-doubt reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One `apply` invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RUNS_FORMAT_VERSION`].
    pub format_version: u32,
    /// `<run id>.<attempt>`: the journal's run and which invocation of it (1 = the first,
    /// 2 = the first resume, ...).
    pub id: String,
    /// The journal's run ID.
    pub run_id: String,
    /// 1 for the first invocation, then one more per `--resume`.
    pub attempt: u32,
    /// Who ran it.
    pub who: String,
    /// On which host.
    pub host: String,
    /// Process ID.
    pub pid: u32,
    /// When it started and ended (RFC 3339 UTC).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    /// Why it stopped, when interrupted (a signal, the maintenance window closing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The plan digest (`apply::guards::digest`) approvals were bound to.
    pub plan_digest: String,
    /// The configuration digest.
    pub config_digest: String,
    /// Set when the run started outside its maintenance window with `--ignore-window`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored_window: bool,
    /// Every step instance of the plan, in plan order.
    pub steps: Vec<StepRun>,
}

/// What the CLI knows of an invocation besides its journal.
pub struct RunFacts<'a> {
    /// The run ID.
    pub run_id: &'a str,
    /// Step addresses in plan order.
    pub steps: Vec<String>,
    /// Plan digest.
    pub plan_digest: String,
    /// Config digest.
    pub config_digest: String,
    /// Started outside the window with `--ignore-window`.
    pub ignored_window: bool,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    /// When the invocation started, and the wall time it took.
    pub started_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

fn millis_between(a: &str, b: &str) -> Option<u64> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    u64::try_from((b - a).num_milliseconds()).ok()
}

/// Builds the record of the invocation whose journal `records` end the run (the records
/// after its last `run_started`/`run_resumed` are this invocation's).
pub fn record_from_journal(facts: &RunFacts<'_>, records: &[Record]) -> RunRecord {
    let begin = records
        .iter()
        .rposition(|r| matches!(r, Record::RunStarted { .. } | Record::RunResumed { .. }))
        .unwrap_or(0);
    let attempt = 1 + records
        .iter()
        .take(begin + 1)
        .filter(|r| matches!(r, Record::RunResumed { .. }))
        .count() as u32;
    let (who, host, pid) = match records.get(begin) {
        Some(Record::RunStarted { who, host, pid, .. })
        | Some(Record::RunResumed { who, host, pid, .. }) => (who.clone(), host.clone(), *pid),
        _ => (super::current_user(), super::hostname(), std::process::id()),
    };
    let mut attempts: HashMap<&str, u32> = HashMap::new();
    for r in records {
        if let Record::StepStarted { step, .. } = r {
            *attempts.entry(step.as_str()).or_default() += 1;
        }
    }
    let mut before: BTreeMap<&str, bool> = BTreeMap::new();
    for r in &records[..begin] {
        match r {
            Record::StepFinished { step, .. } => {
                before.insert(step, true);
            }
            Record::StepResolved {
                step, resolution, ..
            } => {
                before.insert(step, resolution == "done");
            }
            Record::StepStarted { step, .. }
            | Record::StepFailed { step, .. }
            | Record::StepInDoubt { step, .. } => {
                before.insert(step, false);
            }
            _ => {}
        }
    }
    let mut started: HashMap<&str, &str> = HashMap::new();
    let mut now: HashMap<&str, StepRun> = HashMap::new();
    let mut reason = None;
    let mut last_at = facts.started_at.as_str();
    for r in &records[begin..] {
        let (step, result, action, error, at) = match r {
            Record::StepStarted { step, at, .. } => {
                started.insert(step, at);
                continue;
            }
            Record::StepFinished {
                step, action, at, ..
            } => {
                let result = match action.as_str() {
                    "no_op" => "unchanged",
                    "run" => "ran",
                    _ => "changed",
                };
                (step, result, Some(action.clone()), None, at)
            }
            Record::StepFailed {
                step, error, at, ..
            } => (step, "failed", None, Some(error.clone()), at),
            Record::StepInDoubt { step, reason, at } => {
                (step, "in_doubt", None, Some(reason.clone()), at)
            }
            Record::StepResolved {
                step,
                resolution,
                at,
                ..
            } => {
                if resolution == "done" {
                    (step, "skipped", None, None, at)
                } else {
                    continue;
                }
            }
            Record::RunInterrupted { reason: why, at } => {
                reason = Some(why.clone());
                last_at = at;
                continue;
            }
            Record::RunFinished { at, .. } => {
                last_at = at;
                continue;
            }
            _ => continue,
        };
        let duration_ms = started
            .get(step.as_str())
            .and_then(|s| millis_between(s, at));
        now.insert(
            step,
            StepRun {
                step: step.clone(),
                result: result.to_string(),
                action,
                attempts: attempts.get(step.as_str()).copied().unwrap_or(0),
                duration_ms: duration_ms.or(Some(0)),
                error,
            },
        );
    }
    let steps = facts
        .steps
        .iter()
        .map(|s| {
            now.remove(s.as_str()).unwrap_or_else(|| {
                let earlier = before.get(s.as_str()).copied().unwrap_or(false);
                let in_doubt = started.contains_key(s.as_str());
                StepRun {
                    step: s.clone(),
                    result: if earlier {
                        "skipped"
                    } else if in_doubt {
                        "in_doubt"
                    } else {
                        "not_started"
                    }
                    .to_string(),
                    action: None,
                    attempts: attempts.get(s.as_str()).copied().unwrap_or(0),
                    duration_ms: None,
                    error: None,
                }
            })
        })
        .collect();
    RunRecord {
        format_version: RUNS_FORMAT_VERSION,
        id: format!("{}.{attempt}", facts.run_id),
        run_id: facts.run_id.to_string(),
        attempt,
        who,
        host,
        pid,
        started_at: facts.started_at.clone(),
        finished_at: if last_at.is_empty() {
            super::now_rfc3339()
        } else {
            last_at.to_string()
        },
        duration_ms: facts.duration_ms,
        status: facts.status.clone(),
        reason,
        plan_digest: facts.plan_digest.clone(),
        config_digest: facts.config_digest.clone(),
        ignored_window: facts.ignored_window,
        steps,
    }
}

/// Appends `record` to `state_dir/runs.jsonl` durably.
///
/// # Errors
///
/// The file cannot be opened, written or synced (the message names it).
pub fn append(state_dir: &Path, record: &RunRecord) -> Result<(), StateError> {
    let path = runs_path(state_dir);
    let io = |source: std::io::Error| StateError::Io {
        path: path.clone(),
        source,
    };
    let created = !path.exists();
    let mut line = serde_json::to_vec(record).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(&line).map_err(io)?;
    f.sync_all().map_err(io)?;
    if created {
        if let Ok(dir) = std::fs::File::open(state_dir) {
            dir.sync_all().map_err(io)?;
        }
    }
    Ok(())
}

/// Every record of `state_dir/runs.jsonl`, oldest first (none when it does not exist). A torn
/// last line is skipped.
///
/// # Errors
///
/// The file cannot be read, or a complete line is not a run record (named by line).
pub fn read(state_dir: &Path) -> Result<Vec<RunRecord>, StateError> {
    let path = runs_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RunRecord>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => {
                return Err(StateError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(format!("line {}: not a run record: {e}", i + 1)),
                })
            }
        }
    }
    Ok(out)
}
