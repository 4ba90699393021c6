//! End-to-end tests of `kubernetes_manifest` and `kubernetes_patch` against a real
//! kube-apiserver (1.20, started once for this file through `scripts/kube.sh`,
//! `$OPSCTL_KUBE_SH`): plans from the server's dry run (snapshots), applies, the result read
//! through the API, second plans that are no-ops, resource versions unchanged by plan;
//! field-ownership conflicts and `force_conflicts`; a custom resource of a CRD the test installs;
//! errors; and the `argocd-forced-sync` and `pvc-expansion-hpa` examples. Each test uses its own
//! namespace.

mod kube_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube_support::*;
use serde_json::{json, Value};

// --- helpers ---------------------------------------------------------------------------------

fn dynamic(
    c: &kube::Client,
    ns: Option<&str>,
    gvk: (&str, &str, &str),
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    match ns {
        Some(ns) => Api::namespaced_with(c.clone(), ns, &ar),
        None => Api::all_with(c.clone(), &ar),
    }
}

/// Object `name` as JSON, or None.
async fn get(api: &Api<DynamicObject>, name: &str) -> Option<Value> {
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Waits until the Deployment controller has caught up with Deployment `ns/name` (its status
/// observes the latest generation, its pods are counted, and the object stays unchanged for
/// 3 s), so that a resource
/// version compared across a plan changes only if the plan wrote.
async fn settled(c: &kube::Client, ns: &str, name: &str) {
    let deps = dynamic(c, Some(ns), ("apps", "v1", "Deployment"), "deployments");
    // The controllers write a new Deployment's status several times (the ReplicaSet, then its
    // pods counted); on a loaded machine those writes can be more than a second apart, so wait
    // until the pods are counted and nothing changed for 3 s.
    eventually(&format!("Deployment {ns}/{name} to settle"), || async {
        let d = deployment(c, ns, name).await;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let caught_up = d.status.as_ref().is_some_and(|st| {
            st.observed_generation == d.metadata.generation
                && (want == 0 || st.replicas.unwrap_or(0) > 0)
        });
        let before = rv(&deps, name).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        caught_up && rv(&deps, name).await == before
    })
    .await;
}

async fn rv(api: &Api<DynamicObject>, name: &str) -> Option<String> {
    api.get(name).await.expect("get").metadata.resource_version
}

/// Installs a namespaced CRD (`apiextensions.k8s.io/v1`) whose objects keep any field, and waits
/// until the server serves it.
async fn install_crd(c: &kube::Client, group: &str, version: &str, kind: &str, plural: &str) {
    let crds = dynamic(
        c,
        None,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    }))
    .unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(r)) if r.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    let objects = dynamic(c, Some("default"), (group, version, kind), plural);
    eventually(&format!("the server to serve {plural}.{group}"), || async {
        objects.list(&Default::default()).await.is_ok()
            && kube::discovery::group(c, group).await.is_ok_and(|g| {
                g.versioned_resources(version)
                    .iter()
                    .any(|(r, _)| r.kind == kind)
            })
    })
    .await;
}

/// Plan text with the kubeconfig path replaced.
fn text(p: &Output) -> String {
    format!("{}{}", p.stdout, p.stderr)
        .replace(&server().kubeconfig().display().to_string(), "KUBECONFIG")
        .replace(
            &server().viewer().display().to_string(),
            "KUBECONFIG-VIEWER",
        )
}

/// A Deployment whose container `web` has a port without `protocol` (the server defaults it to
/// TCP), created by field manager `test-owner`.
async fn create_owned_deployment(c: &kube::Client, ns: &str, name: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "nodeSelector": { "opsctl-test/none": "none" },
                    "containers": [{ "name": "web", "image": "example.invalid/web:1", "ports": [{ "containerPort": 80 }] }],
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(c.clone(), ns)
        .create(
            &PostParams {
                field_manager: Some("test-owner".into()),
                ..Default::default()
            },
            &d,
        )
        .await
        .expect("create deployment");
}

