//! The in-memory store: one mutex over all state, held only for synchronous work, so every
//! worker's part of a batch is trivially atomic.

use crate::{Fault, FaultPlan};
use async_trait::async_trait;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, Committed, Rejection,
    ReleaseOutcome, Released, RepoError, ReservationRecord, ResourceReservation, Resources, Worker,
    WorkerRepository, WorkerResult, WorkerSpec,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

const BACKEND: &str = "memory";

#[derive(Debug)]
struct Held {
    resources: Resources,
    gpu_type: Option<String>,
}

#[derive(Debug)]
struct Entry {
    worker: Worker,
    ledger: BTreeMap<String, Held>,
}

#[derive(Debug, Default)]
struct State {
    workers: BTreeMap<String, Entry>,
    /// container id → worker id
    index: HashMap<String, String>,
    /// Last version of removed workers, so versions never repeat for an id.
    tombstones: HashMap<String, u64>,
}

/// An in-memory [`WorkerRepository`]. Cheap to clone: clones share the same store.
#[derive(Debug, Clone, Default)]
pub struct MemoryRepository {
    state: Arc<Mutex<State>>,
    faults: Arc<FaultPlan>,
    counters: Arc<BackendCounters>,
}

/// Builds a [`MemoryRepository`] seeded with workers.
#[derive(Debug, Default)]
pub struct MemoryRepositoryBuilder {
    specs: Vec<WorkerSpec>,
}

impl MemoryRepositoryBuilder {
    /// Adds one worker.
    pub fn worker(mut self, spec: WorkerSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Adds `n` available CPU-only workers `worker-<k>`, numbered after any `worker-*` already
    /// added, with the same total.
    pub fn cpu_workers(mut self, n: usize, total: Resources) -> Self {
        let start = self.count_prefixed("worker-");
        self.specs
            .extend((start..start + n).map(|i| WorkerSpec::new(format!("worker-{i}"), total)));
        self
    }

    fn count_prefixed(&self, prefix: &str) -> usize {
        self.specs
            .iter()
            .filter(|s| s.id.starts_with(prefix))
            .count()
    }

    /// Adds `n` GPU workers `gpu-worker-<k>` of one GPU type, numbered after any `gpu-worker-*`
    /// already added.
    pub fn gpu_workers(mut self, n: usize, gpu_type: &str, total: Resources) -> Self {
        let start = self.count_prefixed("gpu-worker-");
        self.specs
            .extend((start..start + n).map(|i| {
                WorkerSpec::new(format!("gpu-worker-{i}"), total).with_gpu_type(gpu_type)
            }));
        self
    }

    /// Builds the repository. Invalid specs are skipped with a warning; use
    /// [`MemoryRepository::register_worker`] to see the error.
    pub async fn build(self) -> MemoryRepository {
        let repo = MemoryRepository::new();
        for spec in &self.specs {
            if let Err(e) = repo.register_worker(spec).await {
                tracing::warn!(worker = %spec.id, error = %e, "skipping invalid worker spec");
            }
        }
        repo
    }
}

impl MemoryRepository {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder to seed workers.
    pub fn builder() -> MemoryRepositoryBuilder {
        MemoryRepositoryBuilder::default()
    }

    /// The fault plan; push faults here to exercise callers' retry paths.
    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    /// Traffic counters (each call counts as one round trip).
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied worker: every mutation
        // below is computed first and written last.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn enter(&self) {
        let latency = self.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.counters.round_trips(BACKEND, 1);
    }
}

fn ambiguous(msg: &str) -> RepoError {
    RepoError::Ambiguous(msg.to_owned().into())
}

