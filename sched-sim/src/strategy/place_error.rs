//! Why a strategy did not place a container: a [`PlaceError`], classified where the strategy
//! decides it (never by searching the message), so a scenario can tell "no worker had room"
//! from a failure.

use sched_core::{AttemptError, Rejection, ScheduleError, Unplaceable};

/// What kind of failure a [`PlaceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceErrorKind {
    /// No worker had room: the plan found none (sched-core's
    /// [`ScheduleError::NoCapacity`], or a baseline's "no eligible worker has room"), or the
    /// last attempt was rejected with [`Rejection::InsufficientCapacity`].
    Capacity,
    /// Anything else: store errors, lock timeouts, invalid input, contention (version
    /// conflicts, races), a task that ended before answering.
    Other,
}

/// One container's placement failure: its [kind](PlaceErrorKind) and message. `Display`
/// prints the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaceError {
    kind: PlaceErrorKind,
    message: String,
}

impl PlaceError {
    /// A failure of `kind` with `message`.
    pub fn new(kind: PlaceErrorKind, message: impl Into<String>) -> Self {
        PlaceError {
            kind,
            message: message.into(),
        }
    }

    /// No worker had room.
    pub fn capacity(message: impl Into<String>) -> Self {
        Self::new(PlaceErrorKind::Capacity, message)
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(PlaceErrorKind::Other, message)
    }

    /// A worker's rejection: [`Capacity`](PlaceErrorKind::Capacity) for
    /// [`Rejection::InsufficientCapacity`], [`Other`](PlaceErrorKind::Other) for the rest.
    pub fn from_rejection(rejection: &Rejection) -> Self {
        Self::new(rejection_kind(rejection), rejection.to_string())
    }

    /// The same kind, with `prefix: ` before the message.
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        PlaceError {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> PlaceErrorKind {
        self.kind
    }

    /// True for [`PlaceErrorKind::Capacity`].
    pub fn is_capacity(&self) -> bool {
        self.kind == PlaceErrorKind::Capacity
    }

    /// The message (what `Display` prints).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// [`Capacity`](PlaceErrorKind::Capacity) for [`Rejection::InsufficientCapacity`],
/// [`Other`](PlaceErrorKind::Other) for every other rejection.
pub fn rejection_kind(rejection: &Rejection) -> PlaceErrorKind {
    match rejection {
        Rejection::InsufficientCapacity { .. } => PlaceErrorKind::Capacity,
        _ => PlaceErrorKind::Other,
    }
}

/// [`Capacity`](PlaceErrorKind::Capacity) for [`ScheduleError::NoCapacity`] when eligible
/// workers had no room, and for [`ScheduleError::RetriesExhausted`] whose last attempt was
/// rejected with [`Rejection::InsufficientCapacity`]; [`Other`](PlaceErrorKind::Other) for
/// everything else, `NoCapacity` with no eligible worker included (a filter or a worker's
/// status, not a full store).
pub fn schedule_error_kind(e: &ScheduleError) -> PlaceErrorKind {
    match e {
        ScheduleError::NoCapacity {
            cause: Unplaceable::NoCapacity,
            ..
        } => PlaceErrorKind::Capacity,
        ScheduleError::RetriesExhausted {
            last: AttemptError::Rejected(rejection),
            ..
        } => rejection_kind(rejection),
        _ => PlaceErrorKind::Other,
    }
}

impl From<ScheduleError> for PlaceError {
    fn from(e: ScheduleError) -> Self {
        PlaceError::new(schedule_error_kind(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sched_core::{RepoError, ResourceKind};
    use std::sync::Arc;

    fn insufficient() -> Rejection {
        Rejection::InsufficientCapacity {
            container_id: "c".into(),
            resource: ResourceKind::Cpu,
            requested: 1000,
            available: 0,
        }
    }

    fn exhausted(last: AttemptError) -> ScheduleError {
        ScheduleError::RetriesExhausted {
            container_id: "c".into(),
            attempts: 5,
            last,
        }
    }

    #[test]
    fn no_capacity_and_exhausted_on_capacity_are_capacity() {
        for (cause, kind) in [
            (Unplaceable::NoCapacity, PlaceErrorKind::Capacity),
            (Unplaceable::NoEligibleWorker, PlaceErrorKind::Other),
        ] {
            let e = ScheduleError::NoCapacity {
                container_id: "c".into(),
                cause,
            };
            let text = e.to_string();
            let p = PlaceError::from(e);
            assert_eq!(p.kind(), kind, "{cause:?}");
            assert_eq!(p.is_capacity(), kind == PlaceErrorKind::Capacity);
            // Display is unchanged: reports print the same text as before.
            assert_eq!(p.to_string(), text);
            assert_eq!(p.message(), text);
        }
        let p = PlaceError::from(exhausted(AttemptError::Rejected(insufficient())));
        assert_eq!(p.kind(), PlaceErrorKind::Capacity);
    }

    #[test]
    fn store_errors_contention_and_the_rest_are_other() {
        let down = Arc::new(RepoError::Unavailable("connection refused".into()));
        let others = [
            exhausted(AttemptError::ReadWorkers(Arc::clone(&down))),
            exhausted(AttemptError::Commit(Arc::clone(&down))),
            exhausted(AttemptError::Resolve(Arc::clone(&down))),
            exhausted(AttemptError::Abandoned),
            exhausted(AttemptError::Unknown),
            exhausted(AttemptError::Rejected(Rejection::VersionConflict {
                expected: 1,
                current: 2,
            })),
            exhausted(AttemptError::Rejected(Rejection::Contended {
                container_id: "c".into(),
            })),
            ScheduleError::Ambiguous {
                container_id: "c".into(),
                cause: down,
            },
        ];
        for e in others {
            let text = e.to_string();
            let p = PlaceError::from(e);
            assert_eq!(p.kind(), PlaceErrorKind::Other, "{text}");
            assert_eq!(p.to_string(), text);
        }
        // A store error whose text mentions capacity is still not a capacity rejection.
        let e = exhausted(AttemptError::Commit(Arc::new(RepoError::Unavailable(
            "insufficient memory: no capacity".into(),
        ))));
        assert_eq!(PlaceError::from(e).kind(), PlaceErrorKind::Other);
    }

    #[test]
    fn rejections_and_context_keep_their_kind() {
        let p = PlaceError::from_rejection(&insufficient()).context("c: gave up after 3 attempts");
        assert!(p.is_capacity());
        assert!(p
            .to_string()
            .starts_with("c: gave up after 3 attempts: insufficient cpu"));
        let p = PlaceError::from_rejection(&Rejection::UnknownWorker).context("c");
        assert_eq!(
            (p.kind(), p.to_string().as_str()),
            (PlaceErrorKind::Other, "c: unknown worker")
        );
        assert!(!PlaceError::other("lock on w stayed busy").is_capacity());
        assert!(PlaceError::capacity("c: no eligible worker has room").is_capacity());
    }
}
