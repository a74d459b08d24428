//! Hand-off notifications: [`watch_reservations`] streams a worker's new (and gone)
//! reservations, so a worker agent waits instead of polling `list_reservations`.
//!
//! Each backend feeds wake-ups from what its store has
//! ([`WorkerRepository::reservation_wakeups`]: a Redis stream, Postgres `LISTEN/NOTIFY`, a channel
//! in memory), but a wake-up only says "look": the watch then re-reads the ledger and reports the
//! difference from what it has already reported. The ledger stays the truth, so a lost
//! notification, a dropped connection or a restart loses nothing — the next read (on the next
//! wake-up, or the periodic re-read at the latest) catches up.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use futures::StreamExt;
//! use sched_core::watch::{watch_reservations, ReservationEvent, WatchConfig};
//! # use sched_core::*;
//! # struct One;
//! # #[async_trait::async_trait]
//! # impl WorkerRepository for One {
//! #   async fn register_worker(&self, s: &WorkerSpec) -> Result<Worker, RepoError> { Ok(Worker::from_spec(s, 1)) }
//! #   async fn remove_worker(&self, _: &str) -> Result<bool, RepoError> { Ok(false) }
//! #   async fn get_worker(&self, _: &str) -> Result<Option<Worker>, RepoError> { Ok(None) }
//! #   async fn list_workers(&self, _: Option<&str>) -> Result<Vec<Worker>, RepoError> { Ok(vec![]) }
//! #   async fn reserve_batch(&self, _: &[CapacityReservation], _: CommitMode) -> Result<Vec<WorkerResult>, RepoError> { Ok(vec![]) }
//! #   async fn release_batch(&self, _: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> { Ok(vec![]) }
//! #   async fn find_reservations(&self, ids: &[String]) -> Result<Vec<Option<ReservationRecord>>, RepoError> { Ok(vec![None; ids.len()]) }
//! #   async fn list_reservations(&self, w: &str) -> Result<Vec<ReservationRecord>, RepoError> {
//! #     Ok(vec![ReservationRecord { worker_id: w.into(), container_id: "c1".into(), resources: Resources::cpu_mem(1, 1), gpu_type: None, lease_expires_at_ms: None }])
//! #   }
//! #   async fn audit_worker(&self, w: &str, _: AuditMode) -> Result<AuditReport, RepoError> { Err(RepoError::UnknownWorker(w.into())) }
//! # }
//! # let repo = std::sync::Arc::new(One);
//! let mut watch = watch_reservations(repo, "w1", WatchConfig::default());
//! // The first read reports what the ledger already holds.
//! match watch.next().await {
//!     Some(Ok(ReservationEvent::Added(r))) => assert_eq!(r.container_id, "c1"),
//!     other => panic!("{other:?}"),
//! }
//! # });
//! ```

use crate::{RepoError, ReservationRecord, WorkerRepository};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A backend's wake-ups for one worker (see [`WorkerRepository::reservation_wakeups`]).
pub type Wakeups = BoxStream<'static, ()>;

/// The stream [`watch_reservations`] returns (`'static` when it owns its repository, e.g. an
/// `Arc`). An `Err` item reports a failed read or subscription; the stream goes on and retries.
pub type ReservationWatch<'a> = BoxStream<'a, Result<ReservationEvent, RepoError>>;

/// Wake-ups that never come: the default of
/// [`reservation_wakeups`](WorkerRepository::reservation_wakeups).
pub fn no_wakeups() -> Wakeups {
    futures::stream::pending().boxed()
}

/// A change in a worker's ledger, as the watch saw it between two reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReservationEvent {
    /// A reservation now held on the worker (at the first read: everything already held).
    Added(ReservationRecord),
    /// A reservation no longer held (released, expired, or moved).
    Removed(ReservationRecord),
}

/// How a watch re-reads the ledger: [`default`](Self::default) or [`new`](Self::new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchConfig {
    /// Re-read at least this often even without a wake-up (bounds the delay of a lost one).
    pub resync: Duration,
    /// After a failed read or subscription, retry after this long.
    pub retry: Duration,
}

