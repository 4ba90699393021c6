//! End-to-end test of `examples/vault-db-password-rotation` (seed 002 "Secret Rotation" >
//! "Database Password Rotation") against three real servers at once: OpenBao in dev mode
//! (`tests/vault_support`: the new password is written into KV v2 and read by the `vault_kv`
//! data source), the extended moto server (`tests/support`, `scripts/moto_ext`: the RDS
//! instance is created through the API, ModifyDBInstance calls are counted) and a
//! kube-apiserver 1.20 (`tests/kube_support`: namespace `apps` with the Secret
//! `database-credentials` and the Deployments `fastapi-app` and `express-app`; the test plays
//! the kubelet so the restarts complete).
//!
//! Issue 9, "what must be true" 3 and 5: the procedure plans (insta snapshot) and applies, the
//! password reaches RDS and the Secret, the rollouts happen; and the password (and its base64
//! form) appears nowhere: not in the plan text, the journal, the lock (read while an apply holds
//! it), the stdout/stderr of plan, apply, a refused plan and a failed apply, nor in any file
//! under the state directory. A second test changes the Secret behind opsctl's back while the
//! RDS step waits: the conditional patch fails naming the change by digests, and
//! `apply --resume` reads the password from Vault again and finishes without a second
//! ModifyDBInstance, still leaking neither password.

mod kube_support;
mod support;
mod vault_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{aws_python, repo_root, run, MotoServer, Output, Workdir};

/// The new password written into Vault KV: long and unmistakable.
const PASSWORD: &str = "Rotated-From-Vault-Qx7v9Lm2Pz";
/// The password the instance and the Secret start with.
const OLD_PASSWORD: &str = "initial-password-0001";
const DB: &str = "platform-postgres-prod";
const NS: &str = "apps";
const KV_PATH: &str = "platform/postgres-prod";
const APPS: [&str; 2] = ["fastapi-app", "express-app"];

