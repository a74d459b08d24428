//! schedctl as a process against Redis (both clients), in a fresh key prefix per test,
//! seeded through the library. Skips with a printed reason when `REDIS_URL` is unset (fails
//! under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::scenarios;
use common::stores::{catch, Lib};

fn url(test: &str) -> Option<String> {
    sched_tests::env::require_url("REDIS_URL", test)
}

macro_rules! redis_test {
    ($name:ident, $backend:literal, $scenario:path) => {
        #[tokio::test]
        async fn $name() {
            let Some(url) = url(stringify!($name)) else {
                return;
            };
            let lib = Lib::redis(&url, $backend).await;
            let result = catch($scenario(&lib)).await;
            lib.finish(result).await;
        }
    };
}

redis_test!(reads_redis_rs, "redis", scenarios::reads);
redis_test!(reads_fred, "redis-fred", scenarios::reads);
redis_test!(release_redis_rs, "redis", scenarios::release);
redis_test!(release_fred, "redis-fred", scenarios::release);
redis_test!(audit_redis_rs, "redis", scenarios::audit);
redis_test!(audit_fred, "redis-fred", scenarios::audit);
redis_test!(lifecycle_redis_rs, "redis", scenarios::lifecycle);
redis_test!(lifecycle_fred, "redis-fred", scenarios::lifecycle);
redis_test!(audit_many_workers, "redis", scenarios::audit_many);
