//! [`ContainerRequest`]: what the scheduler is asked to place.

use crate::Resources;
use serde::{Deserialize, Serialize};

/// The GPU type a request may name to accept any GPU model.
pub const ANY_GPU: &str = "any";

/// A container to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRequest {
    /// Unique container id.
    pub id: String,
    /// What it needs.
    pub resources: Resources,
    /// GPU models it accepts. Empty means CPU-only; [`ANY_GPU`] accepts any model.
    pub gpu_types: Vec<String>,
    /// Pool it asks for, if any.
    pub pool_selector: Option<String>,
    /// Whether it tolerates a preemptable worker.
    pub preemptable: bool,
    /// Request priority (informational; workers are ranked by their own priority).
    pub priority: i32,
    /// When set, the placement is leased for this many milliseconds from its commit (store
    /// clock) and must be renewed ([`renew_leases`](crate::WorkerRepository::renew_leases)).
    pub lease_ms: Option<u64>,
}

impl ContainerRequest {
    /// A CPU-only, preemptable request with no pool selector.
    ///
    /// ```
    /// use sched_core::{ContainerRequest, Resources};
    /// let r = ContainerRequest::new("c-1", Resources::cpu_mem(250, 512));
    /// assert!(r.is_cpu_only());
    /// ```
    pub fn new(id: impl Into<String>, resources: Resources) -> Self {
        ContainerRequest {
            id: id.into(),
            resources,
            gpu_types: Vec::new(),
            pool_selector: None,
            preemptable: true,
            priority: 0,
            lease_ms: None,
        }
    }

    /// Accepts these GPU types.
    pub fn with_gpu_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.gpu_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Names a pool.
    pub fn with_pool(mut self, pool: impl Into<String>) -> Self {
        self.pool_selector = Some(pool.into());
        self
    }

    /// Refuses preemptable workers.
    pub fn non_preemptable(mut self) -> Self {
        self.preemptable = false;
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Leases the placement for `lease` (rounded up to a millisecond) from its commit.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease_ms = Some(crate::lifecycle::duration_ms(lease));
        self
    }

    /// True when the request accepts no GPU type.
    pub fn is_cpu_only(&self) -> bool {
        self.gpu_types.is_empty()
    }

    /// True when the request accepts a worker with this GPU type (`None` = no GPU).
    pub fn accepts_gpu(&self, worker_gpu: Option<&str>) -> bool {
        match worker_gpu {
            None => self.resources.gpu_count == 0,
            Some(t) => self.gpu_types.iter().any(|g| g == ANY_GPU || g == t),
        }
    }
}
