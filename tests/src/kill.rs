//! Connection kills from the server's side, in the middle of a stream of bursts: the scenario
//! that `sched-redis` (`CLIENT KILL USER`) and `sched-postgres` (`pg_terminate_backend`) run with
//! their own "kill this repository's connections now" action.
//!
//! [`run_kill_mid_stream`] wraps the repository in a recorder (container ids sent, workers
//! registered, errors seen, whether a `reserve_batch` is in flight), runs
//! [`run_bursts_with_faults`] with the kill as its fault (one burst in four as it starts, the
//! others a random few milliseconds into it), and, just before the run removes its workers (after
//! its own [`verify`](crate::faults::verify)), cross-checks the store once: ledgers, audits and
//! `find_reservation` for every container of the run ([`Settled`]). The caller prints the
//! figures (see [`KillRun`]'s `Display`) and calls [`KillRun::assert_consistent`].

use crate::faults::{run_bursts_with_faults, FaultRun};
use async_trait::async_trait;
use sched_core::{
    AuditMode, AuditReport, CapacityReservation, CommitMode, ReleaseOutcome, RepoError,
    ReservationRecord, Worker, WorkerRepository, WorkerResult, WorkerSpec,
};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bursts of a [`run_kill_mid_stream`] run.
pub const BURSTS: usize = 24;
/// Containers per burst of a [`run_kill_mid_stream`] run.
pub const PER_BURST: usize = 200;

/// What the store looked like just before the run removed its workers (after `verify`).
#[derive(Debug, Default, Clone)]
pub struct Settled {
    /// Workers the run registered.
    pub workers: usize,
    /// Ledger entries over all workers.
    pub held: usize,
    /// Containers found in two ledgers.
    pub duplicates: usize,
    /// Workers whose audit drift is not zero.
    pub drifted: usize,
    /// Σ |drift| over every worker and resource.
    pub drift_total: i128,
    /// Containers of the run (every one of every burst, sent or not) whose `find_reservation`
    /// disagrees with the ledgers.
    pub index_mismatches: usize,
    /// Containers of the run that `find_reservation` finds held.
    pub found_held: usize,
    /// Containers of the run looked up.
    pub checked: usize,
    /// Containers the scheduler sent in a `reserve_batch`.
    pub sent: usize,
    /// Containers sent whose id is not one of the run's (must be 0: the ids below are right).
    pub unexpected: usize,
}

/// Figures of a [`run_kill_mid_stream`] run.
#[derive(Debug, Clone)]
pub struct KillRun {
    /// Kill commands issued (one per burst).
    pub commands: u64,
    /// Connections killed, summed over the kill action's return values.
    pub killed: u64,
    /// Kills that hit at least one connection while a `reserve_batch` was in flight.
    pub while_reserving: u64,
    /// `reserve_batch` calls that returned an ambiguous error.
    pub reserve_ambiguous: u64,
    /// `reserve_batch` calls that returned any other error.
    pub reserve_other_errors: u64,
    /// Failed reads (`get_worker`, `list_workers`, `find_reservation(s)`, `list_reservations`,
    /// `audit`).
    pub read_errors: u64,
    /// Failed `release_batch` calls.
    pub release_errors: u64,
    /// The burst run's own figures and invariants.
    pub run: FaultRun,
    /// The store cross-check taken just before clean-up.
    pub settled: Settled,
}

impl fmt::Display for KillRun {
    /// The scheduler's and the store's figures (the kill figures are named by the caller).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (run, s) = (&self.run, &self.settled);
        write!(
            f,
            "scheduler saw reserve_batch Ambiguous {}, other reserve errors {}, read errors {}, \
             release errors {}; containers sent {}, placements {}, failed {}; held {} on {} \
             workers, duplicates {}, misplaced {}, overcommitted {}, drifted workers {}, total \
             drift {}; find_reservation checked {} containers, {} held, {} disagreeing with the \
             ledgers",
            self.reserve_ambiguous,
            self.reserve_other_errors,
            self.read_errors,
            self.release_errors,
            s.sent,
            run.placements,
            run.failed,
            s.held,
            s.workers,
            s.duplicates,
            run.invariants.misplaced,
            run.invariants.overcommitted,
            s.drifted,
            s.drift_total,
            s.checked,
            s.found_held,
            s.index_mismatches,
        )
    }
}

