//! Mapping sqlx errors to [`RepoError`].

use sched_core::{BoxError, RepoError};

/// What to do with a failed statement.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The statement was rolled back (serialization failure, deadlock): safe to run again.
    Retry(sqlx::Error),
    /// Give up with this error.
    Fail(RepoError),
}

/// Error while getting a connection: the request was never sent.
pub(crate) fn acquire_error(e: sqlx::Error) -> RepoError {
    RepoError::Unavailable(Box::new(e))
}

/// SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Classifies an error returned by a statement that was (at least partly) sent.
///
/// `Unavailable` only where the server said the statement did not (or will not) apply; a
/// connection that failed once the statement may have reached the server is `Ambiguous`.
pub(crate) fn statement_error(e: sqlx::Error) -> Failure {
    use sqlx::Error::{Io, PoolClosed, PoolTimedOut, Protocol, Tls, WorkerCrashed};
    let code = sqlstate(&e).unwrap_or_default();
    let wrap: fn(BoxError) -> RepoError = match (&e, code.as_str()) {
        // serialization_failure, deadlock_detected: the statement was rolled back.
        (_, "40001" | "40P01") => return Failure::Retry(e),
        (PoolTimedOut | PoolClosed | WorkerCrashed, _) => RepoError::Unavailable,
        // The connection broke after the request went out: it may have been applied.
        (Io(_) | Protocol(_) | Tls(_), _) => RepoError::Ambiguous,
        // query_canceled (statement_timeout), lock_not_available (lock_timeout): the statement
        // was rolled back, nothing applied. cannot_connect_now, too_many_connections: never ran.
        (_, "57014" | "55P03" | "57P03" | "53300") => RepoError::Unavailable,
        // admin/crash shutdown and connection exceptions while the statement ran.
        (_, c) if c.starts_with("08") || c == "57P01" || c == "57P02" => RepoError::Ambiguous,
        _ => RepoError::Backend,
    };
    Failure::Fail(wrap(Box::new(e)))
}
