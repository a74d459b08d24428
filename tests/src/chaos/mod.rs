//! The chaos property test: random histories of concurrent bursts from several
//! [`Scheduler`](sched_core::Scheduler)s (batching on and off, both commit modes, version checks,
//! no cache) and direct callers (`reserve_batch`, `release_batch`), with releases and
//! re-registrations that change pool and total, while faults fire: sched-core's
//! [`Faulty`](sched_core::layers::Faulty) layer (every fault kind on every method, lookups
//! included) on every backend, plus the backend's [`RealFaults`] (Redis Cluster node faults,
//! a reply dropped by a [`FaultProxy`](crate::proxy::FaultProxy), `pg_terminate_backend`).
//!
//! After each round every answer is compared with the store (ids only one action touched):
//! every `Ok(Placement)` is held on exactly that worker with exactly the requested resources,
//! every `Err` left the id as it was (unless [`may_be_held`]), every release left it not held,
//! every `reserve_batch` holds exactly its accepted prefix; the same id twice in one call gets
//! one answer. After each case: `free + Σ ledger = total` and zero audit drift per worker, one
//! holder per container, lookups agree with the ledgers, and once the faults stop every id that
//! failed can be scheduled again (placed, or found held once). A failing history is shrunk by
//! proptest to a minimal one (histories are data: [`History`], applied by an interpreter).
//!
//! Files: `history.rs` (the data and its generators), `interpret.rs` (applies a history),
//! `check.rs` (the checks), `real.rs` and `redis_nodes.rs` (real faults), `report.rs` (counts).
//! `sched-sim chaos` runs the same histories, drawn from a seed, as a soak ([`run_seeded`]).

mod check;
mod history;
mod interpret;
mod real;
mod redis_nodes;
mod report;

pub use history::{
    history, Action, FaultKind, GenFault, GenReal, GenScheduler, GenWorker, History, Req, Round,
    Sizes,
};
pub use interpret::may_be_held;
pub use real::{AllFaults, FnFaults, InjectFn, Injected, ProxyFaults, RealFaults};
pub use redis_nodes::{authority, RedisNodeFaults};
pub use report::{ChaosReport, EXAMPLES_PER_CLASS, KEEP_VIOLATIONS};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sched_core::WorkerRepository;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::runtime::Handle;

/// What a chaos run works on.
#[derive(Clone)]
pub struct Target {
    /// The repository, without faults (the checks read it directly).
    pub repo: Arc<dyn WorkerRepository>,
    /// The backend's real faults, if any.
    pub real: Option<Arc<dyn RealFaults>>,
    /// Tag of the namespaces (one fresh namespace per case).
    pub tag: String,
    /// History sizes.
    pub sizes: Sizes,
    /// Set once a call hung: the client is taken as wedged and later cases stop at once
    /// (their own violation), instead of waiting out every timeout.
    pub wedged: Arc<AtomicBool>,
}

impl Target {
    /// `repo` with [`Sizes::SMALL`] histories and no real faults.
    pub fn new(repo: Arc<dyn WorkerRepository>, tag: &str) -> Self {
        Target {
            repo,
            real: None,
            tag: tag.to_owned(),
            sizes: Sizes::SMALL,
            wedged: Arc::default(),
        }
    }

    /// Adds real faults.
    pub fn with_real(mut self, real: Arc<dyn RealFaults>) -> Self {
        self.real = Some(real);
        self
    }
}

/// Cases per run: `CHAOS_CASES` if set, else `default`.
pub fn cases_from_env(default: u32) -> u32 {
    std::env::var("CHAOS_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs one history on `target` in a fresh namespace and returns what it found.
pub async fn run_case(target: &Target, h: &History) -> ChaosReport {
    let mut report = ChaosReport {
        cases: 1,
        requests: h.requests() as u64,
        ..ChaosReport::default()
    };
    if target.wedged.load(Ordering::SeqCst) {
        report.violation_of(
            "wedged-client",
            "not run: a call of an earlier case hung, the client stays wedged".into(),
        );
        return report;
    }
    let mut case = interpret::Case::new(target, h, &mut report).await;
    for (r, round) in h.rounds.iter().enumerate() {
        case.round(r, round, &mut report).await;
        if report.classes.contains_key("hung-call") {
            // Every later call would wait out its timeout too; the store is left to the
            // run's clean-up (a fresh connection), and the case ends here.
            target.wedged.store(true, Ordering::SeqCst);
            return report;
        }
    }
    check::finish(case, &mut report).await;
    report
}

/// The chaos property on `target`: `cases` random histories, each checked; a failure is
/// shrunk (at most `max_shrink_iters` steps) and reported with its minimal history. Call it
/// from a blocking thread with the handle of a multi-thread runtime.
pub fn chaos(handle: &Handle, target: &Target, cases: u32, max_shrink_iters: u32) -> ChaosReport {
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    });
    let total = std::sync::Mutex::new(ChaosReport::default());
    let strategy = history(target.sizes, target.real.is_some());
    let result = runner.run(&strategy, |h| {
        let report = handle.block_on(run_case(target, &h));
        let clean = report.clean();
        let text = report.to_string();
        total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(report);
        if clean {
            Ok(())
        } else {
            Err(proptest::test_runner::TestCaseError::fail(text))
        }
    });
    let total = total.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = result {
        panic!(
            "chaos on {} failed:\n{e}\n(all cases run, including shrinking steps:)\n{total}",
            target.tag
        );
    }
    total
}

/// True when `CHAOS_KEEP_GOING` is set: run every case without stopping or shrinking at the
/// first failure, to count every class of violation (the run still fails at the end).
pub fn keep_going() -> bool {
    std::env::var("CHAOS_KEEP_GOING").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// [`chaos`] from inside a multi-thread Tokio runtime: runs it on a blocking thread. Shrinking
/// takes at most `CHAOS_SHRINK` steps (default 128); with [`keep_going`], every case runs
/// and the summed report is checked at the end instead.
pub async fn chaos_async(target: Target, cases: u32) -> ChaosReport {
    if keep_going() {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        let mut total = ChaosReport::default();
        for n in 0..u64::from(cases) {
            let h = draw(target.sizes, target.real.is_some(), seed, n);
            total.merge(run_case(&target, &h).await);
        }
        assert!(
            total.clean(),
            "chaos on {} (seed {seed}):\n{total}",
            target.tag
        );
        return total;
    }
    let shrink = std::env::var("CHAOS_SHRINK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || chaos(&handle, &target, cases, shrink));
    match task.await {
        Ok(r) => r,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("chaos task failed: {e}"),
        },
    }
}

/// Draws history number `n` of the sequence seeded by `seed` (the same seed and `n` always give
/// the same history), for `sched-sim chaos`.
pub fn draw(sizes: Sizes, real: bool, seed: u64, n: u64) -> History {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&n.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    loop {
        if let Ok(tree) = history(sizes, real).new_tree(&mut runner) {
            return tree.current();
        }
    }
}

/// Runs histories drawn from `seed` on `target` until `placements` containers were placed (or
/// a call hung, which ends the run), calling `progress` after each; returns the summed report.
pub async fn run_seeded(
    target: &Target,
    seed: u64,
    placements: u64,
    mut progress: impl FnMut(&ChaosReport),
) -> ChaosReport {
    let mut total = ChaosReport::default();
    let mut n = 0;
    while total.placements < placements && !target.wedged.load(Ordering::SeqCst) {
        let h = draw(target.sizes, target.real.is_some(), seed, n);
        total.merge(run_case(target, &h).await);
        progress(&total);
        n += 1;
    }
    total
}
