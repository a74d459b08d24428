//! Fault checks shared by every backend: lost replies, connection faults in the middle of a stream
//! of bursts, and the invariants that must hold afterwards (no overcommit, no container held
//! twice, zero audit drift, every placement where the scheduler said).
//!
//! sched-core's [`Faulty`] layer loses replies at the API boundary (the call is applied, then the
//! caller gets [`RepoError::Ambiguous`]) and works on any backend; [`crate::proxy::FaultProxy`]
//! does the same on the wire for Redis and Postgres.

use crate::ns::Ns;
use sched_core::layers::{Fault, Faulty, Op};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, RepoError, Resources, Scheduler,
    SchedulerConfig, WorkerRepository, WorkerSpec,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Workers checked.
    pub workers: usize,
    /// Reservations found in their ledgers.
    pub reservations: usize,
    /// Containers held on more than one worker (must be 0).
    pub duplicates: usize,
    /// Workers whose audit drift is not zero (must be 0).
    pub drifted: usize,
    /// Workers whose ledger exceeds their total (must be 0).
    pub overcommitted: usize,
    /// Placements reported by the scheduler but not found on that worker (must be 0).
    pub misplaced: usize,
}

impl Invariants {
    /// True when nothing is wrong.
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.drifted == 0 && self.overcommitted == 0 && self.misplaced == 0
    }
}

/// Checks the invariants over `workers`, and that each `(container, worker)` in `placed` is held
/// exactly there. Retries reads briefly, since a backend may be reconnecting after a fault.
pub async fn verify(
    repo: &dyn WorkerRepository,
    workers: &[String],
    placed: &[(String, String)],
) -> Invariants {
    let mut inv = Invariants {
        workers: workers.len(),
        ..Invariants::default()
    };
    let mut holder: HashMap<String, String> = HashMap::new();
    for w in workers {
        let audit = retry(|| repo.audit(w)).await;
        let ledger = retry(|| repo.list_reservations(w)).await;
        if !audit.is_consistent() {
            inv.drifted += 1;
        }
        if !audit.reserved.le(&audit.total) {
            inv.overcommitted += 1;
        }
        inv.reservations += ledger.len();
        for r in ledger {
            if holder.insert(r.container_id.clone(), w.clone()).is_some() {
                inv.duplicates += 1;
            }
        }
    }
    for (c, w) in placed {
        if holder.get(c) != Some(w) {
            inv.misplaced += 1;
        }
    }
    inv
}

async fn retry<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut last = None;
    for i in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(20 * (i + 1).min(10))).await;
            }
        }
    }
    panic!("store still failing after retries: {last:?}");
}

async fn seed_workers(
    repo: &dyn WorkerRepository,
    ns: &Ns,
    n: usize,
    total: Resources,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = ns.worker(&i.to_string());
        repo.register_worker(&WorkerSpec::new(id.clone(), total).with_pool(ns.pool("p")))
            .await
            .expect("register");
        ids.push(id);
    }
    ids
}

async fn cleanup(repo: &dyn WorkerRepository, workers: &[String]) {
    for w in workers {
        let _ = repo.remove_worker(w).await;
    }
}

/// A scheduler whose commit reply is lost resolves the doubt with `find_reservation` and places
/// every container exactly once, on the worker where the lost commit put it.
pub async fn check_lost_reserve_reply_is_resolved(repo: Arc<dyn WorkerRepository>) {
    let ns = Ns::new("lost-reserve");
    let workers = seed_workers(&*repo, &ns, 4, Resources::cpu_mem(8_000, 16_384)).await;
    let lossy = Arc::new(Faulty::new(Arc::clone(&repo)));
    lossy.faults().on(Op::Reserve, Fault::LoseReply, 1);
    let sched = Scheduler::new(Arc::clone(&lossy), SchedulerConfig::default());
    let burst: Vec<_> = (0..20)
        .map(|i| {
            ContainerRequest::new(ns.container(&i.to_string()), Resources::cpu_mem(250, 256))
                .with_pool(ns.pool("p"))
        })
        .collect();
    let results = sched.schedule_batch(burst).await;
    let placed: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            let p = r
                .as_ref()
                .expect("every container placed despite the lost reply");
            (p.container_id.clone(), p.worker_id.clone())
        })
        .collect();
    assert_eq!(lossy.faults().fired(), 1, "the fault fired");
    assert_eq!(sched.stats().ambiguous, 1);
    let inv = verify(&*repo, &workers, &placed).await;
    assert!(inv.clean(), "{inv:?}");
    assert_eq!(inv.reservations, 20, "each container held once: {inv:?}");
    cleanup(&*repo, &workers).await;
}

