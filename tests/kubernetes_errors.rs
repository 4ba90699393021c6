//! Errors and credentials of the `kubernetes` provider against a real kube-apiserver (1.20,
//! started once for this file through `scripts/kube.sh`): an unreachable server, a wrong token
//! (401), a forbidden write (403), a missing object (404), a kind or version the server does not
//! serve, and a 409 conflict when the object changes while apply waits for approval — each a
//! message naming the step and its target, a non-zero exit, and a journal that is either absent
//! (plan-time failures) or valid and resumable (apply-time failures). Then the ways to connect:
//! exec-plugin credentials, a client certificate, `KUBECONFIG` as a list, `~/.kube/config`, and
//! the in-cluster configuration. Each test uses its own nodes and namespaces.

mod kube_support;
mod support;

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube_support::*;
use serde_json::json;

/// Plan and apply of `steps` with `kubeconfig` both fail before anything is journaled; returns
/// the combined output of the apply (the plan's is checked for the same `needles`).
fn fails_at_plan(work: &Workdir, needles: &[&str]) -> String {
    let p = opsctl_run(work, &["plan"]);
    p.expect_code(1);
    let a = opsctl_run(work, &["apply", "--auto-approve"]);
    a.expect_code(1);
    for out in [&p, &a] {
        let text = format!("{}{}", out.stdout, out.stderr);
        for n in needles {
            assert!(text.contains(n), "`{n}` missing from:\n{out}");
        }
    }
    assert!(
        journal_records(work).is_empty(),
        "a plan-time failure wrote a journal: {:?}",
        journal_types(work)
    );
    format!("{}{}", a.stdout, a.stderr)
}

fn cordon(node: &str) -> String {
    format!("step \"kubernetes_cordon\" \"c\" {{\n  node = \"{node}\"\n}}\n")
}

