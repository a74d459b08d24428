//! Property tests (proptest) on random workers and random bursts, against any backend.
//!
//! * [`concurrent_callers`]: several tasks call `reserve_batch` and `release_batch` directly, on
//!   overlapping workers and overlapping container ids;
//! * [`concurrent_schedulers`]: several [`Scheduler`]s place and release bursts at once;
//! * [`model_sequences`]: random sequences of operations, each compared with a small reference
//!   model written independently of every backend.
//!
//! After every case: for each worker `free + Σ ledger = total`, no container is held on two
//! workers, `find_reservation` agrees with the ledgers, and audit drift is zero.
//!
//! Proptest is synchronous, so each case blocks on a Tokio runtime [`Handle`]; call these from a
//! plain `#[test]` with your own runtime, or from a multi-thread `#[tokio::test]` through
//! [`run_all_async`]. Each case works in a fresh [`Ns`], so the store may be shared. Case counts
//! come from [`PropConfig`] (`PROPTEST_CASES` overrides the default).

use crate::ns::Ns;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, Rejection, RepoError, ReservationRecord,
    ResourceKind, ResourceReservation, Resources, ScheduleError, Scheduler, SchedulerConfig,
    Worker, WorkerRepository, WorkerSpec, WorkerStatus,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// How many cases each property runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropConfig {
    /// Cases per property.
    pub cases: u32,
    /// Upper bound on shrinking steps after a failure (each step costs real I/O on a server).
    pub max_shrink_iters: u32,
}

impl PropConfig {
    /// Default cases per property when `PROPTEST_CASES` is not set. Modest, because every case
    /// costs real round trips on Redis and Postgres.
    pub const DEFAULT_CASES: u32 = 24;

    /// `PROPTEST_CASES` if set (and a number), else [`Self::DEFAULT_CASES`].
    pub fn from_env() -> Self {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(Self::DEFAULT_CASES);
        PropConfig {
            cases,
            max_shrink_iters: 256,
        }
    }

    /// Overrides the case count.
    pub fn with_cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }
}

impl Default for PropConfig {
    fn default() -> Self {
        Self::from_env()
    }
}

