//! The chaos property test on single-node Redis (`REDIS_URL`), both clients: the `Faulty` layer
//! plus a reply dropped by the TCP proxy and cut connections. The server's own configuration
//! is never touched. `CHAOS_CASES` raises the case count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod chaos_common;

use sched_tests::chaos;

async fn run(fred: bool, test: &str) {
    let Some((target, _keys)) = chaos_common::redis_single(fred, test).await else {
        return;
    };
    let report = chaos::chaos_async(target, chaos::cases_from_env(8)).await;
    println!("{test}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis_rs() {
    run(false, "chaos_redis_rs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis_fred() {
    run(true, "chaos_redis_fred").await;
}
