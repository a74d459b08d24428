//! The lifecycle on the memory store with a manual clock: deterministic leases, staleness, the
//! scheduler skipping a stale worker, and wake-ups driving `watch_reservations`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use sched_core::watch::{watch_reservations, ReservationEvent, WatchConfig};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, ExpiryReason, RenewOutcome,
    ResourceReservation, Resources, Scheduler, StalePolicy, WorkerRepository, WorkerSpec,
};
use sched_memory::{Clock, ManualClock, MemoryRepository};
use std::sync::Arc;
use std::time::Duration;

const T: Resources = Resources::cpu_mem(1000, 1000);
const ONE: Resources = Resources::cpu_mem(100, 100);

async fn repo(clock: &ManualClock, specs: Vec<WorkerSpec>) -> MemoryRepository {
    let mut b = MemoryRepository::builder().clock(Clock::Manual(clock.clone()));
    for s in specs {
        b = b.worker(s);
    }
    b.build().await
}

fn leased(id: &str, ms: u64) -> ResourceReservation {
    ResourceReservation::new(id, ONE).with_lease(Duration::from_millis(ms))
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_lease_lives_until_its_deadline_by_the_store_clock() {
    let clock = ManualClock::new(10_000);
    let repo = repo(&clock, vec![WorkerSpec::new("w", T)]).await;
    let part = CapacityReservation::new(
        "w",
        vec![leased("a", 500), ResourceReservation::new("b", ONE)],
    );
    assert!(repo
        .reserve_batch(&[part], CommitMode::AllOrNothing)
        .await
        .unwrap()[0]
        .outcome
        .is_ok());
    let a = repo.find_reservation("a").await.unwrap().unwrap();
    assert_eq!(a.lease_expires_at_ms, Some(10_500));

    clock.advance(Duration::from_millis(499));
    assert!(repo.expire_leases("w").await.unwrap().expired.is_empty());
    let r = repo
        .renew_leases("w", &ids(&["a", "b"]), 1_000)
        .await
        .unwrap();
    assert_eq!(
        r[0].outcome,
        RenewOutcome::Renewed {
            expires_at_ms: 11_499
        }
    );
    assert_eq!(r[1].outcome, RenewOutcome::NoLease);

    clock.advance(Duration::from_millis(1_000));
    // Due but not yet swept: still held, no longer renewable.
    assert!(repo.find_reservation("a").await.unwrap().is_some());
    let r = repo.renew_leases("w", &ids(&["a"]), 1_000).await.unwrap();
    assert_eq!(
        r[0].outcome,
        RenewOutcome::Expired {
            reason: ExpiryReason::LeaseExpired
        }
    );
    let sweep = repo.expire_leases("w").await.unwrap();
    assert_eq!(sweep.swept_at_ms, 11_499);
    assert_eq!(sweep.expired.len(), 1);
    assert_eq!(sweep.returned(), ONE);
    assert!(repo.find_reservation("a").await.unwrap().is_none());
    assert!(repo.find_reservation("b").await.unwrap().is_some());
    assert!(repo.audit("w").await.unwrap().is_consistent());
    // Its id is free again.
    let again = CapacityReservation::new("w", vec![leased("a", 500)]);
    assert!(repo
        .reserve_batch(&[again], CommitMode::AllOrNothing)
        .await
        .unwrap()[0]
        .outcome
        .is_ok());
}

#[tokio::test]
async fn the_scheduler_skips_a_stale_worker_and_the_sweep_follows_its_policy() {
    let clock = ManualClock::new(0);
    let hb = Duration::from_millis(1_000);
    let repo = Arc::new(
        repo(
            &clock,
            vec![
                WorkerSpec::new("keep", T)
                    .with_heartbeat_timeout(hb)
                    .with_priority(9),
                WorkerSpec::new("drop", T)
                    .with_heartbeat_timeout(hb)
                    .with_stale_policy(StalePolicy::Release)
                    .with_priority(9),
                WorkerSpec::new("plain", T),
            ],
        )
        .await,
    );
    let part =
        |w: &str, c: &str| CapacityReservation::new(w, vec![ResourceReservation::new(c, ONE)]);
    repo.reserve_batch(
        &[part("keep", "k"), part("drop", "d")],
        CommitMode::AllOrNothing,
    )
    .await
    .unwrap();
    clock.advance(Duration::from_millis(1_001));
    let workers = repo.list_workers(None).await.unwrap();
    let stale: Vec<_> = workers
        .iter()
        .filter(|w| w.stale)
        .map(|w| w.id.as_str())
        .collect();
    assert_eq!(stale, ["drop", "keep"]);

    // Preferred by priority, yet stale: the scheduler places on the live worker.
    let sched = Scheduler::new(Arc::clone(&repo), sched_core::SchedulerConfig::default());
    let p = sched
        .schedule(ContainerRequest::new("new", ONE))
        .await
        .unwrap();
    assert_eq!(p.worker_id, "plain");

    let keep = repo.expire_leases("keep").await.unwrap();
    let drop = repo.expire_leases("drop").await.unwrap();
    assert!(keep.expired.is_empty());
    assert_eq!(drop.expired[0].reason, ExpiryReason::WorkerStale);
    assert_eq!(drop.free, T);

    let beat = repo.heartbeat("keep").await.unwrap();
    assert!(beat.was_stale);
    assert!(!repo.get_worker("keep").await.unwrap().unwrap().stale);
}

#[tokio::test]
async fn the_watch_is_woken_by_commits_not_by_its_resync_period() {
    let clock = ManualClock::new(0);
    let repo = Arc::new(
        repo(
            &clock,
            vec![WorkerSpec::new("w", T), WorkerSpec::new("v", T)],
        )
        .await,
    );
    let part =
        |w: &str, c: &str| CapacityReservation::new(w, vec![ResourceReservation::new(c, ONE)]);
    repo.reserve_batch(&[part("w", "before")], CommitMode::AllOrNothing)
        .await
        .unwrap();
    let config = WatchConfig::new(Duration::from_secs(3600), Duration::from_secs(3600));
    let mut watch = watch_reservations(Arc::clone(&repo), "w", config);
    let first = watch.next().await.unwrap().unwrap();
    assert!(matches!(first, ReservationEvent::Added(r) if r.container_id == "before"));

    let next = tokio::spawn(async move {
        let e = watch.next().await.unwrap().unwrap();
        (e, watch)
    });
    // A commit on another worker does not produce an event; one on this worker does.
    repo.reserve_batch(&[part("v", "elsewhere")], CommitMode::AllOrNothing)
        .await
        .unwrap();
    repo.reserve_batch(&[part("w", "after")], CommitMode::AllOrNothing)
        .await
        .unwrap();
    let (e, mut watch) = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&e, ReservationEvent::Added(r) if r.container_id == "after"),
        "{e:?}"
    );

    // Bulk release is seen at the next read (the watch re-reads on the next wake-up).
    let released = repo.release_worker("w").await.unwrap();
    assert_eq!(released.released.len(), 2);
    repo.reserve_batch(&[part("w", "third")], CommitMode::AllOrNothing)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(e);
    }
    let removed: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            ReservationEvent::Removed(r) => Some(r.container_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["after", "before"]);
    assert!(matches!(&seen[2], ReservationEvent::Added(r) if r.container_id == "third"));
}

