//! The Scheduler end to end on the in-memory backend: burst placement, group commit, retries,
//! lost replies and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::affinity::AffinityMode;
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, ResourceReservation, Resources,
    ScheduleError, Scheduler, SchedulerConfig, Unplaceable, WorkerRepository, WorkerSpec,
};
use sched_memory::{Fault, MemoryRepository};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WORKER: Resources = Resources::cpu_mem(8_000, 32_768);
const SMALL: Resources = Resources::cpu_mem(250, 512);

async fn repo(workers: usize) -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(workers, WORKER)
        .build()
        .await
}

fn burst(prefix: &str, n: usize, r: Resources) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| ContainerRequest::new(format!("{prefix}-{i}"), r))
        .collect()
}

/// Every worker consistent, and every placement held exactly where reported.
async fn assert_consistent(repo: &MemoryRepository, placed: &[(String, String)]) {
    let mut holders: HashMap<String, String> = HashMap::new();
    for w in repo.list_workers(None).await.unwrap() {
        let a = repo.audit(&w.id).await.unwrap();
        assert!(a.is_consistent(), "drift on {}: {:?}", w.id, a.drift);
        assert!(a.reserved.le(&w.total), "overcommitted {}", w.id);
        for r in repo.list_reservations(&w.id).await.unwrap() {
            assert!(
                holders
                    .insert(r.container_id.clone(), w.id.clone())
                    .is_none(),
                "{} held twice",
                r.container_id
            );
        }
    }
    for (c, w) in placed {
        assert_eq!(
            holders.get(c),
            Some(w),
            "placement of {c} not in the ledger"
        );
    }
}

fn placed(results: &[Result<sched_core::Placement, ScheduleError>]) -> Vec<(String, String)> {
    results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|p| (p.container_id.clone(), p.worker_id.clone()))
        .collect()
}

