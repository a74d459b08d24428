//! Hand-off notifications: `reservation_wakeups` and the ledger-driven `watch_reservations`.

use super::fixture::Fixture;
use super::support::{committed, cr, release, res, reserve1, rr};
use futures::StreamExt;
use sched_core::watch::{watch_reservations, ReservationEvent, ReservationWatch, WatchConfig};
use sched_core::{CommitMode, WorkerRepository};
use std::time::Duration;

/// This topic's checks, in run order (see `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_handoff {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_wakeups_follow_commits
            check_watch_reports_the_ledger_and_its_changes
        }
    };
}

/// How long a wake-up may take to arrive.
const PATIENCE: Duration = Duration::from_secs(10);

/// A watch that never re-reads on its own within a check: every event after the first read
/// must come from a wake-up.
const WAKE_ONLY: WatchConfig =
    WatchConfig::new(Duration::from_secs(3600), Duration::from_millis(200));

async fn next_event(watch: &mut ReservationWatch<'_>, ctx: &str) -> ReservationEvent {
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("{ctx}: the watch failed: {e}"),
        Ok(None) => panic!("{ctx}: the watch ended"),
        Err(_) => panic!("{ctx}: no event within {PATIENCE:?} (are wake-ups sent on commit?)"),
    }
}

/// A subscription made before a commit on its worker wakes up after it.
pub async fn check_wakeups_follow_commits(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "handoff-wake");
    let ns = fx.ns();
    let w = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let mut wake = repo
        .reservation_wakeups(&w)
        .await
        .unwrap_or_else(|e| panic!("reservation_wakeups failed: {e}"));
    committed(
        reserve1(
            repo,
            cr(&w, vec![rr(&ns.container("c"), res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    match tokio::time::timeout(PATIENCE, wake.next()).await {
        Ok(Some(())) => {}
        Ok(None) => panic!("the wake-up stream ended instead of waking"),
        Err(_) => panic!("no wake-up within {PATIENCE:?} after a commit on the worker"),
    }
    drop(wake);
    fx.finish().await;
}

/// The watch first reports what the ledger already holds (a watcher that was away loses
/// nothing), then each new reservation as it is committed, and what went at the next read.
pub async fn check_watch_reports_the_ledger_and_its_changes(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "handoff-watch");
    let ns = fx.ns();
    let (w, v) = (ns.worker("a"), ns.worker("b"));
    fx.worker("a", res(1000, 1000, 0)).await;
    fx.worker("b", res(1000, 1000, 0)).await;
    let (early, late, third) = (
        ns.container("early"),
        ns.container("late"),
        ns.container("third"),
    );
    committed(
        reserve1(
            repo,
            cr(&w, vec![rr(&early, res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve before the watch",
    );
    let mut watch = watch_reservations(repo, w.clone(), WAKE_ONLY);
    match next_event(&mut watch, "first read").await {
        ReservationEvent::Added(r) => {
            assert_eq!((r.container_id, r.worker_id), (early.clone(), w.clone()))
        }
        e => panic!("first read: expected Added(early), got {e:?}"),
    }
    // The watch is waiting now; commits wake it.
    let (event, ()) = futures::join!(next_event(&mut watch, "after a commit"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        committed(
            reserve1(
                repo,
                cr(&v, vec![rr(&ns.container("elsewhere"), res(1, 1, 0))]),
                CommitMode::AllOrNothing,
            )
            .await,
            "reserve on another worker",
        );
        committed(
            reserve1(
                repo,
                cr(&w, vec![rr(&late, res(2, 2, 0))]),
                CommitMode::AllOrNothing,
            )
            .await,
            "reserve while watched",
        );
    });
    match event {
        ReservationEvent::Added(r) => {
            assert_eq!(
                (r.container_id.as_str(), r.resources),
                (late.as_str(), res(2, 2, 0))
            )
        }
        e => panic!("expected Added(late), got {e:?}"),
    }
    assert!(release(repo, std::slice::from_ref(&early)).await[0]
        .released
        .is_some());
    let (events, ()) = futures::join!(
        async {
            let mut got = Vec::new();
            while got.len() < 2 {
                got.push(next_event(&mut watch, "after release + commit").await);
            }
            got
        },
        async {
            committed(
                reserve1(
                    repo,
                    cr(&w, vec![rr(&third, res(3, 3, 0))]),
                    CommitMode::AllOrNothing,
                )
                .await,
                "reserve the third",
            );
        }
    );
    assert!(
        events.contains(&ReservationEvent::Removed(sched_core::ReservationRecord {
            worker_id: w.clone(),
            container_id: early.clone(),
            resources: res(1, 1, 0),
            gpu_type: None,
            lease_expires_at_ms: None,
        })),
        "the released container is reported gone: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ReservationEvent::Added(r) if r.container_id == third)),
        "the new reservation is reported: {events:?}"
    );
    drop(watch);
    fx.finish().await;
}
