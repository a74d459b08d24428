//! Running statements: [`PostgresRepository::run`] (one statement per attempt, retries,
//! truthful errors) and [`InFlight`] (the connection of an abandoned statement is closed).
//! See ARCHITECTURE.md, "Abandoned statements" and "Retries and errors".

use crate::config::PostgresConfig;
use crate::error::{acquire_error, statement_error, Failure};
use crate::repo::{PostgresRepository, BACKEND};
use sched_core::backoff::Backoff;
use sched_core::RepoError;
use serde::de::DeserializeOwned;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPoolOptions};
use sqlx::query::QueryScalar;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres};

/// The pause before re-running a statement Postgres rolled back (serialization failure,
/// deadlock): 2-4 ms before the first retry, doubling to at most 0.5 s.
const ROLLBACK_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(4), Duration::from_millis(512));
use std::future::Future;
use std::time::Duration;

pub(crate) type JsonQuery<'q, T> = QueryScalar<'q, Postgres, Json<T>, PgArguments>;

impl PostgresRepository {
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, RepoError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| acquire_error(e, &self.config))
    }

    /// Runs one statement without parameters.
    pub(crate) async fn execute(&self, sql: &str) -> Result<(), RepoError> {
        self.run(false, |mut c| async move {
            let out = match c.conn() {
                Ok(conn) => {
                    sqlx::query(AssertSqlSafe(sql.to_owned()))
                        .execute(conn)
                        .await
                }
                Err(e) => Err(e),
            };
            c.finish();
            out
        })
        .await?;
        Ok(())
    }

    /// Runs a statement (`bind` adds its parameters) whose answer is one `jsonb` value in the
    /// serde shape of `T` (SQL NULL must be written as JSON `null`), through [`Self::run`].
    pub(crate) async fn call<'q, T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        read: bool,
        sql: &'static str,
        bind: impl Fn(JsonQuery<'q, T>) -> JsonQuery<'q, T>,
    ) -> Result<T, RepoError> {
        let Json(out) = self
            .run(read, |mut c| {
                let q = bind(sqlx::query_scalar(sql));
                async move {
                    let out = match c.conn() {
                        Ok(conn) => q.fetch_one(conn).await,
                        Err(e) => Err(e),
                    };
                    c.finish();
                    out
                }
            })
            .await?;
        Ok(out)
    }

    /// Runs one statement on a pooled connection, counting a round trip per attempt. A
    /// serialization failure or deadlock rolled the statement back, so it runs again after a
    /// jittered backoff, up to `max_retries` times (then `Unavailable`).
    ///
    /// The statement gets its connection as an [`InFlight`] and must call
    /// [`InFlight::finish`] once the server has answered. If the call is abandoned before that
    /// (its future dropped by the caller, or `call_timeout` passed) the connection is closed,
    /// so the server aborts the statement at its next client check instead of committing it
    /// later. A write whose connection broke or timed out mid-statement may have committed:
    /// `Ambiguous`, returned only after one `client_connection_check_interval` (see
    /// [`Self::settle`]).
    ///
    /// With `read` (a statement that changes nothing), a broken connection (`Ambiguous`) is
    /// also retried on another one, up to `max_connections + 1` times (then `Unavailable`: a
    /// read applied nothing): after a server restart or
    /// a mass `pg_terminate_backend`, every idle pooled connection is dead and fails once when
    /// used (sqlx closes it when it comes back), and without this each read would spend one of
    /// the caller's retries per dead connection.
    pub(crate) async fn run<T, F: Future<Output = sqlx::Result<T>>>(
        &self,
        read: bool,
        mut statement: impl FnMut(InFlight) -> F,
    ) -> Result<T, RepoError> {
        let config = &self.config;
        let (mut attempt, mut broken) = (0u32, 0u32);
        loop {
            let conn = InFlight(Some(self.acquire().await?));
            self.counters.round_trips(BACKEND, 1);
            // The statement owns the connection: it goes back to the pool when it is done, and
            // is closed if the statement is dropped unfinished (here on timeout, or with this
            // whole future when the caller gives up).
            let outcome = match config.call_timeout {
                Some(limit) => tokio::time::timeout(limit, statement(conn)).await,
                None => Ok(statement(conn).await),
            };
            let error = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_elapsed) => {
                    let msg = format!(
                        "no answer within the call timeout ({:?})",
                        config.call_timeout.unwrap_or_default()
                    );
                    tracing::warn!(read, "{msg}; connection closed");
                    if read {
                        return Err(RepoError::Unavailable(msg.into()));
                    }
                    self.settle().await;
                    return Err(RepoError::Ambiguous(msg.into()));
                }
            };
            let lost = is_connection_lost(&error);
            match statement_error(error, config) {
                Failure::Retry(e) if attempt < config.max_retries => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "retrying after rollback");
                    tokio::time::sleep(ROLLBACK_BACKOFF.delay(attempt)).await;
                }
                Failure::Retry(e) => {
                    tracing::warn!(attempt, error = %e, "giving up after repeated rollbacks");
                    return Err(RepoError::Unavailable(Box::new(e)));
                }
                Failure::Fail(RepoError::Ambiguous(e))
                    if read && broken <= config.max_connections =>
                {
                    broken += 1;
                    tracing::debug!(broken, error = %e, "read on a broken connection; retrying");
                }
                // A read changed nothing, whatever happened to its connection.
                Failure::Fail(RepoError::Ambiguous(e)) if read => {
                    return Err(RepoError::Unavailable(e));
                }
                Failure::Fail(e @ RepoError::Ambiguous(_)) if lost => {
                    self.settle().await;
                    return Err(e);
                }
                Failure::Fail(e) => return Err(e),
            }
        }
    }

    /// Waits one `client_connection_check_interval` (plus a margin) after a write lost its
    /// connection mid-statement: by then a server that saw the connection close has aborted the
    /// statement if it was still running, so a lookup the caller makes next sees the final
    /// outcome (see ARCHITECTURE.md, "Abandoned statements").
    pub(crate) async fn settle(&self) {
        if let Some(interval) = self.config.client_connection_check_interval() {
            tokio::time::sleep(interval + Duration::from_millis(500)).await;
        }
    }
}

/// Whether the connection itself failed (as opposed to the server answering with an error).
fn is_connection_lost(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_)
    )
}

/// A pooled connection lent to one statement. [`finish`](Self::finish) returns it to the pool
/// once the server has answered; dropped before that (the call was abandoned mid-statement),
/// it closes the socket at once instead. Otherwise sqlx would keep the connection open, waiting
/// for the statement's answer before reusing it, and the server, seeing a live client, would
/// run the abandoned statement to its commit.
pub(crate) struct InFlight(Option<PoolConnection<Postgres>>);

impl InFlight {
    /// The connection. (It is only ever missing after `finish`, which consumes `self`.)
    fn conn(&mut self) -> sqlx::Result<&mut PgConnection> {
        self.0.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The statement is over: the connection goes back to the pool.
    fn finish(mut self) {
        drop(self.0.take());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            // Detached from the pool (which may open a replacement) and dropped: the socket
            // closes now, without waiting for the server.
            drop(c.detach());
            tracing::debug!("statement abandoned; its connection was closed");
        }
    }
}

pub(crate) fn pool_options(config: &PostgresConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(config.test_before_acquire)
}
