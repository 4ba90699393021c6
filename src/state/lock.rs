//! The state lock: keeps two applies from running on one state directory at once.
//!
//! The lock is the file `<state_dir>/opsctl.lock` holding the holder's [`LockInfo`] as JSON,
//! plus an OS advisory lock (`flock`) on it. The OS lock is what counts: it vanishes when the
//! holder dies, so a lock file whose OS lock is free is stale and is taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use super::{current_user, hostname, io_err, now_rfc3339, StateError};

/// File name of the lock inside the state directory.
pub const LOCK_FILE_NAME: &str = "opsctl.lock";

/// Version of the [`LockInfo`] layout this build writes.
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// How often `acquire` retries when the lock file is replaced under it.
const MAX_ATTEMPTS: usize = 20;

/// How often, 5 ms apart, a busy lock's file is re-read while its holder is still writing it.
const HOLDER_READ_ATTEMPTS: usize = 20;

/// Who holds the lock, as recorded in the lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique lock ID (32 hex digits); needed by [`force_unlock`].
    pub id: String,
    /// What the holder is doing, e.g. `apply`.
    pub operation: String,
    /// User of the holding process.
    pub who: String,
    /// Host of the holding process.
    pub host: String,
    /// Process ID of the holder.
    pub pid: u32,
    /// When the lock was taken (RFC 3339, UTC).
    pub created: String,
    /// Layout version ([`LOCK_FORMAT_VERSION`]).
    pub version: u32,
}

impl std::fmt::Display for LockInfo {
    /// `ID <id> held by <who>@<host> (pid <pid>) for <operation> since <created>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ID {} held by {}@{} (pid {}) for {} since {}",
            self.id, self.who, self.host, self.pid, self.operation, self.created
        )
    }
}

/// The lock file of `state_dir`: `<state_dir>/opsctl.lock`.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE_NAME)
}

/// A held state lock. Released by [`StateLock::release`] or, best effort, on drop.
#[derive(Debug)]
pub struct StateLock {
    file: Option<File>,
    path: PathBuf,
    info: LockInfo,
}

impl StateLock {
    /// Take the state lock of `state_dir` for `operation` (e.g. `apply`) without waiting.
    ///
    /// Creates `state_dir` if missing. On success returns the lock and, if the previous
    /// holder died without releasing it (the file held a [`LockInfo`] but no process held the
    /// OS lock), that stale info, so the caller can warn that it was taken over.
    ///
    /// # Errors
    ///
    /// - [`StateError::Locked`] if another live lock holder exists (in this or another
    ///   process); its info names the holder, with `unknown` fields if unreadable.
    /// - [`StateError::Io`] if the directory or lock file cannot be created, locked, read or
    ///   written, or the file kept being replaced while locking.
    pub fn acquire(
        state_dir: &Path,
        operation: &str,
    ) -> Result<(StateLock, Option<LockInfo>), StateError> {
        Self::acquire_with(state_dir, operation, |_| {})
    }

    /// [`acquire`](Self::acquire), calling `between_open_and_lock(attempt)` after opening the
    /// lock file and before locking it (lets tests reproduce the release race).
    fn acquire_with(
        state_dir: &Path,
        operation: &str,
        mut between_open_and_lock: impl FnMut(usize),
    ) -> Result<(StateLock, Option<LockInfo>), StateError> {
        fs::create_dir_all(state_dir).map_err(|e| io_err(state_dir, e))?;
        let path = lock_path(state_dir);
        for attempt in 0..MAX_ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            between_open_and_lock(attempt);
            if !FileExt::try_lock_exclusive(&file).map_err(|e| io_err(&path, e))? {
                let info = Box::new(read_holder(&mut file));
                return Err(StateError::Locked { path, info });
            }
            // The previous holder may have removed (released) the file between our open and
            // our lock; then we locked an orphan inode and must start over.
            if !same_file(&file, &path)? {
                continue;
            }
            let stale = parse_info(&read_all(&mut file).map_err(|e| io_err(&path, e))?)
                .ok()
                .flatten();
            let info = LockInfo {
                id: new_lock_id(),
                operation: operation.to_string(),
                who: current_user(),
                host: hostname(),
                pid: std::process::id(),
                created: now_rfc3339(),
                version: LOCK_FORMAT_VERSION,
            };
            let mut json =
                serde_json::to_vec_pretty(&info).map_err(|e| StateError::Encode(e.to_string()))?;
            json.push(b'\n');
            file.set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(&json))
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(&path, e))?;
            let lock = StateLock {
                file: Some(file),
                path,
                info,
            };
            return Ok((lock, stale));
        }
        Err(io_err(
            &path,
            io::Error::other("the lock file kept being replaced while locking it"),
        ))
    }

    /// What this lock recorded about its holder (this process).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Release the lock: remove the lock file (unless it was force-unlocked and replaced by
    /// another holder's file, which is left alone), then drop the OS lock.
    ///
    /// # Errors
    ///
    /// [`StateError::Io`] if the file cannot be removed or unlocked; the OS lock is released
    /// anyway when the handle closes.
    pub fn release(mut self) -> Result<(), StateError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), StateError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let mut result = match same_file(&file, &self.path) {
            Ok(true) => match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(&self.path, e)),
            },
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = FileExt::unlock(&file) {
            if result.is_ok() {
                result = Err(io_err(&self.path, e));
            }
        }
        result
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