/// `kubernetes_manifest` of the Deployment of [`create_owned_deployment`], with `replicas`,
/// `extra` container lines and `extra_step` step lines.
fn web_manifest(ns: &str, name: &str, replicas: i64, extra: &str, extra_step: &str) -> String {
    format!(
        r#"step "kubernetes_manifest" "web" {{
  manifest = {{
    apiVersion = "apps/v1"
    kind       = "Deployment"
    metadata = {{
      name      = "{name}"
      namespace = "{ns}"
      labels    = {{ tier = "frontend" }}
    }}
    spec = {{
      replicas = {replicas}
      selector = {{ matchLabels = {{ app = "{name}" }} }}
      template = {{
        metadata = {{ labels = {{ app = "{name}" }} }}
        spec = {{
          nodeSelector = {{ "opsctl-test/none" = "none" }}
          containers = [{{
            name  = "web"
            image = "example.invalid/web:1"
            ports = [{{ containerPort = 80 }}]
{extra}          }}]
        }}
      }}
    }}
  }}
{extra_step}}}
"#
    )
}

// --- kubernetes_manifest -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_creates_a_config_map_then_updates_it_and_then_has_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-create").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "mf-create");
    let manifest = |v: &str| {
        format!(
            "step \"kubernetes_manifest\" \"settings\" {{\n  manifest = yamldecode(<<-EOT\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: settings\n      namespace: mf-create\n      labels:\n        app.kubernetes.io/name: web\n    data:\n      mode: \"{v}\"\n      region: eu-central-1\n  EOT\n  )\n}}\n"
        )
    };
    let work = workdir(&s.kubeconfig(), &manifest("fast"));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_create_plan", text(&p));
        work
    })
    .await;
    assert!(
        cms.get_opt("settings").await.unwrap().is_none(),
        "plan created the object"
    );

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["mode"], "fast");
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "web"
    );
    assert!(
        cm.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("opsctl")
                && m.operation.as_deref() == Some("Apply"))
    );

    let before = cms.get("settings").await.unwrap().metadata.resource_version;
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
    assert_eq!(
        cms.get("settings").await.unwrap().metadata.resource_version,
        before
    );

    write_steps(&work, &s.kubeconfig(), &manifest("safe"));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_update_plan", text(&p));
        work
    })
    .await;
    assert_eq!(
        cms.get("settings").await.unwrap().metadata.resource_version,
        before
    );
    let work = blocking(move || {
        apply(&work);
        plan(&work, 0);
        work
    })
    .await;
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "safe"
    );
    drop(work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_on_an_existing_deployment_shows_exactly_the_fields_that_change() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-existing").await;
    create_owned_deployment(&c, "mf-existing", "web").await;
    settled(&c, "mf-existing", "web").await;
    let deps = dynamic(
        &c,
        Some("mf-existing"),
        ("apps", "v1", "Deployment"),
        "deployments",
    );
    let before = rv(&deps, "web").await;
    // Same replicas, image and port (without `protocol`, which the server defaulted to TCP);
    // a new label and a new environment variable.
    let steps = web_manifest(
        "mf-existing",
        "web",
        3,
        "            env   = [{ name = \"MODE\", value = \"safe\" }]\n",
        "",
    );
    let work = workdir(&s.kubeconfig(), &steps);
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_existing_plan", text(&p));
        assert!(!p.stdout.contains("protocol"), "{p}");
        assert!(!p.stdout.contains("replicas"), "{p}");
        work
    })
    .await;
    assert_eq!(
        rv(&deps, "web").await,
        before,
        "plan wrote to the deployment"
    );

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "mf-existing", "web").await;
    assert_eq!(d.metadata.labels.unwrap()["tier"], "frontend");
    let container = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        container.env.as_ref().unwrap()[0].value.as_deref(),
        Some("safe")
    );
    assert_eq!(
        container.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );

    settled(&c, "mf-existing", "web").await;
    let before = rv(&deps, "web").await;
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(rv(&deps, "web").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_another_manager_owns_is_a_plan_conflict_unless_force_conflicts() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-conflict").await;
    create_owned_deployment(&c, "mf-conflict", "web").await;
    settled(&c, "mf-conflict", "web").await;
    let deps = dynamic(
        &c,
        Some("mf-conflict"),
        ("apps", "v1", "Deployment"),
        "deployments",
    );
    let before = rv(&deps, "web").await;

    let work = workdir(
        &s.kubeconfig(),
        &web_manifest("mf-conflict", "web", 5, "", ""),
    );
    let work = blocking(move || {
        let p = opsctl_run(&work, &["plan"]);
        p.expect_code(1);
        let t = text(&p);
        assert!(t.contains("step.kubernetes_manifest.web"), "{p}");
        assert!(
            t.contains("k8s/opsctl-test/apps/v1/Deployment/mf-conflict/web"),
            "{p}"
        );
        assert!(t.contains("conflict with \"test-owner\""), "{p}");
        assert!(t.contains(".spec.replicas"), "{p}");
        assert!(t.contains("force_conflicts = true"), "{p}");
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        a.expect_code(1);
        work
    })
    .await;
    assert_eq!(rv(&deps, "web").await, before, "a conflicting plan wrote");

    write_steps(
        &work,
        &s.kubeconfig(),
        &web_manifest("mf-conflict", "web", 5, "", "  force_conflicts = true\n"),
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_force_plan", text(&p));
        work
    })
    .await;
    assert_eq!(rv(&deps, "web").await, before);
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "mf-conflict", "web").await;
    assert_eq!(d.spec.unwrap().replicas, Some(5));
    let owners: Vec<(String, Value)> = d
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.fields_v1.map(|f| f.0).unwrap_or_default(),
            )
        })
        .collect();
    let replicas_owners: Vec<&str> = owners
        .iter()
        .filter(|(_, f)| f.pointer("/f:spec/f:replicas").is_some())
        .map(|(m, _)| m.as_str())
        .collect();
    assert_eq!(replicas_owners, ["opsctl"], "{owners:?}");
    settled(&c, "mf-conflict", "web").await;
    let before = rv(&deps, "web").await;
    blocking(move || {
        plan(&work, 0);
    })
    .await;
    assert_eq!(rv(&deps, "web").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_after_a_scale_of_the_same_deployment_plans_without_a_diff_and_applies() {
    // The scale step reads (and predicts) the workload state; the manifest after it on the same
    // target cannot diff against that, so its plan says its fields are known after apply,
    // where it reads its own state (and dry run) again.
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-mixed").await;
    create_owned_deployment(&c, "mf-mixed", "web").await;
    settled(&c, "mf-mixed", "web").await;
    let deps = dynamic(
        &c,
        Some("mf-mixed"),
        ("apps", "v1", "Deployment"),
        "deployments",
    );
    let before = rv(&deps, "web").await;
    let steps = format!(
        "step \"kubernetes_scale\" \"web\" {{\n  kind      = \"Deployment\"\n  namespace = \"mf-mixed\"\n  name      = \"web\"\n  replicas  = 2\n  wait      = false\n}}\n\n{}",
        web_manifest(
            "mf-mixed",
            "web",
            2,
            "",
            "  force_conflicts = true\n  depends_on      = [step.kubernetes_scale.web]\n"
        )
    );
    let work = workdir(&s.kubeconfig(), &steps);
    let work = blocking(move || {
        let p = plan(&work, 2);
        assert!(p.stdout.contains("~ replicas: 3 -> 2"), "{p}");
        assert!(
            p.stdout
                .contains("(the fields that change are known after apply)"),
            "{p}"
        );
        work
    })
    .await;
    assert_eq!(
        rv(&deps, "web").await,
        before,
        "plan wrote to the deployment"
    );
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "mf-mixed", "web").await;
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    assert_eq!(d.metadata.labels.unwrap()["tier"], "frontend");
    drop(work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_manifest_never_shows_or_journals_its_values() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-secret").await;
    let secrets = dynamic(&c, Some("mf-secret"), ("", "v1", "Secret"), "secrets");
    let steps = |v: &str| {
        format!(
            "variable \"password\" {{\n  type      = string\n  default   = \"{v}\"\n  sensitive = true\n}}\n\nstep \"kubernetes_manifest\" \"db\" {{\n  manifest = {{\n    apiVersion = \"v1\"\n    kind       = \"Secret\"\n    metadata   = {{ name = \"db\", namespace = \"mf-secret\" }}\n    stringData = {{ password = var.password, user = \"app\" }}\n  }}\n}}\n"
        )
    };
    let work = workdir(&s.kubeconfig(), &steps("hunter2-first"));
    let work = blocking(move || {
        let p = plan(&work, 2);
        assert!(!text(&p).contains("hunter2"), "{p}");
        let a = apply(&work);
        assert!(!text(&a).contains("hunter2"), "{a}");
        let p = plan(&work, 0);
        assert!(!text(&p).contains("hunter2"), "{p}");
        work
    })
    .await;
    let secret = get(&secrets, "db").await.expect("secret created");
    assert_eq!(secret["data"]["user"], "YXBw");

    write_steps(&work, &s.kubeconfig(), &steps("hunter2-second"));
    let work = blocking(move || {
        let p = plan(&work, 2);
        let t = text(&p);
        assert!(!t.contains("hunter2"), "{p}");
        assert!(t.contains("data.password: \"(sensitive value"), "{p}");
        assert!(!t.contains("data.user"), "{p}");
        apply(&work);
        work
    })
    .await;
    let journal = std::fs::read_dir(work.state_dir().join("journal"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(journal.contains("kubernetes_manifest.db"), "no journal");
    for v in ["hunter2", "aHVudGVyMi"] {
        assert!(
            !journal.contains(v),
            "the journal holds a secret value ({v})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_of_a_crd_installed_by_the_test_plans_and_applies() {
    let s = server();
    let c = client().await;
    install_crd(&c, "opsctl.test", "v1", "Widget", "widgets").await;
    create_namespace(&c, "mf-crd").await;
    let widgets = dynamic(
        &c,
        Some("mf-crd"),
        ("opsctl.test", "v1", "Widget"),
        "widgets",
    );
    let steps = |size: i64| {
        format!(
            "step \"kubernetes_manifest\" \"w\" {{\n  manifest = {{\n    apiVersion = \"opsctl.test/v1\"\n    kind       = \"Widget\"\n    metadata   = {{ name = \"gear\", namespace = \"mf-crd\" }}\n    spec       = {{ size = {size}, colors = [\"red\", \"blue\"] }}\n  }}\n}}\n"
        )
    };
    let work = workdir(&s.kubeconfig(), &steps(3));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_crd_create_plan", text(&p));
        apply(&work);
        work
    })
    .await;
    let w = get(&widgets, "gear").await.expect("widget created");
    assert_eq!(w["spec"], json!({"size": 3, "colors": ["red", "blue"]}));
    let before = rv(&widgets, "gear").await;
    let work = blocking(move || {
        plan(&work, 0);
        work
    })
    .await;
    assert_eq!(rv(&widgets, "gear").await, before);

    write_steps(&work, &s.kubeconfig(), &steps(4));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("manifest_crd_update_plan", text(&p));
        apply(&work);
        plan(&work, 0);
        work
    })
    .await;
    assert_eq!(get(&widgets, "gear").await.unwrap()["spec"]["size"], 4);
    drop(work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rejected_forbidden_and_missing_objects_fail_the_plan_naming_step_and_target() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-errors").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "mf-errors");

    // (steps, kubeconfig, what the output must contain)
    let cases: Vec<(String, std::path::PathBuf, Vec<&str>)> = vec![
        (
            "step \"kubernetes_manifest\" \"unknown\" {\n  manifest = {\n    apiVersion = \"apps/v1\"\n    kind       = \"Deploymint\"\n    metadata   = { name = \"x\", namespace = \"mf-errors\" }\n  }\n}\n".into(),
            s.kubeconfig(),
            vec![
                "step.kubernetes_manifest.unknown",
                "k8s/opsctl-test/apps/v1/Deploymint/mf-errors/x",
                "does not serve kind `Deploymint` in `apps/v1`",
            ],
        ),
        (
            "step \"kubernetes_manifest\" \"noname\" {\n  manifest = {\n    apiVersion = \"v1\"\n    kind       = \"ConfigMap\"\n    metadata   = { namespace = \"mf-errors\" }\n  }\n}\n".into(),
            s.kubeconfig(),
            vec!["step.kubernetes_manifest.noname", "k8s/opsctl-test/v1/ConfigMap/mf-errors/", "`metadata.name` is missing"],
        ),
        (
            "step \"kubernetes_manifest\" \"invalid\" {\n  manifest = {\n    apiVersion = \"v1\"\n    kind       = \"ConfigMap\"\n    metadata   = { name = \"bad\", namespace = \"mf-errors\", labels = { \"not a label\" = \"x\" } }\n  }\n}\n".into(),
            s.kubeconfig(),
            vec![
                "step.kubernetes_manifest.invalid",
                "k8s/opsctl-test/v1/ConfigMap/mf-errors/bad",
                "was rejected: the server answered 422 Invalid",
                "metadata.labels: Invalid value: \"not a label\"",
            ],
        ),
        (
            "step \"kubernetes_manifest\" \"forbidden\" {\n  manifest = {\n    apiVersion = \"v1\"\n    kind       = \"ConfigMap\"\n    metadata   = { name = \"viewer\", namespace = \"mf-errors\" }\n  }\n}\n".into(),
            s.viewer(),
            vec![
                "step.kubernetes_manifest.forbidden",
                "k8s/opsctl-test/v1/ConfigMap/mf-errors/viewer",
                "403 Forbidden",
                "cannot get resource \"configmaps\"",
            ],
        ),
        (
            "step \"kubernetes_patch\" \"missing\" {\n  api_version = \"v1\"\n  kind        = \"ConfigMap\"\n  namespace   = \"mf-errors\"\n  name        = \"absent\"\n  type        = \"merge\"\n  patch       = { data = { a = \"b\" } }\n}\n".into(),
            s.kubeconfig(),
            vec![
                "step.kubernetes_patch.missing",
                "k8s/opsctl-test/v1/ConfigMap/mf-errors/absent",
                "ConfigMap `mf-errors/absent` not found (the server answered 404)",
            ],
        ),
    ];
    for (steps, kubeconfig, wanted) in cases {
        let work = workdir(&kubeconfig, &steps);
        let (p, a) = blocking(move || {
            (
                opsctl_run(&work, &["plan"]),
                opsctl_run(&work, &["apply", "--auto-approve"]),
            )
        })
        .await;
        p.expect_code(1);
        a.expect_code(1);
        let t = text(&p);
        for w in wanted {
            assert!(t.contains(w), "missing {w:?} in\n{p}");
        }
        assert!(!a.stdout.contains("Apply complete"), "{a}");
    }
    let left = cms.list(&Default::default()).await.unwrap();
    let names: Vec<_> = left
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(
        names.iter().all(|n| n == "kube-root-ca.crt"),
        "written: {names:?}"
    );
}

// --- kubernetes_patch --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_and_json_patches_plan_by_dry_run_apply_and_then_have_nothing_to_do() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "patch").await;
    create_owned_deployment(&c, "patch", "web").await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "flags" }, "data": { "a": "1", "b": "2" },
    }))
    .unwrap();
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "patch");
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let deps = dynamic(
        &c,
        Some("patch"),
        ("apps", "v1", "Deployment"),
        "deployments",
    );
    let steps = r#"step "kubernetes_patch" "image" {
  api_version = "apps/v1"
  kind        = "Deployment"
  namespace   = "patch"
  name        = "web"
  patch       = { spec = { template = { spec = { containers = [{ name = "web", image = "example.invalid/web:2" }] } } } }
}

