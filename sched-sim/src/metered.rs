//! [`Metered`] and [`MeteredLocks`]: wrap any backend to count every call as one round trip and,
//! with `--rtt-ms`, to add that much latency per call (half before the call reaches the store,
//! half after it returns, like a request and its reply on a network).
//!
//! Every strategy talks to the backend only through these wrappers, so round trips, reads,
//! `reserve_batch` calls, per-worker atomic sections and lock calls are counted the same way
//! on every backend. The audit bypasses them.
//!
//! [`Metered`] is a [`RepositoryLayer`]: since every call pays the latency, it intercepts each
//! of the nine required methods and the lifecycle calls (renew, sweep, heartbeat, status, bulk
//! release; counted as "other"), each in one line through one counting-and-delaying helper
//! (`backend_name`, the wake-ups and the conveniences forward). It keeps its own [`CallCounters`] rather than
//! reusing [`sched_core::layers::Counted`], whose figures mean something else: `Counted` adds
//! the workers a `release_batch` released from to the atomic sections and does not count
//! register/remove/ledger/audit calls, while [`Calls`] counts only the worker parts sent in
//! `reserve_batch` as sections and every call as one round trip.

use crate::locks::{LockToken, WorkerLocks};
use async_trait::async_trait;
use sched_core::{
    AuditMode, AuditReport, CapacityReservation, CommitMode, Heartbeat, LeaseRenewal, LeaseSweep,
    ReleaseOutcome, RepoError, RepositoryLayer, ReservationRecord, Worker, WorkerRelease,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Call counters shared by a [`Metered`] repository and its [`MeteredLocks`].
#[derive(Debug, Default)]
pub struct CallCounters {
    round_trips: AtomicU64,
    reads: AtomicU64,
    reserve_calls: AtomicU64,
    atomic_sections: AtomicU64,
    release_calls: AtomicU64,
    lock_calls: AtomicU64,
    unlock_calls: AtomicU64,
    other_calls: AtomicU64,
}

/// A copy of [`CallCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// All calls (each is one round trip to the store).
    pub round_trips: u64,
    /// `get_worker` and `list_workers` calls.
    pub reads: u64,
    /// `reserve_batch` calls.
    pub reserve_calls: u64,
    /// Worker parts sent in `reserve_batch` calls (one atomic section each).
    pub atomic_sections: u64,
    /// `release_batch` calls.
    pub release_calls: u64,
    /// `try_lock` calls (taken or not).
    pub lock_calls: u64,
    /// `unlock` calls.
    pub unlock_calls: u64,
    /// Any other call (register, find, audit, ...).
    pub other_calls: u64,
}

impl Calls {
    /// `self - earlier`, per field (saturating).
    pub fn since(&self, e: &Calls) -> Calls {
        Calls {
            round_trips: self.round_trips.saturating_sub(e.round_trips),
            reads: self.reads.saturating_sub(e.reads),
            reserve_calls: self.reserve_calls.saturating_sub(e.reserve_calls),
            atomic_sections: self.atomic_sections.saturating_sub(e.atomic_sections),
            release_calls: self.release_calls.saturating_sub(e.release_calls),
            lock_calls: self.lock_calls.saturating_sub(e.lock_calls),
            unlock_calls: self.unlock_calls.saturating_sub(e.unlock_calls),
            other_calls: self.other_calls.saturating_sub(e.other_calls),
        }
    }

    /// Per-field sum.
    pub fn plus(&self, o: &Calls) -> Calls {
        Calls {
            round_trips: self.round_trips + o.round_trips,
            reads: self.reads + o.reads,
            reserve_calls: self.reserve_calls + o.reserve_calls,
            atomic_sections: self.atomic_sections + o.atomic_sections,
            release_calls: self.release_calls + o.release_calls,
            lock_calls: self.lock_calls + o.lock_calls,
            unlock_calls: self.unlock_calls + o.unlock_calls,
            other_calls: self.other_calls + o.other_calls,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Read,
    Reserve(u64),
    Release,
    Lock,
    Unlock,
    Other,
}

impl CallCounters {
    fn count(&self, kind: Kind) {
        let r = Ordering::Relaxed;
        self.round_trips.fetch_add(1, r);
        match kind {
            Kind::Read => self.reads.fetch_add(1, r),
            Kind::Reserve(parts) => {
                self.atomic_sections.fetch_add(parts, r);
                self.reserve_calls.fetch_add(1, r)
            }
            Kind::Release => self.release_calls.fetch_add(1, r),
            Kind::Lock => self.lock_calls.fetch_add(1, r),
            Kind::Unlock => self.unlock_calls.fetch_add(1, r),
            Kind::Other => self.other_calls.fetch_add(1, r),
        };
    }

    /// The current values.
    pub fn snapshot(&self) -> Calls {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Calls {
            round_trips: l(&self.round_trips),
            reads: l(&self.reads),
            reserve_calls: l(&self.reserve_calls),
            atomic_sections: l(&self.atomic_sections),
            release_calls: l(&self.release_calls),
            lock_calls: l(&self.lock_calls),
            unlock_calls: l(&self.unlock_calls),
            other_calls: l(&self.other_calls),
        }
    }
}

/// Injected latency: `rtt` per call, split half before and half after the call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    half: Duration,
}

impl Latency {
    /// `rtt` per round trip (zero for none).
    pub fn new(rtt: Duration) -> Self {
        Latency { half: rtt / 2 }
    }

