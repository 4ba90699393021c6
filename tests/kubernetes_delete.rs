//! End-to-end tests of `kubernetes_delete`, `kubernetes_annotate`, `kubernetes_label` and the
//! data sources `kubernetes_nodes`, `kubernetes_pods`, `kubernetes_objects` and
//! `kubernetes_object` against a real kube-apiserver 1.20 with its controller manager
//! (ReplicaSet, Job and garbage-collector controllers), started once for this file through
//! `scripts/kube.sh`. Each test uses its own namespaces and nodes.
//!
//! Covers: plan text (insta, uids and generated pod names filtered), apply, the result read
//! through the API, a second plan with nothing to do, resourceVersion unchanged by plan; the
//! TLS rotation of seed 000 (`wait_for_recreate` against a Secret the test recreates 2 s after it
//! disappears; the same with nothing recreating it times out with a clear message and a
//! resumable journal, and `--resume` finishes without deleting the new Secret); the cascade of a
//! ReplicaSet to its Pods; 403 and an unknown kind; `for_each` over `kubernetes_nodes`; the
//! examples `tls-secret-rotation` and `completed-jobs-cleanup`.

mod kube_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_support::*;
use serde_json::json;

/// Plan text with uids (they differ on every run) replaced by `[uid]`.
fn stable(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        // uuids: 8-4-4-4-12 hex
        let mut i = 0;
        while i + 36 <= l.len() {
            let s = &l[i..i + 36];
            let is_uuid = s.char_indices().all(|(k, c)| {
                if [8, 13, 18, 23].contains(&k) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
            if is_uuid {
                l.replace_range(i..i + 36, "[uid]");
                i += 5;
            } else {
                i += 1;
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

async fn secret_uid(c: &kube::Client, ns: &str, name: &str) -> Option<String> {
    Api::<Secret>::namespaced(c.clone(), ns)
        .get_opt(name)
        .await
        .expect("get secret")
        .and_then(|s| s.metadata.uid)
}

async fn create_secret(c: &kube::Client, ns: &str, name: &str, cert: &str) -> String {
    let s: Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "type": "Opaque",
        "stringData": { "tls.crt": cert },
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret")
        .metadata
        .uid
        .unwrap()
}

/// Plays VSO: once Secret `ns/name` is gone, waits 2 s and creates a new one.
fn recreate_after_delete(
    c: kube::Client,
    ns: &'static str,
    name: &'static str,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let first = secret_uid(&c, ns, name).await;
        loop {
            if secret_uid(&c, ns, name).await != first {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        create_secret(&c, ns, name, "new certificate").await
    })
}

fn delete_step(name: &str, ns: &str, obj: &str, extra: &str) -> String {
    format!(
        "step \"kubernetes_delete\" \"{name}\" {{\n  api_version = \"v1\"\n  kind        = \"Secret\"\n  namespace   = \"{ns}\"\n  name        = \"{obj}\"\n{extra}}}\n"
    )
}

// --- the TLS rotation of seed 000 ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_rotation_example_deletes_the_secret_and_waits_for_the_new_one() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "tls-ok").await;
    let old = create_secret(&c, "tls-ok", "netlix-tls-cert", "old certificate").await;
    let work = Workdir::new();
    let example = support::repo_root().join("examples/tls-secret-rotation/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let kubeconfig = s.kubeconfig().display().to_string();
    let vars = move |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain([
                "--var".to_string(),
                format!("kubeconfig={kubeconfig}"),
                "--var".to_string(),
                "namespace=tls-ok".to_string(),
            ])
            .collect()
    };
    let rv = |c: kube::Client| async move {
        Api::<Secret>::namespaced(c, "tls-ok")
            .get("netlix-tls-cert")
            .await
            .unwrap()
            .metadata
            .resource_version
    };
    let before = rv(c.clone()).await;
    let plan_args = vars(&["plan", "--detailed-exitcode"]);
    let (work, p) = blocking(move || {
        let args: Vec<&str> = plan_args.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &args);
        (work, p)
    })
    .await;
    p.expect_code(2);
    insta::assert_snapshot!(
        "tls_rotation_plan",
        stable(&p.stdout).replace(&old, "[uid]")
    );
    assert_eq!(rv(c.clone()).await, before, "plan wrote");

    let vso = recreate_after_delete(c.clone(), "tls-ok", "netlix-tls-cert");
    let apply_args = vars(&["apply", "--auto-approve"]);
    let (_work, a) = blocking(move || {
        let args: Vec<&str> = apply_args.iter().map(String::as_str).collect();
        let a = opsctl_run(&work, &args);
        (work, a)
    })
    .await;
    a.expect_success();
    let new = vso.await.unwrap();
    assert_ne!(new, old);
    assert_eq!(
        secret_uid(&c, "tls-ok", "netlix-tls-cert").await,
        Some(new.clone())
    );
    assert!(
        a.stdout.contains(&new),
        "the output names the new uid:\n{a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_nobody_completes_times_out_clearly_and_resume_waits_without_deleting_again() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "tls-late").await;
    let old = create_secret(&c, "tls-late", "netlix-tls-cert", "old").await;
    let work = workdir(
        &s.kubeconfig(),
        &delete_step(
            "tls",
            "tls-late",
            "netlix-tls-cert",
            "  wait_for_recreate = true\n  timeout           = \"6s\"\n",
        ),
    );
    let (work, a) = blocking(move || {
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        (work, a)
    })
    .await;
    assert_ne!(a.code, 0, "{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    assert!(
        text.contains("step.kubernetes_delete.tls")
            && text.contains("Secret `tls-late/netlix-tls-cert` was deleted at ")
            && text.contains("no new object appeared within"),
        "{a}"
    );
    assert_eq!(secret_uid(&c, "tls-late", "netlix-tls-cert").await, None);
    let types = journal_types(&work);
    assert!(types.contains(&"step_in_doubt".to_string()), "{types:?}");
    let started = journal_records(&work)
        .into_iter()
        .find(|r| r["type"] == "step_started")
        .unwrap();
    assert_eq!(
        started["prepared"]["uid"],
        json!(old),
        "the deleted uid is journaled"
    );

    // The controller catches up; resume sees a different uid: done, nothing deleted.
    let new = create_secret(&c, "tls-late", "netlix-tls-cert", "new").await;
    let r = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    r.expect_success();
    assert_eq!(
        secret_uid(&c, "tls-late", "netlix-tls-cert").await,
        Some(new),
        "resume deleted the new secret:\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_timeout_with_the_secret_still_missing_only_waits() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "tls-resume").await;
    let old = create_secret(&c, "tls-resume", "netlix-tls-cert", "old").await;
    let work = workdir(
        &s.kubeconfig(),
        &delete_step(
            "tls",
            "tls-resume",
            "netlix-tls-cert",
            "  wait_for_recreate = true\n  timeout           = \"6s\"\n",
        ),
    );
    let work = blocking(move || {
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        assert_ne!(a.code, 0, "{a}");
        work
    })
    .await;
    // Resume while nothing is there yet: it waits (deleting nothing) until VSO recreates it.
    let c2 = c.clone();
    let vso = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        create_secret(&c2, "tls-resume", "netlix-tls-cert", "new").await
    });
    let r = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    r.expect_success();
    let new = vso.await.unwrap();
    assert_ne!(new, old);
    assert_eq!(
        secret_uid(&c, "tls-resume", "netlix-tls-cert").await,
        Some(new)
    );
}

// --- cascade, second plan, Orphan ------------------------------------------------------------

async fn create_replica_set(c: &kube::Client, ns: &str, name: &str, replicas: i32) {
    let mut spec = template(name);
    spec["replicas"] = json!(replicas);
    let rs: ReplicaSet =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    Api::<ReplicaSet>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("create replicaset");
}

async fn pods_in(c: &kube::Client, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
}

fn delete_rs(ns: &str, extra: &str) -> String {
    format!(
        "step \"kubernetes_delete\" \"rs\" {{\n  api_version = \"apps/v1\"\n  kind        = \"ReplicaSet\"\n  namespace   = \"{ns}\"\n  name        = \"web\"\n  timeout     = \"90s\"\n{extra}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_replica_set_plans_its_pods_cascading_waits_until_gone_then_plans_nothing() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-rs").await;
    wait_default_service_account(&c, "del-rs").await;
    create_replica_set(&c, "del-rs", "web", 2).await;
    eventually("the ReplicaSet's 2 pods", || async {
        pods_in(&c, "del-rs").await.len() == 2
    })
    .await;
    let rs_api = Api::<ReplicaSet>::namespaced(c.clone(), "del-rs");
    // The ReplicaSet controller writes the status once its pods are counted; wait for that (and
    // 3 s of quiet: a loaded machine spaces its writes) so a changed resource version across the
    // plan can only be the plan's.
    eventually("the ReplicaSet's status to settle", || async {
        let rs = rs_api.get("web").await.unwrap();
        let counted = rs
            .status
            .as_ref()
            .is_some_and(|st| st.replicas == 2 && st.observed_generation == rs.metadata.generation);
        tokio::time::sleep(Duration::from_secs(3)).await;
        counted
            && rs_api.get("web").await.unwrap().metadata.resource_version
                == rs.metadata.resource_version
    })
    .await;
    let before = rs_api.get("web").await.unwrap().metadata.resource_version;

    // Orphan: nothing cascades, the pods are named as kept.
    let orphan = workdir(
        &s.kubeconfig(),
        &delete_rs("del-rs", "  propagation_policy = \"Orphan\"\n"),
    );
    let p = blocking(move || plan(&orphan, 2)).await;
    assert!(
        p.stdout
            .contains("nothing cascades (Orphan): 2 dependents are kept"),
        "{p}"
    );

    let work = workdir(
        &s.kubeconfig(),
        &delete_rs("del-rs", "  propagation_policy = \"Foreground\"\n"),
    );
    let (work, p) = blocking(move || {
        let p = plan(&work, 2);
        (work, p)
    })
    .await;
    let mut text = stable(&p.stdout);
    for pod in pods_in(&c, "del-rs").await {
        text = text.replace(pod.metadata.name.as_deref().unwrap(), "web-[id]");
    }
    insta::assert_snapshot!("delete_replica_set_plan", text);
    assert!(
        p.stdout.contains("cascades (Foreground) to 2 dependents"),
        "{p}"
    );
    assert_eq!(
        rs_api.get("web").await.unwrap().metadata.resource_version,
        before,
        "plan wrote"
    );

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    // Foreground: the ReplicaSet is gone only once its pods are.
    assert!(rs_api.get_opt("web").await.unwrap().is_none());
    assert!(pods_in(&c, "del-rs").await.is_empty(), "pods left");
    let p = blocking(move || plan(&work, 0)).await;
    assert!(p.stdout.contains("No changes"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_held_by_a_finalizer_times_out_in_doubt_and_resume_waits_until_gone() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-fin").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "del-fin");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "held", "finalizers": ["opsctl.test/hold"] },
    }))
    .unwrap();
    let uid = cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .uid;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_delete\" \"cm\" {\n  api_version = \"v1\"\n  kind        = \"ConfigMap\"\n  namespace   = \"del-fin\"\n  name        = \"held\"\n  timeout     = \"5s\"\n}\n",
    );
    let (work, a) = blocking(move || {
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        (work, a)
    })
    .await;
    assert_ne!(a.code, 0, "{a}");
    let text = format!("{}{}", a.stdout, a.stderr);
    assert!(
        text.contains("ConfigMap `del-fin/held` was deleted at ")
            && text.contains("still there after 5s, held by finalizers opsctl.test/hold"),
        "{a}"
    );
    assert!(journal_types(&work).contains(&"step_in_doubt".to_string()));
    let live = cms.get("held").await.unwrap().metadata;
    assert_eq!(live.uid, uid);
    assert!(live.deletion_timestamp.is_some());

    // The finalizer's controller finishes 2 s into the resumed run, which waits for it.
    let cms2 = cms.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cms2.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    });
    let r = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    release.await.unwrap();
    r.expect_success();
    assert!(cms.get_opt("held").await.unwrap().is_none());
}

