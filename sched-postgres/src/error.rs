//! Mapping sqlx errors to [`RepoError`].

use crate::config::PostgresConfig;
use sched_core::{BoxError, RepoError};

mod tls;

/// What to do with a failed statement.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The statement was rolled back (serialization failure, deadlock): safe to run again.
    Retry(sqlx::Error),
    /// Give up with this error.
    Fail(RepoError),
}

/// Error while getting a connection: the request was never sent. Refused credentials, an
/// unknown database, a failed TLS handshake or an unreadable TLS file (the pool opening a new
/// connection) are typed as by [`connect_error`]; anything else is `Unavailable`.
pub(crate) fn acquire_error(e: sqlx::Error, config: &PostgresConfig) -> RepoError {
    if matches!(sqlstate(&e).as_deref(), Some("28P01" | "28000" | "3D000")) {
        return connect_error(e, config);
    }
    match tls::classify(&e, config) {
        Some(typed) => typed,
        None => RepoError::Unavailable(Box::new(e)),
    }
}

/// Classifies a failed attempt to open a connection with `config`: refused, unresolvable or
/// timed out is `Unreachable`; refused credentials (a password, or a client certificate the
/// server's TLS layer rejected) `Unauthorized`; an unknown database, a server certificate we
/// refused, an unreadable TLS file or impossible settings `Misconfigured`; anything else
/// `Unavailable` (nothing was sent in every case).
pub(crate) fn connect_error(e: sqlx::Error, config: &PostgresConfig) -> RepoError {
    use sqlx::Error::{Configuration, Io, PoolTimedOut, Tls};
    if let Some(typed) = tls::classify(&e, config) {
        return typed;
    }
    let code = sqlstate(&e).unwrap_or_default();
    let endpoint = config.endpoint();
    match (&e, code.as_str()) {
        // invalid_password, invalid_authorization_specification (unknown role, pg_hba refusal).
        (_, "28P01" | "28000") => RepoError::Unauthorized {
            endpoint,
            user: config.user().to_owned(),
            source: Box::new(e),
        },
        // invalid_catalog_name: the database does not exist.
        (_, "3D000") | (Configuration(_) | Tls(_), _) => RepoError::Misconfigured {
            endpoint,
            reason: e.to_string(),
        },
        // cannot_connect_now (starting up), too_many_connections, connection exceptions.
        (Io(_) | PoolTimedOut, _) | (_, "57P03" | "53300") => RepoError::Unreachable {
            endpoint,
            source: Box::new(e),
        },
        (_, c) if c.starts_with("08") => RepoError::Unreachable {
            endpoint,
            source: Box::new(e),
        },
        _ => RepoError::Unavailable(Box::new(e)),
    }
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
/// A refusal for lack of privileges (or of credentials) is `Unauthorized`, naming
/// `config`'s endpoint and user: the statement failed as a whole, so nothing was applied.
pub(crate) fn statement_error(e: sqlx::Error, config: &PostgresConfig) -> Failure {
    use sqlx::Error::{Io, PoolClosed, PoolTimedOut, Protocol, Tls, WorkerCrashed};
    let code = sqlstate(&e).unwrap_or_default();
    // undefined_function, undefined_table, invalid_schema_name: the schema lacks what this
    // crate calls (migrate() never ran, or ran from an older version).
    if matches!(code.as_str(), "42883" | "42P01" | "3F000") {
        let detail = e.to_string();
        return Failure::Fail(RepoError::NotMigrated { detail });
    }
    // insufficient_privilege (a table, function or schema the role may not use),
    // invalid_authorization_specification, invalid_password. Raised by the statement, which
    // the server then rolled back whole: nothing applied, and retrying fails the same way.
    if matches!(code.as_str(), "42501" | "28000" | "28P01") {
        return Failure::Fail(RepoError::Unauthorized {
            endpoint: config.endpoint(),
            user: config.user().to_owned(),
            source: Box::new(e),
        });
    }
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