/// Read the lock information in `state_dir` without locking anything. The file may be stale
/// (its holder dead); only [`StateLock::acquire`] can tell.
///
/// Returns `None` if there is no lock file or it is empty.
///
/// # Errors
///
/// - [`StateError::Io`] if the file exists but cannot be read.
/// - [`StateError::LockUnreadable`] if it does not hold a valid [`LockInfo`].
pub fn read_lock(state_dir: &Path) -> Result<Option<LockInfo>, StateError> {
    let path = lock_path(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, e)),
    };
    parse_info(&text).map_err(|reason| StateError::LockUnreadable { path, reason })
}

/// Remove the lock of `state_dir` if its ID is `id`, and return the removed info. For locks
/// left by runs that died or hung.
///
/// While the holder is alive (its OS lock is held) the lock is not removed unless `force`:
/// removing it would let a second apply run beside the first. With `force` it is removed
/// anyway, and the caller should warn that two runs may now overlap. A lock whose holder is
/// gone is removed while holding its OS lock, so no new holder can slip in between.
///
/// Returns the removed info and whether its holder was still alive.
///
/// # Errors
///
/// - [`StateError::NotLocked`] if there is no lock file or it is empty.
/// - [`StateError::LockIdMismatch`] if the lock's ID is not `id` (nothing is removed).
/// - [`StateError::LockHeld`] if the holder is alive and `force` is false (nothing is
///   removed).
/// - [`StateError::LockUnreadable`] if the file does not hold a valid [`LockInfo`].
/// - [`StateError::Io`] if the file cannot be read, locked or removed.
pub fn force_unlock(
    state_dir: &Path,
    id: &str,
    force: bool,
) -> Result<(LockInfo, bool), StateError> {
    let path = lock_path(state_dir);
    let Some(info) = read_lock(state_dir)? else {
        return Err(StateError::NotLocked { path });
    };
    if info.id != id {
        return Err(StateError::LockIdMismatch {
            path,
            given: id.to_string(),
            actual: info.id,
        });
    }
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StateError::NotLocked { path })
        }
        Err(e) => return Err(io_err(&path, e)),
    };
    let free = FileExt::try_lock_exclusive(&file).map_err(|e| io_err(&path, e))?;
    if !free && !force {
        return Err(StateError::LockHeld {
            path,
            info: Box::new(info),
        });
    }
    // The file may have been released and replaced since we read it.
    if !same_file(&file, &path)? {
        return Err(StateError::NotLocked { path });
    }
    let removed = match fs::remove_file(&path) {
        Ok(()) => Ok((info, !free)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StateError::NotLocked { path }),
        Err(e) => Err(io_err(&path, e)),
    };
    if free {
        let _ = FileExt::unlock(&file);
    }
    removed
}

/// Whether `path` currently names the same inode as the open `file`.
fn same_file(file: &File, path: &Path) -> Result<bool, StateError> {
    let ours = file.metadata().map_err(|e| io_err(path, e))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.ino() == ours.ino() && now.dev() == ours.dev()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, e)),
    }
}

