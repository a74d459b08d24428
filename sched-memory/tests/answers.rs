//! Issue 10, cases 6-9 on the in-memory backend: every answer the Scheduler gives agrees with
//! the store, whatever the faults, cancellations and repeated ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::layers::{Op, Select};
use sched_core::{
    ContainerRequest, InvalidInput, Placement, Resources, ScheduleError, Scheduler,
    SchedulerConfig, WorkerRepository,
};
use sched_memory::{Fault, MemoryRepository};
use std::time::Duration;

const WORKER: Resources = Resources::cpu_mem(8_000, 32_768);
const SMALL: Resources = Resources::cpu_mem(250, 512);
const LARGE: Resources = Resources::cpu_mem(500, 1024);

async fn repo(workers: usize, total: Resources) -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(workers, total)
        .build()
        .await
}

fn req(id: &str, r: Resources) -> ContainerRequest {
    ContainerRequest::new(id, r)
}

fn quick() -> SchedulerConfig {
    SchedulerConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        ..SchedulerConfig::default()
    }
}

/// Every worker free of drift.
async fn assert_no_drift(repo: &MemoryRepository) {
    for w in repo.list_workers(None).await.unwrap() {
        let a = repo.audit(&w.id).await.unwrap();
        assert!(a.is_consistent(), "drift on {}: {:?}", w.id, a.drift);
    }
}

/// The answer agrees with the store: `Ok` is held there with exactly the requested resources;
/// an `Err` that does not say "may be held" is not held.
async fn assert_agrees(
    repo: &MemoryRepository,
    r: &ContainerRequest,
    answer: &Result<Placement, ScheduleError>,
) {
    let held = repo.find_reservation(&r.id).await.unwrap();
    match answer {
        Ok(p) => {
            let h = held.unwrap_or_else(|| panic!("{} answered Ok but not held", r.id));
            assert_eq!(h.worker_id, p.worker_id, "{} held elsewhere", r.id);
            assert_eq!(
                h.resources, r.resources,
                "{} held with other resources",
                r.id
            );
        }
        Err(e) if e.may_be_held() => {}
        Err(ScheduleError::HeldDifferently { held: h, .. }) => {
            assert_eq!(held.as_ref(), Some(h), "HeldDifferently names the holder");
        }
        Err(e) => assert!(held.is_none(), "{} answered {e} but held: {held:?}", r.id),
    }
}

/// Polls `cond` for up to two seconds.
async fn eventually(mut cond: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

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
        let sched = Scheduler::new(
            repo.clone(),
            SchedulerConfig {
                batching,
                ..quick()
            },
        );
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
        let sched = Scheduler::new(
            repo.clone(),
            SchedulerConfig {
                batching,
                ..quick()
            },
        );
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
        let s = Scheduler::new(
            repo.clone(),
            SchedulerConfig {
                batching,
                ..quick()
            },
        );
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
