//! Issue 10 case 12: a statement whose caller is gone must not commit behind the caller's back.
//!
//! Each test holds a worker's row lock in a transaction of its own, so a reserve waits on the
//! server; then the caller gives up (drops the call), or the backend is terminated, and the test
//! checks what the caller was told against what the store holds once the lock is released.
//! Backends are found by an `application_name` unique to the test; only the test's own
//! connections are ever terminated. Needs `DATABASE_URL`; each test works in its own schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
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

fn app_name(test: &str) -> String {
    format!("{test}-{}", sched_tests::ns::random_hex())
}

/// The caller drops a reserve (its own timeout) while the statement waits on a row lock. The
/// abandoned statement must not commit once the lock is released: the repository closes the
/// connection of an abandoned call, and the server, checking the client connection while the
/// statement waits, aborts it.
#[tokio::test]
async fn abandoned_reserve_never_commits_later() {
    let test = "abandoned_reserve_never_commits_later";
    let app = app_name("sched-abandon");
    let Some(db) = common::setup_with(test, |c| c.with_application_name(&app)).await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let mut holder = db.hold_worker_row("w").await;
    let mut admin = db.raw().await;
    let batch = one("w", "c");
    let call = db.reserve_batch(&batch, CommitMode::AllOrNothing);
    let waited = tokio::time::timeout(Duration::from_millis(300), call).await;
    assert!(waited.is_err(), "the call was still waiting: {waited:?}");
    // The caller has been told it failed. Give the server time to notice (its connection check
    // runs every second; 8 s is far beyond it) before the lock goes away.
    let gone = common::wait_until_idle(&mut admin, &app, Duration::from_secs(8)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    // Whatever is still running may finish now.
    assert!(common::wait_until_idle(&mut admin, &app, Duration::from_secs(10)).await);
    let held = db.find_reservation("c").await.unwrap();
    assert!(
        held.is_none(),
        "the abandoned reserve committed after its caller gave up (server noticed: {gone}): \
         {held:?}"
    );
    let w = db.get_worker("w").await.unwrap().unwrap();
    assert_eq!(w.free, Resources::cpu_mem(1000, 1000));
    assert!(gone, "the server ended the abandoned statement");
}

/// `pg_terminate_backend` of the connection running a reserve (waiting on a row lock) is
/// `Ambiguous` for the caller, never `Unavailable`; `find_reservations` then resolves it, and
/// its answer holds after the lock is released.
#[tokio::test]
async fn terminated_backend_mid_reserve_is_ambiguous_and_a_lookup_resolves_it() {
    let test = "terminated_backend_mid_reserve";
    let app = app_name("sched-terminate-one");
    let Some(db) = common::setup_with(test, |c| c.with_application_name(&app)).await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let mut holder = db.hold_worker_row("w").await;
    let repo = db.repo.clone();
    let call = tokio::spawn(async move {
        repo.reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
            .await
    });
    let mut admin = db.raw().await;
    let pid = common::wait_for_lock_waiter(&mut admin, &app).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    let err = call
        .await
        .unwrap()
        .expect_err("its connection was terminated");
    assert!(
        err.is_ambiguous(),
        "may have applied, so Ambiguous: {err:?}"
    );
    let looked = db.find_reservations(&["c".to_owned()]).await.unwrap();
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert!(common::wait_until_idle(&mut admin, &app, Duration::from_secs(10)).await);
    assert_eq!(looked, vec![None], "terminated before it could commit");
    assert_eq!(
        db.find_reservations(&["c".to_owned()]).await.unwrap(),
        looked,
        "the lookup's answer is final"
    );
    assert!(db.audit("w").await.unwrap().is_consistent());
    // The pool recovers: the next call works.
    let out = db
        .reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok());
}

/// The repository's own client-side `call_timeout` passes while a reserve waits on a row lock:
/// the caller gets `Ambiguous` (a commit at that very moment cannot be ruled out), not
/// `Unavailable`. The connection was closed and the call returned only after the server's
/// client check had time to run, so a lookup made right away — with the lock released at once —
/// is final.
#[tokio::test]
async fn call_timeout_is_ambiguous_and_a_lookup_right_after_is_final() {
    let test = "call_timeout_is_ambiguous";
    let app = app_name("sched-call-timeout");
    let Some(db) = common::setup_with(test, |c| {
        c.with_application_name(&app)
            .with_call_timeout(Some(Duration::from_millis(300)))
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
        .expect_err("no answer within the call timeout");
    assert!(err.is_ambiguous(), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let looked = db.find_reservation("c").await.unwrap();
    assert_eq!(looked, None, "it never got the lock");
    let mut admin = db.raw().await;
    assert!(common::wait_until_idle(&mut admin, &app, Duration::from_secs(10)).await);
    assert_eq!(
        db.find_reservation("c").await.unwrap(),
        None,
        "the lookup's answer is final: the abandoned statement did not commit later"
    );
    assert_eq!(
        db.get_worker("w").await.unwrap().unwrap().free,
        Resources::cpu_mem(1000, 1000)
    );
    // Placing it again works; the timed-out connection was replaced.
    let out = db
        .reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok());
}
