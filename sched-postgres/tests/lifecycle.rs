//! The lifecycle on PostgreSQL: leases judged by the server's clock, renewal racing the sweep,
//! heartbeats and stale policy, status changes, bulk release, and the upgrade of a database
//! migrated only to 0002. Needs `DATABASE_URL`; each test works in its own fresh schema.
//! Sleeps here are the deadlines under test, with generous margins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, ExpiryReason, Rejection, RenewOutcome, RepoError,
    ResourceReservation, Resources, StalePolicy, WorkerRepository, WorkerSpec, WorkerStatus,
};
use sched_postgres::{PostgresConfig, PostgresRepository, MIGRATOR};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TOTAL: Resources = Resources::cpu_mem(1000, 1000);

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn leased(c: &str, lease_ms: Option<u64>) -> ResourceReservation {
    let mut r = ResourceReservation::new(c, Resources::cpu_mem(10, 10));
    r.lease_ms = lease_ms;
    r
}

async fn reserve(repo: &impl WorkerRepository, w: &str, rs: Vec<ResourceReservation>) {
    let out = repo
        .reserve_batch(&[CapacityReservation::new(w, rs)], CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok(), "{out:?}");
}

/// The server's clock, in ms since the epoch.
async fn server_ms(repo: &PostgresRepository) -> u64 {
    let ms: i64 = sqlx::query_scalar("SELECT sched_ms(sched_now())")
        .fetch_one(repo.pool())
        .await
        .unwrap();
    ms as u64
}

async fn assert_consistent(repo: &impl WorkerRepository, w: &str) {
    let a = repo.audit(w).await.unwrap();
    assert!(a.is_consistent(), "{a:?}");
}

#[tokio::test]
async fn leases_renew_and_expire_by_the_server_clock() {
    let Some(db) = common::setup("leases_renew_and_expire_by_the_server_clock").await else {
        return;
    };
    let repo = &db.repo;
    let w = repo
        .register_worker(&WorkerSpec::new("w", TOTAL))
        .await
        .unwrap();
    let before = server_ms(repo).await;
    reserve(repo, "w", vec![leased("a", Some(300)), leased("b", None)]).await;
    let after = server_ms(repo).await;
    let ledger = repo.list_reservations("w").await.unwrap();
    let deadline = ledger[0].lease_expires_at_ms.unwrap();
    assert!(
        (before + 300..=after + 300).contains(&deadline),
        "deadline = server now + lease: {before} {deadline} {after}"
    );
    assert_eq!(ledger[1].lease_expires_at_ms, None);
    let found = repo.find_reservation("a").await.unwrap().unwrap();
    assert_eq!(found.lease_expires_at_ms, Some(deadline));
    let v = repo
        .get_worker("w")
        .await
        .unwrap()
        .unwrap()
        .resource_version;
    assert_eq!(v, w.resource_version + 1);

    // Renewal: per id in input order; no version change.
    let r = repo
        .renew_leases("w", &ids(&["x", "a", "b"]), 200)
        .await
        .unwrap();
    let got: Vec<_> = r
        .iter()
        .map(|r| (r.container_id.as_str(), r.outcome))
        .collect();
    let RenewOutcome::Renewed { expires_at_ms } = got[1].1 else {
        panic!("{got:?}")
    };
    assert!(expires_at_ms >= before + 200, "{expires_at_ms}");
    assert_eq!(
        (got[0], got[2]),
        (("x", RenewOutcome::NotHeld), ("b", RenewOutcome::NoLease))
    );
    let ledger = repo.list_reservations("w").await.unwrap();
    assert_eq!(ledger[0].lease_expires_at_ms, Some(expires_at_ms));
    assert_eq!(
        repo.get_worker("w")
            .await
            .unwrap()
            .unwrap()
            .resource_version,
        v
    );
    assert!(repo.expire_leases("w").await.unwrap().expired.is_empty());

    // Past the deadline: still held (and blocking the id) until the sweep, not renewable.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        repo.renew_leases("w", &ids(&["a"]), 10_000).await.unwrap()[0].outcome,
        RenewOutcome::Expired {
            reason: ExpiryReason::LeaseExpired
        }
    );
    assert_eq!(repo.list_reservations("w").await.unwrap().len(), 2);
    let sweep = repo.expire_leases("w").await.unwrap();
    assert_eq!(sweep.expired.len(), 1);
    let e = &sweep.expired[0];
    assert_eq!(
        (e.record.container_id.as_str(), e.reason),
        ("a", ExpiryReason::LeaseExpired)
    );
    assert_eq!(e.record.lease_expires_at_ms, Some(expires_at_ms));
    assert!(sweep.swept_at_ms >= expires_at_ms);
    assert_eq!(sweep.free, Resources::cpu_mem(990, 990));
    assert_eq!(sweep.resource_version, v + 1);
    let again = repo.expire_leases("w").await.unwrap();
    assert!(again.expired.is_empty());
    assert_eq!(again.resource_version, v + 1, "nothing expired, no bump");
    assert_eq!(
        repo.renew_leases("w", &ids(&["a"]), 100).await.unwrap()[0].outcome,
        RenewOutcome::NotHeld
    );
    assert_consistent(repo, "w").await;

    for e in [
        repo.renew_leases("nobody", &ids(&["a"]), 100).await.err(),
        repo.expire_leases("nobody").await.err(),
        repo.heartbeat("nobody").await.err(),
        repo.release_worker("nobody").await.err(),
        repo.set_worker_status("nobody", WorkerStatus::Draining)
            .await
            .err(),
    ] {
        assert!(matches!(e, Some(RepoError::UnknownWorker(_))), "{e:?}");
    }
    assert!(matches!(
        repo.renew_leases("w", &ids(&["a"]), 0).await,
        Err(RepoError::InvalidInput(_))
    ));
}

