//! Test hooks (feature `testing`): clean-up and fault injection, never used by the scheduler.

use crate::client::Op;
use crate::codec::resource_args;
use crate::{scripts, RedisRepository};
use sched_core::{
    validate::validate_batch, validate::validate_id, CapacityReservation, CommitMode, RepoError,
    Resources, WorkerRepository,
};
use std::collections::BTreeMap;

impl RedisRepository {
    /// `SCAN MATCH` pattern that covers every key this repository writes (for clean-up and
    /// inspection with `redis-cli --scan --pattern`).
    pub fn key_pattern(&self) -> String {
        self.keys.pattern()
    }

    /// The ids in the worker set and its generations hash: what `list_workers` reads, removed
    /// ids not yet pruned included (to test that removals do not pile up there).
    pub async fn worker_set(&self) -> Result<(Vec<String>, BTreeMap<String, String>), RepoError> {
        let k = &self.keys;
        let set = Op::cmd("SMEMBERS", vec![k.workers()]);
        let gens = Op::cmd("HGETALL", vec![k.worker_gens()]);
        let (mut ids, gens): (Vec<String>, BTreeMap<String, String>) = (
            self.run_one(set, false).await?,
            self.run_one(gens, false).await?,
        );
        ids.sort();
        Ok((ids, gens))
    }

    /// Runs the prune `list_workers` runs for ids it found removed, with the generations as
    /// given (id, generation or ""), as if it had read them earlier; returns how many ids were
    /// dropped from the worker set.
    pub async fn prune_worker_set(&self, seen: &[(&str, &str)]) -> Result<u64, RepoError> {
        let pairs = seen
            .iter()
            .flat_map(|(id, g)| [(*id).to_owned(), (*g).to_owned()]);
        self.try_prune(pairs.collect()).await
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

    /// The commands `reserve_batch(batch, mode)` sends on a single node (one script call per
    /// ~1,000 reservations of whole worker parts, one for a usual burst), each as its wire words (`EVALSHA sha numkeys keys... argv...`). The
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
        Ok(crate::reserve::burst_groups(batch)
            .map(|g| {
                let op = crate::reserve::reserve_burst(self, g, mode);
                std::iter::once(op.name.as_bytes())
                    .chain(op.wire_args())
                    .map(|w| String::from_utf8_lossy(w).into_owned())
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

    /// `INFO commandstats`, summed over every node (one node, or every node of a cluster):
    /// lowercase command name → (calls, usec). Commands run by scripts count under their own
    /// names too (`hset` inside reserve.lua), so deltas around a burst give its server time
    /// (`evalsha`) and the Redis calls its scripts made. Counters are server-wide: other
    /// clients' commands are in them as well.
    pub async fn command_usec(&self) -> Result<BTreeMap<String, (u64, u64)>, RepoError> {
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for text in self.client.command_stats().await? {
            for (name, calls, usec) in text.lines().filter_map(command_stat) {
                let e = out.entry(name).or_default();
                *e = (e.0.saturating_add(calls), e.1.saturating_add(usec));
            }
        }
        Ok(out)
    }
}

/// One `cmdstat_<name>:calls=N,usec=N,...` line as (lowercase name, calls, usec).
fn command_stat(line: &str) -> Option<(String, u64, u64)> {
    let (name, rest) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
    let field = |key: &str| {
        (rest.split(',').filter_map(|kv| kv.split_once('=')))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    Some((name.to_lowercase(), field("calls")?, field("usec")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_stat_lines_parse() {
        let line = "cmdstat_evalsha:calls=20,usec=490,usec_per_call=24.50,rejected_calls=0";
        assert_eq!(
            super::command_stat(line),
            Some(("evalsha".to_owned(), 20, 490))
        );
        assert_eq!(super::command_stat("# Commandstats"), None);
        assert_eq!(super::command_stat("cmdstat_get:calls=x,usec=1"), None);
    }
}
