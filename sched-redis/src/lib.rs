//! # sched-redis
//!
//! [`RedisRepository`]: a [`WorkerRepository`](sched_core::WorkerRepository) on Redis or Redis
//! Cluster, with exactly the semantics of the in-memory reference backend: one Lua script per
//! worker, one pipeline per call, no locks. Two clients with identical behaviour: redis-rs
//! ([`RedisRepository::connect`]) and fred (`connect_fred`, feature `fred`). Feature `testing`
//! adds test hooks. The design is in `sched-redis/ARCHITECTURE.md`.
//!
//! Configure with [`RedisConfig::from_url`] / [`RedisConfig::cluster`] and the `with_*`
//! methods, from the environment ([`RedisConfig::from_env`]: `REDIS_URL` or
//! `REDIS_CLUSTER_URLS`, `SCHED_REDIS_*`), or by deserializing a `RedisConfig` (feature
//! `serde`). `examples/redis_quickstart.rs` runs a service end to end on either topology.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
#[cfg(feature = "fred")]
mod client_fred;
mod client_redis;
mod cluster;
mod codec;
mod config;
mod fence;
#[cfg(feature = "testing")]
mod inject;
mod keys;
mod lifecycle;
mod ops;
mod pipeline;
mod repo;
mod reserve;
mod scripts;
#[cfg(feature = "testing")]
mod testing;
#[cfg(feature = "tls")]
mod tls;
mod wakeups;

pub use config::RedisConfig;
#[cfg(feature = "testing")]
pub use inject::{Fault, Target};
pub use repo::RedisRepository;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::RedisTls;