/// Renewals and sweeps of one worker's leases, fired together around the deadline, many
/// rounds: every container is either renewed and still held, or expired with its capacity
/// back — never renewed and swept, and the ledger always adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_racing_the_sweep_wins_or_loses_whole() {
    let Some(db) = common::setup("renewal_racing_the_sweep_wins_or_loses_whole").await else {
        return;
    };
    let other = Arc::new(db.another().await);
    let repo = Arc::new(db.repo.clone());
    repo.register_worker(&WorkerSpec::new("w", TOTAL))
        .await
        .unwrap();
    let (mut renewed_total, mut expired_total) = (0, 0);
    for round in 0..12u64 {
        let cs: Vec<String> = (0..20).map(|i| format!("r{round}-{i:02}")).collect();
        reserve(
            &*repo,
            "w",
            cs.iter().map(|c| leased(c, Some(400))).collect(),
        )
        .await;
        // Before, around and after the deadline, by round.
        tokio::time::sleep(Duration::from_millis(250 + (round % 6) * 40)).await;
        let (r, s) = {
            let (repo, other, cs) = (repo.clone(), other.clone(), cs.clone());
            let renew = tokio::spawn(async move { repo.renew_leases("w", &cs, 60_000).await });
            let sweep = tokio::spawn(async move { other.expire_leases("w").await });
            (renew.await.unwrap().unwrap(), sweep.await.unwrap().unwrap())
        };
        let swept: BTreeMap<_, _> = s
            .expired
            .iter()
            .map(|e| (e.record.container_id.clone(), e.reason))
            .collect();
        let held: Vec<String> = repo
            .list_reservations("w")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        for x in &r {
            let c = &x.container_id;
            match x.outcome {
                RenewOutcome::Renewed { .. } => {
                    assert!(!swept.contains_key(c), "{c} renewed and swept");
                    assert!(held.contains(c), "{c} renewed but not held");
                    renewed_total += 1;
                }
                RenewOutcome::Expired { .. } | RenewOutcome::NotHeld => {
                    // Lost: the sweep (this one, or the next) takes it.
                    assert!(!held.contains(c) || !swept.contains_key(c));
                }
                RenewOutcome::NoLease => panic!("{c} had a lease"),
            }
        }
        let late = repo.expire_leases("w").await.unwrap();
        expired_total += swept.len() + late.expired.len();
        assert_consistent(&*repo, "w").await;
        // Clean the round: what is left was renewed for a minute.
        repo.release_batch(&cs).await.unwrap();
        assert_eq!(
            repo.get_worker("w").await.unwrap().unwrap().free,
            TOTAL,
            "capacity comes back exactly once"
        );
    }
    println!("renewed {renewed_total}, expired {expired_total}");
    assert_eq!(renewed_total + expired_total, 12 * 20);
    assert!(
        renewed_total > 0 && expired_total > 0,
        "both sides won some rounds"
    );
}

