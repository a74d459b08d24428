//! [`PostgresLocks`]: per-worker row locks on PostgreSQL, held by open transactions on the
//! simulator's own pool.

use super::{LockToken, WorkerLocks};
use async_trait::async_trait;
use sched_core::validate::validate_id;
use sched_core::{BackendCounters, RepoError};
use sched_postgres::PostgresRepository;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Backend name the round trips are counted under.
const BACKEND: &str = "postgres";

/// The lock table and the try-lock function, created in the repository's schema by
/// [`PostgresLocks::install`]. `sched_sim_try_lock` returns true when it took the lock in the
/// caller's open transaction, false when someone holds it, NULL when the worker has no lock row
/// yet. Lock rows are created by `install`, or by the client in a short separate statement
/// before retrying, never inside a lock-holding transaction (an insert racing a holder's
/// uncommitted insert would wait for it).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sched_sim_worker_locks (
    worker_id text COLLATE "C" PRIMARY KEY
);
CREATE OR REPLACE FUNCTION sched_sim_try_lock(p_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    PERFORM 1 FROM sched_sim_worker_locks WHERE worker_id = p_id FOR UPDATE NOWAIT;
    IF FOUND THEN
        RETURN true;
    END IF;
    RETURN NULL;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$fn$;
"#;

/// Per-worker locks as `SELECT … FOR UPDATE NOWAIT` on a row of the `sched_sim_worker_locks`
/// table, held by a transaction left open on a dedicated connection until
/// [`unlock`](WorkerLocks::unlock).
///
/// The lock table is separate from sched-postgres's tables, so a holder's own `reserve_batch` is
/// not blocked by its lock. The TTL is enforced by the server: the transaction sets
/// `idle_in_transaction_session_timeout` to it, so a holder that never unlocks loses its session
/// (and the lock) after `ttl`. The locks use their own pool (same server, connection options
/// and schema as the repository), sized like the repository's: each held lock occupies one
/// connection. Round trips are counted in the repository's counters.
pub struct PostgresLocks {
    pool: PgPool,
    counters: Arc<BackendCounters>,
    held: Mutex<HashMap<String, Transaction<'static, Postgres>>>,
    next: AtomicU64,
    prefix: u64,
}

impl fmt::Debug for PostgresLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLocks")
            .field("pool_size", &self.pool.size())
            .field("next", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

/// Maps a failed statement like sched-postgres does: not sent or rolled back →
/// `Unavailable`; broken while it ran → `Ambiguous`; anything else → `Backend`.
fn fail(e: sqlx::Error) -> RepoError {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            RepoError::Unavailable(Box::new(e))
        }
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => {
            RepoError::Ambiguous(Box::new(e))
        }
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // serialization failure, deadlock, statement timeout, server not accepting.
                "40001" | "40P01" | "57014" | "57P03" | "53300" => {
                    RepoError::Unavailable(Box::new(e))
                }
                c if c.starts_with("08") || c == "57P01" || c == "57P02" => {
                    RepoError::Ambiguous(Box::new(e))
                }
                _ => RepoError::Backend(Box::new(e)),
            }
        }
        _ => RepoError::Backend(Box::new(e)),
    }
}

/// Getting a connection failed: nothing was sent.
fn acquire_error(e: sqlx::Error) -> RepoError {
    RepoError::Unavailable(Box::new(e))
}

impl PostgresLocks {
    /// Locks for the repository's schema, on a separate lazily-connected pool with the
    /// repository's connection options and pool size; round trips are counted in the
    /// repository's counters. Call [`install`](Self::install) once per schema before locking.
    pub fn new(repo: &PostgresRepository) -> Self {
        let config = repo.config();
        let connect = (*repo.pool().connect_options()).clone();
        // A lock connection whose session timed out is broken: ping before reuse.
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections())
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout())
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        PostgresLocks {
            pool,
            counters: repo.counters(),
            held: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            prefix: rand::random(),
        }
    }

    /// Creates the lock table and function in the schema if needed, and a lock row for each of
    /// `worker_ids` (so their first lock costs no extra statement). Idempotent; not counted as
    /// round trips (it is set-up). Not safe to run concurrently on one new schema: one process
    /// installs, the others attach.
    pub async fn install(&self, worker_ids: &[String]) -> Result<(), RepoError> {
        sqlx::raw_sql(SCHEMA)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        sqlx::query(
            "INSERT INTO sched_sim_worker_locks (worker_id) SELECT unnest($1::text[]) \
             ON CONFLICT (worker_id) DO NOTHING",
        )
        .bind(worker_ids)
        .execute(&self.pool)
        .await
        .map_err(fail)?;
        Ok(())
    }

    /// Number of locks this instance currently holds.
    pub async fn held(&self) -> usize {
        self.held.lock().await.len()
    }
}

#[async_trait]
impl WorkerLocks for PostgresLocks {
    async fn try_lock(
        &self,
        worker_id: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, RepoError> {
        validate_id("worker", worker_id)?;
        let ttl_ms = ttl.as_millis().clamp(1, i32::MAX as u128).to_string();
        let mut created = false;
        let tx = loop {
            let mut tx = self.pool.begin().await.map_err(acquire_error)?;
            self.counters.round_trips(BACKEND, 2);
            let got: Option<bool> = sqlx::query_scalar(
                "SELECT sched_sim_try_lock($1) \
                 FROM set_config('idle_in_transaction_session_timeout', $2, true)",
            )
            .bind(worker_id)
            .bind(&ttl_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
            match got {
                Some(true) => break tx,
                Some(false) => {
                    self.counters.round_trips(BACKEND, 1);
                    tx.rollback().await.map_err(fail)?;
                    return Ok(None);
                }
                None if !created => {
                    // No lock row yet (worker not installed): create it in its own short
                    // statement, then try again.
                    self.counters.round_trips(BACKEND, 2);
                    tx.rollback().await.map_err(fail)?;
                    sqlx::query(
                        "INSERT INTO sched_sim_worker_locks (worker_id) VALUES ($1) \
                         ON CONFLICT (worker_id) DO NOTHING",
                    )
                    .bind(worker_id)
                    .execute(&self.pool)
                    .await
                    .map_err(fail)?;
                    created = true;
                }
                None => {
                    return Err(RepoError::Backend(
                        format!("lock row for {worker_id:?} vanished").into(),
                    ))
                }
            }
        };
        let token = format!(
            "{:016x}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        self.held.lock().await.insert(token.clone(), tx);
        Ok(Some(LockToken {
            worker_id: worker_id.to_owned(),
            token,
        }))
    }

    async fn unlock(&self, token: LockToken) -> Result<(), RepoError> {
        let tx = self.held.lock().await.remove(&token.token);
        if let Some(tx) = tx {
            self.counters.round_trips(BACKEND, 1);
            if let Err(e) = tx.commit().await {
                // The session timed out (the TTL passed) or dropped: the lock is gone already.
                tracing::debug!(worker = %token.worker_id, error = %e, "lock expired before unlock");
            }
        }
        Ok(())
    }
}
