//! Reservations and their outcomes: what `reserve_batch` takes and returns.

use crate::{ResourceKind, Resources, WorkerStatus};
use serde::{Deserialize, Serialize};

/// One container's claim on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceReservation {
    /// Container id; unique across the whole store while held.
    pub container_id: String,
    /// What it takes.
    pub resources: Resources,
    /// GPU model it needs, when it takes GPUs; must match the worker's.
    pub gpu_type: Option<String>,
    /// When set, the reservation is leased: it expires this many milliseconds after the commit,
    /// by the store's clock, unless renewed
    /// ([`renew_leases`](crate::WorkerRepository::renew_leases)). `None`: held until released.
    pub lease_ms: Option<u64>,
}

impl ResourceReservation {
    /// A reservation without GPU type.
    pub fn new(container_id: impl Into<String>, resources: Resources) -> Self {
        ResourceReservation {
            container_id: container_id.into(),
            resources,
            gpu_type: None,
            lease_ms: None,
        }
    }

    /// Names the GPU type.
    pub fn with_gpu_type(mut self, gpu_type: impl Into<String>) -> Self {
        self.gpu_type = Some(gpu_type.into());
        self
    }

    /// Leases the reservation for `lease` (rounded up to a millisecond) from its commit.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease_ms = Some(crate::lifecycle::duration_ms(lease));
        self
    }
}

/// All reservations for one worker in one batch: committed atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityReservation {
    /// Target worker.
    pub worker_id: String,
    /// When set, the worker must still be at this version (optimistic check).
    pub expected_version: Option<u64>,
    /// Reservations, in order (order matters for [`CommitMode::Partial`]).
    pub reservations: Vec<ResourceReservation>,
}

impl CapacityReservation {
    /// A capacity reservation without version check.
    pub fn new(worker_id: impl Into<String>, reservations: Vec<ResourceReservation>) -> Self {
        CapacityReservation {
            worker_id: worker_id.into(),
            expected_version: None,
            reservations,
        }
    }

    /// Requires the worker to be at `version`.
    pub fn expecting(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// How much of one worker's reservations may commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitMode {
    /// All of a worker's reservations commit, or none.
    #[default]
    AllOrNothing,
    /// The longest prefix that fits commits (Omega's incremental transactions).
    Partial,
}

/// Why a worker's part of a batch (or the rest of it) did not commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    /// A reservation does not fit the free capacity.
    #[error("insufficient {resource} for container {container_id}: requested {requested}, available {available}")]
    InsufficientCapacity {
        /// The container that did not fit.
        container_id: String,
        /// Which resource was short.
        resource: ResourceKind,
        /// Amount requested.
        requested: u64,
        /// Amount free at that point of the batch.
        available: u64,
    },
    /// `expected_version` did not match.
    #[error("version conflict: expected {expected}, current {current}")]
    VersionConflict {
        /// The version the caller expected.
        expected: u64,
        /// The version the store holds.
        current: u64,
    },
    /// No such worker.
    #[error("unknown worker")]
    UnknownWorker,
    /// The worker is draining or disabled.
    #[error("worker not available: {status}")]
    WorkerUnavailable {
        /// Its status.
        status: WorkerStatus,
    },
    /// The worker tracks liveness and its last heartbeat is older than its timeout (by the
    /// store's clock). Nothing changed.
    #[error("worker heartbeat expired: last {last_heartbeat_ms:?} ms, timeout {timeout_ms} ms")]
    HeartbeatExpired {
        /// The store's clock at the last heartbeat, if any.
        last_heartbeat_ms: Option<u64>,
        /// The worker's heartbeat timeout.
        timeout_ms: u64,
    },
    /// The container is held already: on another worker, or on this one (a repeated
    /// reservation is rejected too, so a caller never gets Ok for resources the store does not
    /// hold). Nothing changed.
    #[error("container {container_id} is already reserved on worker {worker_id}")]
    AlreadyReserved {
        /// The container.
        container_id: String,
        /// Where it is held.
        worker_id: String,
    },
    /// A GPU reservation names a type the worker does not have.
    #[error("container {container_id} needs GPU type {requested}, worker has {actual:?}")]
    GpuTypeMismatch {
        /// The container.
        container_id: String,
        /// Type requested.
        requested: String,
        /// Type the worker has.
        actual: Option<String>,
    },
    /// Another call is placing this container at this moment and has not committed yet
    /// (only where the one-holder rule spans several atomic sections, e.g. Redis Cluster).
    /// Nothing changed; retry.
    #[error("container {container_id} is being placed by another call; retry")]
    Contended {
        /// The container.
        container_id: String,
    },
    /// The reservation is malformed for this worker.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
}

