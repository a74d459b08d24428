//! [`WorkerLocks`]: per-worker mutual exclusion as used by the lock-based designs sched replaces.
//!
//! sched itself takes no locks, so the locks live here, with the baselines (`naive`, `seed`)
//! that need them, and not in any production crate. Each backend has one, on its own
//! connections to the same store as the repository, so that the baselines are compared
//! honestly against sched on that store:
//!
//! | backend | lock | module |
//! |---|---|---|
//! | memory | a map of expiring tokens behind a mutex | [`memory::MemoryLocks`] |
//! | Redis (`redis` and `redis-fred`) | `SET NX PX` + compare-and-delete script, through redis-rs | [`redis::RedisLocks`] |
//! | PostgreSQL | `SELECT … FOR UPDATE NOWAIT` on a lock row, held by an open transaction | [`postgres::PostgresLocks`] |
//!
//! The Redis and Postgres locks count their round trips in the repository's
//! [`BackendCounters`](sched_core::BackendCounters), so a burst's backend round trips include
//! its lock traffic.

pub mod memory;
pub mod postgres;
pub mod redis;

use async_trait::async_trait;
use sched_core::RepoError;
use std::time::Duration;

pub use memory::MemoryLocks;
pub use postgres::PostgresLocks;
pub use redis::RedisLocks;

/// Proof of holding a worker's lock; give it back to [`WorkerLocks::unlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    /// The locked worker.
    pub worker_id: String,
    /// Backend-specific token (a random value on Redis, a transaction key on Postgres).
    pub token: String,
}

/// A real per-worker lock in the backend (`SET NX PX` on Redis, `SELECT … FOR UPDATE NOWAIT` on
/// Postgres, an expiring entry in memory).
#[async_trait]
pub trait WorkerLocks: Send + Sync {
    /// Tries once to take the worker's lock for at most `ttl`. `Ok(None)` when someone holds it.
    async fn try_lock(
        &self,
        worker_id: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, RepoError>;

    /// Gives the lock back. Unlocking a lock that expired or was taken over is a no-op.
    async fn unlock(&self, token: LockToken) -> Result<(), RepoError>;
}
