//! [`CtlError`]: why a command failed, its message and its exit code.

use sched_core::RepoError;

/// Exit codes. Clap's usage errors exit 2 too.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The store failed or could not be reached; or the backend lacks the operation.
    pub const FAILURE: u8 = 1;
    /// Bad input (usage, ids, durations); nothing was changed.
    pub const USAGE: u8 = 2;
    /// An unknown worker, or a container that is not held (`find`).
    pub const NOT_FOUND: u8 = 3;
    /// A destructive command without `--yes`; nothing was changed.
    pub const REFUSED: u8 = 4;
    /// `audit` found drift.
    pub const DRIFT: u8 = 5;
}

/// Where the store is, for error messages: never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `Redis`, `Redis Cluster` or `PostgreSQL`.
    pub what: &'static str,
    /// `host:port` (or a socket path), one per seed node.
    pub addr: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.what, self.addr)
    }
}

/// A command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad input or options; nothing was changed.
    #[error("{0}")]
    Usage(String),
    /// A destructive command without `--yes`; nothing was changed.
    #[error("{0}\nnothing was changed; run it again with --yes to do it")]
    Refused(String),
    /// The worker does not exist.
    #[error("unknown worker {0:?} (see `schedctl workers`)")]
    UnknownWorker(String),
    /// The store could not be reached.
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable {
        /// Where.
        endpoint: Endpoint,
        /// The client's reason (password-free).
        cause: String,
    },
    /// The PostgreSQL schema has not been migrated (or is behind this build).
    #[error(
        "PostgreSQL schema {schema:?} is not migrated (or is older than this schedctl): {cause}\n\
         hint: run `schedctl --backend postgres --schema {schema} migrate`"
    )]
    NotMigrated {
        /// The schema.
        schema: String,
        /// The server's message.
        cause: String,
    },
    /// The backend does not implement the operation in this build.
    #[error(
        "{operation} is not supported by the {backend} backend in this build; nothing was changed"
    )]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend.
        backend: &'static str,
    },
    /// The call may or may not have been applied.
    #[error("the store did not answer in time, the change may or may not have been applied (check with `schedctl reservations` or `schedctl find`): {0}")]
    Ambiguous(String),
    /// Any other failure of the store.
    #[error("{0}")]
    Store(String),
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(String),
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => exit::USAGE,
            CtlError::Refused(_) => exit::REFUSED,
            CtlError::UnknownWorker(_) => exit::NOT_FOUND,
            _ => exit::FAILURE,
        }
    }

    /// Maps a repository error, with what is known about the store for the message.
    pub fn from_repo(e: RepoError, ctx: &ErrorContext) -> Self {
        match e {
            RepoError::InvalidInput(i) => CtlError::Usage(format!("invalid input: {i}")),
            RepoError::UnknownWorker(w) => CtlError::UnknownWorker(w),
            RepoError::Unsupported { operation } => CtlError::Unsupported {
                operation,
                backend: ctx.backend,
            },
            RepoError::Unavailable(src) => match &ctx.endpoint {
                Some(endpoint) => CtlError::Unreachable {
                    endpoint: endpoint.clone(),
                    cause: chain(&*src),
                },
                None => CtlError::Store(format!("backend unavailable: {}", chain(&*src))),
            },
            RepoError::Unreachable { endpoint, source } => CtlError::Unreachable {
                endpoint: match &ctx.endpoint {
                    Some(e) => e.clone(),
                    None => Endpoint {
                        what: ctx.backend,
                        addr: endpoint,
                    },
                },
                cause: chain(&*source),
            },
            RepoError::NotMigrated { detail } => match &ctx.schema {
                Some(schema) => CtlError::NotMigrated {
                    schema: schema.clone(),
                    cause: detail,
                },
                None => CtlError::Store(format!("the schema is not migrated: {detail}")),
            },
            RepoError::Ambiguous(src) => CtlError::Ambiguous(chain(&*src)),
            RepoError::Backend(src) => match (&ctx.schema, undefined_object(&*src)) {
                (Some(schema), true) => CtlError::NotMigrated {
                    schema: schema.clone(),
                    cause: chain(&*src),
                },
                _ => CtlError::Store(format!("backend error: {}", chain(&*src))),
            },
            other => CtlError::Store(other.to_string()),
        }
    }
}

/// What [`CtlError::from_repo`] needs to know about the store.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    /// Backend name.
    pub backend: &'static str,
    /// Where it is (not for memory).
    pub endpoint: Option<Endpoint>,
    /// The PostgreSQL schema (postgres only).
    pub schema: Option<String>,
}

/// An error and its sources, `a: b: c`, without repeating a source already in the message.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = s.source();
    }
    out
}

/// True when a PostgreSQL error says a schema, table or function does not exist: SQLSTATE
/// 3F000 (invalid_schema_name), 42P01 (undefined_table), 42883 (undefined_function).
fn undefined_object(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(sqlx::Error::Database(db)) = err.downcast_ref::<sqlx::Error>() {
            return matches!(db.code().as_deref(), Some("3F000" | "42P01" | "42883"));
        }
        cur = err.source();
    }
    false
}

/// Replaces every occurrence of each secret in `msg` with `***` (a password that a client
/// library might echo inside an error).
pub fn redact(msg: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(msg.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_every_secret() {
        let s = redact(
            "redis://u:hunter2@h:1 hunter2",
            &["hunter2".into(), String::new()],
        );
        assert_eq!(s, "redis://u:***@h:1 ***");
    }

    #[test]
    fn codes() {
        assert_eq!(CtlError::Usage("x".into()).exit_code(), exit::USAGE);
        assert_eq!(CtlError::Refused("x".into()).exit_code(), exit::REFUSED);
        assert_eq!(
            CtlError::UnknownWorker("w".into()).exit_code(),
            exit::NOT_FOUND
        );
        assert_eq!(CtlError::Store("x".into()).exit_code(), exit::FAILURE);
    }
}
