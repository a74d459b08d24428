//! [`RepoError`]: what a [`WorkerRepository`](crate::WorkerRepository) call can fail with.

use crate::ResourceKind;

/// Boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A whole call failed. Per-worker rejections are not errors: see [`Rejection`](crate::Rejection).
///
/// What a service does with each (README, "Troubleshooting"):
///
/// | variant | transient | typical answer |
/// |---|---|---|
/// | [`Unreachable`](Self::Unreachable), [`Unavailable`](Self::Unavailable) | yes | retry later; 503 |
/// | [`Ambiguous`](Self::Ambiguous) | yes | look the container up before placing it elsewhere |
/// | [`Unauthorized`](Self::Unauthorized), [`Misconfigured`](Self::Misconfigured) | no | fix the configuration; alert |
/// | [`NotMigrated`](Self::NotMigrated) | no | run `migrate()` (or `schedctl migrate`) |
/// | [`InvalidInput`](Self::InvalidInput), [`UnknownWorker`](Self::UnknownWorker), [`TotalBelowReserved`](Self::TotalBelowReserved) | no | the caller's mistake; 4xx |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Connecting failed: the connection was refused, the host did not resolve or answer, or
    /// the connection timed out. Nothing was sent. Transient: the store may come back.
    #[error("cannot reach the store at {endpoint}: {source}")]
    Unreachable {
        /// `host:port` (never credentials).
        endpoint: String,
        /// The client library's error.
        source: BoxError,
    },
    /// The store refused the credentials: a wrong password, an unknown or disabled user. Not
    /// transient: retrying with the same settings fails the same way.
    #[error("the store at {endpoint} refused the credentials of user {user:?}: {source}")]
    Unauthorized {
        /// `host:port` (never credentials).
        endpoint: String,
        /// The user name (never the password).
        user: String,
        /// The server's answer.
        source: BoxError,
    },
    /// The settings cannot work: a malformed URL, a wrong scheme, an unknown database. Not
    /// transient.
    #[error("misconfigured store {endpoint}: {reason}")]
    Misconfigured {
        /// `host:port`, or the setting at fault (never credentials).
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// The store's schema is missing or older than this crate (a function or table is not
    /// there). Not transient: run the backend's `migrate()` (or `schedctl migrate`) first.
    #[error("the store's schema is not migrated (call migrate() first): {detail}")]
    NotMigrated {
        /// The server's message.
        detail: String,
    },
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

    /// True when retrying the same call later may succeed: [`Unavailable`](Self::Unavailable),
    /// [`Unreachable`](Self::Unreachable) and [`Ambiguous`](Self::Ambiguous) (after resolving
    /// it). Wrong credentials, settings or schema are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RepoError::Unavailable(_) | RepoError::Unreachable { .. } | RepoError::Ambiguous(_)
        )
    }

    /// A short, stable name of the variant (`"unavailable"`, `"ambiguous"`, ...), for span
    /// fields and metric labels; never carries the message.
    pub fn kind(&self) -> &'static str {
        match self {
            RepoError::InvalidInput(_) => "invalid_input",
            RepoError::TotalBelowReserved { .. } => "total_below_reserved",
            RepoError::UnknownWorker(_) => "unknown_worker",
            RepoError::Unavailable(_) => "unavailable",
            RepoError::Unreachable { .. } => "unreachable",
            RepoError::Unauthorized { .. } => "unauthorized",
            RepoError::Misconfigured { .. } => "misconfigured",
            RepoError::NotMigrated { .. } => "not_migrated",
            RepoError::Ambiguous(_) => "ambiguous",
            RepoError::Backend(_) => "backend",
            RepoError::Unsupported { .. } => "unsupported",
        }
    }

    /// True when nothing about the store works until its configuration (URL, credentials,
    /// database) or schema is fixed: [`Unauthorized`](Self::Unauthorized),
    /// [`Misconfigured`](Self::Misconfigured), [`NotMigrated`](Self::NotMigrated).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            RepoError::Unauthorized { .. }
                | RepoError::Misconfigured { .. }
                | RepoError::NotMigrated { .. }
        )
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
