//! End-to-end tests of the RDS step types and data sources against the extended moto server
//! (`scripts/moto_ext/`, `rds_ext.py`: delayed `modifying` / `creating` / `rebooting`
//! transitions, pending modified values, injected failures, call counts): `rds_instance`,
//! `rds_restore_point_in_time`, `rds_restore_snapshot`, `rds_read_replica`, `rds_reboot`,
//! `rds_snapshot` (copy_tags), `rds_snapshot_export`, `data "rds_snapshots"`, and the examples
//! `rds-point-in-time-recovery`, `rds-snapshot-export`, `rds-scale-up`. Every test starts its
//! own server; state is read back through boto3 (`aws_python`), API calls are counted by the
//! server (`/_opsctl/calls`).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{aws_python, opsctl, repo_root, run, seed_platform, MotoServer, Output, Workdir};

const DB: &str = "platform-postgres-prod";

/// An extended moto server with the example platform seeded, and an empty workdir.
fn platform() -> (MotoServer, Workdir) {
    let moto = MotoServer::start_ext();
    seed_platform(&moto.endpoint);
    (moto, Workdir::new())
}

/// `opsctl` against `moto`, polling from 0.2 s up to 1 s (the waiter's test settings).
fn opsctl_cmd(work: &Workdir, moto: &MotoServer) -> std::process::Command {
    let mut cmd = opsctl(work, Some(moto));
    cmd.env("OPSCTL_AWS_POLL_INITIAL", "0.2")
        .env("OPSCTL_AWS_POLL_MAX", "1");
    cmd
}

fn opsctl_run(work: &Workdir, moto: &MotoServer, args: &[&str]) -> Output {
    let mut cmd = opsctl_cmd(work, moto);
    cmd.args(args).arg("--state-dir").arg(work.state_dir());
    run(&mut cmd)
}

fn plan(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    opsctl_run(work, moto, &args)
}

fn apply(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    let out = opsctl_run(work, moto, &args);
    out.expect_success();
    assert!(out.stdout.contains("\nApply complete! "), "{out}");
    out
}

/// An apply that must fail: returns its output (exit code 1 asserted).
fn apply_fails(work: &Workdir, moto: &MotoServer, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    let out = opsctl_run(work, moto, &args);
    out.expect_code(1);
    out
}

/// A second plan that has nothing to do (exit 0 with --detailed-exitcode).
#[track_caller]
fn assert_noop_plan(work: &Workdir, moto: &MotoServer, extra: &[&str]) {
    let p = plan(work, moto, extra);
    p.expect_code(0);
    assert!(
        p.stdout
            .contains("No changes. The live state already matches the procedure."),
        "{p}"
    );
}

/// Panics unless `text` has a line exactly equal to `line`.
#[track_caller]
fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "expected the line {line:?} in:\n{text}"
    );
}

/// A Python expression over `d`, the DescribeDBInstances entry of `id`, printed.
fn db(moto: &MotoServer, id: &str, expr: &str) -> String {
    aws_python(
        &moto.endpoint,
        &format!(
            "d = rds.describe_db_instances(DBInstanceIdentifier='{id}')['DBInstances'][0]\n\
             print({expr})"
        ),
    )
}

/// The tags of DB instance `id` as sorted `key=value` pairs.
fn db_tags(moto: &MotoServer, id: &str) -> String {
    db(
        moto,
        id,
        "' '.join(sorted(t['Key'] + '=' + t['Value'] for t in d.get('TagList', [])))",
    )
}

/// Hold each status of DB instances for the given seconds.
fn hold(moto: &MotoServer, kind: &str, id: &str, holds: serde_json::Value) {
    moto.behaviour(json!({"service": "rds", "kind": kind, "id": id, "hold": holds}));
}

