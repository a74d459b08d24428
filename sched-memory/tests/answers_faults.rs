//! Issue 10, cases 6 and 7 on the in-memory backend: a commit whose outcome is unknown and a
//! caller that is gone never leave an answer that disagrees with the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sched_core::layers::{Op, Select};
use sched_core::{Resources, ScheduleError, Scheduler, SchedulerConfig, WorkerRepository};
use sched_memory::{Fault, MemoryRepository};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Case 6: a lost commit reply whose lookup fails
// ---------------------------------------------------------------------------------------------

/// The commit applies but its reply is lost, and every lookup fails: the worker is full, so a
/// re-plan finds no room. The answer must be `Ambiguous` (or Ok, held), never `NoCapacity`.
#[tokio::test]
async fn lost_reply_and_failing_lookups_end_ambiguous_never_no_capacity() {
    let repo = repo(1, Resources::cpu_mem(500, 1024)).await;
    let sched = Scheduler::new(repo.clone(), quick());
    repo.faults().on(Op::Reserve, Fault::LoseReply, 1);
    repo.faults().on(Op::Find, Fault::Fail, 1000);
    let reqs = vec![req("a", SMALL), req("b", SMALL)];
    let answers = sched.schedule_batch(reqs.clone()).await;
    repo.faults().clear();
    for (r, a) in reqs.iter().zip(&answers) {
        match a {
            Err(e @ ScheduleError::Ambiguous { .. }) => {
                assert!(e.may_be_held());
                assert_eq!(e.container_id(), r.id);
            }
            other => panic!("{}: expected Ambiguous, got {other:?}", r.id),
        }
        assert_agrees(&repo, r, a).await;
    }
    assert_no_drift(&repo).await;
}

/// A few lookups fail, then one succeeds: the bounded lookup retries resolve the doubt.
#[tokio::test]
async fn lost_reply_resolved_by_retried_lookups() {
    let repo = repo(1, Resources::cpu_mem(500, 1024)).await;
    let sched = Scheduler::new(repo.clone(), quick());
    repo.faults().on(Op::Reserve, Fault::LoseReply, 1);
    repo.faults().on(Op::Find, Fault::Fail, 2);
    let reqs = vec![req("a", SMALL), req("b", SMALL)];
    let answers = sched.schedule_batch(reqs.clone()).await;
    for (r, a) in reqs.iter().zip(&answers) {
        assert!(a.is_ok(), "{}: {a:?}", r.id);
        assert_agrees(&repo, r, a).await;
    }
    assert_no_drift(&repo).await;
}

/// Random mixes of lost replies and failing lookups: every answer agrees with the store.
#[tokio::test]
async fn lost_replies_and_failing_lookups_always_agree_with_the_store() {
    for (lost, fails) in [(1, 1), (1, 3), (2, 5), (3, 8), (1, 40)] {
        let repo = repo(2, Resources::cpu_mem(750, 4096)).await;
        let sched = Scheduler::new(repo.clone(), quick());
        repo.faults().on(Op::Reserve, Fault::LoseReply, lost);
        repo.faults().on(Op::Find, Fault::Fail, fails);
        let reqs: Vec<_> = (0..8).map(|i| req(&format!("c{i}"), SMALL)).collect();
        let answers = sched.schedule_batch(reqs.clone()).await;
        repo.faults().clear();
        for (r, a) in reqs.iter().zip(&answers) {
            assert!(
                !matches!(a, Err(ScheduleError::RetriesExhausted { .. }))
                    || repo.find_reservation(&r.id).await.unwrap().is_none(),
                "({lost}, {fails}) {}: {a:?}",
                r.id
            );
            assert_agrees(&repo, r, a).await;
        }
        assert_no_drift(&repo).await;
    }
}

/// Drops the last worker result of the next `reserve_batch` once armed (after applying it): a
/// backend breaking the one-result-per-worker contract.
struct Truncating {
    inner: MemoryRepository,
    armed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl sched_core::RepositoryLayer for Truncating {
    type Inner = MemoryRepository;
    fn inner(&self) -> &MemoryRepository {
        &self.inner
    }
    async fn reserve_batch(
        &self,
        batch: &[sched_core::CapacityReservation],
        mode: sched_core::CommitMode,
    ) -> Result<Vec<sched_core::WorkerResult>, sched_core::RepoError> {
        let mut out = WorkerRepository::reserve_batch(&self.inner, batch, mode).await?;
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            out.pop();
        }
        Ok(out)
    }
}

/// A commit answered with the wrong number of results is an unknown outcome: resolved by
/// lookup when it can be, `Ambiguous` when every lookup fails, never `NoCapacity`.
#[tokio::test]
async fn wrong_result_count_is_an_unknown_outcome() {
    for lookups_fail in [false, true] {
        let repo = repo(1, Resources::cpu_mem(500, 1024)).await;
        let layer = Truncating {
            inner: repo.clone(),
            armed: true.into(),
        };
        let sched = Scheduler::new(layer, quick());
        if lookups_fail {
            repo.faults().on(Op::Find, Fault::Fail, 1000);
        }
        let reqs = vec![req("a", SMALL), req("b", SMALL)];
        let answers = sched.schedule_batch(reqs.clone()).await;
        repo.faults().clear();
        for (r, a) in reqs.iter().zip(&answers) {
            if lookups_fail {
                assert!(matches!(a, Err(ScheduleError::Ambiguous { .. })), "{a:?}");
            } else {
                assert!(a.as_ref().is_ok_and(|p| !p.already_held), "{a:?}");
            }
            assert_agrees(&repo, r, a).await;
        }
        assert_no_drift(&repo).await;
    }
}

