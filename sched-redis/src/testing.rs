//! Test hooks (feature `testing`): clean-up and fault injection, never used by the scheduler.

use crate::client::Op;
use crate::codec::resource_args;
use crate::{scripts, RedisRepository};
use sched_core::{validate::validate_id, RepoError, Resources, WorkerRepository};

impl RedisRepository {
    /// `SCAN MATCH` pattern that covers every key this repository writes (for clean-up and
    /// inspection with `redis-cli --scan --pattern`).
    pub fn key_pattern(&self) -> String {
        self.keys.pattern()
    }

    /// Overwrites a worker's stored free capacity without touching the ledger, to simulate
    /// drift (for testing `audit` and `reconcile`). Returns false for an unknown worker.
    pub async fn corrupt_free(&self, worker_id: &str, free: Resources) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        if self.get_worker(worker_id).await?.is_none() {
            return Ok(false);
        }
        let args = resource_args(&free).into();
        let op = Op::script(&scripts::CORRUPT, vec![self.keys.state(worker_id)], args);
        self.run_one::<redis::Value>(op, true).await.map(|_| true)
    }

    /// Deletes every key of this repository's prefix (`SCAN MATCH` + `UNLINK`), on every node,
    /// and returns how many there were. For tests and tear-down; not atomic.
    pub async fn delete_all_keys(&self) -> Result<u64, RepoError> {
        let keys = self.client.keys_matching(&self.keys.pattern()).await?;
        for chunk in keys.chunks(500) {
            let ops: Vec<Op> = chunk
                .iter()
                .map(|k| Op::cmd("UNLINK", vec![k.clone()]))
                .collect();
            self.run_as::<redis::Value>(ops, true).await?;
        }
        Ok(keys.len() as u64)
    }
}
