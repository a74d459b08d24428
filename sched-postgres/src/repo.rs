//! [`PostgresRepository`]: the [`WorkerRepository`] on PostgreSQL.

use crate::config::{quote_ident, PostgresConfig};
use crate::error::{acquire_error, protocol, sqlstate, statement_error, Failure};
use async_trait::async_trait;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, Committed, Rejection,
    ReleaseOutcome, Released, RepoError, ReservationRecord, Resources, Worker, WorkerRepository,
    WorkerResult, WorkerSpec, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const BACKEND: &str = "postgres";

/// The embedded schema migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const WORKER_BY_ID: &str = "SELECT id, pool, status, priority, gpu_type, \
     requires_pool_selector, preemptable, total_cpu, total_mem, total_gpu, \
     free_cpu, free_mem, free_gpu, version FROM workers WHERE id = $1";

const WORKERS_BY_POOL: &str = "SELECT id, pool, status, priority, gpu_type, \
     requires_pool_selector, preemptable, total_cpu, total_mem, total_gpu, \
     free_cpu, free_mem, free_gpu, version FROM workers \
     WHERE ($1::text IS NULL OR pool = $1) ORDER BY id";

struct Inner {
    pool: PgPool,
    config: PostgresConfig,
    counters: Arc<BackendCounters>,
}

/// A [`WorkerRepository`] on PostgreSQL. Cheap to clone: clones share one pool.
///
/// Every call is one SQL statement (one round trip); `reserve_batch` and `release_batch` each
/// call one plpgsql function that processes the whole burst. Create the schema with
/// [`migrate`](Self::migrate) once per deployment (it is not run on connect).
#[derive(Clone)]
pub struct PostgresRepository {
    inner: Arc<Inner>,
}

impl fmt::Debug for PostgresRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // PgPool's own Debug would print the connect options, password included.
        f.debug_struct("PostgresRepository")
            .field("config", &self.inner.config)
            .field("pool_size", &self.inner.pool.size())
            .finish()
    }
}

/// Runs one statement on a pooled connection, counting a round trip per attempt and retrying
/// serialization failures and deadlocks (which roll the statement back) up to the bound.
///
/// With `read: true` (a statement that changes nothing), a broken connection (`Ambiguous`) is
/// also retried on another one, up to `max_connections + 1` times: after a server restart or a
/// mass `pg_terminate_backend`, every idle pooled connection is dead and fails once when used
/// (sqlx closes it when it comes back), and without this each read would spend one of the
/// caller's retries per dead connection.
macro_rules! with_retry {
    ($self:ident, |$conn:ident| $body:expr) => {
        with_retry!(read: false, $self, |$conn| $body)
    };
    (read: $read:expr, $self:ident, |$conn:ident| $body:expr) => {{
        let read: bool = $read;
        let mut attempt = 0u32;
        let mut broken = 0u32;
        loop {
            let mut pooled = $self.acquire().await?;
            $self.inner.counters.round_trips(BACKEND, 1);
            let res = {
                let $conn = &mut *pooled;
                $body.await
            };
            match res {
                Ok(v) => break Ok(v),
                Err(e) => match statement_error(e) {
                    Failure::Retry(e) if attempt < $self.inner.config.max_retries() => {
                        attempt += 1;
                        tracing::debug!(attempt, error = %e, "retrying after rollback");
                        drop(pooled);
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Failure::Retry(e) => {
                        tracing::warn!(attempt, error = %e, "giving up after repeated rollbacks");
                        break Err(RepoError::Unavailable(Box::new(e)));
                    }
                    Failure::Fail(RepoError::Ambiguous(e))
                        if read && broken <= $self.inner.config.max_connections() =>
                    {
                        broken += 1;
                        tracing::debug!(broken, error = %e, "read on a broken connection; retrying");
                        drop(pooled);
                    }
                    Failure::Fail(err) => break Err(err),
                },
            }
        }
    }};
}

fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let base = 1u64 << attempt.min(8);
    let jitter = rand::rng().random_range(0..=base);
    Duration::from_millis(base + jitter)
}

impl PostgresRepository {
    /// Opens a pool and checks that the server answers (one connection is made now).
    /// Fails with [`RepoError::Unavailable`] when the server cannot be reached in time.
    pub async fn connect(config: PostgresConfig) -> Result<Self, RepoError> {
        let pool = pool_options(&config)
            .connect_with(config.connect_options())
            .await
            .map_err(acquire_error)?;
        Ok(Self::from_parts(pool, config))
    }

