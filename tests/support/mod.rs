//! Shared helpers for opsctl's integration tests (each test file does `mod support;`).
//!
//! The tests run against a real AWS mock, moto, through its HTTP protocol: every
//! test that needs AWS starts its own [`MotoServer`] on a free port, so tests are
//! independent and can run in parallel. What they need is installed and pointed
//! at by `scripts/test.sh`:
//!
//! - `OPSCTL_MOTO_SERVER`: the `moto_server` executable;
//! - `OPSCTL_SEED_PYTHON`: a Python with boto3, used by [`seed_platform`] and
//!   [`aws_python`] to set up and observe AWS state independently of opsctl.
//!
//! A test never skips silently when these are missing: it panics and says how
//! to run it.
//!
//! `opsctl` itself is run as a real process with [`opsctl`] + [`run`], in a
//! scratch [`Workdir`], with a clean environment (dummy credentials, no colour,
//! nothing inherited from the developer's AWS setup or `OPSCTL_*` variables).
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a moto server may take to answer after launch (it needs ~0.7 s).
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `opsctl` run may take before [`run`] kills it and fails the
/// test (a hung test would otherwise hang CI). Override: `OPSCTL_TEST_CMD_TIMEOUT` (seconds).
const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// The region every helper and every opsctl run uses.
pub const REGION: &str = "us-west-2";

/// Ports handed out in this test process, never handed out twice, so that two
/// servers started in parallel cannot be given the same port.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn required_env(name: &str) -> OsString {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run the tests through scripts/test.sh, which installs and starts what they need"
        ),
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; not reused in this process).
fn free_port() -> u16 {
    for _ in 0..50 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a free port on 127.0.0.1");
}

/// Last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal HTTP/1.0 request over std::net; returns (status code, body).
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.200}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A moto server (AWS mock speaking the real protocols) on a free local port,
/// owned by one test and killed when dropped.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`: give it to opsctl as `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// The port of `endpoint`.
    pub port: u16,
    child: Child,
    /// Holds the server's log (`moto.log`); removed with the server.
    log_dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts `$OPSCTL_MOTO_SERVER` on a free port and waits until it answers.
    ///
    /// Panics (with the server's log) if it does not come up within 20 s.
    ///
    /// With `OPSCTL_MOTO_EXT` set (scripts/test.sh sets it) this is [`MotoServer::start_ext`]:
    /// the extended server answers the EKS operations the steps wait with (`DescribeUpdate`).
    pub fn start() -> MotoServer {
        if std::env::var_os("OPSCTL_MOTO_EXT").is_some_and(|v| !v.is_empty()) {
            return Self::start_ext();
        }
        let bin = PathBuf::from(required_env("OPSCTL_MOTO_SERVER"));
        assert!(
            bin.is_file(),
            "OPSCTL_MOTO_SERVER={} does not exist: run scripts/setup.sh (or the tests through scripts/test.sh)",
            bin.display()
        );
        // Between releasing the probe listener and moto binding the port,
        // something else may take it: then moto exits and we try another port.
        let mut last_failure = String::new();
        for _attempt in 0..5 {
            match Self::try_start(&bin) {
                Ok(server) => return server,
                Err(StartError::PortTaken(msg)) => last_failure = msg,
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!("moto_server could not get a free port after 5 attempts:\n{last_failure}");
    }

    fn try_start(bin: &Path) -> Result<MotoServer, StartError> {
        let port = free_port();
        let log_dir = tempfile::Builder::new()
            .prefix("opsctl-moto-")
            .tempdir()
            .expect("create temp dir for the moto log");
        let log_path = log_dir.path().join("moto.log");
        let log = fs::File::create(&log_path).expect("create moto log");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .env("PYTHONUNBUFFERED", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let mut server = MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            child,
            log_dir,
        };

        let deadline = Instant::now() + MOTO_START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait on moto_server") {
                let log = server.log_tail(30);
                let msg = format!("moto_server exited ({status}) before it was ready on port {port}; its log:\n{log}");
                return Err(if log.contains("in use") {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Fatal(msg)
                });
            }
            // Ready when it answers, and it is *our* server that answers: ours
            // logs "Running on" once it holds the port (another process that
            // grabbed the port first would answer while ours fails to bind).
            if matches!(
                http_request(port, "GET", "/moto-api/", Duration::from_secs(1)),
                Ok((200, _))
            ) && fs::read_to_string(server.log_path())
                .is_ok_and(|log| log.contains("Running on"))
            {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "moto_server did not answer on {}/moto-api/ within {:?}; its log:\n{}",
                    server.endpoint,
                    MOTO_START_TIMEOUT,
                    server.log_tail(30)
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clears all of the server's state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        match http_request(
            self.port,
            "POST",
            "/moto-api/reset",
            Duration::from_secs(10),
        ) {
            Ok((200, _)) => {}
            Ok((code, body)) => panic!(
                "POST {}/moto-api/reset answered {code}: {body}",
                self.endpoint
            ),
            Err(e) => panic!(
                "POST {}/moto-api/reset failed: {e}\nlog:\n{}",
                self.endpoint,
                self.log_tail(30)
            ),
        }
    }

    /// Path of the server's log (stdout and stderr; one line per request).
    pub fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("moto.log")
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }
}

