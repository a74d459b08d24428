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
//!
//! By duty: `config` (settings), `outcome` (placements and typed errors), `plan` (the pure
//! planner), `calls` (plan → `reserve_batch` calls), `resolve` (where containers are held),
//! `burst` (one burst's state and its attempts), `group_commit` (coalescing concurrent
//! [`Scheduler::schedule`] calls), `orphans` (callers that are gone), `stats` (counters). This
//! module only wires them.

mod burst;
mod calls;
mod config;
mod group_commit;
mod orphans;
mod outcome;
mod plan;
mod resolve;
mod stats;

pub use config::SchedulerConfig;
pub use outcome::{AttemptError, Placement, ScheduleError};
pub use plan::{eligible, plan, Plan, PlanConfig, Unplaceable};
pub use stats::SchedulerStats;

use crate::cache::{CacheConfig, CacheStats, WorkerStateCache};
use crate::validate::MAX_BATCH;
use crate::{ContainerRequest, ReleaseOutcome, RepoError, WorkerRepository};
use burst::Core;
use group_commit::GroupCommit;
use orphans::Answer;
use stats::Counters;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::Instrument;

struct Inner<R> {
    core: Core<R>,
    group: GroupCommit<ContainerRequest, Answer>,
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
            .field("config", &self.inner.core.config)
            .finish_non_exhaustive()
    }
}

impl<R: WorkerRepository + 'static> Scheduler<R> {
    /// A scheduler over `repo`.
    pub fn new(repo: R, config: SchedulerConfig) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                core: Core {
                    repo: crate::layers::Traced::new(repo),
                    config,
                    cache: WorkerStateCache::new(CacheConfig {
                        ttl: config.cache_ttl,
                    }),
                    counters: Counters::new(config.per_worker_metrics),
                },
                group: GroupCommit::new(),
            }),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &R {
        self.inner.core.repo.get_ref()
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.core.config
    }

    /// The worker-state cache.
    pub fn cache(&self) -> &WorkerStateCache {
        &self.inner.core.cache
    }

    /// Counters since creation.
    pub fn stats(&self) -> SchedulerStats {
        self.inner.core.counters.snapshot()
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.core.cache.stats()
    }

    /// Places one container. With batching on, concurrent calls are coalesced: while one batch
    /// commits, later callers queue, and the next caller to get the commit turn takes the whole
    /// queue as one batch (group commit). Concurrent calls for the same id with identical
    /// requests share one answer; with different requests, the later one meets the first one's
    /// outcome (`HeldDifferently` if it was placed).
    ///
    /// With batching on, the request is queued when `schedule` is called, before the returned
    /// future is first polled: calls made together (say, a burst of tasks each created with its
    /// call) join one commit however late the runtime gets to poll some of them. The future
    /// owns what it needs (it borrows nothing), so it can be created first and spawned after.
    ///
    /// Cancel-safe: the burst runs in a spawned task. A call dropped before its batch starts is
    /// skipped; one dropped while its batch commits has what was placed for it released (see
    /// [`SchedulerStats::cancelled_released`]).
    pub fn schedule(
        &self,
        request: ContainerRequest,
    ) -> impl std::future::Future<Output = Result<Placement, ScheduleError>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        let id = request.id.clone();
        let cfg = inner.core.config;
        let start = if cfg.batching {
            Ok(inner.group.enqueue(request))
        } else {
            Err(request)
        };
        async move {
            let answer = match start {
                Ok(ticket) => {
                    let run = |batch: Vec<group_commit::Queued<ContainerRequest, Answer>>| {
                        let inner = Arc::clone(&inner);
                        let span = tracing::info_span!("group_commit", containers = batch.len());
                        async move { orphans::run_group(&inner.core, batch).await }.instrument(span)
                    };
                    (inner.group)
                        .wait(ticket, cfg.group_commit_window, run)
                        .await
                }
                Err(request) => spawn_burst(&inner, vec![request])
                    .await
                    .and_then(|mut v| v.pop()),
            };
            answer.unwrap_or_else(|| Err(abandoned(id)))
        }
    }

    /// Places a burst: validates, plans against one snapshot, commits with one `reserve_batch`
    /// call (split only past [`MAX_BATCH`] reservations), re-plans only the rejected containers
    /// with bounded attempts and backoff. Returns one result per request, in input order. An id
    /// repeated with an identical request gets the same answer as its first occurrence; with a
    /// different request, `InvalidRequest` (`DuplicateContainer`).
    ///
    /// Cancel-safe like [`schedule`](Self::schedule): the burst runs in a spawned task, and
    /// what it placed is released if the caller is gone when it ends.
    pub async fn schedule_batch(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Vec<Result<Placement, ScheduleError>> {
        let ids: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
        match spawn_burst(&self.inner, requests).await {
            Some(answers) if answers.len() == ids.len() => answers,
            _ => ids.into_iter().map(|id| Err(abandoned(id))).collect(),
        }
    }

    /// Releases containers (in chunks of [`MAX_BATCH`]) and writes the returned capacity
    /// through to the cache when the worker's cached version is the one just before.
    ///
    /// An error means the chunk it names was not certainly applied: if earlier chunks were
    /// released, or the failed one may have been (`Ambiguous`), the error is
    /// [`RepoError::Ambiguous`], and the cache is invalidated; look the containers up to know.
    /// Only when nothing at all was applied is it the backend's own error.
    pub async fn release(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let core = &self.inner.core;
        let mut out = Vec::with_capacity(container_ids.len());
        for chunk in container_ids.chunks(MAX_BATCH) {
            match core.repo.release_batch(chunk).await {
                Ok(res) => {
                    core.cache.write_through_releases(&res);
                    out.extend(res);
                }
                Err(e) => {
                    core.cache.invalidate();
                    if out.is_empty() {
                        return Err(e);
                    }
                    return Err(RepoError::Ambiguous(
                        format!(
                            "released the first {} containers, then release_batch failed: {e}",
                            out.len()
                        )
                        .into(),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Runs one burst in a spawned task and waits for its answers (`None` if the task ended without
/// answering).
async fn spawn_burst<R: WorkerRepository + 'static>(
    inner: &Arc<Inner<R>>,
    requests: Vec<ContainerRequest>,
) -> Option<Vec<Answer>> {
    let span = tracing::info_span!("schedule_batch", containers = requests.len());
    let inner = Arc::clone(inner);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move { orphans::run_for(&inner.core, requests, tx).await }.instrument(span));
    rx.await.ok()
}

/// The answer for a container whose burst ended without answering.
fn abandoned(container_id: String) -> ScheduleError {
    ScheduleError::RetriesExhausted {
        container_id,
        attempts: 0,
        last: AttemptError::Abandoned,
    }
}
