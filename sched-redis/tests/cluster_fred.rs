//! Every sched-redis test on a Redis Cluster (`REDIS_CLUSTER_URLS`) through fred.
#![cfg(all(feature = "cluster-tests", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod common;

redis_suite!(common::Kind::Fred, common::Topology::Cluster);