fn read_all(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// `Ok(None)` for an empty file, the info for a valid one, the reason otherwise.
fn parse_info(text: &str) -> Result<Option<LockInfo>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| format!("invalid lock record: {e}"))
}

/// The info of a busy lock. The holder may be between creating and writing the file, so
/// retry briefly; then salvage what fields there are, `unknown` for the rest.
fn read_holder(file: &mut File) -> LockInfo {
    let mut text = String::new();
    for attempt in 0..HOLDER_READ_ATTEMPTS {
        text = read_all(file).unwrap_or_default();
        if let Ok(Some(info)) = parse_info(&text) {
            return info;
        }
        if attempt + 1 < HOLDER_READ_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_string()
    };
    let number = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    LockInfo {
        id: field("id"),
        operation: field("operation"),
        who: field("who"),
        host: field("host"),
        pid: number("pid"),
        created: field("created"),
        version: number("version"),
    }
}

/// A fresh lock ID: 32 hex digits from the time, pid, a counter and std's randomly keyed
/// hasher.
fn new_lock_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(32);
    for salt in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_u64(count);
        h.write_u8(salt);
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_info(err: StateError) -> LockInfo {
        match err {
            StateError::Locked { info, .. } => *info,
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn second_acquire_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, stale) = StateLock::acquire(dir.path(), "apply").unwrap();
        assert_eq!(stale, None);
        assert_eq!(lock.info().operation, "apply");
        assert_eq!(lock.info().pid, std::process::id());
        assert_eq!(lock.info().id.len(), 32);
        assert_eq!(read_lock(dir.path()).unwrap().as_ref(), Some(lock.info()));

        let err = StateLock::acquire(dir.path(), "apply").unwrap_err();
        let message = err.to_string();
        let info = locked_info(err);
        assert_eq!(&info, lock.info());
        for part in [
            &info.id,
            &info.who,
            &info.host,
            &info.pid.to_string(),
            &info.created,
            "`apply`",
        ] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        assert!(lock.info().to_string().starts_with(&format!(
            "ID {} held by {}@{} (pid {}) for apply since ",
            info.id, info.who, info.host, info.pid
        )));
        // The failed attempt must not have touched the holder's file.
        assert_eq!(read_lock(dir.path()).unwrap().as_ref(), Some(lock.info()));
    }

    #[test]
    fn release_and_drop_allow_reacquiring() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, _) = StateLock::acquire(dir.path(), "apply").unwrap();
        let first = lock.info().clone();
        lock.release().unwrap();
        assert!(!lock_path(dir.path()).exists());
        assert_eq!(read_lock(dir.path()).unwrap(), None);

        {
            let (lock, stale) = StateLock::acquire(dir.path(), "apply").unwrap();
            assert_eq!(stale, None, "a released lock is not stale");
            assert_ne!(lock.info().id, first.id);
        }
        assert!(!lock_path(dir.path()).exists(), "drop releases");
        let (_lock, stale) = StateLock::acquire(dir.path(), "apply").unwrap();
        assert_eq!(stale, None);
    }

    #[test]
    fn stale_lock_file_is_taken_over_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let dead = LockInfo {
            id: "deadbeef".into(),
            operation: "apply".into(),
            who: "carol".into(),
            host: "old-host".into(),
            pid: 999_999,
            created: "2026-01-01T00:00:00.000Z".into(),
            version: 1,
        };
        fs::write(
            lock_path(dir.path()),
            serde_json::to_vec_pretty(&dead).unwrap(),
        )
        .unwrap();
        let (lock, stale) = StateLock::acquire(dir.path(), "apply").unwrap();
        assert_eq!(stale, Some(dead.clone()));
        assert_ne!(lock.info().id, dead.id);
        assert_eq!(read_lock(dir.path()).unwrap().as_ref(), Some(lock.info()));
    }

    #[test]
    fn busy_lock_with_unreadable_file_is_still_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, _) = StateLock::acquire(dir.path(), "apply").unwrap();
        fs::write(lock_path(dir.path()), br#"{"id":"abc","who":"dave""#).unwrap();
        let info = locked_info(StateLock::acquire(dir.path(), "apply").unwrap_err());
        assert_eq!(info.id, "unknown");
        assert_eq!(info.operation, "unknown");
        fs::write(lock_path(dir.path()), br#"{"id":"abc","who":"dave"}"#).unwrap();
        let info = locked_info(StateLock::acquire(dir.path(), "apply").unwrap_err());
        assert_eq!((info.id.as_str(), info.who.as_str()), ("abc", "dave"));
        assert_eq!(info.host, "unknown");
        drop(lock);
    }

    #[test]
    fn force_unlock_checks_the_id() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            force_unlock(dir.path(), "x", false).unwrap_err(),
            StateError::NotLocked { .. }
        ));
        let (lock, _) = StateLock::acquire(dir.path(), "apply").unwrap();
        let id = lock.info().id.clone();

        match force_unlock(dir.path(), "wrong", false).unwrap_err() {
            StateError::LockIdMismatch { given, actual, .. } => {
                assert_eq!((given.as_str(), actual.as_str()), ("wrong", id.as_str()))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(lock_path(dir.path()).exists());

        // The holder is alive: refused without `force`, naming it.
        match force_unlock(dir.path(), &id, false).unwrap_err() {
            StateError::LockHeld { info, .. } => assert_eq!(&*info, lock.info()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(lock_path(dir.path()).exists());

        let (removed, alive) = force_unlock(dir.path(), &id, true).unwrap();
        assert_eq!(&removed, lock.info());
        assert!(alive);
        assert!(!lock_path(dir.path()).exists());
        assert!(matches!(
            force_unlock(dir.path(), &id, false).unwrap_err(),
            StateError::NotLocked { .. }
        ));

        // Someone else can now lock; releasing the force-unlocked lock must not remove
        // the new holder's file.
        let (other, stale) = StateLock::acquire(dir.path(), "apply").unwrap();
        assert_eq!(stale, None);
        lock.release().unwrap();
        assert_eq!(read_lock(dir.path()).unwrap().as_ref(), Some(other.info()));
        assert!(matches!(
            StateLock::acquire(dir.path(), "apply").unwrap_err(),
            StateError::Locked { .. }
        ));
    }

    #[test]
    fn force_unlock_removes_a_lock_whose_holder_is_gone_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, _) = StateLock::acquire(dir.path(), "apply").unwrap();
        let info = lock.info().clone();
        // The holder dies: its OS lock goes, the file stays.
        let json = fs::read(lock_path(dir.path())).unwrap();
        drop(lock);
        fs::write(lock_path(dir.path()), json).unwrap();
        let (removed, alive) = force_unlock(dir.path(), &info.id, false).unwrap();
        assert_eq!(removed, info);
        assert!(!alive);
        assert!(!lock_path(dir.path()).exists());
    }

    #[test]
    fn acquire_retries_when_the_holder_releases_between_open_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (holder, _) = StateLock::acquire(dir.path(), "apply").unwrap();
        let mut holder = Some(holder);
        let mut attempts = Vec::new();
        // The holder releases (removes the file) after we opened it but before we lock it:
        // we then lock an orphan inode and must start over on a fresh file.
        let (lock, stale) = StateLock::acquire_with(dir.path(), "apply", |attempt| {
            attempts.push(attempt);
            if let Some(h) = holder.take() {
                h.release().unwrap();
            }
        })
        .unwrap();
        assert_eq!(attempts, vec![0, 1]);
        assert_eq!(stale, None);
        assert_eq!(read_lock(dir.path()).unwrap().as_ref(), Some(lock.info()));
        assert!(matches!(
            StateLock::acquire(dir.path(), "apply").unwrap_err(),
            StateError::Locked { .. }
        ));
    }

    #[test]
    fn read_lock_reports_garbage() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(lock_path(dir.path()), b"").unwrap();
        assert_eq!(read_lock(dir.path()).unwrap(), None);
        assert!(matches!(
            force_unlock(dir.path(), "x", false).unwrap_err(),
            StateError::NotLocked { .. }
        ));
        fs::write(lock_path(dir.path()), b"not json").unwrap();
        assert!(matches!(
            read_lock(dir.path()).unwrap_err(),
            StateError::LockUnreadable { .. }
        ));
    }

    #[test]
    fn lock_ids_differ() {
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| new_lock_id()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
