//! [`PostgresRepository`]: the [`WorkerRepository`] on PostgreSQL.
//!
//! Every call is one statement calling SQL that answers in the serde shapes of sched-core's
//! types, so decoding is `Json<T>` throughout (see `migrations/`). Every statement runs through
//! [`PostgresRepository::run`], which retries rollbacks, closes the connection of an abandoned
//! statement and classifies failures truthfully (ARCHITECTURE.md, "Abandoned statements").

use crate::config::{quote_ident, PostgresConfig};
use crate::error::{acquire_error, statement_error, Failure};
use async_trait::async_trait;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, ReleaseOutcome,
    RepoError, ReservationRecord, ResourceKind, Resources, Worker, WorkerRepository, WorkerResult,
    WorkerSpec,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgPoolOptions};
use sqlx::query::QueryScalar;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

type JsonQuery<'q, T> = QueryScalar<'q, Postgres, Json<T>, PgArguments>;

pub(crate) const BACKEND: &str = "postgres";

/// The embedded schema migrations (`migrations/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A [`WorkerRepository`] on PostgreSQL. Cheap to clone: clones share one pool.
///
/// Every call is one SQL statement (one round trip); `reserve_batch` and `release_batch` each
/// call one plpgsql function that processes the whole burst. Create the schema with
/// [`migrate`](Self::migrate) once per deployment (it is not run on connect).
#[derive(Clone)]
pub struct PostgresRepository {
    pool: PgPool,
    config: Arc<PostgresConfig>,
    counters: Arc<BackendCounters>,
}

impl fmt::Debug for PostgresRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // PgPool's own Debug would print the connect options, password included.
        f.debug_struct("PostgresRepository")
            .field("config", &self.config)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// `sched_register_worker`'s refusal: the new total is below what is reserved.
#[derive(Deserialize)]
struct Below {
    resource: ResourceKind,
    total: u64,
    reserved: u64,
}

/// `sched_audit`'s answer.
#[derive(Deserialize)]
struct Audited {
    total: Resources,
    free: Resources,
    reserved: Resources,
    reservations: usize,
    version: u64,
}

impl PostgresRepository {
    /// Opens a pool and checks that the server answers (one connection is made now).
    /// Fails with [`RepoError::Unavailable`] when the server cannot be reached in time.
    pub async fn connect(config: PostgresConfig) -> Result<Self, RepoError> {
        let repo = Self::connect_lazy(config);
        repo.acquire().await?;
        Ok(repo)
    }

    /// Builds a pool without connecting; the first call connects.
    pub fn connect_lazy(config: PostgresConfig) -> Self {
        PostgresRepository {
            pool: pool_options(&config).connect_lazy_with(config.connect_options()),
            config: Arc::new(config),
            counters: Arc::default(),
        }
    }

    /// Creates the configured schema if needed and applies the embedded migrations in it
    /// (sqlx keeps its `_sqlx_migrations` history table in the same schema). Idempotent.
    pub async fn migrate(&self) -> Result<(), RepoError> {
        // Two processes creating the schema at once: one loses the catalog race.
        let sql = format!(
            "DO $$ BEGIN CREATE SCHEMA IF NOT EXISTS {}; \
             EXCEPTION WHEN unique_violation OR duplicate_schema THEN NULL; END $$",
            quote_ident(self.config.schema())
        );
        self.execute(&sql).await?;
        // sqlx's migrator serialises every migration run on the database behind one advisory
        // lock; waiting for it is not a stuck worker row, so the pinned lock_timeout is lifted
        // on a connection of its own, closed afterwards (never returned to the pool).
        let mut conn = self.acquire().await?.detach();
        let unlimited = sqlx::query("SET lock_timeout = 0").execute(&mut conn).await;
        let ran = match unlimited {
            Ok(_) => MIGRATOR.run(&mut conn).await,
            Err(e) => Err(MigrateError::Execute(e)),
        };
        drop(conn);
        ran.map_err(|e| match e {
            MigrateError::Execute(e) => match statement_error(e) {
                Failure::Retry(e) => RepoError::Unavailable(Box::new(e)),
                Failure::Fail(e) => e,
            },
            other => RepoError::Backend(Box::new(other)),
        })?;
        tracing::info!(schema = self.config.schema(), "schema migrated");
        Ok(())
    }

