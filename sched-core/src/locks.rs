//! [`WorkerLocks`]: per-worker mutual exclusion as used by the lock-based designs sched replaces.
//!
//! sched itself takes no locks. Backends implement this trait only so that the simulator can run
//! the old designs (`naive`, `seed`) on the same store and compare them honestly.

use crate::RepoError;
use async_trait::async_trait;
use std::time::Duration;

/// Proof of holding a worker's lock; give it back to [`WorkerLocks::unlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    /// The locked worker.
    pub worker_id: String,
    /// Backend-specific token (a random value on Redis, a session key on Postgres).
    pub token: String,
}

/// A real per-worker lock in the backend (SET NX PX on Redis, `SELECT … FOR UPDATE` on Postgres,
/// a mutex in memory).
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