// --- annotate / label ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotate_and_label_show_each_key_apply_by_merge_patch_then_plan_nothing() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "meta").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "meta");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "settings",
            "labels": { "team": "web", "old": "yes" },
            "annotations": { "keep": "1", "change": "a", "drop": "x" },
        },
        "data": { "k": "v" },
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let steps = "step \"kubernetes_annotate\" \"a\" {\n  api_version = \"v1\"\n  kind        = \"ConfigMap\"\n  namespace   = \"meta\"\n  name        = \"settings\"\n  annotations = { change = \"b\", drop = \"-\", added = \"new\", keep = \"1\" }\n}\n\nstep \"kubernetes_label\" \"l\" {\n  api_version = \"v1\"\n  kind        = \"ConfigMap\"\n  namespace   = \"meta\"\n  name        = \"settings\"\n  labels      = { old = \"-\", tier = \"frontend\" }\n  depends_on  = [step.kubernetes_annotate.a]\n}\n";
    let work = workdir(&s.kubeconfig(), steps);
    let before = cms.get("settings").await.unwrap().metadata.resource_version;
    let (work, p) = blocking(move || {
        let p = plan(&work, 2);
        (work, p)
    })
    .await;
    insta::assert_snapshot!("annotate_label_plan", p.stdout);
    assert_eq!(
        cms.get("settings").await.unwrap().metadata.resource_version,
        before,
        "plan wrote"
    );
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let got = cms.get("settings").await.unwrap().metadata;
    let ann = got.annotations.unwrap();
    assert_eq!(
        (
            ann.get("keep"),
            ann.get("change"),
            ann.get("drop"),
            ann.get("added")
        ),
        (
            Some(&"1".to_string()),
            Some(&"b".to_string()),
            None,
            Some(&"new".to_string())
        )
    );
    let labels = got.labels.unwrap();
    assert_eq!(
        (labels.get("team"), labels.get("old"), labels.get("tier")),
        (
            Some(&"web".to_string()),
            None,
            Some(&"frontend".to_string())
        )
    );
    let p = blocking(move || plan(&work, 0)).await;
    assert!(p.stdout.contains("No changes"), "{p}");
}

