//! Running a local command safely: in its own process group (so that a terminal's Ctrl-C
//! reaches opsctl only), with a deadline and a cancel signal that terminate the whole group
//! (SIGTERM, a short grace, SIGKILL, then wait), with stdout/stderr read incrementally and
//! capped, and with a watchdog that kills the groups still running if opsctl itself dies.

use std::io::{self, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Time a terminated command's process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Bytes of each of stdout and stderr kept: the first half and the last half of this; the
/// middle is cut and replaced by a line saying how many bytes were cut.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// After a group was terminated, how long to keep reading output still buffered in its
/// pipes (a process that left the group may hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Why a command stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited (or was killed by a signal from elsewhere) on its own.
    Exited(ExitStatus),
    /// The deadline passed; its process group was terminated.
    TimedOut,
    /// The cancel token fired; its process group was terminated.
    Cancelled,
}

/// What a command did.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub ended: Ended,
    /// Captured standard output (empty unless captured).
    pub stdout: Capture,
    /// Captured standard error (empty unless captured).
    pub stderr: Capture,
}

/// Output of one stream, bounded: the first and last [`OUTPUT_CAP`]/2 bytes and a count.
#[derive(Debug, Default)]
pub struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl Capture {
    fn push(&mut self, mut bytes: &[u8]) {
        let half = OUTPUT_CAP / 2;
        self.total += bytes.len() as u64;
        let room = half.saturating_sub(self.head.len());
        let n = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if bytes.len() >= half {
            self.tail.clear();
            bytes = &bytes[bytes.len() - half..];
        }
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(half);
        self.tail.drain(..excess);
    }

    /// Bytes cut from the middle.
    pub fn cut(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept text (invalid UTF-8 replaced), with a line saying how many bytes were cut
    /// from the middle, if any.
    pub fn text(&self) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let cut = self.cut();
        if cut == 0 {
            let mut all = self.head.clone();
            all.extend_from_slice(&tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        // Cut on character boundaries: drop a split character at the end of the head and
        // continuation bytes at the start of the tail.
        let head_end = match std::str::from_utf8(&self.head) {
            Ok(_) => self.head.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.head.len(),
        };
        let tail_start = tail
            .iter()
            .position(|b| b & 0xC0 != 0x80)
            .unwrap_or(tail.len())
            .min(3);
        let head = String::from_utf8_lossy(&self.head[..head_end]);
        let tail = String::from_utf8_lossy(&tail[tail_start..]);
        let cut = cut + (self.head.len() - head_end + tail_start) as u64;
        let sep = if head.ends_with('\n') || head.is_empty() {
            ""
        } else {
            "\n"
        };
        format!(
            "{head}{sep}[... opsctl cut {cut} bytes of {} here: output is capped at {} KiB per stream ...]\n{tail}",
            self.total,
            OUTPUT_CAP / 1024
        )
    }
}

/// "exited with status 3", "was killed by signal SIGINT".
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = signal_name(sig)
                .map(str::to_string)
                .unwrap_or_else(|| format!("signal {sig}"));
            format!(
                "was killed by signal {name}{}",
                if status.core_dumped() {
                    " (core dumped)"
                } else {
                    ""
                }
            )
        }
        None => format!("ended with {status}"),
    }
}

/// The name of a signal, e.g. `SIGINT`. (A table rather than the `nix` crate: `nix` turns on
/// `libc` features that rebuild the whole dependency tree, for 30 names.)
fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    NAMES.iter().find(|(n, _)| *n == sig).map(|(_, name)| *name)
}

