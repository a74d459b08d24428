//! # sched-tests
//!
//! One shared suite for every [`WorkerRepository`](sched_core::WorkerRepository) backend, in the
//! style of `object_store`'s integration module: plain `pub async fn check_*` functions that take
//! a `&dyn WorkerRepository`, plus proptest-based property tests. Each backend crate's own tests
//! call them.
//!
//! * [`conformance`]: one `check_*` per rule of the trait contract, [`conformance::run_all`],
//!   [`conformance::run_all_concurrently`] and the [`conformance_tests!`] macro, which generates
//!   one `#[tokio::test]` per check so a failure names its rule. The checks live in one file
//!   per topic under `src/conformance/`, each with the list of its checks' names, and register
//!   their workers through a fixture that removes them when the check finishes.
//! * [`properties`]: concurrent callers, concurrent schedulers and a sequential model-based test,
//!   on random workers and bursts.
//! * [`ns`]: random id namespaces. Every check and every property case works in its own, never
//!   assumes the store is empty, and removes its workers at the end, so everything can share one
//!   Redis or Postgres database with other tests running at the same time.
//! * [`faults`] and [`proxy`]: shared fault checks (lost replies, connection faults mid-burst)
//!   and a loopback TCP proxy that injects network faults in front of a real server.
//! * [`kill`]: the kill-connections-mid-stream scenario ([`kill::run_kill_mid_stream`]) that the
//!   Redis and Postgres suites run with their own server-side kill.
//! * [`spans`]: a subscriber layer that records the `sched.repo` spans of the
//!   [`Traced`](sched_core::layers::Traced) layer, to assert what a backend reports per call.
//! * [`env`](mod@env): select the server from an environment variable (skip locally, fail under CI).
//!
//! ## Wiring a backend
//!
//! In `sched-<backend>/Cargo.toml`: `[dev-dependencies] sched-tests.workspace = true` and
//! `tokio` (with `macros`, `rt-multi-thread`). Then, in `sched-<backend>/tests/conformance.rs`
//! (shown here with the memory backend; replace `connect` with yours):
//!
//! ```no_run
//! use sched_core::WorkerRepository;
//! use std::sync::Arc;
//!
//! // Returns None (and prints why) when the server is not configured; panics under CI=true.
//! async fn connect(test: &str) -> Option<sched_memory::MemoryRepository> {
//!     // let url = sched_tests::env::require_url("SCHED_REDIS_URL", test)?;
//!     // Some(sched_redis::RedisRepository::connect(&url).await.expect("connect"))
//!     let _ = test;
//!     Some(sched_memory::MemoryRepository::new())
//! }
//!
//! // One #[tokio::test] per conformance check (named like the check), all on the shared store.
//! mod each_check {
//!     sched_tests::conformance_tests!(async { super::connect("conformance").await });
//! }
//!
//! // Every check at once, on one connection: exercises interleaved traffic.
//! #[tokio::test]
//! async fn conformance_concurrently() {
//!     if let Some(repo) = connect("conformance_concurrently").await {
//!         sched_tests::conformance::run_all_concurrently(&repo).await;
//!     }
//! }
//!
//! // The properties: a multi-thread runtime is required (they block on it from a blocking
//! // thread). Case counts come from PROPTEST_CASES, else the defaults in `PropConfig`.
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn properties() {
//!     if let Some(repo) = connect("properties").await {
//!         let repo: Arc<dyn WorkerRepository> = Arc::new(repo);
//!         sched_tests::properties::run_all_async(repo, sched_tests::properties::PropConfig::from_env()).await;
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Each property is also callable on its own (see [`properties`]), so a backend can split them
//! into separate tests too.
//!
//! ## Testing a backend of your own
//!
//! A backend written outside this workspace depends on `sched-core` and, as a dev-dependency, on
//! `sched-tests`, and runs the same suites. Here the "backend" is a small wrapper that forwards
//! to the in-memory store and counts its commits ([`RepositoryLayer`](sched_core::RepositoryLayer):
//! override what you intercept, everything else forwards); yours would talk to its store.
//!
//! ```
//! use sched_core::{CapacityReservation, CommitMode, RepoError, RepositoryLayer, WorkerResult};
//! use sched_core::WorkerRepository;
//! use sched_tests::properties::PropConfig;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! /// A backend of your own (here: the in-memory store, with its commits counted).
//! struct Audited {
//!     inner: sched_memory::MemoryRepository,
//!     commits: Arc<AtomicU64>,
//! }
//!
//! #[async_trait::async_trait]
//! impl RepositoryLayer for Audited {
//!     type Inner = sched_memory::MemoryRepository;
//!     fn inner(&self) -> &Self::Inner {
//!         &self.inner
//!     }
//!     async fn reserve_batch(
//!         &self,
//!         batch: &[CapacityReservation],
//!         mode: CommitMode,
//!     ) -> Result<Vec<WorkerResult>, RepoError> {
//!         self.commits.fetch_add(1, Ordering::Relaxed);
//!         WorkerRepository::reserve_batch(&self.inner, batch, mode).await
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let commits = Arc::new(AtomicU64::new(0));
//! let repo = Arc::new(Audited {
//!     inner: sched_memory::MemoryRepository::new(),
//!     commits: commits.clone(),
//! });
//! // Every rule of the trait contract; a broken backend panics naming the rule.
//! sched_tests::conformance::run_all(&*repo).await;
//! // The properties (concurrent callers and schedulers, a model-based sequence), few cases.
//! let cfg = PropConfig { cases: 4, ..PropConfig::from_env() };
//! sched_tests::properties::run_all_async(repo, cfg).await;
//! assert!(commits.load(Ordering::Relaxed) > 0);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// This crate *is* test code: its checks report contract violations by panicking, as `assert!`
// does, so unwrap/expect/panic are the intended behaviour here.

pub mod chaos;
pub mod conformance;
pub mod env;
pub mod faults;
pub mod kill;
pub mod ns;
pub mod properties;
pub mod proxy;
pub mod spans;
