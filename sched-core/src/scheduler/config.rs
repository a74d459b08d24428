//! [`SchedulerConfig`]: the scheduler's settings, one switch per optimisation.

use super::plan::PlanConfig;
use crate::affinity::AffinityMode;
use crate::backoff::Backoff;
use crate::cache::CacheConfig;
use crate::CommitMode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Scheduler settings. Each optimisation can be switched off on its own.
///
/// Start from [`default`](Self::default) and change what you need with the `with_*` builders,
/// or deserialise it (serde, every field optional, durations in milliseconds with an `_ms`
/// suffix, unknown fields refused):
///
/// ```
/// use sched_core::{AffinityMode, SchedulerConfig};
/// use std::time::Duration;
/// let cfg = SchedulerConfig::default()
///     .with_affinity(AffinityMode::Rotate)
///     .with_cache_ttl(Duration::from_millis(200))
///     .with_max_attempts(8);
/// assert_eq!(cfg.max_attempts, 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Worker-state cache TTL; zero reads the repository for every plan.
    #[serde(rename = "cache_ttl_ms", with = "millis")]
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
    #[serde(rename = "group_commit_window_ms", with = "millis")]
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
    #[serde(rename = "backoff_base_ms", with = "millis")]
    pub backoff_base: Duration,
    /// Backoff cap.
    #[serde(rename = "backoff_max_ms", with = "millis")]
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

/// A `Duration` as whole milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Builders: each sets one field and returns the config.
impl SchedulerConfig {
    /// Sets [`cache_ttl`](Self::cache_ttl).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets [`affinity`](Self::affinity).
    pub fn with_affinity(mut self, affinity: AffinityMode) -> Self {
        self.affinity = affinity;
        self
    }

    /// Sets [`best_fit`](Self::best_fit).
    pub fn with_best_fit(mut self, on: bool) -> Self {
        self.best_fit = on;
        self
    }

    /// Sets [`cpu_on_gpu_workers`](Self::cpu_on_gpu_workers).
    pub fn with_cpu_on_gpu_workers(mut self, on: bool) -> Self {
        self.cpu_on_gpu_workers = on;
        self
    }

    /// Sets [`batching`](Self::batching).
    pub fn with_batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// Sets [`group_commit_window`](Self::group_commit_window).
    pub fn with_group_commit_window(mut self, window: Duration) -> Self {
        self.group_commit_window = window;
        self
    }

    /// Sets [`version_checks`](Self::version_checks).
    pub fn with_version_checks(mut self, on: bool) -> Self {
        self.version_checks = on;
        self
    }

    /// Sets [`commit_mode`](Self::commit_mode).
    pub fn with_commit_mode(mut self, mode: CommitMode) -> Self {
        self.commit_mode = mode;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets [`capacity_rechecks`](Self::capacity_rechecks).
    pub fn with_capacity_rechecks(mut self, n: u32) -> Self {
        self.capacity_rechecks = n;
        self
    }

    /// Sets [`backoff_base`](Self::backoff_base).
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// Sets [`backoff_max`](Self::backoff_max).
    pub fn with_backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// Sets [`per_worker_metrics`](Self::per_worker_metrics).
    pub fn with_per_worker_metrics(mut self, on: bool) -> Self {
        self.per_worker_metrics = on;
        self
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_partial_settings_over_the_defaults() {
        let json = r#"{"affinity": "rotate", "cache_ttl_ms": 250, "backoff_max_ms": 40,
                       "batching": false, "commit_mode": "all_or_nothing"}"#;
        let cfg: SchedulerConfig = serde_json::from_str(json).unwrap();
        let want = SchedulerConfig::default()
            .with_affinity(AffinityMode::Rotate)
            .with_cache_ttl(Duration::from_millis(250))
            .with_backoff_max(Duration::from_millis(40))
            .with_batching(false)
            .with_commit_mode(CommitMode::AllOrNothing);
        assert_eq!(cfg, want);
        let empty: SchedulerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SchedulerConfig::default());
    }

    #[test]
    fn round_trips_through_json_in_milliseconds() {
        let cfg = SchedulerConfig::default()
            .with_group_commit_window(Duration::from_millis(3))
            .with_backoff_base(Duration::from_millis(7))
            .with_max_attempts(9)
            .with_capacity_rechecks(0)
            .with_version_checks(true)
            .with_best_fit(true)
            .with_cpu_on_gpu_workers(true)
            .with_per_worker_metrics(true);
        let json = serde_json::to_value(cfg).unwrap();
        assert_eq!(json["group_commit_window_ms"], 3);
        assert_eq!(json["backoff_base_ms"], 7);
        let back: SchedulerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values() {
        let typo = serde_json::from_str::<SchedulerConfig>(r#"{"cache_ttl": 5}"#);
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
        let bad = serde_json::from_str::<SchedulerConfig>(r#"{"affinity": "sideways"}"#);
        assert!(bad.is_err());
        let negative = serde_json::from_str::<SchedulerConfig>(r#"{"backoff_max_ms": -1}"#);
        assert!(negative.is_err());
    }
}
