//! The [`WorkerRepository`] impl: each operation builds its commands and scripts (`lua/`), sends
//! them in one pipeline per round trip and decodes the replies. On a cluster `reserve_batch`
//! runs the claim protocol of [`crate::cluster`].

use crate::client::Op;
use crate::cluster;
use crate::codec::{bad, get, kind, record, resource_args, worker, Fields};
use crate::fence::holder_of;
use crate::lifecycle::Sweep;
use crate::reserve::{burst_groups, outcome, reserve_burst};
use crate::{scripts, RedisRepository};
use async_trait::async_trait;
use redis::Value;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::watch::Wakeups;
use sched_core::{
    AuditMode, AuditReport, CapacityReservation as Cr, CommitMode, Heartbeat, LeaseRenewal,
    LeaseSweep, ReleaseOutcome, RepoError, ReservationRecord, Resources, Worker, WorkerRelease,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use std::collections::HashMap;
use std::sync::Arc;

mod release;

/// A hash read with `HGETALL`.
pub(crate) type Hash = HashMap<String, String>;

/// How often a standalone `remove_worker` re-reads a ledger that changed under it.
const REMOVE_ATTEMPTS: usize = 8;

/// How often a standalone `list_workers` re-reads a worker set that grew under it.
const LIST_ATTEMPTS: usize = 8;

#[async_trait]
impl WorkerRepository for RedisRepository {
    fn backend_name(&self) -> &str {
        self.name
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        let (id, k) = (&spec.id, &self.keys);
        let flags =
            [spec.requires_pool_selector, spec.preemptable].map(|b| u8::from(b).to_string());
        let (status, prio) = (spec.status.as_str().to_owned(), spec.priority.to_string());
        let gpu = spec.gpu_type.clone().unwrap_or_default();
        let args = [id.clone(), spec.pool.clone(), status, prio, gpu].into_iter();
        let timeout = spec
            .heartbeat_timeout_ms
            .map_or(String::new(), |t| t.to_string());
        let args = args
            .chain(flags)
            .chain(resource_args(&spec.total))
            .chain([timeout, spec.on_stale.as_str().to_owned()])
            .collect();
        // The id enters the worker set once its state exists ("The worker set" in
        // ARCHITECTURE.md): on one node in the same script, on a cluster by enlist.lua after it.
        let mut keys = [k.worker(id), vec![k.tomb(id)]].concat();
        let cluster = self.is_cluster();
        if !cluster {
            keys.extend([k.workers(), k.worker_gens()]);
        }
        let op = Op::script(&scripts::REGISTER, keys, args);
        let a: Vec<Value> = self.run_one(op, true).await?;
        match a.field::<String>(0)?.as_str() {
            "ok" => {
                if cluster {
                    self.enlist(id).await?;
                }
                self.learn(id, a.field(5)?);
                self.remember_worker(id);
                Ok(Worker {
                    free: a.resources(2)?,
                    last_heartbeat_ms: Some(a.field(6)?),
                    ..Worker::from_spec(spec, a.field(1)?)
                })
            }
            "below" => Err(RepoError::TotalBelowReserved {
                resource: kind(&a.field::<String>(1)?)?,
                total: a.field(2)?,
                reserved: a.field(3)?,
            }),
            other => Err(bad(format!("unknown register reply {other:?}"))),
        }
    }

    async fn remove_worker(&self, id: &str) -> Result<bool, RepoError> {
        validate_id("worker", id)?;
        let (k, cluster) = (&self.keys, self.is_cluster());
        for _ in 0..REMOVE_ATTEMPTS {
            let mut keys = [k.worker(id), vec![k.tomb(id), k.fence(id)]].concat();
            let mut args = vec![id.to_owned(), self.mode()];
            if !cluster {
                // The script must declare the index keys it deletes: read the ledger first.
                let hkeys = Op::cmd("HKEYS", vec![k.ledger(id)]);
                let ledger: Vec<String> = self.run_one(hkeys, false).await?;
                keys.extend(ledger.iter().map(|c| k.index(c)));
                args.extend(ledger);
            }
            let op = Op::script(&scripts::REMOVE, keys, args);
            let reply: Vec<Value> = self.run_one(op, true).await?;
            match reply.field::<String>(0)?.as_str() {
                "absent" => return Ok(false),
                "retry" => continue,
                "ok" if cluster => {
                    let ledger = reply[1..].iter().map(get::<String>);
                    match ledger.collect::<Result<Vec<_>, _>>() {
                        Ok(ledger) => {
                            const WHAT: &str = "remove_worker: drop the removed ledger's claims";
                            self.drop_claims_of_removed(id, &ledger, WHAT).await;
                        }
                        Err(e) => self.cleanup_failed("remove_worker: read the removed ledger", &e),
                    }
                    return Ok(true);
                }
                "ok" => return Ok(true),
                other => return Err(bad(format!("unknown remove reply {other:?}"))),
            }
        }
        Err(bad(format!(
            "worker {id:?}: ledger kept changing during remove_worker"
        )))
    }

    async fn get_worker(&self, id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", id)?;
        let (now, m): (u64, Hash) = self.run_one(self.read_worker(id), false).await?;
        self.learn_from(&m);
        (!m.is_empty()).then(|| worker(&m, Some(now))).transpose()
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let mut out = Vec::new();
        // An empty hash: removed (the id stays in the set as a tombstone).
        for (now, m) in self.read_all_workers().await? {
            if !m.is_empty() {
                self.learn_from(&m);
                out.push(worker(&m, Some(now))?);
            }
        }
        out.retain(|w| pool.is_none_or(|p| w.pool == p));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn reserve_batch(
        &self,
        batch: &[Cr],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        if self.is_cluster() {
            return cluster::reserve(self, batch, mode).await;
        }
        // One script per group of whole worker parts (the whole burst up to
        // BURST_SCRIPT_RESERVATIONS reservations), pipelined: one round trip, one reply per
        // worker part, in order.
        let ops = burst_groups(batch)
            .map(|g| reserve_burst(self, g, mode))
            .collect();
        let groups: Vec<Vec<Value>> = self.run_as(ops, true).await?;
        let parts: Vec<Value> = groups.into_iter().flatten().collect();
        if parts.len() != batch.len() {
            return Err(bad(format!(
                "{} worker parts, {} replies",
                batch.len(),
                parts.len()
            )));
        }
        let mut held = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        for (cr, a) in batch.iter().zip(parts) {
            let (r, charged) = outcome(cr, crate::codec::decode_owned(Ok(a))?)?;
            if !charged.is_empty() {
                let w: Arc<str> = Arc::from(cr.worker_id.as_str());
                let ids = charged.iter().filter_map(|&i| cr.reservations.get(i));
                held.extend(ids.map(|r| (r.container_id.clone(), Arc::clone(&w))));
            }
            results.push(r);
        }
        self.hint_holders(held);
        Ok(results)
    }

    /// One round trip on one node (two for containers this repository never saw placed);
    /// on a cluster the release scripts, then the clean-up of the claims (`ops/release.rs`).
    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(ids)?;
        self.release(ids).await
    }

    /// Two round trips: every index key, then every ledger entry found.
    async fn find_reservations(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        validate_release(ids)?;
        let index = self.index(ids).await?;
        let held: Vec<(usize, &str)> = (index.iter().enumerate())
            .filter_map(|(i, v)| Some((i, holder_of(v.as_deref()?))))
            .collect();
        let hget =
            |&(i, w): &(usize, &str)| Op::cmd("HGET", vec![self.keys.ledger(w), ids[i].clone()]);
        let entries = self.run_as::<Option<String>>(held.iter().map(hget).collect(), false);
        let mut out = vec![None; ids.len()];
        let mut orphans = Vec::new();
        for ((i, w), entry) in held.into_iter().zip(entries.await?) {
            match (entry, &index[i]) {
                (Some(entry), _) => out[i] = Some(record(w, ids[i].clone(), &entry)?),
                (None, Some(v)) if self.is_cluster() => orphans.push((i, v.as_str())),
                (None, _) => {}
            }
        }
        // Cluster: a claim with nothing behind it is fenced before "not held" is answered, so no
        // earlier call can make it held later.
        self.settle_orphans(ids, &orphans, &mut out).await?;
        Ok(out)
    }

    async fn list_reservations(&self, id: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        Ok(self.snapshot(id, AuditMode::Check).await?.1)
    }

    async fn renew_leases(
        &self,
        id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        self.renew(id, container_ids, lease_ms).await
    }

    async fn expire_leases(&self, id: &str) -> Result<LeaseSweep, RepoError> {
        Ok(self.sweep(id, Sweep::Expired).await?.into_lease_sweep())
    }

    async fn heartbeat(&self, id: &str) -> Result<Heartbeat, RepoError> {
        self.beat(id).await
    }

    async fn set_worker_status(&self, id: &str, status: WorkerStatus) -> Result<Worker, RepoError> {
        self.set_status(id, status).await
    }

    async fn release_worker(&self, id: &str) -> Result<WorkerRelease, RepoError> {
        Ok(self.sweep(id, Sweep::All).await?.into_release())
    }

    async fn reservation_wakeups(&self, id: &str) -> Result<Wakeups, RepoError> {
        self.wakeups(id).await
    }

    async fn audit_worker(&self, id: &str, mode: AuditMode) -> Result<AuditReport, RepoError> {
        let (w, ledger) = self.snapshot(id, mode).await?;
        let max = Resources::new(u64::MAX, u64::MAX, u64::MAX);
        let reserved = ledger.iter().fold(Resources::ZERO, |acc, r| {
            acc.checked_add(&r.resources).unwrap_or(max)
        });
        let (n, version) = (ledger.len(), w.resource_version);
        let report = AuditReport::new(w.id, w.total, w.free, reserved, n, version);
        if mode == AuditMode::Repair && !report.is_consistent() {
            tracing::warn!(worker = id, drift = ?report.drift, "reconciled drift");
        }
        Ok(report)
    }
}

impl RedisRepository {
    /// The container index: the value of each container's index key.
    async fn index(&self, ids: &[String]) -> Result<Vec<Option<String>>, RepoError> {
        let ops = ids.iter().map(|c| Op::cmd("GET", vec![self.keys.index(c)]));
        self.run_as(ops.collect(), false).await
    }

    /// The worker and its ledger (ordered by container), read atomically (snapshot.lua); in
    /// `Repair` mode, repaired afterwards (reconcile.lua).
    async fn snapshot(
        &self,
        id: &str,
        mode: AuditMode,
    ) -> Result<(Worker, Vec<ReservationRecord>), RepoError> {
        validate_id("worker", id)?;
        let (script, write) = match mode {
            AuditMode::Check => (&scripts::SNAPSHOT, false),
            AuditMode::Repair => (&scripts::RECONCILE, true),
        };
        let op = Op::script(script, self.keys.worker(id), Vec::new());
        let Some((state, ledger)) = self.run_one::<Option<(Hash, Hash)>>(op, write).await? else {
            return Err(RepoError::UnknownWorker(id.to_owned()));
        };
        let ledger = ledger.into_iter().map(|(c, v)| record(id, c, &v));
        let mut ledger = ledger.collect::<Result<Vec<_>, _>>()?;
        ledger.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok((worker(&state, None)?, ledger))
    }

    /// Every worker in the set: its state hash (empty: removed) with the server's clock. One
    /// node: workers.lua, one round trip declaring the ids last seen (again with the set's ids
    /// when it holds others); cluster: `SMEMBERS`, then worker.lua per worker.
    async fn read_all_workers(&self) -> Result<Vec<(u64, Hash)>, RepoError> {
        let k = &self.keys;
        if self.is_cluster() {
            return self.read_workers_listed().await;
        }
        let mut ids = self.known_workers();
        for _ in 0..LIST_ATTEMPTS {
            let set = [k.workers(), k.worker_gens()].into_iter();
            let keys = set.chain(ids.iter().map(|id| k.state(id)));
            let op = Op::script(&scripts::WORKERS, keys.collect(), ids.clone());
            let reply: Vec<Value> = self.run_one(op, false).await?;
            let head: String = reply.field(0)?;
            if head == "retry" {
                ids = reply.field(1)?;
                self.set_known_workers(&ids);
                continue;
            }
            let now = (head.parse::<u64>()).map_err(|e| bad(format!("workers.lua TIME: {e}")))?;
            let states: Vec<Hash> = reply.field(1)?;
            let removed: Vec<String> = reply.field(2)?;
            if !removed.is_empty() {
                let gone: Vec<&String> = removed.iter().step_by(2).collect();
                ids.retain(|id| !gone.contains(&id));
                self.set_known_workers(&ids);
                self.prune(removed).await;
            }
            return Ok(states.into_iter().map(|m| (now, m)).collect());
        }
        // Registrations keep racing the one-step read: read the set, then each worker (each
        // read atomic on its own, as on a cluster). Always ends.
        tracing::debug!("the worker set kept changing during list_workers: two round trips");
        self.read_workers_listed().await
    }

    /// The worker set with its generations, then every worker in it with the server's clock
    /// (`worker.lua` each, one pipeline): two round trips, each worker read atomically on its
    /// own. Ids whose state is gone are pruned from the set.
    async fn read_workers_listed(&self) -> Result<Vec<(u64, Hash)>, RepoError> {
        let k = &self.keys;
        let ops = vec![
            Op::cmd("SMEMBERS", vec![k.workers()]),
            Op::cmd("HGETALL", vec![k.worker_gens()]),
        ];
        let replies: Vec<Value> = self.run_as(ops, false).await?;
        let ids: Vec<String> = replies.field(0)?;
        let mut gens: Hash = replies.field(1)?;
        if !self.is_cluster() {
            self.set_known_workers(&ids);
        }
        let ops = ids.iter().map(|id| self.read_worker(id));
        let read: Vec<(u64, Hash)> = self.run_as(ops.collect(), false).await?;
        let removed = ids.iter().zip(&read).filter(|(_, (_, m))| m.is_empty());
        let removed = removed.flat_map(|(id, _)| [id.clone(), gens.remove(id).unwrap_or_default()]);
        self.prune(removed.collect()).await;
        Ok(read)
    }

    /// enlist.lua (cluster): the registered worker's id into the worker set. Its state exists
    /// by now, so a failure here leaves the registration applied: `Ambiguous`, not `Unavailable`.
    async fn enlist(&self, id: &str) -> Result<(), RepoError> {
        let k = &self.keys;
        let op = Op::script(
            &scripts::ENLIST,
            vec![k.workers(), k.worker_gens()],
            vec![id.to_owned()],
        );
        match self.run_one::<Value>(op, true).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_transient() && !e.is_ambiguous() => Err(RepoError::Ambiguous(
                format!("worker {id:?} registered, not yet listed: {e}").into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// prune.lua: drops the ids `list_workers` found removed (pairs of id and generation as
    /// read) from the worker set. Best effort: a failure only leaves them for the next listing.
    async fn prune(&self, removed: Vec<String>) {
        if removed.is_empty() {
            return;
        }
        match self.try_prune(removed).await {
            Ok(n) => tracing::debug!(dropped = n, "removed workers pruned from the worker set"),
            Err(e) => tracing::debug!(error = %e, "pruning removed workers failed; left for later"),
        }
    }

    /// prune.lua itself: how many ids it dropped.
    pub(crate) async fn try_prune(&self, removed: Vec<String>) -> Result<u64, RepoError> {
        let k = &self.keys;
        let mut keys = vec![k.workers(), k.worker_gens()];
        if !self.is_cluster() {
            keys.extend(removed.iter().step_by(2).map(|id| k.state(id)));
        }
        self.run_one(Op::script(&scripts::PRUNE, keys, removed), true)
            .await
    }

    /// One node: the worker ids `list_workers` declares (the set as last seen).
    fn known_workers(&self) -> Vec<String> {
        let ids = self.worker_ids.lock();
        ids.unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One node: the worker set as just read.
    fn set_known_workers(&self, ids: &[String]) {
        let mut known = (self.worker_ids.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.clone_into(&mut known);
    }

    /// One node: a worker this repository registered is in the set.
    fn remember_worker(&self, id: &str) {
        if self.is_cluster() {
            return;
        }
        let mut known = (self.worker_ids.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        if !known.iter().any(|k| k == id) {
            known.push(id.to_owned());
        }
    }

    /// worker.lua: the state hash with the server's clock (for `stale`).
    fn read_worker(&self, id: &str) -> Op {
        Op::script(&scripts::WORKER, vec![self.keys.state(id)], Vec::new())
    }
}
