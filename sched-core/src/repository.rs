//! The [`WorkerRepository`] trait: the one interface every backend implements.

use crate::{
    AuditReport, CapacityReservation, CommitMode, ReleaseOutcome, RepoError, ReservationRecord,
    Worker, WorkerResult, WorkerSpec,
};
use async_trait::async_trait;
use std::sync::Arc;

/// A shared store of workers, their free capacity and their reservation ledgers.
///
/// Object-safe, so it can be used as `Arc<dyn WorkerRepository>`. Every backend passes the
/// shared conformance suite in `sched-tests`, which is the executable form of these rules:
///
/// * **Per-worker atomicity.** Each worker's part of [`reserve_batch`](Self::reserve_batch) or
///   [`release_batch`](Self::release_batch) is applied atomically; one worker's rejection never
///   blocks another's commit. No locks are held between calls.
/// * **Ledger is truth.** For every worker, `free + Σ ledger = total` at all times.
/// * **One holder.** A container is held on at most one worker. Re-reserving it on the same
///   worker is an idempotent success with no second charge; on another worker it is rejected.
/// * **Versions.** `resource_version` increases with every committed change and never repeats for
///   a worker id, even across removal and re-registration.
/// * **Bad input** is rejected with [`RepoError::InvalidInput`] before anything changes
///   (see [`validate`](crate::validate)).
#[async_trait]
pub trait WorkerRepository: Send + Sync {
    /// Short backend name, for reports (`memory`, `redis`, `postgres`, ...).
    fn backend_name(&self) -> &str;

    /// Registers a worker, or updates an existing one. Re-registration keeps the capacity in use
    /// (`free = new total − reserved`) and fails with [`RepoError::TotalBelowReserved`] when the
    /// new total is below what is reserved. Either way a successful call bumps the version.
    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError>;

    /// Removes a worker with its ledger. Its containers are no longer held anywhere, so a late
    /// release of one of them is a no-op. Returns whether the worker existed.
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError>;

    /// Reads one worker, consistently.
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError>;

    /// Reads all workers, or those of one pool, each consistently, ordered by id.
    /// Never leaves out a worker because it is being written.
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError>;

    /// Commits reservations, one atomic section per worker, and returns one result per
    /// [`CapacityReservation`], in input order.
    ///
    /// Per worker, in this order: unknown worker → [`Rejection::UnknownWorker`](crate::Rejection);
    /// `expected_version` differs → `VersionConflict`; not available → `WorkerUnavailable`; then
    /// each reservation in order: held here → accepted with no charge; held elsewhere →
    /// `AlreadyReserved`; GPU type differs → `GpuTypeMismatch`; does not fit the running free
    /// capacity → `InsufficientCapacity`. With [`CommitMode::AllOrNothing`] the first rejection
    /// rejects the worker's whole part; with [`CommitMode::Partial`] the prefix before it
    /// commits (if that prefix is empty, the worker is rejected).
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError>;

    /// Releases containers by id and returns one outcome per id, in input order. Idempotent:
    /// a container not held returns nothing, so capacity comes back at most once and free never
    /// exceeds total.
    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError>;

    /// Where a container is held, if anywhere.
    async fn find_reservation(
        &self,
        container_id: &str,
    ) -> Result<Option<ReservationRecord>, RepoError>;

    /// Where each of several containers is held, in input order: one round trip where the backend
    /// can. The default calls [`find_reservation`](Self::find_reservation) for each, concurrently.
    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        crate::validate::validate_release(container_ids)?;
        futures::future::join_all(container_ids.iter().map(|c| self.find_reservation(c)))
            .await
            .into_iter()
            .collect()
    }

    /// A worker's ledger, ordered by container id. This is also the worker's inbox: a committed
    /// reservation is the hand-off, so a scheduler that dies after its commit loses nothing.
    async fn list_reservations(&self, worker_id: &str)
        -> Result<Vec<ReservationRecord>, RepoError>;

    /// Recomputes free capacity from the ledger and reports the drift (zero when consistent).
    async fn audit(&self, worker_id: &str) -> Result<AuditReport, RepoError>;

    /// Repairs drift: sets `free = total − Σ ledger` (bumping the version if it changed) and
    /// returns the audit taken before the repair.
    async fn reconcile(&self, worker_id: &str) -> Result<AuditReport, RepoError>;
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: WorkerRepository + ?Sized> WorkerRepository for $ty {
            fn backend_name(&self) -> &str { (**self).backend_name() }
            async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
                (**self).register_worker(spec).await
            }
            async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
                (**self).remove_worker(worker_id).await
            }
            async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
                (**self).get_worker(worker_id).await
            }
            async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
                (**self).list_workers(pool).await
            }
            async fn reserve_batch(
                &self,
                batch: &[CapacityReservation],
                mode: CommitMode,
            ) -> Result<Vec<WorkerResult>, RepoError> {
                (**self).reserve_batch(batch, mode).await
            }
            async fn release_batch(
                &self,
                container_ids: &[String],
            ) -> Result<Vec<ReleaseOutcome>, RepoError> {
                (**self).release_batch(container_ids).await
            }
            async fn find_reservation(
                &self,
                container_id: &str,
            ) -> Result<Option<ReservationRecord>, RepoError> {
                (**self).find_reservation(container_id).await
            }
            async fn find_reservations(
                &self,
                container_ids: &[String],
            ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
                (**self).find_reservations(container_ids).await
            }
            async fn list_reservations(
                &self,
                worker_id: &str,
            ) -> Result<Vec<ReservationRecord>, RepoError> {
                (**self).list_reservations(worker_id).await
            }
            async fn audit(&self, worker_id: &str) -> Result<AuditReport, RepoError> {
                (**self).audit(worker_id).await
            }
            async fn reconcile(&self, worker_id: &str) -> Result<AuditReport, RepoError> {
                (**self).reconcile(worker_id).await
            }
        }
    )*};
}

forward!(Arc<T>, Box<T>, &T);
