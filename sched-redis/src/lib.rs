//! # sched-redis
//!
//! [`RedisRepository`]: a [`WorkerRepository`](sched_core::WorkerRepository) on Redis, with
//! exactly the semantics of the in-memory reference backend.
//!
//! * Each worker's part of `reserve_batch` / `release_batch` is one Lua script (`lua/*.lua`),
//!   atomic in itself; all scripts of a call go out as one pipeline of `EVALSHA`s (one round
//!   trip on a single node), with `NOSCRIPT` handled by sending those scripts again as `EVAL`.
//! * No locks anywhere in the scheduling path; reads are plain pipelined reads.
//! * Every key of a worker shares one hash tag, so each worker script touches one Redis Cluster
//!   slot. On a Redis Cluster the container index is kept correct with claim keys (see
//!   `sched-redis/ARCHITECTURE.md`).
//! * Two clients with identical behaviour: redis-rs ([`RedisRepository::connect`], default) and
//!   fred (`RedisRepository::connect_fred`, feature `fred`).
//! * Feature `testing`: test hooks (`delete_all_keys`, `corrupt_free`, `key_pattern`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sched_core::RepoError> {
//! use sched_core::{Resources, WorkerRepository, WorkerSpec};
//! use sched_redis::{RedisConfig, RedisRepository};
//!
//! let repo = RedisRepository::connect(&RedisConfig::from_url("redis://127.0.0.1:6379").with_prefix("demo")).await?;
//! repo.register_worker(&WorkerSpec::new("w1", Resources::cpu_mem(4000, 8192))).await?;
//! # Ok(()) }
//! ```

mod client;
#[cfg(feature = "fred")]
mod client_fred;
mod client_redis;
mod cluster;
mod codec;
mod config;
mod keys;
mod ops;
mod pipeline;
mod repo;
mod scripts;
#[cfg(feature = "testing")]
mod testing;

pub use config::RedisConfig;
pub use repo::RedisRepository;
