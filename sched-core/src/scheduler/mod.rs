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
//! [`Scheduler::schedule`] calls), `stats` (counters). This module only wires them.

mod burst;
mod calls;
mod config;
mod group_commit;
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
use burst::{Burst, Core};
use group_commit::GroupCommit;
use stats::Counters;
use std::sync::Arc;
use tracing::Instrument;

struct Inner<R> {
    core: Core<R>,
    group: GroupCommit<ContainerRequest, Result<Placement, ScheduleError>>,
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
                    repo,
                    config,
                    cache: WorkerStateCache::new(CacheConfig {
                        ttl: config.cache_ttl,
                    }),
                    counters: Counters::default(),
                },
                group: GroupCommit::new(),
            }),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &R {
        &self.inner.core.repo
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
    /// queue as one batch (group commit).
    pub async fn schedule(&self, request: ContainerRequest) -> Result<Placement, ScheduleError> {
        let id = request.id.clone();
        let lost = || ScheduleError::RetriesExhausted {
            container_id: id.clone(),
            attempts: 0,
            last: AttemptError::Abandoned,
        };
        let cfg = &self.inner.core.config;
        let answer = if cfg.batching {
            let run = |batch: Vec<ContainerRequest>| {
                let this = self.clone();
                async move { this.schedule_batch(batch).await }
            };
            self.inner
                .group
                .submit(request, cfg.group_commit_window, run)
                .await
        } else {
            self.schedule_batch(vec![request]).await.pop()
        };
        answer.unwrap_or_else(|| Err(lost()))
    }

    /// Places a burst: validates, plans against one snapshot, commits with one `reserve_batch`
    /// call (split only past [`MAX_BATCH`] reservations), re-plans only the rejected containers
    /// with bounded attempts and backoff. Returns one result per request, in input order.
    pub async fn schedule_batch(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Vec<Result<Placement, ScheduleError>> {
        let span = tracing::info_span!("schedule_batch", containers = requests.len());
        let core = &self.inner.core;
        async move { Burst::new(core, requests).run().await }
            .instrument(span)
            .await
    }

    /// Releases containers (in chunks of [`MAX_BATCH`]) and writes the returned capacity
    /// through to the cache when the worker's cached version is the one just before.
    pub async fn release(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let core = &self.inner.core;
        let mut out = Vec::with_capacity(container_ids.len());
        for chunk in container_ids.chunks(MAX_BATCH) {
            let res = core.repo.release_batch(chunk).await?;
            core.cache.write_through_releases(&res);
            out.extend(res);
        }
        Ok(out)
    }
}