#[tokio::test]
async fn lifecycle_calls_refuse_bad_input_and_unknown_workers() {
    let clock = ManualClock::new(0);
    let repo = repo(&clock, vec![WorkerSpec::new("w", T)]).await;
    assert!(matches!(
        repo.renew_leases("w", &ids(&["a"]), 0).await,
        Err(sched_core::RepoError::InvalidInput(_))
    ));
    assert!(matches!(
        repo.renew_leases("w", &ids(&["a", "a"]), 10).await,
        Err(sched_core::RepoError::InvalidInput(_))
    ));
    for r in [
        repo.expire_leases("ghost").await.err(),
        repo.heartbeat("ghost").await.err(),
        repo.release_worker("ghost").await.err(),
        repo.set_worker_status("ghost", sched_core::WorkerStatus::Draining)
            .await
            .err(),
    ] {
        assert!(
            matches!(r, Some(sched_core::RepoError::UnknownWorker(ref w)) if w == "ghost"),
            "{r:?}"
        );
    }
    let bad = CapacityReservation::new(
        "w",
        vec![leased("a", sched_core::lifecycle::MAX_LEASE_MS + 1)],
    );
    assert!(repo
        .reserve_batch(&[bad], CommitMode::AllOrNothing)
        .await
        .is_err());
    assert!(repo.list_reservations("w").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_worker_that_goes_stale_after_the_snapshot_is_refused_and_replanned() {
    let clock = ManualClock::new(0);
    let hb = Duration::from_millis(1_000);
    let repo = Arc::new(
        repo(
            &clock,
            vec![
                WorkerSpec::new("preferred", T)
                    .with_heartbeat_timeout(hb)
                    .with_priority(9),
                WorkerSpec::new("fallback", T),
            ],
        )
        .await,
    );
    let sched = Scheduler::new(Arc::clone(&repo), sched_core::SchedulerConfig::default());
    let first = sched
        .schedule(ContainerRequest::new("one", ONE))
        .await
        .unwrap();
    assert_eq!(first.worker_id, "preferred");
    // The scheduler's snapshot still shows "preferred" fresh; the store's clock says otherwise.
    clock.advance(Duration::from_millis(1_001));
    let second = sched
        .schedule(ContainerRequest::new("two", ONE))
        .await
        .unwrap();
    assert_eq!(second.worker_id, "fallback");
    assert!(
        second.attempts > 1,
        "the stale worker was tried first: {second:?}"
    );
    assert!(
        repo.find_reservation("two")
            .await
            .unwrap()
            .unwrap()
            .worker_id
            == "fallback"
    );
}

#[tokio::test]
async fn the_sweeper_expires_due_leases_in_the_background() {
    let clock = ManualClock::new(0);
    let repo = Arc::new(repo(&clock, vec![WorkerSpec::new("w", T)]).await);
    let part = CapacityReservation::new("w", vec![leased("due", 100), leased("later", 10_000)]);
    repo.reserve_batch(&[part], CommitMode::AllOrNothing)
        .await
        .unwrap();
    let sweeper =
        sched_core::lifecycle::Sweeper::spawn(Arc::clone(&repo), None, Duration::from_millis(5));
    clock.advance(Duration::from_millis(100));
    let gone = async {
        while repo.find_reservation("due").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .unwrap();
    sweeper.stop();
    assert!(repo.find_reservation("later").await.unwrap().is_some());
    assert_eq!(
        repo.get_worker("w").await.unwrap().unwrap().free,
        T.saturating_sub(&ONE)
    );
}
