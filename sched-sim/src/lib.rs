//! # sched-sim
//!
//! The simulator and benchmark of the sched workspace. It places bursts of containers onto
//! workers with three real strategies over the same [`WorkerRepository`](sched_core::WorkerRepository)
//! on the same backend, audits the store afterwards, and reports time, round trips, atomic
//! sections, conflicts, cache hit rate and spreading:
//!
//! * [`strategy::naive`]: per-container read-all / lock / re-read / write / unlock;
//! * [`strategy::seed`]: the first optimisation, one lock per worker per burst with a 500 ms
//!   read cache and sha256-rotation affinity;
//! * [`strategy::sched`]: sched-core's lock-free [`Scheduler`](sched_core::Scheduler).
//!
//! Scenarios live in [`scenario`]; [`metered::Metered`] adds `--rtt-ms` latency and counts
//! round trips for any backend. The per-worker locks the baselines take
//! ([`locks::WorkerLocks`]) live here too, one per backend, on the simulator's own connections:
//! sched's production crates have no locks.

pub mod audit;
pub mod backend;
pub mod chaos;
pub mod cli;
pub mod error;
pub mod floor;
pub mod hist;
pub mod locks;
pub mod metered;
pub mod plot;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod strategy;
pub mod tls;

pub use error::SimError;
