//! The raw in-memory store: one mutex over all state, held only for synchronous work, so every
//! worker's part of a batch is trivially atomic. The per-worker rules are sched-core's
//! [`rules`]; faults, latency and call counts are layers around this store.

use crate::Clock;
use async_trait::async_trait;
use futures::StreamExt;
use sched_core::rules::{self, WorkerState};
use sched_core::validate::{
    validate_batch, validate_id, validate_release, validate_renewal, validate_spec,
};
use sched_core::watch::Wakeups;
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, Heartbeat,
    LeaseRenewal, LeaseSweep, ReleaseOutcome, RepoError, ReservationRecord, Worker, WorkerRelease,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

const BACKEND: &str = "memory";

/// Wake-ups queued per receiver before it lags (a lagging receiver gets one wake-up instead).
const WAKE_CAPACITY: usize = 1024;

/// A hash map with foldhash's fast hasher (seeded per process): the index is looked up and
/// written once per container on every reserve and release, where SipHash showed in profiles.
type FastMap<K, V> = foldhash::HashMap<K, V>;

#[derive(Debug, Default)]
struct State {
    workers: BTreeMap<String, WorkerState>,
    /// container id → worker id (shared by every container of the worker: no copy per entry)
    index: FastMap<String, Arc<str>>,
    /// Last version of removed workers, so versions never repeat for an id.
    tombstones: FastMap<String, u64>,
}

/// The raw in-memory store, without layers: what [`MemoryRepository`](crate::MemoryRepository)
/// wraps. Clones share it. It counts only round trips, one per call that passes validation; wrap
/// it in [`Counted`](sched_core::layers::Counted) for calls and sections and in
/// [`Faulty`](sched_core::layers::Faulty) for faults, or use `MemoryRepository`, which does both.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    counters: Arc<BackendCounters>,
    clock: Clock,
    /// Worker ids of committed reserves, for [`reservation_wakeups`](WorkerRepository::reservation_wakeups).
    wake: broadcast::Sender<Arc<str>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_counters(Arc::default())
    }
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
            clock: Clock::System,
            wake: broadcast::channel(WAKE_CAPACITY).0,
        }
    }

    /// The same store reading time from `clock` (a [`ManualClock`](crate::ManualClock) for
    /// deterministic tests of leases and heartbeats).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
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
        let w = rules::register(st.workers.get(&spec.id), spec, tomb, self.now_ms())?;
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
        let now = self.now_ms();
        Ok(self.enter().workers.get(worker_id).map(|s| s.observe(now)))
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let now = self.now_ms();
        let st = self.enter();
        Ok(st
            .workers
            .values()
            .filter(|s| pool.is_none_or(|p| s.worker.pool == p))
            .map(|s| s.observe(now))
            .collect())
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        let now = self.now_ms();
        let mut guard = self.enter();
        let st = &mut *guard;
        let mut out = Vec::with_capacity(batch.len());
        for part in batch {
            let holder = |c: &str| st.index.get(c).map(|w| &**w);
            let outcome = rules::reserve(st.workers.get(&part.worker_id), part, mode, holder, now)
                .map(|reserved| {
                    let wid: Arc<str> = Arc::from(part.worker_id.as_str());
                    st.index.reserve(reserved.charged.len());
                    for (cid, _) in &reserved.charged {
                        st.index.insert(cid.clone(), Arc::clone(&wid));
                    }
                    let committed = match st.workers.get_mut(&part.worker_id) {
                        Some(w) => w.commit(reserved),
                        // rules::reserve rejects unknown workers; nothing to write.
                        None => reserved.committed,
                    };
                    (committed, wid)
                });
            let outcome = outcome.map(|(committed, wid)| {
                // No receiver is fine: nobody is watching.
                let _ = self.wake.send(wid);
                committed
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
                    .and_then(|wid| st.workers.get_mut(&**wid))
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
                Some(st.workers.get(&**wid)?.ledger.get(cid)?.record(wid, cid))
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

    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        validate_renewal(worker_id, container_ids, lease_ms)?;
        let now = self.now_ms();
        let mut st = self.enter();
        Ok(worker_mut(&mut st, worker_id)?.renew(container_ids, lease_ms, now))
    }

    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        validate_id("worker", worker_id)?;
        let now = self.now_ms();
        let mut guard = self.enter();
        let st = &mut *guard;
        let sweep = worker_mut(st, worker_id)?.sweep(now);
        for e in &sweep.expired {
            st.index.remove(&e.record.container_id);
        }
        Ok(sweep)
    }

    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        validate_id("worker", worker_id)?;
        let now = self.now_ms();
        let mut st = self.enter();
        Ok(worker_mut(&mut st, worker_id)?.heartbeat(now))
    }

    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        validate_id("worker", worker_id)?;
        let now = self.now_ms();
        let mut st = self.enter();
        let w = worker_mut(&mut st, worker_id)?;
        w.set_status(status);
        Ok(w.observe(now))
    }

    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        validate_id("worker", worker_id)?;
        let mut guard = self.enter();
        let st = &mut *guard;
        let released = worker_mut(st, worker_id)?.release_all();
        for r in &released.released {
            st.index.remove(&r.container_id);
        }
        Ok(released)
    }

    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        validate_id("worker", worker_id)?;
        let rx = self.wake.subscribe();
        let worker: Arc<str> = Arc::from(worker_id);
        Ok(futures::stream::unfold(rx, move |mut rx| {
            let worker = Arc::clone(&worker);
            async move {
                loop {
                    match rx.recv().await {
                        Ok(w) if w == worker => return Some(((), rx)),
                        Ok(_) => {}
                        // Missed some: wake up and let the watch re-read the ledger.
                        Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), rx)),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed())
    }
}

/// The worker's state, or [`RepoError::UnknownWorker`].
fn worker_mut<'s>(st: &'s mut State, worker_id: &str) -> Result<&'s mut WorkerState, RepoError> {
    st.workers
        .get_mut(worker_id)
        .ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))
}
