//! Connection faults from the server's side: while a stream of bursts runs through a
//! [`Scheduler`](sched_core::Scheduler) on a `RedisRepository` (redis-rs always, fred with the
//! `fred` feature), a separate admin connection kills the repository's connections with
//! `CLIENT KILL`, sometimes as the burst starts and mostly a few random milliseconds into it
//! (while its `reserve_batch` pipeline, the worker-list read or the lost-reply resolution is on
//! the wire).
//!
//! **Targeting.** Neither client can name its connections on Redis 7.0 (redis-rs 1.8 only sends
//! `CLIENT SETINFO LIB-NAME`, which 7.0 ignores; fred names them with a random id it picks
//! itself). So each test creates its own ACL user (`ACL SETUSER sched-kill-<random> on >pw ~* &*
//! +@all`), connects the repository as that user, and kills with `CLIENT KILL USER <that user>`:
//! only this test's connections are hit, never the admin connection nor other tests or
//! processes sharing the server (the tests of this file run in parallel with each other, and other
//! crates' suites may run against the same Redis). The user is deleted when the test ends.
//! This needs an admin connection allowed to run `ACL SETUSER` and `CLIENT KILL` (the default
//! user of a stock `redis-server`).
//!
//! **Checks**, per client: every container of every burst is placed, or, if it ended in an
//! error (`RetriesExhausted`), it is held nowhere (`find_reservation` is `None`); the
//! invariants of [`sched_tests::faults::verify`] are clean (no container held twice, no
//! overcommit, every placement held where the scheduler said); `find_reservation` agrees with
//! the ledgers for every container ever sent; audit drift is zero on every worker; and the
//! kills did fire (connections killed > 0, some while a `reserve_batch` was in flight).
//!
//! Needs `REDIS_URL` (skips with a message when unset, fails under `CI=true`). Run with
//! `REDIS_URL=redis://127.0.0.1:6379 cargo test -p sched-redis --features fred --test client_kill
//! -- --nocapture` to see the counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use async_trait::async_trait;
use common::Kind;
use sched_core::{
    AuditReport, CapacityReservation, CommitMode, ReleaseOutcome, RepoError, ReservationRecord,
    Worker, WorkerRepository, WorkerResult, WorkerSpec,
};
use sched_redis::{RedisConfig, RedisRepository};
use sched_tests::faults::run_bursts_with_faults;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BURSTS: usize = 24;
const PER_BURST: usize = 200;

/// What the store looked like just before the run removed its workers (after `verify`).
#[derive(Debug, Default, Clone)]
struct Settled {
    workers: usize,
    /// Ledger entries over all workers.
    held: usize,
    /// Containers found in two ledgers.
    duplicates: usize,
    /// Workers whose audit drift is not zero.
    drifted: usize,
    /// Σ |drift| over every worker and resource.
    drift_total: i128,
    /// Containers of the run (every one of every burst, sent or not) whose `find_reservation`
    /// disagrees with the ledgers.
    index_mismatches: usize,
    /// Containers of the run that `find_reservation` finds held.
    found_held: usize,
    /// Containers of the run looked up.
    checked: usize,
    /// Containers the scheduler sent in a `reserve_batch`.
    sent: usize,
    /// Containers sent whose id is not one of the run's (must be 0: the ids below are right).
    unexpected: usize,
}

/// Passes every call through, and records what the scheduler sent and saw: container ids, worker
/// ids, errors, and whether a `reserve_batch` is in flight. On the first `remove_worker` (the
/// run's clean-up, after its own `verify`) it cross-checks the store once, see [`Settled`].
struct Observed<R> {
    inner: R,
    bursts: usize,
    per_burst: usize,
    workers: Mutex<BTreeSet<String>>,
    sent: Mutex<BTreeSet<String>>,
    reserves_in_flight: AtomicU64,
    reserve_ambiguous: AtomicU64,
    reserve_other_errors: AtomicU64,
    read_errors: AtomicU64,
    release_errors: AtomicU64,
    settled: tokio::sync::OnceCell<Settled>,
}

