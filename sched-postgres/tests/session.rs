//! Issue 10 case 11: the session settings the SQL functions rely on are pinned on every pooled
//! connection, whatever the server, database, role or URL default is.
//!
//! A `repeatable read` server default is simulated without touching the server: the
//! repository's URL carries the startup option `options[default_transaction_isolation]=
//! repeatable read` (what `PGOPTIONS`, `ALTER ROLE … SET` or `postgresql.conf` would do; a
//! startup option ranks above all of those, and the repository's own pinned options come after
//! the URL's, so they win). Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;

/// The URL query that makes every connection start with a `repeatable read` default.
const REPEATABLE_READ: &str = "options%5Bdefault_transaction_isolation%5D=repeatable%20read";

fn one(worker: &str, container: &str) -> Vec<CapacityReservation> {
    vec![CapacityReservation::new(
        worker,
        vec![ResourceReservation::new(
            container,
            Resources::cpu_mem(10, 10),
        )],
    )]
}

async fn show(c: &mut PgConnection, setting: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
        .fetch_one(c)
        .await
        .unwrap()
}

/// The simulated default is real (a plain connection from the same URL is `repeatable read`),
/// and every pooled connection of the repository is `read committed` anyway.
#[tokio::test]
async fn pooled_connections_are_read_committed_whatever_the_url_says() {
    let test = "pooled_connections_are_read_committed";
    let Some(db) = common::setup_url(test, REPEATABLE_READ, |c| c).await else {
        return;
    };
    let mut plain = PgConnection::connect(&common::with_query(db.url(), REPEATABLE_READ))
        .await
        .unwrap();
    assert_eq!(
        show(&mut plain, "transaction_isolation").await,
        "repeatable read"
    );
    plain.close().await.unwrap();
    // Every connection the pool opens (several at once, so more than one is checked).
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(db.repo.pool().acquire().await.unwrap());
    }
    for c in &mut conns {
        assert_eq!(
            show(c, "transaction_isolation").await,
            "read committed",
            "the pool pins the isolation level the functions assume"
        );
        assert_eq!(
            show(c, "default_transaction_isolation").await,
            "read committed"
        );
    }
}

/// A reserve that waits for a worker row another transaction updates and commits: under
/// `read committed` it proceeds on the new row version; under a `repeatable read` default it
/// fails with a serialization failure (and with no retries left, the call fails).
#[tokio::test]
async fn reserve_racing_a_commit_under_a_repeatable_read_default() {
    let test = "reserve_racing_a_commit_under_a_repeatable_read_default";
    let app = format!("sched-rr-{}", sched_tests::ns::random_hex());
    let Some(db) = common::setup_url(test, REPEATABLE_READ, |c| {
        c.with_application_name(&app).with_max_retries(0)
    })
    .await
    else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let mut other = db.raw().await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("UPDATE workers SET priority = priority + 1 WHERE id = 'w'")
        .execute(&mut other)
        .await
        .unwrap();
    let repo = db.repo.clone();
    let call = tokio::spawn(async move {
        repo.reserve_batch(&one("w", "c"), CommitMode::Partial)
            .await
    });
    let mut admin = db.raw().await;
    common::wait_for_lock_waiter(&mut admin, &app).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let out = call
        .await
        .unwrap()
        .expect("the reserve proceeds on the committed row");
    assert!(out[0].outcome.is_ok(), "{out:?}");
    assert_eq!(
        db.find_reservation("c").await.unwrap().unwrap().worker_id,
        "w"
    );
    assert!(db.audit("w").await.unwrap().is_consistent());
}

/// Many callers racing reserves on one worker (each commit is a concurrent update for the
/// others) under a `repeatable read` default, with the default retry budget: every call
/// commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reserves_under_a_repeatable_read_default_all_commit() {
    let test = "racing_reserves_under_a_repeatable_read_default";
    let Some(db) = common::setup_url(test, REPEATABLE_READ, |c| c).await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(100_000, 100_000)))
        .await
        .unwrap();
    let db = Arc::new(db);
    let tasks: Vec<_> = (0..12)
        .map(|t| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for i in 0..15 {
                    let c = format!("c-{t}-{i}");
                    match db.reserve_batch(&one("w", &c), CommitMode::Partial).await {
                        Ok(out) => assert!(out[0].outcome.is_ok(), "{out:?}"),
                        Err(e) => failed.push(format!("{c}: {e}")),
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of 180 reserves failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let a = db.audit("w").await.unwrap();
    assert!(a.is_consistent(), "{a:?}");
    assert_eq!(a.reservations, 180);
}

/// The timeouts are pinned too: values the URL asks for are overridden by the configured ones.
#[tokio::test]
async fn pooled_connections_carry_the_configured_timeouts() {
    let test = "pooled_connections_carry_the_configured_timeouts";
    let url_asks = "options=-c%20lock_timeout%3D0%20-c%20idle_in_transaction_session_timeout%3D0\
                    %20-c%20client_connection_check_interval%3D0";
    let Some(db) = common::setup_url(test, url_asks, |c| {
        c.with_lock_timeout(Some(std::time::Duration::from_millis(2500)))
            .with_idle_in_transaction_timeout(Some(std::time::Duration::from_secs(90)))
            .with_client_connection_check_interval(Some(std::time::Duration::from_millis(500)))
            .with_statement_timeout(Some(std::time::Duration::from_secs(20)))
    })
    .await
    else {
        return;
    };
    let mut c = db.repo.pool().acquire().await.unwrap();
    assert_eq!(show(&mut c, "lock_timeout").await, "2500ms");
    assert_eq!(
        show(&mut c, "idle_in_transaction_session_timeout").await,
        "90s"
    );
    assert_eq!(
        show(&mut c, "client_connection_check_interval").await,
        "500ms"
    );
    assert_eq!(show(&mut c, "statement_timeout").await, "20s");
    assert_eq!(
        show(&mut c, "transaction_isolation").await,
        "read committed"
    );
    assert_eq!(show(&mut c, "search_path").await, db.schema());
}