enum StartError {
    PortTaken(String),
    Fatal(String),
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // Printed into the failing test's captured output.
            eprintln!(
                "--- moto server {} log (last 40 lines) ---\n{}\n---",
                self.endpoint,
                self.log_tail(40)
            );
        }
    }
}

/// The repository root (where `scripts/`, `examples/` and `modules/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python command with boto3, with an environment that cannot reach real AWS.
fn python_command() -> Command {
    let mut cmd = Command::new(required_env("OPSCTL_SEED_PYTHON"));
    clean_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    cmd
}

/// Creates the example platform in the moto server at `endpoint` (idempotent):
/// EKS cluster `platform-prod` with nodegroups `general` (2/8/4) and `batch`
/// (0/4/2), RDS instance `platform-postgres-prod`. See `scripts/seed_platform.py`.
pub fn seed_platform(endpoint: &str) {
    let script = repo_root().join("scripts").join("seed_platform.py");
    let out = python_command()
        .arg(&script)
        .args(["--endpoint", endpoint, "--region", REGION])
        .output()
        .unwrap_or_else(|e| panic!("cannot run $OPSCTL_SEED_PYTHON {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "seed_platform.py --endpoint {endpoint} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const AWS_PYTHON_PRELUDE: &str = r#"
import json, os, sys, textwrap
import boto3
E = os.environ["OPSCTL_TEST_ENDPOINT"]
_kw = dict(endpoint_url=E, region_name="us-west-2",
           aws_access_key_id="testing", aws_secret_access_key="testing")
eks = boto3.client("eks", **_kw)
rds = boto3.client("rds", **_kw)
exec(compile(textwrap.dedent(os.environ["OPSCTL_TEST_CODE"]), "<aws_python>", "exec"))
"#;

/// Runs a Python snippet against the moto server at `endpoint` and returns its
/// stdout, trimmed. In scope: `boto3`, `json`, `E` (the endpoint) and ready
/// clients `eks` and `rds` (region us-west-2). The snippet is dedented, so an
/// indented raw string works. Panics with the snippet and stderr if it fails.
///
/// Use it to observe AWS state through the real API independently of opsctl,
/// and to change things behind opsctl's back (drift):
///
/// ```ignore
/// let desired = aws_python(&moto.endpoint, "print(eks.describe_nodegroup(clusterName='platform-prod', \
///     nodegroupName='general')['nodegroup']['scalingConfig']['desiredSize'])");
/// ```
pub fn aws_python(endpoint: &str, code: &str) -> String {
    let out = python_command()
        .args(["-c", AWS_PYTHON_PRELUDE])
        .env("OPSCTL_TEST_ENDPOINT", endpoint)
        .env("OPSCTL_TEST_CODE", code)
        .output()
        .unwrap_or_else(|e| panic!("cannot run $OPSCTL_SEED_PYTHON: {e}"));
    if !out.status.success() {
        panic!(
            "aws_python failed ({}) against {endpoint}:\ncode:\n{code}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scratch directory for one test: procedure files go in it, opsctl runs in it.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("opsctl-test-")
            .tempdir()
            .expect("create temp workdir");
        Workdir { dir }
    }

    /// Writes `contents` to `name` (relative, may contain subdirectories), e.g. `main.hcl`.
    pub fn write(&self, name: &str, contents: &str) {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Reads a file relative to the workdir.
    pub fn read(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/state`, for `--state-dir` (not created here).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

impl Default for Workdir {
    fn default() -> Self {
        Workdir::new()
    }
}

/// Removes inherited variables that could change what opsctl or an AWS SDK
/// does: every `OPSCTL_*` and `AWS_*` variable, and colour forcing.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("OPSCTL_") || k.starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    for k in [
        "CLICOLOR_FORCE",
        "FORCE_COLOR",
        "CLICOLOR",
        "COLUMNS",
        "EDITOR",
        "VISUAL",
        "PAGER",
    ] {
        cmd.env_remove(k);
    }
}

/// An `opsctl` command to run in `work` with a clean environment: dummy
/// credentials, region us-west-2, `AWS_ENDPOINT_URL` = the moto server when
/// given (none otherwise), no colour, no IMDS, no AWS config files, and no
/// inherited `OPSCTL_*`/`AWS_*` variables. Add the arguments, including
/// `--state-dir`, yourself; run it with [`run`].
pub fn opsctl(work: &Workdir, moto: Option<&MotoServer>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsctl"));
    cmd.current_dir(work.path());
    clean_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if let Some(m) = moto {
        cmd.env("AWS_ENDPOINT_URL", &m.endpoint);
    }
    cmd
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics, showing stdout and stderr, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\n{self}",
            self.code
        );
        self
    }

    /// Panics, showing stdout and stderr, unless the exit code is 0.
    pub fn expect_success(&self) -> &Self {
        self.expect_code(0)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.code, self.stdout, self.stderr
        )
    }
}

fn cmd_timeout() -> Duration {
    std::env::var("OPSCTL_TEST_CMD_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CMD_TIMEOUT)
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

/// Runs `cmd` to completion with stdin closed and captures its output.
/// A run longer than 180 s (`OPSCTL_TEST_CMD_TIMEOUT`) is killed and fails the test.
pub fn run(cmd: &mut Command) -> Output {
    run_inner(cmd, None)
}

/// Like [`run`], but writes `input` to the command's stdin, then closes it.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    run_inner(cmd, Some(input))
}

fn run_inner(cmd: &mut Command, input: Option<&str>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));

    let writer = input.map(|text| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let text = text.to_owned();
        // Ignore errors: the command may exit without reading its input.
        thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        })
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });

    let timeout = cmd_timeout();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        thread::sleep(Duration::from_millis(10));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let output = Output {
        code: exit_code(status),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
    };
    if timed_out {
        panic!("{cmd:?} did not finish within {timeout:?} and was killed\n{output}");
    }
    output
}

/// Runs `bash SCRIPT start DIR` in a fresh temporary directory (named `PREFIX…`) and returns
/// that directory, for the per-process servers of `tests/kube_support` and
/// `tests/vault_support`. A start can fail on a loaded machine (a port taken between probing
/// and binding, a component slow to come up): after `SCRIPT stop DIR` it tries once more in a
/// fresh directory, then panics with both outputs and `hint` (how to install the server).
pub fn start_with_script(sh: &Path, prefix: &str, hint: &str) -> PathBuf {
    let mut failures = Vec::new();
    loop {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temp dir for a server")
            .keep();
        let out = Command::new("bash")
            .arg(sh)
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", sh.display()));
        if out.status.success() {
            return dir;
        }
        let _ = Command::new("bash").arg(sh).arg("stop").arg(&dir).output();
        failures.push(format!(
            "{} start {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            sh.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        assert!(failures.len() < 2, "{hint}:\n{}", failures.join("\n"));
    }
}

// ---- the extended moto server (scripts/moto_ext) ------------------------------------------

/// A minimal HTTP/1.0 request with a JSON body; returns (status code, body).
fn http_request_json(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.200}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl MotoServer {
    /// Starts the extended moto server (`$OPSCTL_SEED_PYTHON $OPSCTL_MOTO_EXT --port N`,
    /// `scripts/moto_ext/server.py`: moto plus EKS version updates, delayed status
    /// transitions, injected failures, throttling and call counts) on a free port and
    /// waits until it answers. Panics (with its log) if it does not come up within 20 s.
    pub fn start_ext() -> MotoServer {
        let python = PathBuf::from(required_env("OPSCTL_SEED_PYTHON"));
        let script = PathBuf::from(required_env("OPSCTL_MOTO_EXT"));
        assert!(
            script.is_file(),
            "OPSCTL_MOTO_EXT={} does not exist: run the tests through scripts/test.sh",
            script.display()
        );
        let mut last_failure = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let log_dir = tempfile::Builder::new()
                .prefix("opsctl-motoext-")
                .tempdir()
                .expect("create temp dir for the moto log");
            let log_path = log_dir.path().join("moto.log");
            let log = fs::File::create(&log_path).expect("create moto log");
            let mut cmd = Command::new(&python);
            clean_env(&mut cmd);
            let child = cmd
                .arg(&script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot spawn {} {}: {e}",
                        python.display(),
                        script.display()
                    )
                });
            let mut server = MotoServer {
                endpoint: format!("http://127.0.0.1:{port}"),
                port,
                child,
                log_dir,
            };
            let deadline = Instant::now() + MOTO_START_TIMEOUT;
            loop {
                if let Some(status) = server.child.try_wait().expect("try_wait on moto_ext") {
                    let log = server.log_tail(30);
                    last_failure = format!(
                        "moto_ext server exited ({status}) before it was ready on port {port}; its log:\n{log}"
                    );
                    assert!(log.contains("in use"), "{last_failure}");
                    break;
                }
                if matches!(
                    http_request(port, "GET", "/_opsctl/calls", Duration::from_secs(1)),
                    Ok((200, _))
                ) && fs::read_to_string(server.log_path())
                    .is_ok_and(|log| log.contains("Running on"))
                {
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_ext server did not answer on {}/_opsctl/calls within {:?}; its log:\n{}",
                    server.endpoint,
                    MOTO_START_TIMEOUT,
                    server.log_tail(30)
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_ext server could not get a free port after 5 attempts:\n{last_failure}");
    }

    /// Operation counts the extended server received (`GET /_opsctl/calls`), e.g.
    /// `calls()["UpdateClusterVersion"]`; a missing operation is `Null` (use [`Self::call_count`]).
    pub fn calls(&self) -> serde_json::Value {
        match http_request(self.port, "GET", "/_opsctl/calls", Duration::from_secs(10)) {
            Ok((200, body)) => serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("/_opsctl/calls answered non-JSON {body:?}: {e}")),
            other => panic!(
                "GET {}/_opsctl/calls failed: {other:?}\nlog:\n{}",
                self.endpoint,
                self.log_tail(30)
            ),
        }
    }

    /// How many calls of `operation` the extended server received (0 when none).
    pub fn call_count(&self, operation: &str) -> u64 {
        self.calls()
            .get(operation)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }

    /// Zeroes the call counts (`POST /_opsctl/calls/reset`).
    pub fn reset_calls(&self) {
        let answer = http_request_json(
            self.port,
            "POST",
            "/_opsctl/calls/reset",
            "",
            Duration::from_secs(10),
        );
        assert!(matches!(answer, Ok((200, _))), "calls/reset: {answer:?}");
    }

    /// Configures holds, failures or throttling (`POST /_opsctl/behaviour`, one entry or a
    /// list; see scripts/moto_ext/README.md), e.g.
    /// `json!({"service": "eks", "kind": "cluster", "id": "prod", "hold": {"UPDATING": 3.0}})`.
    pub fn behaviour(&self, entry: serde_json::Value) {
        match http_request_json(
            self.port,
            "POST",
            "/_opsctl/behaviour",
            &entry.to_string(),
            Duration::from_secs(10),
        ) {
            Ok((200, _)) => {}
            other => panic!(
                "POST {}/_opsctl/behaviour {entry} failed: {other:?}\nlog:\n{}",
                self.endpoint,
                self.log_tail(30)
            ),
        }
    }
}
