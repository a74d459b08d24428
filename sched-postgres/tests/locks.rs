//! `PostgresLocks`: real row locks for the naive baseline. Needs `DATABASE_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerLocks, WorkerRepository,
    WorkerSpec,
};
use sched_postgres::PostgresLocks;
use std::time::Duration;

#[tokio::test]
async fn lock_excludes_and_unlock_frees() {
    let Some(db) = common::setup("lock_excludes_and_unlock_frees").await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let a = PostgresLocks::new(&db.repo);
    let b = PostgresLocks::new(&db.repo);
    let ttl = Duration::from_secs(30);
    let t = a.try_lock("w", ttl).await.unwrap().expect("free lock");
    assert_eq!(t.worker_id, "w");
    assert!(b.try_lock("w", ttl).await.unwrap().is_none(), "held by a");
    assert!(
        a.try_lock("w", ttl).await.unwrap().is_none(),
        "not re-entrant either"
    );
    // Other workers are independent, also unregistered ones.
    let other = b
        .try_lock("never-registered", ttl)
        .await
        .unwrap()
        .expect("other worker");
    // The holder's own writes to the worker are not blocked by its lock.
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        db.reserve_batch(
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
}

#[tokio::test]
async fn lock_expires_after_ttl() {
    let Some(db) = common::setup("lock_expires_after_ttl").await else {
        return;
    };
    let a = PostgresLocks::new(&db.repo);
    let b = PostgresLocks::new(&db.repo);
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
}
