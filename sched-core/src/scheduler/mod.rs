//! The [`Scheduler`]: plans a whole burst against one snapshot and commits it with one
//! `reserve_batch` call (one atomic section per worker), then re-plans only what was rejected.
//!
//! ```
//! # async fn demo(repo: std::sync::Arc<dyn sched_core::WorkerRepository>) {
//! use sched_core::{ContainerRequest, Resources, Scheduler, SchedulerConfig};
//! let sched = Scheduler::new(repo, SchedulerConfig::default());
//! let burst: Vec<_> = (0..100)
//!     .map(|i| ContainerRequest::new(format!("c-{i}"), Resources::cpu_mem(250, 256)))
//!     .collect();
//! for result in sched.schedule_batch(burst).await {
//!     match result {
//!         Ok(p) => println!("{} -> {}", p.container_id, p.worker_id),
//!         Err(e) => eprintln!("{e}"),
//!     }
//! }
//! # }
//! ```

mod plan;
mod stats;

pub use plan::{eligible, plan, Plan, PlanConfig, Unplaceable};
pub use stats::SchedulerStats;

use crate::affinity::AffinityMode;
use crate::cache::{CacheConfig, CacheStats, WorkerStateCache};
use crate::validate::{validate_request, MAX_BATCH};
use crate::{
    CapacityReservation, CommitMode, ContainerRequest, Rejection, ReleaseOutcome, RepoError,
    ResourceReservation, WorkerRepository,
};
use plan::plan_with_tiers;
use serde::Serialize;
use stats::Counters;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use tracing::Instrument;

/// Scheduler settings. Each optimisation can be switched off on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Worker-state cache TTL; zero reads the repository for every plan.
    pub cache_ttl: Duration,
    /// Spreading of CPU-only containers within a priority tier.
    pub affinity: AffinityMode,
    /// Best-fit packing instead of affinity.
    pub best_fit: bool,
    /// Let CPU-only requests use GPU workers.
    pub cpu_on_gpu_workers: bool,
    /// Coalesce concurrent [`Scheduler::schedule`] calls into shared batches (group commit).
    pub batching: bool,
    /// With batching, how long the caller that holds the commit turn waits for more callers
    /// before closing the batch. Zero (default) only yields to already-runnable tasks.
    pub group_commit_window: Duration,
    /// Send `expected_version` with each worker's part. Off by default: the backends check
    /// capacity atomically, so a version check only adds conflicts when other schedulers commit
    /// to the same worker; turn it on when a plan depends on more than capacity.
    pub version_checks: bool,
    /// How much of a worker's part may commit. `Partial` (default) keeps the fitting prefix.
    pub commit_mode: CommitMode,
    /// Attempts per container before [`ScheduleError::RetriesExhausted`].
    pub max_attempts: u32,
    /// First retry backoff; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            cache_ttl: CacheConfig::default().ttl,
            affinity: AffinityMode::Rotate,
            best_fit: false,
            cpu_on_gpu_workers: false,
            batching: true,
            group_commit_window: Duration::ZERO,
            version_checks: false,
            commit_mode: CommitMode::Partial,
            max_attempts: 5,
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(100),
        }
    }
}

/// Where a container was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The container.
    pub container_id: String,
    /// The worker that holds it.
    pub worker_id: String,
    /// The worker's version after the commit (0 when found already held).
    pub resource_version: u64,
    /// Commit attempts it took.
    pub attempts: u32,
    /// True when the container was already held (an earlier attempt whose reply was lost, or a
    /// repeated request): the store's one-holder rule makes scheduling idempotent.
    pub already_held: bool,
}

/// Why a container was not placed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    /// The request is malformed.
    #[error("invalid request {container_id:?}: {reason}")]
    InvalidRequest {
        /// The container.
        container_id: String,
        /// What is wrong.
        reason: String,
    },
    /// No worker can take it, in a fresh view of the workers.
    #[error("no capacity for {container_id:?}: {reason}")]
    NoCapacity {
        /// The container.
        container_id: String,
        /// `no eligible worker` or `no eligible worker has room`.
        reason: String,
    },
    /// Every attempt was rejected or failed.
    #[error("retries exhausted for {container_id:?} after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The container.
        container_id: String,
        /// Attempts made.
        attempts: u32,
        /// The last rejection or error.
        last: String,
    },
}

