//! Every module of the library under `modules/`, planned and applied through the example that
//! uses it (`examples/modules-*`) against the local servers: the kube-apiserver
//! (node-maintenance, tls-secret-rotation), moto (snapshot-before-maintenance,
//! nodegroup-scaling-pin, eks-upgrade) and OpenBao with PostgreSQL (db-credential-rotation).
//!
//! Each test copies `modules/` and the example into a scratch directory with the repository's
//! layout (`examples/NAME/main.hcl`, `modules/...`), so the examples' `../../modules/...`
//! sources resolve, and runs opsctl in the example's directory.

mod kube_support;
mod support;
mod vault_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{aws_python, opsctl, repo_root, run, seed_platform, MotoServer, Output, Workdir};

/// Copies every file of `from` (recursively) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            fs::copy(&path, &dest).unwrap();
        }
    }
}

/// A scratch copy of `modules/` and `examples/NAME`; returns it and the example's directory.
/// `edit` may rewrite the example's `main.hcl` (test names in place of the seed's).
fn example(name: &str, edit: impl FnOnce(String) -> String) -> (Workdir, PathBuf) {
    let work = Workdir::new();
    copy_dir(&repo_root().join("modules"), &work.path().join("modules"));
    let dir = work.path().join("examples").join(name);
    copy_dir(&repo_root().join("examples").join(name), &dir);
    let main = dir.join("main.hcl");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(&main, edit(text)).unwrap();
    (work, dir)
}

/// Runs `cmd` (an opsctl command) in `dir` with `--state-dir <work>/state`.
fn in_dir(mut cmd: Command, work: &Workdir, dir: &Path, args: &[&str]) -> Output {
    cmd.current_dir(dir)
        .args(args)
        .arg("--state-dir")
        .arg(work.state_dir());
    run(&mut cmd)
}

fn assert_applied(out: &Output) {
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_maintenance_cordons_drains_and_uncordons_every_node_of_the_example() {
    let s = kube_support::server();
    let c = kube_support::client().await;
    for n in ["lib-nm-a", "lib-nm-b"] {
        kube_support::create_node(&c, n).await;
    }
    // The nodes come from `--var` (the module's `for_each` is over the variable).
    let (work, dir) = example("modules-node-maintenance", |t| t);
    let kubeconfig = format!("kubeconfig={}", s.kubeconfig().display());
    let nodes = r#"nodes=["lib-nm-a","lib-nm-b"]"#;
    let (work, dir, p, a) = kube_support::blocking(move || {
        let p = in_dir(
            opsctl(&work, None),
            &work,
            &dir,
            &[
                "plan",
                "--detailed-exitcode",
                "--var",
                &kubeconfig,
                "--var",
                nodes,
            ],
        );
        let a = in_dir(
            opsctl(&work, None),
            &work,
            &dir,
            &[
                "apply",
                "--auto-approve",
                "--var",
                &kubeconfig,
                "--var",
                nodes,
            ],
        );
        (work, dir, p, a)
    })
    .await;
    p.expect_code(2);
    for n in ["lib-nm-a", "lib-nm-b"] {
        assert!(
            p.stdout.contains(&format!(
                "module.maintenance[\"{n}\"].step.kubernetes_drain.this"
            )),
            "{p}"
        );
    }
    assert_applied(&a);
    assert!(a.stdout.contains("evicted"), "{a}");
    for n in ["lib-nm-a", "lib-nm-b"] {
        assert!(
            !kube_support::unschedulable(&kube_support::node(&c, n).await),
            "{n} back in service"
        );
    }
    drop((work, dir));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_secret_rotation_replaces_the_secret_once_its_controller_recreates_it() {
    let s = kube_support::server();
    let c = kube_support::client().await;
    kube_support::create_namespace(&c, "lib-tls").await;
    let secrets = Api::<Secret>::namespaced(c.clone(), "lib-tls");
    let secret = |cert: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": { "name": "netlix-tls-cert" },
            "stringData": { "tls.crt": cert },
        }))
        .unwrap()
    };
    let old = secrets
        .create(&PostParams::default(), &secret("old"))
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    // The controller: recreates the Secret once it is gone.
    let recreate = {
        let secrets = secrets.clone();
        let new = secret("new");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if secrets.get_opt("netlix-tls-cert").await.unwrap().is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    secrets.create(&PostParams::default(), &new).await.unwrap();
                    return;
                }
            }
        })
    };
    let (work, dir) = example("modules-tls-secret-rotation", |t| t);
    let kubeconfig = format!("kubeconfig={}", s.kubeconfig().display());
    let (work, dir, p, a) = kube_support::blocking(move || {
        let vars = ["--var", &kubeconfig, "--var", "namespace=lib-tls"];
        let mut plan = vec!["plan", "--detailed-exitcode"];
        plan.extend(vars);
        let p = in_dir(opsctl(&work, None), &work, &dir, &plan);
        let mut apply = vec!["apply", "--auto-approve"];
        apply.extend(vars);
        let a = in_dir(opsctl(&work, None), &work, &dir, &apply);
        (work, dir, p, a)
    })
    .await;
    p.expect_code(2);
    assert!(
        p.stdout.contains("module.tls.step.kubernetes_delete.this"),
        "{p}"
    );
    assert_applied(&a);
    tokio::time::timeout(Duration::from_secs(60), recreate)
        .await
        .expect("recreated")
        .unwrap();
    let new = secrets
        .get("netlix-tls-cert")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    assert_ne!(new, old);
    assert!(a.stdout.contains(&format!("new_uid = \"{new}\"")), "{a}");
    drop((work, dir));
}

