//! [`WorkerRepository`], the one interface every backend implements, and [`RepositoryLayer`],
//! the way to wrap one (opendal's `LayeredAccess`): a layer names its inner repository and
//! overrides only what it intercepts; everything else forwards.

use crate::watch::Wakeups;
use crate::{
    AuditReport, CapacityReservation, CommitMode, Heartbeat, LeaseRenewal, LeaseSweep,
    ReleaseOutcome, RepoError, ReservationRecord, Worker, WorkerRelease, WorkerResult, WorkerSpec,
    WorkerStatus,
};
use async_trait::async_trait;
use std::sync::Arc;

/// What [`WorkerRepository::audit_worker`] does after measuring a worker's drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditMode {
    /// Only report; change nothing.
    Check,
    /// Report, then set `free = total − Σ ledger` (bumping the version if it changed).
    Repair,
}

/// A shared store of workers, their free capacity and their reservation ledgers.
///
/// Object-safe, so it can be used as `Arc<dyn WorkerRepository>`. Nine methods are required;
/// the rest are conveniences with defaults built on them (as in `object_store`), and the
/// lifecycle calls (leases, heartbeats, status, bulk release, wake-ups), which default to
/// [`RepoError::Unsupported`] so a backend written before them still compiles. Every backend
/// passes the shared conformance suite in `sched-tests`, which is the executable form of these
/// rules:
///
/// * **Per-worker atomicity.** Each worker's part of [`reserve_batch`](Self::reserve_batch) or
///   [`release_batch`](Self::release_batch) is applied atomically; one worker's rejection never
///   blocks another's commit. No locks are held between calls.
/// * **Ledger is truth.** For every worker, `free + Σ ledger = total` at all times.
/// * **One holder.** A container is held on at most one worker. Reserving a held container again
///   is rejected with `AlreadyReserved` naming the holder, on another worker and on the same
///   one alike; nothing is charged. (The [`Scheduler`](crate::Scheduler) turns that into a
///   lookup: same resources → `Ok` with `already_held`, other resources → `HeldDifferently`.)
/// * **Versions.** `resource_version` increases with every committed change and never repeats for
///   a worker id, even across removal and re-registration.
/// * **Bad input** is rejected with [`RepoError::InvalidInput`] before anything changes
///   (see [`validate`](crate::validate)).
///
/// The per-worker rules themselves are written once, as pure functions, in [`rules`](crate::rules).
#[async_trait]
pub trait WorkerRepository: Send + Sync {
    /// Short backend name, for reports (`memory`, `redis`, `postgres`, ...).
    fn backend_name(&self) -> &str {
        "custom"
    }

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
    /// each reservation in order: held anywhere (this worker included) → `AlreadyReserved`
    /// naming the holder; GPU type differs → `GpuTypeMismatch`; does not fit the running free
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

    /// Where each of several containers is held, in input order, in one round trip where the
    /// backend can.
    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError>;

    /// A worker's ledger, ordered by container id. This is also the worker's inbox: a committed
    /// reservation is the hand-off, so a scheduler that dies after its commit loses nothing.
    async fn list_reservations(&self, worker_id: &str)
        -> Result<Vec<ReservationRecord>, RepoError>;

    /// Recomputes free capacity from the ledger and reports the drift (zero when consistent),
    /// taken before any repair. With [`AuditMode::Repair`] it then sets
    /// `free = total − Σ ledger`, bumping the version if that changed anything.
    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError>;

