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
///
/// For a service: [`is_store_unavailable`](Self::is_store_unavailable) (503: the store is down
/// or misconfigured), [`is_contention`](Self::is_contention) (409 or retry: other schedulers
/// took what this one planned on), `NoCapacity` (no room anywhere), `Ambiguous` (look it up).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
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

    /// The store error behind the answer: the failed lookup of an `Ambiguous`, or the last
    /// attempt's read, commit or lookup failure of a `RetriesExhausted`. `None` when the store
    /// answered (a rejection, no capacity, a bad request).
    pub fn store_error(&self) -> Option<&RepoError> {
        match self {
            ScheduleError::Ambiguous { cause, .. } => Some(cause),
            ScheduleError::RetriesExhausted {
                last:
                    AttemptError::ReadWorkers(e) | AttemptError::Commit(e) | AttemptError::Resolve(e),
                ..
            } => Some(e),
            _ => None,
        }
    }

    /// True when the store failed rather than answered: it could not be reached, timed out,
    /// refused the credentials, or lacks its schema (a service answers 503). See
    /// [`RepoError::needs_operator`] to tell an outage from a configuration to fix.
    pub fn is_store_unavailable(&self) -> bool {
        self.store_error()
            .is_some_and(|e| e.is_transient() || e.needs_operator())
    }

    /// True when every attempt was turned away by other schedulers' work: the last attempt was
    /// rejected (capacity taken since the plan, a version or a container race). A service
    /// answers 409 or retries the request.
    pub fn is_contention(&self) -> bool {
        matches!(
            self,
            ScheduleError::RetriesExhausted {
                last: AttemptError::Rejected(_),
                ..
            }
        )
    }
}

/// Why an attempt to place a container did not place it: the `last` of
/// [`ScheduleError::RetriesExhausted`]. Store errors are shared (`Arc`) by every container of
/// the call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exhausted(last: AttemptError) -> ScheduleError {
        ScheduleError::RetriesExhausted {
            container_id: "c".into(),
            attempts: 5,
            last,
        }
    }

    /// A service tells an outage (503) from contention (409) from the typed cause.
    #[test]
    fn outage_contention_and_capacity_are_told_apart() {
        let down = RepoError::Unreachable {
            endpoint: "db:6379".into(),
            source: "refused".into(),
        };
        let outage = exhausted(AttemptError::ReadWorkers(Arc::new(down)));
        assert!(outage.is_store_unavailable() && !outage.is_contention());
        assert!(outage.store_error().is_some_and(RepoError::is_transient));

        let creds = RepoError::Unauthorized {
            endpoint: "db:6379".into(),
            user: "app".into(),
            source: "WRONGPASS".into(),
        };
        let misconfigured = exhausted(AttemptError::Commit(Arc::new(creds)));
        assert!(misconfigured.is_store_unavailable());
        assert!(misconfigured
            .store_error()
            .is_some_and(RepoError::needs_operator));

        let raced = exhausted(AttemptError::Rejected(Rejection::VersionConflict {
            expected: 1,
            current: 2,
        }));
        assert!(raced.is_contention() && !raced.is_store_unavailable());
        assert!(raced.store_error().is_none());

        let full = ScheduleError::NoCapacity {
            container_id: "c".into(),
            cause: Unplaceable::NoCapacity,
        };
        assert!(!full.is_contention() && !full.is_store_unavailable());

        let lookup = RepoError::Unavailable("lookup failed".into());
        let ambiguous = ScheduleError::Ambiguous {
            container_id: "c".into(),
            cause: Arc::new(lookup),
        };
        assert!(ambiguous.may_be_held() && ambiguous.is_store_unavailable());
    }

    #[test]
    fn only_configuration_and_schema_need_an_operator() {
        let not_migrated = RepoError::NotMigrated {
            detail: "function sched_register_worker does not exist".into(),
        };
        assert!(not_migrated.needs_operator() && !not_migrated.is_transient());
        assert!(not_migrated.to_string().contains("migrate()"));
        let misconfigured = RepoError::Misconfigured {
            endpoint: "db:5432".into(),
            reason: "database \"x\" does not exist".into(),
        };
        assert!(misconfigured.needs_operator() && !misconfigured.is_transient());
        assert!(misconfigured.to_string().contains("db:5432"));
        let ambiguous = RepoError::Ambiguous("lost reply".into());
        assert!(ambiguous.is_transient() && !ambiguous.needs_operator());
    }
}
