//! [`SchedulerConfig`]: the scheduler's settings, one switch per optimisation.

use super::plan::PlanConfig;
use crate::affinity::AffinityMode;
use crate::backoff::Backoff;
use crate::cache::CacheConfig;
use crate::CommitMode;
use std::time::Duration;

/// Scheduler settings. Each optimisation can be switched off on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Worker-state cache TTL; zero reads the repository for every plan.
    pub cache_ttl: Duration,
    /// Spreading of CPU-only containers within a priority tier (default: balanced).
    pub affinity: AffinityMode,
    /// Best-fit packing instead of affinity.
    pub best_fit: bool,
    /// Let CPU-only requests use GPU workers.
    pub cpu_on_gpu_workers: bool,
    /// Coalesce concurrent [`Scheduler::schedule`](crate::Scheduler::schedule) calls into shared
    /// batches (group commit).
    pub batching: bool,
    /// With batching, how long the caller that holds the commit turn waits for more callers
    /// before closing the batch. Zero (default) yields to already-runnable tasks, again while the
    /// queue keeps growing, and closes the batch after a yield that added nobody.
    pub group_commit_window: Duration,
    /// Send `expected_version` with each worker's part. Off by default: the backends check
    /// capacity atomically, so a version check only adds conflicts when other schedulers commit
    /// to the same worker; turn it on when a plan depends on more than capacity.
    pub version_checks: bool,
    /// How much of a worker's part may commit. `Partial` (default) keeps the fitting prefix.
    pub commit_mode: CommitMode,
    /// Attempts per container before
    /// [`ScheduleError::RetriesExhausted`](crate::ScheduleError::RetriesExhausted). An attempt
    /// in which the store showed one of the burst's containers held already (another caller
    /// placed it, and the lookup settled it) does not count: it made progress.
    pub max_attempts: u32,
    /// Extra attempts, past `max_attempts`, for containers whose last attempt was refused for
    /// capacity (other schedulers took what this one's view showed free). Each reads a fresh
    /// view of the store: there the container is placed, or answered
    /// [`ScheduleError::NoCapacity`](crate::ScheduleError::NoCapacity) when no worker has room.
    /// Zero answers them `RetriesExhausted` after `max_attempts`, as before.
    pub capacity_rechecks: u32,
    /// First retry backoff; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Label `sched_placements_total` with the worker id. Off by default: one series per worker
    /// is unbounded cardinality for a metrics store (METRICS.md).
    pub per_worker_metrics: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            cache_ttl: CacheConfig::default().ttl,
            affinity: AffinityMode::Balanced,
            best_fit: false,
            cpu_on_gpu_workers: false,
            batching: true,
            group_commit_window: Duration::ZERO,
            version_checks: false,
            commit_mode: CommitMode::Partial,
            max_attempts: 5,
            capacity_rechecks: 16,
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(100),
            per_worker_metrics: false,
        }
    }
}

impl SchedulerConfig {
    /// The planner's part of the settings.
    pub(super) fn plan_config(&self) -> PlanConfig {
        PlanConfig {
            affinity: self.affinity,
            best_fit: self.best_fit,
            cpu_on_gpu_workers: self.cpu_on_gpu_workers,
        }
    }

    /// The pause before `attempt` (2 or more): `backoff_base` doubled per attempt, capped at
    /// `backoff_max`, with jitter in [50%, 100%] ([`Backoff`]).
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.backoff_base, self.backoff_max).delay(attempt.saturating_sub(1))
    }
}
