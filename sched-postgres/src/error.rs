//! Mapping sqlx errors to [`RepoError`].

use sched_core::RepoError;

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
pub(crate) fn statement_error(e: sqlx::Error) -> Failure {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Failure::Fail(RepoError::Unavailable(Box::new(e)))
        }
        // The connection broke after the request went out: it may have been applied.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => {
            Failure::Fail(RepoError::Ambiguous(Box::new(e)))
        }
        sqlx::Error::Database(_) => {
            let code = sqlstate(&e).unwrap_or_default();
            match code.as_str() {
                // serialization_failure, deadlock_detected: the statement was rolled back.
                "40001" | "40P01" => Failure::Retry(e),
                // query_canceled (statement_timeout): rolled back, nothing applied.
                // cannot_connect_now, too_many_connections: never ran.
                "57014" | "57P03" | "53300" => Failure::Fail(RepoError::Unavailable(Box::new(e))),
                // admin/crash shutdown and connection exceptions while the statement ran.
                c if c.starts_with("08") || c == "57P01" || c == "57P02" => {
                    Failure::Fail(RepoError::Ambiguous(Box::new(e)))
                }
                _ => Failure::Fail(RepoError::Backend(Box::new(e))),
            }
        }
        _ => Failure::Fail(RepoError::Backend(Box::new(e))),
    }
}

/// The store answered with something this crate does not understand.
pub(crate) fn protocol(msg: impl Into<String>) -> RepoError {
    RepoError::Backend(msg.into().into())
}
