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
        }
    }

    /// True when the worker accepts new reservations.
    pub fn is_available(&self) -> bool {
        self.status == WorkerStatus::Available
    }
}
