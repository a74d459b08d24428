//! Several schedulers over one store near full capacity, each planning from its own cache that
//! other schedulers made stale: every container that fits in the free capacity is placed, a
//! container is reported unplaced only when no worker has room, and the ledger agrees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_agrees, assert_no_drift, quick, repo};
use sched_core::affinity::AffinityMode;
use sched_core::{
    ContainerRequest, Placement, Resources, ScheduleError, Scheduler, WorkerRepository,
};
use sched_memory::MemoryRepository;
use std::collections::HashMap;
use std::sync::Arc;

const WORKERS: usize = 20;
/// 32 slots of [`SLOT`] per worker.
const WORKER: Resources = Resources::cpu_mem(8_000, 1_000_000);
const SLOT: Resources = Resources::cpu_mem(250, 64);
const SLOTS: usize = WORKERS * 32;

fn reqs(prefix: &str, n: usize) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| ContainerRequest::new(format!("{prefix}-{i}"), SLOT))
        .collect()
}

/// Free slots left in the store.
async fn free_slots(repo: &MemoryRepository) -> usize {
    let mut slots = 0;
    for w in repo.list_workers(None).await.unwrap() {
        slots += (w.free.cpu_millicores / SLOT.cpu_millicores) as usize;
    }
    slots
}

/// `schedulers` schedulers with warm caches; then `prefill` slots are taken (piled onto the
/// first workers, so the free ones are the last), making every cache stale; then each
/// scheduler places `per_scheduler` containers at once (odd ones through `schedule`, so group
/// commit is exercised too). Returns the repository and every (request, answer).
async fn race(
    schedulers: usize,
    prefill: usize,
    per_scheduler: usize,
    affinity: AffinityMode,
) -> (
    MemoryRepository,
    Vec<(ContainerRequest, Result<Placement, ScheduleError>)>,
) {
    let repo = repo(WORKERS, WORKER).await;
    let cfg = quick().with_affinity(affinity);
    let scheds: Vec<Scheduler<MemoryRepository>> = (0..schedulers)
        .map(|_| Scheduler::new(repo.clone(), cfg))
        .collect();
    for s in &scheds {
        s.cache().snapshot(s.repo()).await.unwrap();
    }
    let filler = Scheduler::new(repo.clone(), quick().with_affinity(AffinityMode::Off));
    for r in filler.schedule_batch(reqs("fill", prefill)).await {
        r.unwrap();
    }
    let start = Arc::new(tokio::sync::Barrier::new(schedulers));
    let tasks: Vec<_> = scheds
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (s, start) = (s.clone(), Arc::clone(&start));
            let burst = reqs(&format!("s{k}"), per_scheduler);
            tokio::spawn(async move {
                start.wait().await;
                let answers = if k % 2 == 0 {
                    s.schedule_batch(burst.clone()).await
                } else {
                    let calls = burst.iter().cloned().map(|r| {
                        let s = s.clone();
                        async move { s.schedule(r).await }
                    });
                    futures::future::join_all(calls).await
                };
                burst.into_iter().zip(answers).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.unwrap());
    }
    (repo, out)
}

/// Every answer agrees with the store, nothing is held twice, every worker's ledger is
/// consistent; returns how many were placed.
async fn check_ledger(
    repo: &MemoryRepository,
    answers: &[(ContainerRequest, Result<Placement, ScheduleError>)],
) -> usize {
    for (r, a) in answers {
        assert_agrees(repo, r, a).await;
    }
    assert_no_drift(repo).await;
    let mut holders: HashMap<String, String> = HashMap::new();
    for w in repo.list_workers(None).await.unwrap() {
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
    answers.iter().filter(|(_, a)| a.is_ok()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_container_that_fits_is_placed() {
    // 94% full, then exactly the free slots are asked for, by 8 schedulers with stale caches.
    for (affinity, prefill) in [
        (AffinityMode::Balanced, 600),
        (AffinityMode::Rotate, 600),
        (AffinityMode::Balanced, 616),
        (AffinityMode::Rendezvous, 608),
    ] {
        let free = SLOTS - prefill;
        assert_eq!(free % 8, 0);
        let (repo, answers) = race(8, prefill, free / 8, affinity).await;
        let failed: Vec<_> = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().err())
            .collect();
        assert!(
            failed.is_empty(),
            "{affinity:?}: unplaced while room existed: {failed:?}"
        );
        assert_eq!(check_ledger(&repo, &answers).await, free);
        assert_eq!(free_slots(&repo).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_demand_fills_every_slot_and_the_rest_is_no_capacity() {
    // 40 slots free, 80 asked for: all 40 are taken, and the 40 others are NoCapacity (never
    // RetriesExhausted for capacity while a slot was still free).
    for affinity in [AffinityMode::Balanced, AffinityMode::Rotate] {
        let (repo, answers) = race(8, 600, 10, affinity).await;
        let placed = check_ledger(&repo, &answers).await;
        assert_eq!(placed, 40, "{affinity:?}");
        assert_eq!(free_slots(&repo).await, 0);
        for (_, a) in &answers {
            match a {
                Ok(_) | Err(ScheduleError::NoCapacity { .. }) => {}
                Err(e) => panic!("{affinity:?}: {e}"),
            }
        }
    }
}