impl KillRun {
    /// Asserts what must hold after any kill run: the run counted exactly the connections
    /// killed; every container was placed or failed; the invariants are clean; every container
    /// of the run was looked up and is held exactly where the ledgers say (so the ones that ended
    /// in an error, which are in no ledger, are held nowhere); no duplicates, zero drift. Whether
    /// the kills fired at all (`run.faults > 0`) is the caller's to assert, in its own words.
    pub fn assert_consistent(&self) {
        let (run, settled) = (&self.run, &self.settled);
        assert_eq!(run.faults, self.killed);
        assert_eq!(run.placements + run.failed, BURSTS * PER_BURST, "{run:?}");
        assert!(run.invariants.clean(), "{run:?}");
        assert_eq!(settled.checked, BURSTS * PER_BURST, "{settled:?}");
        assert_eq!(settled.unexpected, 0, "{settled:?}");
        // Every container of the run is held exactly where the ledgers say (so the ones that
        // ended in an error, which are in no ledger -- `verify` found the ledgers hold exactly
        // what was placed and kept -- are not held anywhere).
        assert_eq!(settled.index_mismatches, 0, "{settled:?}");
        assert_eq!(settled.found_held, settled.held, "{settled:?}");
        assert_eq!(settled.held, run.invariants.reservations, "{settled:?}");
        assert_eq!(settled.duplicates, 0, "{settled:?}");
        assert_eq!(settled.drifted, 0, "{settled:?}");
        assert_eq!(settled.drift_total, 0, "{settled:?}");
    }
}

/// Runs [`BURSTS`] bursts of [`PER_BURST`] containers through one scheduler on `repo` (see
/// [`run_bursts_with_faults`]), calling `kill` once per burst: one burst in four as it starts,
/// the others a random `1..=max_delay_ms` milliseconds into it. `kill` kills `repo`'s
/// connections on the server and returns how many it killed. `repo` is dropped before this
/// returns (after the run's clean-up), so a guard it owns cleans up then.
pub async fn run_kill_mid_stream<K, Fut>(
    repo: Arc<dyn WorkerRepository>,
    tag: &str,
    max_delay_ms: u64,
    kill: K,
) -> KillRun
where
    K: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send + 'static,
{
    let observed = Arc::new(Observed::new(repo));
    let kills = Arc::new(Kills::default());
    let kill = Arc::new(kill);
    let run = {
        let (observed, kills) = (Arc::clone(&observed), Arc::clone(&kills));
        let repo: Arc<dyn WorkerRepository> = Arc::clone(&observed) as _;
        run_bursts_with_faults(repo, tag, BURSTS, PER_BURST, move |b| {
            let (observed, kills, kill) =
                (Arc::clone(&observed), Arc::clone(&kills), Arc::clone(&kill));
            async move {
                if b % 4 != 0 {
                    let ms = rand::random_range(1..=max_delay_ms.max(1));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let reserving = observed.reserves_in_flight.load(Ordering::SeqCst) > 0;
                let n = kill().await;
                kills.commands.fetch_add(1, Ordering::Relaxed);
                kills.killed.fetch_add(n, Ordering::Relaxed);
                if reserving && n > 0 {
                    kills.while_reserving.fetch_add(1, Ordering::Relaxed);
                }
                n
            }
        })
        .await
    };
    let settled = observed
        .settled
        .get()
        .cloned()
        .expect("the run removed its workers");
    let o = &observed;
    KillRun {
        commands: kills.commands.load(Ordering::Relaxed),
        killed: kills.killed.load(Ordering::Relaxed),
        while_reserving: kills.while_reserving.load(Ordering::Relaxed),
        reserve_ambiguous: o.reserve_ambiguous.load(Ordering::Relaxed),
        reserve_other_errors: o.reserve_other_errors.load(Ordering::Relaxed),
        read_errors: o.read_errors.load(Ordering::Relaxed),
        release_errors: o.release_errors.load(Ordering::Relaxed),
        run,
        settled,
    }
}

#[derive(Debug, Default)]
struct Kills {
    commands: AtomicU64,
    killed: AtomicU64,
    while_reserving: AtomicU64,
}

/// Passes every call through, and records what the scheduler sent and saw: container ids, worker
/// ids, errors, and whether a `reserve_batch` is in flight. On the first `remove_worker` (the
/// run's clean-up, after its own `verify`) it cross-checks the store once, see [`Settled`].
struct Observed {
    inner: Arc<dyn WorkerRepository>,
    workers: Mutex<BTreeSet<String>>,
    sent: Mutex<BTreeSet<String>>,
    reserves_in_flight: AtomicU64,
    reserve_ambiguous: AtomicU64,
    reserve_other_errors: AtomicU64,
    read_errors: AtomicU64,
    release_errors: AtomicU64,
    settled: tokio::sync::OnceCell<Settled>,
}

impl Observed {
    fn new(inner: Arc<dyn WorkerRepository>) -> Self {
        Observed {
            inner,
            workers: Mutex::default(),
            sent: Mutex::default(),
            reserves_in_flight: AtomicU64::new(0),
            reserve_ambiguous: AtomicU64::new(0),
            reserve_other_errors: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            release_errors: AtomicU64::new(0),
            settled: tokio::sync::OnceCell::new(),
        }
    }

    fn note_read<T>(&self, r: Result<T, RepoError>) -> Result<T, RepoError> {
        if r.is_err() {
            self.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Every container id of the run, sent or not. `run_bursts_with_faults` names workers
    /// `<ns>w:<i>` and containers `<ns>c:<burst>-<i>` (see `crate::ns::Ns`); a container sent
    /// under any other name is counted in [`Settled::unexpected`], so a change of naming fails
    /// the test instead of silently checking nothing.
    fn run_containers(workers: &[String]) -> BTreeSet<String> {
        let Some(prefix) = workers
            .first()
            .and_then(|w| w.rsplit_once("w:"))
            .map(|p| p.0)
        else {
            return BTreeSet::new();
        };
        (0..BURSTS)
            .flat_map(|b| (0..PER_BURST).map(move |i| format!("{prefix}c:{b}-{i}")))
            .collect()
    }

    async fn settle(&self) -> Settled {
        let workers: Vec<String> = self.workers.lock().unwrap().iter().cloned().collect();
        let sent: BTreeSet<String> = self.sent.lock().unwrap().clone();
        let expected = Self::run_containers(&workers);
        let mut s = Settled {
            workers: workers.len(),
            sent: sent.len(),
            unexpected: sent.difference(&expected).count(),
            ..Settled::default()
        };
        let lookups: Vec<String> = expected.union(&sent).cloned().collect();
        s.checked = lookups.len();
        let mut holder: HashMap<String, String> = HashMap::new();
        for w in &workers {
            let audit = retry(|| self.inner.audit(w)).await;
            if !audit.is_consistent() {
                s.drifted += 1;
            }
            s.drift_total += audit.drift.cpu_millicores.abs()
                + audit.drift.memory_mib.abs()
                + audit.drift.gpu_count.abs();
            for r in retry(|| self.inner.list_reservations(w)).await {
                s.held += 1;
                if holder.insert(r.container_id, w.clone()).is_some() {
                    s.duplicates += 1;
                }
            }
        }
        for chunk in lookups.chunks(100) {
            let found = futures::future::join_all(
                chunk
                    .iter()
                    .map(|c| retry(move || self.inner.find_reservation(c))),
            )
            .await;
            for (c, f) in chunk.iter().zip(found) {
                if f.is_some() {
                    s.found_held += 1;
                }
                if f.map(|r| r.worker_id).as_ref() != holder.get(c) {
                    s.index_mismatches += 1;
                }
            }
        }
        s
    }
}

async fn retry<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut last = None;
    for i in 0..50u64 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20 * (i + 1).min(10))).await;
    }
    panic!("store still failing after retries: {last:?}");
}