step "kubernetes_patch" "labels" {
  api_version = "apps/v1"
  kind        = "Deployment"
  namespace   = "patch"
  name        = "web"
  type        = "merge"
  patch       = { metadata = { labels = { patched = "yes" } } }
  depends_on  = [step.kubernetes_patch.image]
}

step "kubernetes_patch" "flags" {
  api_version = "v1"
  kind        = "ConfigMap"
  namespace   = "patch"
  name        = "flags"
  type        = "json"
  patch       = [{ op = "add", path = "/data/c", value = "3" }, { op = "remove", path = "/data/b" }]
}
"#;
    settled(&c, "patch", "web").await;
    let dep_rv = rv(&deps, "web").await;
    let cm_rv = cms.get("flags").await.unwrap().metadata.resource_version;
    let work = workdir(&s.kubeconfig(), steps);
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("patch_plan", text(&p));
        work
    })
    .await;
    assert_eq!(
        rv(&deps, "web").await,
        dep_rv,
        "plan wrote to the deployment"
    );
    assert_eq!(
        cms.get("flags").await.unwrap().metadata.resource_version,
        cm_rv
    );

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    let d = deployment(&c, "patch", "web").await;
    assert_eq!(d.metadata.labels.unwrap()["patched"], "yes");
    let spec = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("example.invalid/web:2")
    );
    assert_eq!(
        spec.containers[0].ports.as_ref().unwrap()[0].container_port,
        80
    );
    let data = cms.get("flags").await.unwrap().data.unwrap();
    assert_eq!(
        data.into_iter().collect::<Vec<_>>(),
        [
            ("a".to_string(), "1".to_string()),
            ("c".to_string(), "3".to_string())
        ]
    );
    // A second plan: the strategic and merge patches change nothing; the JSON patch's `remove`
    // of `/data/b` now fails the dry run (as `kubectl patch` would), shown against the step.
    settled(&c, "patch", "web").await;
    let dep_rv = rv(&deps, "web").await;
    let work = blocking(move || {
        let p = opsctl_run(&work, &["plan"]);
        p.expect_code(1);
        let t = text(&p);
        assert!(t.contains("step.kubernetes_patch.flags"), "{p}");
        assert!(t.contains("was rejected: the server answered 422"), "{p}");
        work
    })
    .await;
    assert_eq!(rv(&deps, "web").await, dep_rv);
    // Without the `remove`, all three are no-ops.
    write_steps(
        &work,
        &s.kubeconfig(),
        &steps.replace(", { op = \"remove\", path = \"/data/b\" }", ""),
    );
    let cm_rv = cms.get("flags").await.unwrap().metadata.resource_version;
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 3 unchanged."),
            "{p}"
        );
    })
    .await;
    assert_eq!(rv(&deps, "web").await, dep_rv);
    assert_eq!(
        cms.get("flags").await.unwrap().metadata.resource_version,
        cm_rv
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_is_conditional_on_the_resource_version_the_plan_read() {
    // The object changes between plan and apply in a field the patch also sets: apply re-reads,
    // finds a different change than the approved one, and fails without writing.
    let s = server();
    let c = client().await;
    create_namespace(&c, "patch-rv").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "patch-rv");
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "m" }, "data": { "mode": "a" } }))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_patch\" \"m\" {\n  api_version = \"v1\"\n  kind        = \"ConfigMap\"\n  namespace   = \"patch-rv\"\n  name        = \"m\"\n  type        = \"merge\"\n  patch       = { data = { mode = \"b\" } }\n}\n",
    );
    let (approval, work) = blocking(move || (AwaitingApproval::start(&work, &[]), work)).await;
    cms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "mode": "c" } })),
    )
    .await
    .unwrap();
    let out = blocking(move || approval.answer("yes")).await;
    out.expect_code(1);
    let t = format!("{}{}", out.stdout, out.stderr);
    assert!(t.contains("changed since the plan was approved"), "{out}");
    assert_eq!(cms.get("m").await.unwrap().data.unwrap()["mode"], "c");
    drop(work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_apply_is_conditional_on_the_resource_version_the_plan_read() {
    // Even with `force_conflicts` (which takes any field), a change made between approval and
    // apply is not overwritten: the applied configuration carries the resource version the
    // plan read.
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-rv").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "mf-rv");
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "m" }, "data": { "mode": "a" } }))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_manifest\" \"m\" {\n  manifest = {\n    apiVersion = \"v1\"\n    kind       = \"ConfigMap\"\n    metadata   = { name = \"m\", namespace = \"mf-rv\" }\n    data       = { mode = \"b\" }\n  }\n  force_conflicts = true\n}\n",
    );
    let (approval, work) = blocking(move || (AwaitingApproval::start(&work, &[]), work)).await;
    cms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "mode": "c" } })),
    )
    .await
    .unwrap();
    let out = blocking(move || approval.answer("yes")).await;
    out.expect_code(1);
    let t = format!("{}{}", out.stdout, out.stderr);
    assert!(
        t.contains("server-side apply of ConfigMap `mf-rv/m`"),
        "{out}"
    );
    assert!(t.contains("changed since the plan was approved"), "{out}");
    assert!(t.contains("data.mode: \"c\" -> \"b\""), "{out}");
    assert_eq!(cms.get("m").await.unwrap().data.unwrap()["mode"], "c");
    drop(work);
}