impl ScheduleError {
    /// The container concerned.
    pub fn container_id(&self) -> &str {
        match self {
            ScheduleError::InvalidRequest { container_id, .. }
            | ScheduleError::NoCapacity { container_id, .. }
            | ScheduleError::RetriesExhausted { container_id, .. } => container_id,
        }
    }
}

type Reply = oneshot::Sender<Result<Placement, ScheduleError>>;

struct Inner<R> {
    repo: R,
    config: SchedulerConfig,
    cache: WorkerStateCache,
    counters: Counters,
    queue: std::sync::Mutex<Vec<(ContainerRequest, Reply)>>,
    commit_lock: AsyncMutex<()>,
}

/// Places bursts of containers. Cheap to clone (clones share cache, queue and counters).
pub struct Scheduler<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Scheduler<R> {
    fn clone(&self) -> Self {
        Scheduler {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R> std::fmt::Debug for Scheduler<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<R: WorkerRepository + 'static> Scheduler<R> {
    /// A scheduler over `repo`.
    pub fn new(repo: R, config: SchedulerConfig) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                repo,
                config,
                cache: WorkerStateCache::new(CacheConfig {
                    ttl: config.cache_ttl,
                }),
                counters: Counters::default(),
                queue: std::sync::Mutex::new(Vec::new()),
                commit_lock: AsyncMutex::new(()),
            }),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &R {
        &self.inner.repo
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// The worker-state cache.
    pub fn cache(&self) -> &WorkerStateCache {
        &self.inner.cache
    }

    /// Counters since creation.
    pub fn stats(&self) -> SchedulerStats {
        self.inner.counters.snapshot()
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Places one container. With batching on, concurrent calls are coalesced: while one batch
    /// commits, later callers queue, and the next caller to get the commit turn takes the whole
    /// queue as one batch (group commit).
    pub async fn schedule(&self, request: ContainerRequest) -> Result<Placement, ScheduleError> {
        let id = request.id.clone();
        let lost = || ScheduleError::RetriesExhausted {
            container_id: id.clone(),
            attempts: 0,
            last: "scheduler task ended before answering".into(),
        };
        if !self.inner.config.batching {
            return self
                .schedule_batch(vec![request])
                .await
                .pop()
                .unwrap_or_else(|| Err(lost()));
        }
        let (tx, mut rx) = oneshot::channel();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((request, tx));
        loop {
            // Either our result arrives (someone else's batch carried it), or we get the commit
            // turn. Waiting on both means finished callers never queue on the lock just to
            // collect their answer.
            let turn = tokio::select! {
                biased;
                r = &mut rx => return r.unwrap_or_else(|_| Err(lost())),
                turn = self.inner.commit_lock.lock() => turn,
            };
            match rx.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // Let callers that are already running join this batch before we close it.
            if self.inner.config.group_commit_window.is_zero() {
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            } else {
                tokio::time::sleep(self.inner.config.group_commit_window).await;
            }
            let queued =
                std::mem::take(&mut *self.inner.queue.lock().unwrap_or_else(|e| e.into_inner()));
            if queued.is_empty() {
                // Our request is inside a batch that another caller is committing; wait for it.
                drop(turn);
                return rx.await.unwrap_or_else(|_| Err(lost()));
            }
            metrics::histogram!("sched_group_commit_size").record(queued.len() as f64);
            // Run the batch in its own task so that cancelling this caller cannot strand the
            // other callers' requests halfway through a commit.
            let this = self.clone();
            let task = tokio::spawn(async move {
                let (reqs, replies): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
                let results = this.schedule_batch(reqs).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            });
            let _ = task.await;
            drop(turn);
        }
    }

    /// Places a burst: validates, plans against one snapshot, commits with one `reserve_batch`
    /// call (split only past [`MAX_BATCH`] reservations), re-plans only the rejected containers
    /// with bounded attempts and backoff. Returns one result per request, in input order.
    pub async fn schedule_batch(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Vec<Result<Placement, ScheduleError>> {
        let span = tracing::info_span!("schedule_batch", containers = requests.len());
        self.schedule_batch_inner(requests).instrument(span).await
    }

    async fn schedule_batch_inner(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Vec<Result<Placement, ScheduleError>> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let started = Instant::now();
        inner.counters.batch(requests.len());
        let mut results: Vec<Option<Result<Placement, ScheduleError>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut seen = HashSet::with_capacity(requests.len());
        let mut pending = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            let verdict = validate_request(r)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    if seen.insert(r.id.as_str()) {
                        Ok(())
                    } else {
                        Err("appears twice in the batch".to_owned())
                    }
                });
            match verdict {
                Ok(()) => pending.push(i),
                Err(reason) => {
                    results[i] = Some(Err(ScheduleError::InvalidRequest {
                        container_id: r.id.clone(),
                        reason,
                    }))
                }
            }
        }
        let plan_cfg = PlanConfig {
            affinity: cfg.affinity,
            best_fit: cfg.best_fit,
            cpu_on_gpu_workers: cfg.cpu_on_gpu_workers,
        };
        let mut last_error: BTreeMap<usize, String> = BTreeMap::new();
        let mut rechecked_capacity = false;
        let mut contested = false;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > cfg.max_attempts {
                for &i in &pending {
                    results[i] = Some(Err(ScheduleError::RetriesExhausted {
                        container_id: requests[i].id.clone(),
                        attempts: attempt - 1,
                        last: last_error.remove(&i).unwrap_or_default(),
                    }));
                }
                break;
            }
            if attempt > 1 {
                inner.counters.retries(pending.len());
                tokio::time::sleep(backoff(cfg, attempt)).await;
            }
            if std::mem::take(&mut contested) {
                pending = self
                    .sweep_held(pending, &requests, attempt, &mut results)
                    .await;
                if pending.is_empty() {
                    break;
                }
            }
            let snap = match inner.cache.snapshot(&inner.repo).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "reading workers failed");
                    for &i in &pending {
                        last_error.insert(i, format!("reading workers: {e}"));
                    }
                    continue;
                }
            };
            let fresh = snap.taken_at() >= started;
            let reqs: Vec<&ContainerRequest> = pending.iter().map(|&i| &requests[i]).collect();
            let p = {
                let _s = tracing::debug_span!("plan", containers = reqs.len()).entered();
                plan_with_tiers(snap.workers(), &snap.tiers(), &reqs, &plan_cfg)
            };
            let mut next = Vec::new();
            if !p.unplaceable.is_empty() {
                if !fresh && !rechecked_capacity {
                    // The cached view may be stale (others released capacity): look again once.
                    rechecked_capacity = true;
                    inner.cache.invalidate();
                    next.extend(p.unplaceable.iter().map(|&(k, _)| pending[k]));
                    attempt -= 1; // a stale view is not a failed attempt
                } else {
                    for &(k, ref why) in &p.unplaceable {
                        let i = pending[k];
                        inner.counters.no_capacity();
                        results[i] = Some(Err(ScheduleError::NoCapacity {
                            container_id: requests[i].id.clone(),
                            reason: match why {
                                Unplaceable::NoEligibleWorker => "no eligible worker".into(),
                                Unplaceable::NoCapacity => "no eligible worker has room".into(),
                            },
                        }));
                    }
                }
            }
            // Group by worker, in worker-id order.
            let mut by_worker: Vec<(usize, Vec<usize>)> = p
                .assignments
                .into_iter()
                .map(|(wi, ks)| (wi, ks.into_iter().map(|k| pending[k]).collect()))
                .collect();
            by_worker.sort_by(|a, b| snap.workers()[a.0].id.cmp(&snap.workers()[b.0].id));
            let mut parts: Vec<(CapacityReservation, Vec<usize>)> = Vec::new();
            for (wi, idxs) in by_worker {
                let w = &snap.workers()[wi];
                for piece in idxs.chunks(MAX_BATCH) {
                    parts.push((
                        CapacityReservation {
                            worker_id: w.id.clone(),
                            expected_version: cfg.version_checks.then_some(w.resource_version),
                            reservations: piece
                                .iter()
                                .map(|&i| {
                                    let r = &requests[i];
                                    ResourceReservation {
                                        container_id: r.id.clone(),
                                        resources: r.resources,
                                        gpu_type: (r.resources.gpu_count > 0)
                                            .then(|| w.gpu_type.clone())
                                            .flatten(),
                                    }
                                })
                                .collect(),
                        },
                        piece.to_vec(),
                    ));
                }
            }
            for call in chunk_calls(parts) {
                contested |= self
                    .commit_call(
                        call,
                        &requests,
                        attempt,
                        &mut results,
                        &mut next,
                        &mut last_error,
                    )
                    .await;
            }
            pending = next;
        }
        let elapsed = started.elapsed();
        metrics::histogram!("sched_schedule_duration_seconds").record(elapsed.as_secs_f64());
        let mut out = Vec::with_capacity(requests.len());
        for (i, r) in results.into_iter().enumerate() {
            out.push(r.unwrap_or_else(|| {
                Err(ScheduleError::RetriesExhausted {
                    container_id: requests[i].id.clone(),
                    attempts: attempt,
                    last: "unresolved".into(),
                })
            }));
        }
        out
    }

    async fn commit_call(
        &self,
        call: Vec<(CapacityReservation, Vec<usize>)>,
        requests: &[ContainerRequest],
        attempt: u32,
        results: &mut [Option<Result<Placement, ScheduleError>>],
        next: &mut Vec<usize>,
        last_error: &mut BTreeMap<usize, String>,
    ) -> bool {
        let mut contested = false;
        let inner = &*self.inner;
        let (batch, idxs): (Vec<CapacityReservation>, Vec<Vec<usize>>) = call.into_iter().unzip();
        inner.counters.reserve_call(batch.len());
        let res = inner
            .repo
            .reserve_batch(&batch, inner.config.commit_mode)
            .instrument(tracing::debug_span!("reserve_batch", workers = batch.len()))
            .await;
        match res {
            Ok(outcomes) if outcomes.len() == batch.len() => {
                let mut through = Vec::new();
                for ((cr, idxs), wr) in batch.iter().zip(&idxs).zip(outcomes) {
                    match wr.outcome {
                        Ok(c) => {
                            through.push((cr.worker_id.clone(), c.free, c.new_version));
                            for &i in &idxs[..c.accepted.min(idxs.len())] {
                                inner.counters.placed(&cr.worker_id);
                                results[i] = Some(Ok(Placement {
                                    container_id: requests[i].id.clone(),
                                    worker_id: cr.worker_id.clone(),
                                    resource_version: c.new_version,
                                    attempts: attempt,
                                    already_held: false,
                                }));
                            }
                            if let Some(rej) = c.remainder {
                                contested |= self.settle_rejected(
                                    &cr.worker_id,
                                    &rej,
                                    &idxs[c.accepted.min(idxs.len())..],
                                    requests,
                                    attempt,
                                    results,
                                    next,
                                    last_error,
                                );
                            }
                        }
                        Err(rej) => {
                            contested |= self.settle_rejected(
                                &cr.worker_id,
                                &rej,
                                idxs,
                                requests,
                                attempt,
                                results,
                                next,
                                last_error,
                            );
                        }
                    }
                }
                inner.cache.write_through(&through);
            }
            Ok(outcomes) => {
                // A backend that breaks the one-result-per-worker contract: treat as ambiguous.
                tracing::error!(
                    expected = batch.len(),
                    got = outcomes.len(),
                    "reserve_batch returned the wrong number of results"
                );
                self.resolve_ambiguous(&idxs, requests, attempt, results, next, last_error)
                    .await;
            }
            Err(RepoError::InvalidInput(e)) => {
                for i in idxs.into_iter().flatten() {
                    results[i] = Some(Err(ScheduleError::InvalidRequest {
                        container_id: requests[i].id.clone(),
                        reason: e.to_string(),
                    }));
                }
            }
            Err(e) if e.is_ambiguous() => {
                tracing::warn!(error = %e, "commit outcome unknown; resolving with find_reservation");
                inner.counters.ambiguous();
                for i in idxs.iter().flatten() {
                    last_error.insert(*i, e.to_string());
                }
                self.resolve_ambiguous(&idxs, requests, attempt, results, next, last_error)
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "commit failed");
                inner.cache.invalidate();
                for i in idxs.into_iter().flatten() {
                    last_error.insert(i, e.to_string());
                    next.push(i);
                }
            }
        }
        contested
    }

    /// Handles one worker's rejection for the containers `idxs` (the whole part, or the
    /// remainder after a partial commit). Returns true when the rejection shows another
    /// scheduler holding one of our containers (so more of them may be held).
    #[allow(clippy::too_many_arguments)]
    fn settle_rejected(
        &self,
        worker_id: &str,
        rej: &Rejection,
        idxs: &[usize],
        requests: &[ContainerRequest],
        attempt: u32,
        results: &mut [Option<Result<Placement, ScheduleError>>],
        next: &mut Vec<usize>,
        last_error: &mut BTreeMap<usize, String>,
    ) -> bool {
        self.rejected(worker_id, rej);
        let mut contested = false;
        for &i in idxs {
            match rej {
                Rejection::AlreadyReserved {
                    container_id,
                    worker_id: holder,
                } if *container_id == requests[i].id => {
                    // Held already (a repeated request, or another scheduler placed it): the
                    // store's one-holder rule makes that the placement.
                    contested = true;
                    self.inner.counters.placed(holder);
                    results[i] = Some(Ok(Placement {
                        container_id: container_id.clone(),
                        worker_id: holder.clone(),
                        resource_version: 0,
                        attempts: attempt,
                        already_held: true,
                    }));
                }
                Rejection::InvalidInput { reason } => {
                    results[i] = Some(Err(ScheduleError::InvalidRequest {
                        container_id: requests[i].id.clone(),
                        reason: reason.clone(),
                    }));
                }
                _ => {
                    last_error.insert(i, rej.to_string());
                    next.push(i);
                }
            }
        }
        contested
    }

    /// `find_reservations` for the given requests, in chunks of [`MAX_BATCH`]; a failed chunk
    /// yields an error for each of its containers.
    async fn lookup(
        &self,
        idxs: &[usize],
        requests: &[ContainerRequest],
    ) -> Vec<Result<Option<crate::ReservationRecord>, RepoError>> {
        let mut out = Vec::with_capacity(idxs.len());
        for chunk in idxs.chunks(MAX_BATCH) {
            let ids: Vec<String> = chunk.iter().map(|&i| requests[i].id.clone()).collect();
            match self.inner.repo.find_reservations(&ids).await {
                Ok(found) if found.len() == ids.len() => out.extend(found.into_iter().map(Ok)),
                Ok(_) => out.extend(chunk.iter().map(|_| {
                    Err(RepoError::backend(
                        "find_reservations returned the wrong count",
                    ))
                })),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|_| Err(RepoError::backend(msg.clone()))));
                }
            }
        }
        out
    }

    /// Before re-planning after an `AlreadyReserved`: find which of the pending containers other
    /// schedulers already hold, and report those as placed instead of fighting for them one
    /// rejection at a time. Returns the containers still to place.
    async fn sweep_held(
        &self,
        pending: Vec<usize>,
        requests: &[ContainerRequest],
        attempt: u32,
        results: &mut [Option<Result<Placement, ScheduleError>>],
    ) -> Vec<usize> {
        let inner = &*self.inner;
        let lookups = self.lookup(&pending, requests).await;
        let mut still = Vec::with_capacity(pending.len());
        for (i, found) in pending.into_iter().zip(lookups) {
            match found {
                Ok(Some(rec)) => {
                    inner.counters.placed(&rec.worker_id);
                    results[i] = Some(Ok(Placement {
                        container_id: rec.container_id,
                        worker_id: rec.worker_id,
                        resource_version: 0,
                        attempts: attempt,
                        already_held: true,
                    }));
                }
                // Not held, or unknown: placing it again is safe (one-holder rule).
                Ok(None) | Err(_) => still.push(i),
            }
        }
        still
    }

    /// After a lost reply: find where each container is held before placing it anywhere else.
    async fn resolve_ambiguous(
        &self,
        idxs: &[Vec<usize>],
        requests: &[ContainerRequest],
        attempt: u32,
        results: &mut [Option<Result<Placement, ScheduleError>>],
        next: &mut Vec<usize>,
        last_error: &mut BTreeMap<usize, String>,
    ) {
        let inner = &*self.inner;
        inner.cache.invalidate();
        let all: Vec<usize> = idxs.iter().flatten().copied().collect();
        let lookups = self.lookup(&all, requests).await;
        for (i, found) in all.into_iter().zip(lookups) {
            match found {
                Ok(Some(rec)) => {
                    inner.counters.resolved();
                    inner.counters.placed(&rec.worker_id);
                    results[i] = Some(Ok(Placement {
                        container_id: rec.container_id,
                        worker_id: rec.worker_id,
                        resource_version: 0,
                        attempts: attempt,
                        already_held: false,
                    }));
                }
                Ok(None) => next.push(i),
                Err(e) => {
                    // Still unknown. Retrying is safe: the store's one-holder rule turns a
                    // second placement elsewhere into AlreadyReserved, which we report as placed.
                    last_error.insert(i, format!("resolving lost reply: {e}"));
                    next.push(i);
                }
            }
        }
    }

    fn rejected(&self, worker_id: &str, rej: &Rejection) {
        self.inner.counters.conflict(rej.kind());
        tracing::debug!(worker = worker_id, rejection = %rej, "worker part rejected");
        self.inner.cache.invalidate_worker(worker_id);
    }

    /// Releases containers (in chunks of [`MAX_BATCH`]) and writes the returned capacity
    /// through to the cache when the worker's cached version is the one just before.
    pub async fn release(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let mut out = Vec::with_capacity(container_ids.len());
        for chunk in container_ids.chunks(MAX_BATCH) {
            let res = self.inner.repo.release_batch(chunk).await?;
            self.inner.cache.write_through_releases(&res);
            out.extend(res);
        }
        Ok(out)
    }
}

