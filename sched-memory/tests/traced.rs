//! The `Traced` layer: one `sched.repo` span per repository call, with the backend, the workers,
//! the containers and the round trips of that call; and the scheduler traces every call it makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sched_core::layers::{Fault, Op, Select, Traced};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, ResourceReservation, Resources, Scheduler,
    SchedulerConfig, WorkerRepository,
};
use sched_memory::MemoryRepository;
use sched_tests::spans::{field, SpanRecorder};

async fn four_workers() -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(4, Resources::cpu_mem(10_000, 10_000))
        .build()
        .await
}

#[tokio::test(flavor = "current_thread")]
async fn the_scheduler_traces_every_call_with_its_round_trips() {
    let repo = four_workers().await;
    let (spans, _guard) = SpanRecorder::install();
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let burst = (0..20)
        .map(|i| ContainerRequest::new(format!("c{i}"), Resources::cpu_mem(100, 100)))
        .collect();
    let placed: Vec<_> = sched.schedule_batch(burst).await;
    assert!(placed.iter().all(Result::is_ok), "{placed:?}");

    let closed = spans.take();
    assert_eq!(
        closed.len(),
        2,
        "a warm-up read and one commit: {closed:#?}"
    );
    let pick = |op: &str| closed.iter().find(|s| field(s, "op") == op).unwrap();
    let list = pick("list_workers");
    assert_eq!(field(list, "backend"), "memory");
    assert_eq!(field(list, "workers"), "4");
    assert_eq!(field(list, "round_trips"), "1");
    let reserve = pick("reserve_batch");
    assert_eq!(field(reserve, "workers"), "4", "balanced: every worker");
    assert_eq!(field(reserve, "containers"), "20");
    assert_eq!(field(reserve, "round_trips"), "1");
    assert_eq!(field(reserve, "error"), "<unset>");
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrapped_repository_traces_direct_calls_and_failures() {
    let repo = four_workers().await;
    let traced = Traced::new(repo.clone());
    let (spans, _guard) = SpanRecorder::install();

    let batch: Vec<_> = (0..3)
        .map(|w| {
            let rs = (0..2)
                .map(|c| ResourceReservation::new(format!("c{w}-{c}"), Resources::cpu_mem(1, 1)))
                .collect();
            CapacityReservation::new(format!("worker-{w}"), rs)
        })
        .collect();
    let ids: Vec<String> = (0..3)
        .flat_map(|w| (0..2).map(move |c| format!("c{w}-{c}")))
        .collect();
    let held = traced
        .reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(held.iter().all(|r| r.outcome.is_ok()), "{held:?}");
    assert_eq!(field(&spans.take()[0], "op"), "reserve_batch");
    let out = traced.release_batch(&ids).await.unwrap();
    assert_eq!(out.len(), 6);
    let release = &spans.only("release_batch");
    assert_eq!(field(release, "containers"), "6");
    assert_eq!(field(release, "workers"), "3", "the distinct holders freed");
    assert_eq!(field(release, "round_trips"), "1");

    // Bad input: refused before the store is asked, so no round trip, and the kind is named.
    let bad = [CapacityReservation::new("", vec![])];
    let err = traced
        .reserve_batch(&bad, CommitMode::Partial)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    // A store failure (injected) is named by its kind too.
    repo.faults().on(Select::op(Op::GetWorker), Fault::Fail, 1);
    let failed = spans.only("reserve_batch");
    let err = traced.get_worker("worker-0").await.unwrap_err();
    assert_eq!(field(&failed, "error"), "invalid_input");
    assert_eq!(field(&failed, "round_trips"), "0");
    let down = spans.only("get_worker");
    assert_eq!(field(&down, "error"), err.kind());
    assert_eq!(field(&down, "error"), "unavailable");
    assert_eq!(
        field(&down, "round_trips"),
        "0",
        "an injected fault sends nothing"
    );
}