impl<R: WorkerRepository> Observed<R> {
    fn new(inner: R, bursts: usize, per_burst: usize) -> Self {
        Observed {
            inner,
            bursts,
            per_burst,
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

    fn in_flight(&self) -> u64 {
        self.reserves_in_flight.load(Ordering::SeqCst)
    }

    fn note_read<T>(&self, r: Result<T, RepoError>) -> Result<T, RepoError> {
        if r.is_err() {
            self.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Every container id of the run, sent or not. `run_bursts_with_faults` names workers
    /// `<ns>w:<i>` and containers `<ns>c:<burst>-<i>` (see `sched_tests::ns::Ns`); a container
    /// sent under any other name is counted in [`Settled::unexpected`], so a change of naming
    /// fails the test instead of silently checking nothing.
    fn run_containers(&self, workers: &[String]) -> BTreeSet<String> {
        let Some(prefix) = workers
            .first()
            .and_then(|w| w.rsplit_once("w:"))
            .map(|p| p.0)
        else {
            return BTreeSet::new();
        };
        (0..self.bursts)
            .flat_map(|b| (0..self.per_burst).map(move |i| format!("{prefix}c:{b}-{i}")))
            .collect()
    }

    async fn settle(&self) -> Settled {
        let workers: Vec<String> = self.workers.lock().unwrap().iter().cloned().collect();
        let sent: BTreeSet<String> = self.sent.lock().unwrap().clone();
        let expected = self.run_containers(&workers);
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
impl<R: WorkerRepository> WorkerRepository for Observed<R> {
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
    async fn find_reservation(&self, id: &str) -> Result<Option<ReservationRecord>, RepoError> {
        let r = self.inner.find_reservation(id).await;
        self.note_read(r)
    }
    async fn list_reservations(&self, id: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        let r = self.inner.list_reservations(id).await;
        self.note_read(r)
    }
    async fn audit(&self, id: &str) -> Result<AuditReport, RepoError> {
        let r = self.inner.audit(id).await;
        self.note_read(r)
    }
    async fn reconcile(&self, id: &str) -> Result<AuditReport, RepoError> {
        self.inner.reconcile(id).await
    }
}

/// This test's ACL user and key prefix; deletes both when dropped (even on panic).
struct KillTarget {
    admin_url: String,
    user: String,
    /// The test's configuration without the test user's credentials (for clean-up).
    base: RedisConfig,
    kind: Kind,
}

impl KillTarget {
    async fn create(kind: Kind, test: &str) -> Option<(KillTarget, RedisConfig)> {
        let admin_url = sched_tests::env::require_url("REDIS_URL", test)?;
        let base = common::config(common::Topology::Single, test)?;
        let user = format!("sched-kill-{}", sched_tests::ns::random_hex());
        let password = sched_tests::ns::random_hex();
        let mut admin = admin(&admin_url).await;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{test}: ACL SETUSER on REDIS_URL failed: {e}"));
        let cfg = base.clone().with_credentials(&user, password);
        Some((
            KillTarget {
                admin_url,
                user,
                base,
                kind,
            },
            cfg,
        ))
    }
}

impl Drop for KillTarget {
    fn drop(&mut self) {
        let (url, user, base, kind) = (
            self.admin_url.clone(),
            self.user.clone(),
            self.base.clone(),
            self.kind,
        );
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut a = admin(&url).await;
                let _: i64 = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&user)
                    .query_async(&mut a)
                    .await
                    .expect("ACL DELUSER");
                let repo = common::connect(kind, &base).await.expect("connect");
                repo.delete_all_keys().await.expect("delete test keys");
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("clean-up of ACL user {} failed", self.user);
        }
    }
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("REDIS_URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection to REDIS_URL")
}

#[derive(Debug, Default)]
struct Kills {
    commands: AtomicU64,
    killed: AtomicU64,
    while_reserving: AtomicU64,
}

async fn kill_mid_stream(kind: Kind, test: &str) {
    let Some((target, cfg)) = KillTarget::create(kind, test).await else {
        return;
    };
    let repo: RedisRepository = common::connect(kind, &cfg)
        .await
        .expect("connect as the test user");
    let observed = Arc::new(Observed::new(repo, BURSTS, PER_BURST));
    let kills = Arc::new(Kills::default());
    let admin_conn = admin(&target.admin_url).await;
    let run = {
        let (observed, kills, user) = (
            Arc::clone(&observed),
            Arc::clone(&kills),
            target.user.clone(),
        );
        let repo: Arc<dyn WorkerRepository> = Arc::clone(&observed) as _;
        run_bursts_with_faults(repo, test, BURSTS, PER_BURST, move |b| {
            let (observed, kills, user) = (Arc::clone(&observed), Arc::clone(&kills), user.clone());
            let mut admin = admin_conn.clone();
            async move {
                // One burst in four as it starts, the others a random 1-4 ms into it.
                if b % 4 != 0 {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=4))).await;
                }
                let reserving = observed.in_flight() > 0;
                let n: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("USER")
                    .arg(&user)
                    .query_async(&mut admin)
                    .await
                    .expect("CLIENT KILL USER");
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
    eprintln!(
        "{test}: {} bursts x {} containers; CLIENT KILL commands {}, connections killed {}, \
         kills while a reserve_batch was in flight {}; scheduler saw reserve_batch Ambiguous {}, \
         other reserve errors {}, read errors {}, release errors {}; containers sent {}, \
         placements {}, failed {}; held {} on {} workers, duplicates {}, misplaced {}, \
         overcommitted {}, drifted workers {}, total drift {}; find_reservation checked {} \
         containers, {} held, {} disagreeing with the ledgers",
        BURSTS,
        PER_BURST,
        kills.commands.load(Ordering::Relaxed),
        kills.killed.load(Ordering::Relaxed),
        kills.while_reserving.load(Ordering::Relaxed),
        o.reserve_ambiguous.load(Ordering::Relaxed),
        o.reserve_other_errors.load(Ordering::Relaxed),
        o.read_errors.load(Ordering::Relaxed),
        o.release_errors.load(Ordering::Relaxed),
        settled.sent,
        run.placements,
        run.failed,
        settled.held,
        settled.workers,
        settled.duplicates,
        run.invariants.misplaced,
        run.invariants.overcommitted,
        settled.drifted,
        settled.drift_total,
        settled.checked,
        settled.found_held,
        settled.index_mismatches,
    );
    assert_eq!(run.faults, kills.killed.load(Ordering::Relaxed));
    assert!(run.faults > 0, "the kills fired: {run:?}");
    assert_eq!(run.placements + run.failed, BURSTS * PER_BURST, "{run:?}");
    assert!(run.invariants.clean(), "{run:?}");
    assert_eq!(settled.checked, BURSTS * PER_BURST, "{settled:?}");
    assert_eq!(settled.unexpected, 0, "{settled:?}");
    // Every container of the run is held exactly where the ledgers say (so the ones that ended
    // in an error, which are in no ledger -- `verify` found the ledgers hold exactly what was
    // placed and kept -- are not held anywhere).
    assert_eq!(settled.index_mismatches, 0, "{settled:?}");
    assert_eq!(settled.found_held, settled.held, "{settled:?}");
    assert_eq!(settled.held, run.invariants.reservations, "{settled:?}");
    assert_eq!(settled.duplicates, 0, "{settled:?}");
    assert_eq!(settled.drifted, 0, "{settled:?}");
    assert_eq!(settled.drift_total, 0, "{settled:?}");
    drop(observed);
    drop(target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_stream_redis_rs() {
    kill_mid_stream(Kind::RedisRs, "client_kill_mid_stream_redis_rs").await;
}

#[cfg(feature = "fred")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_stream_fred() {
    kill_mid_stream(Kind::Fred, "client_kill_mid_stream_fred").await;
}