// --- errors ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_delete_and_an_unknown_kind_fail_naming_step_and_target() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-err").await;
    create_secret(&c, "del-err", "s", "x").await;
    let work = workdir(&s.viewer(), &delete_step("gone", "del-err", "s", ""));
    let out = blocking(move || opsctl_run(&work, &["apply", "--auto-approve"])).await;
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("step.kubernetes_delete.gone")
            && text.contains("del-err/s")
            && text.contains("403"),
        "{out}"
    );
    assert!(secret_uid(&c, "del-err", "s").await.is_some());

    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_label\" \"l\" {\n  api_version = \"v1\"\n  kind        = \"Sekret\"\n  namespace   = \"del-err\"\n  name        = \"s\"\n  labels      = { a = \"b\" }\n}\n",
    );
    let out = blocking(move || opsctl_run(&work, &["plan"])).await;
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("step.kubernetes_label.l")
            && text.contains("k8s/opsctl-test/v1/Sekret/del-err/s")
            && text.contains("does not serve kind `Sekret`"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_refused_at_apply_leaves_a_journal_that_resume_continues() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-403").await;
    let uid = create_secret(&c, "del-403", "s", "x").await;
    // The reader may get and list (plan works) but not delete.
    let work = Workdir::new();
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::copy(s.reader(), &kubeconfig).unwrap();
    write_steps(&work, &kubeconfig, &delete_step("gone", "del-403", "s", ""));
    let (work, out) = blocking(move || {
        let out = opsctl_run(&work, &["apply", "--auto-approve"]);
        (work, out)
    })
    .await;
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("step.kubernetes_delete.gone")
            && text.contains("delete Secret `del-403/s`")
            && text.contains("403 Forbidden"),
        "{out}"
    );
    assert_eq!(secret_uid(&c, "del-403", "s").await, Some(uid));
    assert!(journal_types(&work).contains(&"step_failed".to_string()));
    // With a user who may delete (the same configuration, another kubeconfig), the run
    // resumes and finishes.
    std::fs::copy(s.kubeconfig(), &kubeconfig).unwrap();
    let r = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    r.expect_success();
    assert_eq!(secret_uid(&c, "del-403", "s").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_list_some_kinds_sees_where_the_plan_could_not_look_for_dependents() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-rbac").await;
    create_secret(&c, "del-rbac", "s", "x").await;
    // `viewer` may get, list and delete Secrets in this namespace, nothing else.
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "secrets" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "delete"] }],
    }))
    .unwrap();
    Api::<Role>::namespaced(c.clone(), "del-rbac")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "viewer-secrets" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer" }],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(c.clone(), "del-rbac")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let work = workdir(&s.viewer(), &delete_step("s", "del-rbac", "s", ""));
    let (work, p) = blocking(move || {
        let p = plan(&work, 2);
        (work, p)
    })
    .await;
    assert!(
        p.stdout.contains(
            "could not look for dependents among ReplicaSet, ControllerRevision, Job, Pod, ConfigMap, Service, PersistentVolumeClaim (listing them is forbidden)"
        ),
        "{p}"
    );
    blocking(move || apply(&work)).await;
    assert_eq!(secret_uid(&c, "del-rbac", "s").await, None);
}