/// `opsctl` with the OpenBao address and token, the moto endpoint (polling from 0.2 s up to
/// 1 s) and the example's kubeconfig variable (unless resuming), in `work`.
fn opsctl_cmd(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Command {
    let mut cmd = vault_support::opsctl_cmd(work);
    cmd.env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("OPSCTL_AWS_POLL_INITIAL", "0.2")
        .env("OPSCTL_AWS_POLL_MAX", "1")
        .args(args);
    // `--resume` reuses the variables of the run it resumes.
    if !args.contains(&"--resume") {
        cmd.arg("--var").arg(format!(
            "kubeconfig={}",
            kube_support::server().kubeconfig().display()
        ));
    }
    cmd.arg("--state-dir").arg(work.state_dir());
    cmd
}

fn opsctl_run(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Output {
    run(&mut opsctl_cmd(work, moto, args))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The forms of the password that must appear nowhere: itself and its base64 encoding (what
/// the Secret's `data.password` holds).
fn secret_forms() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        base64::engine::general_purpose::STANDARD.encode(PASSWORD),
    ]
}

/// Panics if a form of the password is in `what` (named `name`).
#[track_caller]
fn assert_clean(name: &str, what: &[u8]) {
    for s in secret_forms() {
        assert!(
            !contains(what, &s),
            "{s:?} found in {name}:\n{}",
            String::from_utf8_lossy(what)
        );
    }
}

/// The plan text with what changes from run to run masked: ports after `127.0.0.1:`, paths
/// under `/tmp/`, durations such as `[1.2s]`, the account in RDS ARNs, and the digests that
/// stand for a Secret's values (keyed per process, so they differ from run to run).
fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("127.0.0.1:") {
            out.push_str("127.0.0.1:PORT");
            rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
        } else if let Some(r) = rest.strip_prefix("/tmp/") {
            out.push_str("/tmp/PATH");
            rest = r.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || "._/-".contains(c));
        } else if let Some(r) = rest.strip_prefix("(sensitive value #") {
            out.push_str("(sensitive value #DIGEST");
            rest = r.trim_start_matches(|c: char| c.is_ascii_hexdigit());
        } else if let Some(r) = rest.strip_prefix("arn:aws:rds:us-west-2:") {
            out.push_str("arn:aws:rds:us-west-2:[ACCOUNT]");
            rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
        } else if rest.starts_with('[')
            && rest.find("s]").is_some_and(|end| {
                end > 1 && rest[1..end].chars().all(|c| c.is_ascii_digit() || c == '.')
            })
        {
            out.push_str("[TIME]");
            rest = &rest[rest.find("s]").unwrap() + 2..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

async fn secret(c: &kube::Client) -> Secret {
    Api::<Secret>::namespaced(c.clone(), NS)
        .get("database-credentials")
        .await
        .expect("get secret")
}

fn secret_value(s: &Secret, key: &str) -> String {
    let data = s.data.as_ref().expect("secret data");
    let ByteString(bytes) = data.get(key).unwrap_or_else(|| panic!("no data.{key}"));
    String::from_utf8(bytes.clone()).expect("utf-8 secret value")
}

async fn restarted_at(c: &kube::Client, name: &str) -> Option<String> {
    kube_support::template_annotations(c, NS, name)
        .await
        .get("kubectl.kubernetes.io/restartedAt")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_password_rotation_from_vault_reaches_rds_and_the_secret_and_leaks_nowhere() {
    let started = std::time::Instant::now();
    // Kubernetes: namespace apps, the Secret and the two Deployments, rolled out; Vault: the
    // new password in KV v2 (the dev server mounts `secret/`); AWS: the instance, created
    // through the RDS API.
    let c = kube_support::client().await;
    let (kubelet, moto, work) = setup(&c, NS, KV_PATH).await;
    let rs_before = kube_support::replica_set_count(&c, NS).await;

    // Plan: a snapshot; nothing written anywhere.
    let secret_rv = secret(&c).await.metadata.resource_version;
    let (m, w) = (moto.clone(), work.clone());
    let p = vault_support::blocking(move || {
        let p = opsctl_run(&w, &m, &["plan", "--detailed-exitcode"]);
        p.expect_code(2);
        p
    })
    .await;
    insta::assert_snapshot!("example_password_rotation_plan", masked(&p.stdout));
    // The old and the new value are told apart (by their digests), never shown.
    let line = p
        .stdout
        .lines()
        .find(|l| l.contains("~ data.password: "))
        .unwrap_or_else(|| panic!("no data.password change in the plan:\n{p}"));
    let digests: Vec<&str> = line.split("(sensitive value #").skip(1).collect();
    assert_eq!(digests.len(), 2, "{line}");
    assert_ne!(digests[0][..12], digests[1][..12], "{line}");
    assert_eq!(
        secret(&c).await.metadata.resource_version,
        secret_rv,
        "plan wrote"
    );
    let m = moto.clone();
    let modifies = vault_support::blocking(move || m.call_count("ModifyDBInstance")).await;
    assert_eq!(modifies, 0, "plan modified the instance");

    // Apply, holding the instance in `modifying` for 3 s so that the lock can be read while
    // the apply holds it.
    moto.behaviour(json!({"service": "rds", "kind": "db-instance", "id": DB,
        "hold": {"modifying": 3}}));
    let lock = work.state_dir().join("opsctl.lock");
    let (m, w) = (moto.clone(), work.clone());
    let applying =
        tokio::task::spawn_blocking(move || opsctl_run(&w, &m, &["apply", "--auto-approve"]));
    let mut locks_seen = Vec::new();
    while !applying.is_finished() {
        if let Ok(bytes) = std::fs::read(&lock) {
            if !bytes.is_empty() {
                locks_seen.push(bytes);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = applying.await.expect("apply task");
    a.expect_success();
    assert!(a.stdout.contains("\nApply complete! "), "{a}");
    assert!(!locks_seen.is_empty(), "the lock was never seen held");
    for l in &locks_seen {
        assert_clean("the lock held during apply", l);
    }

    // RDS: one ModifyDBInstance. Kubernetes: the Secret holds the KV value, both restarted.
    let m = moto.clone();
    let modifies = vault_support::blocking(move || m.call_count("ModifyDBInstance")).await;
    assert_eq!(modifies, 1, "{}", moto.calls());
    let s = secret(&c).await;
    assert_eq!(secret_value(&s, "password"), PASSWORD);
    assert_eq!(secret_value(&s, "username"), "platform", "the patch merged");
    for app in APPS {
        assert!(
            restarted_at(&c, app).await.is_some(),
            "{app} was not restarted"
        );
        kube_support::rolled_out(&c, NS, app).await;
    }
    assert_eq!(
        kube_support::replica_set_count(&c, NS).await,
        rs_before + 2,
        "each restart rolls out a new ReplicaSet"
    );

    // A plan refused (an instance that does not exist): its message names it, not the secret.
    let (m, w) = (moto.clone(), work.clone());
    let refused = vault_support::blocking(move || {
        opsctl_run(&w, &m, &["plan", "--var", "db_instance=no-such-db"])
    })
    .await;
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("DB instance `no-such-db` not found"),
        "{refused}"
    );

    // A failed apply: the modification ends in `incompatible-parameters`.
    moto.behaviour(json!({"service": "rds", "kind": "db-instance", "id": DB,
        "hold": {"modifying": 1}, "fail": {"status": "incompatible-parameters"}}));
    let (m, w) = (moto.clone(), work.clone());
    let failed =
        vault_support::blocking(move || opsctl_run(&w, &m, &["apply", "--auto-approve"])).await;
    failed.expect_code(1);
    assert!(
        failed.stderr.contains("step.rds_instance.master_password")
            && failed.stderr.contains("incompatible-parameters"),
        "{failed}"
    );
    assert!(!failed.stderr.contains("panicked"), "{failed}");
    let m = moto.clone();
    let modifies = vault_support::blocking(move || m.call_count("ModifyDBInstance")).await;
    assert_eq!(modifies, 2, "the failed apply sent its modification");

    // Nowhere: outputs of every run, then every file under the state directory (the journal
    // of both applies among them).
    for (name, out) in [
        ("plan", &p),
        ("apply", &a),
        ("refused plan", &refused),
        ("failed apply", &failed),
    ] {
        assert_clean(&format!("{name} stdout"), out.stdout.as_bytes());
        assert_clean(&format!("{name} stderr"), out.stderr.as_bytes());
    }
    let files = files_under(&work.state_dir());
    assert!(
        files.iter().any(|(p, _)| p.contains("journal")),
        "no journal under the state directory: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let journal: Vec<u8> = files
        .iter()
        .filter(|(p, _)| p.contains("journal"))
        .flat_map(|(_, b)| b.clone())
        .collect();
    for step in [
        "step.rds_instance.master_password",
        "step.kubernetes_patch.credentials",
    ] {
        assert!(
            contains(&journal, step),
            "the journal does not record {step}"
        );
    }
    assert!(
        locks_seen.iter().any(|l| contains(l, "\"apply\"")),
        "the lock read was not the apply's"
    );
    for (path, bytes) in &files {
        assert_clean(path, bytes);
    }
    kubelet.abort();
    eprintln!("seed 002 rotation test took {:?}", started.elapsed());
}

/// Namespace `ns` with the Secret (password `OLD_PASSWORD`) and the two Deployments rolled
/// out (the kubelet played for it), `PASSWORD` in KV at `kv_path`, a moto server with the
/// instance, and a workdir holding the example. Returns the kubelet task, moto and the workdir.
async fn setup(
    c: &kube::Client,
    ns: &'static str,
    kv_path: &'static str,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<MotoServer>,
    std::sync::Arc<Workdir>,
) {
    kube_support::create_namespace(c, ns).await;
    let kubelet = kube_support::kubelet(c.clone(), ns);
    for app in APPS {
        let mut spec = kube_support::template(app);
        spec["replicas"] = json!(1);
        kube_support::create_deployment_spec(c, ns, app, spec).await;
    }
    let s: Secret = serde_json::from_value(json!({
        "metadata": { "name": "database-credentials" },
        "type": "Opaque",
        "stringData": { "username": "platform", "password": OLD_PASSWORD },
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
    for app in APPS {
        kube_support::rolled_out(c, ns, app).await;
    }
    let (moto, work) = vault_support::blocking(move || {
        vault_support::vault_http(
            "POST",
            &format!("secret/data/{kv_path}"),
            &json!({ "data": { "username": "platform", "password": PASSWORD } }),
        );
        let moto = MotoServer::start_ext();
        aws_python(
            &moto.endpoint,
            &format!(
                "rds.create_db_instance(DBInstanceIdentifier='{DB}', DBInstanceClass='db.r6g.large', \
                 Engine='postgres', AllocatedStorage=100, MasterUsername='platform', \
                 MasterUserPassword='{OLD_PASSWORD}')"
            ),
        );
        moto.reset_calls();
        let work = Workdir::new();
        let example = repo_root().join("examples/vault-db-password-rotation/main.hcl");
        work.write(
            "main.hcl",
            &std::fs::read_to_string(&example).expect("read the example"),
        );
        (moto, work)
    })
    .await;
    (
        kubelet,
        std::sync::Arc::new(moto),
        std::sync::Arc::new(work),
    )
}

/// Someone else writes another password into the Secret while the RDS step waits: the patch,
/// conditional on the version the plan read, fails naming what changed (digests only), and
/// `apply --resume` reads the password from Vault again and finishes without a second
/// ModifyDBInstance. Nothing printed or stored holds either password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_secret_changed_during_apply_fails_then_resume_finishes_and_leaks_nowhere() {
    const NS2: &str = "apps-resume";
    const KV2: &str = "platform/postgres-resume";
    const THEIRS: &str = "Someone-Elses-Password-8mN3";
    let c = kube_support::client().await;
    let (kubelet, moto, work) = setup(&c, NS2, KV2).await;
    let vars = [
        "--var".to_string(),
        format!("namespace={NS2}"),
        "--var".to_string(),
        format!("kv_path={KV2}"),
    ];

    moto.behaviour(json!({"service": "rds", "kind": "db-instance", "id": DB,
        "hold": {"modifying": 4}}));
    let (m, w, v) = (moto.clone(), work.clone(), vars.clone());
    let applying = tokio::task::spawn_blocking(move || {
        let mut args = vec!["apply", "--auto-approve"];
        args.extend(v.iter().map(String::as_str));
        opsctl_run(&w, &m, &args)
    });
    // Once the modification is sent, the Secret changes behind opsctl's back.
    let m = moto.clone();
    vault_support::blocking(move || {
        let start = std::time::Instant::now();
        while m.call_count("ModifyDBInstance") == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no ModifyDBInstance"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await;
    let patch = json!({ "stringData": { "password": THEIRS } });
    Api::<Secret>::namespaced(c.clone(), NS2)
        .patch(
            "database-credentials",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch secret");
    let failed = applying.await.expect("apply task");
    failed.expect_code(1);
    assert!(
        failed.stderr.contains("step.kubernetes_patch.credentials")
            && failed
                .stderr
                .contains("The object changed since the plan was approved"),
        "{failed}"
    );
    // What changed is named by digests of the values, never the values.
    assert!(
        failed
            .stderr
            .contains("(approved: data.password: \"(sensitive value #"),
        "{failed}"
    );

    let (m, w) = (moto.clone(), work.clone());
    let resumed = vault_support::blocking(move || {
        opsctl_run(&w, &m, &["apply", "--resume", "--auto-approve"])
    })
    .await;
    resumed.expect_success();
    assert!(
        resumed.stdout.contains("step.rds_instance.master_password: skipped (finished in an earlier attempt of this run)")
            && resumed.stdout.contains("1 skipped (finished earlier)"),
        "{resumed}"
    );
    let s = Api::<Secret>::namespaced(c.clone(), NS2)
        .get("database-credentials")
        .await
        .expect("get secret");
    assert_eq!(secret_value(&s, "password"), PASSWORD);
    let m = moto.clone();
    let modifies = vault_support::blocking(move || m.call_count("ModifyDBInstance")).await;
    assert_eq!(modifies, 1, "resume repeated the modification");
    for app in APPS {
        let restarted = kube_support::template_annotations(&c, NS2, app)
            .await
            .contains_key("kubectl.kubernetes.io/restartedAt");
        assert!(restarted, "{app} was not restarted");
        kube_support::rolled_out(&c, NS2, app).await;
    }

    let theirs = [
        THEIRS.to_string(),
        base64::engine::general_purpose::STANDARD.encode(THEIRS),
    ];
    let mut places: Vec<(String, Vec<u8>)> = vec![
        (
            "failed apply stdout".into(),
            failed.stdout.clone().into_bytes(),
        ),
        (
            "failed apply stderr".into(),
            failed.stderr.clone().into_bytes(),
        ),
        ("resume stdout".into(), resumed.stdout.clone().into_bytes()),
        ("resume stderr".into(), resumed.stderr.clone().into_bytes()),
    ];
    places.extend(files_under(&work.state_dir()));
    for (name, bytes) in &places {
        assert_clean(name, bytes);
        for t in &theirs {
            assert!(!contains(bytes, t), "{t:?} found in {name}");
        }
    }
    kubelet.abort();
}
