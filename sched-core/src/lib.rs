//! # sched-core
//!
//! The backend-agnostic core of sched: place bursts of containers onto workers with one atomic
//! capacity update per worker, no locks, no double-booking and no lost capacity.
//!
//! * [`Resources`], [`Worker`], [`ContainerRequest`] and the reservation types;
//! * [`WorkerRepository`], the async, object-safe trait every backend implements;
//! * [`WorkerStateCache`], lock-free snapshots of worker state (`arc-swap`);
//! * [`affinity`], sha256-based spreading of containers across equal workers;
//! * [`lifecycle`] and [`watch`]: leases, heartbeats, drain, bulk release, hand-off streams;
//! * [`Scheduler`], which plans a whole burst against one snapshot and commits it with one
//!   `reserve_batch` call.
//!
//! Pick a backend by depending on its crate: `sched-memory`, `sched-redis` or `sched-postgres`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod affinity;
pub mod backoff;
pub mod cache;
pub mod counters;
mod error;
pub mod layers;
pub mod lifecycle;
mod repository;
mod request;
mod reservation;
mod resources;
pub mod rules;
mod scheduler;
pub mod telemetry;
mod tiers;
pub mod validate;
pub mod watch;
mod worker;

pub use affinity::AffinityMode;
pub use cache::{CacheConfig, CacheStats, WorkerStateCache};
pub use counters::{BackendCounters, CounterSnapshot};
pub use error::{BoxError, InvalidInput, RepoError};
pub use lifecycle::{
    ExpiredReservation, ExpiryReason, Heartbeat, LeaseRenewal, LeaseSweep, RenewOutcome,
    WorkerRelease,
};
pub use repository::{AuditMode, RepositoryLayer, WorkerRepository};
pub use request::{ContainerRequest, ANY_GPU};
pub use reservation::{
    AuditReport, CapacityReservation, CommitMode, Committed, Drift, Rejection, ReleaseOutcome,
    Released, ReservationRecord, ResourceReservation, WorkerOutcome, WorkerResult,
};
pub use resources::{ResourceError, ResourceKind, Resources};
pub use scheduler::{
    AttemptError, Placement, ScheduleError, Scheduler, SchedulerConfig, SchedulerStats, Unplaceable,
};
pub use watch::{watch_reservations, ReservationEvent, WatchConfig};
pub use worker::{StalePolicy, Worker, WorkerSpec, WorkerStatus};

/// The planner, for the criterion bench (`benches/plan.rs`) and for `sched-sim`'s baseline
/// strategies, which must filter workers exactly as the scheduler does. Not a supported API:
/// it may change with the scheduler.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::scheduler::{eligible, plan, Plan, PlanConfig};
}