fn moto_run(moto: &MotoServer, work: &Workdir, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, Some(moto));
    cmd.env("OPSCTL_AWS_POLL_INITIAL", "0.2")
        .env("OPSCTL_AWS_POLL_MAX", "1");
    in_dir(cmd, work, dir, args)
}

#[test]
fn snapshot_before_maintenance_and_nodegroup_scaling_pin_in_the_maintenance_window() {
    let moto = MotoServer::start();
    seed_platform(&moto.endpoint);
    let (work, dir) = example("modules-maintenance-window", |t| t);
    let vars = ["--var", "date=20261121-2200"];
    let p = moto_run(
        &moto,
        &work,
        &dir,
        &["plan", "--detailed-exitcode", vars[0], vars[1]],
    );
    p.expect_code(2);
    for addr in [
        "module.snapshot.step.rds_snapshot.this",
        "module.general_headroom.step.eks_nodegroup_scaling.this",
        "module.batch_pause.step.eks_nodegroup_scaling.this",
    ] {
        assert!(p.stdout.contains(addr), "{addr}\n{p}");
    }
    assert!(
        p.stdout
            .contains("after: module.snapshot.step.rds_snapshot.this"),
        "`depends_on = [module.snapshot]` orders the scaling after the snapshot\n{p}"
    );
    let a = moto_run(
        &moto,
        &work,
        &dir,
        &["apply", "--auto-approve", vars[0], vars[1]],
    );
    assert_applied(&a);
    let snaps = aws_python(
        &moto.endpoint,
        "print([s['DBSnapshotIdentifier'] for s in rds.describe_db_snapshots(SnapshotType='manual')['DBSnapshots']])",
    );
    assert!(
        snaps.contains("platform-postgres-prod-manual-20261121-2200"),
        "{snaps}"
    );
    let scaling = |ng: &str| {
        aws_python(
            &moto.endpoint,
            &format!(
                "sc = eks.describe_nodegroup(clusterName='platform-prod', nodegroupName='{ng}')['nodegroup']['scalingConfig']\nprint(sc['desiredSize'], sc['minSize'], sc['maxSize'])"
            ),
        )
    };
    assert_eq!(scaling("general"), "5 2 8");
    assert_eq!(scaling("batch"), "0 0 4");
    assert!(a.stdout.contains("general_size_before = 4"), "{a}");
    moto_run(
        &moto,
        &work,
        &dir,
        &["plan", "--detailed-exitcode", vars[0], vars[1]],
    )
    .expect_code(0);
}