/// `release` over several chunks whose later chunk fails reports `Ambiguous` (earlier chunks
/// were applied), not `Unavailable` ("nothing applied").
#[tokio::test]
async fn release_failing_after_an_applied_chunk_is_ambiguous() {
    let repo = repo(1, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let p = sched.schedule(req("rel", SMALL)).await.unwrap();
    let mut ids = vec!["rel".to_owned()];
    ids.extend((0..sched_core::validate::MAX_BATCH).map(|i| format!("none-{i}")));
    repo.faults()
        .on(Select::nth(Op::Release, 2), Fault::Fail, 1);
    let e = sched.release(&ids).await.unwrap_err();
    assert!(e.is_ambiguous(), "{e:?}");
    assert_eq!(
        repo.find_reservation("rel").await.unwrap(),
        None,
        "the first chunk applied"
    );
    // Nothing applied at all: the backend's own error.
    repo.faults().on(Op::Release, Fault::Fail, 1);
    let e = sched.release(&ids[..1]).await.unwrap_err();
    assert!(matches!(e, sched_core::RepoError::Unavailable(_)), "{e:?}");
    let snap = sched.cache().snapshot(sched.repo()).await.unwrap();
    let cached = snap.get(&p.worker_id).unwrap();
    assert_eq!(cached.free, WORKER, "the cache saw the release");
    assert_no_drift(&repo).await;
}

// ---------------------------------------------------------------------------------------------
// Case 7: cancelled callers
// ---------------------------------------------------------------------------------------------

/// A caller cancelled while its request waits in the group-commit queue is never committed,
/// not even by a later caller's batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_queued_is_never_committed() {
    let repo = repo(2, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    sched.schedule(req("warm", SMALL)).await.unwrap();
    repo.faults().on(
        Select::nth(Op::Reserve, 1),
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    let s = sched.clone();
    let first = tokio::spawn(async move { s.schedule(req("first", SMALL)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = tokio::time::timeout(
        Duration::from_millis(50),
        sched.schedule(req("gone", SMALL)),
    )
    .await;
    assert!(queued.is_err(), "the queued call must time out");
    first.await.unwrap().unwrap();
    let later = sched.schedule(req("later", SMALL)).await.unwrap();
    assert!(!later.already_held);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        repo.find_reservation("gone").await.unwrap(),
        None,
        "a cancelled request was committed"
    );
    assert!(sched.stats().cancelled_skipped >= 1);
    assert_no_drift(&repo).await;
}

/// A caller cancelled while its batch commits: the placed container is released afterwards,
/// and counted. With batching on, off, and through `schedule_batch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_committing_is_released() {
    for (k, batching) in [(0, true), (1, false), (2, false)] {
        let repo = repo(2, WORKER).await;
        let sched = Scheduler::new(repo.clone(), quick().with_batching(batching));
        sched.schedule(req("warm", SMALL)).await.unwrap();
        repo.faults().on(
            Select::nth(Op::Reserve, 1),
            Fault::Delay(Duration::from_millis(200)),
            1,
        );
        let id = format!("gone-{k}");
        let cancelled = if k == 2 {
            tokio::time::timeout(
                Duration::from_millis(50),
                sched.schedule_batch(vec![req(&id, SMALL)]),
            )
            .await
            .is_err()
        } else {
            tokio::time::timeout(Duration::from_millis(50), sched.schedule(req(&id, SMALL)))
                .await
                .is_err()
        };
        assert!(cancelled, "case {k}: the call must time out");
        assert_eq!(
            repo.faults().pending(),
            0,
            "case {k}: the commit had started"
        );
        let released = eventually(async || sched.stats().cancelled_released == 1).await;
        assert!(released, "case {k}: stats {:?}", sched.stats());
        assert_eq!(
            repo.find_reservation(&id).await.unwrap(),
            None,
            "case {k}: still held"
        );
        assert_no_drift(&repo).await;
    }
}

/// A cancelled caller whose placement cannot be released: counted as held with nobody told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_placement_whose_release_fails_is_counted() {
    let repo = repo(2, WORKER).await;
    let sched = Scheduler::new(repo.clone(), quick());
    sched.schedule(req("warm", SMALL)).await.unwrap();
    repo.faults().on(
        Select::nth(Op::Reserve, 1),
        Fault::Delay(Duration::from_millis(200)),
        1,
    );
    repo.faults().on(Op::Release, Fault::Fail, 10);
    let t = tokio::time::timeout(
        Duration::from_millis(50),
        sched.schedule(req("stuck", SMALL)),
    )
    .await;
    assert!(t.is_err());
    let counted = eventually(async || sched.stats().cancelled_unreleased == 1).await;
    assert!(counted, "stats {:?}", sched.stats());
    assert_eq!(sched.stats().cancelled_released, 0);
    assert!(
        repo.find_reservation("stuck").await.unwrap().is_some(),
        "the release failed"
    );
    assert_no_drift(&repo).await;
}
