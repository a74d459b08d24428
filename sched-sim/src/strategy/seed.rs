//! `seed`: the first optimisation of the naive design. For a whole burst:
//!
//! 1. read all workers through a plain read cache with a 500 ms TTL (no write-through: its own
//!    writes make it stale until the TTL expires or a rejection invalidates it);
//! 2. plan every container with sha256-rotation affinity
//!    ([`sched_core::affinity::rotation_offset`] of [`hash_container_id`]) inside each priority
//!    tier, first fit from the rotated position;
//! 3. take one lock per planned worker, one after the other in worker-id order (so concurrent
//!    seed schedulers cannot deadlock), retrying with small sleeps;
//! 4. write each worker's part under its lock, one `reserve_batch` call per worker;
//! 5. unlock every worker; re-plan what was rejected (bounded attempts).

use super::StrategyOptions;
use super::StrategyStats;
use super::{jitter_sleep, AtomicStats, PlaceError, PlaceResult, Strategy, StrategyKind};
use crate::locks::{LockToken, WorkerLocks};
use async_trait::async_trait;
use sched_core::affinity::{hash_container_id, rotation_offset, AffinityMode};
use sched_core::bench_support::{eligible, PlanConfig};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, Placement, Rejection, RepoError,
    ResourceReservation, Resources, Worker, WorkerRepository,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Plan/commit rounds per burst.
const MAX_ATTEMPTS: u32 = 8;

type Cached = Option<(Instant, Arc<Vec<Worker>>)>;

/// The seed baseline. See the [module docs](self).
pub struct Seed {
    repo: Arc<dyn WorkerRepository>,
    locks: Arc<dyn WorkerLocks>,
    opts: StrategyOptions,
    cache: Mutex<Cached>,
    stats: AtomicStats,
}

impl Seed {
    /// A seed scheduler over `repo` and `locks`.
    pub fn new(
        repo: Arc<dyn WorkerRepository>,
        locks: Arc<dyn WorkerLocks>,
        opts: StrategyOptions,
    ) -> Self {
        Seed {
            repo,
            locks,
            opts,
            cache: Mutex::new(None),
            stats: AtomicStats::default(),
        }
    }

    fn cached(&self) -> Option<Arc<Vec<Worker>>> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.as_ref()
            .filter(|(at, _)| at.elapsed() < self.opts.cache_ttl)
            .map(|(_, w)| Arc::clone(w))
    }

    fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Workers from the cache, or from the backend on a miss. Returns whether it was a hit.
    async fn read(&self) -> Result<(Arc<Vec<Worker>>, bool), RepoError> {
        if let Some(w) = self.cached() {
            self.stats.cache(true);
            return Ok((w, true));
        }
        self.stats.cache(false);
        let workers = Arc::new(self.repo.list_workers(None).await?);
        if !self.opts.cache_ttl.is_zero() {
            *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), Arc::clone(&workers)));
        }
        Ok((workers, false))
    }

    async fn lock(&self, worker_id: &str, until: Instant) -> Result<LockToken, PlaceError> {
        loop {
            match self.locks.try_lock(worker_id, self.opts.lock_ttl).await {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => {
                    self.stats.lock_failure();
                    if Instant::now() > until {
                        return Err(PlaceError::other(format!(
                            "lock on {worker_id} stayed busy"
                        )));
                    }
                    jitter_sleep(500, 2500).await;
                }
                Err(e) => return Err(PlaceError::other(format!("try_lock {worker_id}: {e}"))),
            }
        }
    }
}

/// Worker index → request indices, for the requests that fit; and those that did not.
fn plan_rotation(
    workers: &[Worker],
    requests: &[&ContainerRequest],
) -> (BTreeMap<usize, Vec<usize>>, Vec<usize>) {
    let cfg = PlanConfig {
        affinity: AffinityMode::Rotate,
        ..PlanConfig::default()
    };
    let mut order: Vec<usize> = (0..workers.len()).collect();
    order.sort_by(|&a, &b| {
        workers[b]
            .priority
            .cmp(&workers[a].priority)
            .then_with(|| workers[a].id.cmp(&workers[b].id))
    });
    let mut tiers: Vec<&[usize]> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let p = workers[order[start]].priority;
        let end = order[start..]
            .iter()
            .position(|&i| workers[i].priority != p)
            .map_or(order.len(), |k| start + k);
        tiers.push(&order[start..end]);
        start = end;
    }
    let mut remaining: Vec<Resources> = workers.iter().map(|w| w.free).collect();
    let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut unplaced = Vec::new();
    for (ri, r) in requests.iter().enumerate() {
        let h = hash_container_id(&r.id);
        let mut chosen = None;
        'tiers: for tier in &tiers {
            let n = tier.len();
            let off = rotation_offset(h, n);
            for k in 0..n {
                let wi = tier[(off + k) % n];
                if eligible(&workers[wi], r, &cfg) && remaining[wi].fits(&r.resources) {
                    chosen = Some(wi);
                    break 'tiers;
                }
            }
        }
        match chosen {
            Some(wi) => {
                remaining[wi] = remaining[wi].saturating_sub(&r.resources);
                plan.entry(wi).or_default().push(ri);
            }
            None => unplaced.push(ri),
        }
    }
    (plan, unplaced)
}