fn run<S>(name: &str, cfg: &PropConfig, strategy: S, test: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: Debug,
{
    let mut runner = TestRunner::new(Config {
        cases: cfg.cases,
        max_shrink_iters: cfg.max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |v| {
        test(v);
        Ok(())
    }) {
        panic!("property {name} failed: {e}");
    }
}

/// Runs every property on `repo`. Call it outside any runtime context (e.g. from a plain
/// `#[test]`), passing the handle of a multi-thread runtime.
pub fn run_all(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    model_sequences(handle, Arc::clone(&repo), cfg);
    concurrent_callers(handle, Arc::clone(&repo), cfg);
    concurrent_schedulers(handle, repo, cfg);
}

/// [`run_all`] from inside a multi-thread Tokio runtime (e.g. a
/// `#[tokio::test(flavor = "multi_thread")]`): runs it on a blocking thread.
pub async fn run_all_async(repo: Arc<dyn WorkerRepository>, cfg: PropConfig) {
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || run_all(&handle, repo, &cfg));
    if let Err(e) = task.await {
        match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("property task failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const GPU_TYPES: [&str; 2] = ["a100", "h100"];

/// A generated worker.
#[derive(Debug, Clone)]
struct GenWorker {
    total: Resources,
    gpu_type: Option<&'static str>,
}

fn gen_worker() -> impl Strategy<Value = GenWorker> {
    (
        0u64..=8,
        0u64..=8,
        prop_oneof![3 => Just(None), 1 => Just(Some(GPU_TYPES[0])), 1 => Just(Some(GPU_TYPES[1]))],
        1u64..=4,
    )
        .prop_map(|(c, m, g, n)| GenWorker {
            total: Resources::new(c * 500, m * 512, if g.is_some() { n } else { 0 }),
            gpu_type: g,
        })
}

/// Non-zero resources, sometimes with GPUs and a GPU type.
fn gen_demand() -> impl Strategy<Value = (Resources, Option<&'static str>)> {
    (
        1u64..=4,
        0u64..=4,
        prop_oneof![4 => Just(0u64), 1 => 1u64..=2],
        0usize..2,
    )
        .prop_map(|(c, m, g, t)| {
            let ty = (g > 0).then_some(GPU_TYPES[t]);
            (Resources::new(c * 250, m * 256, g), ty)
        })
}

/// After a case: every worker consistent (ledger rule, audit), no container held twice, and
/// `find_reservation` agrees with the ledgers for `containers`.
async fn assert_invariants(repo: &dyn WorkerRepository, workers: &[String], containers: &[String]) {
    let mut holder: HashMap<String, String> = HashMap::new();
    for w in workers {
        let Some(got) = repo.get_worker(w).await.expect("get_worker") else {
            continue;
        };
        let ledger = repo.list_reservations(w).await.expect("list_reservations");
        let sum = Resources::checked_sum(ledger.iter().map(|r| &r.resources)).expect("ledger sum");
        assert_eq!(
            got.free.checked_add(&sum).ok(),
            Some(got.total),
            "free {} + reserved {sum} must equal total {} on {w:?}",
            got.free,
            got.total
        );
        let audit = repo.audit(w).await.expect("audit");
        assert!(audit.is_consistent(), "audit drift must be zero: {audit:?}");
        for r in ledger {
            if let Some(other) = holder.insert(r.container_id.clone(), w.clone()) {
                panic!(
                    "container {:?} is held on {other:?} and {w:?}",
                    r.container_id
                );
            }
        }
    }
    for c in containers {
        let found = repo.find_reservation(c).await.expect("find_reservation");
        assert_eq!(
            found.map(|r| r.worker_id),
            holder.get(c).cloned(),
            "find_reservation({c:?}) must agree with the ledgers"
        );
    }
}

async fn remove_all(repo: &dyn WorkerRepository, workers: &[String]) {
    for w in workers {
        repo.remove_worker(w).await.expect("cleanup: remove_worker");
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent direct callers
// ---------------------------------------------------------------------------------------------

/// A generated reservation: container index, amounts, GPU type.
type GenRes = (usize, Resources, Option<&'static str>);
/// A generated worker part: worker index (one past the end = unknown) and its reservations.
type GenPart = (usize, Vec<GenRes>);

/// One generated call of a direct caller.
#[derive(Debug, Clone)]
enum DirectOp {
    Reserve {
        partial: bool,
        /// (worker index, possibly one past the end = unknown worker; reservations)
        parts: Vec<GenPart>,
    },
    Release(Vec<usize>),
}

const DIRECT_CONTAINERS: usize = 16;

fn gen_direct_op() -> impl Strategy<Value = DirectOp> {
    prop_oneof![
        3 => (any::<bool>(), vec((0usize..6, vec((0..DIRECT_CONTAINERS, gen_demand()), 1..4)), 1..4))
            .prop_map(|(partial, parts)| DirectOp::Reserve {
                partial,
                parts: parts
                    .into_iter()
                    .map(|(w, rs)| (w, rs.into_iter().map(|(c, (r, t))| (c, r, t)).collect()))
                    .collect(),
            }),
        2 => vec(0..DIRECT_CONTAINERS, 1..6).prop_map(DirectOp::Release),
    ]
}

/// Builds a valid batch: drops repeated workers and containers.
fn direct_batch(
    parts: &[GenPart],
    workers: &[String],
    ghost: &str,
    containers: &[String],
) -> Vec<CapacityReservation> {
    let mut seen_w = HashSet::new();
    let mut seen_c = HashSet::new();
    let mut batch = Vec::new();
    for (w, rs) in parts {
        let wid = workers.get(*w).map_or(ghost, String::as_str);
        if !seen_w.insert(wid) {
            continue;
        }
        let rs: Vec<ResourceReservation> = rs
            .iter()
            .filter(|(c, _, _)| seen_c.insert(*c))
            .map(|(c, r, t)| {
                let rr = ResourceReservation::new(containers[*c].clone(), *r);
                match t {
                    Some(t) => rr.with_gpu_type(*t),
                    None => rr,
                }
            })
            .collect();
        if !rs.is_empty() {
            batch.push(CapacityReservation::new(wid, rs));
        }
    }
    batch
}

/// Several tasks call `reserve_batch` / `release_batch` concurrently on overlapping workers and
/// container ids; afterwards the ledger rule, the one-holder rule and zero drift hold, and every
/// `Committed.free` reported along the way was within the worker's total.
pub fn concurrent_callers(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (
        vec(gen_worker(), 2..=5),
        vec(vec(gen_direct_op(), 1..8), 2..=4),
    );
    run("concurrent_callers", cfg, strategy, |(gws, tasks)| {
        handle.block_on(async {
            let ns = Ns::awkward("prop-direct");
            let workers: Vec<String> = (0..gws.len()).map(|i| ns.worker(&i.to_string())).collect();
            let ghost = ns.worker("ghost");
            let containers: Vec<String> = (0..DIRECT_CONTAINERS)
                .map(|i| ns.container(&i.to_string()))
                .collect();
            let mut totals = HashMap::new();
            for (id, g) in workers.iter().zip(&gws) {
                let mut spec = WorkerSpec::new(id.clone(), g.total)
                    .with_pool(ns.pool("p"))
                    .requiring_pool_selector();
                spec.gpu_type = g.gpu_type.map(str::to_owned);
                repo.register_worker(&spec).await.expect("register_worker");
                totals.insert(id.clone(), g.total);
            }
            let totals = Arc::new(totals);
            let mut handles = Vec::new();
            for ops in tasks {
                let repo = Arc::clone(&repo);
                let (workers, ghost, containers) =
                    (workers.clone(), ghost.clone(), containers.clone());
                let totals = Arc::clone(&totals);
                handles.push(tokio::spawn(async move {
                    for op in ops {
                        match op {
                            DirectOp::Reserve { partial, parts } => {
                                let batch = direct_batch(&parts, &workers, &ghost, &containers);
                                let mode = if partial {
                                    CommitMode::Partial
                                } else {
                                    CommitMode::AllOrNothing
                                };
                                let out = repo
                                    .reserve_batch(&batch, mode)
                                    .await
                                    .expect("reserve_batch");
                                assert_eq!(out.len(), batch.len(), "one result per worker");
                                for (r, b) in out.iter().zip(&batch) {
                                    assert_eq!(r.worker_id, b.worker_id, "results in input order");
                                    if let Ok(c) = &r.outcome {
                                        assert!(
                                            c.free.le(&totals[&r.worker_id]),
                                            "Committed.free above total: {c:?}"
                                        );
                                        assert!(
                                            c.accepted >= 1 && c.accepted <= b.reservations.len()
                                        );
                                        if mode == CommitMode::AllOrNothing {
                                            assert_eq!(
                                                c.accepted,
                                                b.reservations.len(),
                                                "all-or-nothing commits all"
                                            );
                                        }
                                    }
                                    if r.worker_id == ghost {
                                        assert_eq!(r.outcome, Err(Rejection::UnknownWorker));
                                    }
                                }
                            }
                            DirectOp::Release(cs) => {
                                let ids: Vec<String> = cs
                                    .into_iter()
                                    .collect::<BTreeSet<_>>()
                                    .into_iter()
                                    .map(|c| containers[c].clone())
                                    .collect();
                                let out = repo.release_batch(&ids).await.expect("release_batch");
                                assert_eq!(out.len(), ids.len());
                                for (o, id) in out.iter().zip(&ids) {
                                    assert_eq!(&o.container_id, id, "outcomes in input order");
                                }
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for h in handles {
                if let Err(e) = h.await {
                    match e.try_into_panic() {
                        Ok(p) => std::panic::resume_unwind(p),
                        Err(e) => panic!("task failed: {e}"),
                    }
                }
            }
            assert_invariants(&*repo, &workers, &containers).await;
            remove_all(&*repo, &workers).await;
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Concurrent schedulers
// ---------------------------------------------------------------------------------------------

fn scheduler_config(variant: usize) -> SchedulerConfig {
    let mut c = SchedulerConfig::default();
    match variant % 5 {
        0 => {}
        1 => c.version_checks = true,
        2 => c.commit_mode = CommitMode::AllOrNothing,
        3 => {
            c.best_fit = true;
            c.cache_ttl = Duration::ZERO;
        }
        _ => {
            c.batching = false;
            c.cpu_on_gpu_workers = true;
        }
    }
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(10);
    c
}

/// One generated scheduler: its config variant, a first burst (ids from a pool shared by all
/// schedulers) and a second burst (ids of its own) run while it releases part of the first.
#[derive(Debug, Clone)]
struct GenScheduler {
    variant: usize,
    first: Vec<(usize, Resources, Option<&'static str>)>,
    second: Vec<(Resources, Option<&'static str>)>,
    release_mask: u64,
}

const SHARED_CONTAINERS: usize = 24;

fn gen_scheduler() -> impl Strategy<Value = GenScheduler> {
    (
        0usize..5,
        vec((0..SHARED_CONTAINERS, gen_demand()), 1..12),
        vec(gen_demand(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(variant, first, second, release_mask)| GenScheduler {
            variant,
            first: first.into_iter().map(|(c, (r, t))| (c, r, t)).collect(),
            second,
            release_mask,
        })
}

fn request(id: String, r: Resources, t: Option<&'static str>, pool: &str) -> ContainerRequest {
    let req = ContainerRequest::new(id, r).with_pool(pool);
    match t {
        Some(t) if t == GPU_TYPES[0] => req.with_gpu_types([t]),
        Some(_) => req.with_gpu_types([sched_core::ANY_GPU]),
        None => req,
    }
}

async fn schedule_checked(
    sched: &Scheduler<Arc<dyn WorkerRepository>>,
    reqs: Vec<ContainerRequest>,
) -> Vec<(String, String)> {
    let ids: Vec<String> = reqs.iter().map(|r| r.id.clone()).collect();
    let out = sched.schedule_batch(reqs).await;
    assert_eq!(
        out.len(),
        ids.len(),
        "schedule_batch returns one result per request"
    );
    let mut placed = Vec::new();
    for (r, id) in out.into_iter().zip(ids) {
        match r {
            Ok(p) => {
                assert_eq!(p.container_id, id, "results in input order");
                placed.push((p.container_id, p.worker_id));
            }
            Err(e) => {
                assert_eq!(e.container_id(), id, "results in input order");
                assert!(
                    !matches!(e, ScheduleError::InvalidRequest { .. }),
                    "a valid request was refused: {e}"
                );
            }
        }
    }
    placed
}

/// Several [`Scheduler`]s (different configurations) place bursts at once, with overlapping
/// container ids, then release part of them while placing more. Every successful placement is
/// found by `find_reservation` on its worker (unless released since), and the invariants hold.
pub fn concurrent_schedulers(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (vec(gen_worker(), 2..=5), vec(gen_scheduler(), 2..=4));
    run("concurrent_schedulers", cfg, strategy, |(gws, scheds)| {
        handle.block_on(async {
            let ns = Ns::new("prop-sched");
            let pool = ns.pool("p");
            let workers: Vec<String> = (0..gws.len()).map(|i| ns.worker(&i.to_string())).collect();
            for (id, g) in workers.iter().zip(&gws) {
                let mut spec = WorkerSpec::new(id.clone(), g.total)
                    .with_pool(pool.clone())
                    .requiring_pool_selector();
                spec.gpu_type = g.gpu_type.map(str::to_owned);
                repo.register_worker(&spec).await.expect("register_worker");
            }
            let shared: Vec<String> = (0..SHARED_CONTAINERS)
                .map(|i| ns.container(&format!("s{i}")))
                .collect();
            let schedulers: Vec<Scheduler<Arc<dyn WorkerRepository>>> = scheds
                .iter()
                .map(|g| Scheduler::new(Arc::clone(&repo), scheduler_config(g.variant)))
                .collect();

            // Phase 1: overlapping first bursts, no releases. Every placement must hold.
            let mut tasks = Vec::new();
            for (s, g) in schedulers.iter().zip(&scheds) {
                let mut seen = HashSet::new();
                let reqs: Vec<ContainerRequest> = g
                    .first
                    .iter()
                    .filter(|(c, _, _)| seen.insert(*c))
                    .map(|(c, r, t)| request(shared[*c].clone(), *r, *t, &pool))
                    .collect();
                let s = s.clone();
                tasks.push(tokio::spawn(
                    async move { schedule_checked(&s, reqs).await },
                ));
            }
            let mut placed_first = Vec::new();
            for t in tasks {
                placed_first.push(
                    t.await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                );
            }
            for placed in &placed_first {
                for (c, w) in placed {
                    let rec = repo.find_reservation(c).await.expect("find_reservation");
                    assert_eq!(
                        rec.map(|r| r.worker_id).as_ref(),
                        Some(w),
                        "placement of {c:?} must be held on {w:?}"
                    );
                }
            }
            assert_invariants(&*repo, &workers, &shared).await;

            // Phase 2: each scheduler releases part of what it placed while placing a burst of
            // its own ids. Those new placements must hold afterwards.
            let mut tasks = Vec::new();
            for (i, ((s, g), placed)) in schedulers
                .iter()
                .zip(&scheds)
                .zip(&placed_first)
                .enumerate()
            {
                let release: Vec<String> = placed
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| g.release_mask & (1 << (k % 64)) != 0)
                    .map(|(_, (c, _))| c.clone())
                    .collect();
                let reqs: Vec<ContainerRequest> = g
                    .second
                    .iter()
                    .enumerate()
                    .map(|(k, (r, t))| request(ns.container(&format!("own{i}-{k}")), *r, *t, &pool))
                    .collect();
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let (placed, released) =
                        futures::join!(schedule_checked(&s, reqs), s.release(&release));
                    let released = released.expect("release");
                    assert_eq!(released.len(), release.len());
                    placed
                }));
            }
            let mut own = Vec::new();
            for t in tasks {
                own.extend(
                    t.await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                );
            }
            for (c, w) in &own {
                let rec = repo.find_reservation(c).await.expect("find_reservation");
                assert_eq!(
                    rec.map(|r| r.worker_id).as_ref(),
                    Some(w),
                    "placement of {c:?} must be held on {w:?}"
                );
            }
            let mut all: Vec<String> = shared.clone();
            all.extend(own.into_iter().map(|(c, _)| c));
            assert_invariants(&*repo, &workers, &all).await;
            remove_all(&*repo, &workers).await;
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Sequential model-based test
// ---------------------------------------------------------------------------------------------

const MODEL_WORKERS: usize = 4;
const MODEL_CONTAINERS: usize = 10;
const MODEL_POOLS: usize = 2;

/// How a generated reservation part sets `expected_version`.
#[derive(Debug, Clone, Copy)]
enum Expect {
    No,
    Current,
    Off(i8),
}

/// A generated model part: worker index, version expectation, (container, amounts, GPU type).
type ModelPart = (usize, Expect, Vec<(usize, Resources, Option<usize>)>);

/// One generated operation.
#[derive(Debug, Clone)]
enum Op {
    Register {
        w: usize,
        total: Resources,
        gpu: Option<usize>,
        status: WorkerStatus,
        pool: usize,
    },
    Reserve {
        mode: CommitMode,
        parts: Vec<ModelPart>,
    },
    /// Re-registers an existing worker with its total shrunk by `shrink` steps per kind (which
    /// may go below what is reserved) and a new status; registers a default worker if absent.
    Reregister {
        w: usize,
        shrink: (u64, u64, u64),
        status: WorkerStatus,
    },
    Release(Vec<usize>),
    Remove(usize),
    Reconcile(usize),
}

fn gen_status() -> impl Strategy<Value = WorkerStatus> {
    prop_oneof![
        8 => Just(WorkerStatus::Available),
        1 => Just(WorkerStatus::Draining),
        1 => Just(WorkerStatus::Disabled),
    ]
}

fn gen_register() -> impl Strategy<Value = Op> {
    (
        0..MODEL_WORKERS,
        (0u64..=8, 0u64..=8, 0u64..=3),
        proptest::option::weighted(0.4, 0usize..2),
        gen_status(),
        0..MODEL_POOLS,
    )
        .prop_map(|(w, (c, m, g), gpu, status, pool)| Op::Register {
            w,
            total: Resources::new(c * 500, m * 512, g),
            gpu,
            status,
            pool,
        })
}

/// Registrations of every model worker, to start each sequence with a populated store.
fn gen_prelude() -> impl Strategy<Value = Vec<Op>> {
    vec(gen_register(), MODEL_WORKERS).prop_map(|ops| {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| match op {
                Op::Register {
                    total,
                    gpu,
                    status,
                    pool,
                    ..
                } => Op::Register {
                    w: i,
                    total,
                    gpu,
                    status,
                    pool,
                },
                other => other,
            })
            .collect()
    })
}

fn gen_op() -> impl Strategy<Value = Op> {
    let status2 = gen_status();
    let register = gen_register();
    let expect = prop_oneof![
        3 => Just(Expect::No),
        2 => Just(Expect::Current),
        1 => prop_oneof![Just(-2i8), Just(-1), Just(1), Just(2)].prop_map(Expect::Off),
    ];
    // Amounts may be zero in every kind (rarely): the model expects InvalidInput then.
    let demand = (
        (
            0u64..=4,
            0u64..=4,
            prop_oneof![4 => Just(0u64), 1 => 1u64..=2],
        ),
        proptest::option::weighted(0.3, 0usize..2),
    )
        .prop_map(|((c, m, g), t)| (Resources::new(c * 250, m * 256, g), t));
    let part = (
        0..MODEL_WORKERS + 1,
        expect,
        vec((0..MODEL_CONTAINERS, demand), 1..4),
    )
        .prop_map(|(w, e, rs)| (w, e, rs.into_iter().map(|(c, (r, t))| (c, r, t)).collect()));
    let reserve = (any::<bool>(), vec(part, 0..4)).prop_map(|(p, parts)| Op::Reserve {
        mode: if p {
            CommitMode::Partial
        } else {
            CommitMode::AllOrNothing
        },
        parts,
    });
    let reregister = (0..MODEL_WORKERS, (0u64..=3, 0u64..=3, 0u64..=1), status2)
        .prop_map(|(w, shrink, status)| Op::Reregister { w, shrink, status });
    prop_oneof![
        3 => register,
        2 => reregister,
        5 => reserve,
        3 => vec(0..MODEL_CONTAINERS + 1, 0..5).prop_map(Op::Release),
        1 => (0..MODEL_WORKERS + 1).prop_map(Op::Remove),
        1 => (0..MODEL_WORKERS + 1).prop_map(Op::Reconcile),
    ]
}

/// The reference model: a worker's spec and ledger; free is always derived from the ledger.
#[derive(Debug, Clone)]
struct MWorker {
    spec: WorkerSpec,
    ledger: BTreeMap<String, (Resources, Option<String>)>,
}

#[derive(Debug, Default)]
struct Model {
    workers: BTreeMap<String, MWorker>,
    /// Last version seen for each worker id, kept after removal (versions never repeat).
    versions: HashMap<String, u64>,
}

/// What the model expects of one worker's part.
#[derive(Debug)]
enum PartExpect {
    /// Rejected with one of these.
    Rejected(Vec<Rejection>),
    /// Committed.
    Committed {
        accepted: usize,
        free: Resources,
        remainder: Option<Vec<Rejection>>,
        new: Vec<ResourceReservation>,
    },
}

fn shortfalls(container: &str, free: &Resources, want: &Resources) -> Vec<Rejection> {
    ResourceKind::ALL
        .into_iter()
        .filter(|k| want.get(*k) > free.get(*k))
        .map(|k| Rejection::InsufficientCapacity {
            container_id: container.to_owned(),
            resource: k,
            requested: want.get(k),
            available: free.get(k),
        })
        .collect()
}

impl Model {
    fn reserved(&self, w: &str) -> Resources {
        let mut sum = Resources::ZERO;
        if let Some(m) = self.workers.get(w) {
            for (r, _) in m.ledger.values() {
                sum = Resources::new(
                    sum.cpu_millicores + r.cpu_millicores,
                    sum.memory_mib + r.memory_mib,
                    sum.gpu_count + r.gpu_count,
                );
            }
        }
        sum
    }

    fn free(&self, w: &str) -> Resources {
        let total = self
            .workers
            .get(w)
            .map(|m| m.spec.total)
            .unwrap_or_default();
        let r = self.reserved(w);
        Resources::new(
            total.cpu_millicores - r.cpu_millicores,
            total.memory_mib - r.memory_mib,
            total.gpu_count - r.gpu_count,
        )
    }

    fn holder(&self, c: &str) -> Option<&str> {
        self.workers
            .iter()
            .find(|(_, m)| m.ledger.contains_key(c))
            .map(|(id, _)| id.as_str())
    }

    fn part(&self, b: &CapacityReservation, mode: CommitMode) -> PartExpect {
        let Some(m) = self.workers.get(&b.worker_id) else {
            return PartExpect::Rejected(vec![Rejection::UnknownWorker]);
        };
        let current = self.versions[&b.worker_id];
        if let Some(e) = b.expected_version {
            if e != current {
                return PartExpect::Rejected(vec![Rejection::VersionConflict {
                    expected: e,
                    current,
                }]);
            }
        }
        if m.spec.status != WorkerStatus::Available {
            return PartExpect::Rejected(vec![Rejection::WorkerUnavailable {
                status: m.spec.status,
            }]);
        }
        let mut free = self.free(&b.worker_id);
        let mut accepted = 0;
        let mut new = Vec::new();
        let mut stop = None;
        for r in &b.reservations {
            match self.holder(&r.container_id) {
                Some(h) if h == b.worker_id => {
                    accepted += 1;
                    continue;
                }
                Some(h) => {
                    stop = Some(vec![Rejection::AlreadyReserved {
                        container_id: r.container_id.clone(),
                        worker_id: h.to_owned(),
                    }]);
                    break;
                }
                None => {}
            }
            if let Some(t) = &r.gpu_type {
                if m.spec.gpu_type.as_ref() != Some(t) {
                    stop = Some(vec![Rejection::GpuTypeMismatch {
                        container_id: r.container_id.clone(),
                        requested: t.clone(),
                        actual: m.spec.gpu_type.clone(),
                    }]);
                    break;
                }
            }
            let short = shortfalls(&r.container_id, &free, &r.resources);
            if !short.is_empty() {
                stop = Some(short);
                break;
            }
            free = free.saturating_sub(&r.resources);
            new.push(r.clone());
            accepted += 1;
        }
        match stop {
            Some(alts) if mode == CommitMode::AllOrNothing || accepted == 0 => {
                PartExpect::Rejected(alts)
            }
            remainder => PartExpect::Committed {
                accepted,
                free,
                remainder,
                new,
            },
        }
    }

    fn expected_worker(&self, id: &str) -> Option<Worker> {
        self.workers.get(id).map(|m| {
            let mut w = Worker::from_spec(&m.spec, self.versions[id]);
            w.free = self.free(id);
            w
        })
    }

    fn records(&self, id: &str) -> Vec<ReservationRecord> {
        self.workers.get(id).map_or_else(Vec::new, |m| {
            m.ledger
                .iter()
                .map(|(c, (r, t))| ReservationRecord {
                    worker_id: id.to_owned(),
                    container_id: c.clone(),
                    resources: *r,
                    gpu_type: t.clone(),
                })
                .collect()
        })
    }
}

fn is_invalid<T: Debug>(r: &Result<T, RepoError>) -> bool {
    matches!(r, Err(RepoError::InvalidInput(_)))
}

struct ModelRun<'a> {
    repo: &'a dyn WorkerRepository,
    model: Model,
    workers: Vec<String>,
    containers: Vec<String>,
    pools: Vec<String>,
}

impl ModelRun<'_> {
    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Register {
                w,
                total,
                gpu,
                status,
                pool,
            } => self.register(*w, *total, *gpu, *status, *pool).await,
            Op::Reregister { w, shrink, status } => {
                let id = self.worker_id(*w);
                let spec = match self.model.workers.get(&id) {
                    Some(m) => {
                        let t = m.spec.total;
                        let total = t.saturating_sub(&Resources::new(
                            shrink.0 * 250,
                            shrink.1 * 256,
                            shrink.2,
                        ));
                        WorkerSpec {
                            total,
                            status: *status,
                            ..m.spec.clone()
                        }
                    }
                    None => WorkerSpec::new(id.clone(), Resources::new(4000, 4096, 0))
                        .with_pool(self.pools[0].clone())
                        .with_status(*status)
                        .requiring_pool_selector(),
                };
                self.register_spec(spec).await;
            }
            Op::Reserve { mode, parts } => self.reserve(*mode, parts).await,
            Op::Release(cs) => self.release(cs).await,
            Op::Remove(w) => {
                let id = self.worker_id(*w);
                let got = self.repo.remove_worker(&id).await.expect("remove_worker");
                assert_eq!(
                    got,
                    self.model.workers.remove(&id).is_some(),
                    "remove_worker({id:?}) says whether it existed"
                );
            }
            Op::Reconcile(w) => {
                let id = self.worker_id(*w);
                let got = self.repo.reconcile(&id).await;
                if self.model.workers.contains_key(&id) {
                    let report = got.expect("reconcile");
                    assert!(report.is_consistent(), "reconcile found drift: {report:?}");
                    assert_eq!(report.reserved, self.model.reserved(&id));
                } else {
                    assert!(
                        matches!(got, Err(RepoError::UnknownWorker(_))),
                        "reconcile of unknown worker: {got:?}"
                    );
                }
            }
        }
    }

    /// The worker id for an index; one past the end is a worker that never exists.
    fn worker_id(&self, w: usize) -> String {
        self.workers
            .get(w)
            .cloned()
            .unwrap_or_else(|| format!("{}ghost", self.workers[0]))
    }

    async fn register(
        &mut self,
        w: usize,
        total: Resources,
        gpu: Option<usize>,
        status: WorkerStatus,
        pool: usize,
    ) {
        let id = self.workers[w].clone();
        let mut spec = WorkerSpec::new(id.clone(), total)
            .with_pool(self.pools[pool].clone())
            .with_status(status)
            .requiring_pool_selector();
        spec.gpu_type = gpu.map(|g| GPU_TYPES[g].to_owned());
        self.register_spec(spec).await;
    }

    async fn register_spec(&mut self, spec: WorkerSpec) {
        let id = spec.id.clone();
        let total = spec.total;
        let got = self.repo.register_worker(&spec).await;
        let reserved = self.model.reserved(&id);
        let short: Vec<ResourceKind> = ResourceKind::ALL
            .into_iter()
            .filter(|k| total.get(*k) < reserved.get(*k))
            .collect();
        if !short.is_empty() {
            match got {
                Err(RepoError::TotalBelowReserved { resource, total: t, reserved: r }) => {
                    assert!(short.contains(&resource), "TotalBelowReserved names {resource}, short: {short:?}");
                    assert_eq!((t, r), (total.get(resource), reserved.get(resource)));
                }
                other => panic!("re-registration below reserved {reserved}: expected TotalBelowReserved, got {other:?}"),
            }
            return;
        }
        let got = got.expect("register_worker");
        if let Some(&last) = self.model.versions.get(&id) {
            assert!(
                got.resource_version > last,
                "registration must bump the version past {last}: {got:?}"
            );
        }
        let ledger = self
            .model
            .workers
            .remove(&id)
            .map(|m| m.ledger)
            .unwrap_or_default();
        self.model
            .workers
            .insert(id.clone(), MWorker { spec, ledger });
        self.model.versions.insert(id.clone(), got.resource_version);
        assert_eq!(
            Some(got),
            self.model.expected_worker(&id),
            "register_worker's answer"
        );
    }

    async fn reserve(&mut self, mode: CommitMode, parts: &[ModelPart]) {
        let batch: Vec<CapacityReservation> = parts
            .iter()
            .map(|(w, e, rs)| {
                let id = self.worker_id(*w);
                let v = self.model.versions.get(&id).copied().unwrap_or(1);
                let expected_version = match e {
                    Expect::No => None,
                    Expect::Current => Some(v),
                    Expect::Off(d) => Some(v.checked_add_signed(i64::from(*d)).unwrap_or(v + 1)),
                };
                CapacityReservation {
                    worker_id: id,
                    expected_version,
                    reservations: rs
                        .iter()
                        .map(|(c, r, t)| ResourceReservation {
                            container_id: self.containers[*c].clone(),
                            resources: *r,
                            gpu_type: t.map(|g| GPU_TYPES[g].to_owned()),
                        })
                        .collect(),
                }
            })
            .collect();
        let got = self.repo.reserve_batch(&batch, mode).await;
        let mut ws = HashSet::new();
        let mut cs = HashSet::new();
        let invalid = batch.iter().any(|b| {
            !ws.insert(&b.worker_id)
                || b.reservations
                    .iter()
                    .any(|r| !cs.insert(&r.container_id) || r.resources.is_zero())
        });
        if invalid {
            assert!(is_invalid(&got), "a batch with a repeated worker or container or a zero reservation must be InvalidInput, got {got:?}");
            return;
        }
        let got = got.expect("reserve_batch");
        assert_eq!(got.len(), batch.len(), "one result per worker");
        for (b, r) in batch.iter().zip(got) {
            assert_eq!(r.worker_id, b.worker_id, "results in input order");
            match (self.model.part(b, mode), r.outcome) {
                (PartExpect::Rejected(alts), Err(rej)) => {
                    assert!(
                        alts.contains(&rej),
                        "{}: rejection {rej:?} is not one of {alts:?}",
                        b.worker_id
                    );
                }
                (
                    PartExpect::Committed {
                        accepted,
                        free,
                        remainder,
                        new,
                    },
                    Ok(c),
                ) => {
                    assert_eq!(
                        (c.accepted, c.free),
                        (accepted, free),
                        "{}: accepted / free",
                        b.worker_id
                    );
                    match (&remainder, &c.remainder) {
                        (None, None) => {}
                        (Some(alts), Some(rej)) => assert!(
                            alts.contains(rej),
                            "remainder {rej:?} is not one of {alts:?}"
                        ),
                        (want, got) => panic!(
                            "{}: remainder {got:?}, expected one of {want:?}",
                            b.worker_id
                        ),
                    }
                    let old = self.model.versions[&b.worker_id];
                    if new.is_empty() {
                        assert_eq!(
                            c.new_version, old,
                            "nothing new charged: the version must not change"
                        );
                    } else {
                        assert!(c.new_version > old, "a charge must bump the version");
                    }
                    self.model
                        .versions
                        .insert(b.worker_id.clone(), c.new_version);
                    if let Some(m) = self.model.workers.get_mut(&b.worker_id) {
                        for r in new {
                            m.ledger.insert(r.container_id, (r.resources, r.gpu_type));
                        }
                    }
                }
                (want, got) => panic!("{}: expected {want:?}, got {got:?}", b.worker_id),
            }
        }
    }

    async fn release(&mut self, cs: &[usize]) {
        let ids: Vec<String> = cs
            .iter()
            .map(|&c| {
                self.containers
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("{}never", self.containers[0]))
            })
            .collect();
        let got = self.repo.release_batch(&ids).await;
        if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            assert!(
                is_invalid(&got),
                "a release with a repeated id must be InvalidInput, got {got:?}"
            );
            return;
        }
        let got = got.expect("release_batch");
        assert_eq!(got.len(), ids.len());
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (id, o) in ids.iter().zip(got) {
            assert_eq!(&o.container_id, id, "outcomes in input order");
            let holder = self.model.holder(id).map(str::to_owned);
            match (holder, o.released) {
                (None, None) => {}
                (Some(w), Some(rel)) => {
                    let (res, _) = self
                        .model
                        .workers
                        .get_mut(&w)
                        .and_then(|m| m.ledger.remove(id))
                        .expect("model holder");
                    assert_eq!(
                        (rel.worker_id.as_str(), rel.resources),
                        (w.as_str(), res),
                        "Released for {id:?}"
                    );
                    assert!(
                        rel.new_version > self.model.versions[&w],
                        "a release must bump the version"
                    );
                    let e = newest.entry(w).or_insert(0);
                    *e = (*e).max(rel.new_version);
                }
                (want, got) => panic!("release of {id:?}: model holder {want:?}, got {got:?}"),
            }
        }
        self.model.versions.extend(newest);
    }

    /// The repo's state equals the model's.
    async fn compare(&self, after: &str) {
        for id in &self.workers {
            let got = self.repo.get_worker(id).await.expect("get_worker");
            assert_eq!(
                got,
                self.model.expected_worker(id),
                "after {after}: get_worker({id:?})"
            );
            if got.is_some() {
                let l = self
                    .repo
                    .list_reservations(id)
                    .await
                    .expect("list_reservations");
                assert_eq!(
                    l,
                    self.model.records(id),
                    "after {after}: list_reservations({id:?})"
                );
                let a = self.repo.audit(id).await.expect("audit");
                assert!(a.is_consistent(), "after {after}: audit {a:?}");
            }
        }
        for c in &self.containers {
            let got = self
                .repo
                .find_reservation(c)
                .await
                .expect("find_reservation");
            let want = self.model.holder(c).map(|w| w.to_owned());
            assert_eq!(
                got.map(|r| r.worker_id),
                want,
                "after {after}: find_reservation({c:?})"
            );
        }
        for p in &self.pools {
            let got = self.repo.list_workers(Some(p)).await.expect("list_workers");
            let want: Vec<Worker> = self
                .workers
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|id| self.model.expected_worker(id))
                .filter(|w| &w.pool == p)
                .collect();
            assert_eq!(got, want, "after {after}: list_workers({p:?})");
        }
    }
}

/// Random sequences of register, reserve (both modes, with and without `expected_version`),
/// release, remove, re-register and reconcile; after each operation the repository's answers
/// and its whole state equal a reference model's.
pub fn model_sequences(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (gen_prelude(), vec(gen_op(), 1..40));
    run("model_sequences", cfg, strategy, |(prelude, ops)| {
        handle.block_on(async {
            let ns = Ns::awkward("prop-model");
            let mut run = ModelRun {
                repo: &*repo,
                model: Model::default(),
                workers: (0..MODEL_WORKERS)
                    .map(|i| ns.worker(&format!("{i}")))
                    .collect(),
                containers: (0..MODEL_CONTAINERS)
                    .map(|i| ns.container(&format!("{i}")))
                    .collect(),
                pools: (0..MODEL_POOLS).map(|i| ns.pool(&format!("{i}"))).collect(),
            };
            for op in &prelude {
                run.apply(op).await;
            }
            run.compare("the prelude").await;
            for (i, op) in ops.iter().enumerate() {
                run.apply(op).await;
                run.compare(&format!("op {i} {op:?}")).await;
            }
            let workers = run.workers.clone();
            remove_all(&*repo, &workers).await;
        });
    });
}