macro_rules! assert_plan_snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({filters => vec![
            (r"\[\d+\.\d+s\]", "[TIME]"),
            (r"arn:aws:rds:us-west-2:\d{12}:", "arn:aws:rds:us-west-2:[ACCOUNT]:"),
        ]}, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

// ---- rds_instance ------------------------------------------------------------------------

const SCALE_NOW: &str = r#"
step "rds_instance" "scale" {
  identifier              = "platform-postgres-prod"
  instance_class          = "db.r6g.xlarge"
  backup_retention_period = 14
  multi_az                = true
  apply_immediately       = true
}
"#;

#[test]
fn rds_instance_plans_per_field_waits_through_modifying_and_is_then_satisfied() {
    let (moto, work) = platform();
    hold(&moto, "db-instance", DB, json!({"modifying": 3}));
    work.write("main.hcl", SCALE_NOW);

    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("rds_instance_scale_now_plan", &p.stdout);
    assert_eq!(moto.call_count("ModifyDBInstance"), 0, "plan never writes");

    let start = Instant::now();
    apply(&work, &moto, &[]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the step waited out `modifying` (3 s), took {took:?}"
    );
    assert_eq!(moto.call_count("ModifyDBInstance"), 1);
    assert!(
        moto.call_count("DescribeDBInstances") >= 4,
        "polled while modifying: {}",
        moto.calls()
    );
    assert_eq!(
        db(
            &moto,
            DB,
            "d['DBInstanceClass'], d['BackupRetentionPeriod'], d['MultiAZ'], d['DBInstanceStatus']"
        ),
        "db.r6g.xlarge 14 True available"
    );
    assert_noop_plan(&work, &moto, &[]);
}

const SCALE_IN_WINDOW: &str = r#"
step "rds_instance" "storage" {
  identifier        = "platform-postgres-prod"
  instance_class    = "db.r6g.2xlarge"
  allocated_storage = 200
  backup_retention_period = 10
}
"#;

#[test]
fn rds_instance_without_apply_immediately_leaves_pending_modified_values() {
    let (moto, work) = platform();
    hold(&moto, "db-instance", DB, json!({"modifying": 1}));
    work.write("main.hcl", SCALE_IN_WINDOW);

    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("rds_instance_window_plan", &p.stdout);

    apply(&work, &moto, &[]);
    // Class and storage wait for the window; retention 7 -> 10 (non-zero to non-zero) is
    // applied at once, as the ModifyDBInstance reference documents.
    assert_eq!(
        db(
            &moto,
            DB,
            "d['DBInstanceClass'], d['AllocatedStorage'], d['BackupRetentionPeriod'], \
             d['PendingModifiedValues'].get('DBInstanceClass'), d['PendingModifiedValues'].get('AllocatedStorage')"
        ),
        "db.r6g.large 100 10 db.r6g.2xlarge 200"
    );
    // Pending values count as converged: nothing to do, and nothing sent again.
    assert_noop_plan(&work, &moto, &[]);
    apply(&work, &moto, &[]);
    assert_eq!(moto.call_count("ModifyDBInstance"), 1);
}

#[test]
fn rds_instance_status_turned_failed_fails_the_step_with_the_reason() {
    let (moto, work) = platform();
    moto.behaviour(json!({"service": "rds", "kind": "db-instance", "id": DB,
        "hold": {"modifying": 1}, "fail": {"status": "incompatible-parameters"}}));
    work.write("main.hcl", SCALE_NOW);

    let a = apply_fails(&work, &moto, &[]);
    assert!(
        a.stderr.contains("step.rds_instance.scale")
            && a.stderr
                .contains("aws/us-west-2/rds/instance/platform-postgres-prod")
            && a.stderr.contains(
                "failed: entered status `incompatible-parameters`: RDS can't start the instance: its parameter group's values are incompatible with it"
            ),
        "{a}"
    );
}

#[test]
fn rds_instance_timeout_fails_and_resume_finishes_without_a_second_modify() {
    let (moto, work) = platform();
    hold(&moto, "db-instance", DB, json!({"modifying": 5}));
    work.write(
        "main.hcl",
        &SCALE_NOW.replace("apply_immediately", "timeout = \"3s\"\n  apply_immediately"),
    );

    let a = apply_fails(&work, &moto, &[]);
    assert!(
        a.stderr.contains("step.rds_instance.scale")
            && a.stderr.contains("timed out")
            && a.stderr.contains("(last status: modifying)"),
        "{a}"
    );
    assert!(a.stderr.contains("opsctl apply --resume"), "{a}");
    assert_eq!(moto.call_count("ModifyDBInstance"), 1);

    // Resume while the modification is still in flight: the step waits for it and sends
    // nothing new (RDS would refuse a second modification meanwhile).
    std::thread::sleep(Duration::from_millis(500));
    let r = apply(&work, &moto, &["--resume"]);
    assert!(r.stdout.contains("step.rds_instance.scale"), "{r}");
    assert_eq!(moto.call_count("ModifyDBInstance"), 1, "{}", moto.calls());
    assert_eq!(db(&moto, DB, "d['DBInstanceClass']"), "db.r6g.xlarge");
}

const PASSWORD: &str = "Rotated-Secret-Value-42";

#[test]
fn master_password_never_reaches_plan_journal_or_output() {
    let (moto, work) = platform();
    work.write(
        "main.hcl",
        r#"
variable "new_password" {
  type      = string
  sensitive = true
}

step "rds_instance" "rotate" {
  identifier           = "platform-postgres-prod"
  master_user_password = var.new_password
  apply_immediately    = true
}
"#,
    );
    let var = format!("new_password={PASSWORD}");
    let p = plan(&work, &moto, &["--var", &var]);
    p.expect_code(2);
    assert_plan_snapshot!("rds_instance_password_plan", &p.stdout);
    assert!(!p.stdout.contains(PASSWORD) && !p.stderr.contains(PASSWORD));

    let a = apply(&work, &moto, &["--var", &var]);
    assert!(!a.stdout.contains(PASSWORD) && !a.stderr.contains(PASSWORD));
    assert_eq!(moto.call_count("ModifyDBInstance"), 1);
    for entry in walkdir(&work.state_dir()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(PASSWORD),
            "{} holds the password",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    assert!(!out.is_empty(), "nothing under {}", dir.display());
    out
}

#[test]
fn errors_name_step_and_target_and_exit_non_zero() {
    let (moto, work) = platform();
    // An instance that does not exist.
    work.write(
        "main.hcl",
        r#"
step "rds_instance" "missing" {
  identifier     = "no-such-db"
  instance_class = "db.r6g.xlarge"
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains(
            "`step.rds_instance.missing` on `aws/us-west-2/rds/instance/no-such-db`: DB instance `no-such-db` not found"
        ),
        "{p}"
    );
    // InvalidParameterCombination, refused at plan.
    work.write(
        "main.hcl",
        r#"
step "rds_instance" "both" {
  identifier                  = "platform-postgres-prod"
  manage_master_user_password = true
  master_user_password        = "x-long-enough-password"
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains("`step.rds_instance.both` on `aws/us-west-2/rds/instance/platform-postgres-prod`: InvalidParameterCombination"),
        "{p}"
    );
    // ... and from the server: a reboot with failover of a single-AZ instance.
    aws_python(
        &moto.endpoint,
        "rds.modify_db_instance(DBInstanceIdentifier='platform-postgres-prod', MultiAZ=False, ApplyImmediately=True)",
    );
    work.write(
        "main.hcl",
        r#"
step "rds_reboot" "failover" {
  identifier     = "platform-postgres-prod"
  force_failover = true
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains("`step.rds_reboot.failover` on `aws/us-west-2/rds/instance/platform-postgres-prod`: InvalidParameterCombination: force_failover needs a Multi-AZ instance"),
        "{p}"
    );
    assert_eq!(moto.call_count("RebootDBInstance"), 0);
    // A restore from a source that does not exist.
    work.write(
        "main.hcl",
        r#"
step "rds_restore_point_in_time" "r" {
  source     = "no-such-db"
  identifier = "recovered"
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains("`step.rds_restore_point_in_time.r`")
            && p.stderr.contains("aws/us-west-2/rds/instance/recovered")
            && p.stderr
                .contains("source DB instance `no-such-db` not found"),
        "{p}"
    );
}

// ---- restores ------------------------------------------------------------------------------

const PITR: &str = r#"
step "rds_restore_point_in_time" "recovery" {
  source         = "platform-postgres-prod"
  identifier     = "platform-postgres-recovery"
  restore_time   = var.restore_time
  instance_class = "db.r6g.large"
}

variable "restore_time" {
  type    = string
  default = "latest"
}

output "endpoint" {
  value = step.rds_restore_point_in_time.recovery.endpoint
}
"#;

#[test]
fn point_in_time_restore_waits_outputs_the_endpoint_and_is_then_satisfied() {
    let (moto, work) = platform();
    hold(
        &moto,
        "db-instance",
        "platform-postgres-recovery",
        json!({"creating": 2, "backing-up": 1}),
    );
    work.write("main.hcl", PITR);

    // A time after the source's LatestRestorableTime is refused at plan.
    let p = plan(
        &work,
        &moto,
        &["--var", "restore_time=2099-01-01T00:00:00Z"],
    );
    p.expect_code(1);
    assert!(
        p.stderr.contains("restore_time `2099-01-01T00:00:00Z` is after the latest restorable time of DB instance `platform-postgres-prod`"),
        "{p}"
    );
    let p = plan(&work, &moto, &["--var", "restore_time=garbage"]);
    p.expect_code(1);
    assert!(
        p.stderr
            .contains("is neither `latest` nor an RFC 3339 time"),
        "{p}"
    );

    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("pitr_plan", &p.stdout);

    let start = Instant::now();
    let a = apply(&work, &moto, &[]);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "waited for creating + backing-up"
    );
    assert_line(
        &a.stdout,
        "  endpoint = \"platform-postgres-recovery.aaaaaaaaaa.us-west-2.rds.amazonaws.com:5432\"",
    );
    assert_eq!(moto.call_count("RestoreDBInstanceToPointInTime"), 1);
    assert_eq!(
        db(
            &moto,
            "platform-postgres-recovery",
            "d['DBInstanceStatus'], d['DBInstanceClass']"
        ),
        "available db.r6g.large"
    );
    assert!(
        db_tags(&moto, "platform-postgres-recovery")
            .contains("opsctl:restored-from=instance:platform-postgres-prod"),
        "{}",
        db_tags(&moto, "platform-postgres-recovery")
    );
    assert_noop_plan(&work, &moto, &[]);

    // The same name restored from another source is an error.
    work.write(
        "main.hcl",
        &PITR
            .replace(
                "source         = \"platform-postgres-prod\"",
                "source         = \"platform-postgres-recovery\"",
            )
            .replace(
                "identifier     = \"platform-postgres-recovery\"",
                "identifier     = \"platform-postgres-prod\"",
            ),
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains("DB instance `platform-postgres-prod` already exists and did not come from instance:platform-postgres-recovery (its origin is unknown)"),
        "{p}"
    );
}

#[test]
fn sigkill_during_the_restore_wait_then_resume_sends_no_second_restore() {
    let (moto, work) = platform();
    hold(
        &moto,
        "db-instance",
        "platform-postgres-recovery",
        json!({"creating": 6}),
    );
    work.write("main.hcl", PITR);
    let mut cmd = opsctl_cmd(&work, &moto);
    cmd.args(["apply", "--auto-approve", "--state-dir"])
        .arg(work.state_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn opsctl apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.call_count("RestoreDBInstanceToPointInTime") == 0 {
        assert!(Instant::now() < deadline, "the restore was never sent");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("SIGKILL opsctl"); // SIGKILL on Unix
    child.wait().expect("reap opsctl");
    assert_eq!(
        db(&moto, "platform-postgres-recovery", "d['DBInstanceStatus']"),
        "creating",
        "killed during the wait"
    );

    let r = apply(&work, &moto, &["--resume"]);
    assert_line(
        &r.stdout,
        "  endpoint = \"platform-postgres-recovery.aaaaaaaaaa.us-west-2.rds.amazonaws.com:5432\"",
    );
    assert_eq!(
        moto.call_count("RestoreDBInstanceToPointInTime"),
        1,
        "no second restore: {}",
        moto.calls()
    );
    assert_eq!(
        db(&moto, "platform-postgres-recovery", "d['DBInstanceStatus']"),
        "available"
    );
}

#[test]
fn snapshot_restore_from_the_newest_snapshot_of_a_data_source() {
    let (moto, work) = platform();
    aws_python(
        &moto.endpoint,
        r#"
        import time
        rds.create_db_snapshot(DBInstanceIdentifier='platform-postgres-prod', DBSnapshotIdentifier='older')
        time.sleep(1.1)
        rds.create_db_snapshot(DBInstanceIdentifier='platform-postgres-prod', DBSnapshotIdentifier='newer')
        "#,
    );
    hold(&moto, "db-instance", "restored", json!({"creating": 1}));
    work.write(
        "main.hcl",
        r#"
data "rds_snapshots" "manual" {
  db_instance   = "platform-postgres-prod"
  snapshot_type = "manual"
}

step "rds_restore_snapshot" "restore" {
  snapshot       = data.rds_snapshots.manual.latest
  identifier     = "restored"
  instance_class = "db.r6g.large"
}

output "snapshots" {
  value = [for s in data.rds_snapshots.manual.items : s.identifier]
}

output "address" {
  value = step.rds_restore_snapshot.restore.address
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("snapshot_restore_plan", &p.stdout);
    let a = apply(&work, &moto, &[]);
    assert_line(
        &a.stdout,
        "  address = \"restored.aaaaaaaaaa.us-west-2.rds.amazonaws.com\"",
    );
    assert_eq!(moto.call_count("RestoreDBInstanceFromDBSnapshot"), 1);
    assert!(db_tags(&moto, "restored").contains("opsctl:restored-from=snapshot:newer"));
    assert_noop_plan(&work, &moto, &[]);
}

// ---- replica, reboot, snapshot, export: through the examples ------------------------------

fn write_example(work: &Workdir, name: &str) {
    let path = repo_root().join("examples").join(name).join("main.hcl");
    work.write("main.hcl", &std::fs::read_to_string(path).unwrap());
}

#[test]
fn example_point_in_time_recovery_plans_applies_and_is_then_satisfied() {
    let (moto, work) = platform();
    write_example(&work, "rds-point-in-time-recovery");
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("example_pitr_plan", &p.stdout);
    let a = apply(&work, &moto, &[]);
    assert_line(
        &a.stdout,
        "  recovery_address = \"platform-postgres-recovery.aaaaaaaaaa.us-west-2.rds.amazonaws.com\"",
    );
    assert_line(&a.stdout, "  recovery_port = 5432");
    assert_eq!(
        db(
            &moto,
            "platform-postgres-recovery",
            "d['DBInstanceClass'], d['MultiAZ']"
        ),
        "db.r6g.large True"
    );
    assert_noop_plan(&work, &moto, &[]);
}

#[test]
fn example_snapshot_export_plans_applies_and_is_then_satisfied() {
    let (moto, work) = platform();
    moto.behaviour(json!([
        {"service": "rds", "kind": "db-snapshot", "id": "*", "hold": {"creating": 1}},
        {"service": "rds", "kind": "export-task", "id": "*", "hold": {"STARTING": 1, "IN_PROGRESS": 1}}
    ]));
    write_example(&work, "rds-snapshot-export");
    let var = ["--var", "date=20261121-2200"];
    let p = plan(&work, &moto, &var);
    p.expect_code(2);
    assert_plan_snapshot!("example_export_plan", &p.stdout);
    let a = apply(&work, &moto, &var);
    assert_line(&a.stdout, "  export_status = \"COMPLETE\"");
    assert_eq!(moto.call_count("CreateDBSnapshot"), 1);
    assert_eq!(moto.call_count("StartExportTask"), 1);
    let tags = aws_python(
        &moto.endpoint,
        r#"
        s = rds.describe_db_snapshots(DBSnapshotIdentifier='platform-postgres-manual-20261121-2200')['DBSnapshots'][0]
        print(' '.join(sorted(t['Key'] + '=' + t['Value'] for t in rds.list_tags_for_resource(ResourceName=s['DBSnapshotArn'])['TagList'])))
        "#,
    );
    assert_eq!(
        tags, "env=prod reason=pre-maintenance team=platform",
        "instance tags copied"
    );
    assert_eq!(
        aws_python(
            &moto.endpoint,
            "t = rds.describe_export_tasks(ExportTaskIdentifier='postgres-export-20261121-2200')['ExportTasks'][0]\n\
             print(t['Status'], t['S3Bucket'], t['S3Prefix'], t['SourceArn'].split(':')[-1])"
        ),
        "COMPLETE platform-backups-prod database-exports/ platform-postgres-manual-20261121-2200"
    );
    assert_noop_plan(&work, &moto, &var);
}

#[test]
fn example_scale_up_plans_applies_and_is_then_satisfied() {
    let (moto, work) = platform();
    hold(
        &moto,
        "db-instance",
        "*",
        json!({"modifying": 1, "creating": 1}),
    );
    write_example(&work, "rds-scale-up");
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("example_scale_up_plan", &p.stdout);
    apply(&work, &moto, &[]);
    assert_eq!(db(&moto, DB, "d['DBInstanceClass']"), "db.r6g.xlarge");
    assert_eq!(
        db(
            &moto,
            "platform-postgres-prod-read-replica",
            "d['ReadReplicaSourceDBInstanceIdentifier'], d['DBInstanceStatus']"
        ),
        "platform-postgres-prod available"
    );
    assert_eq!(moto.call_count("CreateDBInstanceReadReplica"), 1);
    assert_noop_plan(&work, &moto, &[]);
}

#[test]
fn reboot_runs_waits_through_rebooting() {
    let (moto, work) = platform();
    hold(&moto, "db-instance", DB, json!({"rebooting": 2}));
    work.write(
        "main.hcl",
        r#"
step "rds_reboot" "failover" {
  identifier     = "platform-postgres-prod"
  force_failover = true
}
"#,
    );
    let p = plan(&work, &moto, &[]);
    p.expect_code(2);
    assert_plan_snapshot!("reboot_plan", &p.stdout);
    let start = Instant::now();
    apply(&work, &moto, &[]);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(moto.call_count("RebootDBInstance"), 1);
    assert_eq!(db(&moto, DB, "d['DBInstanceStatus']"), "available");
}

// ---- provider ------------------------------------------------------------------------------

#[test]
fn a_profile_of_the_shared_files_selects_region_and_credentials_and_an_alias_another_region() {
    let (moto, work) = platform();
    aws_python(
        &moto.endpoint,
        r#"
        eu = boto3.client("rds", **{**_kw, "region_name": "eu-central-1"})
        eu.create_db_instance(DBInstanceIdentifier="eu-db", Engine="postgres", EngineVersion="15.4",
            DBInstanceClass="db.t3.medium", AllocatedStorage=20, MasterUsername="u",
            MasterUserPassword="not-a-real-password-1")
        "#,
    );
    work.write(
        "aws/config",
        "[default]\nregion = ap-south-1\n\n[profile ops]\nregion = eu-central-1\n",
    );
    work.write(
        "aws/credentials",
        "[default]\naws_access_key_id = default-key\naws_secret_access_key = default-secret\n\n\
         [ops]\naws_access_key_id = ops-key\naws_secret_access_key = ops-secret\n",
    );
    work.write(
        "main.hcl",
        r#"
provider "aws" {
  profile = "ops"
}

provider "aws" {
  alias  = "west"
  region = "us-west-2"
}

step "rds_instance" "eu" {
  identifier     = "eu-db"
  instance_class = "db.t3.large"
}

step "rds_instance" "west" {
  provider       = aws.west
  identifier     = "platform-postgres-prod"
  instance_class = "db.r6g.xlarge"
}
"#,
    );
    let with_profile = |cmd: &mut std::process::Command| {
        cmd.env_remove("AWS_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", work.path().join("aws/config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                work.path().join("aws/credentials"),
            );
    };
    let mut cmd = opsctl_cmd(&work, &moto);
    with_profile(&mut cmd);
    cmd.args(["plan", "--detailed-exitcode", "--state-dir"])
        .arg(work.state_dir());
    let p = run(&mut cmd);
    p.expect_code(2);
    assert_line(
        &p.stdout,
        "  #   target: aws/eu-central-1/rds/instance/eu-db",
    );
    assert_line(
        &p.stdout,
        "      ~ instance_class: \"db.t3.medium\" -> \"db.t3.large\"",
    );
    assert_line(
        &p.stdout,
        "  #   target: aws/us-west-2/rds/instance/platform-postgres-prod",
    );

    // No credentials at all: the error names the step and the target.
    let mut cmd = opsctl_cmd(&work, &moto);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["plan", "--state-dir"])
        .arg(work.state_dir());
    let p = run(&mut cmd);
    p.expect_code(1);
    assert!(
        p.stderr.contains("`step.rds_instance.west`")
            && p.stderr
                .contains("aws/us-west-2/rds/instance/platform-postgres-prod")
            && p.stderr
                .contains("DescribeDBInstances `platform-postgres-prod` failed"),
        "{p}"
    );
}

/// An extended moto server that enforces IAM authentication after its first two requests
/// (`INITIAL_NO_AUTH_ACTION_COUNT=2`), which create IAM user `nobody` (no policy) and its
/// access key: returns the server, its port and the key pair. Killed on drop.
struct AuthServer {
    child: std::process::Child,
    endpoint: String,
    _log: tempfile::NamedTempFile,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn auth_server() -> (AuthServer, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = std::process::Command::new(
        std::env::var_os("OPSCTL_SEED_PYTHON")
            .expect("OPSCTL_SEED_PYTHON is not set: run the tests through scripts/test.sh"),
    )
    .arg(repo_root().join("scripts/moto_ext/server.py"))
    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
    .env("INITIAL_NO_AUTH_ACTION_COUNT", "2")
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .stdin(std::process::Stdio::null())
    .stdout(log.reopen().expect("log"))
    .stderr(log.reopen().expect("log"))
    .spawn()
    .expect("spawn the moto_ext server");
    let server = AuthServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _log: log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the moto_ext server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = aws_python(
        &server.endpoint,
        r#"
        iam = boto3.client("iam", **_kw)
        iam.create_user(UserName="nobody")
        k = iam.create_access_key(UserName="nobody")["AccessKey"]
        print(k["AccessKeyId"], k["SecretAccessKey"])
        "#,
    );
    let (id, secret) = keys.split_once(' ').expect("two keys");
    (server, id.to_string(), secret.to_string())
}

#[test]
fn access_denied_and_invalid_credentials_name_step_target_and_the_servers_answer() {
    let (server, id, secret) = auth_server();
    let work = Workdir::new();
    work.write(
        "main.hcl",
        r#"
step "rds_instance" "scale" {
  identifier     = "platform-postgres-prod"
  instance_class = "db.r6g.xlarge"
}
"#,
    );
    let plan_with = |key: &str, secret: &str| {
        let mut cmd = opsctl(&work, None);
        cmd.env("AWS_ENDPOINT_URL", &server.endpoint)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args(["plan", "--state-dir"])
            .arg(work.state_dir());
        let p = run(&mut cmd);
        p.expect_code(1);
        p
    };
    let p = plan_with(&id, &secret);
    assert!(
        p.stderr.contains(
            "`step.rds_instance.scale`: reading `aws/us-west-2/rds/instance/platform-postgres-prod`: \
             DescribeDBInstances `platform-postgres-prod` failed: AccessDenied: User: \
             arn:aws:iam::123456789012:user/nobody is not authorized to perform: rds:DescribeDBInstances"
        ),
        "{p}"
    );
    let p = plan_with("AKIAINVALIDINVALID00", "wrong");
    assert!(
        p.stderr.contains(
            "`step.rds_instance.scale`: reading `aws/us-west-2/rds/instance/platform-postgres-prod`: \
             DescribeDBInstances `platform-postgres-prod` failed: InvalidClientTokenId: The security token included in the request is invalid."
        ),
        "{p}"
    );
}

#[test]
fn a_failed_restore_or_export_fails_the_step_with_the_reason() {
    let (moto, work) = platform();
    moto.behaviour(json!([
        {"service": "rds", "kind": "db-instance", "id": "platform-postgres-recovery",
         "hold": {"creating": 1}, "fail": {"status": "incompatible-restore"}},
        {"service": "rds", "kind": "export-task", "id": "*",
         "hold": {"IN_PROGRESS": 1}, "fail": {"cause": "The IAM role cannot write to bucket platform-backups-prod"}}
    ]));
    aws_python(
        &moto.endpoint,
        "rds.create_db_snapshot(DBInstanceIdentifier='platform-postgres-prod', DBSnapshotIdentifier='s1')",
    );
    work.write(
        "main.hcl",
        r#"
step "rds_restore_point_in_time" "recovery" {
  source     = "platform-postgres-prod"
  identifier = "platform-postgres-recovery"
}
"#,
    );
    let a = apply_fails(&work, &moto, &[]);
    assert!(
        a.stderr.contains("step.rds_restore_point_in_time.recovery")
            && a.stderr.contains("aws/us-west-2/rds/instance/platform-postgres-recovery")
            && a.stderr.contains("entered status `incompatible-restore`: RDS can't do a point-in-time restore of the instance"),
        "{a}"
    );
    let work = Workdir::new();
    work.write(
        "main.hcl",
        r#"
step "rds_snapshot_export" "x" {
  identifier   = "export-1"
  snapshot     = "s1"
  s3_bucket    = "platform-backups-prod"
  iam_role_arn = "arn:aws:iam::123456789012:role/rds-s3-export-role"
  kms_key_id   = "alias/backups"
}
"#,
    );
    let a = apply_fails(&work, &moto, &[]);
    assert!(
        a.stderr.contains("step.rds_snapshot_export.x")
            && a.stderr.contains("aws/us-west-2/rds/export/export-1")
            && a.stderr.contains(
                "status `FAILED`: The IAM role cannot write to bucket platform-backups-prod"
            ),
        "{a}"
    );
    // A failed task's identifier cannot be reused: the next plan says so.
    let p = plan(&work, &moto, &[]);
    p.expect_code(1);
    assert!(
        p.stderr.contains("export task `export-1` exists with status `FAILED` (The IAM role cannot write to bucket platform-backups-prod)"),
        "{p}"
    );
}
