//! Issue 10, cases 8 and 9 on the in-memory backend: the same id twice (in one burst, in
//! concurrent calls, repeated later) always gets the same answer, and a held id asked for with
//! other resources gets a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sched_core::layers::Op;
use sched_core::{
    ContainerRequest, InvalidInput, Resources, ScheduleError, Scheduler, SchedulerConfig,
    WorkerRepository,
};

// ---------------------------------------------------------------------------------------------
// Case 8: the same id twice
// ---------------------------------------------------------------------------------------------

/// Twice in one burst: identical requests get the same answer; a different one is refused.
#[tokio::test]
async fn same_id_twice_in_one_burst() {
    let repo = repo(3, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let reqs = vec![
        req("d", SMALL),
        req("x", SMALL),
        req("d", SMALL),
        req("d", LARGE),
    ];
    let out = sched.schedule_batch(reqs.clone()).await;
    let (a, b) = (out[0].as_ref().unwrap(), out[2].as_ref().unwrap());
    assert_eq!(
        a.worker_id, b.worker_id,
        "identical requests get the same answer"
    );
    assert!(
        matches!(
            &out[3],
            Err(ScheduleError::InvalidRequest {
                cause: InvalidInput::DuplicateContainer { .. },
                ..
            })
        ),
        "{:?}",
        out[3]
    );
    for (r, a) in reqs.iter().zip(&out).take(3) {
        assert_agrees(&repo, r, a).await;
    }
    assert_eq!(
        repo.get_worker(&a.worker_id).await.unwrap().unwrap().free,
        WORKER.checked_sub(&SMALL).unwrap()
    );
    assert_no_drift(&repo).await;
}

/// Twice in concurrent `schedule()` calls, batching on and off: the same answer, charged once.
#[tokio::test]
async fn same_id_in_concurrent_calls_gets_one_answer() {
    for batching in [true, false] {
        let repo = repo(3, WORKER).await;
        let sched = Scheduler::new(repo.clone(), quick().with_batching(batching));
        let (a, b) = tokio::join!(
            sched.schedule(req("dup", SMALL)),
            sched.schedule(req("dup", SMALL))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.worker_id, b.worker_id, "batching {batching}");
        let held = repo.find_reservation("dup").await.unwrap().unwrap();
        assert_eq!(
            (held.worker_id, held.resources),
            (a.worker_id.clone(), SMALL)
        );
        if !batching {
            assert!(
                a.already_held != b.already_held,
                "one commits, one finds it held: {a:?} {b:?}"
            );
        }
        assert_no_drift(&repo).await;
    }
}

/// Concurrent batched calls for one id with different resources: the first is placed, the later
/// one meets it in the store (`HeldDifferently`), never `InvalidRequest`.
#[tokio::test]
async fn same_id_with_other_resources_in_concurrent_batched_calls() {
    let repo = repo(3, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let (a, b) = tokio::join!(
        sched.schedule(req("dup", SMALL)),
        sched.schedule(req("dup", LARGE))
    );
    let a = a.unwrap();
    match &b {
        Err(ScheduleError::HeldDifferently { held, .. }) => {
            assert_eq!(
                (held.worker_id.as_str(), held.resources),
                (a.worker_id.as_str(), SMALL)
            );
        }
        other => panic!("expected HeldDifferently, got {other:?}"),
    }
    assert_agrees(&repo, &req("dup", LARGE), &b).await;
    assert_no_drift(&repo).await;
}

// ---------------------------------------------------------------------------------------------
// Case 9: repeated later
// ---------------------------------------------------------------------------------------------

/// Repeated later with the same resources: Ok, `already_held`, same worker, charged once; from
/// another scheduler too.
#[tokio::test]
async fn repeated_request_is_already_held() {
    let repo = repo(5, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let first = sched.schedule(req("r", SMALL)).await.unwrap();
    assert!(!first.already_held);
    for s in [
        sched.clone(),
        Scheduler::new(repo.clone(), SchedulerConfig::default()),
    ] {
        let again = s.schedule(req("r", SMALL)).await.unwrap();
        assert_eq!(again.worker_id, first.worker_id);
        assert!(again.already_held, "a repeated call says already_held");
        let batch = s
            .schedule_batch(vec![req("r", SMALL), req("n", SMALL)])
            .await;
        assert!(batch[0].as_ref().unwrap().already_held);
        assert!(batch[1].is_ok());
        s.release(&["n".to_owned()]).await.unwrap();
    }
    assert_eq!(
        repo.get_worker(&first.worker_id)
            .await
            .unwrap()
            .unwrap()
            .free,
        WORKER.checked_sub(&SMALL).unwrap(),
        "charged once"
    );
    assert_no_drift(&repo).await;
}

/// Repeated with other resources: `HeldDifferently`, naming the holder; the store unchanged.
#[tokio::test]
async fn repeated_request_with_other_resources_is_held_differently() {
    let repo = repo(5, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let first = sched.schedule(req("r", SMALL)).await.unwrap();
    for batching in [true, false] {
        let s = Scheduler::new(repo.clone(), quick().with_batching(batching));
        let again = s.schedule(req("r", LARGE)).await;
        match &again {
            Err(ScheduleError::HeldDifferently { container_id, held }) => {
                assert_eq!(container_id, "r");
                assert_eq!(
                    (held.worker_id.as_str(), held.resources),
                    (first.worker_id.as_str(), SMALL)
                );
                assert!(!again.as_ref().unwrap_err().may_be_held());
            }
            other => panic!("expected HeldDifferently, got {other:?}"),
        }
        assert_agrees(&repo, &req("r", LARGE), &again).await;
    }
    let gpu = s_gpu_request();
    let again = sched.schedule(gpu).await;
    assert!(
        matches!(again, Err(ScheduleError::HeldDifferently { .. })),
        "{again:?}"
    );
    assert_no_drift(&repo).await;
}

/// The same id asked for with a GPU: other resources and GPU type.
fn s_gpu_request() -> ContainerRequest {
    ContainerRequest::new("r", Resources::new(250, 512, 1)).with_gpu_types(["any"])
}

/// A burst of ids that are all held already: settled with one batched lookup for the commit
/// call, not one per container.
#[tokio::test]
async fn held_ids_are_resolved_with_one_lookup_per_commit_call() {
    let repo = repo(4, WORKER).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let reqs: Vec<_> = (0..12).map(|i| req(&format!("h{i}"), SMALL)).collect();
    let first = sched.schedule_batch(reqs.clone()).await;
    assert!(first.iter().all(Result::is_ok), "{first:?}");
    let (finds, reserves) = (
        repo.faults().calls(Op::Find),
        repo.faults().calls(Op::Reserve),
    );
    let again = sched.schedule_batch(reqs.clone()).await;
    for (a, b) in first.iter().zip(&again) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(a.worker_id, b.worker_id);
        assert!(b.already_held);
    }
    assert_eq!(
        repo.faults().calls(Op::Reserve) - reserves,
        1,
        "one commit call"
    );
    assert_eq!(
        repo.faults().calls(Op::Find) - finds,
        1,
        "one lookup for the commit call"
    );
    assert_no_drift(&repo).await;
}

/// Another caller that, just before each of this scheduler's commits, places one of the
/// commit's containers itself on a worker that part does not target (the race of schedulers
/// sharing ids).
struct Racer {
    inner: sched_memory::MemoryRepository,
}

#[async_trait::async_trait]
impl sched_core::RepositoryLayer for Racer {
    type Inner = sched_memory::MemoryRepository;
    fn inner(&self) -> &Self::Inner {
        &self.inner
    }
    async fn reserve_batch(
        &self,
        batch: &[sched_core::CapacityReservation],
        mode: sched_core::CommitMode,
    ) -> Result<Vec<sched_core::WorkerResult>, sched_core::RepoError> {
        if let Some(part) = batch.first() {
            if let Some(r) = part.reservations.first() {
                let other = WorkerRepository::list_workers(&self.inner, None)
                    .await?
                    .into_iter()
                    .find(|w| w.id != part.worker_id)
                    .expect("a second worker");
                let taken = sched_core::CapacityReservation::new(other.id.clone(), vec![r.clone()]);
                WorkerRepository::reserve_batch(
                    &self.inner,
                    &[taken],
                    sched_core::CommitMode::AllOrNothing,
                )
                .await?;
            }
        }
        WorkerRepository::reserve_batch(&self.inner, batch, mode).await
    }
}

/// With one attempt allowed, a burst whose every commit meets a container another caller has
/// just placed still places everything: an attempt that settles a held container made
/// progress and does not count against `max_attempts`. Each container is answered where it is
/// held.
#[tokio::test]
async fn attempts_that_find_containers_held_do_not_count() {
    let inner = repo(4, WORKER).await;
    let racer = Racer {
        inner: inner.clone(),
    };
    let sched = Scheduler::new(
        racer,
        quick()
            .with_max_attempts(1)
            .with_commit_mode(sched_core::CommitMode::AllOrNothing),
    );
    let reqs: Vec<_> = (0..12).map(|i| req(&format!("p{i}"), SMALL)).collect();
    let out = sched.schedule_batch(reqs.clone()).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert!(
        out.iter().any(|p| p.as_ref().unwrap().already_held),
        "the racer placed some of them first"
    );
    for (r, a) in reqs.iter().zip(&out) {
        assert_agrees(&inner, r, a).await;
    }
    assert_no_drift(&inner).await;
}
