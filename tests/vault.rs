//! End-to-end tests of the `vault` provider against a real OpenBao dev server (started once for
//! this file through `scripts/vault.sh`, `$OPSCTL_VAULT_SH`): `vault_policy`, `vault_kv`, the
//! `vault_kv` data source feeding another step, `vault_lease_revoke` (database credentials on a
//! real PostgreSQL 15, also started through the script), and errors (permission denied, missing
//! mount, unreachable address, wrong namespace, sealed server, a write refused at apply), and
//! the seed examples `examples/vault-*`. Each test uses its own policy names, secret paths,
//! mounts and namespaces.

mod support;
mod vault_support;

use std::collections::HashMap;

use serde_json::json;
use vault_support::*;
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;

async fn policy_text(name: &str) -> Option<String> {
    match vaultrs::sys::policy::read(&client(), name).await {
        Ok(p) => Some(p.rules),
        Err(vaultrs::error::ClientError::APIError { code: 404, .. }) => None,
        Err(e) => panic!("read policy {name}: {e:?}"),
    }
}

async fn secret(path: &str) -> HashMap<String, String> {
    vaultrs::kv2::read(&client(), "secret", path)
        .await
        .unwrap_or_else(|e| panic!("read secret/{path}: {e:?}"))
}

async fn secret_version(path: &str) -> u64 {
    vaultrs::kv2::read_metadata(&client(), "secret", path)
        .await
        .unwrap_or_else(|e| panic!("read metadata of secret/{path}: {e:?}"))
        .current_version
}

const POLICY_V1: &str = "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n";
const POLICY_V2: &str = "path \"secret/data/app/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n\npath \"sys/leases/lookup/*\" {\n  capabilities = [\"list\"]\n}\n";