fn scale(ns: &str, name: &str, replicas: u32, extra: &str) -> String {
    format!(
        "step \"kubernetes_scale\" \"s\" {{\n  kind      = \"Deployment\"\n  namespace = \"{ns}\"\n  name      = \"{name}\"\n  replicas  = {replicas}\n{extra}}}\n"
    )
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_plan_naming_step_target_and_server() {
    server();
    let work = Workdir::new();
    let url = format!("https://127.0.0.1:{}", closed_port());
    let kc = kubeconfig_with_user(&work, "kc", &url, "    token: opsctl-admin-token");
    write_steps(&work, &kc, &cordon("unreachable-1"));
    let text = blocking(move || fails_at_plan(&work, &[])).await;
    assert!(text.contains("step.kubernetes_cordon.c"), "{text}");
    assert!(
        text.contains("reading `k8s/opsctl-test/v1/Node/unreachable-1`"),
        "{text}"
    );
    assert!(text.contains("get node `unreachable-1`"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_a_401_naming_step_and_target() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "err-401").await;
    create_deployment(&c, "err-401", "web", 1).await;
    let work = Workdir::new();
    let kc = kubeconfig_with_user(&work, "kc", &s.url(), "    token: not-a-token");
    write_steps(&work, &kc, &scale("err-401", "web", 0, ""));
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_scale.s",
                "k8s/opsctl-test/apps/v1/Deployment/err-401/web",
                "401 Unauthorized",
            ],
        )
    })
    .await;
    assert_eq!(
        deployment(&c, "err-401", "web")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_write_is_a_403_naming_verb_and_resource_and_the_run_resumes() {
    let s = server();
    let c = client().await;
    create_node(&c, "forbidden-w").await;
    let work = Workdir::new();
    // A copy of the reader's kubeconfig, replaced by the admin's before resuming (the
    // configuration, hence the run, stays the same).
    let kc = work.path().join("kubeconfig");
    std::fs::copy(s.reader(), &kc).expect("copy kubeconfig");
    write_steps(&work, &kc, &cordon("forbidden-w"));
    let work = blocking(move || {
        // The reader may read: plan works.
        plan(&work, 2);
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        a.expect_code(1);
        let text = format!("{}{}", a.stdout, a.stderr);
        for n in [
            "step.kubernetes_cordon.c",
            "k8s/opsctl-test/v1/Node/forbidden-w",
            "patch node `forbidden-w`",
            "403 Forbidden",
            "User \"reader\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope",
        ] {
            assert!(text.contains(n), "`{n}` missing:\n{a}");
        }
        assert_eq!(
            journal_types(&work),
            ["run_started", "step_started", "step_failed", "run_finished"],
        );
        let failed = &journal_records(&work)[2];
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains("cannot patch resource \"nodes\""),
            "{failed}"
        );
        work
    })
    .await;
    assert!(!unschedulable(&node(&c, "forbidden-w").await));

    std::fs::copy(s.kubeconfig(), work.path().join("kubeconfig")).expect("copy kubeconfig");
    blocking(move || {
        let r = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        r.expect_success();
        assert!(
            r.stdout.contains("Resuming run ") && r.stdout.contains("1 failed"),
            "{r}"
        );
        assert!(r.stdout.contains("Apply complete! "), "{r}");
    })
    .await;
    assert!(unschedulable(&node(&c, "forbidden-w").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_exist_is_a_plan_error_saying_not_found() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "err-404").await;
    let work = workdir(&s.kubeconfig(), &scale("err-404", "nothing", 2, ""));
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_scale.s",
                "k8s/opsctl-test/apps/v1/Deployment/err-404/nothing",
                "Deployment `nothing` not found in namespace `err-404`",
            ],
        );
    })
    .await;
    let work = workdir(&s.kubeconfig(), &cordon("no-such-node"));
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_cordon.c",
                "k8s/opsctl-test/v1/Node/no-such-node",
                "node `no-such-node` not found",
            ],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_or_version_the_server_does_not_serve_is_a_plan_error_naming_what_it_serves() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "err-kind").await;
    create_deployment(&c, "err-kind", "web", 1).await;
    // apps/v1beta1 was removed in 1.16.
    let work = workdir(
        &s.kubeconfig(),
        &scale("err-kind", "web", 0, "  api_version = \"apps/v1beta1\"\n"),
    );
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_scale.s",
                "k8s/opsctl-test/apps/v1beta1/Deployment/err-kind/web",
                "the server does not serve `apps/v1beta1` (it serves: apps/v1)",
            ],
        );
    })
    .await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"s\" {\n  kind        = \"CronJob\"\n  api_version = \"apps/v1\"\n  namespace   = \"err-kind\"\n  name        = \"web\"\n  replicas    = 0\n}\n",
    );
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_scale.s",
                "k8s/opsctl-test/apps/v1/CronJob/err-kind/web",
                "the server does not serve kind `CronJob` in `apps/v1`",
            ],
        );
    })
    .await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_scale\" \"s\" {\n  kind        = \"Widget\"\n  api_version = \"example.com/v1\"\n  namespace   = \"err-kind\"\n  name        = \"web\"\n  replicas    = 0\n}\n",
    );
    blocking(move || {
        fails_at_plan(
            &work,
            &[
                "step.kubernetes_scale.s",
                "k8s/opsctl-test/example.com/v1/Widget/err-kind/web",
                "the server does not serve the API group `example.com`",
            ],
        );
    })
    .await;
    assert_eq!(
        deployment(&c, "err-kind", "web")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
}

