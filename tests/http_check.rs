//! `http_check` (issue 11) end to end with the real binary: against a local HTTP server the test
//! starts (Python's `http.server`, answering `/health` with the status and body written in a
//! file the test controls, and counting requests), and against the kube-apiserver's `/readyz`
//! over TLS with its CA.

mod kube_support;
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use support::{opsctl, run, Output, Workdir};

const SERVER: &str = r#"
import http.server, os, sys
root = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.strip("/").split("?")[0] or "health"
        with open(os.path.join(root, "hits-" + name), "a") as f:
            f.write("x\n")
        try:
            text = open(os.path.join(root, name)).read()
        except OSError:
            text = "404 not here"
        status, _, body = text.partition(" ")
        data = body.encode()
        self.send_response(int(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A local HTTP server whose answers are files in its directory: `NAME` holds
/// `STATUS BODY` for `/NAME`; `hits-NAME` gets a line per request.
struct Http {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Http {
    fn start() -> Http {
        let dir = tempfile::tempdir().unwrap();
        let python = std::env::var("OPSCTL_SEED_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SERVER)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python http server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("port");
        Http { child, dir, port }
    }
    fn set(&self, name: &str, answer: &str) {
        std::fs::write(self.dir.path().join(name), answer).unwrap();
    }
    fn hits(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join(format!("hits-{name}")))
            .unwrap_or_default()
            .lines()
            .count()
    }
    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn opsctl_in(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(args);
    run(&mut cmd)
}

fn effects(work: &Workdir, name: &str) -> usize {
    std::fs::read_to_string(work.path().join("effects.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == name)
        .count()
}

#[test]
fn a_healthy_endpoint_is_a_no_op_gate_and_plan_reads_it_once() {
    let http = Http::start();
    http.set(
        "health",
        r#"200 {"status": {"ready": true}, "version": "v3"}"#,
    );
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &format!(
            r#"
step "http_check" "app" {{
  url           = "{}"
  json_path     = "status.ready"
  json_value    = true
  body_contains = "v3"
}}
"#,
            http.url("health")
        ),
    );
    let plan = opsctl_in(&work, &["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(
        plan.stdout
            .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
        "{plan}"
    );
    assert_eq!(http.hits("health"), 1);
}

#[test]
fn a_gate_retries_until_healthy_then_the_next_step_runs() {
    let http = Http::start();
    http.set("health", "503 starting");
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &format!(
            r#"
step "http_check" "ready" {{
  url             = "{}"
  expected_status = [200, 204]
  body_regex      = "^ok( .*)?$"
  interval        = "300ms"
  timeout         = "60s"
}}

step "exec" "after" {{
  command    = "echo after >> effects.log"
  depends_on = [step.http_check.ready]
}}
"#,
            http.url("health")
        ),
    );
    let plan = opsctl_in(&work, &["plan"]);
    plan.expect_success();
    assert!(
        plan.stdout.contains("now: status 503; body: starting"),
        "{plan}"
    );
    // Healthy after a few attempts: flip the answer from another thread.
    let flip = {
        let path = http.dir.path().join("health");
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::fs::write(path, "200 ok fine").unwrap();
        })
    };
    let apply = opsctl_in(&work, &["apply", "--auto-approve"]);
    flip.join().unwrap();
    apply.expect_success();
    assert_eq!(effects(&work, "after"), 1);
    assert!(http.hits("health") >= 3, "{}", http.hits("health"));
}

#[test]
fn a_gate_that_never_gets_healthy_fails_with_the_last_answer_and_resume_continues() {
    let http = Http::start();
    http.set("health", r#"200 {"status": {"ready": false}}"#);
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &format!(
            r#"
step "exec" "before" {{
  command = "echo before >> effects.log"
}}

step "http_check" "ready" {{
  url        = "{}"
  json_path  = "status.ready"
  json_value = true
  interval   = "200ms"
  timeout    = "3s"
  depends_on = [step.exec.before]
}}

step "exec" "after" {{
  command    = "echo after >> effects.log"
  depends_on = [step.http_check.ready]
}}
"#,
            http.url("health")
        ),
    );
    let first = opsctl_in(&work, &["apply", "--auto-approve"]);
    first.expect_code(1);
    assert!(
        first.stderr.contains("JSON `status.ready` = true")
            && first
                .stderr
                .contains("last seen: status 200, but JSON `status.ready` is false, not true"),
        "{first}"
    );
    assert_eq!((effects(&work, "before"), effects(&work, "after")), (1, 0));
    http.set("health", r#"200 {"status": {"ready": true}}"#);
    let second = opsctl_in(&work, &["apply", "--resume", "--auto-approve"]);
    second.expect_success();
    assert_eq!((effects(&work, "before"), effects(&work, "after")), (1, 1));
}

#[test]
fn the_kube_apiserver_readyz_over_tls_with_its_ca() {
    let server = kube_support::server();
    let ca: PathBuf = server.dir.join("pki/ca.crt");
    let work = Workdir::new();
    let step = |ca_line: &str| {
        format!(
            r#"
step "http_check" "apiserver" {{
  url           = "{}/readyz"
  {ca_line}
  headers       = {{ Authorization = "Bearer opsctl-admin-token" }}
  body_contains = "ok"
  timeout       = "20s"
  interval      = "500ms"
}}
"#,
            server.url()
        )
    };
    work.write(
        "main.hcl",
        &step(&format!("ca_cert = \"{}\"", ca.display())),
    );
    let plan = opsctl_in(&work, &["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(
        plan.stdout
            .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
        "{plan}"
    );
    // Without the CA the server's certificate is not trusted: the check stays unhealthy and
    // says why.
    work.write("main.hcl", &step(""));
    let plan = opsctl_in(&work, &["plan"]);
    plan.expect_success();
    assert!(plan.stdout.contains("now: no answer:"), "{plan}");
    assert!(plan.stdout.to_lowercase().contains("certificate"), "{plan}");
}
