//! Shared by the Vault test files: one real OpenBao dev server per test process (started through
//! `scripts/vault.sh`, `$OPSCTL_VAULT_SH`, stopped at exit), a root API client, and opsctl runs
//! against it (`VAULT_ADDR`/`VAULT_TOKEN` set, other `VAULT_*` variables removed).
//!
//! Use it as `mod support; mod vault_support;` and `use vault_support::*;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use crate::support::{opsctl, run, Output, Workdir};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// The server shared by every test of this process.
pub struct VaultServer {
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token.
    pub token: String,
}

static SERVER: OnceLock<VaultServer> = OnceLock::new();

fn script() -> PathBuf {
    match std::env::var_os("OPSCTL_VAULT_SH") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "OPSCTL_VAULT_SH is not set: run the tests through scripts/test.sh, which installs OpenBao (scripts/vault.sh install) and points at scripts/vault.sh"
        ),
    }
}

extern "C" fn stop_server() {
    if let Some(s) = SERVER.get() {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&s.dir)
            .output();
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

/// Reads `KEY=VALUE` lines.
fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts the server on first use (and stops it and removes its directory when the test
/// process exits).
pub fn server() -> &'static VaultServer {
    SERVER.get_or_init(|| {
        let sh = script();
        let dir = crate::support::start_with_script(
            &sh,
            "opsctl-vault-",
            "cannot start OpenBao (run `bash scripts/vault.sh install` first)",
        );
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(stop_server);
        }
        let env = env_file(&dir.join("env"));
        VaultServer {
            addr: env["VAULT_ADDR"].clone(),
            token: env["VAULT_TOKEN"].clone(),
            dir,
        }
    })
}

/// A client of the shared server with `token`.
pub fn client_with(token: &str) -> VaultClient {
    let s = server();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&s.addr)
            .token(token)
            .build()
            .expect("vault settings"),
    )
    .expect("vault client")
}

/// A root client of the shared server.
pub fn client() -> VaultClient {
    client_with(&server().token)
}

/// An `opsctl` command in `work` with `VAULT_ADDR` and `VAULT_TOKEN` of the shared server.
pub fn opsctl_cmd(work: &Workdir) -> Command {
    let s = server();
    let mut cmd = opsctl(work, None);
    for k in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "VAULT_SKIP_VERIFY",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("VAULT_ADDR", &s.addr).env("VAULT_TOKEN", &s.token);
    cmd
}

/// Runs `opsctl ARGS --state-dir <work>/state`.
pub fn opsctl_run(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl_cmd(work);
    cmd.args(args).arg("--state-dir").arg(work.state_dir());
    run(&mut cmd)
}

/// `opsctl plan --detailed-exitcode` with the exit code it must give (0: nothing to do, 2: changes).
pub fn plan(work: &Workdir, code: i32) -> Output {
    let out = opsctl_run(work, &["plan", "--detailed-exitcode"]);
    out.expect_code(code);
    out
}

pub fn apply(work: &Workdir) -> Output {
    let out = opsctl_run(work, &["apply", "--auto-approve"]);
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
    out
}

/// A workdir whose `main.hcl` is an empty `provider "vault"` block (address and token from the
/// environment, as the `vault` CLI takes them) plus `steps`.
pub fn workdir(steps: &str) -> Workdir {
    let work = Workdir::new();
    write_steps(&work, steps);
    work
}

pub fn write_steps(work: &Workdir, steps: &str) {
    work.write("main.hcl", &format!("provider \"vault\" {{}}\n\n{steps}"));
}

/// The server's port replaced by `PORT`, for snapshots.
pub fn portless(text: &str) -> String {
    let addr = server().addr.trim_start_matches("http://");
    text.replace(addr, "127.0.0.1:PORT")
}

