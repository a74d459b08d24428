//! [`concurrent_schedulers`]: several [`Scheduler`]s place and release bursts at once.

use super::support::{assert_invariants, gen_demand, gen_worker, remove_all, GPU_TYPES};
use super::{run, PropConfig};
use crate::ns::Ns;
use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::{
    CommitMode, ContainerRequest, Resources, ScheduleError, Scheduler, SchedulerConfig,
    WorkerRepository, WorkerSpec,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

fn scheduler_config(variant: usize) -> SchedulerConfig {
    let mut c = SchedulerConfig::default();
    match variant % 5 {
        0 => {}
        1 => c.version_checks = true,
        2 => c.commit_mode = CommitMode::AllOrNothing,
        3 => {
            c.best_fit = true;
            c.cache_ttl = Duration::ZERO;
        }
        _ => {
            c.batching = false;
            c.cpu_on_gpu_workers = true;
        }
    }
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(10);
    c
}

/// One generated scheduler: its config variant, a first burst (ids from a pool shared by all
/// schedulers) and a second burst (ids of its own) run while it releases part of the first.
#[derive(Debug, Clone)]
struct GenScheduler {
    variant: usize,
    first: Vec<(usize, Resources, Option<&'static str>)>,
    second: Vec<(Resources, Option<&'static str>)>,
    release_mask: u64,
}

const SHARED_CONTAINERS: usize = 24;

fn gen_scheduler() -> impl Strategy<Value = GenScheduler> {
    (
        0usize..5,
        vec((0..SHARED_CONTAINERS, gen_demand()), 1..12),
        vec(gen_demand(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(variant, first, second, release_mask)| GenScheduler {
            variant,
            first: first.into_iter().map(|(c, (r, t))| (c, r, t)).collect(),
            second,
            release_mask,
        })
}

fn request(id: String, r: Resources, t: Option<&'static str>, pool: &str) -> ContainerRequest {
    let req = ContainerRequest::new(id, r).with_pool(pool);
    match t {
        Some(t) if t == GPU_TYPES[0] => req.with_gpu_types([t]),
        Some(_) => req.with_gpu_types([sched_core::ANY_GPU]),
        None => req,
    }
}

/// A placement: container, worker, the resources asked for.
type Placed = (String, String, Resources);

async fn schedule_checked(
    sched: &Scheduler<Arc<dyn WorkerRepository>>,
    reqs: Vec<ContainerRequest>,
) -> Vec<Placed> {
    let asked: Vec<(String, Resources)> =
        reqs.iter().map(|r| (r.id.clone(), r.resources)).collect();
    let out = sched.schedule_batch(reqs).await;
    assert_eq!(
        out.len(),
        asked.len(),
        "schedule_batch returns one result per request"
    );
    let mut placed = Vec::new();
    for (r, (id, resources)) in out.into_iter().zip(asked) {
        match r {
            Ok(p) => {
                assert_eq!(p.container_id, id, "results in input order");
                placed.push((p.container_id, p.worker_id, resources));
            }
            Err(ScheduleError::HeldDifferently { container_id, held }) => {
                assert_eq!(container_id, id, "results in input order");
                assert_eq!(held.container_id, id, "HeldDifferently names its record");
                assert!(
                    held.resources != resources || held.gpu_type.is_some(),
                    "HeldDifferently for a record holding what was asked: {held:?}"
                );
            }
            Err(e) => {
                assert_eq!(e.container_id(), id, "results in input order");
                assert!(
                    !matches!(e, ScheduleError::InvalidRequest { .. }),
                    "a valid request was refused: {e}"
                );
            }
        }
    }
    placed
}

/// Every placement is held on its worker with exactly the resources asked for.
async fn assert_held(repo: &dyn WorkerRepository, placed: &[Placed]) {
    for (c, w, r) in placed {
        let rec = repo.find_reservation(c).await.expect("find_reservation");
        assert_eq!(
            rec.map(|h| (h.worker_id, h.resources)),
            Some((w.clone(), *r)),
            "placement of {c:?} must be held on {w:?} with the resources asked for"
        );
    }
}

/// Several [`Scheduler`]s (different configurations) place bursts at once, with overlapping
/// container ids, then release part of them while placing more. Every successful placement is
/// found by `find_reservation` on its worker (unless released since), and the invariants hold.
pub fn concurrent_schedulers(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (vec(gen_worker(), 2..=5), vec(gen_scheduler(), 2..=4));
    run("concurrent_schedulers", cfg, strategy, |(gws, scheds)| {
        handle.block_on(async {
            let ns = Ns::new("prop-sched");
            let pool = ns.pool("p");
            let workers: Vec<String> = (0..gws.len()).map(|i| ns.worker(&i.to_string())).collect();
            for (id, g) in workers.iter().zip(&gws) {
                let mut spec = WorkerSpec::new(id.clone(), g.total)
                    .with_pool(pool.clone())
                    .requiring_pool_selector();
                spec.gpu_type = g.gpu_type.map(str::to_owned);
                repo.register_worker(&spec).await.expect("register_worker");
            }
            let shared: Vec<String> = (0..SHARED_CONTAINERS)
                .map(|i| ns.container(&format!("s{i}")))
                .collect();
            let schedulers: Vec<Scheduler<Arc<dyn WorkerRepository>>> = scheds
                .iter()
                .map(|g| Scheduler::new(Arc::clone(&repo), scheduler_config(g.variant)))
                .collect();

            // Phase 1: overlapping first bursts, no releases. Every placement must hold.
            let mut tasks = Vec::new();
            for (s, g) in schedulers.iter().zip(&scheds) {
                let mut seen = HashSet::new();
                let reqs: Vec<ContainerRequest> = g
                    .first
                    .iter()
                    .filter(|(c, _, _)| seen.insert(*c))
                    .map(|(c, r, t)| request(shared[*c].clone(), *r, *t, &pool))
                    .collect();
                let s = s.clone();
                tasks.push(tokio::spawn(
                    async move { schedule_checked(&s, reqs).await },
                ));
            }
            let mut placed_first = Vec::new();
            for t in tasks {
                placed_first.push(
                    t.await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                );
            }
            for placed in &placed_first {
                assert_held(&*repo, placed).await;
            }
            assert_invariants(&*repo, &workers, &shared).await;

            // Phase 2: each scheduler releases part of what it placed while placing a burst of
            // its own ids. Those new placements must hold afterwards.
            let mut tasks = Vec::new();
            for (i, ((s, g), placed)) in schedulers
                .iter()
                .zip(&scheds)
                .zip(&placed_first)
                .enumerate()
            {
                let release: Vec<String> = placed
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| g.release_mask & (1 << (k % 64)) != 0)
                    .map(|(_, (c, _, _))| c.clone())
                    .collect();
                let reqs: Vec<ContainerRequest> = g
                    .second
                    .iter()
                    .enumerate()
                    .map(|(k, (r, t))| request(ns.container(&format!("own{i}-{k}")), *r, *t, &pool))
                    .collect();
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let (placed, released) =
                        futures::join!(schedule_checked(&s, reqs), s.release(&release));
                    let released = released.expect("release");
                    assert_eq!(released.len(), release.len());
                    placed
                }));
            }
            let mut own = Vec::new();
            for t in tasks {
                own.extend(
                    t.await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                );
            }
            assert_held(&*repo, &own).await;
            let mut all: Vec<String> = shared.clone();
            all.extend(own.into_iter().map(|(c, _, _)| c));
            assert_invariants(&*repo, &workers, &all).await;
            remove_all(&*repo, &workers).await;
        });
    });
}
