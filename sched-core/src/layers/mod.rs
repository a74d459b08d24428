//! Layers: cross-cutting concerns that wrap any [`WorkerRepository`](crate::WorkerRepository)
//! through [`RepositoryLayer`](crate::RepositoryLayer), so no backend carries them itself.
//!
//! * [`Counted`]: calls, reads, look-ups and per-worker atomic sections, one meaning for every
//!   backend.
//! * [`Faulty`]: injected failures, lost replies, forced conflicts and latency, for tests of
//!   retry paths on any backend.
//! * [`Traced`]: one `tracing` span per call with the backend, the workers, the containers and
//!   the round trips it took.

mod counted;
mod fault_plan;
mod faulty;
mod traced;

pub use counted::Counted;
pub use fault_plan::{Args, Call, Fault, FaultPlan, Op, Select};
pub use faulty::Faulty;
pub(crate) use traced::count_round_trips;
pub use traced::Traced;
