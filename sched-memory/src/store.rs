//! The raw in-memory store: one mutex over all state, held only for synchronous work, so every
//! worker's part of a batch is trivially atomic. The per-worker rules are sched-core's
//! [`rules`]; faults, latency and call counts are layers around this store.

use async_trait::async_trait;
use sched_core::rules::{self, WorkerState};
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, ReleaseOutcome,
    RepoError, ReservationRecord, Worker, WorkerRepository, WorkerResult, WorkerSpec,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

const BACKEND: &str = "memory";

/// The process clock in ms since the Unix epoch (the memory store's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct State {
    workers: BTreeMap<String, WorkerState>,
    /// container id → worker id
    index: HashMap<String, String>,
    /// Last version of removed workers, so versions never repeat for an id.
    tombstones: HashMap<String, u64>,
}

/// The raw in-memory store, without layers: what [`MemoryRepository`](crate::MemoryRepository)
/// wraps. Clones share it. It counts only round trips, one per call that passes validation; wrap
/// it in [`Counted`](sched_core::layers::Counted) for calls and sections and in
/// [`Faulty`](sched_core::layers::Faulty) for faults, or use `MemoryRepository`, which does both.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    counters: Arc<BackendCounters>,
}

impl MemoryStore {
    /// An empty store with fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store counting its round trips into `counters`.
    pub fn with_counters(counters: Arc<BackendCounters>) -> Self {
        MemoryStore {
            state: Arc::default(),
            counters,
        }
    }

    /// The counters this store writes its round trips to.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// One round trip: counts it and takes the lock. A panic while holding the lock cannot leave
    /// a half-applied worker (the rules compute first; writes come last), so poisoning is ignored.
    fn enter(&self) -> MutexGuard<'_, State> {
        self.counters.round_trips(BACKEND, 1);
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test hook (feature `testing`): overwrites a worker's stored free capacity without
    /// touching its ledger. Returns false for an unknown worker.
    #[cfg(any(test, feature = "testing"))]
    pub fn corrupt_free(&self, worker_id: &str, free: sched_core::Resources) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.workers
            .get_mut(worker_id)
            .map(|w| w.worker.free = free)
            .is_some()
    }
}

#[async_trait]
impl WorkerRepository for MemoryStore {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        let mut st = self.enter();
        let tomb = st.tombstones.get(&spec.id).copied().unwrap_or(0);
        let w = rules::register(st.workers.get(&spec.id), spec, tomb, now_ms())?;
        st.workers
            .entry(spec.id.clone())
            .and_modify(|s| s.worker = w.clone())
            .or_insert_with(|| WorkerState::new(w.clone()));
        Ok(w)
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        let mut st = self.enter();
        let Some(removed) = st.workers.remove(worker_id) else {
            return Ok(false);
        };
        for cid in removed.ledger.keys() {
            st.index.remove(cid);
        }
        st.tombstones
            .insert(worker_id.to_owned(), removed.worker.resource_version);
        Ok(true)
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        Ok(self
            .enter()
            .workers
            .get(worker_id)
            .map(|s| s.worker.clone()))
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let st = self.enter();
        Ok(st
            .workers
            .values()
            .filter(|s| pool.is_none_or(|p| s.worker.pool == p))
            .map(|s| s.worker.clone())
            .collect())
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        let mut guard = self.enter();
        let st = &mut *guard;
        let mut out = Vec::with_capacity(batch.len());
        for part in batch {
            let holder = |c: &str| st.index.get(c).map(String::as_str);
            let outcome = rules::reserve(
                st.workers.get(&part.worker_id),
                part,
                mode,
                holder,
                now_ms(),
            )
            .map(|reserved| {
                for (cid, _) in &reserved.charged {
                    st.index.insert(cid.clone(), part.worker_id.clone());
                }
                match st.workers.get_mut(&part.worker_id) {
                    Some(w) => w.commit(reserved),
                    // rules::reserve rejects unknown workers; nothing to write.
                    None => reserved.committed,
                }
            });
            out.push(WorkerResult {
                worker_id: part.worker_id.clone(),
                outcome,
            });
        }
        Ok(out)
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(container_ids)?;
        let mut guard = self.enter();
        let st = &mut *guard;
        Ok(container_ids
            .iter()
            .map(|cid| {
                let released = st
                    .index
                    .get(cid)
                    .and_then(|wid| st.workers.get_mut(wid))
                    .and_then(|w| w.release(cid));
                if released.is_some() {
                    st.index.remove(cid);
                }
                ReleaseOutcome {
                    container_id: cid.clone(),
                    released,
                }
            })
            .collect())
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        validate_release(container_ids)?;
        let st = self.enter();
        Ok(container_ids
            .iter()
            .map(|cid| {
                let wid = st.index.get(cid)?;
                Some(st.workers.get(wid)?.ledger.get(cid)?.record(wid, cid))
            })
            .collect())
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        validate_id("worker", worker_id)?;
        let st = self.enter();
        st.workers
            .get(worker_id)
            .map(WorkerState::records)
            .ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        validate_id("worker", worker_id)?;
        let mut st = self.enter();
        let w = st
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))?;
        let report = w.audit_with(mode);
        if mode == AuditMode::Repair && !report.is_consistent() {
            tracing::warn!(worker = worker_id, drift = ?report.drift, "reconciled drift");
        }
        Ok(report)
    }
}
