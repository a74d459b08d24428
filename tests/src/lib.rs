//! # sched-tests
//!
//! One shared suite for every [`WorkerRepository`](sched_core::WorkerRepository) backend, in the
//! style of `object_store`'s integration module: plain `pub async fn check_*` functions that take
//! a `&dyn WorkerRepository`, plus proptest-based property tests. Each backend crate's own tests
//! call them. Every check works in its own random id namespace, so checks can share one store.

pub mod env;