/// Scale patches (of `ns/name`) the server answered 409.
fn scale_conflicts(ns: &str, name: &str) -> usize {
    audit_events(|e| {
        e["verb"] == "patch"
            && e["objectRef"]["resource"] == "deployments"
            && e["objectRef"]["subresource"] == "scale"
            && e["objectRef"]["namespace"] == ns
            && e["objectRef"]["name"] == name
            && e["responseStatus"]["code"] == 409
    })
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_beside_the_plan_while_apply_awaits_approval_is_a_409_then_retried() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "conflict-ok").await;
    create_deployment(&c, "conflict-ok", "web", 3).await;
    let work = workdir(
        &s.kubeconfig(),
        &scale("conflict-ok", "web", 0, "  wait      = false\n"),
    );
    let (pending, work) = blocking(move || (AwaitingApproval::start(&work, &[]), work)).await;
    // Someone labels the Deployment after the plan was shown: its resourceVersion changes,
    // its replicas do not.
    let api: Api<Deployment> = Api::namespaced(c.clone(), "conflict-ok");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "metadata": { "labels": { "touched": "yes" } } })),
    )
    .await
    .expect("label the deployment");
    let (out, _work) = blocking(move || (pending.answer("yes"), work)).await;
    out.expect_success();
    assert!(out.stdout.contains("      ~ replicas: 3 -> 0\n"), "{out}");
    assert!(out.stdout.contains("Apply complete! "), "{out}");
    assert!(
        scale_conflicts("conflict-ok", "web") >= 1,
        "the first write was not conditional on the plan's resourceVersion"
    );
    assert_eq!(
        deployment(&c, "conflict-ok", "web")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_change_while_apply_awaits_approval_is_a_409_naming_it_and_resumable() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "conflict").await;
    create_deployment(&c, "conflict", "web", 3).await;
    let work = workdir(
        &s.kubeconfig(),
        &scale("conflict", "web", 1, "  wait      = false\n"),
    );
    let (pending, work) = blocking(move || (AwaitingApproval::start(&work, &[]), work)).await;
    // Someone scales the Deployment to 5 after the plan (3 -> 1) was shown.
    let api: Api<Deployment> = Api::namespaced(c.clone(), "conflict");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": { "replicas": 5 } })),
    )
    .await
    .expect("scale the deployment");
    let (out, work) = blocking(move || (pending.answer("yes"), work)).await;
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    for n in [
        "step.kubernetes_scale.s",
        "k8s/opsctl-test/apps/v1/Deployment/conflict/web",
        "patch scale of Deployment `conflict/web`",
        "409 Conflict",
        "The object changed since the plan was approved (approved: replicas: 3 -> 1; now: replicas: 5 -> 1): run `opsctl plan` again",
    ] {
        assert!(text.contains(n), "`{n}` missing:\n{out}");
    }
    assert_eq!(scale_conflicts("conflict", "web"), 1);
    assert_eq!(
        deployment(&c, "conflict", "web")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(5),
        "the change made after approval was overwritten"
    );
    // The journal is whole: the failed step, then the run's end; resume plans 5 -> 1.
    blocking(move || {
        assert_eq!(
            journal_types(&work),
            ["run_started", "step_started", "step_failed", "run_finished"],
        );
        let r = opsctl_run(&work, &["apply", "--resume", "--auto-approve"]);
        r.expect_success();
        assert!(r.stdout.contains("      ~ replicas: 5 -> 1\n"), "{r}");
        assert!(r.stdout.contains("Apply complete! "), "{r}");
    })
    .await;
    assert_eq!(
        deployment(&c, "conflict", "web")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
}

// --- connecting ----------------------------------------------------------------------------