    /// Builds a pool without connecting; the first call connects.
    pub fn connect_lazy(config: PostgresConfig) -> Self {
        let pool = pool_options(&config).connect_lazy_with(config.connect_options());
        Self::from_parts(pool, config)
    }

    fn from_parts(pool: PgPool, config: PostgresConfig) -> Self {
        PostgresRepository {
            inner: Arc::new(Inner {
                pool,
                config,
                counters: Arc::new(BackendCounters::default()),
            }),
        }
    }

    /// Creates the configured schema if needed and applies the embedded migrations in it
    /// (sqlx keeps its `_sqlx_migrations` history table in the same schema). Idempotent.
    pub async fn migrate(&self) -> Result<(), RepoError> {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(self.inner.config.schema())
        );
        let res = with_retry!(self, |c| sqlx::query(AssertSqlSafe(sql.clone())).execute(c));
        if let Err(e) = res {
            // Two processes creating the schema at once: one loses the catalog race.
            let raced = match &e {
                RepoError::Backend(b) => b
                    .downcast_ref::<sqlx::Error>()
                    .and_then(sqlstate)
                    .is_some_and(|c| c == "23505" || c == "42P06"),
                _ => false,
            };
            if !raced {
                return Err(e);
            }
        }
        let mut conn = self.acquire().await?;
        MIGRATOR.run(&mut *conn).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => match statement_error(e) {
                Failure::Retry(e) => RepoError::Unavailable(Box::new(e)),
                Failure::Fail(e) => e,
            },
            other => RepoError::Backend(Box::new(other)),
        })?;
        tracing::info!(
            schema = self.inner.config.schema(),
            "sched-postgres schema migrated"
        );
        Ok(())
    }

    /// Drops the configured schema with everything in it (`DROP SCHEMA … CASCADE`).
    /// Destructive: meant for test runs that work in a throw-away schema.
    pub async fn drop_schema(&self) -> Result<(), RepoError> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(self.inner.config.schema())
        );
        with_retry!(self, |c| sqlx::query(AssertSqlSafe(sql.clone())).execute(c))?;
        Ok(())
    }

    /// Traffic counters: one round trip per statement sent (retries included).
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.inner.counters)
    }

    /// The configuration this repository was built from.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The connection pool (every connection has the schema as its `search_path`).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Times one `SELECT 1` round trip on a pooled connection (for comparing with a burst).
    pub async fn ping(&self) -> Result<Duration, RepoError> {
        let start = std::time::Instant::now();
        let one: i32 = with_retry!(self, |c| sqlx::query_scalar("SELECT 1").fetch_one(c))?;
        if one != 1 {
            return Err(protocol("SELECT 1 did not return 1"));
        }
        Ok(start.elapsed())
    }

    /// Test hook: overwrites a worker's stored free capacity without touching the ledger, to
    /// simulate drift for `audit`/`reconcile` tests. The CHECK constraints still apply
    /// (`0 <= free <= total`). Returns false for an unknown worker.
    pub async fn corrupt_free(&self, worker_id: &str, free: Resources) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        let (c, m, g) = amounts(&free)?;
        let res = with_retry!(self, |conn| sqlx::query(
            "UPDATE workers SET free_cpu = $2, free_mem = $3, free_gpu = $4 WHERE id = $1"
        )
        .bind(worker_id)
        .bind(c)
        .bind(m)
        .bind(g)
        .execute(conn))?;
        Ok(res.rows_affected() == 1)
    }

    async fn acquire(&self) -> Result<PoolConnection<Postgres>, RepoError> {
        self.inner.pool.acquire().await.map_err(acquire_error)
    }
}

pub(crate) fn pool_options(config: &PostgresConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections())
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout())
        .test_before_acquire(config.test_before_acquire())
}

fn to_i64(v: u64, what: &str) -> Result<i64, RepoError> {
    i64::try_from(v).map_err(|_| {
        RepoError::InvalidInput(sched_core::InvalidInput::Other(format!(
            "{what} {v} does not fit a BIGINT"
        )))
    })
}

fn amounts(r: &Resources) -> Result<(i64, i64, i64), RepoError> {
    Ok((
        to_i64(r.cpu_millicores, "cpu")?,
        to_i64(r.memory_mib, "memory")?,
        to_i64(r.gpu_count, "gpu")?,
    ))
}

fn to_u64(v: i64, what: &str) -> Result<u64, RepoError> {
    u64::try_from(v).map_err(|_| protocol(format!("negative {what} {v} in the store")))
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T, RepoError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| RepoError::Backend(Box::new(e)))
}