// --- data sources ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_over_the_nodes_of_nodegroup_general_cordons_and_labels_each() {
    let s = server();
    let c = client().await;
    for (name, group) in [
        ("del-general-1", "general"),
        ("del-general-2", "general"),
        ("del-spot-1", "spot"),
    ] {
        create_ready_node(
            &c,
            name,
            &[
                ("eks.amazonaws.com/nodegroup", group),
                ("opsctl-test", "delete"),
            ],
        )
        .await;
    }
    let steps = "data \"kubernetes_nodes\" \"general\" {\n  label_selector = \"eks.amazonaws.com/nodegroup=general,opsctl-test=delete\"\n}\n\nstep \"kubernetes_cordon\" \"each\" {\n  for_each = { for n in data.kubernetes_nodes.general.items : n.name => n if !n.unschedulable && n.ready }\n  node     = each.key\n}\n\nstep \"kubernetes_label\" \"each\" {\n  for_each    = { for n in data.kubernetes_nodes.general.items : n.name => n if !n.unschedulable && n.ready }\n  api_version = \"v1\"\n  kind        = \"Node\"\n  name        = each.key\n  labels      = { \"opsctl-maintenance\" = \"true\" }\n}\n\noutput \"nodes\" {\n  value = data.kubernetes_nodes.general.names\n}\n";
    let work = workdir(&s.kubeconfig(), steps);
    let before = node(&c, "del-general-1").await.metadata.resource_version;
    let (work, p) = blocking(move || {
        let p = plan(&work, 2);
        (work, p)
    })
    .await;
    insta::assert_snapshot!("nodes_for_each_plan", p.stdout);
    assert_eq!(
        node(&c, "del-general-1").await.metadata.resource_version,
        before,
        "plan wrote"
    );
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    assert!(unschedulable(&node(&c, "del-general-1").await));
    assert!(unschedulable(&node(&c, "del-general-2").await));
    assert!(!unschedulable(&node(&c, "del-spot-1").await));
    for (n, want) in [
        ("del-general-1", true),
        ("del-general-2", true),
        ("del-spot-1", false),
    ] {
        let labels = node(&c, n).await.metadata.labels.unwrap_or_default();
        assert_eq!(labels.contains_key("opsctl-maintenance"), want, "{n}");
    }
    // Cordoned nodes drop out of the for_each: nothing to do.
    let p = blocking(move || plan(&work, 0)).await;
    assert!(p.stdout.contains("No changes"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_object_data_sources_read_lists_and_one_object() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "del-data").await;
    wait_default_service_account(&c, "del-data").await;
    create_replica_set(&c, "del-data", "api", 3).await;
    eventually("3 pods", || async {
        pods_in(&c, "del-data").await.len() == 3
    })
    .await;
    create_secret(&c, "del-data", "present", "present-cert-value").await;
    let steps = "data \"kubernetes_pods\" \"api\" {\n  namespace      = \"del-data\"\n  label_selector = \"app=api\"\n}\n\ndata \"kubernetes_object\" \"present\" {\n  api_version = \"v1\"\n  kind        = \"Secret\"\n  namespace   = \"del-data\"\n  name        = \"present\"\n}\n\ndata \"kubernetes_object\" \"absent\" {\n  api_version = \"v1\"\n  kind        = \"Secret\"\n  namespace   = \"del-data\"\n  name        = \"absent\"\n  optional    = true\n}\n\noutput \"pods\" {\n  value = length(data.kubernetes_pods.api.items)\n}\n\noutput \"owners\" {\n  value = distinct([for p in data.kubernetes_pods.api.items : \"${p.owner.kind}/${p.owner.name}/${p.phase}/${p.ready}\"])\n}\n\noutput \"present\" {\n  value = \"${data.kubernetes_object.present.exists}/${data.kubernetes_object.present.object.type}\"\n}\n\noutput \"absent\" {\n  value = data.kubernetes_object.absent.exists\n}\n\noutput \"present_cert\" {\n  value = data.kubernetes_object.present.object.data[\"tls.crt\"]\n}\n";
    let work = workdir(&s.kubeconfig(), steps);
    let (work, p) = blocking(move || {
        let p = plan(&work, 0);
        (work, p)
    })
    .await;
    // A Secret's values never leave the data source: a keyed digest stands for each (its hex
    // differs per process, so the snapshot masks it).
    for secret in ["present-cert-value", "cHJlc2VudC1jZXJ0LXZhbHVl"] {
        assert!(!p.stdout.contains(secret), "{p}");
    }
    let masked = mask_digests(&p.stdout);
    assert!(
        masked.contains("present_cert = \"(sensitive value #HEX)\""),
        "{p}"
    );
    insta::assert_snapshot!("pods_object_data_plan", masked);

    // Without `optional`, an absent object is an error naming it.
    write_steps(
        &work,
        &s.kubeconfig(),
        "data \"kubernetes_object\" \"absent\" {\n  api_version = \"v1\"\n  kind        = \"Secret\"\n  namespace   = \"del-data\"\n  name        = \"absent\"\n}\n",
    );
    let out = blocking(move || opsctl_run(&work, &["plan"])).await;
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("data.kubernetes_object.absent")
            && text.contains("Secret `del-data/absent` not found"),
        "{out}"
    );
}

