//! Layers: cross-cutting concerns that wrap any [`WorkerRepository`](crate::WorkerRepository)
//! through [`RepositoryLayer`](crate::RepositoryLayer), so no backend carries them itself.
//!
//! * [`Counted`]: calls, reads, look-ups and per-worker atomic sections, one meaning for every
//!   backend.

mod counted;

pub use counted::Counted;
