//! Workers: [`WorkerSpec`] (what is registered) and [`Worker`] (what the store holds).

use crate::Resources;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a worker accepts new reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Accepts new reservations.
    #[default]
    Available,
    /// Keeps its reservations but takes no new ones.
    Draining,
    /// Takes no new reservations.
    Disabled,
}

impl WorkerStatus {
    /// Stable lower-case name, as stored by the backends.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Available => "available",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Disabled => "disabled",
        }
    }

    /// Parses the name produced by [`WorkerStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "available" => Some(WorkerStatus::Available),
            "draining" => Some(WorkerStatus::Draining),
            "disabled" => Some(WorkerStatus::Disabled),
            _ => None,
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a worker's reservations while its heartbeat is older than its timeout.
///
/// Either way the planner skips a stale worker and `reserve_batch` refuses it
/// ([`Rejection::HeartbeatExpired`](crate::Rejection::HeartbeatExpired)); the policy decides only
/// what the lease sweep ([`WorkerRepository::expire_leases`](crate::WorkerRepository::expire_leases))
/// does with what it already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Keep every reservation; leases still expire on their own deadlines.
    #[default]
    Keep,
    /// The sweep releases every reservation of a stale worker, leased or not, as if its lease
    /// had run out (reported with [`ExpiryReason::WorkerStale`](crate::ExpiryReason::WorkerStale)).
    Release,
}

impl StalePolicy {
    /// Stable lower-case name, as stored by the backends.
    pub fn as_str(self) -> &'static str {
        match self {
            StalePolicy::Keep => "keep",
            StalePolicy::Release => "release",
        }
    }

    /// Parses the name produced by [`StalePolicy::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(StalePolicy::Keep),
            "release" => Some(StalePolicy::Release),
            _ => None,
        }
    }
}

impl fmt::Display for StalePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a worker registers: everything but its free capacity and version, which the store owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Unique id.
    pub id: String,
    /// Pool the worker belongs to.
    pub pool: String,
    /// Availability.
    pub status: WorkerStatus,
    /// Higher is preferred by the scheduler.
    pub priority: i32,
    /// GPU model, if the worker has GPUs.
    pub gpu_type: Option<String>,
    /// When true, only requests that name this worker's pool may land here.
    pub requires_pool_selector: bool,
    /// When true, the worker may be reclaimed; non-preemptable requests avoid it.
    pub preemptable: bool,
    /// Total capacity.
    pub total: Resources,
    /// When set, the worker must [`heartbeat`](crate::WorkerRepository::heartbeat) at least
    /// this often (milliseconds of the store's clock), or it is stale: not planned onto, refused
    /// by `reserve_batch`. `None` (the default): liveness is not tracked.
    pub heartbeat_timeout_ms: Option<u64>,
    /// What the lease sweep does with a stale worker's reservations.
    pub on_stale: StalePolicy,
}

impl WorkerSpec {
    /// An available, CPU-only worker in pool `default` with priority 0.
    ///
    /// ```
    /// use sched_core::{Resources, WorkerSpec};
    /// let w = WorkerSpec::new("w1", Resources::cpu_mem(4000, 8192)).with_pool("batch").with_priority(5);
    /// assert_eq!(w.pool, "batch");
    /// ```
    pub fn new(id: impl Into<String>, total: Resources) -> Self {
        WorkerSpec {
            id: id.into(),
            pool: "default".to_owned(),
            status: WorkerStatus::Available,
            priority: 0,
            gpu_type: None,
            requires_pool_selector: false,
            preemptable: false,
            total,
            heartbeat_timeout_ms: None,
            on_stale: StalePolicy::Keep,
        }
    }

    /// Sets the pool.
    pub fn with_pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = pool.into();
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the GPU type.
    pub fn with_gpu_type(mut self, gpu_type: impl Into<String>) -> Self {
        self.gpu_type = Some(gpu_type.into());
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: WorkerStatus) -> Self {
        self.status = status;
        self
    }

