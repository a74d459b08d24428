//! The chaos property test on the Redis Cluster of `REDIS_CLUSTER_URLS` (the 3-master cluster
//! CI starts with sched-redis/scripts/start-cluster.sh), both clients: the `Faulty` layer plus
//! one node at a time out of memory, paused, asleep, or with our connections killed; every
//! node change undone by a guard. Needs `--features cluster-tests`. `CHAOS_CASES` raises the
//! case count.
#![cfg(feature = "cluster-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod chaos_common;

use sched_tests::chaos;

async fn run(fred: bool, test: &str) {
    let Some((target, _keys)) = chaos_common::redis_cluster(fred, test).await else {
        return;
    };
    let report = chaos::chaos_async(target, chaos::cases_from_env(6)).await;
    println!("{test}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_cluster_redis_rs() {
    run(false, "chaos_cluster_redis_rs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_cluster_fred() {
    run(true, "chaos_cluster_fred").await;
}