/// A release whose reply is lost can be repeated: capacity comes back exactly once.
pub async fn check_lost_release_reply_is_idempotent(repo: Arc<dyn WorkerRepository>) {
    let ns = Ns::new("lost-release");
    let total = Resources::cpu_mem(4_000, 4_096);
    let workers = seed_workers(&*repo, &ns, 1, total).await;
    let ids: Vec<String> = (0..5).map(|i| ns.container(&i.to_string())).collect();
    let batch = [CapacityReservation::new(
        workers[0].clone(),
        ids.iter()
            .map(|c| sched_core::ResourceReservation::new(c.clone(), Resources::cpu_mem(100, 100)))
            .collect(),
    )];
    let out = repo
        .reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .expect("reserve");
    assert!(out[0].outcome.is_ok());
    let lossy = Faulty::new(Arc::clone(&repo));
    lossy.faults().on(Op::Release, Fault::LoseReply, 1);
    let err = lossy.release_batch(&ids).await.expect_err("reply lost");
    assert!(err.is_ambiguous());
    let again = lossy.release_batch(&ids).await.expect("retry release");
    assert!(
        again.iter().all(|o| o.released.is_none()),
        "retry returns nothing twice"
    );
    let w = repo
        .get_worker(&workers[0])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(w.free, total, "capacity came back exactly once");
    let inv = verify(&*repo, &workers, &[]).await;
    assert!(inv.clean(), "{inv:?}");
    cleanup(&*repo, &workers).await;
}

/// Figures from [`run_bursts_with_faults`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultRun {
    /// Faults injected (as counted by the `inject` closure's return values).
    pub faults: u64,
    /// Containers placed.
    pub placements: usize,
    /// Containers that ended in an error (no capacity or retries exhausted).
    pub failed: usize,
    /// Invariants afterwards.
    pub invariants: Invariants,
}

/// Runs `bursts` bursts of `per_burst` containers through one scheduler on `repo`, while
/// `inject` is called between bursts (it kills connections, loses replies, ... and returns how
/// many faults it injected). Releases half of each burst as it goes. Returns the counts and the
/// invariants afterwards; the caller asserts on them.
pub async fn run_bursts_with_faults<F, Fut>(
    repo: Arc<dyn WorkerRepository>,
    tag: &str,
    bursts: usize,
    per_burst: usize,
    inject: F,
) -> FaultRun
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send,
{
    let ns = Ns::new(tag);
    let workers = seed_workers(&*repo, &ns, 10, Resources::cpu_mem(64_000, 262_144)).await;
    let cfg = SchedulerConfig::default()
        .with_max_attempts(10)
        .with_backoff_base(Duration::from_millis(5))
        .with_backoff_max(Duration::from_millis(200));
    let sched = Scheduler::new(Arc::clone(&repo), cfg);
    let mut run = FaultRun::default();
    let mut held: Vec<(String, String)> = Vec::new();
    for b in 0..bursts {
        let burst: Vec<_> = (0..per_burst)
            .map(|i| {
                ContainerRequest::new(
                    ns.container(&format!("{b}-{i}")),
                    Resources::cpu_mem(100, 128),
                )
                .with_pool(ns.pool("p"))
            })
            .collect();
        let (results, injected) = tokio::join!(sched.schedule_batch(burst), inject(b));
        run.faults += injected;
        let mut placed_now = Vec::new();
        for r in results {
            match r {
                Ok(p) => placed_now.push((p.container_id, p.worker_id)),
                Err(_) => run.failed += 1,
            }
        }
        run.placements += placed_now.len();
        // Release every other placement of this burst; keep the rest held.
        let (release, keep): (Vec<_>, Vec<_>) = placed_now
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let ids: Vec<String> = release.iter().map(|(_, (c, _))| c.clone()).collect();
        let mut released = false;
        for _ in 0..20 {
            match sched.release(&ids).await {
                Ok(_) => {
                    released = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        assert!(released, "release kept failing after the fault");
        held.extend(keep.into_iter().map(|(_, p)| p));
    }
    run.invariants = verify(&*repo, &workers, &held).await;
    assert_eq!(
        run.invariants.reservations,
        held.len(),
        "ledger holds exactly what is held"
    );
    cleanup(&*repo, &workers).await;
    run
}
