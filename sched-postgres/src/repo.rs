//! [`PostgresRepository`]: the [`WorkerRepository`] on PostgreSQL.
//!
//! Every call is one statement calling SQL that answers in the serde shapes of sched-core's
//! types, so decoding is `Json<T>` throughout (see `migrations/`). Every statement runs through
//! [`PostgresRepository::run`], which retries rollbacks, closes the connection of an abandoned
//! statement and classifies failures truthfully (ARCHITECTURE.md, "Abandoned statements").

use crate::config::{quote_ident, PostgresConfig};
use crate::error::{acquire_error, statement_error, Failure};
use crate::exec::pool_options;
use crate::{lifecycle, wakeups};
use async_trait::async_trait;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::watch::Wakeups;
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, Heartbeat,
    LeaseRenewal, LeaseSweep, ReleaseOutcome, RepoError, ReservationRecord, ResourceKind,
    Resources, Worker, WorkerRelease, WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use serde::Deserialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::types::Json;
use sqlx::Connection;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    pub(crate) pool: PgPool,
    pub(crate) config: Arc<PostgresConfig>,
    pub(crate) counters: Arc<BackendCounters>,
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
    /// Opens a pool and checks that the server answers. Fails at once, naming `host:port`, with
    /// [`RepoError::Unreachable`] (refused, unresolvable, no answer within the acquire timeout),
    /// [`RepoError::Unauthorized`] (refused credentials: names the user, never the password) or
    /// [`RepoError::Misconfigured`] (an unknown database, impossible TLS settings).
    ///
    /// Two connections are opened (one if the pool holds one): sqlx hands a finished
    /// connection back to the pool in a background task (it pings it first), so a caller making
    /// one call after another would otherwise often find no idle connection and wait for a new
    /// one to be opened — a delay that distorts the server-clock gaps leases and heartbeats
    /// are judged by.
    pub async fn connect(config: PostgresConfig) -> Result<Self, RepoError> {
        // One direct connection first, so that a refused connection, refused credentials or an
        // unknown database fail at once with their own error (a pool only times out).
        let options = config.connect_options();
        let endpoint = config.endpoint();
        // A TLS file sqlx could not read would fail mid-connect without naming it.
        if let Err(reason) = config.check_tls_files() {
            return Err(RepoError::Misconfigured { endpoint, reason });
        }
        let probe = PgConnection::connect_with(&options);
        match tokio::time::timeout(config.acquire_timeout, probe).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(crate::error::connect_error(e, &config)),
            Err(_) => {
                let t = config.acquire_timeout;
                let source = format!("no connection within {t:?}").into();
                return Err(RepoError::Unreachable { endpoint, source });
            }
        }
        let repo = Self::connect_lazy(config);
        let first = repo.acquire().await?;
        if repo.config.max_connections > 1 {
            repo.acquire().await?;
        }
        drop(first);
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
        // Not taken from the pool, so the pool's warm connections stay.
        let options = self.config.connect_options();
        let connect = PgConnection::connect_with(&options);
        let mut conn = tokio::time::timeout(self.config.acquire_timeout, connect)
            .await
            .map_err(|_| {
                let t = self.config.acquire_timeout;
                RepoError::Unavailable(format!("no connection within {t:?}").into())
            })?
            .map_err(|e| acquire_error(e, &self.config))?;
        let unlimited = sqlx::query("SET lock_timeout = 0").execute(&mut conn).await;
        let ran = match unlimited {
            Ok(_) => MIGRATOR.run(&mut conn).await,
            Err(e) => Err(MigrateError::Execute(e)),
        };
        drop(conn);
        ran.map_err(|e| match e {
            MigrateError::Execute(e) => match statement_error(e, &self.config) {
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
}

/// The answer's length must match the request's.
pub(crate) fn same_len<T>(out: Vec<T>, len: usize, what: &str) -> Result<Vec<T>, RepoError> {
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
        // `stale` is judged by the server's clock at this read.
        let sql = "SELECT coalesce((SELECT sched_worker_json(w, sched_now()) FROM workers w \
                   WHERE w.id = $1), 'null')";
        self.call(true, sql, |q| q.bind(worker_id)).await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        // One server clock reading for the whole list (`stale` of every worker at one instant).
        let sql = "SELECT coalesce(jsonb_agg(sched_worker_json(w, n.now) ORDER BY w.id), '[]') \
                   FROM workers w CROSS JOIN (SELECT sched_now() AS now) n \
                   WHERE $1::text IS NULL OR w.pool = $1";
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
        // The burst as typed arrays (src/burst.rs, `sched_reserve_burst`).
        self.reserve_burst(batch, mode).await
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
    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        lifecycle::renew_leases(self, worker_id, container_ids, lease_ms).await
    }

    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        lifecycle::expire_leases(self, worker_id).await
    }

    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        lifecycle::heartbeat(self, worker_id).await
    }

    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        lifecycle::set_worker_status(self, worker_id, status).await
    }

    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        lifecycle::release_worker(self, worker_id).await
    }

    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        wakeups::subscribe(self, worker_id).await
    }
}