#[tokio::test]
async fn burst_of_100_onto_20_workers_in_one_commit() {
    let repo = repo(20).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let results = sched.schedule_batch(burst("c", 100, SMALL)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stats = sched.stats();
    assert_eq!(
        stats.reserve_calls, 1,
        "one reserve_batch for the whole burst"
    );
    assert!(stats.atomic_sections <= 20);
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for p in results.iter().flatten() {
        *per_worker.entry(p.worker_id.clone()).or_default() += 1;
    }
    let max = *per_worker.values().max().unwrap();
    assert!(per_worker.len() >= 15, "affinity spreads: {per_worker:?}");
    assert!(max <= 12, "no hot worker: {per_worker:?}");
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn affinity_off_piles_up_and_rendezvous_spreads() {
    for (mode, min_workers) in [(AffinityMode::Off, 1), (AffinityMode::Rendezvous, 15)] {
        let repo = repo(20).await;
        let cfg = SchedulerConfig::default().with_affinity(mode);
        let sched = Scheduler::new(repo.clone(), cfg);
        let results = sched.schedule_batch(burst("c", 100, SMALL)).await;
        let used: std::collections::HashSet<_> = results
            .iter()
            .flatten()
            .map(|p| p.worker_id.clone())
            .collect();
        if mode == AffinityMode::Off {
            // 32 containers of 250m fit one 8-core worker: the burst fills workers in order.
            assert_eq!(used.len(), 4, "{mode:?}");
        } else {
            assert!(used.len() >= min_workers, "{mode:?}: {used:?}");
        }
        assert_consistent(&repo, &placed(&results)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_schedule_calls_are_group_committed() {
    let repo = repo(20).await;
    // One round trip costs 1 ms, as a nearby Redis would.
    repo.faults().set_latency(Duration::from_millis(1));
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = burst("g", 100, SMALL)
        .into_iter()
        .map(|r| {
            let (s, start) = (sched.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await; // the burst arrives at once
                s.schedule(r).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.iter().all(Result::is_ok));
    let calls = sched.stats().reserve_calls;
    eprintln!("group commit: {calls} reserve_batch calls for 100 schedule() calls");
    assert!(
        calls <= 5,
        "100 concurrent calls cost {calls} reserve_batch calls"
    );
    assert_consistent(&repo, &placed(&results)).await;
}

/// Callers that arrive together but staggered (each one some yields after the previous
/// wave, as tasks woken by one event reach the scheduler at different polls) still form one
/// commit: the batch stays open while the queue keeps growing.
#[tokio::test(flavor = "current_thread")]
async fn staggered_callers_form_one_commit() {
    let repo = repo(20).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let tasks: Vec<_> = burst("w", 60, SMALL)
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            let s = sched.clone();
            tokio::spawn(async move {
                for _ in 0..(k % 12) {
                    tokio::task::yield_now().await;
                }
                s.schedule(r).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(sched.stats().reserve_calls, 1, "one commit for the wave");
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn batching_off_costs_one_call_per_container() {
    let repo = repo(5).await;
    let cfg = SchedulerConfig::default().with_batching(false);
    let sched = Scheduler::new(repo.clone(), cfg);
    for r in burst("s", 10, SMALL) {
        sched.schedule(r).await.unwrap();
    }
    assert_eq!(sched.stats().reserve_calls, 10);
}

#[tokio::test]
async fn lost_reply_is_resolved_without_a_second_placement() {
    let repo = repo(4).await;
    repo.faults().push(Fault::LoseReply, 1);
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let results = sched.schedule_batch(burst("l", 20, SMALL)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let st = sched.stats();
    assert_eq!(st.ambiguous, 1);
    assert_eq!(
        st.resolved, 20,
        "every container found where the lost commit put it"
    );
    assert_eq!(st.reserve_calls, 1, "nothing re-sent after resolution");
    let total_reserved: usize = {
        let mut n = 0;
        for w in repo.list_workers(None).await.unwrap() {
            n += repo.list_reservations(&w.id).await.unwrap().len();
        }
        n
    };
    assert_eq!(total_reserved, 20);
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn failures_and_conflicts_are_retried() {
    let repo = repo(4).await;
    repo.faults().push(Fault::Fail, 2);
    repo.faults().push(Fault::Conflict, 1);
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let results = sched.schedule_batch(burst("f", 10, SMALL)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(sched.stats().reserve_calls, 4);
    assert!(sched.stats().retries >= 30);
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn retries_are_bounded() {
    let repo = repo(2).await;
    repo.faults().push(Fault::Fail, 100);
    let cfg = SchedulerConfig::default()
        .with_max_attempts(3)
        .with_backoff_base(Duration::from_millis(1));
    let sched = Scheduler::new(repo.clone(), cfg);
    let results = sched.schedule_batch(burst("x", 3, SMALL)).await;
    for r in &results {
        match r {
            Err(ScheduleError::RetriesExhausted { attempts, .. }) => assert_eq!(*attempts, 3),
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
    }
    assert_eq!(sched.stats().reserve_calls, 3);
    assert_consistent(&repo, &[]).await;
}

#[tokio::test]
async fn no_capacity_and_invalid_requests_are_typed_and_change_nothing() {
    let repo = repo(2).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let before = repo.list_workers(None).await.unwrap();
    let reqs = vec![
        ContainerRequest::new("", SMALL),
        ContainerRequest::new("zero", Resources::ZERO),
        ContainerRequest::new("huge", Resources::cpu_mem(u64::MAX, 1)),
        ContainerRequest::new("too-big", Resources::cpu_mem(9_000, 1)),
        ContainerRequest::new("gpu", Resources::new(1, 1, 1)).with_gpu_types(["a100"]),
        ContainerRequest::new("dup", SMALL),
        ContainerRequest::new("dup", SMALL),
        ContainerRequest::new("dup", Resources::cpu_mem(1, 1)),
    ];
    let results = sched.schedule_batch(reqs).await;
    assert!(matches!(
        results[0],
        Err(ScheduleError::InvalidRequest { .. })
    ));
    assert!(matches!(
        results[1],
        Err(ScheduleError::InvalidRequest { .. })
    ));
    assert!(matches!(
        results[2],
        Err(ScheduleError::InvalidRequest { .. })
    ));
    assert!(
        matches!(&results[3], Err(e @ ScheduleError::NoCapacity { cause: Unplaceable::NoCapacity, .. }) if e.to_string().contains("room"))
    );
    assert!(
        matches!(&results[4], Err(e @ ScheduleError::NoCapacity { cause: Unplaceable::NoEligibleWorker, .. }) if e.to_string().contains("eligible"))
    );
    assert!(results[5].is_ok());
    assert_eq!(
        results[6].as_ref().unwrap(),
        results[5].as_ref().unwrap(),
        "an identical repeat in one burst gets the same answer"
    );
    assert!(matches!(
        results[7],
        Err(ScheduleError::InvalidRequest { .. })
    ));
    let after = repo.list_workers(None).await.unwrap();
    let used: Resources = Resources::checked_sum(
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| b.free.checked_sub(&a.free).unwrap())
            .collect::<Vec<_>>()
            .iter(),
    )
    .unwrap();
    assert_eq!(used, SMALL, "only the one valid container was charged");
}

#[tokio::test]
async fn scheduling_is_idempotent_per_container() {
    let repo = repo(10).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let first = sched
        .schedule(ContainerRequest::new("once", SMALL))
        .await
        .unwrap();
    // Another scheduler (fresh cache) asked to place the same container.
    let other = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let again = other
        .schedule(ContainerRequest::new("once", SMALL))
        .await
        .unwrap();
    assert_eq!(again.worker_id, first.worker_id);
    assert_consistent(&repo, &[("once".into(), first.worker_id.clone())]).await;
    let w = repo.get_worker(&first.worker_id).await.unwrap().unwrap();
    assert_eq!(w.free, WORKER.checked_sub(&SMALL).unwrap(), "charged once");
}

#[tokio::test]
async fn stale_cache_is_corrected_by_rejections() {
    let repo = repo(3).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    sched
        .schedule(ContainerRequest::new("warm", SMALL))
        .await
        .unwrap();
    // Someone else fills worker-0 and worker-1 behind the cache's back.
    for w in ["worker-0", "worker-1"] {
        let free = repo.get_worker(w).await.unwrap().unwrap().free;
        let out = repo
            .reserve_batch(
                &[CapacityReservation::new(
                    w,
                    vec![ResourceReservation::new(format!("fill-{w}"), free)],
                )],
                CommitMode::AllOrNothing,
            )
            .await
            .unwrap();
        assert!(out[0].outcome.is_ok());
    }
    let results = sched.schedule_batch(burst("s", 12, SMALL)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(results.iter().flatten().all(|p| p.worker_id == "worker-2"));
    assert!(sched.stats().conflicts >= 1);
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn release_returns_capacity_and_writes_through() {
    let repo = repo(2).await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let results = sched.schedule_batch(burst("r", 10, SMALL)).await;
    let ids: Vec<String> = results
        .iter()
        .flatten()
        .map(|p| p.container_id.clone())
        .collect();
    let refreshes = sched.cache_stats().refreshes;
    let out = sched.release(&ids).await.unwrap();
    assert!(out.iter().all(|o| o.released.is_some()));
    // Several releases per worker, versions contiguous: written through exactly, no re-read.
    sched.cache().snapshot(sched.repo()).await.unwrap();
    assert_eq!(
        sched.cache_stats().refreshes,
        refreshes,
        "release was written through"
    );
    let again = sched.release(&ids).await.unwrap();
    assert!(
        again.iter().all(|o| o.released.is_none()),
        "second release returns nothing"
    );
    for w in repo.list_workers(None).await.unwrap() {
        assert_eq!(w.free, w.total);
    }
    let snap = sched.cache().snapshot(sched.repo()).await.unwrap();
    for w in snap.workers() {
        let real = repo.get_worker(&w.id).await.unwrap().unwrap();
        assert_eq!(
            (w.free, w.resource_version),
            (real.free, real.resource_version)
        );
    }
}

#[tokio::test]
async fn bursts_larger_than_one_call_are_split() {
    let repo = MemoryRepository::builder()
        .cpu_workers(50, Resources::cpu_mem(1_000_000, 1_000_000))
        .build()
        .await;
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let results = sched
        .schedule_batch(burst("big", 25_000, Resources::cpu_mem(10, 10)))
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(sched.stats().reserve_calls, 3);
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_schedulers_never_overcommit() {
    let repo = MemoryRepository::builder()
        .cpu_workers(5, Resources::cpu_mem(2_000, 8_192))
        .build()
        .await;
    let repo = Arc::new(repo);
    // 8 schedulers × 20 containers of 250m = 40 cores of demand for 10 cores of supply.
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let r = Arc::clone(&repo);
            tokio::spawn(async move {
                let s = Scheduler::new(r, SchedulerConfig::default());
                s.schedule_batch(burst(&format!("k{k}"), 20, SMALL)).await
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let ok = all.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 40, "exactly the supply is placed");
    assert!(all
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, ScheduleError::NoCapacity { .. })));
    assert_consistent(&repo, &placed(&all)).await;
}

#[tokio::test]
async fn pool_priority_and_gpu_filters_hold_end_to_end() {
    let repo = MemoryRepository::new();
    for spec in [
        WorkerSpec::new("hi", Resources::cpu_mem(1_000, 10_000)).with_priority(10),
        WorkerSpec::new("lo", Resources::cpu_mem(10_000, 10_000)),
        WorkerSpec::new("gpu", Resources::new(8_000, 8_000, 2)).with_gpu_type("a100"),
        WorkerSpec::new("private", Resources::cpu_mem(10_000, 10_000))
            .with_pool("p")
            .with_priority(100)
            .requiring_pool_selector(),
    ] {
        repo.register_worker(&spec).await.unwrap();
    }
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let mut reqs = burst("cpu", 6, SMALL);
    reqs.push(ContainerRequest::new("g1", Resources::new(100, 100, 1)).with_gpu_types(["a100"]));
    reqs.push(ContainerRequest::new("g2", Resources::new(100, 100, 1)).with_gpu_types(["any"]));
    reqs.push(ContainerRequest::new("g3", Resources::new(100, 100, 1)).with_gpu_types(["a100"]));
    reqs.push(ContainerRequest::new("pp", SMALL).with_pool("p"));
    let results = sched.schedule_batch(reqs).await;
    let at: HashMap<String, String> = placed(&results).into_iter().collect();
    for i in 0..4 {
        assert_eq!(at[&format!("cpu-{i}")], "hi", "priority tier first");
    }
    assert_eq!(at["cpu-4"], "lo", "then the next tier");
    assert_eq!((at["g1"].as_str(), at["g2"].as_str()), ("gpu", "gpu"));
    assert!(
        matches!(results[8], Err(ScheduleError::NoCapacity { .. })),
        "2 GPUs only"
    );
    assert_eq!(at["pp"], "private");
    assert!(!at.values().any(|w| w == "private") || at["pp"] == "private");
    assert_eq!(at.values().filter(|w| *w == "private").count(), 1);
    assert_consistent(&repo, &placed(&results)).await;
}

#[tokio::test]
async fn builder_numbers_workers_per_kind() {
    let repo = MemoryRepository::builder()
        .gpu_workers(2, "a100", Resources::new(1_000, 1_000, 4))
        .cpu_workers(2, WORKER)
        .gpu_workers(1, "a100", Resources::new(1_000, 1_000, 4))
        .cpu_workers(1, WORKER)
        .build()
        .await;
    let ids: Vec<String> = repo
        .list_workers(None)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(
        ids,
        [
            "gpu-worker-0",
            "gpu-worker-1",
            "gpu-worker-2",
            "worker-0",
            "worker-1",
            "worker-2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_do_not_strand_the_group() {
    let repo = repo(10).await;
    repo.faults().set_latency(Duration::from_millis(2));
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let tasks: Vec<_> = burst("x", 60, SMALL)
        .into_iter()
        .map(|r| {
            let s = sched.clone();
            tokio::spawn(async move { s.schedule(r).await })
        })
        .collect();
    // Cancel every third caller while batches are in flight.
    tokio::time::sleep(Duration::from_millis(1)).await;
    for t in tasks.iter().step_by(3) {
        t.abort();
    }
    let mut placed_ok = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            let p = r.expect("callers that were not cancelled are answered");
            placed_ok.push((p.container_id, p.worker_id));
        }
    }
    assert!(placed_ok.len() >= 40);
    // A cancelled caller's request may still have been committed by its batch (it was handed
    // over before the cancel): it is held exactly once, never leaked as drift.
    assert_consistent(&repo, &placed_ok).await;
}
