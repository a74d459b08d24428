//! What each failure tells the caller must be true: `Unavailable` only when nothing was applied
//! (never sent, or the server rolled it back), `Ambiguous` when it may have been. Lost replies,
//! killed connections and terminated backends are in `faults.rs`, `abandoned.rs` and
//! `terminate.rs`. Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, RepoError, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};
use std::time::Duration;

fn one(worker: &str, container: &str) -> Vec<CapacityReservation> {
    vec![CapacityReservation::new(
        worker,
        vec![ResourceReservation::new(
            container,
            Resources::cpu_mem(100, 100),
        )],
    )]
}

/// A reserve that waits for a worker row longer than `lock_timeout` is rolled back by the server:
/// `Unavailable`, and nothing was applied.
#[tokio::test]
async fn lock_timeout_is_unavailable_and_not_applied() {
    let Some(db) = common::setup_with("lock_timeout_is_unavailable", |c| {
        c.with_lock_timeout(Some(Duration::from_millis(200)))
    })
    .await
    else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let mut holder = db.hold_worker_row("w").await;
    let err = db
        .reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("lock timeout"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert!(db.find_reservation("c").await.unwrap().is_none());
    assert_eq!(
        db.get_worker("w").await.unwrap().unwrap().free,
        Resources::cpu_mem(1000, 1000)
    );
}

/// Every pooled connection is busy past the acquire timeout: nothing was sent, `Unavailable`.
#[tokio::test]
async fn exhausted_pool_is_unavailable() {
    let Some(db) = common::setup_with("exhausted_pool_is_unavailable", |c| {
        c.with_max_connections(1)
            .with_acquire_timeout(Duration::from_millis(200))
    })
    .await
    else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let busy = db.repo.pool().acquire().await.unwrap();
    let err = db
        .reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    drop(busy);
    assert!(db.find_reservation("c").await.unwrap().is_none());
}

/// A read that gets no answer within the call timeout (here: the test holds an exclusive lock on
/// the ledger table) changed nothing: `Unavailable`, not `Ambiguous`.
#[tokio::test]
async fn read_past_the_call_timeout_is_unavailable() {
    let Some(db) = common::setup_with("read_past_the_call_timeout", |c| {
        c.with_call_timeout(Some(Duration::from_millis(300)))
    })
    .await
    else {
        return;
    };
    let mut holder = db.raw().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE reservations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let err = db.find_reservation("c").await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert!(db.find_reservation("c").await.unwrap().is_none());
}