    /// Renews the leases of containers held on one worker to `now + lease_ms` (the store's
    /// clock), in one atomic section and one round trip; one answer per id, in input order
    /// ([`RenewOutcome`](crate::RenewOutcome)). A lease the sweep would take now
    /// ([`rules::expiry`](crate::rules::expiry)) is `Expired` and stays expired: a renewal racing
    /// the sweep wins fully or loses fully. Changes no capacity and no version.
    /// Unknown worker → [`RepoError::UnknownWorker`].
    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        let _ = (worker_id, container_ids, lease_ms);
        Err(RepoError::Unsupported {
            operation: "renew_leases",
        })
    }

    /// The expiry sweep of one worker, atomically: every reservation whose lease deadline is at
    /// or before the store's `now` — and, when the worker is stale with
    /// [`StalePolicy::Release`](crate::StalePolicy::Release), every reservation — is removed and
    /// its capacity returned; the version goes up once if anything expired. Reports what went.
    /// Idempotent. Unknown worker → [`RepoError::UnknownWorker`]. See
    /// [`lifecycle::sweep_all`](crate::lifecycle::sweep_all) for every worker.
    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        let _ = worker_id;
        Err(RepoError::Unsupported {
            operation: "expire_leases",
        })
    }

    /// Records that the worker is alive, at the store's clock. No capacity or version change.
    /// Unknown worker → [`RepoError::UnknownWorker`].
    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        let _ = worker_id;
        Err(RepoError::Unsupported {
            operation: "heartbeat",
        })
    }

    /// Sets a worker's status in one atomic call, keeping its capacity and ledger, and bumps the
    /// version (even when the status is unchanged). Returns the worker after.
    /// Unknown worker → [`RepoError::UnknownWorker`].
    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        let _ = (worker_id, status);
        Err(RepoError::Unsupported {
            operation: "set_worker_status",
        })
    }

    /// Releases every reservation of a worker atomically (decommission); the worker stays
    /// registered. Idempotent. Unknown worker → [`RepoError::UnknownWorker`].
    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        let _ = worker_id;
        Err(RepoError::Unsupported {
            operation: "release_worker",
        })
    }

    /// Wake-ups for a worker's new reservations: the stream yields (at least) once after each
    /// committed reservation on `worker_id` from the moment it is returned. It may also yield
    /// spuriously, may miss wake-ups when the connection drops, and may end; the ledger stays the
    /// truth, so use [`watch_reservations`](crate::watch::watch_reservations), which re-reads it.
    /// The default never yields (the watch then falls back to its periodic re-read).
    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        let _ = worker_id;
        Ok(crate::watch::no_wakeups())
    }

    /// Where a container is held, if anywhere: [`find_reservations`](Self::find_reservations)
    /// of one id.
    async fn find_reservation(
        &self,
        container_id: &str,
    ) -> Result<Option<ReservationRecord>, RepoError> {
        let ids = [container_id.to_owned()];
        Ok(self.find_reservations(&ids).await?.pop().flatten())
    }

    /// [`audit_worker`](Self::audit_worker) with [`AuditMode::Check`].
    async fn audit(&self, worker_id: &str) -> Result<AuditReport, RepoError> {
        self.audit_worker(worker_id, AuditMode::Check).await
    }

    /// [`audit_worker`](Self::audit_worker) with [`AuditMode::Repair`]: repairs drift and returns
    /// the audit taken before the repair.
    async fn reconcile(&self, worker_id: &str) -> Result<AuditReport, RepoError> {
        self.audit_worker(worker_id, AuditMode::Repair).await
    }
}

/// A wrapper around another repository, in the style of opendal's `LayeredAccess`.
///
/// Implement [`inner`](Self::inner) and only the methods the layer intercepts; every other method
/// forwards to the inner repository. Every `RepositoryLayer` is a [`WorkerRepository`]. The
/// conveniences ([`find_reservation`](WorkerRepository::find_reservation),
/// [`audit`](WorkerRepository::audit), [`reconcile`](WorkerRepository::reconcile)) go through
/// `find_reservations` and `audit_worker`, so a layer that intercepts those sees every lookup and
/// every audit.
///
/// The methods share their names with [`WorkerRepository`]'s; import this trait only where a
/// layer is implemented, and call the inner repository through its own trait there.
///
/// ```
/// use sched_core::{RepositoryLayer, WorkerRepository, RepoError, CapacityReservation, CommitMode, WorkerResult};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts reserve calls; forwards everything else.
/// struct CountReserves<R> { inner: R, calls: AtomicU64 }
///
/// #[async_trait::async_trait]
/// impl<R: WorkerRepository> RepositoryLayer for CountReserves<R> {
///     type Inner = R;
///     fn inner(&self) -> &R { &self.inner }
///     async fn reserve_batch(&self, batch: &[CapacityReservation], mode: CommitMode)
///         -> Result<Vec<WorkerResult>, RepoError> {
///         self.calls.fetch_add(1, Ordering::Relaxed);
///         self.inner.reserve_batch(batch, mode).await
///     }
/// }
/// ```
#[async_trait]
pub trait RepositoryLayer: Send + Sync {
    /// The wrapped repository.
    type Inner: WorkerRepository + ?Sized;

