//! [`MemoryRepository`]: the store wrapped in sched-core's layers, and its builder.

use crate::{Clock, MemoryStore};
use sched_core::layers::{Counted, FaultPlan, Faulty};
use sched_core::{BackendCounters, Resources, WorkerRepository, WorkerSpec};
use std::sync::Arc;

/// An in-memory [`WorkerRepository`]. Cheap to clone: clones share the same store, fault plan
/// and counters.
///
/// It is a [`MemoryStore`] wrapped in sched-core's layers, `Counted<Faulty<MemoryStore>>`: the
/// [`Counted`] layer counts every call as the caller made it (a call failed by an injected
/// fault included), the [`Faulty`] layer plays the network and the server (an injected failure
/// never reaches the store, so it costs no round trip), and the store counts one round trip per
/// call it serves.
#[derive(Debug, Clone)]
pub struct MemoryRepository(Counted<Faulty<MemoryStore>>);

/// Builds a [`MemoryRepository`] seeded with workers.
#[derive(Debug, Default)]
pub struct MemoryRepositoryBuilder {
    specs: Vec<WorkerSpec>,
    clock: Clock,
}

impl MemoryRepositoryBuilder {
    /// Reads time from `clock` (e.g. `Clock::Manual(ManualClock::new(0))` to drive leases and
    /// heartbeats by hand). Default: the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

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
    /// [`register_worker`](WorkerRepository::register_worker) to see the error.
    pub async fn build(self) -> MemoryRepository {
        let repo = MemoryRepository::with_clock(self.clock);
        for spec in &self.specs {
            if let Err(e) = repo.register_worker(spec).await {
                tracing::warn!(worker = %spec.id, error = %e, "skipping invalid worker spec");
            }
        }
        repo
    }
}

impl Default for MemoryRepository {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRepository {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::System)
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let counters = Arc::<BackendCounters>::default();
        let store = MemoryStore::with_counters(Arc::clone(&counters)).with_clock(clock);
        MemoryRepository(Counted::with_counters(Faulty::new(store), counters))
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        self.0.get_ref().get_ref().clock()
    }

    /// A builder to seed workers.
    pub fn builder() -> MemoryRepositoryBuilder {
        MemoryRepositoryBuilder::default()
    }

    /// The fault plan; push faults here to exercise callers' retry paths.
    pub fn faults(&self) -> &FaultPlan {
        self.0.get_ref().faults()
    }

    /// Traffic counters: round trips (one per call that reaches the store), and calls, reads,
    /// look-ups and atomic sections as [`Counted`] counts them.
    pub fn counters(&self) -> Arc<BackendCounters> {
        self.0.counters()
    }

    /// Test hook (feature `testing`): overwrites a worker's stored free capacity without touching
    /// the ledger, to simulate drift (for testing `audit` and `reconcile`). Returns false for an
    /// unknown worker.
    #[cfg(any(test, feature = "testing"))]
    pub fn corrupt_free(&self, worker_id: &str, free: Resources) -> bool {
        self.0.get_ref().get_ref().corrupt_free(worker_id, free)
    }
}

impl sched_core::RepositoryLayer for MemoryRepository {
    type Inner = Counted<Faulty<MemoryStore>>;

    fn inner(&self) -> &Self::Inner {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::MemoryRepository;
    use crate::Fault;
    use sched_core::{
        CapacityReservation, CommitMode, CounterSnapshot, ResourceReservation, Resources,
        WorkerRepository,
    };

    fn one(c: &str) -> [CapacityReservation; 1] {
        [CapacityReservation::new(
            "worker-0",
            vec![ResourceReservation::new(c, Resources::cpu_mem(1, 1))],
        )]
    }

    async fn counted(repo: &MemoryRepository, fault: Fault) -> CounterSnapshot {
        let before = repo.counters().snapshot();
        repo.faults().push(fault, 1);
        let _ = repo.reserve_batch(&one("c"), CommitMode::Partial).await;
        repo.counters().snapshot().since(&before)
    }

    /// Every call the caller makes is counted; only what reaches the store is a round trip.
    #[tokio::test]
    async fn faults_count_as_calls_and_only_served_calls_as_round_trips() {
        let repo = MemoryRepository::builder()
            .cpu_workers(1, Resources::cpu_mem(10, 10))
            .build()
            .await;
        let d = counted(&repo, Fault::Fail).await;
        assert_eq!(
            (d.reserve_calls, d.atomic_sections, d.round_trips),
            (1, 1, 0)
        );
        // A forced conflict reads the versions in one round trip, without a read call.
        let d = counted(&repo, Fault::Conflict).await;
        assert_eq!((d.reserve_calls, d.read_calls, d.round_trips), (1, 0, 1));
        let d = counted(&repo, Fault::LoseReply).await;
        assert_eq!((d.reserve_calls, d.round_trips), (1, 1));
        assert!(repo.find_reservation("c").await.unwrap().is_some());
        assert_eq!(repo.faults().fired(), 3);
    }

    #[tokio::test]
    async fn corrupt_free_reaches_the_shared_store() {
        let repo = MemoryRepository::builder()
            .cpu_workers(1, Resources::cpu_mem(10, 10))
            .build()
            .await;
        assert!(repo.clone().corrupt_free("worker-0", Resources::ZERO));
        assert_eq!(
            repo.audit("worker-0").await.unwrap().drift.cpu_millicores,
            -10
        );
        assert!(!repo.corrupt_free("ghost", Resources::ZERO));
    }
}