// --- interrupted applies, resumed -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_interrupted_after_it_acted_is_marked_done_on_resume_from_the_dry_run() {
    // opsctl is killed after the server-side apply and the patch acted, before it journals
    // them finished: resume asks each step (in_doubt) whether its effect is there, by the dry
    // run against the live object, and writes nothing again.
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-resume").await;
    let cms = Api::<ConfigMap>::namespaced(c.clone(), "mf-resume");
    let work = workdir(
        &s.kubeconfig(),
        r#"step "kubernetes_manifest" "cm" {
  manifest = {
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata   = { name = "resumed", namespace = "mf-resume" }
    data       = { mode = "safe" }
  }
}

step "kubernetes_patch" "label" {
  api_version = "v1"
  kind        = "ConfigMap"
  namespace   = "mf-resume"
  name        = "resumed"
  type        = "merge"
  patch       = { metadata = { labels = { patched = "yes" } } }
  depends_on  = [step.kubernetes_manifest.cm]
}
"#,
    );
    // Journal lines: 1 run_started, 2 step_started (cm), 3 step_finished (cm), 4 step_started
    // (label), 5 step_finished (label): killed before it.
    let (out, work) = blocking(move || {
        let mut cmd = opsctl(&work, None);
        cmd.args(["apply", "--auto-approve", "--state-dir"])
            .arg(work.state_dir())
            .env("OPSCTL_FAULT_JOURNAL_KILL_AT", "5");
        (run(&mut cmd), work)
    })
    .await;
    assert_eq!(out.code, -1, "expected opsctl to be killed\n{out}");
    let cm = cms
        .get("resumed")
        .await
        .expect("the apply acted before the kill");
    assert_eq!(
        cm.metadata.labels.unwrap()["patched"],
        "yes",
        "the patch acted before the kill"
    );
    let before = cm.metadata.resource_version;

    let out = blocking(move || opsctl_run(&work, &["apply", "--resume", "--auto-approve"])).await;
    out.expect_success();
    let t = text(&out);
    assert!(
        t.contains(
            "step.kubernetes_patch.label: marked finished (re-read: its effect is already there)"
        ),
        "{out}"
    );
    assert_eq!(
        cms.get("resumed").await.unwrap().metadata.resource_version,
        before
    );
}