#[async_trait]
impl Strategy for Seed {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Seed
    }

    async fn place_burst(
        &self,
        requests: Vec<ContainerRequest>,
        _concurrency: usize,
    ) -> Vec<PlaceResult> {
        let started = Instant::now();
        let mut results: Vec<Option<PlaceResult>> = (0..requests.len()).map(|_| None).collect();
        // Why each container's latest attempt failed (a capacity rejection keeps its kind).
        let mut last: Vec<PlaceError> = vec![PlaceError::other(""); requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let mut rechecked = false;
        let mut attempt = 0u32;
        while !pending.is_empty() && attempt < MAX_ATTEMPTS {
            attempt += 1;
            if attempt > 1 {
                self.stats.retries(pending.len() as u64);
                tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
            }
            let (workers, hit) = match self.read().await {
                Ok(w) => w,
                Err(e) => {
                    for &i in &pending {
                        last[i] = PlaceError::other(format!("list_workers: {e}"));
                    }
                    continue;
                }
            };
            let reqs: Vec<&ContainerRequest> = pending.iter().map(|&i| &requests[i]).collect();
            let (plan, unplaced) = plan_rotation(&workers, &reqs);
            let mut next = Vec::new();
            if !unplaced.is_empty() {
                if hit && !rechecked {
                    rechecked = true;
                    self.invalidate();
                    next.extend(unplaced.iter().map(|&k| pending[k]));
                    attempt -= 1;
                } else {
                    for &k in &unplaced {
                        let i = pending[k];
                        results[i] = Some(Err(PlaceError::capacity(format!(
                            "{}: no eligible worker has room",
                            requests[i].id
                        ))));
                    }
                }
            }
            // Locks, one per planned worker, in id order (the BTreeMap is in snapshot order,
            // which is id order).
            let until = started + self.opts.deadline;
            let mut held: Vec<(LockToken, usize, Vec<usize>)> = Vec::new();
            for (wi, ks) in plan {
                let idxs: Vec<usize> = ks.into_iter().map(|k| pending[k]).collect();
                match self.lock(&workers[wi].id, until).await {
                    Ok(t) => held.push((t, wi, idxs)),
                    Err(e) => {
                        for &i in &idxs {
                            last[i] = e.clone();
                        }
                        next.extend(idxs);
                    }
                }
            }
            // Writes, one per worker, under the locks.
            let mut rejected = false;
            for (_, wi, idxs) in &held {
                let w = &workers[*wi];
                let batch = [CapacityReservation::new(
                    w.id.clone(),
                    idxs.iter()
                        .map(|&i| {
                            ResourceReservation::new(requests[i].id.clone(), requests[i].resources)
                        })
                        .collect(),
                )];
                match self.repo.reserve_batch(&batch, CommitMode::Partial).await {
                    Ok(out) => match out.into_iter().next().map(|r| r.outcome) {
                        Some(Ok(c)) => {
                            let n = c.accepted.min(idxs.len());
                            for &i in &idxs[..n] {
                                results[i] = Some(Ok(Placement {
                                    container_id: requests[i].id.clone(),
                                    worker_id: w.id.clone(),
                                    resource_version: c.new_version,
                                    attempts: attempt,
                                    already_held: false,
                                }));
                            }
                            if let Some(rej) = c.remainder {
                                rejected = true;
                                self.stats.conflict();
                                for &i in &idxs[n..] {
                                    last[i] = PlaceError::from_rejection(&rej);
                                    next.push(i);
                                }
                            }
                        }
                        Some(Err(rej)) => {
                            rejected = true;
                            self.stats.conflict();
                            for &i in idxs {
                                match &rej {
                                    Rejection::AlreadyReserved {
                                        container_id,
                                        worker_id,
                                    } if *container_id == requests[i].id => {
                                        results[i] = Some(Ok(Placement {
                                            container_id: container_id.clone(),
                                            worker_id: worker_id.clone(),
                                            resource_version: 0,
                                            attempts: attempt,
                                            already_held: true,
                                        }));
                                    }
                                    _ => {
                                        last[i] = PlaceError::from_rejection(&rej);
                                        next.push(i);
                                    }
                                }
                            }
                        }
                        None => next.extend(idxs.iter().copied()),
                    },
                    Err(RepoError::InvalidInput(e)) => {
                        for &i in idxs {
                            results[i] =
                                Some(Err(PlaceError::other(format!("{}: {e}", requests[i].id))));
                        }
                    }
                    Err(e) => {
                        rejected = true;
                        for &i in idxs {
                            last[i] = PlaceError::other(format!("reserve_batch: {e}"));
                            next.push(i);
                        }
                    }
                }
            }
            for (token, _, _) in held {
                let _ = self.locks.unlock(token).await;
            }
            if rejected {
                self.invalidate();
            }
            pending = next;
        }
        results
            .into_iter()
            .enumerate()
            .zip(last)
            .map(|((i, r), last)| {
                r.unwrap_or_else(|| {
                    Err(last.context(format!(
                        "{}: gave up after {attempt} attempts",
                        requests[i].id
                    )))
                })
            })
            .collect()
    }

    async fn release(&self, container_ids: &[String]) -> Result<(), RepoError> {
        for chunk in container_ids.chunks(sched_core::validate::MAX_BATCH) {
            self.repo.release_batch(chunk).await?;
        }
        Ok(())
    }

    fn stats(&self) -> StrategyStats {
        self.stats.snapshot()
    }
}