// --- examples/completed-jobs-cleanup ---------------------------------------------------------

async fn create_job(c: &kube::Client, ns: &str, name: &str) {
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "opsctl-test": "jobs" } },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { "opsctl-job": name } },
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": { "opsctl-test/none": "none" },
                    "containers": [{ "name": "c", "image": "example.invalid/job:1" }],
                },
            },
        },
    }))
    .unwrap();
    Api::<Job>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
}

/// Plays the kubelet for Job `ns/name`: marks its pod Succeeded, and waits until the Job
/// controller counts it (`status.succeeded` 1).
async fn complete_job(c: &kube::Client, ns: &str, name: &str) {
    let pods = Api::<Pod>::namespaced(c.clone(), ns);
    let lp = ListParams::default().labels(&format!("opsctl-job={name}"));
    eventually(&format!("the pod of job {ns}/{name}"), || async {
        !pods.list(&lp).await.unwrap().items.is_empty()
    })
    .await;
    for p in pods.list(&lp).await.unwrap() {
        let status = json!({ "status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "c", "image": "example.invalid/job:1", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": { "terminated": { "exitCode": 0, "reason": "Completed" } },
            }],
        }});
        pods.patch_status(
            p.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("mark pod succeeded");
    }
    let jobs = Api::<Job>::namespaced(c.clone(), ns);
    eventually(&format!("job {ns}/{name} succeeded"), || async {
        jobs.get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.succeeded)
            == Some(1)
    })
    .await;
}