    /// Marks the worker as requiring a pool selector.
    pub fn requiring_pool_selector(mut self) -> Self {
        self.requires_pool_selector = true;
        self
    }

    /// Marks the worker as preemptable.
    pub fn preemptable(mut self) -> Self {
        self.preemptable = true;
        self
    }

    /// Requires a heartbeat at least every `timeout` (rounded up to a millisecond).
    pub fn with_heartbeat_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.heartbeat_timeout_ms = Some(crate::lifecycle::duration_ms(timeout));
        self
    }

    /// Sets what the sweep does with the reservations of this worker while it is stale.
    pub fn with_stale_policy(mut self, policy: StalePolicy) -> Self {
        self.on_stale = policy;
        self
    }
}

/// A worker as the store holds it: its spec plus free capacity and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Unique id.
    pub id: String,
    /// Pool the worker belongs to.
    pub pool: String,
    /// Availability.
    pub status: WorkerStatus,
    /// Higher is preferred by the scheduler.
    pub priority: i32,
    /// GPU model, if the worker has GPUs.
    pub gpu_type: Option<String>,
    /// When true, only requests that name this worker's pool may land here.
    pub requires_pool_selector: bool,
    /// When true, the worker may be reclaimed; non-preemptable requests avoid it.
    pub preemptable: bool,
    /// Total capacity.
    pub total: Resources,
    /// Free capacity: total minus everything reserved.
    pub free: Resources,
    /// Bumped by every committed change to this worker.
    pub resource_version: u64,
    /// See [`WorkerSpec::heartbeat_timeout_ms`].
    pub heartbeat_timeout_ms: Option<u64>,
    /// See [`WorkerSpec::on_stale`].
    pub on_stale: StalePolicy,
    /// The store's clock (ms since the Unix epoch) at the last heartbeat or registration.
    pub last_heartbeat_ms: Option<u64>,
    /// True when, by the store's clock at the read, the heartbeat is older than its timeout.
    /// A snapshot only ages: [`is_stale_at`](Self::is_stale_at) judges a later instant.
    pub stale: bool,
}

impl Worker {
    /// A worker built from a spec, entirely free, at the given version.
    pub fn from_spec(spec: &WorkerSpec, version: u64) -> Self {
        Worker {
            id: spec.id.clone(),
            pool: spec.pool.clone(),
            status: spec.status,
            priority: spec.priority,
            gpu_type: spec.gpu_type.clone(),
            requires_pool_selector: spec.requires_pool_selector,
            preemptable: spec.preemptable,
            total: spec.total,
            free: spec.total,
            resource_version: version,
            heartbeat_timeout_ms: spec.heartbeat_timeout_ms,
            on_stale: spec.on_stale,
            last_heartbeat_ms: None,
            stale: false,
        }
    }

    /// The spec part of this worker.
    pub fn spec(&self) -> WorkerSpec {
        WorkerSpec {
            id: self.id.clone(),
            pool: self.pool.clone(),
            status: self.status,
            priority: self.priority,
            gpu_type: self.gpu_type.clone(),
            requires_pool_selector: self.requires_pool_selector,
            preemptable: self.preemptable,
            total: self.total,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
            on_stale: self.on_stale,
        }
    }

    /// True when the worker accepts new reservations: status `Available` and not stale.
    pub fn is_available(&self) -> bool {
        self.status == WorkerStatus::Available && !self.stale
    }

    /// True when, at `now_ms` of the store's clock, the worker tracks liveness and its last
    /// heartbeat is more than its timeout old (or it never had one).
    pub fn is_stale_at(&self, now_ms: u64) -> bool {
        match (self.heartbeat_timeout_ms, self.last_heartbeat_ms) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(timeout), Some(last)) => now_ms.saturating_sub(last) > timeout,
        }
    }
}
