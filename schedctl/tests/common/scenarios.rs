//! What the Redis and Postgres tests run against a seeded store ([`Lib::seed`]): schedctl as
//! a process, checked against the store through the library.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::stores::{Lib, ODD};
use sched_core::{Resources, WorkerStatus};
use serde_json::Value;
use std::time::Duration;

/// `workers`, `reservations`, `find` (text and JSON), and the unknown-worker message.
pub async fn reads(lib: &Lib) {
    lib.seed().await;
    let r = lib.run(&["workers"]).expect(0);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    let w1 = r.stdout.lines().find(|l| l.starts_with("w-1 ")).unwrap();
    for cell in [
        "default",
        "available",
        "8000m 16384Mi",
        "7000m 15360Mi",
        "12%",
    ] {
        assert!(w1.contains(cell), "{cell:?} not in {w1:?}");
    }
    let j = lib.run(&["workers", "--json"]).expect(0).json();
    let ids: Vec<&str> = j["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["w 2:{x}'q", "w-1"]);
    let odd = &j["workers"][0];
    assert_eq!(odd["free"]["cpu_millicores"], 3500);
    assert_eq!(odd["used_pct"]["cpu"], 12.5);

    let r = lib.run(&["reservations", "w-1"]).expect(0);
    assert!(
        r.stdout
            .ends_with("2 reservations on w-1: 1000m 1024Mi reserved, 7000m 15360Mi free\n"),
        "{}",
        r.stdout
    );
    let j = lib.run(&["reservations", "w-1", "--json"]).expect(0).json();
    let recs = j["reservations"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["container_id"], "c-1");
    assert_eq!(recs[1]["resources"]["memory_mib"], 512);

    let r = lib.run(&["find", "c-3"]).expect(0);
    assert_eq!(
        r.stdout,
        format!("c-3 is held on {ODD}: 500m 512Mi, lease none\n")
    );
    assert_eq!(
        lib.run(&["find", "c-3", "--json"]).expect(0).json()["reservation"]["worker_id"],
        ODD
    );
    assert_eq!(
        lib.run(&["find", "c-9", "--json"]).expect(3).json()["held"],
        false
    );

    let r = lib.run(&["reservations", "nope"]).expect(3);
    assert_eq!(
        r.stderr,
        "schedctl: error: unknown worker \"nope\" (see `schedctl workers`)\n"
    );
    let r = lib.run(&["migrate", "--json"]).expect(0).json();
    assert_eq!(r["migrated"], lib.args[1] == "postgres");
}

/// `release` refuses without `--yes` and changes nothing; with it, releases.
pub async fn release(lib: &Lib) {
    lib.seed().await;
    let before = lib.snapshot().await;
    let r = lib.run(&["release", "c-3"]).expect(4);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(&format!(
            "refusing to release c-3 (held on {ODD}: 500m 512Mi) without --yes"
        )),
        "{}",
        r.stderr
    );
    let r = lib.run(&["release", "c-3", "--json"]).expect(4);
    assert!(r.stdout.is_empty());
    assert_eq!(
        lib.snapshot().await,
        before,
        "a refused release changed the store"
    );

    let j = lib
        .run(&["release", "c-3", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["released"]["worker_id"], ODD);
    assert!(lib.repo().find_reservation("c-3").await.unwrap().is_none());
    let odd = lib.repo().get_worker(ODD).await.unwrap().unwrap();
    assert_eq!(odd.free, odd.total);
    let r = lib.run(&["release", "c-3", "--yes"]).expect(0);
    assert_eq!(r.stdout, "c-3 is not held; nothing to release\n");
}

/// `audit` exits 5 on drift; `reconcile` refuses without `--yes` (changing nothing) and
/// repairs with it.
pub async fn audit(lib: &Lib) {
    lib.seed().await;
    let r = lib.run(&["audit"]).expect(0);
    assert_eq!(r.stdout, "audited 2 workers, 3 reservations: no drift\n");
    lib.corrupt_free("w-1", Resources::cpu_mem(6000, 15360))
        .await;
    let r = lib.run(&["audit"]).expect(5);
    assert!(
        r.stdout.contains(
            "w-1     8000m 16384Mi  6000m 15360Mi  1000m 1024Mi       2             -1000m"
        ),
        "{}",
        r.stdout
    );
    let j = lib.run(&["audit", "--json"]).expect(5).json();
    assert_eq!(j["drift_workers"], 1);
    let before = lib.snapshot().await;
    let r = lib.run(&["reconcile"]).expect(4);
    assert!(
        r.stderr
            .contains("refusing to reconcile without --yes (1 of 2 workers have drift)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        lib.snapshot().await,
        before,
        "a refused reconcile changed the store"
    );
    assert!(!lib.repo().audit("w-1").await.unwrap().is_consistent());
    let j = lib.run(&["reconcile", "--yes", "--json"]).expect(0).json();
    assert_eq!(j["repaired"], true);
    assert!(lib.repo().audit("w-1").await.unwrap().is_consistent());
    lib.run(&["audit"]).expect(0);
}

/// The lifecycle commands: status, heartbeat, renew, sweep, release-worker.
pub async fn lifecycle(lib: &Lib) {
    lib.seed().await;
    let repo = lib.repo();
    // Heartbeat and lease fields as the store reports them.
    let r = lib.run(&["workers"]).expect(0);
    let w1 = r.stdout.lines().find(|l| l.starts_with("w-1 ")).unwrap();
    assert!(w1.ends_with("  1h       no"), "{w1:?}");
    let j = lib.run(&["workers", "--json"]).expect(0).json();
    assert!(j["workers"][1]["last_heartbeat_ms"].as_u64().is_some());
    assert_eq!(j["workers"][1]["heartbeat_timeout_ms"], 3_600_000);
    let j = lib.run(&["reservations", "w-1", "--json"]).expect(0).json();
    let recs = j["reservations"].as_array().unwrap();
    let deadline = recs[0]["lease_expires_at_ms"].as_u64().unwrap();
    assert!(
        deadline > j["now_ms"].as_u64().unwrap() + 3_000_000,
        "{deadline}"
    );
    assert_eq!(recs[1]["lease_expires_at_ms"], Value::Null);

    let j = lib.run(&["drain", "w-1", "--json"]).expect(0).json();
    assert_eq!(j["worker"]["status"], "draining");
    assert_eq!(
        repo.get_worker("w-1").await.unwrap().unwrap().status,
        WorkerStatus::Draining
    );
    lib.run(&["disable", ODD]).expect(0);
    assert_eq!(
        repo.get_worker(ODD).await.unwrap().unwrap().status,
        WorkerStatus::Disabled
    );
    let r = lib.run(&["enable", "w-1"]).expect(0);
    assert!(
        r.stdout.starts_with("w-1: draining -> available"),
        "{}",
        r.stdout
    );
    assert_eq!(
        repo.get_worker("w-1").await.unwrap().unwrap().status,
        WorkerStatus::Available
    );

    let before = repo
        .get_worker("w-1")
        .await
        .unwrap()
        .unwrap()
        .last_heartbeat_ms
        .unwrap();
    let j = lib.run(&["heartbeat", "w-1", "--json"]).expect(0).json();
    assert_eq!(j["was_stale"], false);
    let after = repo
        .get_worker("w-1")
        .await
        .unwrap()
        .unwrap()
        .last_heartbeat_ms
        .unwrap();
    assert_eq!(j["at_ms"].as_u64().unwrap(), after);
    assert!(after >= before);

    let old = repo
        .find_reservation("c-1")
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at_ms
        .unwrap();
    let j = lib
        .run(&[
            "renew", "w-1", "c-1", "c-2", "c-3", "--lease", "2h", "--json",
        ])
        .expect(0)
        .json();
    let kinds: Vec<_> = j["renewals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["renewed", "no_lease", "not_held"]);
    let new = repo
        .find_reservation("c-1")
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at_ms
        .unwrap();
    assert_eq!(
        j["renewals"][0]["outcome"]["expires_at_ms"]
            .as_u64()
            .unwrap(),
        new
    );
    assert!(
        new >= old + 3_000_000,
        "renewed to 2h from now: {old} -> {new}"
    );

    // A lease of 1 ms has run out by the time schedctl sweeps (a generous 200 ms later).
    let short = sched_core::ResourceReservation::new("c-short", Resources::cpu_mem(1000, 1024))
        .with_lease(Duration::from_millis(1));
    let out = repo
        .reserve_batch(
            &[sched_core::CapacityReservation::new("w-1", vec![short])],
            sched_core::CommitMode::AllOrNothing,
        )
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok(), "{out:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = lib.run(&["sweep"]).expect(0);
    assert!(
        r.stdout.contains("w-1     c-short    1000m 1024Mi"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("swept 2 workers: 1 reservation expired, 1000m 1024Mi returned\n"),
        "{}",
        r.stdout
    );
    assert!(repo.find_reservation("c-short").await.unwrap().is_none());
    assert!(repo.audit("w-1").await.unwrap().is_consistent());
    assert_eq!(lib.run(&["sweep", "--json"]).expect(0).json()["expired"], 0);

    let before = lib.snapshot().await;
    let r = lib.run(&["release-worker", "w-1"]).expect(4);
    assert!(
        r.stderr
            .contains("refusing to release all 2 reservations of w-1 (1000m 1024Mi) without --yes"),
        "{}",
        r.stderr
    );
    assert_eq!(
        lib.snapshot().await,
        before,
        "a refused release-worker changed the store"
    );
    let j = lib
        .run(&["release-worker", "w-1", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(j["released"].as_array().unwrap().len(), 2);
    assert!(repo.list_reservations("w-1").await.unwrap().is_empty());
    assert!(
        repo.get_worker("w-1").await.unwrap().is_some(),
        "the worker stays registered"
    );
    lib.run(&["audit"]).expect(0);
}

/// `audit` and `reconcile` over many workers (the concurrent path; the progress bar stays off
/// without a terminal, so stdout is the same).
pub async fn audit_many(lib: &Lib) {
    let n = 120;
    for i in 0..n {
        lib.repo()
            .register_worker(&sched_core::WorkerSpec::new(
                format!("m-{i:03}"),
                Resources::cpu_mem(1000, 1024),
            ))
            .await
            .unwrap();
    }
    lib.corrupt_free("m-077", Resources::cpu_mem(999, 1024))
        .await;
    let r = lib.run(&["audit"]).expect(5);
    assert!(r.stdout.ends_with("audited 120 workers, 0 reservations: 1 with drift (repair with `schedctl reconcile --yes`)\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("m-077   1000m 1024Mi  999m 1024Mi"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.is_empty(),
        "no progress bar without a terminal: {}",
        r.stderr
    );
    let j = lib.run(&["reconcile", "--yes", "--json"]).expect(0).json();
    assert_eq!(j["workers_audited"], n);
    let ids: Vec<&str> = j["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["worker_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "reports in id order");
    lib.run(&["audit"]).expect(0);
}
