//! `opsctl plan --detailed-exitcode` in every combination the issue names: 0 nothing to do,
//! 1 error (errors win over changes), 2 changes pending (`run` steps count; a plan of only
//! `noop` steps counts; data-source reads alone do not), and a procedure whose target drifted
//! from its pinned state (a Deployment pinned to 3 replicas scaled to 5 behind opsctl's back,
//! on the real kube-apiserver of `tests/kube_support`).

mod kube_support;
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube_support::*;
use serde_json::json;
use support::{opsctl, run, Output, Workdir};

/// `opsctl plan --detailed-exitcode` in `work` (built-in step types only).
fn detailed(work: &Workdir) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.args(["plan", "--detailed-exitcode", "--state-dir"])
        .arg(work.state_dir());
    run(&mut cmd)
}

fn builtin_work(hcl: &str) -> Workdir {
    let work = Workdir::new();
    work.write("main.hcl", hcl);
    work
}

#[test]
fn fully_converged_is_0() {
    // An `exec` whose `creates` guard holds: nothing to do.
    let work = builtin_work("step \"exec\" \"made\" {\n  command = [\"touch\", \"made\"]\n  creates = \"main.hcl\"\n}\n");
    let out = detailed(&work);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
        "{out}"
    );
}

#[test]
fn run_steps_count_as_changes_2() {
    let work = builtin_work(
        "step \"exec\" \"hello\" {\n  command = [\"echo\", \"hello\"]\n}\n\nstep \"exec\" \"made\" {\n  command = [\"touch\", \"made\"]\n  creates = \"main.hcl\"\n}\n",
    );
    let out = detailed(&work);
    out.expect_code(2);
    assert!(
        out.stdout
            .contains("Plan: 1 to run, 0 to change, 1 unchanged."),
        "{out}"
    );
    // Without the flag, pending changes are success.
    let mut cmd = opsctl(&work, None);
    cmd.args(["plan", "--state-dir"]).arg(work.state_dir());
    run(&mut cmd).expect_code(0);
}

#[test]
fn only_noop_steps_count_as_changes_2() {
    let work = builtin_work(
        "step \"noop\" \"a\" {}\n\nstep \"noop\" \"b\" {\n  depends_on = [step.noop.a]\n}\n",
    );
    let out = detailed(&work);
    out.expect_code(2);
    assert!(
        out.stdout
            .contains("Plan: 2 to run, 0 to change, 0 unchanged."),
        "{out}"
    );
}

#[test]
fn errors_win_over_changes_1() {
    // `a` would run (a change), `b` fails to evaluate at plan: the error wins.
    let work = builtin_work(
        "step \"noop\" \"a\" {}\n\nstep \"noop\" \"b\" {\n  result = tonumber(\"not a number\")\n}\n",
    );
    let out = detailed(&work);
    out.expect_code(1);
    assert!(out.stderr.contains("error"), "{out}");
    // And a configuration error with a runnable step.
    let work = builtin_work(
        "step \"noop\" \"a\" {}\n\nstep \"noop\" \"b\" {\n  result = step.noop.missing.result\n}\n",
    );
    detailed(&work).expect_code(1);
}

#[test]
fn no_steps_is_0() {
    let work =
        builtin_work("variable \"x\" {\n  default = 1\n}\n\noutput \"x\" {\n  value = var.x\n}\n");
    detailed(&work).expect_code(0);
}

async fn scale_to(c: &kube::Client, ns: &str, name: &str, replicas: i32) {
    Api::<Deployment>::namespaced(c.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .expect("scale deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_deployment_drifted_is_2_and_converged_is_0() {
    let s = server();
    let c = client().await;
    let ns = "exit-drift";
    create_namespace(&c, ns).await;
    create_deployment(&c, ns, "web", 3).await;
    let work = workdir(
        &s.kubeconfig(),
        &format!(
            "step \"kubernetes_scale\" \"web\" {{\n  kind      = \"Deployment\"\n  namespace = \"{ns}\"\n  name      = \"web\"\n  replicas  = 3\n  wait      = false\n}}\n"
        ),
    );
    // Pinned at 3 and at 3: converged.
    let work = blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
        work
    })
    .await;
    // Scaled to 5 behind opsctl's back: the procedure would change it back.
    scale_to(&c, ns, "web", 5).await;
    let work = blocking(move || {
        let p = plan(&work, 2);
        assert!(p.stdout.contains("replicas: 5 -> 3"), "{p}");
        let json = opsctl_run(&work, &["plan", "--detailed-exitcode", "--format", "json"]);
        json.expect_code(2);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document");
        assert_eq!(doc["changes"], json!(true));
        assert_eq!(doc["steps"][0]["action"], json!("update"));
        assert_eq!(doc["steps"][0]["before"]["replicas"], json!(5));
        assert_eq!(doc["steps"][0]["after"]["replicas"], json!(3));
        work
    })
    .await;
    // A data source read alone (the same Deployment) is no change.
    scale_to(&c, ns, "web", 3).await;
    write_steps(
        &work,
        &s.kubeconfig(),
        &format!(
            "data \"kubernetes_object\" \"web\" {{\n  api_version = \"apps/v1\"\n  kind        = \"Deployment\"\n  namespace   = \"{ns}\"\n  name        = \"web\"\n}}\n\noutput \"replicas\" {{\n  value = data.kubernetes_object.web.object.spec.replicas\n}}\n"
        ),
    );
    blocking(move || {
        let p = plan(&work, 0);
        assert!(p.stdout.contains("replicas = 3"), "{p}");
        // A failed read with a pending change elsewhere: the error wins.
        write_steps(
            &work,
            &server().kubeconfig(),
            &format!(
                "step \"noop\" \"first\" {{}}\n\nstep \"kubernetes_scale\" \"gone\" {{\n  kind      = \"Deployment\"\n  namespace = \"{ns}\"\n  name      = \"no-such-deployment\"\n  replicas  = 1\n}}\n"
            ),
        );
        let p = opsctl_run(&work, &["plan", "--detailed-exitcode"]);
        p.expect_code(1);
    })
    .await;
}
