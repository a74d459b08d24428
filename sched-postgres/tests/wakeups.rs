//! Wake-ups over LISTEN/NOTIFY: a committed reserve wakes its worker's listeners (and nobody
//! else's, in this schema or another), the ledger watch sees the reservation long before its
//! periodic re-read, long schema names get a hashed channel, and dropping the stream closes
//! its connection. Needs `DATABASE_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use futures::StreamExt;
use sched_core::watch::{watch_reservations, ReservationEvent, Wakeups, WatchConfig};
use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;

const TOTAL: Resources = Resources::cpu_mem(1000, 1000);
/// Long enough for a notification on a loaded machine; short next to a 60 s re-read.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long we wait to be sure that nothing comes.
const QUIET: Duration = Duration::from_millis(700);

async fn reserve(repo: &impl WorkerRepository, w: &str, c: &str) {
    let r = ResourceReservation::new(c, Resources::cpu_mem(1, 1));
    let out = repo
        .reserve_batch(&[CapacityReservation::new(w, vec![r])], CommitMode::Partial)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok(), "{out:?}");
}

async fn woken(w: &mut Wakeups, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, w.next()).await, Ok(Some(())))
}

async fn channel(repo: &PostgresRepository) -> String {
    sqlx::query_scalar("SELECT sched_wake_channel()")
        .fetch_one(repo.pool())
        .await
        .unwrap()
}

