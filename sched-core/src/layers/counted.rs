//! [`Counted`]: counts calls and per-worker atomic sections around any repository.

use crate::{
    BackendCounters, CapacityReservation, CommitMode, ReleaseOutcome, RepoError, RepositoryLayer,
    ReservationRecord, Worker, WorkerRepository, WorkerResult,
};
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;

/// Counts the traffic of the repository it wraps into a [`BackendCounters`]: `reserve_batch`
/// calls and their worker parts (one atomic section each), `release_batch` calls and the distinct
/// workers they released from, reads (`get_worker`, `list_workers`) and look-ups
/// (`find_reservations`). A call is counted when it is made, whatever its outcome.
///
/// Pass the backend's own counters to [`with_counters`](Self::with_counters) to see its round
/// trips in the same [`CounterSnapshot`](crate::CounterSnapshot).
#[derive(Debug, Clone)]
pub struct Counted<R> {
    inner: R,
    counters: Arc<BackendCounters>,
}

impl<R> Counted<R> {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: R) -> Self {
        Self::with_counters(inner, Arc::default())
    }

    /// Wraps `inner`, counting into `counters` (typically the backend's own, for round trips).
    pub fn with_counters(inner: R, counters: Arc<BackendCounters>) -> Self {
        Counted { inner, counters }
    }

    /// The counters this layer writes to.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// The wrapped repository.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the layer.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[async_trait]
impl<R: WorkerRepository> RepositoryLayer for Counted<R> {
    type Inner = R;

    fn inner(&self) -> &R {
        &self.inner
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        self.counters.read_call(self.inner.backend_name());
        self.inner.get_worker(worker_id).await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        self.counters.read_call(self.inner.backend_name());
        self.inner.list_workers(pool).await
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        self.counters
            .reserve_call(self.inner.backend_name(), batch.len() as u64);
        self.inner.reserve_batch(batch, mode).await
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let backend = self.inner.backend_name();
        self.counters.release_call(backend);
        let out = self.inner.release_batch(container_ids).await?;
        let workers: HashSet<&str> = out
            .iter()
            .filter_map(|o| o.released.as_ref().map(|r| r.worker_id.as_str()))
            .collect();
        self.counters.sections(backend, workers.len() as u64);
        Ok(out)
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        self.counters.lookup_call(self.inner.backend_name());
        self.inner.find_reservations(container_ids).await
    }
}