fn reserve_one(state: &mut State, cr: &CapacityReservation, mode: CommitMode) -> WorkerResult {
    let outcome = (|| {
        let entry = state
            .workers
            .get(&cr.worker_id)
            .ok_or(Rejection::UnknownWorker)?;
        let w = &entry.worker;
        if let Some(expected) = cr.expected_version {
            if expected != w.resource_version {
                return Err(Rejection::VersionConflict {
                    expected,
                    current: w.resource_version,
                });
            }
        }
        if !w.is_available() {
            return Err(Rejection::WorkerUnavailable { status: w.status });
        }
        let mut free = w.free;
        let mut charged: Vec<&ResourceReservation> = Vec::new();
        let mut accepted = 0usize;
        let mut stop: Option<Rejection> = None;
        for r in &cr.reservations {
            match check_one(state, entry, &free, r) {
                Ok(true) => {}
                Ok(false) => {
                    // fits: charge it
                    free = free.saturating_sub(&r.resources);
                    charged.push(r);
                }
                Err(rej) => {
                    stop = Some(rej);
                    break;
                }
            }
            accepted += 1;
        }
        if let Some(rej) = stop {
            if mode == CommitMode::AllOrNothing || accepted == 0 {
                return Err(rej);
            }
            stop = Some(rej);
        }
        let mut version = w.resource_version;
        if !charged.is_empty() {
            version = version.saturating_add(1);
        }
        let charged: Vec<(String, Held)> = charged
            .into_iter()
            .map(|r| {
                (
                    r.container_id.clone(),
                    Held {
                        resources: r.resources,
                        gpu_type: r.gpu_type.clone(),
                    },
                )
            })
            .collect();
        // write
        for (cid, _) in &charged {
            state.index.insert(cid.clone(), cr.worker_id.clone());
        }
        if let Some(entry) = state.workers.get_mut(&cr.worker_id) {
            entry.worker.free = free;
            entry.worker.resource_version = version;
            entry.ledger.extend(charged);
        }
        Ok(Committed {
            new_version: version,
            free,
            accepted,
            remainder: stop,
        })
    })();
    WorkerResult {
        worker_id: cr.worker_id.clone(),
        outcome,
    }
}

/// `Ok(true)`: already held here (no charge). `Ok(false)`: fits, charge it.
fn check_one(
    state: &State,
    entry: &Entry,
    free: &Resources,
    r: &ResourceReservation,
) -> Result<bool, Rejection> {
    if let Some(holder) = state.index.get(&r.container_id) {
        if *holder == entry.worker.id {
            return Ok(true);
        }
        return Err(Rejection::AlreadyReserved {
            container_id: r.container_id.clone(),
            worker_id: holder.clone(),
        });
    }
    if let Some(t) = &r.gpu_type {
        if entry.worker.gpu_type.as_deref() != Some(t.as_str()) {
            return Err(Rejection::GpuTypeMismatch {
                container_id: r.container_id.clone(),
                requested: t.clone(),
                actual: entry.worker.gpu_type.clone(),
            });
        }
    }
    if let Some(kind) = free.first_shortfall(&r.resources) {
        return Err(Rejection::InsufficientCapacity {
            container_id: r.container_id.clone(),
            resource: kind,
            requested: r.resources.get(kind),
            available: free.get(kind),
        });
    }
    Ok(false)
}

fn ledger_sum(entry: &Entry) -> Resources {
    // Amounts are bounded by MAX_AMOUNT and the count by memory, so this cannot overflow u64
    // in practice; saturate rather than panic if it ever did.
    entry.ledger.values().fold(Resources::ZERO, |acc, h| {
        acc.checked_add(&h.resources)
            .unwrap_or(Resources::new(u64::MAX, u64::MAX, u64::MAX))
    })
}

fn audit_entry(entry: &Entry) -> AuditReport {
    AuditReport::new(
        entry.worker.id.clone(),
        entry.worker.total,
        entry.worker.free,
        ledger_sum(entry),
        entry.ledger.len(),
        entry.worker.resource_version,
    )
}

