//! On-disk state of opsctl: the durable per-run journal ([`journal`]), the state lock
//! ([`lock`]), the [`StateError`] they share, and small helpers (atomic file replacement,
//! timestamps, the current user and host).

pub mod journal;
pub mod lock;
pub mod runs;
pub mod saved_plan;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Everything that can go wrong reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An operating-system call on `path` failed (open, read, write, fsync, rename, ...).
    #[error("{}", io_message(path, source))]
    Io {
        /// The file or directory that was being accessed.
        path: PathBuf,
        /// The underlying operating-system error.
        #[source]
        source: io::Error,
    },

    /// A journal line other than a torn last line failed its checksum or could not be
    /// decoded, or the records are in an impossible order.
    #[error("journal `{path}` is damaged at line {line}: {reason}", path = path.display())]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number of the bad line.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },

    /// The journal was written in a format version this build cannot read.
    #[error(
        "journal `{path}` has format version `{found}` but this opsctl reads only version `{supported}`",
        path = path.display()
    )]
    UnsupportedVersion {
        /// The journal file.
        path: PathBuf,
        /// The `format_version` recorded in the journal's `run_started` record.
        found: u32,
        /// The version this build reads ([`journal::JOURNAL_FORMAT_VERSION`]).
        supported: u32,
    },

    /// Another live process holds the state lock.
    #[error(
        "state is locked: lock `{path}` has ID `{id}` held by `{who}@{host}` (pid `{pid}`) for `{operation}` since `{since}`",
        path = path.display(),
        id = info.id,
        who = info.who,
        host = info.host,
        pid = info.pid,
        operation = info.operation,
        since = info.created
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the holder recorded in the lock file (fields are `unknown` if unreadable).
        /// Boxed to keep `Result<_, StateError>` small.
        info: Box<lock::LockInfo>,
    },

    /// `force_unlock` found the lock's holder alive (its OS lock is held).
    #[error(
        "lock `{path}` is held by a live process: {info}; nothing was unlocked. Stop that process, \
         or wait for it; `force-unlock --force` removes the lock anyway and lets a second run start beside it",
        path = path.display()
    )]
    LockHeld {
        /// The lock file.
        path: PathBuf,
        /// The holder's recorded info.
        info: Box<lock::LockInfo>,
    },

    /// A lock operation needed a lock file but there is none (or it is empty).
    #[error("state is not locked: there is no lock in `{path}`", path = path.display())]
    NotLocked {
        /// The lock file that was expected.
        path: PathBuf,
    },

    /// `force_unlock` was given an ID that is not the ID of the current lock.
    #[error(
        "lock `{path}` has ID `{actual}`, not `{given}`; nothing was unlocked",
        path = path.display()
    )]
    LockIdMismatch {
        /// The lock file.
        path: PathBuf,
        /// The ID the caller passed.
        given: String,
        /// The ID recorded in the lock file.
        actual: String,
    },

    /// The lock file exists but does not hold a readable lock record.
    #[error("lock file `{path}` is unreadable: {reason}", path = path.display())]
    LockUnreadable {
        /// The lock file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },

    /// A record could not be encoded as JSON.
    #[error("cannot encode state record: {0}")]
    Encode(String),

    /// The testing-only fault-injection variable `OPSCTL_FAULT_JOURNAL_KILL_AT` is malformed.
    #[error("invalid `OPSCTL_FAULT_JOURNAL_KILL_AT` value `{0}`: expected `N` or `N:torn` with `N` >= 1")]
    Fault(String),
}

/// The text of [`StateError::Io`]: a full disk is said plainly, whatever call hit it.
fn io_message(path: &Path, source: &io::Error) -> String {
    if source.kind() == io::ErrorKind::StorageFull {
        return format!(
            "no space left on device writing `{}`: free space, then try again ({source})",
            path.display()
        );
    }
    format!("cannot access `{}`: {source}", path.display())
}

/// Build a [`StateError::Io`] for `path`.
pub(crate) fn io_err(path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync directory `dir` so that entries created, removed or renamed in it are durable.
///
/// File systems that cannot fsync a directory (`EINVAL`) are tolerated.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    let handle = File::open(dir).map_err(|e| io_err(dir, e))?;
    match handle.sync_all() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// Replace the file at `path` with `bytes` atomically and durably.
///
/// Writes `<path>.tmp-<pid>`, fsyncs it, renames it over `path` and fsyncs the parent
/// directory, so after a crash `path` holds either the old or the new content, never a mix.
/// The parent directory must exist. The temporary file is removed if a step fails.
///
/// # Errors
///
/// [`StateError::Io`] naming the temporary file, `path` or the directory whose operation
/// failed; also when `path` has no file name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let Some(name) = path.file_name() else {
        return Err(io_err(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);

    let written = (|| -> Result<(), StateError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        file.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    sync_dir(parent_dir(path))
}

/// The current time in UTC as RFC 3339 with millisecond precision, e.g.
/// `2026-11-21T21:38:00.123Z`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The name of the user running opsctl: `$USER`, else `$LOGNAME`, else the password-database
/// name of the real user ID, else `uid-<n>`. Never empty.
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(value) = std::env::var(var) {
            if !value.is_empty() {
                return value;
            }
        }
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    user_name(uid).unwrap_or_else(|| format!("uid-{uid}"))
}

/// The password-database name of `uid`, if it has one.
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local of the right type and `buf.len()` is the
    // size of `buf`; on success `pw_name` points into `buf`, which is still alive below.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: `pw_name` is a NUL-terminated string inside `buf` (checked non-null above).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    let name = name.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

/// The host name from `gethostname(2)`, or `unknown` if it cannot be read. Never empty.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).trim().to_string();
    if name.is_empty() {
        "unknown".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_and_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("plan.json")]);
    }

    #[test]
    fn write_atomic_reports_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, StateError::Io { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot access `"), "{err}");
    }

    #[test]
    fn timestamps_are_utc_millis() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-21T21:38:00.123Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
        assert_eq!(&now[10..11], "T");
        assert_eq!(&now[19..20], ".");
        assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok());
    }

    #[test]
    fn user_and_host_are_not_empty() {
        assert!(!current_user().is_empty());
        assert!(!hostname().is_empty());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        if let Some(name) = user_name(uid) {
            assert!(!name.contains('\0') && !name.is_empty());
        }
    }

    #[test]
    fn error_messages_name_values() {
        let err = StateError::Damaged {
            path: PathBuf::from("/s/journal/r.jsonl"),
            line: 7,
            reason: "checksum mismatch".into(),
        };
        assert_eq!(
            err.to_string(),
            "journal `/s/journal/r.jsonl` is damaged at line 7: checksum mismatch"
        );
        let err = io_err(
            Path::new("/x"),
            io::Error::new(io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(err.to_string(), "cannot access `/x`: gone");
    }
}
