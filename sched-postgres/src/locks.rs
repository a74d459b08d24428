//! [`PostgresLocks`]: real row locks for the simulator's lock-based `naive` baseline.

use crate::error::{acquire_error, statement_error, Failure};
use crate::repo::{pool_options, PostgresRepository, BACKEND};
use async_trait::async_trait;
use sched_core::validate::validate_id;
use sched_core::{BackendCounters, LockToken, RepoError, WorkerLocks};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Per-worker locks as `SELECT … FOR UPDATE NOWAIT` on a row of the `worker_locks` table, held
/// by a transaction left open on a dedicated connection until [`unlock`](WorkerLocks::unlock).
///
/// The lock table is separate from `workers`, so a holder's own `reserve_batch` is not blocked
/// by its lock. The TTL is enforced by the server: the transaction sets
/// `idle_in_transaction_session_timeout` to it, so a holder that never unlocks loses its
/// session (and the lock) after `ttl`. The locks use their own pool (same server and schema as
/// the repository), sized like the repository's: each held lock occupies one connection.
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

impl PostgresLocks {
    /// Locks for the repository's schema, on a separate lazily-connected pool; round trips are
    /// counted in the repository's counters.
    pub fn new(repo: &PostgresRepository) -> Self {
        let config = repo.config();
        // A lock connection whose session timed out is broken: ping before reuse.
        let pool = pool_options(config)
            .test_before_acquire(true)
            .connect_lazy_with(config.connect_options());
        PostgresLocks {
            pool,
            counters: repo.counters(),
            held: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            prefix: rand::random(),
        }
    }

    /// Number of locks this instance currently holds.
    pub async fn held(&self) -> usize {
        self.held.lock().await.len()
    }
}

fn fail(e: sqlx::Error) -> RepoError {
    match statement_error(e) {
        Failure::Retry(e) => RepoError::Unavailable(Box::new(e)),
        Failure::Fail(e) => e,
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
                "SELECT sched_try_lock($1) \
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
                    // No lock row yet (worker never registered): create it in its own short
                    // statement, then try again.
                    self.counters.round_trips(BACKEND, 2);
                    tx.rollback().await.map_err(fail)?;
                    sqlx::query(
                        "INSERT INTO worker_locks (worker_id) VALUES ($1) \
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
