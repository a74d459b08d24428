//! The shared conformance suite on a single Redis node (`REDIS_URL`) through redis-rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
use common::{fresh, Kind, Topology};

/// One `#[tokio::test]` per check, each on a fresh key prefix.
mod each_check {
    use super::*;
    sched_tests::conformance_tests!(fresh(Kind::RedisRs, Topology::Single, "conformance"));
}

/// Every check at once on one prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_concurrently() {
    let Some(repo) = fresh(Kind::RedisRs, Topology::Single, "run_all_concurrently").await else {
        return;
    };
    sched_tests::conformance::run_all_concurrently(&repo).await;
}
