//! The baselines' per-worker locks (`sched_sim::locks`) on every backend: a held lock excludes
//! everyone, including its holder; unlock frees it; a stranger's or an expired token unlocks
//! nothing; the TTL frees a lock nobody gives back. Redis and Postgres need `REDIS_URL` /
//! `DATABASE_URL` (skipped with a message when unset, outside CI).
//!
//! Ported from `sched-redis/tests/common/mod.rs::worker_locks` and `sched-postgres/tests/locks.rs`
//! when the locks moved out of the backends into the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sched_core::{
    BackendCounters, CapacityReservation, CommitMode, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use sched_sim::locks::{LockToken, MemoryLocks, PostgresLocks, RedisLocks, WorkerLocks};
use sched_sim::tls::TlsFiles;
use sched_tests::env::require_url;
use std::sync::Arc;
use std::time::Duration;

/// The contract every lock keeps, on worker id `w` (ids with `{`, `}` and `:` included).
async fn lock_contract(locks: &dyn WorkerLocks, w: &str) {
    let t = locks
        .try_lock(w, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(t.worker_id, w);
    assert!(locks
        .try_lock(w, Duration::from_secs(10))
        .await
        .unwrap()
        .is_none());
    // A stranger's token does not unlock.
    let fake = LockToken {
        worker_id: t.worker_id.clone(),
        token: "nope".into(),
    };
    locks.unlock(fake).await.unwrap();
    assert!(locks
        .try_lock(w, Duration::from_secs(10))
        .await
        .unwrap()
        .is_none());
    locks.unlock(t.clone()).await.unwrap();
    let t2 = locks
        .try_lock(w, Duration::from_millis(50))
        .await
        .unwrap()
        .expect("unlocked");
    // Unlocking an old token after someone else took it over is a no-op.
    locks.unlock(t).await.unwrap();
    assert!(locks
        .try_lock(w, Duration::from_secs(10))
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(120)).await;
    let t3 = locks
        .try_lock(w, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("ttl expired");
    locks.unlock(t2).await.unwrap();
    locks.unlock(t3).await.unwrap();
    assert!(locks
        .try_lock(w, Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn memory_locks() {
    let locks = MemoryLocks::new();
    lock_contract(&locks, "{w}:1").await;
    // Workers are independent.
    assert!(locks
        .try_lock("other", Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn redis_locks() {
    let Some(url) = require_url("REDIS_URL", "redis_locks") else {
        return;
    };
    let prefix = format!("sched_sim_locks_{}", sched_tests::ns::random_hex());
    let config = RedisConfig::from_url(url).with_prefix(&prefix);
    let repo = RedisRepository::connect(&config).await.unwrap();
    let counters = Arc::new(BackendCounters::default());
    let locks = RedisLocks::connect(
        &config,
        &TlsFiles::default(),
        Arc::clone(&counters),
        "redis",
    )
    .await
    .unwrap();
    let t = locks
        .try_lock("w", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(
        counters.snapshot().round_trips,
        1,
        "SET NX PX is one round trip"
    );
    locks.unlock(t).await.unwrap();
    lock_contract(&locks, "{w}:1").await;
    // A second client on the same prefix sees the same locks.
    locks
        .try_lock("held", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free lock");
    let other = RedisLocks::connect(&config, &TlsFiles::default(), Arc::default(), "redis")
        .await
        .unwrap();
    assert!(other
        .try_lock("held", Duration::from_secs(1))
        .await
        .unwrap()
        .is_none());
    // The lock keys live under the repository's prefix, so its clean-up removes them.
    assert!(repo.delete_all_keys().await.unwrap() >= 1);
    assert!(other
        .try_lock("held", Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
    repo.delete_all_keys().await.unwrap();
}

/// A migrated repository in a throw-away schema, with the locks installed.
async fn pg(test: &str) -> Option<PostgresRepository> {
    let url = require_url("DATABASE_URL", test)?;
    let schema = format!("sched_sim_test_{}", sched_tests::ns::random_hex());
    let config = PostgresConfig::from_url(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap()
        .with_max_connections(12);
    let repo = PostgresRepository::connect(config).await.unwrap();
    repo.migrate().await.unwrap();
    Some(repo)
}

#[tokio::test]
async fn postgres_lock_excludes_and_unlock_frees() {
    let Some(repo) = pg("postgres_lock_excludes_and_unlock_frees").await else {
        return;
    };
    repo.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let a = PostgresLocks::new(&repo);
    let b = PostgresLocks::new(&repo);
    a.install(&["w".to_owned()]).await.unwrap();
    let ttl = Duration::from_secs(30);
    let t = a.try_lock("w", ttl).await.unwrap().expect("free lock");
    assert_eq!(t.worker_id, "w");
    assert!(b.try_lock("w", ttl).await.unwrap().is_none(), "held by a");
    assert!(
        a.try_lock("w", ttl).await.unwrap().is_none(),
        "not re-entrant either"
    );
    // Other workers are independent, also ones without a lock row yet.
    let other = b
        .try_lock("never-registered", ttl)
        .await
        .unwrap()
        .expect("other worker");
    // The holder's own writes to the worker are not blocked by its lock.
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        repo.reserve_batch(
            &[CapacityReservation::new(
                "w",
                vec![ResourceReservation::new("c", Resources::cpu_mem(1, 1))],
            )],
            CommitMode::AllOrNothing,
        ),
    )
    .await
    .expect("reserve_batch is not blocked by the lock")
    .unwrap();
    assert!(out[0].outcome.is_ok());
    a.unlock(t.clone()).await.unwrap();
    a.unlock(t).await.unwrap(); // unlocking twice is a no-op
    assert_eq!(a.held().await, 0);
    let t2 = b
        .try_lock("w", ttl)
        .await
        .unwrap()
        .expect("free again after unlock");
    b.unlock(t2).await.unwrap();
    b.unlock(other).await.unwrap();
    repo.drop_schema().await.unwrap();
}

#[tokio::test]
async fn postgres_lock_expires_after_ttl() {
    let Some(repo) = pg("postgres_lock_expires_after_ttl").await else {
        return;
    };
    let a = PostgresLocks::new(&repo);
    let b = PostgresLocks::new(&repo);
    a.install(&[]).await.unwrap();
    let t = a
        .try_lock("w", Duration::from_millis(200))
        .await
        .unwrap()
        .expect("free");
    assert!(b
        .try_lock("w", Duration::from_secs(5))
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t2 = b
        .try_lock("w", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("expired lock is free");
    a.unlock(t).await.unwrap(); // unlocking an expired lock is a no-op
    assert!(
        a.try_lock("w", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "b still holds it"
    );
    b.unlock(t2).await.unwrap();
    repo.drop_schema().await.unwrap();
}

#[tokio::test]
async fn postgres_lock_round_trips_are_counted() {
    let Some(repo) = pg("postgres_lock_round_trips_are_counted").await else {
        return;
    };
    let locks = PostgresLocks::new(&repo);
    locks.install(&["w".to_owned()]).await.unwrap();
    let before = repo.counters().snapshot().round_trips;
    let t = locks
        .try_lock("w", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free");
    locks.unlock(t).await.unwrap();
    // BEGIN + the lock statement, then COMMIT.
    assert_eq!(repo.counters().snapshot().round_trips - before, 3);
    repo.drop_schema().await.unwrap();
}