/// Pids of backends whose last statement was `LISTEN` on `chan`.
async fn listeners(raw: &mut PgConnection, chan: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE query = $1")
        .bind(format!("LISTEN \"{chan}\""))
        .fetch_all(&mut *raw)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_wakes_its_worker_and_the_watch_sees_it() {
    let Some(db) = common::setup("a_reserve_wakes_its_worker_and_the_watch_sees_it").await else {
        return;
    };
    let Some(elsewhere) = common::setup("wakeups_elsewhere").await else {
        return;
    };
    for w in ["a", "b"] {
        db.repo
            .register_worker(&WorkerSpec::new(w, TOTAL))
            .await
            .unwrap();
    }
    elsewhere
        .repo
        .register_worker(&WorkerSpec::new("a", TOTAL))
        .await
        .unwrap();
    let before = db.repo.counters().snapshot();
    let mut wake_a = db.repo.reservation_wakeups("a").await.unwrap();
    let after = db.repo.counters().snapshot();
    assert_eq!(
        after.round_trips - before.round_trips,
        2,
        "a subscription: the channel name and LISTEN"
    );

    // Another worker, or the same worker id in another schema: not ours.
    reserve(&db.repo, "b", "b1").await;
    reserve(&elsewhere.repo, "a", "x1").await;
    assert!(
        !woken(&mut wake_a, QUIET).await,
        "woken by someone else's reserve"
    );
    // A rejected reserve commits nothing and sends nothing.
    let big = ResourceReservation::new("huge", Resources::cpu_mem(5000, 1));
    db.repo
        .reserve_batch(
            &[CapacityReservation::new("a", vec![big])],
            CommitMode::Partial,
        )
        .await
        .unwrap();
    assert!(
        !woken(&mut wake_a, QUIET).await,
        "woken by a rejected reserve"
    );
    // Ours, from another pool.
    let other = db.another().await;
    reserve(&other, "a", "a1").await;
    assert!(
        woken(&mut wake_a, ARRIVES).await,
        "no wake-up after a commit on a"
    );

    // The watch: with a 60 s re-read, only a wake-up can bring the new reservation quickly.
    let repo = Arc::new(db.repo.clone());
    let config = WatchConfig::new(Duration::from_secs(60), Duration::from_millis(200));
    let mut watch = watch_reservations(repo, "a", config);
    match tokio::time::timeout(ARRIVES, watch.next()).await {
        Ok(Some(Ok(ReservationEvent::Added(r)))) => assert_eq!(r.container_id, "a1"),
        other => panic!("the first read reports the ledger: {other:?}"),
    }
    let started = std::time::Instant::now();
    reserve(&other, "a", "a2").await;
    match tokio::time::timeout(ARRIVES, watch.next()).await {
        Ok(Some(Ok(ReservationEvent::Added(r)))) => assert_eq!(r.container_id, "a2"),
        other => panic!("the watch must report a2 after the wake-up: {other:?}"),
    }
    println!("watch saw the reserve after {:?}", started.elapsed());
    other.release_batch(&["a2".to_owned()]).await.unwrap();
    reserve(&other, "a", "a3").await;
    let mut events = Vec::new();
    while events.len() < 2 {
        match tokio::time::timeout(ARRIVES, watch.next()).await {
            Ok(Some(Ok(e))) => events.push(e),
            other => panic!("watch: {other:?}"),
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ReservationEvent::Removed(r) if r.container_id == "a2"))
            && events
                .iter()
                .any(|e| matches!(e, ReservationEvent::Added(r) if r.container_id == "a3")),
        "{events:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_its_connection() {
    let Some(db) = common::setup("dropping_the_stream_closes_its_connection").await else {
        return;
    };
    db.repo
        .register_worker(&WorkerSpec::new("a", TOTAL))
        .await
        .unwrap();
    let chan = channel(&db.repo).await;
    assert_eq!(chan, format!("sched_wake_{}", db.schema()));
    let mut raw = db.raw().await;
    let size = db.repo.pool().size();
    let wake = db.repo.reservation_wakeups("a").await.unwrap();
    let pids = listeners(&mut raw, &chan).await;
    assert_eq!(pids.len(), 1, "one dedicated listening connection");
    assert_eq!(db.repo.pool().size(), size, "not a connection of the pool");
    drop(wake);
    let pid = pids[0];
    let mut gone = false;
    for _ in 0..250 {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(&mut raw)
                .await
                .unwrap();
        if !alive {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the listener's backend {pid} outlived the stream");
}

/// Schemas of 63 bytes sharing a long prefix: hashed channels, distinct, within the
/// identifier limit, and working.
#[tokio::test]
async fn long_schema_names_get_distinct_hashed_channels() {
    let Some(url) = sched_tests::env::require_url(common::VAR, "long_schema") else {
        return;
    };
    let prefix = format!("sched_test_{}_", sched_tests::ns::random_hex());
    let mut repos = Vec::new();
    for tail in ["x", "y"] {
        let schema = format!("{prefix:_<62}{tail}");
        assert_eq!(schema.len(), 63);
        let config = PostgresConfig::from_url(&url)
            .unwrap()
            .with_schema(&schema)
            .unwrap();
        let repo = PostgresRepository::connect(config).await.unwrap();
        repo.migrate().await.unwrap();
        repo.register_worker(&WorkerSpec::new("a", TOTAL))
            .await
            .unwrap();
        repos.push(repo);
    }
    let chans = [channel(&repos[0]).await, channel(&repos[1]).await];
    assert_ne!(chans[0], chans[1]);
    for c in &chans {
        assert!(c.len() <= 63 && c.starts_with("sched_wake_"), "{c}");
    }
    let mut wake_x = repos[0].reservation_wakeups("a").await.unwrap();
    reserve(&repos[1], "a", "y1").await;
    assert!(!woken(&mut wake_x, QUIET).await, "heard the other schema");
    reserve(&repos[0], "a", "x1").await;
    assert!(woken(&mut wake_x, ARRIVES).await);
    drop(wake_x);
    for r in &repos {
        r.drop_schema().await.unwrap();
    }
}

/// A wake-up stream that outlives its runtime (held in a struct dropped after shutdown, or
/// handed to a plain thread) drops without a panic. sqlx's `PgListener::drop` spawns on the
/// current runtime and panicked here ("this functionality requires a Tokio context").
#[test]
fn a_stream_dropped_outside_any_runtime_does_not_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((db, wake)) = rt.block_on(async {
        let db = common::setup("a_stream_dropped_outside_any_runtime_does_not_panic").await?;
        db.repo
            .register_worker(&WorkerSpec::new("a", TOTAL))
            .await
            .unwrap();
        let wake = db.repo.reservation_wakeups("a").await.unwrap();
        Some((db, wake))
    }) else {
        return;
    };
    drop(rt);
    assert!(tokio::runtime::Handle::try_current().is_err());
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(wake)));
    assert!(dropped.is_ok(), "dropping the stream panicked");
    // Dropped inside a runtime, it still closes its connection (the other tests check that).
    drop(db);
}
