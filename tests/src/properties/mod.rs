//! Property tests (proptest) on random workers and random bursts, against any backend.
//!
//! * [`concurrent_callers()`]: several tasks call `reserve_batch` and `release_batch` directly,
//!   on overlapping workers and overlapping container ids;
//! * [`concurrent_schedulers()`]: several [`Scheduler`](sched_core::Scheduler)s place and release
//!   bursts at once;
//! * [`model_sequences()`]: random sequences of operations, each compared with a small reference
//!   model written independently of every backend;
//! * [`scheduler_answers()`]: one scheduler answers bursts with repeated ids while commits lose
//!   their replies and lookups fail; every answer must agree with the store;
//! * the lifecycle ([`run_lifecycle`]): [`lifecycle_sequences()`] (model sequences with leases,
//!   renewals, sweeps, heartbeats, stale policies, status changes, bulk release and passing
//!   time, by the store's real clock), [`lifecycle_sequences_exact()`] (the same on a store
//!   whose clock the test moves, every answer predicted), and [`renewals_race_sweeps()`]
//!   (holders renewing short leases while sweepers expire them). They need a backend that
//!   implements the lifecycle calls, so they are not part of [`run_all`].
//!
//! After every case: for each worker `free + Σ ledger = total`, no container is held on two
//! workers, `find_reservation` agrees with the ledgers, and audit drift is zero.
//!
//! Proptest is synchronous, so each case blocks on a Tokio runtime [`Handle`]; call these from a
//! plain `#[test]` with your own runtime, or from a multi-thread `#[tokio::test]` through
//! [`run_all_async`]. Each case works in a fresh [`Ns`](crate::ns::Ns), so the store may be
//! shared. Case counts come from [`PropConfig`] (`PROPTEST_CASES` overrides the default).
//!
//! ## Files
//!
//! * `mod.rs`: [`PropConfig`], the proptest runner, [`run_all`] and [`run_all_async`];
//! * `support.rs`: the shared generators (workers, demands), the after-case invariants and the
//!   cleanup;
//! * `concurrent_callers.rs`, `concurrent_schedulers.rs` and `scheduler_answers.rs`: one
//!   property each;
//! * `model.rs`: the reference model (a worker's spec and ledger, and what one worker's part of
//!   a batch should do), deliberately written apart from `sched_core::rules` as a second opinion;
//! * `model_ops.rs`: the generated operations of a model sequence and their generators;
//! * `model_sequences.rs`: the driver that applies each operation to the repository and to the
//!   model, [`model_sequences()`] and the lifecycle sequences; `model_lifecycle.rs`: its
//!   lifecycle steps; `model_compare.rs`: the whole-state comparison after every step;
//! * `lease_race.rs`: [`renewals_race_sweeps()`].

mod concurrent_callers;
mod concurrent_schedulers;
mod lease_race;
mod model;
mod model_compare;
mod model_lifecycle;
mod model_ops;
mod model_sequences;
mod scheduler_answers;
mod support;

pub use concurrent_callers::concurrent_callers;
pub use concurrent_schedulers::concurrent_schedulers;
pub use lease_race::renewals_race_sweeps;
pub use model_sequences::{lifecycle_sequences, lifecycle_sequences_exact, model_sequences};
pub use scheduler_answers::scheduler_answers;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};
use sched_core::WorkerRepository;
use std::fmt::Debug;
use std::sync::Arc;
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
    concurrent_schedulers(handle, Arc::clone(&repo), cfg);
    scheduler_answers(handle, repo, cfg);
}

/// [`run_all`] from inside a multi-thread Tokio runtime (e.g. a
/// `#[tokio::test(flavor = "multi_thread")]`): runs it on a blocking thread.
pub async fn run_all_async(repo: Arc<dyn WorkerRepository>, cfg: PropConfig) {
    blocking(move |h| run_all(h, repo, &cfg)).await;
}

/// Runs the lifecycle properties on `repo` by its real clock: [`lifecycle_sequences`] and
/// [`renewals_race_sweeps`]. Call it as [`run_all`].
pub fn run_lifecycle(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    lifecycle_sequences(handle, Arc::clone(&repo), cfg);
    renewals_race_sweeps(handle, repo, cfg);
}

/// [`run_lifecycle`] from inside a multi-thread Tokio runtime, as [`run_all_async`].
pub async fn run_lifecycle_async(repo: Arc<dyn WorkerRepository>, cfg: PropConfig) {
    blocking(move |h| run_lifecycle(h, repo, &cfg)).await;
}

/// A store clock the test can move (for the memory store: a wrapper around its `ManualClock`),
/// for [`lifecycle_sequences_exact`].
pub trait StoreClock: Send + Sync {
    /// The store's time, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Moves the store's time forward by `ms`.
    fn advance_ms(&self, ms: u64);
}

async fn blocking(f: impl FnOnce(&Handle) + Send + 'static) {
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || f(&handle));
    if let Err(e) = task.await {
        match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("property task failed: {e}"),
        }
    }
}