/// Splits worker parts into `reserve_batch` calls of at most [`MAX_BATCH`] reservations.
fn chunk_calls(
    parts: Vec<(CapacityReservation, Vec<usize>)>,
) -> Vec<Vec<(CapacityReservation, Vec<usize>)>> {
    let mut calls = Vec::new();
    let mut cur: Vec<(CapacityReservation, Vec<usize>)> = Vec::new();
    let mut cur_len = 0;
    let mut workers_in_cur = HashSet::new();
    for part in parts {
        let n = part.0.reservations.len();
        if !cur.is_empty()
            && (cur_len + n > MAX_BATCH || workers_in_cur.contains(&part.0.worker_id))
        {
            calls.push(std::mem::take(&mut cur));
            cur_len = 0;
            workers_in_cur.clear();
        }
        workers_in_cur.insert(part.0.worker_id.clone());
        cur_len += n;
        cur.push(part);
    }
    if !cur.is_empty() {
        calls.push(cur);
    }
    calls
}

fn backoff(cfg: &SchedulerConfig, attempt: u32) -> Duration {
    let exp = cfg
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(2).min(16));
    let capped = exp.min(cfg.backoff_max);
    // Jitter in [50%, 100%) from the clock's low bits: enough to de-synchronise schedulers.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    capped.mul_f64(frac)
}