/// Every file under `dir` (recursively) as text, with its path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// Runs blocking work (an opsctl run) off the async test's threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The PostgreSQL 15 cluster shared by every test of this process (started in the server's
/// directory through `vault.sh start-postgres`, so that `vault.sh stop` stops it at exit).
pub struct Postgres {
    pub port: String,
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();

pub fn postgres() -> &'static Postgres {
    POSTGRES.get_or_init(|| {
        let dir = &server().dir;
        let out = Command::new("bash")
            .arg(script())
            .arg("start-postgres")
            .arg(dir)
            .output()
            .expect("run vault.sh start-postgres");
        assert!(
            out.status.success(),
            "vault.sh start-postgres failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = env_file(&dir.join("pg.env"));
        Postgres {
            port: env["PGPORT"].clone(),
        }
    })
}

/// Runs `psql -tAc SQL` as the superuser; returns its output lines.
pub fn psql(sql: &str) -> Vec<String> {
    psql_as("postgres", "postgres", sql).unwrap_or_else(|e| panic!("psql {sql}: {e}"))
}

/// Runs `psql -tAc SQL` over TCP as `user` with `password`: its output lines, or its stderr.
pub fn psql_as(user: &str, password: &str, sql: &str) -> Result<Vec<String>, String> {
    let pg = postgres();
    let out = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port,
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-tAc", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Calls Vault's HTTP API with the root token through curl: `METHOD /v1/PATH` with `body`.
/// Returns the JSON answer (Null when empty); panics on an HTTP error.
pub fn vault_http(method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    vault_http_ns(None, method, path, body)
}

/// [`vault_http`] in a namespace.
pub fn vault_http_ns(
    namespace: Option<&str>,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let s = server();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-X", method])
        .arg("-H")
        .arg(format!("X-Vault-Token: {}", s.token));
    if let Some(ns) = namespace {
        cmd.arg("-H").arg(format!("X-Vault-Namespace: {ns}"));
    }
    if !body.is_null() {
        cmd.arg("-d").arg(body.to_string());
    }
    let out = cmd
        .arg(format!("{}/v1/{path}", s.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{method} {path}: {text}");
    if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }
}

/// A database secrets engine at `mount` (in namespace `ns`, else the root one) connected to
/// the shared PostgreSQL (as `pg`).
pub fn database_engine(ns: Option<&str>, mount: &str) {
    let pg = postgres();
    vault_http_ns(
        ns,
        "POST",
        &format!("sys/mounts/{mount}"),
        &serde_json::json!({ "type": "database" }),
    );
    vault_http_ns(
        ns,
        "POST",
        &format!("{mount}/config/pg"),
        &serde_json::json!({
            "plugin_name": "postgresql-database-plugin",
            "allowed_roles": "*",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
            "username": "postgres",
            "password": "postgres",
        }),
    );
}

/// Role `role` of the database engine at `mount` (in namespace `ns`): a login role named
/// `v-...-<role>-...` per credential.
pub fn database_role(ns: Option<&str>, mount: &str, role: &str) {
    vault_http_ns(
        ns,
        "POST",
        &format!("{mount}/roles/{role}"),
        &serde_json::json!({
            "db_name": "pg",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "default_ttl": "1h",
        }),
    );
}

/// Reads `MOUNT/creds/ROLE` (in namespace `ns`) once: (lease id, database user name).
pub fn issue_creds(ns: Option<&str>, mount: &str, role: &str) -> (String, String) {
    let a = vault_http_ns(
        ns,
        "GET",
        &format!("{mount}/creds/{role}"),
        &serde_json::Value::Null,
    );
    (
        a["lease_id"].as_str().expect("lease_id").to_string(),
        a["data"]["username"]
            .as_str()
            .expect("username")
            .to_string(),
    )
}

/// A second, private OpenBao dev server (for tests that break it, e.g. seal it), stopped and
/// removed on drop.
pub struct PrivateServer {
    pub dir: PathBuf,
    pub addr: String,
}

impl PrivateServer {
    /// A dev server (unsealed, root token `root`).
    pub fn start() -> PrivateServer {
        PrivateServer::start_with("start")
    }

    /// A non-dev server with Raft storage, uninitialised.
    pub fn start_raft() -> PrivateServer {
        PrivateServer::start_with("start-raft")
    }

    fn start_with(command: &str) -> PrivateServer {
        let dir = tempfile::Builder::new()
            .prefix("opsctl-vault-private-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let out = Command::new("bash")
            .arg(script())
            .arg(command)
            .arg(&dir)
            .output()
            .expect("run vault.sh");
        let server = PrivateServer {
            addr: String::new(),
            dir,
        };
        assert!(
            out.status.success(),
            "vault.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = server;
        server.addr = env_file(&server.dir.join("env"))["VAULT_ADDR"].clone();
        server
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
