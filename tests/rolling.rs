//! Rolling batches of `count`/`for_each` steps through the `opsctl` binary (issue 11): batches
//! never overlap (each exec instance records start and end times in `times.log`), a rollout
//! stops at `max_failures`, the health gate runs between batches and stops the rollout when
//! it fails, plan shows the batches, and `--resume` runs a failed gate again before the next
//! batch and continues with the failed and unstarted instances without repeating finished ones
//! (`effects.log` counts side effects).

mod kube_support;
mod support;

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;
use support::{opsctl, run, Output, Workdir};

fn apply(work: &Workdir, extra: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.arg("apply").arg("--auto-approve").args(extra);
    run(&mut cmd)
}

fn plan(work: &Workdir) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.arg("plan");
    run(&mut cmd)
}

/// Lines of `effects.log` per word.
fn effects(work: &Workdir) -> BTreeMap<String, usize> {
    let text = fs::read_to_string(work.path().join("effects.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

/// `(event, instance, nanoseconds)` rows of `times.log`, in file order.
fn times(work: &Workdir) -> Vec<(String, String, u128)> {
    let text = fs::read_to_string(work.path().join("times.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// Every record of the only journal.
fn journal(work: &Workdir) -> Vec<Value> {
    let dir = work.state_dir().join("journal");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = fs::read_to_string(files.remove(0)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l.split_once(' ').unwrap().1).unwrap())
        .collect()
}

/// An instance command: records `start NAME t` and `end NAME t` around a short sleep, appends
/// `NAME` to `effects.log`, and fails while the file `fail-NAME` exists.
fn instance_command(name: &str) -> String {
    format!(
        "echo start {name} $(date +%s%N) >> times.log; echo {name} >> effects.log; sleep 0.3; \
         rc=0; if [ -e fail-{name} ]; then rc=1; fi; echo end {name} $(date +%s%N) >> times.log; exit $rc"
    )
}

/// Every `start` comes after the `end` of the instance before it: no two ran at once.
fn assert_no_overlap(rows: &[(String, String, u128)]) {
    let mut running: Option<&str> = None;
    let mut last_end = 0u128;
    for (event, name, t) in rows {
        match event.as_str() {
            "start" => {
                assert!(
                    running.is_none(),
                    "{name} started while {running:?} ran: {rows:?}"
                );
                assert!(
                    *t >= last_end,
                    "{name} started before the previous end: {rows:?}"
                );
                running = Some(name.as_str());
            }
            "end" => {
                assert_eq!(running, Some(name.as_str()), "{rows:?}");
                running = None;
                last_end = *t;
            }
            "gate" => assert!(running.is_none(), "the gate ran during a batch: {rows:?}"),
            other => panic!("unexpected row {other}"),
        }
    }
}

fn four_instances(extra: &str) -> String {
    format!(
        "step \"exec\" \"roll\" {{\n  for_each = toset([\"a\", \"b\", \"c\", \"d\"])\n  command = \"{}\"\n{extra}}}\n",
        instance_command("${each.key}").replace('"', "\\\"")
    )
}

#[test]
fn batch_size_one_never_overlaps_stops_at_max_failures_and_resumes() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &four_instances("  rollout {\n    batch_size   = 1\n    max_failures = 1\n  }\n"),
    );
    // b fails (tolerated: 1 of max_failures = 1), c fails (the second failure stops the
    // rollout), d never starts.
    work.write("fail-b", "");
    work.write("fail-c", "");

    let p = plan(&work);
    p.expect_success();
    assert!(
        p.stdout.contains("batch 1/4: [step.exec.roll[\"a\"]]")
            && p.stdout.contains("batch 4/4: [step.exec.roll[\"d\"]]"),
        "{p}"
    );

    let out = apply(&work, &["--parallelism", "10"]);
    out.expect_code(1);
    let rows = times(&work);
    assert_no_overlap(&rows);
    let started: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "start")
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(started, ["a", "b", "c"], "{out}");
    assert!(
        out.stdout.contains("rollout stopped in batch 3/4")
            || out.stderr.contains("rollout stopped in batch 3/4"),
        "{out}"
    );

    // Resume: the failed instances b and c run again, then d; a is not repeated.
    fs::remove_file(work.path().join("fail-b")).unwrap();
    fs::remove_file(work.path().join("fail-c")).unwrap();
    let out = apply(&work, &["--resume"]);
    out.expect_success();
    assert_no_overlap(&times(&work));
    let want: BTreeMap<String, usize> = [("a", 1), ("b", 2), ("c", 2), ("d", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(effects(&work), want, "{out}");
}

#[test]
fn percentage_batches_with_a_health_gate_between_them() {
    let work = Workdir::new();
    // 50% of 4 = batches of 2; the gate records itself between batches, and fails on its
    // second run while `gate-fail-2` exists.
    work.write(
        "main.hcl",
        &format!(
            "{}\nstep \"exec\" \"gate\" {{\n  command = \"n=$(cat gate-n 2>/dev/null || echo 0); n=$((n+1)); echo $n > gate-n; echo gate g $(date +%s%N) >> times.log; echo gate >> effects.log; test ! -e gate-fail-$n\"\n}}\n",
            four_instances(
                "  rollout {\n    batch_size   = \"50%\"\n    pause        = \"200ms\"\n    health_check = step.exec.gate\n  }\n"
            )
        ),
    );
    let p = plan(&work);
    p.expect_success();
    assert!(
        p.stdout
            .contains("batch 1/2: [step.exec.roll[\"a\"], step.exec.roll[\"b\"]]")
            && p.stdout.contains("then health check: step.exec.gate"),
        "{p}"
    );
    let out = apply(&work, &[]);
    out.expect_success();
    let rows = times(&work);
    let order: Vec<String> = rows
        .iter()
        .filter(|r| r.0 != "end")
        .map(|r| r.1.clone())
        .collect();
    // Batch 1 (a, b in either order), the gate once, then batch 2.
    assert_eq!(order.len(), 5, "{rows:?}");
    assert_eq!(order[2], "g", "{rows:?}");
    let gate_t = rows.iter().find(|r| r.0 == "gate").unwrap().2;
    for r in &rows {
        match (r.0.as_str(), r.1.as_str()) {
            ("end", "a" | "b") => assert!(r.2 <= gate_t, "{rows:?}"),
            ("start", "c" | "d") => assert!(r.2 >= gate_t, "{rows:?}"),
            _ => {}
        }
    }
    assert_eq!(effects(&work)["gate"], 1);
}

#[test]
fn a_failed_health_gate_stops_the_rollout_and_resume_checks_it_again_before_the_next_batch() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        &format!(
            "{}\nstep \"exec\" \"gate\" {{\n  command = \"echo gate >> effects.log; echo gate g $(date +%s%N) >> times.log; test ! -e gate-fail\"\n}}\n",
            four_instances("  rollout {\n    batch_size   = 2\n    health_check = [step.exec.gate]\n  }\n")
        ),
    );
    work.write("gate-fail", "");
    let out = apply(&work, &[]);
    out.expect_code(1);
    let e = effects(&work);
    assert_eq!(e.get("c"), None, "{out}");
    assert_eq!(e.get("d"), None, "{out}");
    assert_eq!(e["gate"], 1);
    assert!(
        out.stderr
            .contains("health check of step.exec.roll after batch 1/2"),
        "{out}"
    );
    let records = journal(&work);
    assert!(records
        .iter()
        .any(|r| r["type"] == "step_failed" && r["step"] == "step.exec.gate"));

    // Resume while the service is still unhealthy: the gate runs again and fails again, and
    // the next batch does not start.
    let out = apply(&work, &["--resume"]);
    out.expect_code(1);
    let e = effects(&work);
    assert_eq!((e.get("c"), e.get("d")), (None, None), "{out}");
    assert_eq!(e["gate"], 2, "{out}");

    // Healthy again: the resume checks first, then runs the next batch; the finished batch is
    // not repeated.
    fs::remove_file(work.path().join("gate-fail")).unwrap();
    let out = apply(&work, &["--resume"]);
    out.expect_success();
    let want: BTreeMap<String, usize> = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("gate", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(effects(&work), want, "{out}");
    // The gate ran before the batch it guards.
    let rows = times(&work);
    let last_gate = rows.iter().rposition(|r| r.0 == "gate").unwrap();
    let first_c = rows
        .iter()
        .position(|r| r.0 == "start" && r.1 == "c")
        .unwrap();
    assert!(last_gate < first_c, "{rows:?}");
}

#[test]
fn a_rollout_needs_count_or_for_each() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"exec\" \"one\" {\n  command = \"true\"\n  rollout {\n    batch_size = 1\n  }\n}\n",
    );
    let out = plan(&work);
    out.expect_code(1);
    assert!(out.stderr.contains("main.hcl:3:3"), "{out}");
    assert!(out.stderr.contains("needs `count` or `for_each`"), "{out}");
}

/// A rolling drain of three nodes, one at a time, with a `kubernetes_wait` gate (the
/// Deployment Available again) between batches, against the local kube-apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_drain_of_nodes_with_a_health_gate_between_batches() {
    use kube_support::*;
    const NS: &str = "rolling-drain";
    let s = server();
    let c = client().await;
    create_namespace(&c, NS).await;
    wait_default_service_account(&c, NS).await;
    let finalize = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let kubelet = drain_kubelet(c.clone(), NS, finalize);
    for n in ["roll-a", "roll-b", "roll-c", "roll-d"] {
        create_ready_node(&c, n, &[("opsctl-drain", "rolling")]).await;
    }
    create_pool_deployment(&c, NS, "api", 3, "rolling", serde_json::json!([])).await;
    rolled_out(&c, NS, "api").await;

    let work = workdir(
        &s.kubeconfig(),
        &format!(
            "step \"kubernetes_drain\" \"nodes\" {{\n  for_each = toset([\"roll-a\", \"roll-b\", \"roll-c\"])\n  node     = each.key\n  timeout  = \"120s\"\n  rollout {{\n    batch_size   = 1\n    health_check = step.kubernetes_wait.api\n  }}\n}}\n\n\
             step \"kubernetes_wait\" \"api\" {{\n  kind      = \"Deployment\"\n  namespace = \"{NS}\"\n  name      = \"api\"\n  condition = \"Available\"\n  timeout   = \"120s\"\n}}\n"
        ),
    );
    let (p, out, work) = blocking(move || {
        let p = opsctl_run(&work, &["plan"]);
        let out = opsctl_run(&work, &["apply", "--auto-approve"]);
        (p, out, work)
    })
    .await;
    p.expect_success();
    assert!(
        p.stdout
            .contains("batch 2/3: [step.kubernetes_drain.nodes[\"roll-b\"]]")
            && p.stdout
                .contains("then health check: step.kubernetes_wait.api"),
        "{p}"
    );
    out.expect_success();
    for n in ["roll-a", "roll-b", "roll-c"] {
        assert!(unschedulable(&node(&c, n).await), "{n} is not cordoned");
        assert!(pods_on(&c, n).await.is_empty(), "{n} still has pods");
    }
    // In the journal: drain a finished, the gate passed, then drain b started; and so on.
    let records = journal(&work);
    let seq = |kind: &str, step: &str| -> Vec<u64> {
        records
            .iter()
            .filter(|r| r["type"] == kind && r["step"] == step)
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let gate = seq("step_finished", "step.kubernetes_wait.api");
    assert_eq!(gate.len(), 2, "{records:?}");
    let fin = |n: &str| {
        seq(
            "step_finished",
            &format!("step.kubernetes_drain.nodes[\"{n}\"]"),
        )[0]
    };
    let start = |n: &str| {
        seq(
            "step_started",
            &format!("step.kubernetes_drain.nodes[\"{n}\"]"),
        )[0]
    };
    assert!(
        fin("roll-a") < gate[0] && gate[0] < start("roll-b"),
        "{records:?}"
    );
    assert!(
        fin("roll-b") < gate[1] && gate[1] < start("roll-c"),
        "{records:?}"
    );
    kubelet.abort();
}
