//! # sched-memory
//!
//! [`MemoryRepository`]: an in-process [`WorkerRepository`](sched_core::WorkerRepository) that is atomic per worker, fast, and
//! passes the shared conformance suite. It doubles as a test double for code that depends on
//! sched: seed workers in one line and inject faults (failures, conflicts, latency, lost replies)
//! to exercise retry paths.
//!
//! The per-worker rules are sched-core's [`rules`](sched_core::rules); faults and call counts are
//! sched-core's layers ([`Faulty`](sched_core::layers::Faulty),
//! [`Counted`](sched_core::layers::Counted)), which work the same around Redis and Postgres.
//!
//! ```
//! # tokio_test_block(async {
//! use sched_core::{CapacityReservation, CommitMode, Resources, ResourceReservation, WorkerRepository};
//! use sched_memory::MemoryRepository;
//!
//! let repo = MemoryRepository::builder()
//!     .cpu_workers(3, Resources::cpu_mem(4000, 8192))
//!     .build()
//!     .await;
//! let out = repo
//!     .reserve_batch(
//!         &[CapacityReservation::new("worker-0", vec![ResourceReservation::new("c1", Resources::cpu_mem(500, 512))])],
//!         CommitMode::AllOrNothing,
//!     )
//!     .await
//!     .unwrap();
//! assert!(out[0].outcome.is_ok());
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod repository;
mod store;

pub use clock::{Clock, ManualClock};
pub use repository::{MemoryRepository, MemoryRepositoryBuilder};
/// The fault plan of [`MemoryRepository::faults`]: sched-core's
/// [`Faulty`](sched_core::layers::Faulty) layer, which works around any backend.
pub use sched_core::layers::{Fault, FaultPlan};
pub use store::MemoryStore;
