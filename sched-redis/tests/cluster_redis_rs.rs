//! Every sched-redis test on a Redis Cluster (`REDIS_CLUSTER_URLS`, comma-separated seed URLs;
//! see `scripts/start-cluster.sh`) through redis-rs.
#![cfg(feature = "cluster-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod common;

redis_suite!(common::Kind::RedisRs, common::Topology::Cluster);