/// Runs `cmd` in a new process group until it exits, `limit` passes or `cancel` fires; in the
/// latter two cases its whole group is terminated (SIGTERM, [`KILL_GRACE`], SIGKILL) and
/// waited for. With `capture`, stdout and stderr are read as they come, capped at
/// [`OUTPUT_CAP`] each; otherwise they go to /dev/null. Standard input is /dev/null.
///
/// If the returned future is dropped before it completes, the group is killed (SIGKILL).
///
/// # Errors
///
/// The spawn error (the command cannot be started), or an error waiting for it.
pub async fn run(
    mut cmd: Command,
    capture: bool,
    limit: Duration,
    cancel: &CancellationToken,
) -> io::Result<Finished> {
    let pipe = || {
        if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    cmd.stdin(Stdio::null()).stdout(pipe()).stderr(pipe());
    // Its own group: a terminal's Ctrl-C (sent to the foreground group) reaches opsctl only,
    // which decides what happens to running commands.
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // The command dies with opsctl (the watchdog takes care of the rest of its group),
            // so that an interrupted run leaves no orphan whose effect lands after resume has
            // decided what to do.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let mut group = Group::adopt(child.id());
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let (mut stdout, mut stderr) = (Capture::default(), Capture::default());
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    // A limit too large for the clock (`timeout = "100000000h"`) never fires.
    let deadline = Instant::now()
        .checked_add(limit)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    let mut status: Option<ExitStatus> = None;
    let mut stopped: Option<Ended> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        if status.is_some() && out_pipe.is_none() && err_pipe.is_none() {
            break;
        }
        tokio::select! {
            r = read_some(out_pipe.as_mut(), &mut out_buf) => match r {
                Ok(n) if n > 0 => stdout.push(&out_buf[..n]),
                _ => out_pipe = None,
            },
            r = read_some(err_pipe.as_mut(), &mut err_buf) => match r {
                Ok(n) if n > 0 => stderr.push(&err_buf[..n]),
                _ => err_pipe = None,
            },
            st = child.wait(), if status.is_none() => status = Some(st?),
            _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                stopped = Some(Ended::TimedOut);
                status = Some(group.terminate(&mut child).await?);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            _ = cancel.cancelled(), if stopped.is_none() => {
                stopped = Some(Ended::Cancelled);
                status = Some(group.terminate(&mut child).await?);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            _ = sleep_until_opt(drain_until) => break,
        }
    }
    // The command and everything holding its output are done: what is left of its group
    // (background processes that closed their output) is its own business.
    group.release();
    let ended = match (stopped, status) {
        (Some(s), _) => s,
        (None, Some(st)) => Ended::Exited(st),
        (None, None) => Ended::Exited(child.wait().await?),
    };
    Ok(Finished {
        ended,
        stdout,
        stderr,
    })
}

async fn read_some<R: AsyncRead + Unpin>(
    pipe: Option<&mut R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A command's process group, while opsctl is responsible for it: watched by the watchdog,
/// killed when dropped.
struct Group {
    pgid: Option<i32>,
}

impl Group {
    fn adopt(pid: Option<u32>) -> Group {
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0);
        if let Some(p) = pgid {
            watchdog::watch(p);
        }
        Group { pgid }
    }

    /// Sends `sig` to the whole group (0: only checks that a member exists); true when it
    /// reached some process.
    fn signal(&self, sig: i32) -> bool {
        match self.pgid {
            // SAFETY: kill(2) has no memory-safety preconditions.
            Some(p) => unsafe { libc::kill(-p, sig) == 0 },
            None => false,
        }
    }

    /// Whether a process of the group still runs. kill(2) also reaches zombies (members that
    /// exited and wait for whoever inherited them to reap them), so a positive answer is
    /// checked against `/proc`.
    fn has_live_member(&self) -> bool {
        let Some(pgid) = self.pgid else {
            return false;
        };
        if !self.signal(0) {
            return false;
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return true;
        };
        procs.flatten().any(|entry| {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            // `pid (comm) state ppid pgrp ...`; comm may contain anything, so parse after
            // the last `)`.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && !matches!(state, "Z" | "X")
        })
    }

    /// SIGTERM to the group; wait up to [`KILL_GRACE`] for the leader and then every other
    /// member to exit; SIGKILL to what is left; reap the leader.
    async fn terminate(&mut self, child: &mut Child) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + KILL_GRACE;
        let leader = tokio::time::timeout_at(until, child.wait()).await;
        if leader.is_ok() {
            while Instant::now() < until && self.has_live_member() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.signal(libc::SIGKILL);
        let status = match leader {
            Ok(st) => st?,
            Err(_) => child.wait().await?,
        };
        self.release();
        Ok(status)
    }

    fn release(&mut self) {
        if let Some(p) = self.pgid.take() {
            watchdog::unwatch(p);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.pgid.is_some() {
            self.signal(libc::SIGKILL);
            self.release();
        }
    }
}

/// One `sh` per opsctl process, started with the first command, that knows the process groups
/// of the commands running now (opsctl writes `+ PGID` / `- PGID` lines to its stdin). When
/// opsctl dies, even by SIGKILL, its stdin reaches end of file and it terminates the groups
/// still listed (SIGTERM, 2 s, SIGKILL): `PR_SET_PDEATHSIG` alone reaches only a command's
/// own process, not what it started.
mod watchdog {
    use super::*;

    const SCRIPT: &str = r#"trap '' HUP INT
groups=
while read -r op g; do
  case $op in
    +) groups="$groups $g" ;;
    -) rest=; for x in $groups; do [ "$x" = "$g" ] || rest="$rest $x"; done; groups=$rest ;;
  esac
done
[ -n "$groups" ] || exit 0
for x in $groups; do kill -s TERM -- "-$x" 2>/dev/null; done
sleep 2
for x in $groups; do kill -s KILL -- "-$x" 2>/dev/null; done
"#;

    static STDIN: OnceLock<Mutex<Option<std::process::ChildStdin>>> = OnceLock::new();

    fn spawn() -> Option<std::process::ChildStdin> {
        use std::os::unix::process::CommandExt as _;
        let mut child = std::process::Command::new("sh")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        // Not waited for: it outlives opsctl by design, and ends by itself.
        child.stdin.take()
    }

    fn send(line: String) {
        let cell = STDIN.get_or_init(|| Mutex::new(spawn()));
        let mut stdin = cell.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = stdin.as_mut() {
            if w.write_all(line.as_bytes()).is_err() {
                // The watchdog is gone; commands still die with opsctl through PDEATHSIG.
                *stdin = None;
            }
        }
    }

    pub(super) fn watch(pgid: i32) {
        send(format!("+ {pgid}\n"));
    }

    pub(super) fn unwatch(pgid: i32) {
        send(format!("- {pgid}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail_and_counts_the_cut() {
        let mut c = Capture::default();
        for i in 0..100_000u32 {
            c.push(format!("line {i}\n").as_bytes());
        }
        let text = c.text();
        assert!(text.starts_with("line 0\nline 1\n"), "{}", &text[..40]);
        assert!(text.ends_with("line 99999\n"));
        assert!(text.len() < OUTPUT_CAP + 200, "{}", text.len());
        let cut = c.cut();
        assert!(text.contains(&format!("opsctl cut {cut} bytes of {}", c.total)));
        assert_eq!(
            c.total,
            (0..100_000u32)
                .map(|i| format!("line {i}\n").len() as u64)
                .sum::<u64>()
        );
    }

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::default();
        c.push(b"hello ");
        c.push(b"world\n");
        assert_eq!(c.text(), "hello world\n");
        assert_eq!(c.cut(), 0);
    }

    #[test]
    fn one_huge_write_keeps_its_ends() {
        let mut c = Capture::default();
        let mut big = vec![b'a'; OUTPUT_CAP / 2];
        big.extend(vec![b'm'; 1_000_000]);
        big.extend(vec![b'z'; OUTPUT_CAP / 2]);
        c.push(&big);
        let text = c.text();
        assert!(!text.contains("mm"));
        assert!(text.starts_with("aaa") && text.ends_with("zzz"));
        assert!(text.contains("opsctl cut 1000000 bytes"));
    }

    #[test]
    fn signal_deaths_are_named() {
        let st = ExitStatus::from_raw(libc::SIGINT);
        assert_eq!(describe(st), "was killed by signal SIGINT");
        let st = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(st), "exited with status 3");
    }
}
