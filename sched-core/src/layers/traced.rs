//! [`Traced`]: one `tracing` span per repository operation, around any backend.
//!
//! The round trips of one call are counted in a task-local that
//! [`BackendCounters::round_trips`](crate::BackendCounters::round_trips) also bumps, so every
//! backend that counts its round trips (all of this workspace's do) reports them per call with
//! no tracing code of its own.

use crate::watch::Wakeups;
use crate::{
    AuditMode, AuditReport, CapacityReservation, CommitMode, Heartbeat, LeaseRenewal, LeaseSweep,
    ReleaseOutcome, RepoError, RepositoryLayer, ReservationRecord, Worker, WorkerRelease,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use async_trait::async_trait;
use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use tracing::field::Empty;
use tracing::Instrument;

tokio::task_local! {
    /// Round trips of the innermost traced call running on this task.
    static ROUND_TRIPS: Cell<u64>;
}

/// Adds `n` to the round trips of the traced call running on this task, if any.
pub(crate) fn count_round_trips(n: u64) {
    let _ = ROUND_TRIPS.try_with(|c| c.set(c.get().saturating_add(n)));
}

/// Wraps a repository so that every operation runs in an `INFO` span named `sched.repo` with
/// the fields:
///
/// | field | meaning |
/// |---|---|
/// | `backend` | [`WorkerRepository::backend_name`] |
/// | `op` | the method (`reserve_batch`, `release_batch`, ...) |
/// | `workers` | workers the call touched: the worker parts of a reserve, the distinct holders a release freed, the workers a list returned, 1 for a per-worker call |
/// | `containers` | containers in the call (reserve, release, look-up) |
/// | `round_trips` | physical round trips the backend made for this call |
/// | `error` | [`RepoError::kind`] when the call failed |
///
/// Round trips are counted per task: a backend that sends requests from other tasks reports
/// only those made on the caller's. The [`Scheduler`](crate::Scheduler) wraps its repository in
/// this layer, so every call it makes is traced; wrap a repository yourself to trace direct
/// calls as well. Without a subscriber the cost is one disabled-callsite check per call.
#[derive(Debug, Clone, Default)]
pub struct Traced<R> {
    inner: R,
}

impl<R> Traced<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Traced { inner }
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

/// What a call's answer adds to its span.
trait Touched {
    /// Workers the answer shows touched, when the request did not say.
    fn workers(&self) -> Option<usize> {
        None
    }
}

impl<T> Touched for Option<T> {}
impl Touched for bool {}
impl Touched for Worker {}
impl Touched for AuditReport {}
impl Touched for LeaseSweep {}
impl Touched for Heartbeat {}
impl Touched for WorkerRelease {}
impl Touched for Wakeups {}
impl Touched for Vec<WorkerResult> {}
impl Touched for Vec<LeaseRenewal> {}
impl Touched for Vec<ReservationRecord> {}
impl Touched for Vec<Option<ReservationRecord>> {}

impl Touched for Vec<Worker> {
    fn workers(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl Touched for Vec<ReleaseOutcome> {
    fn workers(&self) -> Option<usize> {
        let holders: HashSet<&str> = (self.iter())
            .filter_map(|o| o.released.as_ref().map(|r| r.worker_id.as_str()))
            .collect();
        Some(holders.len())
    }
}

impl<R: WorkerRepository> Traced<R> {
    /// Runs `call` in its span; `workers` / `containers` are what the request says (`None`:
    /// taken from the answer, or left empty).
    async fn traced<T: Touched>(
        &self,
        op: &'static str,
        workers: Option<usize>,
        containers: Option<usize>,
        call: impl Future<Output = Result<T, RepoError>>,
    ) -> Result<T, RepoError> {
        let span = tracing::info_span!(
            "sched.repo",
            backend = self.inner.backend_name(),
            op,
            workers = Empty,
            containers = Empty,
            round_trips = Empty,
            error = Empty,
        );
        if let Some(n) = workers {
            span.record("workers", n);
        }
        if let Some(n) = containers {
            span.record("containers", n);
        }
        let counted = async {
            let out = call.await;
            (out, ROUND_TRIPS.with(Cell::get))
        };
        let (out, round_trips) = ROUND_TRIPS
            .scope(Cell::new(0), counted)
            .instrument(span.clone())
            .await;
        span.record("round_trips", round_trips);
        match &out {
            Ok(answer) => {
                if let (None, Some(n)) = (workers, answer.workers()) {
                    span.record("workers", n);
                }
            }
            Err(e) => {
                span.record("error", e.kind());
            }
        }
        out
    }
}

#[async_trait]
impl<R: WorkerRepository> RepositoryLayer for Traced<R> {
    type Inner = R;

    fn inner(&self) -> &R {
        &self.inner
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        let call = self.inner.register_worker(spec);
        self.traced("register_worker", Some(1), None, call).await
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        let call = self.inner.remove_worker(worker_id);
        self.traced("remove_worker", Some(1), None, call).await
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        let call = self.inner.get_worker(worker_id);
        self.traced("get_worker", Some(1), None, call).await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        let call = self.inner.list_workers(pool);
        self.traced("list_workers", None, None, call).await
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        let containers = batch.iter().map(|cr| cr.reservations.len()).sum();
        let call = self.inner.reserve_batch(batch, mode);
        (self.traced("reserve_batch", Some(batch.len()), Some(containers), call)).await
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let call = self.inner.release_batch(container_ids);
        (self.traced("release_batch", None, Some(container_ids.len()), call)).await
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        let call = self.inner.find_reservations(container_ids);
        (self.traced("find_reservations", None, Some(container_ids.len()), call)).await
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        let call = self.inner.list_reservations(worker_id);
        self.traced("list_reservations", Some(1), None, call).await
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        let call = self.inner.audit_worker(worker_id, mode);
        self.traced("audit_worker", Some(1), None, call).await
    }

    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        let call = self.inner.renew_leases(worker_id, container_ids, lease_ms);
        let n = Some(container_ids.len());
        self.traced("renew_leases", Some(1), n, call).await
    }

    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        let call = self.inner.expire_leases(worker_id);
        self.traced("expire_leases", Some(1), None, call).await
    }

    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        let call = self.inner.heartbeat(worker_id);
        self.traced("heartbeat", Some(1), None, call).await
    }

    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        let call = self.inner.set_worker_status(worker_id, status);
        self.traced("set_worker_status", Some(1), None, call).await
    }

    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        let call = self.inner.release_worker(worker_id);
        self.traced("release_worker", Some(1), None, call).await
    }

    async fn reservation_wakeups(&self, worker_id: &str) -> Result<Wakeups, RepoError> {
        let call = self.inner.reservation_wakeups(worker_id);
        self.traced("reservation_wakeups", Some(1), None, call)
            .await
    }
}