#[async_trait]
impl WorkerRepository for MemoryRepository {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        self.enter().await;
        let mut state = self.lock();
        let tomb = state.tombstones.get(&spec.id).copied().unwrap_or(0);
        match state.workers.get_mut(&spec.id) {
            Some(entry) => {
                let reserved = ledger_sum(entry);
                if let Some(kind) = spec.total.first_shortfall(&reserved) {
                    return Err(RepoError::TotalBelowReserved {
                        resource: kind,
                        total: spec.total.get(kind),
                        reserved: reserved.get(kind),
                    });
                }
                let version = entry.worker.resource_version.saturating_add(1);
                let mut w = Worker::from_spec(spec, version);
                w.free = spec.total.saturating_sub(&reserved);
                entry.worker = w.clone();
                Ok(w)
            }
            None => {
                let w = Worker::from_spec(spec, tomb.saturating_add(1));
                state.workers.insert(
                    spec.id.clone(),
                    Entry {
                        worker: w.clone(),
                        ledger: BTreeMap::new(),
                    },
                );
                Ok(w)
            }
        }
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        self.enter().await;
        let mut state = self.lock();
        let Some(entry) = state.workers.remove(worker_id) else {
            return Ok(false);
        };
        for cid in entry.ledger.keys() {
            state.index.remove(cid);
        }
        state
            .tombstones
            .insert(worker_id.to_owned(), entry.worker.resource_version);
        Ok(true)
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        self.enter().await;
        Ok(self.lock().workers.get(worker_id).map(|e| e.worker.clone()))
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        self.enter().await;
        let state = self.lock();
        Ok(state
            .workers
            .values()
            .filter(|e| pool.is_none_or(|p| e.worker.pool == p))
            .map(|e| e.worker.clone())
            .collect())
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        self.enter().await;
        let fault = self.faults.next();
        if fault == Some(Fault::Fail) {
            return Err(RepoError::Unavailable("injected failure".into()));
        }
        if fault == Some(Fault::Conflict) {
            let state = self.lock();
            return Ok(batch
                .iter()
                .map(|cr| WorkerResult {
                    worker_id: cr.worker_id.clone(),
                    outcome: Err(match state.workers.get(&cr.worker_id) {
                        None => Rejection::UnknownWorker,
                        Some(e) => Rejection::VersionConflict {
                            expected: cr.expected_version.unwrap_or(0),
                            current: e.worker.resource_version,
                        },
                    }),
                })
                .collect());
        }
        let results = {
            let mut state = self.lock();
            batch
                .iter()
                .map(|cr| reserve_one(&mut state, cr, mode))
                .collect::<Vec<_>>()
        };
        if fault == Some(Fault::LoseReply) {
            return Err(ambiguous("injected lost reply (reserve_batch was applied)"));
        }
        Ok(results)
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(container_ids)?;
        self.enter().await;
        let fault = self.faults.next();
        if matches!(fault, Some(Fault::Fail) | Some(Fault::Conflict)) {
            return Err(RepoError::Unavailable("injected failure".into()));
        }
        let mut sections = 0u64;
        let out = {
            let mut state = self.lock();
            let state = &mut *state;
            container_ids
                .iter()
                .map(|cid| {
                    let released = state.index.get(cid).cloned().and_then(|wid| {
                        let entry = state.workers.get_mut(&wid)?;
                        let held = entry.ledger.remove(cid)?;
                        let free = entry
                            .worker
                            .free
                            .checked_add(&held.resources)
                            .unwrap_or(entry.worker.total);
                        // never lift free above total
                        entry.worker.free = Resources::new(
                            free.cpu_millicores.min(entry.worker.total.cpu_millicores),
                            free.memory_mib.min(entry.worker.total.memory_mib),
                            free.gpu_count.min(entry.worker.total.gpu_count),
                        );
                        entry.worker.resource_version =
                            entry.worker.resource_version.saturating_add(1);
                        sections += 1;
                        Some(Released {
                            worker_id: wid,
                            resources: held.resources,
                            new_version: entry.worker.resource_version,
                        })
                    });
                    if released.is_some() {
                        state.index.remove(cid);
                    }
                    ReleaseOutcome {
                        container_id: cid.clone(),
                        released,
                    }
                })
                .collect::<Vec<_>>()
        };
        if fault == Some(Fault::LoseReply) {
            return Err(ambiguous("injected lost reply (release_batch was applied)"));
        }
        Ok(out)
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        validate_release(container_ids)?;
        self.enter().await;
        let state = self.lock();
        Ok(container_ids
            .iter()
            .map(|cid| {
                let wid = state.index.get(cid)?;
                let held = state.workers.get(wid)?.ledger.get(cid)?;
                Some(ReservationRecord {
                    worker_id: wid.clone(),
                    container_id: cid.clone(),
                    resources: held.resources,
                    gpu_type: held.gpu_type.clone(),
                })
            })
            .collect())
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        validate_id("worker", worker_id)?;
        self.enter().await;
        let state = self.lock();
        let entry = state
            .workers
            .get(worker_id)
            .ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))?;
        Ok(entry
            .ledger
            .iter()
            .map(|(cid, h)| ReservationRecord {
                worker_id: worker_id.to_owned(),
                container_id: cid.clone(),
                resources: h.resources,
                gpu_type: h.gpu_type.clone(),
            })
            .collect())
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        validate_id("worker", worker_id)?;
        self.enter().await;
        let mut state = self.lock();
        let entry = state
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))?;
        let report = audit_entry(entry);
        if mode == AuditMode::Repair && !report.is_consistent() {
            tracing::warn!(worker = worker_id, drift = ?report.drift, "reconciling drift");
            entry.worker.free = entry.worker.total.saturating_sub(&report.reserved);
            entry.worker.resource_version = entry.worker.resource_version.saturating_add(1);
        }
        Ok(report)
    }
}

impl MemoryRepository {
    /// Test hook: overwrites a worker's stored free capacity without touching the ledger, to
    /// simulate drift (for testing `audit` and `reconcile`). Returns false for an unknown worker.
    pub fn corrupt_free(&self, worker_id: &str, free: Resources) -> bool {
        let mut state = self.lock();
        match state.workers.get_mut(worker_id) {
            Some(e) => {
                e.worker.free = free;
                true
            }
            None => false,
        }
    }
}
