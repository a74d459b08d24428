//! [`RepoError`]: what a [`WorkerRepository`](crate::WorkerRepository) call can fail with.

use crate::ResourceKind;

/// Boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A whole call failed. Per-worker rejections are not errors: see [`Rejection`](crate::Rejection).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The input is malformed; nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// Re-registration would put the new total below what is reserved; nothing was changed.
    #[error("new total {resource} {total} is below the {reserved} reserved")]
    TotalBelowReserved {
        /// Which resource.
        resource: ResourceKind,
        /// Proposed total.
        total: u64,
        /// Currently reserved.
        reserved: u64,
    },
    /// The worker does not exist.
    #[error("unknown worker {0:?}")]
    UnknownWorker(String),
    /// The request certainly did not reach the store (connect failure, pool exhausted).
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The request may or may not have been applied (timeout, lost reply, dropped connection).
    /// Callers must resolve the doubt (e.g. with `find_reservation`) before retrying elsewhere.
    #[error("outcome unknown: {0}")]
    Ambiguous(#[source] BoxError),
    /// The store answered with something this crate does not understand, or another failure.
    #[error("backend error: {0}")]
    Backend(#[source] BoxError),
    /// The backend does not implement this operation (a third-party backend written before it
    /// existed: the lifecycle methods default to this). Nothing was changed.
    #[error("{operation} is not supported by this backend")]
    Unsupported {
        /// The operation (method name).
        operation: &'static str,
    },
}

impl RepoError {
    /// Wraps any error as [`RepoError::Backend`].
    pub fn backend(e: impl Into<BoxError>) -> Self {
        RepoError::Backend(e.into())
    }

    /// True when the call may have been applied even though it failed.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, RepoError::Ambiguous(_))
    }

    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RepoError::Unavailable(_) | RepoError::Ambiguous(_))
    }
}

/// Malformed input, found before anything was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// An id is empty.
    #[error("{what} id is empty")]
    EmptyId {
        /// `worker`, `container` or `pool`.
        what: &'static str,
    },
    /// An id is too long.
    #[error("{what} id is {len} bytes, longer than {max}")]
    IdTooLong {
        /// `worker`, `container` or `pool`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An id contains a control character (including NUL).
    #[error("{what} id contains a control character")]
    ControlCharacter {
        /// `worker`, `container`, `pool` or `gpu type`.
        what: &'static str,
    },
    /// A reservation asks for nothing.
    #[error("container {container_id:?} requests zero resources")]
    ZeroResources {
        /// The container.
        container_id: String,
    },
    /// An amount is above the supported maximum.
    #[error("{resource} amount {value} exceeds the maximum {max}")]
    TooLarge {
        /// Which resource.
        resource: ResourceKind,
        /// The amount.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A container appears twice in one batch.
    #[error("container {container_id:?} appears twice in one batch")]
    DuplicateContainer {
        /// The container.
        container_id: String,
    },
    /// A worker appears twice in one batch.
    #[error("worker {worker_id:?} appears twice in one batch")]
    DuplicateWorker {
        /// The worker.
        worker_id: String,
    },
    /// A worker's part of a batch has no reservations.
    #[error("worker {worker_id:?} has no reservations in the batch")]
    EmptyReservation {
        /// The worker.
        worker_id: String,
    },
    /// The batch holds more reservations than one call accepts.
    #[error("batch holds {len} reservations, more than {max}")]
    BatchTooLarge {
        /// Number of reservations.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}