/// `opsctl plan --detailed-exitcode` in `work` with the environment changed by `env`
/// (`Some`: set, `None`: removed); expects exit 2 and returns the output.
fn plan_with_env(work: &Workdir, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(["plan", "--detailed-exitcode", "--state-dir"])
        .arg(work.state_dir());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_plugin_credentials_plan_against_the_server() {
    let s = server();
    let c = client().await;
    create_node(&c, "exec-1").await;
    let work = Workdir::new();
    // A credential plugin as `kubectl` runs it: prints an ExecCredential on stdout.
    work.write(
        "credential.sh",
        "#!/bin/sh\necho \"$KUBERNETES_EXEC_INFO\" > \"$(dirname \"$0\")/exec-info.json\"\ncat <<EOF\n{\"apiVersion\": \"client.authentication.k8s.io/v1beta1\", \"kind\": \"ExecCredential\", \"status\": {\"token\": \"opsctl-admin-token\"}}\nEOF\n",
    );
    let script = work.path().join("credential.sh");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let kc = kubeconfig_with_user(
        &work,
        "kc",
        &s.url(),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      interactiveMode: Never\n",
            script.display()
        ),
    );
    write_steps(&work, &kc, &cordon("exec-1"));
    blocking(move || {
        let p = plan_with_env(&work, &[]);
        p.expect_code(2);
        assert!(
            p.stdout.contains("~ spec.unschedulable: false -> true"),
            "{p}"
        );
        let info = work.read("exec-info.json");
        assert!(info.contains("ExecCredential"), "{info}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_plans_against_the_server() {
    let s = server();
    let c = client().await;
    create_node(&c, "cert-1").await;
    let work = Workdir::new();
    // A certificate for user `cert-admin` in group system:masters, signed by the cluster CA.
    let pki = s.dir.join("pki");
    // (An X.509 v3 certificate: rustls refuses v1 ones, which `openssl x509 -req` makes
    // without extensions.)
    let sh = format!(
        "set -e; cd {dir}; echo 'extendedKeyUsage=clientAuth' > client.ext; openssl req -new -newkey rsa:2048 -nodes -subj '/O=system:masters/CN=cert-admin' -keyout client.key -out client.csr 2>/dev/null; \
         openssl x509 -req -in client.csr -CA {pki}/ca.crt -CAkey {pki}/ca.key -CAcreateserial -CAserial client.srl -days 1 -extfile client.ext -out client.crt 2>/dev/null",
        dir = work.path().display(),
        pki = pki.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    let kc = kubeconfig_with_user(
        &work,
        "kc",
        &s.url(),
        &format!(
            "    client-certificate: {0}/client.crt\n    client-key: {0}/client.key\n",
            work.path().display()
        ),
    );
    write_steps(&work, &kc, &cordon("cert-1"));
    blocking(move || {
        plan_with_env(&work, &[]).expect_code(2);
    })
    .await;
    assert!(!audit_events(
        |e| e["user"]["username"] == "cert-admin" && e["objectRef"]["name"] == "cert-1"
    )
    .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_list_is_merged_first_file_first_missing_files_skipped_then_home() {
    let s = server();
    let c = client().await;
    create_node(&c, "list-1").await;
    let work = Workdir::new();
    // The first file names the context and its (admin) user but no cluster; the second, the
    // viewer's kubeconfig, brings the cluster, and its own context and user lose to the first.
    work.write(
        "first",
        "apiVersion: v1\nkind: Config\nusers:\n- name: first-user\n  user:\n    token: opsctl-admin-token\ncontexts:\n- name: opsctl-test\n  context:\n    cluster: opsctl-test\n    user: first-user\ncurrent-context: opsctl-test\n",
    );
    work.write("main.hcl", &cordon("list-1"));
    let list = format!(
        "{}:{}:{}",
        work.path().join("missing").display(),
        work.path().join("first").display(),
        s.viewer().display()
    );
    let home = tempfile::tempdir().expect("home");
    let home_path = home.path().to_path_buf();
    let admin = s.kubeconfig();
    blocking(move || {
        let p = plan_with_env(
            &work,
            &[
                ("KUBECONFIG", Some(&list)),
                ("HOME", Some(home_path.to_str().unwrap())),
            ],
        );
        p.expect_code(2);
        assert!(p.stdout.contains("k8s/opsctl-test/v1/Node/list-1"), "{p}");
        // The viewer alone may not read nodes.
        let viewer = s.viewer().display().to_string();
        let p = plan_with_env(
            &work,
            &[
                ("KUBECONFIG", Some(&viewer)),
                ("HOME", Some(home_path.to_str().unwrap())),
            ],
        );
        p.expect_code(1);
        assert!(p.stderr.contains("403 Forbidden"), "{p}");
        // No KUBECONFIG: ~/.kube/config.
        std::fs::create_dir_all(home_path.join(".kube")).unwrap();
        std::fs::copy(&admin, home_path.join(".kube/config")).unwrap();
        let p = plan_with_env(
            &work,
            &[
                ("KUBECONFIG", None),
                ("HOME", Some(home_path.to_str().unwrap())),
            ],
        );
        p.expect_code(2);
        // Nothing at all: a message saying where it looked.
        std::fs::remove_file(home_path.join(".kube/config")).unwrap();
        let p = plan_with_env(
            &work,
            &[
                ("KUBECONFIG", None),
                ("KUBERNETES_SERVICE_HOST", None),
                ("HOME", Some(home_path.to_str().unwrap())),
            ],
        );
        p.expect_code(1);
        assert!(
            p.stderr
                .contains("no Kubernetes configuration: no KUBECONFIG and no `")
                && p.stderr
                    .contains("not in a pod (KUBERNETES_SERVICE_HOST is not set)"),
            "{p}"
        );
    })
    .await;
    drop(home);
}

fn in_cluster_env<'a>(home: &'a str, port: &'a str) -> Vec<(&'static str, Option<&'a str>)> {
    vec![
        ("KUBECONFIG", None),
        ("HOME", Some(home)),
        ("KUBERNETES_SERVICE_HOST", Some("127.0.0.1")),
        ("KUBERNETES_SERVICE_PORT", Some(port)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubeconfig_in_a_pod_the_service_account_is_used() {
    let s = server();
    let c = client().await;
    create_node(&c, "incluster-1").await;
    let work = Workdir::new();
    work.write("main.hcl", &cordon("incluster-1"));
    let home = tempfile::tempdir().expect("home");
    let home_path = home.path().display().to_string();
    let port = s.url().rsplit(':').next().unwrap().to_string();
    // A pod's service account directory, mounted where kube-rs (like client-go) reads it:
    // /var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt, namespace).
    let sa = work.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "opsctl-admin-token").unwrap();
    std::fs::write(sa.join("namespace"), "pod-ns").unwrap();
    std::fs::copy(s.dir.join("pki/ca.crt"), sa.join("ca.crt")).unwrap();
    blocking(move || {
        // Outside a pod (no service account files here): the in-cluster configuration is what
        // was tried, and the message says so.
        if !Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists() {
            let p = plan_with_env(&work, &in_cluster_env(&home_path, &port));
            p.expect_code(1);
            assert!(
                p.stderr.contains("no kubeconfig, and the in-cluster configuration (KUBERNETES_SERVICE_HOST) cannot be loaded"),
                "{p}"
            );
        }
        // In a private mount namespace with the service account mounted, as in a pod.
        let probe = std::process::Command::new("unshare")
            .args(["-m", "true"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("note: `unshare -m` is not permitted here; the mounted service account case is not run");
            return;
        }
        let opsctl = env!("CARGO_BIN_EXE_opsctl");
        let script = format!(
            "set -e; mount -t tmpfs none /run; mkdir -p /run/secrets/kubernetes.io/serviceaccount; \
             cp {sa}/* /run/secrets/kubernetes.io/serviceaccount/; \
             exec {opsctl} plan --detailed-exitcode --state-dir {state}",
            sa = sa.display(),
            state = work.state_dir().display()
        );
        let mut cmd = opsctl_cmd_in(&work);
        cmd.args(["-m", "sh", "-c", &script]);
        for (k, v) in in_cluster_env(&home_path, &port) {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let p = run(&mut cmd);
        p.expect_code(2);
        assert!(
            p.stdout.contains("k8s/in-cluster/v1/Node/incluster-1"),
            "{p}"
        );
    })
    .await;
    drop(home);
}

/// `unshare` with opsctl's clean test environment, in `work`.
fn opsctl_cmd_in(work: &Workdir) -> std::process::Command {
    let clean = opsctl(work, None);
    let mut u = std::process::Command::new("unshare");
    u.current_dir(work.path());
    for (k, v) in clean.get_envs() {
        match v {
            Some(v) => u.env(k, v),
            None => u.env_remove(k),
        };
    }
    u
}