#[tokio::test]
async fn a_stale_worker_is_refused_and_swept_by_policy() {
    let Some(db) = common::setup("a_stale_worker_is_refused_and_swept_by_policy").await else {
        return;
    };
    let repo = &db.repo;
    let timeout = Duration::from_millis(300);
    let keep = WorkerSpec::new("keep", TOTAL).with_heartbeat_timeout(timeout);
    let release = WorkerSpec::new("release", TOTAL)
        .with_heartbeat_timeout(timeout)
        .with_stale_policy(StalePolicy::Release);
    let k = repo.register_worker(&keep).await.unwrap();
    let registered_at = k.last_heartbeat_ms.unwrap();
    assert!(!k.stale && k.heartbeat_timeout_ms == Some(300) && k.on_stale == StalePolicy::Keep);
    let r = repo.register_worker(&release).await.unwrap();
    assert_eq!(r.on_stale, StalePolicy::Release);
    reserve(repo, "keep", vec![leased("k1", None)]).await;
    reserve(
        repo,
        "release",
        vec![leased("r1", None), leased("r2", Some(60_000))],
    )
    .await;

    tokio::time::sleep(Duration::from_millis(900)).await;
    let w = repo.get_worker("keep").await.unwrap().unwrap();
    assert!(w.stale && !w.is_available(), "{w:?}");
    assert!(repo
        .list_workers(None)
        .await
        .unwrap()
        .iter()
        .all(|w| w.stale));
    let out = repo
        .reserve_batch(
            &[CapacityReservation::new("keep", vec![leased("k2", None)])],
            CommitMode::Partial,
        )
        .await
        .unwrap();
    assert_eq!(
        out[0].outcome,
        Err(Rejection::HeartbeatExpired {
            last_heartbeat_ms: Some(registered_at),
            timeout_ms: 300
        })
    );
    assert_eq!(
        out[0].outcome.as_ref().unwrap_err().kind(),
        "heartbeat_expired"
    );
    // The status is checked before the heartbeat.
    repo.set_worker_status("keep", WorkerStatus::Draining)
        .await
        .unwrap();
    let out = repo
        .reserve_batch(
            &[CapacityReservation::new("keep", vec![leased("k2", None)])],
            CommitMode::Partial,
        )
        .await
        .unwrap();
    assert!(matches!(
        out[0].outcome,
        Err(Rejection::WorkerUnavailable { .. })
    ));
    repo.set_worker_status("keep", WorkerStatus::Available)
        .await
        .unwrap();

    assert!(repo.expire_leases("keep").await.unwrap().expired.is_empty());
    assert_eq!(
        repo.renew_leases("release", &ids(&["r2"]), 1000)
            .await
            .unwrap()[0]
            .outcome,
        RenewOutcome::Expired {
            reason: ExpiryReason::WorkerStale
        }
    );
    let s = repo.expire_leases("release").await.unwrap();
    let got: Vec<_> = s
        .expired
        .iter()
        .map(|e| (e.record.container_id.as_str(), e.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("r1", ExpiryReason::WorkerStale),
            ("r2", ExpiryReason::WorkerStale)
        ]
    );
    assert_eq!(s.free, TOTAL);

    let hb = repo.heartbeat("keep").await.unwrap();
    assert!(hb.was_stale && hb.at_ms > registered_at + 300, "{hb:?}");
    let w2 = repo.get_worker("keep").await.unwrap().unwrap();
    assert!(!w2.stale && w2.last_heartbeat_ms == Some(hb.at_ms));
    assert_eq!(
        w2.resource_version,
        w.resource_version + 2,
        "only the two status changes"
    );
    assert!(!repo.heartbeat("keep").await.unwrap().was_stale);
    reserve(repo, "keep", vec![leased("k2", None)]).await;
    // Re-registration counts as a heartbeat too.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let again = repo.register_worker(&keep).await.unwrap();
    assert!(!again.stale && again.last_heartbeat_ms.unwrap() >= hb.at_ms + 900);
    assert_consistent(repo, "keep").await;
    assert_consistent(repo, "release").await;
}

#[tokio::test]
async fn status_changes_bump_the_version_and_keep_the_ledger() {
    let Some(db) = common::setup("status_changes_bump_the_version_and_keep_the_ledger").await
    else {
        return;
    };
    let repo = &db.repo;
    repo.register_worker(&WorkerSpec::new("w", TOTAL))
        .await
        .unwrap();
    reserve(
        repo,
        "w",
        vec![leased("a", None), leased("b", Some(60_000))],
    )
    .await;
    let before = repo.get_worker("w").await.unwrap().unwrap();
    let ledger = repo.list_reservations("w").await.unwrap();
    let mut v = before.resource_version;
    for s in [
        WorkerStatus::Draining,
        WorkerStatus::Draining,
        WorkerStatus::Disabled,
        WorkerStatus::Available,
    ] {
        let w = repo.set_worker_status("w", s).await.unwrap();
        v += 1;
        assert_eq!((w.status, w.resource_version, w.free), (s, v, before.free));
        assert_eq!(repo.get_worker("w").await.unwrap().unwrap(), w);
        assert_eq!(repo.list_reservations("w").await.unwrap(), ledger);
    }
    assert_consistent(repo, "w").await;
}