    /// Test hook: drops the configured schema with everything in it (`DROP SCHEMA … CASCADE`).
    /// Destructive: meant for runs that work in a throw-away schema.
    #[cfg(feature = "testing")]
    pub async fn drop_schema(&self) -> Result<(), RepoError> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(self.config.schema())
        );
        self.execute(&sql).await
    }

    /// Test hook: overwrites a worker's stored free capacity without touching the ledger, to
    /// simulate drift for `audit`/`reconcile` tests. The CHECK constraints still apply
    /// (`0 <= free <= total`). Returns false for an unknown worker.
    #[cfg(feature = "testing")]
    pub async fn corrupt_free(&self, worker_id: &str, free: Resources) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        sched_core::validate::validate_amounts(&free)?;
        let sql = "WITH u AS (UPDATE workers SET free_cpu = ($2->>'cpu_millicores')::bigint, \
                   free_mem = ($2->>'memory_mib')::bigint, free_gpu = ($2->>'gpu_count')::bigint \
                   WHERE id = $1 RETURNING 1) SELECT to_jsonb(EXISTS (SELECT FROM u))";
        self.call(false, sql, |q| q.bind(worker_id).bind(Json(free)))
            .await
    }

    /// Test hook: the connection pool (every connection has the schema as its `search_path`).
    #[cfg(feature = "testing")]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Traffic counters: one round trip per statement sent (retries included).
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// The configuration this repository was built from.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Times one `SELECT 1` round trip on a pooled connection (for comparing with a burst).
    pub async fn ping(&self) -> Result<Duration, RepoError> {
        let start = std::time::Instant::now();
        self.execute("SELECT 1").await?;
        Ok(start.elapsed())
    }

    async fn acquire(&self) -> Result<PoolConnection<Postgres>, RepoError> {
        self.pool.acquire().await.map_err(acquire_error)
    }

    /// Runs one statement without parameters.
    async fn execute(&self, sql: &str) -> Result<(), RepoError> {
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
    async fn call<'q, T: DeserializeOwned + Send + Unpin + 'static>(
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
    async fn run<T, F: Future<Output = sqlx::Result<T>>>(
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
            match statement_error(error) {
                Failure::Retry(e) if attempt < config.max_retries => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "retrying after rollback");
                    let base = 1u64 << attempt.min(8);
                    let jittered = base + rand::random_range(0..=base);
                    tokio::time::sleep(Duration::from_millis(jittered)).await;
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
    async fn settle(&self) {
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

/// The answer's length must match the request's.
fn same_len<T>(out: Vec<T>, len: usize, what: &str) -> Result<Vec<T>, RepoError> {
    if out.len() == len {
        return Ok(out);
    }
    let msg = format!("{what}: {} answers for {len} requests", out.len());
    Err(RepoError::Backend(msg.into()))
}

#[async_trait]
impl WorkerRepository for PostgresRepository {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        let sql = "SELECT sched_register_worker($1)";
        let out: Result<Worker, Below> = self.call(false, sql, |q| q.bind(Json(spec))).await?;
        out.map_err(|b| RepoError::TotalBelowReserved {
            resource: b.resource,
            total: b.total,
            reserved: b.reserved,
        })
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        let sql = "SELECT to_jsonb(sched_remove_worker($1))";
        self.call(false, sql, |q| q.bind(worker_id)).await
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        let sql = "SELECT coalesce((SELECT sched_worker_json(w) FROM workers w WHERE w.id = $1), \
                   'null')";
        self.call(true, sql, |q| q.bind(worker_id)).await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let sql = "SELECT coalesce(jsonb_agg(sched_worker_json(w) ORDER BY w.id), '[]') \
                   FROM workers w WHERE $1::text IS NULL OR w.pool = $1";
        self.call(true, sql, |q| q.bind(pool)).await
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let partial = mode == CommitMode::Partial;
        let sql = "SELECT sched_reserve_batch($1, $2)";
        let out = self.call(false, sql, |q| q.bind(Json(batch)).bind(partial));
        same_len(out.await?, batch.len(), "reserve_batch")
    }

    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT sched_release_batch($1)";
        let out = self.call(false, sql, |q| q.bind(ids)).await?;
        same_len(out, ids.len(), "release_batch")
    }

    async fn find_reservations(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        validate_release(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT coalesce(jsonb_agg((SELECT sched_record_json(x) FROM reservations x \
                   WHERE x.container_id = t.id) ORDER BY t.pos), '[]') \
                   FROM unnest($1::text[]) WITH ORDINALITY AS t(id, pos)";
        let out = self.call(true, sql, |q| q.bind(ids)).await?;
        same_len(out, ids.len(), "find_reservations")
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        validate_id("worker", worker_id)?;
        // JSON null for an unknown worker. One statement: one snapshot.
        let sql = "SELECT CASE WHEN EXISTS (SELECT FROM workers WHERE id = $1) \
                   THEN coalesce((SELECT jsonb_agg(sched_record_json(x) ORDER BY x.container_id) \
                   FROM reservations x WHERE x.worker_id = $1), '[]') ELSE 'null' END";
        let out: Option<_> = self.call(true, sql, |q| q.bind(worker_id)).await?;
        out.ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        validate_id("worker", worker_id)?;
        let repair = mode == AuditMode::Repair;
        // An audit changes nothing; a repair must not be repeated blindly (its report is the
        // state before the repair).
        let sql = "SELECT coalesce(sched_audit($1, $2), 'null')";
        let a: Option<Audited> = self
            .call(!repair, sql, |q| q.bind(worker_id).bind(repair))
            .await?;
        let a = a.ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))?;
        let report = AuditReport::new(
            worker_id,
            a.total,
            a.free,
            a.reserved,
            a.reservations,
            a.version,
        );
        if repair && !report.is_consistent() {
            tracing::warn!(worker = worker_id, drift = ?report.drift, "reconciled drift");
        }
        Ok(report)
    }
}