async fn job_exists(c: &kube::Client, ns: &str, name: &str) -> bool {
    Api::<Job>::namespaced(c.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completed_jobs_cleanup_example_deletes_only_succeeded_jobs_across_namespaces() {
    let s = server();
    let c = client().await;
    for ns in ["jobs-a", "jobs-b"] {
        create_namespace(&c, ns).await;
        wait_default_service_account(&c, ns).await;
    }
    create_job(&c, "jobs-a", "smoke-1").await;
    create_job(&c, "jobs-a", "running").await;
    create_job(&c, "jobs-b", "smoke-2").await;
    complete_job(&c, "jobs-a", "smoke-1").await;
    complete_job(&c, "jobs-b", "smoke-2").await;

    let work = Workdir::new();
    let example = support::repo_root().join("examples/completed-jobs-cleanup/main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let kubeconfig = s.kubeconfig().display().to_string();
    let vars = move |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain([
                "--var".to_string(),
                format!("kubeconfig={kubeconfig}"),
                "--var".to_string(),
                "label_selector=opsctl-test=jobs".to_string(),
            ])
            .collect()
    };
    let rv = |c: kube::Client| async move {
        Api::<Job>::namespaced(c, "jobs-a")
            .get("smoke-1")
            .await
            .unwrap()
            .metadata
            .resource_version
    };
    let before = rv(c.clone()).await;
    let args = vars(&["plan", "--detailed-exitcode"]);
    let (work, p) = blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = opsctl_run(&work, &a);
        (work, p)
    })
    .await;
    p.expect_code(2);
    let mut text = stable(&p.stdout);
    for ns in ["jobs-a", "jobs-b"] {
        for pod in pods_in(&c, ns).await {
            let name = pod.metadata.name.unwrap();
            let job = pod.metadata.labels.unwrap()["opsctl-job"].clone();
            text = text.replace(&name, &format!("{job}-[id]"));
        }
    }
    insta::assert_snapshot!("completed_jobs_cleanup_plan", text);
    assert_eq!(rv(c.clone()).await, before, "plan wrote");

    let args = vars(&["apply", "--auto-approve"]);
    let (work, a) = blocking(move || {
        let v: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = opsctl_run(&work, &v);
        (work, a)
    })
    .await;
    a.expect_success();
    assert!(!job_exists(&c, "jobs-a", "smoke-1").await);
    assert!(!job_exists(&c, "jobs-b", "smoke-2").await);
    assert!(
        job_exists(&c, "jobs-a", "running").await,
        "a running job was deleted"
    );
    // Background: the garbage collector removes the completed Jobs' pods.
    eventually("the completed jobs' pods to be collected", || async {
        pods_in(&c, "jobs-b").await.is_empty()
    })
    .await;

    let args = vars(&["plan", "--detailed-exitcode"]);
    let p = blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        opsctl_run(&work, &a)
    })
    .await;
    p.expect_code(0);
}

/// `text` with every `#` followed by 12 hex digits (a keyed digest of a Secret's value, which
/// differs per process) written `#HEX`.
fn mask_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('#') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let hex = tail.len() >= 12 && tail[..12].bytes().all(|b| b.is_ascii_hexdigit());
        if hex {
            out.push_str("#HEX");
            rest = &tail[12..];
        } else {
            out.push('#');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}
