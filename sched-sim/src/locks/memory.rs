//! [`MemoryLocks`]: per-worker expiring locks in process, for the memory backend.

use super::{LockToken, WorkerLocks};
use async_trait::async_trait;
use sched_core::RepoError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// In-process per-worker locks with expiry, the memory counterpart of Redis `SET NX PX`.
#[derive(Debug, Default)]
pub struct MemoryLocks {
    held: Mutex<HashMap<String, (String, Instant)>>,
    next: AtomicU64,
}

impl MemoryLocks {
    /// No locks held.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WorkerLocks for MemoryLocks {
    async fn try_lock(
        &self,
        worker_id: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, RepoError> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, until)) = held.get(worker_id) {
            if *until > now {
                return Ok(None);
            }
        }
        let token = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        held.insert(worker_id.to_owned(), (token.clone(), now + ttl));
        Ok(Some(LockToken {
            worker_id: worker_id.to_owned(),
            token,
        }))
    }

    async fn unlock(&self, token: LockToken) -> Result<(), RepoError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(&token.worker_id).map(|(t, _)| t) == Some(&token.token) {
            held.remove(&token.worker_id);
        }
        Ok(())
    }
}