impl WatchConfig {
    /// Re-read at least every `resync`; retry a failed read or subscription after `retry`.
    pub const fn new(resync: Duration, retry: Duration) -> Self {
        WatchConfig { resync, retry }
    }
}

impl Default for WatchConfig {
    /// Re-read every 5 s without wake-ups; retry failures after 500 ms.
    fn default() -> Self {
        WatchConfig {
            resync: Duration::from_secs(5),
            retry: Duration::from_millis(500),
        }
    }
}

struct State<R> {
    repo: R,
    worker_id: String,
    config: WatchConfig,
    /// What has been reported as held, by container id.
    known: BTreeMap<String, ReservationRecord>,
    wake: Option<Wakeups>,
    queue: VecDeque<Result<ReservationEvent, RepoError>>,
    started: bool,
    failed: bool,
}

/// Watches `worker_id`'s ledger: first every reservation it already holds (`Added`), then each
/// new one (`Added`) and each gone one (`Removed`), read from the ledger after every wake-up and
/// at least every [`WatchConfig::resync`].
///
/// It subscribes before it reads, so a commit between the two is never missed. A renewal (only
/// the deadline changes) is not an event. A container released and reserved again on the same
/// worker with the same resources between two reads is one continuous holding to the watch.
///
/// `repo` is any repository by value: an `Arc` for a `'static` stream to move into a task, or a
/// reference (`&dyn WorkerRepository` included) for a stream that borrows it.
pub fn watch_reservations<'a, R>(
    repo: R,
    worker_id: impl Into<String>,
    config: WatchConfig,
) -> ReservationWatch<'a>
where
    R: WorkerRepository + 'a,
{
    let state = State {
        repo,
        worker_id: worker_id.into(),
        config,
        known: BTreeMap::new(),
        wake: None,
        queue: VecDeque::new(),
        started: false,
        failed: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.started {
                st.wait().await;
            }
            st.started = true;
            st.read().await;
        }
    })
    .boxed()
}

impl<R: WorkerRepository> State<R> {
    /// Waits for a wake-up (coalescing any burst of them) or the re-read period.
    async fn wait(&mut self) {
        let period = if self.failed {
            self.config.retry
        } else {
            self.config.resync
        };
        match self.wake.as_mut() {
            Some(w) => {
                tokio::select! {
                    next = w.next() => if next.is_none() { self.wake = None; },
                    () = tokio::time::sleep(period) => {},
                }
            }
            None => tokio::time::sleep(period).await,
        }
        while let Some(w) = self.wake.as_mut() {
            match w.next().now_or_never() {
                Some(Some(())) => {}
                Some(None) => self.wake = None,
                None => break,
            }
        }
    }

    /// (Re)subscribes if needed, then reads the ledger and queues the differences.
    async fn read(&mut self) {
        self.failed = false;
        if self.wake.is_none() {
            match self.repo.reservation_wakeups(&self.worker_id).await {
                Ok(w) => self.wake = Some(w),
                Err(e) => {
                    self.failed = true;
                    self.queue.push_back(Err(e));
                }
            }
        }
        match self.repo.list_reservations(&self.worker_id).await {
            Ok(list) => self.diff(list),
            Err(e) => {
                self.failed = true;
                self.queue.push_back(Err(e));
            }
        }
    }

    fn diff(&mut self, list: Vec<ReservationRecord>) {
        let now: BTreeMap<String, ReservationRecord> = list
            .into_iter()
            .map(|r| (r.container_id.clone(), r))
            .collect();
        let same = |a: &ReservationRecord, b: &ReservationRecord| {
            a.resources == b.resources && a.gpu_type == b.gpu_type && a.worker_id == b.worker_id
        };
        for (cid, old) in &self.known {
            match now.get(cid) {
                Some(new) if same(old, new) => {}
                _ => self
                    .queue
                    .push_back(Ok(ReservationEvent::Removed(old.clone()))),
            }
        }
        for (cid, new) in &now {
            match self.known.get(cid) {
                Some(old) if same(old, new) => {}
                _ => self
                    .queue
                    .push_back(Ok(ReservationEvent::Added(new.clone()))),
            }
        }
        self.known = now;
    }
}