fn worker_from_row(row: &PgRow) -> Result<Worker, RepoError> {
    let status: String = get(row, "status")?;
    let res = |p: &str| -> Result<Resources, RepoError> {
        Ok(Resources::new(
            to_u64(get(row, &format!("{p}_cpu"))?, "cpu")?,
            to_u64(get(row, &format!("{p}_mem"))?, "memory")?,
            to_u64(get(row, &format!("{p}_gpu"))?, "gpu")?,
        ))
    };
    Ok(Worker {
        id: get(row, "id")?,
        pool: get(row, "pool")?,
        status: WorkerStatus::parse(&status)
            .ok_or_else(|| protocol(format!("unknown worker status {status:?}")))?,
        priority: get(row, "priority")?,
        gpu_type: get(row, "gpu_type")?,
        requires_pool_selector: get(row, "requires_pool_selector")?,
        preemptable: get(row, "preemptable")?,
        total: res("total")?,
        free: res("free")?,
        resource_version: to_u64(get(row, "version")?, "version")?,
    })
}

fn record_from_row(row: &PgRow, worker_id: String) -> Result<ReservationRecord, RepoError> {
    Ok(ReservationRecord {
        worker_id,
        container_id: get(row, "container_id")?,
        resources: Resources::new(
            to_u64(get(row, "cpu")?, "cpu")?,
            to_u64(get(row, "mem")?, "memory")?,
            to_u64(get(row, "gpu")?, "gpu")?,
        ),
        gpu_type: get(row, "gpu_type")?,
    })
}

// ---- JSON shapes exchanged with the plpgsql functions ----

#[derive(Serialize)]
struct ReserveItem<'a> {
    i: usize,
    w: &'a str,
    v: Option<u64>,
    r: Vec<ReserveEntry<'a>>,
}

#[derive(Serialize)]
struct ReserveEntry<'a> {
    c: &'a str,
    cpu: u64,
    mem: u64,
    gpu: u64,
    g: Option<&'a str>,
}

#[derive(Deserialize)]
struct ReserveOut {
    i: usize,
    #[serde(default)]
    ok: Option<Committed>,
    #[serde(default)]
    err: Option<Rejection>,
}

#[derive(Deserialize)]
struct ReleaseOut {
    p: usize,
    w: String,
    cpu: u64,
    mem: u64,
    gpu: u64,
    v: u64,
}

#[derive(Deserialize)]
struct RegisterOut {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    reserved: Option<u64>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    free_cpu: Option<u64>,
    #[serde(default)]
    free_mem: Option<u64>,
    #[serde(default)]
    free_gpu: Option<u64>,
}

#[derive(Deserialize)]
struct AuditOut {
    total: Resources,
    free: Resources,
    reserved: Resources,
    reservations: usize,
    version: u64,
}