fn policy_step(text: &str) -> String {
    format!("step \"vault_policy\" \"app\" {{\n  name   = \"tfc-policy\"\n  policy = <<-EOT\n{text}EOT\n}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_is_created_diffed_by_line_deleted_and_then_has_nothing_to_do() {
    server();
    let work = workdir(&policy_step(POLICY_V1));

    // Create.
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("policy_create_plan", portless(&p.stdout));
        work
    })
    .await;
    assert_eq!(
        policy_text("tfc-policy").await,
        None,
        "plan wrote the policy"
    );
    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    assert_eq!(policy_text("tfc-policy").await.as_deref(), Some(POLICY_V1));
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

    // Update: a line diff of the policy text.
    write_steps(&work, &policy_step(POLICY_V2));
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("policy_update_plan", portless(&p.stdout));
        work
    })
    .await;
    assert_eq!(
        policy_text("tfc-policy").await.as_deref(),
        Some(POLICY_V1),
        "plan wrote the policy"
    );
    let work = blocking(move || {
        apply(&work);
        plan(&work, 0);
        work
    })
    .await;
    assert_eq!(policy_text("tfc-policy").await.as_deref(), Some(POLICY_V2));

    // Delete.
    write_steps(
        &work,
        "step \"vault_policy\" \"app\" {\n  name   = \"tfc-policy\"\n  ensure = \"absent\"\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("policy_delete_plan", portless(&p.stdout));
        apply(&work);
        work
    })
    .await;
    assert_eq!(policy_text("tfc-policy").await, None);
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_write_plans_keys_never_values_uses_check_and_set_and_then_has_nothing_to_do() {
    server();
    let c = client();
    vaultrs::kv2::set(
        &c,
        "secret",
        "app/db",
        &json!({ "username": "svc-app", "password": "old-pw-4711", "legacy": "drop-me-0815" }),
    )
    .await
    .expect("seed secret");
    // Writes without check-and-set are refused from now on: apply must send `cas`.
    let meta = SetSecretMetadataRequest::builder()
        .mount("secret")
        .path("app/db")
        .cas_required(true)
        .build()
        .unwrap();
    vaultrs::api::exec_with_empty(&c, meta)
        .await
        .expect("require cas");
    let new_pw = "n3w-Pa55word-9f2c";
    let work = workdir(&format!(
        "step \"vault_kv\" \"db\" {{\n  path = \"app/db\"\n  data = {{\n    username = \"svc-app\"\n    password = \"{new_pw}\"\n    port     = \"5432\"\n  }}\n}}\n"
    ));

    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("kv_update_plan", portless(&p.stdout));
        work
    })
    .await;
    assert_eq!(secret_version("app/db").await, 1, "plan wrote the secret");

    let work = blocking(move || {
        let a = apply(&work);
        assert!(
            !a.stdout.contains(new_pw) && !a.stderr.contains(new_pw),
            "{a}"
        );
        work
    })
    .await;
    assert_eq!(secret_version("app/db").await, 2);
    let live = secret("app/db").await;
    assert_eq!(
        live,
        HashMap::from([
            ("username".to_string(), "svc-app".to_string()),
            ("password".to_string(), new_pw.to_string()),
            ("port".to_string(), "5432".to_string()),
        ])
    );
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
    for (path, text) in files_under(work.path()) {
        if path.extension().is_some_and(|e| e == "hcl") {
            continue;
        }
        for secret in [new_pw, "old-pw-4711", "drop-me-0815"] {
            assert!(
                !text.contains(secret),
                "{} holds a secret value:\n{text}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_creates_a_new_secret() {
    server();
    let work = workdir(
        "step \"vault_kv\" \"new\" {\n  path = \"svc/new\"\n  data = { token = \"t0ken-abcdef\" }\n}\n",
    );
    let work = blocking(move || {
        let p = plan(&work, 2);
        insta::assert_snapshot!("kv_create_plan", portless(&p.stdout));
        apply(&work);
        work
    })
    .await;
    assert_eq!(secret("svc/new").await["token"], "t0ken-abcdef");
    assert_eq!(secret_version("svc/new").await, 1);
    blocking(move || {
        plan(&work, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_source_feeds_a_step_and_its_value_shows_nowhere() {
    server();
    let pw = "Rds-Master-7c1e9a";
    vaultrs::kv2::set(
        &client(),
        "secret",
        "rds/master",
        &json!({ "password": pw }),
    )
    .await
    .expect("seed secret");
    let work = Workdir::new();
    let check = work.path().join("checked");
    write_steps(
        &work,
        &format!(
            "data \"vault_kv\" \"rds\" {{\n  path = \"rds/master\"\n}}\n\n\
             step \"exec\" \"set_password\" {{\n  command     = \"test \\\"$PW\\\" = {pw} && touch {check} && echo password is $PW\"\n  environment = {{ PW = data.vault_kv.rds.data.password }}\n}}\n\n\
             step \"exec\" \"fail\" {{\n  command     = \"echo failing with $PW >&2; exit 3\"\n  environment = {{ PW = data.vault_kv.rds.data.password }}\n  depends_on  = [step.exec.set_password]\n}}\n",
            check = check.display()
        ),
    );
    let (work, outs) = blocking(move || {
        let p = plan(&work, 2);
        let a = opsctl_run(&work, &["apply", "--auto-approve"]);
        a.expect_code(1);
        (work, vec![p, a])
    })
    .await;
    // The first step ran with the real value; the second failed printing it.
    assert!(
        check.exists(),
        "the step did not get the password: {}",
        outs[1]
    );
    assert!(outs[0].stdout.contains("(sensitive value)"), "{}", outs[0]);
    for o in &outs {
        assert!(!o.stdout.contains(pw) && !o.stderr.contains(pw), "{o}");
    }
    let files = files_under(&work.state_dir());
    assert!(!files.is_empty(), "no journal written");
    for (path, text) in files {
        assert!(
            !text.contains(pw),
            "{} holds the password:\n{text}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_of_the_kv_data_source_must_be_declared_sensitive() {
    server();
    vaultrs::kv2::set(&client(), "secret", "out/x", &json!({ "k": "value-12345" }))
        .await
        .expect("seed secret");
    let work = workdir(
        "data \"vault_kv\" \"x\" {\n  path = \"out/x\"\n}\n\noutput \"k\" {\n  value = data.vault_kv.x.data.k\n}\n",
    );
    blocking(move || {
        let out = opsctl_run(&work, &["plan"]);
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("sensitive = true"), "{out}");
        assert!(!out.stdout.contains("value-12345") && !out.stderr.contains("value-12345"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_step_the_target_and_the_servers_answer() {
    let s = server();
    // A token with only the `default` policy: permission denied.
    let token = vaultrs::token::new(
        &client(),
        Some(
            vaultrs::api::token::requests::CreateTokenRequest::builder()
                .policies(vec!["default".to_string()]),
        ),
    )
    .await
    .expect("create token")
    .client_token;
    let work = workdir(
        "step \"vault_policy\" \"p\" {\n  name   = \"denied\"\n  policy = \"path \\\"x\\\" {}\"\n}\n",
    );
    let addr = s.addr.clone();
    blocking(move || {
        let mut cmd = opsctl_cmd(&work);
        cmd.env("VAULT_TOKEN", &token)
            .args(["plan", "--state-dir"])
            .arg(work.state_dir());
        let out = run(&mut cmd);
        assert_ne!(out.code, 0, "{out}");
        insta::assert_snapshot!("error_permission_denied", portless(&out.stderr));

        // A mount that does not exist.
        write_steps(
            &work,
            "step \"vault_kv\" \"k\" {\n  mount = \"nosuch\"\n  path  = \"a/b\"\n  data  = { k = \"v\" }\n}\n",
        );
        let out = opsctl_run(&work, &["plan"]);
        assert_ne!(out.code, 0, "{out}");
        insta::assert_snapshot!("error_missing_mount", portless(&out.stderr));

        // Nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        work.write(
            "main.hcl",
            &format!("provider \"vault\" {{\n  address = \"http://127.0.0.1:{port}\"\n}}\n\nstep \"vault_policy\" \"p\" {{\n  name   = \"x\"\n  policy = \"path \\\"x\\\" {{}}\"\n}}\n"),
        );
        let out = opsctl_run(&work, &["plan"]);
        assert_ne!(out.code, 0, "{out}");
        assert!(
            out.stderr.contains("step.vault_policy.p")
                && out.stderr.contains(&format!("vault/127.0.0.1:{port}/sys/policy/x")),
            "{out}"
        );
        let _ = addr;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_revoke_lists_the_leases_with_their_role_revokes_them_and_the_database_users_are_gone(
) {
    server();
    let work = blocking(|| {
        database_engine(None, "database");
        database_role(None, "database", "readonly");
        database_role(None, "database", "other");
        workdir(&format!(
            "step \"vault_lease_revoke\" \"creds\" {{\n  prefix       = \"database/creds/readonly\"\n  database_url = \"postgresql://postgres:postgres@127.0.0.1:{}/postgres?sslmode=disable\"\n}}\n",
            postgres().port
        ))
    })
    .await;
    let (work, issued, other) = blocking(move || {
        let issued: Vec<(String, String)> = (0..5)
            .map(|_| issue_creds(None, "database", "readonly"))
            .collect();
        let other = issue_creds(None, "database", "other");
        (work, issued, other)
    })
    .await;
    let users = |names: Vec<String>| {
        let list = names
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(",");
        psql(&format!(
            "select rolname from pg_roles where rolname in ({list}) order by 1"
        ))
    };
    let names: Vec<String> = issued.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(users(names.clone()).len(), 5);

    let ids: Vec<String> = issued.iter().map(|(l, _)| l.clone()).collect();
    let (users_seen, other_user) = (names.clone(), other.1.clone());
    let work = blocking(move || {
        let p = plan(&work, 2);
        for id in &ids {
            assert!(p.stdout.contains(&format!("{id} (role `readonly`)")), "{p}");
        }
        // The database users the leases stand for, found in PostgreSQL; not the other role's.
        for user in &users_seen {
            assert!(
                p.stdout.contains(&format!("#   {user}\n")),
                "no user {user}:\n{p}"
            );
        }
        assert!(!p.stdout.contains(&other_user), "{p}");
        assert!(!p.stdout.contains("postgres:postgres@"), "{p}");
        let mut text = portless(&p.stdout);
        for id in &ids {
            text = text.replace(id.as_str(), "database/creds/readonly/LEASE");
        }
        for user in &users_seen {
            text = text.replace(user.as_str(), "v-USER");
        }
        text = text.replace(
            &format!("127.0.0.1:{}/", postgres().port),
            "127.0.0.1:PGPORT/",
        );
        insta::assert_snapshot!("lease_revoke_plan", text);
        work
    })
    .await;
    // Plan revoked nothing.
    assert_eq!(users(names.clone()).len(), 5, "plan revoked leases");

    let work = blocking(move || {
        apply(&work);
        work
    })
    .await;
    // Apply waited until PostgreSQL dropped the users (revoking database leases can meet
    // "tuple concurrently updated", retried ~15 s later): none is left when it returns.
    assert_eq!(
        users(names.clone()),
        Vec::<String>::new(),
        "database users left"
    );
    // The other role's credential is untouched.
    assert_eq!(users(vec![other.1.clone()]), vec![other.1]);
    blocking(move || {
        let p = plan(&work, 0);
        assert!(
            p.stdout
                .contains("Plan: 0 to run, 0 to change, 1 unchanged."),
            "{p}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_is_sent_and_named_in_the_target_and_a_wrong_one_is_an_error() {
    server();
    let work = blocking(|| {
        vault_http("POST", "sys/namespaces/team-a", &json!({}));
        vault_http_ns(
            Some("team-a"),
            "POST",
            "sys/mounts/secret",
            &json!({ "type": "kv", "options": { "version": "2" } }),
        );
        let work = Workdir::new();
        work.write(
            "main.hcl",
            "provider \"vault\" {\n  namespace = \"team-a\"\n}\n\nstep \"vault_kv\" \"k\" {\n  path = \"ns/app\"\n  data = { key = \"in-namespace-value\" }\n}\n",
        );
        let p = plan(&work, 2);
        assert!(
            portless(&p.stdout).contains("target: vault/127.0.0.1:PORT/ns/team-a/secret/data/ns/app"),
            "{p}"
        );
        apply(&work);
        plan(&work, 0);
        let read = vault_http_ns(Some("team-a"), "GET", "secret/data/ns/app", &serde_json::Value::Null);
        assert_eq!(read["data"]["data"]["key"], "in-namespace-value");
        work
    })
    .await;
    // Not in the root namespace.
    assert!(
        vaultrs::kv2::read::<HashMap<String, String>>(&client(), "secret", "ns/app")
            .await
            .is_err()
    );

    blocking(move || {
        work.write(
            "main.hcl",
            "provider \"vault\" {\n  namespace = \"team-b\"\n}\n\nstep \"vault_kv\" \"k\" {\n  path = \"ns/app\"\n  data = { key = \"v\" }\n}\n",
        );
        let out = opsctl_run(&work, &["plan"]);
        assert_ne!(out.code, 0, "{out}");
        insta::assert_snapshot!("error_wrong_namespace", portless(&out.stderr));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_vault_is_an_error_naming_step_and_target() {
    let sealed = blocking(|| {
        let p = PrivateServer::start();
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-X",
                "POST",
                "-H",
                "X-Vault-Token: root",
            ])
            .arg(format!("{}/v1/sys/seal", p.addr))
            .output()
            .expect("curl");
        assert!(out.status.success(), "seal: {out:?}");
        p
    })
    .await;
    let addr = sealed.addr.clone();
    blocking(move || {
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &format!("provider \"vault\" {{\n  address = \"{addr}\"\n}}\n\nstep \"vault_policy\" \"p\" {{\n  name   = \"x\"\n  policy = \"path \\\"x\\\" {{}}\"\n}}\n"),
        );
        let out = opsctl_run(&work, &["plan"]);
        assert_ne!(out.code, 0, "{out}");
        let port = addr.rsplit(':').next().unwrap();
        insta::assert_snapshot!(
            "error_sealed",
            out.stderr.replace(port, "PORT")
        );
    })
    .await;
    drop(sealed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_at_apply_fails_the_run_and_writes_nothing() {
    server();
    let c = client();
    vaultrs::kv2::set(&c, "secret", "ro/app", &json!({ "k": "before-value-1" }))
        .await
        .expect("seed secret");
    vaultrs::sys::policy::set(
        &c,
        "kv-read-only",
        "path \"secret/data/ro/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/ro/*\" { capabilities = [\"read\"] }\n",
    )
    .await
    .expect("policy");
    let token = vaultrs::token::new(
        &c,
        Some(
            vaultrs::api::token::requests::CreateTokenRequest::builder()
                .policies(vec!["kv-read-only".to_string()]),
        ),
    )
    .await
    .expect("create token")
    .client_token;
    let work = workdir(
        "step \"vault_kv\" \"k\" {\n  path = \"ro/app\"\n  data = { k = \"after-value-2\" }\n}\n",
    );
    let (work, out) = blocking(move || {
        let mut cmd = opsctl_cmd(&work);
        cmd.env("VAULT_TOKEN", &token)
            .args(["apply", "--auto-approve", "--state-dir"])
            .arg(work.state_dir());
        let out = run(&mut cmd);
        (work, out)
    })
    .await;
    assert_ne!(out.code, 0, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("step.vault_kv.k")
            && portless(&all).contains("vault/127.0.0.1:PORT/secret/data/ro/app")
            && all.contains("403: permission denied"),
        "{out}"
    );
    assert!(
        !all.contains("after-value-2") && !all.contains("before-value-1"),
        "{out}"
    );
    for (path, text) in files_under(&work.state_dir()) {
        assert!(
            !text.contains("after-value-2"),
            "{}: {text}",
            path.display()
        );
    }
    assert_eq!(secret_version("ro/app").await, 1, "something was written");
    assert_eq!(secret("ro/app").await["k"], "before-value-1");
}

/// Users of `names` that still exist in PostgreSQL.
fn pg_users(names: &[String]) -> Vec<String> {
    let list = names
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(",");
    psql(&format!(
        "select rolname from pg_roles where rolname in ({list}) order by 1"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_examples_plan_and_apply_in_their_namespaces() {
    server();
    let example = |name: &str| {
        std::fs::read_to_string(support::repo_root().join(format!("examples/{name}/main.hcl")))
            .unwrap_or_else(|e| panic!("read examples/{name}: {e}"))
    };
    let policy_example = example("vault-tfc-policy-restore");
    let rotation_example = example("vault-db-credential-rotation");
    let (names, ids) = blocking(|| {
        // The runbook's namespaces: admin, and admin/dev below it.
        vault_http("POST", "sys/namespaces/admin", &json!({}));
        vault_http_ns(Some("admin"), "POST", "sys/namespaces/dev", &json!({}));
        // A scoped tfc-policy: the broken state the runbook restores from.
        vault_http_ns(
            Some("admin"),
            "PUT",
            "sys/policy/tfc-policy",
            &json!({ "policy": "path \"secret/*\" {\n  capabilities = [\"read\"]\n}\n" }),
        );
        database_engine(Some("admin/dev"), "database");
        database_role(Some("admin/dev"), "database", "netlix-app");
        let issued: Vec<(String, String)> = (0..3)
            .map(|_| issue_creds(Some("admin/dev"), "database", "netlix-app"))
            .collect();
        (
            issued.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>(),
            issued.into_iter().map(|(l, _)| l).collect::<Vec<_>>(),
        )
    })
    .await;
    assert_eq!(pg_users(&names).len(), 3);

    // TFC policy restore (seed 000).
    blocking(move || {
        let work = Workdir::new();
        work.write("main.hcl", &policy_example);
        let p = plan(&work, 2);
        insta::assert_snapshot!("example_tfc_policy_restore_plan", portless(&p.stdout));
        apply(&work);
        let live = vault_http_ns(
            Some("admin"),
            "GET",
            "sys/policy/tfc-policy",
            &serde_json::Value::Null,
        );
        assert!(
            live["rules"]
                .as_str()
                .unwrap_or_default()
                .contains("path \"*\""),
            "{live}"
        );
        plan(&work, 0);
    })
    .await;

    // Forced rotation of dynamic database credentials (seed 000).
    let work = blocking(move || {
        let work = Workdir::new();
        work.write("main.hcl", &rotation_example);
        let p = plan(&work, 2);
        let mut text = portless(&p.stdout);
        for id in &ids {
            assert!(text.contains(&format!("{id} (role `netlix-app`)")), "{p}");
            text = text.replace(id.as_str(), "database/creds/netlix-app/LEASE");
        }
        insta::assert_snapshot!("example_db_credential_rotation_plan", text);
        apply(&work);
        work
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !pg_users(&names).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "database users left: {:?}",
            pg_users(&names)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    blocking(move || {
        plan(&work, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_root_changes_the_password_only_vault_knows_and_vault_still_connects() {
    server();
    let work = blocking(|| {
        let pg = postgres();
        psql("CREATE ROLE vault_root WITH LOGIN SUPERUSER PASSWORD 'initial-pw-1'");
        vault_http("POST", "sys/mounts/db-rotate", &json!({ "type": "database" }));
        vault_http(
            "POST",
            "db-rotate/config/pg",
            &json!({
                "plugin_name": "postgresql-database-plugin",
                "allowed_roles": "*",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
                "username": "vault_root",
                "password": "initial-pw-1",
            }),
        );
        database_role(None, "db-rotate", "app");
        assert!(psql_as("vault_root", "initial-pw-1", "select 1").is_ok());
        let work = workdir(
            "step \"vault_database_rotate_root\" \"pg\" {\n  mount      = \"db-rotate\"\n  connection = \"pg\"\n}\n",
        );
        let p = plan(&work, 2);
        insta::assert_snapshot!("rotate_root_plan", portless(&p.stdout));
        // Plan rotated nothing.
        assert!(psql_as("vault_root", "initial-pw-1", "select 1").is_ok());
        let a = apply(&work);
        assert!(!a.stdout.contains("initial-pw-1"), "{a}");
        work
    })
    .await;
    blocking(move || {
        let refused = psql_as("vault_root", "initial-pw-1", "select 1")
            .expect_err("the old root password still works");
        assert!(
            refused.contains("password authentication failed"),
            "{refused}"
        );
        // Vault logs in with the new one: it still issues credentials.
        let (_, user) = issue_creds(None, "db-rotate", "app");
        assert_eq!(pg_users(std::slice::from_ref(&user)), vec![user]);
        drop(work);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_logs_in_with_userpass_or_approle() {
    server();
    let (role_id, secret_id) = blocking(|| {
        vault_http(
            "PUT",
            "sys/policy/login-admin",
            &json!({ "policy": "path \"sys/policy/*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}\n" }),
        );
        vault_http("POST", "sys/auth/userpass", &json!({ "type": "userpass" }));
        vault_http(
            "POST",
            "auth/userpass/users/ops-admin",
            &json!({ "password": "userpass-pw-31337", "token_policies": "login-admin" }),
        );
        vault_http("POST", "sys/auth/approle", &json!({ "type": "approle" }));
        vault_http(
            "POST",
            "auth/approle/role/ci",
            &json!({ "token_policies": "login-admin" }),
        );
        let role_id = vault_http("GET", "auth/approle/role/ci/role-id", &serde_json::Value::Null)
            ["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = vault_http("POST", "auth/approle/role/ci/secret-id", &json!({}))["data"]
            ["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        (role_id, secret_id)
    })
    .await;
    let step = "step \"vault_policy\" \"p\" {\n  name   = \"via-login\"\n  policy = \"path \\\"x/*\\\" {\\n  capabilities = [\\\"read\\\"]\\n}\\n\"\n}\n";
    let run_without_token = |work: &Workdir, args: &[&str], vars: &[(&str, &str)]| {
        let mut cmd = opsctl_cmd(work);
        cmd.env_remove("VAULT_TOKEN")
            .env("HOME", work.path())
            .args(args)
            .arg("--state-dir")
            .arg(work.state_dir());
        for (k, v) in vars {
            cmd.env(format!("OPSCTL_VAR_{k}"), v);
        }
        run(&mut cmd)
    };
    blocking(move || {
        // userpass, the password from a sensitive variable.
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &format!("variable \"pw\" {{\n  sensitive = true\n}}\n\nprovider \"vault\" {{\n  auth = {{\n    method   = \"userpass\"\n    username = \"ops-admin\"\n    password = var.pw\n  }}\n}}\n\n{step}"),
        );
        let p = run_without_token(&work, &["plan", "--detailed-exitcode"], &[("pw", "userpass-pw-31337")]);
        p.expect_code(2);
        let a = run_without_token(&work, &["apply", "--auto-approve"], &[("pw", "userpass-pw-31337")]);
        a.expect_success();
        for o in [&p, &a] {
            assert!(!o.stdout.contains("userpass-pw-31337") && !o.stderr.contains("userpass-pw-31337"), "{o}");
        }
        run_without_token(&work, &["plan", "--detailed-exitcode"], &[("pw", "userpass-pw-31337")])
            .expect_code(0);
        // A wrong password: the login fails, naming the method and user.
        let out = run_without_token(&work, &["plan"], &[("pw", "wrong-pw-000")]);
        assert_ne!(out.code, 0, "{out}");
        insta::assert_snapshot!("error_login_failed", portless(&out.stderr));
        assert!(!out.stderr.contains("wrong-pw-000"), "{out}");

        // approle.
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &format!("provider \"vault\" {{\n  auth = {{\n    method    = \"approle\"\n    role_id   = \"{role_id}\"\n    secret_id = \"{secret_id}\"\n  }}\n}}\n\n{step}"),
        );
        run_without_token(&work, &["plan", "--detailed-exitcode"], &[]).expect_code(0);
    })
    .await;
    assert!(policy_text("via-login").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leases_and_seal_status_data_sources_read_the_server() {
    server();
    let ids = blocking(|| {
        database_engine(None, "db-ds");
        database_role(None, "db-ds", "reader");
        let issued: Vec<(String, String)> = (0..2)
            .map(|_| issue_creds(None, "db-ds", "reader"))
            .collect();
        let mut ids: Vec<String> = issued.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        (
            ids,
            issued.into_iter().map(|(_, user)| user).collect::<Vec<_>>(),
        )
    })
    .await;
    let (ids, db_users) = ids;
    blocking(move || {
        let work = workdir(
            &(format!("data \"vault_leases\" \"reader\" {{\n  prefix       = \"db-ds/creds/reader\"\n  database_url = \"postgresql://postgres:postgres@127.0.0.1:{}/postgres?sslmode=disable\"\n}}\n",
                postgres().port
            ) + "\ndata \"vault_leases\" \"none\" {\n  prefix = \"db-ds/creds/nobody\"\n}\n\ndata \"vault_seal_status\" \"s\" {}\n\n\
             output \"count\" {\n  value = data.vault_leases.reader.count\n}\n\noutput \"ids\" {\n  value = data.vault_leases.reader.ids\n}\n\noutput \"roles\" {\n  value = [for l in data.vault_leases.reader.leases : l.role]\n}\n\n\
             output \"none\" {\n  value = data.vault_leases.none.count\n}\n\noutput \"sealed\" {\n  value = data.vault_seal_status.s.sealed\n}\n\noutput \"storage\" {\n  value = data.vault_seal_status.s.storage\n}\n\n\
             output \"users\" {\n  value = data.vault_leases.reader.database_users\n}\n"),
        );
        let out = opsctl_run(&work, &["plan"]);
        out.expect_success();
        let text = out.stdout.clone();
        for want in [
            "count = 2".to_string(),
            "none = 0".to_string(),
            "sealed = false".to_string(),
            format!("\"{}\"", ids[0]),
            format!("\"{}\"", ids[1]),
            "\"reader\"".to_string(),
            "storage = \"inmem\"".to_string(),
            format!("\"{}\"", db_users[0]),
            format!("\"{}\"", db_users[1]),
        ] {
            assert!(text.contains(&want), "no {want}:\n{out}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_needs_no_token_takes_key_shares_from_the_environment_and_then_has_nothing_to_do() {
    let raft = blocking(PrivateServer::start_raft).await;
    let addr = raft.addr.clone();
    let init = {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-X", "PUT", "-d"])
            .arg(r#"{"secret_shares":5,"secret_threshold":3}"#)
            .arg(format!("{addr}/v1/sys/init"))
            .output()
            .expect("curl");
        assert!(out.status.success(), "init: {out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("init answer")
    };
    let keys: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let root = init["root_token"].as_str().unwrap().to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    blocking(move || {
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &format!("provider \"vault\" {{\n  address = \"{addr}\"\n}}\n\nstep \"vault_unseal\" \"emergency\" {{\n  keys_from_env = [\"UNSEAL_KEY_1\", \"UNSEAL_KEY_2\", \"UNSEAL_KEY_3\"]\n}}\n"),
        );
        let run_with_keys = |args: &[&str]| {
            // No token anywhere (an emergency unseal comes before anyone has one): no
            // VAULT_TOKEN, and a HOME without `.vault-token`.
            let mut cmd = opsctl_cmd(&work);
            cmd.env("VAULT_ADDR", &addr)
                .env_remove("VAULT_TOKEN")
                .env("HOME", work.path());
            for (i, k) in keys.iter().take(3).enumerate() {
                cmd.env(format!("UNSEAL_KEY_{}", i + 1), k);
            }
            cmd.args(args).arg("--state-dir").arg(work.state_dir());
            run(&mut cmd)
        };
        let p = run_with_keys(&["plan", "--detailed-exitcode"]);
        p.expect_code(2);
        insta::assert_snapshot!("unseal_plan", p.stdout.replace(&port, "PORT"));
        let a = run_with_keys(&["apply", "--auto-approve"]);
        a.expect_success();
        let status = std::process::Command::new("curl")
            .args(["-sS"])
            .arg(format!("{addr}/v1/sys/seal-status"))
            .output()
            .expect("curl");
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["sealed"], false, "{status}");
        let p2 = run_with_keys(&["plan", "--detailed-exitcode"]);
        p2.expect_code(0);
        // Unsealed, the raft peers read (once the node is active) and a second plan is a no-op.
        let peers_work = Workdir::new();
        peers_work.write(
            "main.hcl",
            &format!("provider \"vault\" {{\n  address = \"{addr}\"\n}}\n\ndata \"vault_raft_peers\" \"p\" {{}}\n\ndata \"vault_seal_status\" \"s\" {{}}\n\noutput \"leader\" {{\n  value = data.vault_raft_peers.p.leader\n}}\n\noutput \"count\" {{\n  value = data.vault_raft_peers.p.count\n}}\n\noutput \"status\" {{\n  value = \"${{data.vault_seal_status.s.sealed}} ${{data.vault_seal_status.s.threshold}}/${{data.vault_seal_status.s.shares}} ${{data.vault_seal_status.s.storage}}\"\n}}\n"),
        );
        // Without a token, what needs one is refused by name.
        let mut cmd = opsctl_cmd(&peers_work);
        cmd.env("VAULT_ADDR", &addr)
            .env_remove("VAULT_TOKEN")
            .env("HOME", peers_work.path());
        cmd.args(["plan", "--state-dir"]).arg(peers_work.state_dir());
        let no_token = run(&mut cmd);
        assert_ne!(no_token.code, 0, "{no_token}");
        assert!(
            no_token.stderr.contains("no Vault token")
                && no_token.stderr.contains("data.vault_raft_peers.p"),
            "{no_token}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let peers = loop {
            let mut cmd = opsctl_cmd(&peers_work);
            cmd.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", &root);
            cmd.args(["plan", "--state-dir"]).arg(peers_work.state_dir());
            let out = run(&mut cmd);
            if out.code == 0 || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        peers.expect_success();
        for want in ["leader = \"opsctl-test\"", "count = 1", "status = \"false 3/5 raft\""] {
            assert!(peers.stdout.contains(want), "no {want}: {peers}");
        }
        // The shares appear nowhere.
        let mut texts: Vec<String> = [&p, &a, &p2]
            .iter()
            .flat_map(|o| [o.stdout.clone(), o.stderr.clone()])
            .collect();
        texts.extend(files_under(&work.state_dir()).into_iter().map(|(_, t)| t));
        for t in &texts {
            for k in &keys {
                assert!(!t.contains(k.as_str()), "a key share shows: {t}");
            }
        }
    })
    .await;
    drop(raft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_role_is_created_diffed_and_then_has_nothing_to_do() {
    server();
    let step = |stmt: &str| {
        format!("step \"vault_database_role\" \"app\" {{\n  mount               = \"db-role\"\n  name                = \"app\"\n  db_name             = \"pg\"\n  creation_statements = [\n    \"CREATE ROLE \\\"{{{{name}}}}\\\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}';\",\n    \"{stmt}\",\n  ]\n  default_ttl         = \"1h\"\n  max_ttl             = \"24h\"\n}}\n")
    };
    blocking(move || {
        database_engine(None, "db-role");
        let work = workdir(&step(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \\\"{{name}}\\\";",
        ));
        let p = plan(&work, 2);
        insta::assert_snapshot!("database_role_create_plan", portless(&p.stdout));
        apply(&work);
        let live = vault_http("GET", "db-role/roles/app", &serde_json::Value::Null);
        assert_eq!(live["data"]["default_ttl"], 3600, "{live}");
        assert_eq!(live["data"]["max_ttl"], 86400, "{live}");
        assert_eq!(
            live["data"]["creation_statements"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "{live}"
        );
        plan(&work, 0);
        // Vault issues credentials through it.
        let (_, user) = issue_creds(None, "db-role", "app");
        assert_eq!(pg_users(std::slice::from_ref(&user)), vec![user]);

        write_steps(
            &work,
            &step("GRANT USAGE ON SCHEMA public TO \\\"{{name}}\\\";"),
        );
        let p = plan(&work, 2);
        insta::assert_snapshot!("database_role_update_plan", portless(&p.stdout));
        apply(&work);
        plan(&work, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_config_never_shows_its_password_and_then_has_nothing_to_do() {
    server();
    let pw = "Cfg-admin-pw-77x";
    blocking(move || {
        let pg = postgres();
        psql(&format!("CREATE ROLE cfg_admin WITH LOGIN SUPERUSER PASSWORD '{pw}'"));
        vault_http("POST", "sys/mounts/db-cfg", &json!({ "type": "database" }));
        let work = Workdir::new();
        work.write(
            "main.hcl",
            &format!("variable \"pg_password\" {{\n  type = string\n}}\n\nprovider \"vault\" {{}}\n\nstep \"vault_database_config\" \"pg\" {{\n  mount          = \"db-cfg\"\n  name           = \"pg\"\n  plugin_name    = \"postgresql-database-plugin\"\n  connection_url = \"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable\"\n  username       = \"cfg_admin\"\n  password       = var.pg_password\n  allowed_roles  = [\"*\"]\n}}\n", pg.port),
        );
        let with_pw = |args: &[&str]| {
            let mut cmd = opsctl_cmd(&work);
            cmd.env("OPSCTL_VAR_pg_password", pw)
                .args(args)
                .arg("--state-dir")
                .arg(work.state_dir());
            run(&mut cmd)
        };
        // The variable feeding the secret argument must be declared sensitive.
        let refused = with_pw(&["plan"]);
        assert_ne!(refused.code, 0, "{refused}");
        assert!(
            refused.stderr.contains("`password` of `step.vault_database_config.pg` is a secret, but `var.pg_password` is not declared `sensitive = true`"),
            "{refused}"
        );
        let text = work.read("main.hcl").replace(
            "variable \"pg_password\" {\n  type = string\n}",
            "variable \"pg_password\" {\n  type      = string\n  sensitive = true\n}",
        );
        work.write("main.hcl", &text);
        let p = with_pw(&["plan", "--detailed-exitcode"]);
        p.expect_code(2);
        insta::assert_snapshot!(
            "database_config_plan",
            portless(&p.stdout).replace(&pg.port, "PGPORT")
        );
        let a = with_pw(&["apply", "--auto-approve"]);
        a.expect_success();
        let p2 = with_pw(&["plan", "--detailed-exitcode"]);
        p2.expect_code(0);
        for o in [&p, &a, &p2] {
            assert!(!o.stdout.contains(pw) && !o.stderr.contains(pw), "{o}");
        }
        for (path, text) in files_under(&work.state_dir()) {
            assert!(!text.contains(pw), "{}: {text}", path.display());
        }
        // Vault logs in with it: a role on the connection issues credentials.
        database_role(None, "db-cfg", "r");
        let (_, user) = issue_creds(None, "db-cfg", "r");
        assert_eq!(pg_users(std::slice::from_ref(&user)), vec![user]);
    })
    .await;
}

/// The records (`type` and `step`) of the only journal under the workdir's state directory.
fn journal_records(work: &Workdir) -> Vec<serde_json::Value> {
    let dir = work.state_dir().join("journal");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "one journal expected: {files:?}");
    std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l.split_once(' ').expect("crc prefix").1).unwrap())
        .collect()
}

fn kv_version_in(ns: &str, path: &str) -> u64 {
    vault_http_ns(
        Some(ns),
        "GET",
        &format!("secret/metadata/{path}"),
        &serde_json::Value::Null,
    )["data"]["current_version"]
        .as_u64()
        .expect("current_version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_per_namespace_and_a_kill_after_a_write_resume_without_writing_twice() {
    server();
    blocking(|| {
        for ns in ["resume-a", "resume-b"] {
            vault_http("POST", &format!("sys/namespaces/{ns}"), &json!({}));
            vault_http_ns(
                Some(ns),
                "POST",
                "sys/mounts/secret",
                &json!({ "type": "kv", "options": { "version": "2" } }),
            );
        }
        let work = Workdir::new();
        work.write(
            "main.hcl",
            r#"
provider "vault" {
  namespace = "resume-a"
}

provider "vault" {
  alias     = "b"
  namespace = "resume-b"
}

step "vault_kv" "a" {
  path = "app/one"
  data = { k = "resume-value-one" }
}

step "vault_kv" "b" {
  provider   = vault.b
  path       = "app/two"
  data       = { k = "resume-value-two" }
  depends_on = [step.vault_kv.a]
}

step "vault_policy" "c" {
  provider   = vault.b
  name       = "resume-c"
  policy     = "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n"
  depends_on = [step.vault_kv.b]
}
"#,
        );
        let p = plan(&work, 2);
        let text = portless(&p.stdout);
        for want in [
            "vault/127.0.0.1:PORT/ns/resume-a/secret/data/app/one",
            "vault/127.0.0.1:PORT/ns/resume-b/secret/data/app/two",
            "vault/127.0.0.1:PORT/ns/resume-b/sys/policy/resume-c",
        ] {
            assert!(text.contains(want), "no target {want}: {p}");
        }
        // Killed (SIGKILL) just before journal line 5: run_started, a started, a finished,
        // b started — b's write has happened, its finish is not journaled.
        let mut cmd = opsctl_cmd(&work);
        cmd.args(["apply", "--auto-approve", "--state-dir"])
            .arg(work.state_dir())
            .env("OPSCTL_FAULT_JOURNAL_KILL_AT", "5");
        let crashed = run(&mut cmd);
        assert_eq!(crashed.code, -1, "expected a SIGKILL: {crashed}");
        let kinds: Vec<String> = journal_records(&work)
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["type"].as_str().unwrap(),
                    r["step"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "run_started ",
                "step_started step.vault_kv.a",
                "step_finished step.vault_kv.a",
                "step_started step.vault_kv.b"
            ],
            "{crashed}"
        );
        assert_eq!(
            kv_version_in("resume-b", "app/two"),
            1,
            "b wrote before the kill"
        );
        let mut cmd = opsctl_cmd(&work);
        cmd.args(["apply", "--resume", "--auto-approve", "--state-dir"])
            .arg(work.state_dir());
        let resumed = run(&mut cmd);
        resumed.expect_success();
        // Neither write repeated (KV v2 would have made version 2), the policy written in
        // namespace resume-b only, and the in-doubt step answered from the live secret.
        assert_eq!(kv_version_in("resume-a", "app/one"), 1, "{resumed}");
        assert_eq!(kv_version_in("resume-b", "app/two"), 1, "{resumed}");
        let policy = vault_http_ns(
            Some("resume-b"),
            "GET",
            "sys/policies/acl/resume-c",
            &serde_json::Value::Null,
        );
        assert!(policy["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("secret/data/app/*"));
        let records = journal_records(&work);
        let b: Vec<&str> = records
            .iter()
            .filter(|r| r["step"] == "step.vault_kv.b")
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert!(
            !b[1..].contains(&"step_started"),
            "b started again on resume: {b:?}\n{resumed}"
        );
        assert!(
            records
                .iter()
                .filter(|r| r["step"] == "step.vault_kv.a")
                .filter(|r| r["type"] == "step_started")
                .count()
                == 1,
            "a started again: {resumed}"
        );
        plan(&work, 0);
    })
    .await;
}
