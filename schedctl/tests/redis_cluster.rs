//! schedctl as a process against a Redis Cluster (`--redis-cluster-urls`), both clients, in a
//! fresh prefix per test. Compiled with the `cluster-tests` feature; needs `REDIS_CLUSTER_URLS`
//! (skips with a printed reason when unset, fails under `CI`).
#![cfg(feature = "cluster-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::scenarios;
use common::stores::{catch, Lib};

macro_rules! cluster_test {
    ($name:ident, $backend:literal, $scenario:path) => {
        #[tokio::test]
        async fn $name() {
            let Some(urls) = sched_tests::env::require_url("REDIS_CLUSTER_URLS", stringify!($name))
            else {
                return;
            };
            let lib = Lib::redis_cluster(&urls, $backend).await;
            let result = catch($scenario(&lib)).await;
            lib.finish(result).await;
        }
    };
}

cluster_test!(reads_redis_rs, "redis", scenarios::reads);
cluster_test!(reads_fred, "redis-fred", scenarios::reads);
cluster_test!(release_redis_rs, "redis", scenarios::release);
cluster_test!(audit_fred, "redis-fred", scenarios::audit);
cluster_test!(lifecycle_redis_rs, "redis", scenarios::lifecycle);
cluster_test!(lifecycle_fred, "redis-fred", scenarios::lifecycle);