#[test]
fn eks_upgrade_moves_the_control_plane_then_every_nodegroup() {
    let moto = MotoServer::start_ext();
    seed_platform(&moto.endpoint);
    moto.reset_calls();
    moto.behaviour(json!([
        {"service": "eks", "kind": "cluster", "id": "platform-prod", "hold": {"UPDATING": 1.0}},
        {"service": "eks", "kind": "nodegroup", "id": "*", "hold": {"UPDATING": 1.0}}
    ]));
    let (work, dir) = example("modules-eks-upgrade", |t| t);
    let p = moto_run(
        &moto,
        &work,
        &dir,
        &["plan", "--detailed-exitcode", "--var", "version=1.29"],
    );
    p.expect_code(2);
    for addr in [
        "module.upgrade.step.eks_cluster_version.control_plane",
        "module.upgrade.step.eks_nodegroup_version.nodes[\"batch\"]",
        "module.upgrade.step.eks_nodegroup_version.nodes[\"general\"]",
    ] {
        assert!(p.stdout.contains(addr), "{addr}\n{p}");
    }
    assert_eq!(
        moto.call_count("UpdateClusterVersion"),
        0,
        "plan never writes"
    );
    let a = moto_run(
        &moto,
        &work,
        &dir,
        &["apply", "--auto-approve", "--var", "version=1.29"],
    );
    assert_applied(&a);
    let state = aws_python(
        &moto.endpoint,
        "print(eks.describe_cluster(name='platform-prod')['cluster']['version'], \
         sorted(eks.describe_nodegroup(clusterName='platform-prod', nodegroupName=n)['nodegroup']['version'] for n in ['general', 'batch']))",
    );
    assert_eq!(state, "1.29 ['1.29', '1.29']");
    assert_eq!(moto.call_count("UpdateClusterVersion"), 1);
    assert_eq!(moto.call_count("UpdateNodegroupVersion"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn db_credential_rotation_revokes_every_lease_of_the_role_and_drops_its_users() {
    vault_support::server();
    let (users, work, dir) = vault_support::blocking(|| {
        vault_support::database_engine(None, "lib-db");
        vault_support::database_role(None, "lib-db", "lib-app");
        let users: Vec<String> = (0..3)
            .map(|_| vault_support::issue_creds(None, "lib-db", "lib-app").1)
            .collect();
        let (work, dir) = example("modules-db-credential-rotation", |t| t);
        (users, work, dir)
    })
    .await;
    let list = users
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(",");
    let query = format!("select rolname from pg_roles where rolname in ({list})");
    let (before, after, p, a, work, dir) = vault_support::blocking(move || {
        let before = vault_support::psql(&query).len();
        let args = ["--var", "mount=lib-db", "--var", "role=lib-app"];
        let mut plan = vec!["plan", "--detailed-exitcode"];
        plan.extend(args);
        let p = in_dir(vault_support::opsctl_cmd(&work), &work, &dir, &plan);
        let mut apply = vec!["apply", "--auto-approve"];
        apply.extend(args);
        let a = in_dir(vault_support::opsctl_cmd(&work), &work, &dir, &apply);
        let after = vault_support::psql(&query).len();
        (before, after, p, a, work, dir)
    })
    .await;
    assert_eq!(before, 3);
    p.expect_code(2);
    assert!(
        p.stdout
            .contains("module.rotation.step.vault_lease_revoke.this"),
        "{p}"
    );
    assert_applied(&a);
    assert_eq!(after, 0, "the role's database users are gone\n{a}");
    drop((work, dir));
}