impl Rejection {
    /// Every value [`Rejection::kind`] returns (the `kind` label of `sched_conflicts_total`).
    pub const KINDS: [&'static str; 9] = [
        "insufficient_capacity",
        "version_conflict",
        "unknown_worker",
        "worker_unavailable",
        "heartbeat_expired",
        "already_reserved",
        "gpu_type_mismatch",
        "contended",
        "invalid_input",
    ];

    /// Short machine-friendly name, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::InsufficientCapacity { .. } => "insufficient_capacity",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::UnknownWorker => "unknown_worker",
            Rejection::WorkerUnavailable { .. } => "worker_unavailable",
            Rejection::HeartbeatExpired { .. } => "heartbeat_expired",
            Rejection::AlreadyReserved { .. } => "already_reserved",
            Rejection::GpuTypeMismatch { .. } => "gpu_type_mismatch",
            Rejection::Contended { .. } => "contended",
            Rejection::InvalidInput { .. } => "invalid_input",
        }
    }
}

/// A worker's part of a batch that committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The worker's version after the commit (a commit always charges something, so it is
    /// higher than before).
    pub new_version: u64,
    /// The worker's free capacity after the commit.
    pub free: Resources,
    /// How many reservations, as a prefix of the request, this commit charged (a container
    /// already held anywhere is never accepted: it is rejected with `AlreadyReserved`).
    pub accepted: usize,
    /// In [`CommitMode::Partial`], why `reservations[accepted..]` did not commit.
    pub remainder: Option<Rejection>,
}

/// The outcome for one worker: committed, or rejected with nothing changed.
pub type WorkerOutcome = Result<Committed, Rejection>;

/// One worker's outcome within a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// The worker.
    pub worker_id: String,
    /// Its outcome.
    pub outcome: WorkerOutcome,
}

/// A held reservation, as found in a worker's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationRecord {
    /// Worker that holds it.
    pub worker_id: String,
    /// Container.
    pub container_id: String,
    /// Resources charged.
    pub resources: Resources,
    /// GPU type, if any.
    pub gpu_type: Option<String>,
    /// When leased: the deadline, in ms since the Unix epoch by the store's clock. A reservation
    /// past its deadline is still held (and charged) until a sweep expires it, but it can no
    /// longer be renewed.
    pub lease_expires_at_ms: Option<u64>,
}

/// Result of releasing one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseOutcome {
    /// The container.
    pub container_id: String,
    /// What was returned, or `None` when it was not held (no capacity changes).
    pub released: Option<Released>,
}

/// Capacity returned to a worker by a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The worker.
    pub worker_id: String,
    /// What came back.
    pub resources: Resources,
    /// The worker's version after the release.
    pub new_version: u64,
}

/// Signed per-resource difference between stored and recomputed free capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// CPU drift (stored − expected).
    pub cpu_millicores: i128,
    /// Memory drift.
    pub memory_mib: i128,
    /// GPU drift.
    pub gpu_count: i128,
}

impl Drift {
    /// `stored - expected`, per resource.
    pub fn between(stored: &Resources, expected: &Resources) -> Self {
        Drift {
            cpu_millicores: i128::from(stored.cpu_millicores) - i128::from(expected.cpu_millicores),
            memory_mib: i128::from(stored.memory_mib) - i128::from(expected.memory_mib),
            gpu_count: i128::from(stored.gpu_count) - i128::from(expected.gpu_count),
        }
    }

    /// True when there is no drift.
    pub fn is_zero(&self) -> bool {
        *self == Drift::default()
    }
}

/// What `audit` found on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The worker.
    pub worker_id: String,
    /// Its total capacity.
    pub total: Resources,
    /// Free capacity as stored.
    pub free: Resources,
    /// Sum of the ledger.
    pub reserved: Resources,
    /// Number of reservations in the ledger.
    pub reservations: usize,
    /// `free - (total - reserved)`; zero when consistent.
    pub drift: Drift,
    /// Version at the time of the audit.
    pub resource_version: u64,
}

impl AuditReport {
    /// Builds a report from stored values and the ledger sum.
    pub fn new(
        worker_id: impl Into<String>,
        total: Resources,
        free: Resources,
        reserved: Resources,
        reservations: usize,
        resource_version: u64,
    ) -> Self {
        let expected = total.saturating_sub(&reserved);
        let mut drift = Drift::between(&free, &expected);
        // Overcommit (reserved > total) is drift too, even though free can't go negative.
        let over = Drift::between(&total, &reserved);
        if over.cpu_millicores < 0 {
            drift.cpu_millicores += over.cpu_millicores;
        }
        if over.memory_mib < 0 {
            drift.memory_mib += over.memory_mib;
        }
        if over.gpu_count < 0 {
            drift.gpu_count += over.gpu_count;
        }
        AuditReport {
            worker_id: worker_id.into(),
            total,
            free,
            reserved,
            reservations,
            drift,
            resource_version,
        }
    }

    /// True when free + reserved = total exactly.
    pub fn is_consistent(&self) -> bool {
        self.drift.is_zero()
    }
}
