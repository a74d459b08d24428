//! Every sched-redis test on a single Redis node (`REDIS_URL`) through fred (feature `fred`).
#![cfg(feature = "fred")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod common;

redis_suite!(common::Kind::Fred, common::Topology::Single);

/// A server that is not there is a typed, immediate error, not a hang.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = sched_redis::RedisConfig::from_url(format!("redis://127.0.0.1:{port}"))
        .with_timeouts(Duration::from_millis(300), Duration::from_millis(300))
        .with_reconnect_retries(0);
    let started = std::time::Instant::now();
    let err = common::connect(common::Kind::Fred, &cfg).await.unwrap_err();
    assert!(matches!(err, RepoError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
