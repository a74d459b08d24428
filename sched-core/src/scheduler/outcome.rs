//! What scheduling one container ends in: a [`Placement`], or a [`ScheduleError`] with a typed
//! cause.

use super::plan::Unplaceable;
use crate::{InvalidInput, Rejection, RepoError, ReservationRecord};
use serde::Serialize;
use std::sync::Arc;

/// Where a container was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The container.
    pub container_id: String,
    /// The worker that holds it.
    pub worker_id: String,
    /// The worker's version after the commit (0 when it was found held rather than committed).
    pub resource_version: u64,
    /// Commit attempts it took.
    pub attempts: u32,
    /// True when the container was held before this call (a repeated request, or another
    /// caller placed it), with the same resources and GPU type: the store rejected this call's
    /// reservation with `AlreadyReserved` and a lookup found it held. False when this call
    /// committed it, including a commit whose reply was lost and a lookup found applied.
    pub already_held: bool,
}

/// Why a container was not placed.
///
/// Every error but [`Ambiguous`](Self::Ambiguous) means this call left the container unheld:
/// before answering with an error, the scheduler looks the container up once more, and answers
/// `Ok` (or `HeldDifferently`) if it is held after all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    /// The request is malformed (found by the scheduler, the backend, or the worker's part).
    #[error("invalid request {container_id:?}: {cause}")]
    InvalidRequest {
        /// The container.
        container_id: String,
        /// What is wrong.
        cause: InvalidInput,
    },
    /// No worker can take it, in a fresh view of the workers.
    #[error("no capacity for {container_id:?}: {cause}")]
    NoCapacity {
        /// The container.
        container_id: String,
        /// No eligible worker at all, or none with room.
        cause: Unplaceable,
    },
    /// Every attempt was rejected or failed.
    #[error("retries exhausted for {container_id:?} after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The container.
        container_id: String,
        /// Attempts made.
        attempts: u32,
        /// The last rejection or error.
        last: AttemptError,
    },
    /// May be held: a commit's outcome is unknown (lost reply), or placing it failed, and
    /// looking it up failed, to the last lookup before answering (it may be held by this call,
    /// or by an earlier request for the same id). Look it up (`find_reservation`) before
    /// placing it elsewhere. Never answered when a lookup says it is not held.
    #[error("{container_id:?} may be held: a commit's outcome is unknown and looking it up failed: {cause}")]
    Ambiguous {
        /// The container.
        container_id: String,
        /// Why the lookup failed (the last error).
        cause: Arc<RepoError>,
    },
    /// The id is already held (on `held.worker_id`) with other resources or another GPU type;
    /// nothing changed. Release it first to place it with the new resources.
    #[error("{container_id:?} is already held on {} with other resources ({})", held.worker_id, held.resources)]
    HeldDifferently {
        /// The container.
        container_id: String,
        /// What the store holds for it.
        held: Box<ReservationRecord>,
    },
}

impl ScheduleError {
    /// The container concerned.
    pub fn container_id(&self) -> &str {
        match self {
            ScheduleError::InvalidRequest { container_id, .. }
            | ScheduleError::NoCapacity { container_id, .. }
            | ScheduleError::RetriesExhausted { container_id, .. }
            | ScheduleError::Ambiguous { container_id, .. }
            | ScheduleError::HeldDifferently { container_id, .. } => container_id,
        }
    }

    /// True when the container may be held although placing it failed
    /// ([`Ambiguous`](Self::Ambiguous) only): look it up before placing it elsewhere. Every
    /// other error means this call left it unheld (a [`HeldDifferently`](Self::HeldDifferently)
    /// container is held, but not by this call, and unchanged).
    pub fn may_be_held(&self) -> bool {
        matches!(self, ScheduleError::Ambiguous { .. })
    }
}

/// Why an attempt to place a container did not place it: the `last` of
/// [`ScheduleError::RetriesExhausted`]. Store errors are shared (`Arc`) by every container of
/// the call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// The worker rejected the container's part (capacity, version, availability, contention).
    #[error("{0}")]
    Rejected(Rejection),
    /// Reading the workers failed, so nothing was planned.
    #[error("reading workers: {0}")]
    ReadWorkers(Arc<RepoError>),
    /// The `reserve_batch` call failed, or its outcome is unknown (lost reply).
    #[error("{0}")]
    Commit(Arc<RepoError>),
    /// After a lost reply or an `AlreadyReserved`, `find_reservations` failed too: where the
    /// container is held is unknown (re-planning is safe: the one-holder rule turns a second
    /// placement into `AlreadyReserved`).
    #[error("resolving lost reply: {0}")]
    Resolve(Arc<RepoError>),
    /// The task placing the container ended before answering (it panicked, or the runtime shut
    /// down): [`Scheduler::schedule`] and [`Scheduler::schedule_batch`] run bursts in spawned
    /// tasks.
    ///
    /// [`Scheduler::schedule`]: crate::Scheduler::schedule
    /// [`Scheduler::schedule_batch`]: crate::Scheduler::schedule_batch
    #[error("scheduler task ended before answering")]
    Abandoned,
    /// No error was recorded for the container (e.g. a backend answered with the wrong number
    /// of results and the lookup found the container held nowhere).
    #[error("no error recorded")]
    Unknown,
}