// --- examples ----------------------------------------------------------------------------------

/// Runs `examples/NAME/main.hcl` with `--var` values: plan (snapshot), apply, and a second
/// plan that must be a no-op.
async fn run_example(name: &str, snapshot: &'static str, vars: Vec<String>) {
    let s = server();
    let work = Workdir::new();
    let example = support::repo_root().join(format!("examples/{name}/main.hcl"));
    work.write("main.hcl", &std::fs::read_to_string(example).unwrap());
    let mut all = vec![
        "--var".to_string(),
        format!("kubeconfig={}", s.kubeconfig().display()),
    ];
    for v in vars {
        all.push("--var".into());
        all.push(v);
    }
    blocking(move || {
        let args = |cmd: &[&str]| -> Vec<String> {
            cmd.iter()
                .map(|a| a.to_string())
                .chain(all.iter().cloned())
                .collect()
        };
        let run = |cmd: &[&str]| {
            let a = args(cmd);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            opsctl_run(&work, &a)
        };
        let p = run(&["plan", "--detailed-exitcode"]);
        p.expect_code(2);
        insta::assert_snapshot!(snapshot, text(&p));
        let a = run(&["apply", "--auto-approve"]);
        a.expect_success();
        let p = run(&["plan", "--detailed-exitcode"]);
        p.expect_code(0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argocd_forced_sync_example_plans_and_applies() {
    let c = client().await;
    install_crd(&c, "argoproj.io", "v1alpha1", "Application", "applications").await;
    create_namespace(&c, "argocd").await;
    let apps = dynamic(
        &c,
        Some("argocd"),
        ("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": { "name": "netlix-app", "namespace": "argocd" },
        "spec": {
            "project": "default",
            "source": { "repoURL": "https://github.com/timkrebs/netlix-platform", "path": "k8s/overlays/dev", "targetRevision": "main" },
            "destination": { "server": "https://kubernetes.default.svc", "namespace": "netlix" },
        },
        "status": { "sync": { "status": "OutOfSync" } },
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
    let before = rv(&apps, "netlix-app").await;

    run_example(
        "argocd-forced-sync",
        "example_argocd_forced_sync_plan",
        vec![],
    )
    .await;

    let a = get(&apps, "netlix-app").await.unwrap();
    assert_eq!(
        a["operation"],
        json!({ "initiatedBy": { "username": "admin" }, "sync": { "revision": "HEAD" } })
    );
    assert_eq!(a["spec"]["project"], "default");
    assert_ne!(rv(&apps, "netlix-app").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pvc_expansion_hpa_example_plans_and_applies() {
    let c = client().await;
    create_namespace(&c, "apps").await;
    // An expandable StorageClass, a PV and a claim bound to it: the PV binder binds them (or
    // the test, playing the missing controller, sets the claim's status through its
    // subresource).
    let scs = dynamic(
        &c,
        None,
        ("storage.k8s.io", "v1", "StorageClass"),
        "storageclasses",
    );
    let sc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "expandable" },
        "provisioner": "kubernetes.io/no-provisioner",
        "allowVolumeExpansion": true,
        "volumeBindingMode": "Immediate",
    }))
    .unwrap();
    scs.create(&PostParams::default(), &sc).await.unwrap();
    let pvs = dynamic(
        &c,
        None,
        ("", "v1", "PersistentVolume"),
        "persistentvolumes",
    );
    let pv: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": "fastapi-data-pv" },
        "spec": {
            "capacity": { "storage": "10Gi" },
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "expandable",
            "hostPath": { "path": "/tmp/opsctl-fastapi-data" },
            "claimRef": { "namespace": "apps", "name": "fastapi-data" },
        },
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    let pvcs = dynamic(
        &c,
        Some("apps"),
        ("", "v1", "PersistentVolumeClaim"),
        "persistentvolumeclaims",
    );
    let pvc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": "fastapi-data" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "expandable",
            "volumeName": "fastapi-data-pv",
            "resources": { "requests": { "storage": "10Gi" } },
        },
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    eventually("the claim to be Bound", || async {
        let phase = get(&pvcs, "fastapi-data").await.unwrap()["status"]["phase"].clone();
        if phase == "Bound" {
            return true;
        }
        let _ = pvcs
            .patch_status(
                "fastapi-data",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": {
                    "phase": "Bound",
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": { "storage": "10Gi" },
                } })),
            )
            .await;
        false
    })
    .await;
    let hpas = dynamic(
        &c,
        Some("apps"),
        ("autoscaling", "v1", "HorizontalPodAutoscaler"),
        "horizontalpodautoscalers",
    );
    let hpa: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "fastapi-hpa" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "fastapi-app" },
            "minReplicas": 3, "maxReplicas": 10, "targetCPUUtilizationPercentage": 70,
        },
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &hpa).await.unwrap();
    let (pvc_rv, hpa_rv) = (
        rv(&pvcs, "fastapi-data").await,
        rv(&hpas, "fastapi-hpa").await,
    );

    run_example(
        "pvc-expansion-hpa",
        "example_pvc_expansion_hpa_plan",
        vec![],
    )
    .await;

    let pvc = get(&pvcs, "fastapi-data").await.unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(
        get(&hpas, "fastapi-hpa").await.unwrap()["spec"]["maxReplicas"],
        30
    );
    assert_ne!(rv(&pvcs, "fastapi-data").await, pvc_rv);
    assert_ne!(rv(&hpas, "fastapi-hpa").await, hpa_rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_read_with_yamldecode_of_a_file_beside_the_configuration_applies() {
    let s = server();
    let c = client().await;
    create_namespace(&c, "mf-file").await;
    let work = workdir(
        &s.kubeconfig(),
        "step \"kubernetes_manifest\" \"settings\" {\n  manifest = yamldecode(file(\"${path.module}/settings.yaml\"))\n}\n",
    );
    work.write(
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-file\n  namespace: mf-file\ndata:\n  mode: from-a-file\n",
    );
    blocking(move || {
        let p = plan(&work, 2);
        assert!(p.stdout.contains("from-a-file"), "{p}");
        apply(&work);
        plan(&work, 0);
    })
    .await;
    let cm = Api::<ConfigMap>::namespaced(c.clone(), "mf-file")
        .get("from-file")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["mode"], "from-a-file");
}
