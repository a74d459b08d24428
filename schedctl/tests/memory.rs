//! schedctl as a process on the memory backend's demo state (see src/demo_state.rs): every
//! command, as text and as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::memory;
use serde_json::Value;

const NOW: u64 = 1_767_268_800_000;

fn worker<'a>(json: &'a Value, id: &str) -> &'a Value {
    json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("no worker {id} in {json}"))
}

#[test]
fn workers_table_and_json() {
    let r = memory(&["workers"]).expect(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    assert!(lines[0].starts_with("WORKER  POOL  STATUS"), "{}", lines[0]);
    assert!(lines[0].contains("USED") && lines[0].contains("LAST HEARTBEAT"));
    let node_a = lines.iter().find(|l| l.starts_with("node-a")).unwrap();
    for cell in [
        "available",
        "8000m 16384Mi",
        "5000m 11264Mi",
        "38%",
        "5s ago",
        "1m",
        "no",
    ] {
        assert!(node_a.contains(cell), "{cell:?} not in {node_a:?}");
    }
    let node_c = lines.iter().find(|l| l.starts_with("node-c")).unwrap();
    assert!(
        node_c.contains("10m ago") && node_c.ends_with("yes (release)"),
        "{node_c}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("node-b") && l.contains("draining")));

    let j = memory(&["workers", "--json"]).expect(0).json();
    assert_eq!(j["now_ms"], NOW);
    assert_eq!(j["workers"].as_array().unwrap().len(), 4);
    let a = worker(&j, "node-a");
    assert_eq!(a["stale"], false);
    assert_eq!(a["heartbeat_timeout_ms"], 60_000);
    assert_eq!(a["heartbeat_age_ms"], 5_000);
    assert_eq!(a["free"]["cpu_millicores"], 5000);
    assert_eq!(a["used_pct"]["cpu"], 37.5);
    assert_eq!(a["used_pct"]["gpu"], Value::Null);
    let c = worker(&j, "node-c");
    assert_eq!(c["stale"], true);
    assert_eq!(c["on_stale"], "release");
    assert_eq!(worker(&j, "node-b")["status"], "draining");

    let gpu = memory(&["workers", "--pool", "gpu", "--json"])
        .expect(0)
        .json();
    let ids: Vec<_> = gpu["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert_eq!(ids, ["gpu-a"]);
    let none = memory(&["workers", "--pool", "nope"]).expect(0);
    assert_eq!(none.stdout, "no workers in pool \"nope\"\n");
}

#[test]
fn reservations_and_find() {
    let r = memory(&["reservations", "node-a"]).expect(0);
    assert!(
        r.stdout
            .contains("web-2      500m 512Mi    -         2026-01-01T11:55:00Z (expired 5m ago)"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .ends_with("3 reservations on node-a: 3000m 5120Mi reserved, 5000m 11264Mi free\n"));
    let j = memory(&["reservations", "node-a", "--json"])
        .expect(0)
        .json();
    let recs = j["reservations"].as_array().unwrap();
    let ids: Vec<_> = recs
        .iter()
        .map(|r| r["container_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db-1", "web-1", "web-2"]);
    assert_eq!(recs[0]["lease_expires_at_ms"], Value::Null);
    assert_eq!(recs[2]["lease_expires_at_ms"], NOW - 5 * 60_000);

    let f = memory(&["find", "train-1"]).expect(0);
    assert_eq!(f.stdout, "train-1 is held on gpu-a: 8000m 32768Mi 2gpu (a100), lease 2026-01-01T12:50:00Z (in 50m)\n");
    let j = memory(&["find", "db-1", "--json"]).expect(0).json();
    assert_eq!(j["held"], true);
    assert_eq!(j["reservation"]["worker_id"], "node-a");
    let miss = memory(&["find", "nope", "--json"]).expect(3);
    assert_eq!(miss.json()["held"], false);
    assert_eq!(
        memory(&["find", "nope"]).expect(3).stdout,
        "nope is not held\n"
    );
}

#[test]
fn unknown_worker_is_named_with_exit_3() {
    for args in [
        &["reservations", "node-x"][..],
        &["drain", "node-x"],
        &["disable", "node-x"],
        &["enable", "node-x"],
        &["heartbeat", "node-x"],
        &["release-worker", "node-x", "--yes"],
        &["renew", "node-x", "web-1", "--lease", "1m"],
    ] {
        let r = memory(args).expect(3);
        assert_eq!(
            r.stderr, "schedctl: error: unknown worker \"node-x\" (see `schedctl workers`)\n",
            "{args:?}"
        );
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn status_changes() {
    let r = memory(&["drain", "node-a"]).expect(0);
    assert_eq!(r.stdout, "node-a: available -> draining (version 2 -> 3); it keeps its reservations and takes no new ones\n");
    let j = memory(&["disable", "node-a", "--json"]).expect(0).json();
    assert_eq!(j["previous_status"], "available");
    assert_eq!(j["worker"]["status"], "disabled");
    assert_eq!(
        j["worker"]["free"]["cpu_millicores"], 5000,
        "capacity is kept"
    );
    let j = memory(&["enable", "node-b", "--json"]).expect(0).json();
    assert_eq!(j["previous_status"], "draining");
    assert_eq!(j["worker"]["status"], "available");
    assert_eq!(j["worker"]["resource_version"], 4);
}

#[test]
fn heartbeat() {
    let r = memory(&["heartbeat", "node-c"]).expect(0);
    assert_eq!(
        r.stdout,
        "node-c: heartbeat at 2026-01-01T12:00:00Z (was stale: yes)\n"
    );
    let j = memory(&["heartbeat", "node-a", "--json"]).expect(0).json();
    assert_eq!(j["at_ms"], NOW);
    assert_eq!(j["was_stale"], false);
    assert_eq!(j["worker_id"], "node-a");
}

#[test]
fn release_needs_yes() {
    let r = memory(&["release", "web-1"]).expect(4);
    assert!(r.stdout.is_empty());
    assert_eq!(
        r.stderr,
        "schedctl: error: refusing to release web-1 (held on node-a: 500m 512Mi) without --yes\n\
         nothing was changed; run it again with --yes to do it\n"
    );
    let r = memory(&["release", "web-1", "--yes"]).expect(0);
    assert_eq!(
        r.stdout,
        "released web-1: 500m 512Mi back to node-a (version 3)\n"
    );
    let j = memory(&["release", "web-1", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["container_id"], "web-1");
    assert_eq!(j["released"]["worker_id"], "node-a");
    assert_eq!(j["released"]["resources"]["memory_mib"], 512);
    // Nothing to release needs no confirmation.
    let r = memory(&["release", "nope"]).expect(0);
    assert_eq!(r.stdout, "nope is not held; nothing to release\n");
    assert_eq!(
        memory(&["release", "nope", "--json"]).expect(0).json()["released"],
        Value::Null
    );
}

#[test]
fn release_worker_needs_yes() {
    let r = memory(&["release-worker", "node-a"]).expect(4);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("schedctl: error: refusing to release all 3 reservations of node-a (3000m 5120Mi) without --yes\n"), "{}", r.stderr);
    let r = memory(&["release-worker", "node-a", "--yes"]).expect(0);
    assert!(r.stdout.ends_with("released 3 reservations of node-a; free 8000m 16384Mi of 8000m 16384Mi (version 2 -> 3)\n"), "{}", r.stdout);
    let j = memory(&["release-worker", "node-b", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["worker_id"], "node-b");
    assert_eq!(j["released"].as_array().unwrap().len(), 2);
    assert_eq!(j["free"]["cpu_millicores"], 8000);
}

#[test]
fn renew() {
    let r = memory(&[
        "renew", "node-a", "web-1", "web-2", "db-1", "gone", "--lease", "10m",
    ])
    .expect(0);
    assert_eq!(
        r.stdout,
        "CONTAINER  OUTCOME                         EXPIRES\n\
         web-1      renewed                         2026-01-01T12:10:00Z\n\
         web-2      too late: lease_expired         -\n\
         db-1       no lease (held until released)  -\n\
         gone       not held on node-a              -\n\
         renewed 1 of 4 leases on node-a for 10m\n"
    );
    let j = memory(&[
        "renew", "node-a", "web-1", "web-2", "db-1", "gone", "--lease", "90s", "--json",
    ])
    .expect(0)
    .json();
    assert_eq!(j["lease_ms"], 90_000);
    let kinds: Vec<_> = j["renewals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["renewed", "expired", "no_lease", "not_held"]);
    assert_eq!(j["renewals"][0]["outcome"]["expires_at_ms"], NOW + 90_000);
    assert_eq!(j["renewals"][1]["outcome"]["reason"], "lease_expired");
    // Stale with policy `release`: too late for node-c's lease.
    let j = memory(&["renew", "node-c", "cache-2", "--lease", "1m", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["renewals"][0]["outcome"]["reason"], "worker_stale");
}

#[test]
fn renew_rejects_bad_input() {
    let r = memory(&["renew", "node-a", "web-1", "--lease", "0s"]).expect(2);
    assert_eq!(r.stderr, "schedctl: error: --lease must be longer than 0\n");
    let r = memory(&["renew", "node-a", "web-1", "--lease", "31days"]).expect(2);
    assert!(
        r.stderr.contains("lease of 2678400000 ms is outside"),
        "{}",
        r.stderr
    );
    let r = memory(&["renew", "node-a", "web-1", "--lease", "soon"]).expect(2);
    assert!(
        r.stderr
            .contains("invalid value 'soon' for '--lease <LEASE>'"),
        "{}",
        r.stderr
    );
    memory(&["renew", "node-a", "--lease", "1m"]).expect(2);
}

#[test]
fn sweep_reports_who_when_how_much() {
    let r = memory(&["sweep"]).expect(0);
    assert_eq!(
        r.stdout,
        "WORKER  CONTAINER  RESOURCES     LEASE EXPIRED         REASON         SWEPT AT\n\
         node-a  web-2      500m 512Mi    2026-01-01T11:55:00Z  lease_expired  2026-01-01T12:00:00Z\n\
         node-c  cache-1    1000m 1024Mi  -                     worker_stale   2026-01-01T12:00:00Z\n\
         node-c  cache-2    500m 512Mi    2026-01-01T12:50:00Z  worker_stale   2026-01-01T12:00:00Z\n\
         swept 4 workers: 3 reservations expired, 2000m 2048Mi returned\n"
    );
    let j = memory(&["sweep", "--json"]).expect(0).json();
    assert_eq!(j["workers_swept"], 4);
    assert_eq!(j["expired"], 3);
    assert_eq!(j["returned"]["cpu_millicores"], 2000);
    let sweeps = j["sweeps"].as_array().unwrap();
    let c = sweeps.iter().find(|s| s["worker_id"] == "node-c").unwrap();
    assert_eq!(c["swept_at_ms"], NOW);
    assert_eq!(c["expired"][0]["reason"], "worker_stale");
    assert_eq!(c["free"]["cpu_millicores"], 4000);
    let gpu = memory(&["sweep", "--pool", "gpu"]).expect(0);
    assert_eq!(gpu.stdout, "swept 1 worker: nothing expired\n");
}

#[test]
fn audit_and_reconcile() {
    let r = memory(&["audit"]).expect(0);
    assert_eq!(r.stdout, "audited 4 workers, 8 reservations: no drift\n");
    let j = memory(&["audit", "--json"]).expect(0).json();
    assert_eq!(j["workers_audited"], 4);
    assert_eq!(j["drift_workers"], 0);

    let r = memory(&["--demo-drift", "audit"]).expect(5);
    assert!(r.stdout.contains("gpu-a   16000m 65536Mi 4gpu  7000m 32768Mi 1gpu  8000m 32768Mi 2gpu  1             -1000m -1gpu"), "{}", r.stdout);
    assert!(r
        .stdout
        .ends_with("1 with drift (repair with `schedctl reconcile --yes`)\n"));
    let j = memory(&["--demo-drift", "audit", "--json"])
        .expect(5)
        .json();
    assert_eq!(j["drift_workers"], 1);
    let g = j["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["worker_id"] == "gpu-a")
        .unwrap();
    assert_eq!(g["drift"]["gpu_count"], -1);

    let r = memory(&["--demo-drift", "reconcile"]).expect(4);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.starts_with(
            "schedctl: error: refusing to reconcile without --yes (1 of 4 workers have drift)\n"
        ),
        "{}",
        r.stderr
    );
    let j = memory(&["--demo-drift", "reconcile", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["repaired"], true);
    assert_eq!(j["drift_workers"], 1);
}

#[test]
fn migrate_has_nothing_to_do_on_memory() {
    let r = memory(&["migrate"]).expect(0);
    assert_eq!(
        r.stdout,
        "nothing to migrate on the memory backend (it has no schema)\n"
    );
    let j = memory(&["migrate", "--json"]).expect(0).json();
    assert_eq!(j["migrated"], false);
}

#[test]
fn demo_runs_the_script() {
    let r = memory(&["demo"]).expect(0);
    for line in [
        "$ schedctl renew node-a web-1 web-2 db-1 --lease 10m",
        "node-c: heartbeat at 2026-01-01T12:00:00Z (was stale: yes)",
        "schedctl: error: refusing to release web-1 (held on node-a: 500m 512Mi) without --yes",
        "(exit 4)",
        "gpu-a   train-1    8000m 32768Mi 2gpu  2026-01-01T12:50:00Z  lease_expired  2026-01-01T13:00:00Z",
        "(exit 5)",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing from\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("!! expected"));
    let j = memory(&["demo", "--json"]).expect(0).json();
    assert_eq!(j["deviations"], 0);
    let steps = j["steps"].as_array().unwrap();
    assert!(steps.len() > 15);
    assert_eq!(steps[0]["command"], "schedctl workers");
    assert_eq!(steps[0]["output"]["workers"].as_array().unwrap().len(), 4);
    let refused = steps.iter().find(|s| s["exit_code"] == 4).unwrap();
    assert_eq!(refused["command"], "schedctl release web-1");
    assert_eq!(refused["output"], Value::Null);
}

#[test]
fn usage_errors() {
    let r = common::schedctl(&["--backend", "redis", "demo"]).expect(2);
    assert_eq!(
        r.stderr,
        "schedctl: error: demo runs on its own in-memory store: use --backend memory\n"
    );
    let r = common::schedctl(&["--backend", "redis", "workers"]).expect(2);
    assert!(
        r.stderr.contains("--backend redis needs --redis-url"),
        "{}",
        r.stderr
    );
    let r = common::schedctl(&["--backend", "postgres", "workers"]).expect(2);
    assert!(
        r.stderr.contains("--backend postgres needs --database-url"),
        "{}",
        r.stderr
    );
    let r = memory(&["find", "a\u{7}b"]).expect(2);
    assert_eq!(
        r.stderr,
        "schedctl: error: invalid input: container id contains a control character\n"
    );
    memory(&["frobnicate"]).expect(2);
}