#[async_trait]
impl WorkerRepository for Observed {
    fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }
    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        self.workers.lock().unwrap().insert(spec.id.clone());
        self.inner.register_worker(spec).await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        self.settled.get_or_init(|| self.settle()).await;
        self.inner.remove_worker(worker_id).await
    }
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        let r = self.inner.get_worker(worker_id).await;
        self.note_read(r)
    }
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        let r = self.inner.list_workers(pool).await;
        self.note_read(r)
    }
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        self.sent.lock().unwrap().extend(
            batch
                .iter()
                .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone())),
        );
        self.reserves_in_flight.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.reserve_batch(batch, mode).await;
        self.reserves_in_flight.fetch_sub(1, Ordering::SeqCst);
        match &r {
            Err(e) if e.is_ambiguous() => {
                self.reserve_ambiguous.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.reserve_other_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
        r
    }
    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let r = self.inner.release_batch(ids).await;
        if r.is_err() {
            self.release_errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    async fn find_reservations(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        let r = self.inner.find_reservations(ids).await;
        self.note_read(r)
    }
    async fn list_reservations(&self, id: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        let r = self.inner.list_reservations(id).await;
        self.note_read(r)
    }
    async fn audit_worker(&self, id: &str, mode: AuditMode) -> Result<AuditReport, RepoError> {
        let r = self.inner.audit_worker(id, mode).await;
        match mode {
            AuditMode::Check => self.note_read(r),
            AuditMode::Repair => r,
        }
    }
}