#[tokio::test]
async fn release_worker_releases_everything_once() {
    let Some(db) = common::setup("release_worker_releases_everything_once").await else {
        return;
    };
    let repo = &db.repo;
    for w in ["w", "x"] {
        repo.register_worker(&WorkerSpec::new(w, TOTAL))
            .await
            .unwrap();
    }
    reserve(
        repo,
        "w",
        vec![leased("c", None), leased("a", Some(60_000))],
    )
    .await;
    reserve(repo, "w", vec![leased("b", None)]).await;
    reserve(repo, "x", vec![leased("z", None)]).await;
    let v = repo
        .get_worker("w")
        .await
        .unwrap()
        .unwrap()
        .resource_version;
    let rel = repo.release_worker("w").await.unwrap();
    let got: Vec<_> = rel
        .released
        .iter()
        .map(|r| r.container_id.as_str())
        .collect();
    assert_eq!(got, ["a", "b", "c"]);
    assert!(rel.released[0].lease_expires_at_ms.is_some());
    assert_eq!((rel.free, rel.resource_version), (TOTAL, v + 1));
    let again = repo.release_worker("w").await.unwrap();
    assert!(again.released.is_empty() && again.resource_version == v + 1);
    assert!(
        repo.get_worker("w").await.unwrap().is_some(),
        "still registered"
    );
    assert!(repo.find_reservation("a").await.unwrap().is_none());
    assert_eq!(
        repo.list_reservations("x").await.unwrap().len(),
        1,
        "others untouched"
    );
    reserve(repo, "x", vec![leased("a", None)]).await;
    assert_consistent(repo, "w").await;
    assert_consistent(repo, "x").await;
}

/// A database migrated only to 0002 (rows written by the old functions, on a pool that used
/// them) upgrades to 0003: old rows read as unleased, liveness untracked; everything works.
#[tokio::test]
async fn a_database_at_0002_upgrades_with_its_rows() {
    let Some(url) = sched_tests::env::require_url(common::VAR, "upgrade") else {
        return;
    };
    let schema = common::random_schema();
    let config = PostgresConfig::from_url(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    let repo = PostgresRepository::connect(config).await.unwrap();
    let mut conn = repo.pool().acquire().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut *conn)
        .await
        .unwrap();
    MIGRATOR.run_to(2, &mut *conn).await.unwrap();
    drop(conn);
    // Written with 0002's functions, in their JSON shapes.
    let spec = r#"{"id":"w","pool":"p","status":"available","priority":0,"gpu_type":null,
        "requires_pool_selector":false,"preemptable":false,
        "total":{"cpu_millicores":1000,"memory_mib":1000,"gpu_count":0}}"#;
    sqlx::query("SELECT sched_register_worker($1::jsonb)")
        .bind(spec)
        .execute(repo.pool())
        .await
        .unwrap();
    let burst = r#"[{"worker_id":"w","expected_version":null,"reservations":[
        {"container_id":"old","resources":{"cpu_millicores":100,"memory_mib":100,"gpu_count":0},
         "gpu_type":null}]}]"#;
    sqlx::query("SELECT sched_reserve_batch($1::jsonb, false)")
        .bind(burst)
        .execute(repo.pool())
        .await
        .unwrap();

    repo.migrate().await.unwrap();
    let w = repo.get_worker("w").await.unwrap().unwrap();
    assert_eq!(
        (
            w.heartbeat_timeout_ms,
            w.on_stale,
            w.last_heartbeat_ms,
            w.stale
        ),
        (None, StalePolicy::Keep, None, false)
    );
    assert_eq!(
        (w.free, w.resource_version),
        (Resources::cpu_mem(900, 900), 2)
    );
    let old = repo.list_reservations("w").await.unwrap();
    assert_eq!(old[0].lease_expires_at_ms, None);
    assert_eq!(
        repo.renew_leases("w", &ids(&["old"]), 100).await.unwrap()[0].outcome,
        RenewOutcome::NoLease
    );
    reserve(&repo, "w", vec![leased("new", Some(60_000))]).await;
    assert!(repo.expire_leases("w").await.unwrap().expired.is_empty());
    assert!(!repo.heartbeat("w").await.unwrap().was_stale);
    assert_eq!(repo.release_worker("w").await.unwrap().released.len(), 2);
    assert_consistent(&repo, "w").await;
    repo.migrate().await.unwrap();
    repo.drop_schema().await.unwrap();
}