impl PostgresRepository {
    async fn audit_impl(&self, worker_id: &str, repair: bool) -> Result<AuditReport, RepoError> {
        validate_id("worker", worker_id)?;
        // An audit changes nothing; a repair must not be repeated blindly (its report is the
        // state before the repair).
        let out: Option<Json<AuditOut>> = with_retry!(read: !repair, self, |c| {
            sqlx::query_scalar("SELECT sched_audit($1, $2)")
                .bind(worker_id)
                .bind(repair)
                .fetch_one(c)
        })?;
        let Some(Json(a)) = out else {
            return Err(RepoError::UnknownWorker(worker_id.to_owned()));
        };
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

#[async_trait]
impl WorkerRepository for PostgresRepository {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        let (c, m, g) = amounts(&spec.total)?;
        let Json(out): Json<RegisterOut> = with_retry!(self, |conn| sqlx::query_scalar(
            "SELECT sched_register_worker($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(&spec.id)
        .bind(&spec.pool)
        .bind(spec.status.as_str())
        .bind(spec.priority)
        .bind(spec.gpu_type.as_deref())
        .bind(spec.requires_pool_selector)
        .bind(spec.preemptable)
        .bind(c)
        .bind(m)
        .bind(g)
        .fetch_one(conn))?;
        if let Some(err) = out.error {
            if err != "total_below_reserved" {
                return Err(protocol(format!("unexpected register error {err:?}")));
            }
            let resource = out
                .resource
                .as_deref()
                .and_then(sched_core::ResourceKind::parse)
                .ok_or_else(|| protocol("register error without a resource"))?;
            return Err(RepoError::TotalBelowReserved {
                resource,
                total: out.total.unwrap_or_default(),
                reserved: out.reserved.unwrap_or_default(),
            });
        }
        let (Some(version), Some(fc), Some(fm), Some(fg)) =
            (out.version, out.free_cpu, out.free_mem, out.free_gpu)
        else {
            return Err(protocol("register returned an incomplete row"));
        };
        let mut w = Worker::from_spec(spec, version);
        w.free = Resources::new(fc, fm, fg);
        Ok(w)
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        with_retry!(self, |c| sqlx::query_scalar(
            "SELECT sched_remove_worker($1)"
        )
        .bind(worker_id)
        .fetch_one(c))
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        let row = with_retry!(read: true, self, |c| sqlx::query(WORKER_BY_ID)
            .bind(worker_id)
            .fetch_optional(c))?;
        row.as_ref().map(worker_from_row).transpose()
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let rows = with_retry!(read: true, self, |c| sqlx::query(WORKERS_BY_POOL)
            .bind(pool)
            .fetch_all(c))?;
        rows.iter().map(worker_from_row).collect()
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
        let items: Vec<ReserveItem<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, cr)| ReserveItem {
                i,
                w: &cr.worker_id,
                v: cr.expected_version,
                r: cr
                    .reservations
                    .iter()
                    .map(|r| ReserveEntry {
                        c: &r.container_id,
                        cpu: r.resources.cpu_millicores,
                        mem: r.resources.memory_mib,
                        gpu: r.resources.gpu_count,
                        g: r.gpu_type.as_deref(),
                    })
                    .collect(),
            })
            .collect();
        let partial = mode == CommitMode::Partial;
        let Json(outs): Json<Vec<ReserveOut>> = with_retry!(self, |c| sqlx::query_scalar(
            "SELECT sched_reserve_batch($1, $2)"
        )
        .bind(Json(&items))
        .bind(partial)
        .fetch_one(c))?;
        let mut slots: Vec<Option<WorkerResult>> = vec![None; batch.len()];
        for o in outs {
            let cr = batch
                .get(o.i)
                .ok_or_else(|| protocol(format!("reserve result for unknown index {}", o.i)))?;
            let outcome = match (o.ok, o.err) {
                (Some(ok), None) => Ok(ok),
                (None, Some(err)) => Err(err),
                _ => return Err(protocol("reserve result is neither ok nor err")),
            };
            slots[o.i] = Some(WorkerResult {
                worker_id: cr.worker_id.clone(),
                outcome,
            });
        }
        slots
            .into_iter()
            .map(|s| s.ok_or_else(|| protocol("reserve result missing a worker")))
            .collect()
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(container_ids)?;
        if container_ids.is_empty() {
            return Ok(Vec::new());
        }
        let Json(outs): Json<Vec<ReleaseOut>> = with_retry!(self, |c| sqlx::query_scalar(
            "SELECT sched_release_batch($1)"
        )
        .bind(container_ids)
        .fetch_one(c))?;
        let mut out: Vec<ReleaseOutcome> = container_ids
            .iter()
            .map(|cid| ReleaseOutcome {
                container_id: cid.clone(),
                released: None,
            })
            .collect();
        for o in outs {
            let slot = o
                .p
                .checked_sub(1)
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| protocol(format!("release result for unknown position {}", o.p)))?;
            slot.released = Some(Released {
                worker_id: o.w,
                resources: Resources::new(o.cpu, o.mem, o.gpu),
                new_version: o.v,
            });
        }
        Ok(out)
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        sched_core::validate::validate_release(container_ids)?;
        if container_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = with_retry!(read: true, self, |c| sqlx::query(
            "SELECT worker_id, container_id, cpu, mem, gpu, gpu_type \
             FROM reservations WHERE container_id = ANY($1)"
        )
        .bind(container_ids)
        .fetch_all(c))?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let wid: String = get(r, "worker_id")?;
            let rec = record_from_row(r, wid)?;
            found.insert(rec.container_id.clone(), rec);
        }
        Ok(container_ids.iter().map(|c| found.remove(c)).collect())
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        validate_id("worker", worker_id)?;
        let rows = with_retry!(read: true, self, |c| sqlx::query(
            "SELECT r.container_id, r.cpu, r.mem, r.gpu, r.gpu_type \
             FROM workers w LEFT JOIN reservations r ON r.worker_id = w.id \
             WHERE w.id = $1 ORDER BY r.container_id"
        )
        .bind(worker_id)
        .fetch_all(c))?;
        if rows.is_empty() {
            return Err(RepoError::UnknownWorker(worker_id.to_owned()));
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let cid: Option<String> = get(r, "container_id")?;
            if cid.is_some() {
                out.push(record_from_row(r, worker_id.to_owned())?);
            }
        }
        Ok(out)
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        self.audit_impl(worker_id, mode == AuditMode::Repair).await
    }
}
