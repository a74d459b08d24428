//! Many scheduler PROCESSES against one Redis and one Postgres (issue: faults and many
//! schedulers): 8 `sched-sim worker` processes race for a shared pool of container ids, or one
//! of them is SIGKILLed mid-round. Afterwards: zero double-bookings, zero drift, every container
//! placed exactly once, and what a killed process committed is held (handed off), not leaked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_tests::env::require_url;
use serde_json::Value;
use std::process::Command;

fn run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sched-sim"))
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "error")
        .output()
        .expect("run sched-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sched-sim {args:?} failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("json report")
}

fn check(report: &Value, label: &str) -> (u64, u64, u64) {
    let r = &report["reports"][0];
    let audit = &r["audit"];
    for k in [
        "double_bookings",
        "misplaced",
        "missing",
        "orphaned",
        "drift_workers",
    ] {
        assert_eq!(audit[k], 0, "{label}: audit {k} must be 0: {audit}");
    }
    let (placed, requested) = (
        r["placed"].as_u64().unwrap(),
        r["requested"].as_u64().unwrap(),
    );
    assert_eq!(placed, requested, "{label}: every container placed once");
    assert_eq!(
        audit["ledger_entries"].as_u64().unwrap(),
        placed + r["crash_handoffs"].as_u64().unwrap(),
        "{label}: ledgers hold exactly the placements and the killed instances' hand-offs"
    );
    let out = (
        placed,
        r["crashed_instances"].as_u64().unwrap(),
        r["crash_handoffs"].as_u64().unwrap(),
    );
    eprintln!(
        "{label}: placed {} (of {requested} requested), killed {}, handed off {}, double-bookings 0, drift 0",
        out.0, out.1, out.2
    );
    out
}

fn scenarios(backend: &[&str], label: &str) {
    let common = [
        "contention",
        "--processes",
        "--instances",
        "8",
        "--workers",
        "20",
        "--worker-cpu",
        "64000",
        "--worker-mem",
        "262144",
        "--repeat",
        "3",
    ];
    // 8 processes, each placing the same 1,500 ids in its own order with mixed affinity.
    let mut a: Vec<&str> = common.to_vec();
    a.extend(["--shared-ids", "1500"]);
    a.extend(backend);
    check(&run(&a), &format!("{label} shared pool"));
    // The same, with one process SIGKILLed in every round.
    a.push("--kill-one");
    check(&run(&a), &format!("{label} shared pool + kill"));
    // Disjoint ids, one process killed per round: its commits stay held (handed off).
    let mut b: Vec<&str> = common.to_vec();
    b.extend(["--containers", "4000", "--kill-one"]);
    b.extend(backend);
    check(&run(&b), &format!("{label} disjoint + kill"));
}

#[test]
fn eight_processes_on_redis() {
    let Some(url) = require_url("REDIS_URL", "eight_processes_on_redis") else {
        return;
    };
    scenarios(&["--backend", "redis", "--redis-url", &url], "redis");
}

#[test]
fn eight_processes_on_postgres() {
    let Some(url) = require_url("DATABASE_URL", "eight_processes_on_postgres") else {
        return;
    };
    scenarios(
        &["--backend", "postgres", "--database-url", &url],
        "postgres",
    );
}