    /// The full round-trip time added.
    pub fn rtt(&self) -> Duration {
        self.half * 2
    }

    /// Runs `f` between the two halves of the round trip. Deadlines are taken from the start of
    /// the call, so the timer's rounding is paid once per call rather than once per half.
    pub async fn around<T, F: Future<Output = T>>(&self, f: F) -> T {
        if self.half.is_zero() {
            return f.await;
        }
        let t0 = tokio::time::Instant::now();
        tokio::time::sleep_until(t0 + self.half).await;
        let t1 = tokio::time::Instant::now();
        let out = f.await;
        let spent = t1.elapsed();
        tokio::time::sleep_until(t0 + self.half * 2 + spent).await;
        out
    }
}

/// Counts a call and runs it between the two halves of its round trip: what [`Metered`] and
/// [`MeteredLocks`] do to every call.
#[derive(Debug, Clone)]
struct Meter {
    latency: Latency,
    counters: Arc<CallCounters>,
}

impl Meter {
    async fn call<T>(&self, kind: Kind, f: impl Future<Output = T>) -> T {
        self.counters.count(kind);
        self.latency.around(f).await
    }
}

/// A [`RepositoryLayer`] that counts and delays every call of the repository it wraps.
#[derive(Debug, Clone)]
pub struct Metered<R> {
    inner: R,
    meter: Meter,
}

impl<R> Metered<R> {
    /// Wraps `inner` with `rtt` per call and fresh counters.
    pub fn new(inner: R, rtt: Duration) -> Self {
        Self::with_counters(inner, rtt, Arc::default())
    }

    /// Wraps `inner` sharing `counters` (for instance with a [`MeteredLocks`]).
    pub fn with_counters(inner: R, rtt: Duration, counters: Arc<CallCounters>) -> Self {
        Metered {
            inner,
            meter: Meter {
                latency: Latency::new(rtt),
                counters,
            },
        }
    }

    /// The counters.
    pub fn counters(&self) -> Arc<CallCounters> {
        Arc::clone(&self.meter.counters)
    }

    /// The wrapped repository.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

#[async_trait]
impl<R: WorkerRepository> RepositoryLayer for Metered<R> {
    type Inner = R;

    fn inner(&self) -> &R {
        &self.inner
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.register_worker(spec))
            .await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.remove_worker(worker_id))
            .await
    }
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        self.meter
            .call(Kind::Read, self.inner.get_worker(worker_id))
            .await
    }
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        self.meter
            .call(Kind::Read, self.inner.list_workers(pool))
            .await
    }
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        self.meter
            .call(
                Kind::Reserve(batch.len() as u64),
                self.inner.reserve_batch(batch, mode),
            )
            .await
    }
    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        self.meter
            .call(Kind::Release, self.inner.release_batch(container_ids))
            .await
    }
    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.find_reservations(container_ids))
            .await
    }
    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.list_reservations(worker_id))
            .await
    }
    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.audit_worker(worker_id, mode))
            .await
    }
    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        let f = self.inner.renew_leases(worker_id, container_ids, lease_ms);
        self.meter.call(Kind::Other, f).await
    }
    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.expire_leases(worker_id))
            .await
    }
    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.heartbeat(worker_id))
            .await
    }
    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.set_worker_status(worker_id, status))
            .await
    }
    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        self.meter
            .call(Kind::Other, self.inner.release_worker(worker_id))
            .await
    }
}

/// A [`WorkerLocks`] that counts and delays every call of the one it wraps, into the same
/// counters as a [`Metered`] repository.
#[derive(Clone)]
pub struct MeteredLocks {
    inner: Arc<dyn WorkerLocks>,
    meter: Meter,
}

impl std::fmt::Debug for MeteredLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredLocks")
            .field("latency", &self.meter.latency)
            .finish_non_exhaustive()
    }
}

impl MeteredLocks {
    /// Wraps `inner` with `rtt` per call, counting into `counters`.
    pub fn new(inner: Arc<dyn WorkerLocks>, rtt: Duration, counters: Arc<CallCounters>) -> Self {
        MeteredLocks {
            inner,
            meter: Meter {
                latency: Latency::new(rtt),
                counters,
            },
        }
    }
}

#[async_trait]
impl WorkerLocks for MeteredLocks {
    async fn try_lock(
        &self,
        worker_id: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, RepoError> {
        self.meter
            .call(Kind::Lock, self.inner.try_lock(worker_id, ttl))
            .await
    }
    async fn unlock(&self, token: LockToken) -> Result<(), RepoError> {
        self.meter
            .call(Kind::Unlock, self.inner.unlock(token))
            .await
    }
}
