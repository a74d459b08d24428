//! Test hooks (feature `testing`): clean-up and fault injection, never used by the scheduler.

use crate::client::Op;
use crate::codec::resource_args;
use crate::{scripts, RedisRepository};
use sched_core::{
    validate::validate_batch, validate::validate_id, CapacityReservation, CommitMode, RepoError,
    Resources, WorkerRepository,
};

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

    /// The commands `reserve_batch(batch, mode)` sends on a single node, in order, each as its
    /// wire words (`EVALSHA sha numkeys keys... argv...`), for one pipelined round trip. The
    /// simulator sends them from a bare client to measure the commit's floor without the
    /// scheduler or this crate's encoding and decoding. Scripts must already be loaded (any
    /// earlier call of this repository loads them). `InvalidInput` for a bad batch; on a
    /// cluster, `Unsupported` (the cluster protocol is several pipelines).
    pub fn reserve_wire(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<Vec<String>>, RepoError> {
        validate_batch(batch)?;
        if self.is_cluster() {
            return Err(RepoError::Unsupported {
                operation: "reserve_wire on a cluster",
            });
        }
        Ok(batch
            .iter()
            .map(|cr| {
                let op = crate::ops::reserve_script(self, cr, mode, None);
                std::iter::once(op.name)
                    .chain(op.wire_args())
                    .map(str::to_owned)
                    .collect()
            })
            .collect())
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