    /// The wrapped repository.
    fn inner(&self) -> &Self::Inner;

    /// Forwards [`WorkerRepository::backend_name`].
    fn backend_name(&self) -> &str {
        self.inner().backend_name()
    }
    /// Forwards [`WorkerRepository::register_worker`].
    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        self.inner().register_worker(spec).await
    }
    /// Forwards [`WorkerRepository::remove_worker`].
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        self.inner().remove_worker(worker_id).await
    }
    /// Forwards [`WorkerRepository::get_worker`].
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        self.inner().get_worker(worker_id).await
    }
    /// Forwards [`WorkerRepository::list_workers`].
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        self.inner().list_workers(pool).await
    }
    /// Forwards [`WorkerRepository::reserve_batch`].
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        self.inner().reserve_batch(batch, mode).await
    }
    /// Forwards [`WorkerRepository::release_batch`].
    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        self.inner().release_batch(container_ids).await
    }
    /// Forwards [`WorkerRepository::find_reservations`].
    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        self.inner().find_reservations(container_ids).await
    }
    /// Forwards [`WorkerRepository::list_reservations`].
    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        self.inner().list_reservations(worker_id).await
    }
    /// Forwards [`WorkerRepository::audit_worker`].
    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        self.inner().audit_worker(worker_id, mode).await
    }
    /// Forwards [`WorkerRepository::renew_leases`].
    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        self.inner()
            .renew_leases(worker_id, container_ids, lease_ms)
            .await
    }
    /// Forwards [`WorkerRepository::expire_leases`].
    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        self.inner().expire_leases(worker_id).await
    }
    /// Forwards [`WorkerRepository::heartbeat`].
    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        self.inner().heartbeat(worker_id).await
    }
    /// Forwards [`WorkerRepository::set_worker_status`].
    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        self.inner().set_worker_status(worker_id, status).await
    }
    /// Forwards [`WorkerRepository::release_worker`].
    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        self.inner().release_worker(worker_id).await
    }
    /// Forwards [`WorkerRepository::reservation_wakeups`].
    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        self.inner().reservation_wakeups(worker_id).await
    }
}

#[async_trait]
impl<L: RepositoryLayer> WorkerRepository for L {
    fn backend_name(&self) -> &str {
        RepositoryLayer::backend_name(self)
    }
    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        RepositoryLayer::register_worker(self, spec).await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        RepositoryLayer::remove_worker(self, worker_id).await
    }
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        RepositoryLayer::get_worker(self, worker_id).await
    }
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        RepositoryLayer::list_workers(self, pool).await
    }
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        RepositoryLayer::reserve_batch(self, batch, mode).await
    }
    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        RepositoryLayer::release_batch(self, container_ids).await
    }
    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        RepositoryLayer::find_reservations(self, container_ids).await
    }
    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        RepositoryLayer::list_reservations(self, worker_id).await
    }
    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        RepositoryLayer::audit_worker(self, worker_id, mode).await
    }
    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        RepositoryLayer::renew_leases(self, worker_id, container_ids, lease_ms).await
    }
    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        RepositoryLayer::expire_leases(self, worker_id).await
    }
    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        RepositoryLayer::heartbeat(self, worker_id).await
    }
    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        RepositoryLayer::set_worker_status(self, worker_id, status).await
    }
    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        RepositoryLayer::release_worker(self, worker_id).await
    }
    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        RepositoryLayer::reservation_wakeups(self, worker_id).await
    }
}

/// Smart pointers and references are layers that intercept nothing.
impl<T: WorkerRepository + ?Sized> RepositoryLayer for Arc<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}

/// Smart pointers and references are layers that intercept nothing.
impl<T: WorkerRepository + ?Sized> RepositoryLayer for Box<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}

/// Smart pointers and references are layers that intercept nothing.
impl<T: WorkerRepository + ?Sized> RepositoryLayer for &T {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}
