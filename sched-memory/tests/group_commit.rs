//! Group commit registers a caller when `schedule` is called, not when its future is first
//! polled: calls made together form one commit whatever order (and however late) their futures
//! are polled in, and a call dropped before its batch starts is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::{ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository};
use sched_memory::MemoryRepository;

const WORKER: Resources = Resources::cpu_mem(8_000, 32_768);
const SMALL: Resources = Resources::cpu_mem(250, 512);

async fn repo(workers: usize) -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(workers, WORKER)
        .build()
        .await
}

fn burst(prefix: &str, n: usize) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| ContainerRequest::new(format!("{prefix}-{i}"), SMALL))
        .collect()
}

async fn held(repo: &MemoryRepository) -> usize {
    let mut n = 0;
    for w in repo.list_workers(None).await.unwrap() {
        n += repo.list_reservations(&w.id).await.unwrap().len();
    }
    n
}

/// The first call polled commits every call already made, even ones that are polled only after
/// its commit ended: one `reserve_batch` for all of them.
#[tokio::test]
async fn calls_made_together_form_one_commit_even_when_polled_late() {
    let repo = repo(20).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let mut calls: Vec<_> = burst("e", 60)
        .into_iter()
        .map(|r| sched.schedule(r))
        .collect();
    let first = calls.remove(0).await.unwrap();
    assert_eq!(first.container_id, "e-0");
    assert_eq!(sched.stats().reserve_calls, 1);
    assert_eq!(
        held(&repo).await,
        60,
        "the first commit carried every call made"
    );
    for (k, call) in calls.into_iter().enumerate() {
        let p = call.await.unwrap();
        assert_eq!(p.container_id, format!("e-{}", k + 1));
    }
    let st = sched.stats();
    assert_eq!((st.reserve_calls, st.placements), (1, 60));
}

/// Calls created before their tasks are spawned, each task polled after a different number of
/// yields (far more than group commit's quiet yields): still one commit, on a multi-threaded
/// runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staggered_tasks_with_calls_made_together_form_one_commit() {
    let repo = repo(20).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let calls: Vec<_> = burst("t", 100)
        .into_iter()
        .map(|r| sched.schedule(r))
        .collect();
    let tasks: Vec<_> = calls
        .into_iter()
        .enumerate()
        .map(|(k, call)| {
            tokio::spawn(async move {
                for _ in 0..(k * 7) {
                    tokio::task::yield_now().await;
                }
                call.await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sched.stats().reserve_calls, 1, "one commit for the burst");
    assert_eq!(held(&repo).await, 100);
}

/// A call dropped before any batch started is withdrawn: nothing is placed for it, and the
/// others still commit together.
#[tokio::test]
async fn a_call_dropped_before_its_batch_is_withdrawn() {
    let repo = repo(5).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let mut calls: Vec<_> = burst("d", 10)
        .into_iter()
        .map(|r| sched.schedule(r))
        .collect();
    drop(calls.remove(3));
    for call in calls {
        call.await.unwrap();
    }
    let st = sched.stats();
    assert_eq!((st.reserve_calls, st.cancelled_skipped), (1, 1));
    assert_eq!(held(&repo).await, 9);
    assert!(repo.find_reservations(&["d-3".to_owned()]).await.unwrap()[0].is_none());
}

/// Without batching, a call is not queued anywhere: it runs its own burst when polled.
#[tokio::test]
async fn without_batching_each_call_commits_on_its_own() {
    let repo = repo(5).await;
    let cfg = SchedulerConfig::default().with_batching(false);
    let sched = Scheduler::new(repo.clone(), cfg);
    let calls: Vec<_> = burst("b", 4)
        .into_iter()
        .map(|r| sched.schedule(r))
        .collect();
    assert_eq!(
        sched.stats().reserve_calls,
        0,
        "nothing runs before it is polled"
    );
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(sched.stats().reserve_calls, 4);
}
