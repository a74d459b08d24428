//! A failed connection is a typed error that names the endpoint, and the user when the server
//! refused the credentials, and never shows the password (issue 13): with both clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::RepoError;
use sched_redis::{RedisConfig, RedisRepository};
use std::time::Duration;

const SECRET: &str = "s3cret-never-printed";

fn quick(cfg: RedisConfig) -> RedisConfig {
    cfg.with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .with_reconnect_retries(0)
}

/// The error of connecting with every client compiled in.
async fn failures(cfg: &RedisConfig) -> Vec<(&'static str, RepoError)> {
    let mut out = Vec::new();
    match RedisRepository::connect(cfg).await {
        Ok(_) => panic!("redis-rs connected to {cfg:?}"),
        Err(e) => out.push(("redis-rs", e)),
    }
    #[cfg(feature = "fred")]
    match RedisRepository::connect_fred(cfg).await {
        Ok(_) => panic!("fred connected to {cfg:?}"),
        Err(e) => out.push(("fred", e)),
    }
    out
}

fn no_secret(client: &str, e: &RepoError) {
    let shown = format!("{e} / {e:?}");
    assert!(
        !shown.contains(SECRET),
        "{client}: the password leaked: {shown}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_names_host_and_port() {
    let url = format!("redis://user:{SECRET}@127.0.0.1:1");
    for (client, e) in failures(&quick(RedisConfig::from_url(url))).await {
        assert!(
            matches!(e, RepoError::Unreachable { .. }),
            "{client}: {e:?}"
        );
        assert!(e.is_transient(), "{client}");
        assert!(!e.needs_operator(), "{client}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{client}: {e}");
        no_secret(client, &e);
    }
}

#[tokio::test]
async fn a_url_of_another_scheme_is_misconfigured() {
    let url = format!("http://user:{SECRET}@127.0.0.1:6379");
    for (client, e) in failures(&quick(RedisConfig::from_url(url))).await {
        assert!(
            matches!(e, RepoError::Misconfigured { .. }),
            "{client}: {e:?}"
        );
        assert!(!e.is_transient(), "{client}");
        assert!(e.needs_operator(), "{client}");
        assert!(e.to_string().contains("127.0.0.1:6379"), "{client}: {e}");
        no_secret(client, &e);
    }
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_name_host_and_user() {
    let Some(base) = sched_tests::env::require_url(
        "REDIS_URL",
        "refused_credentials_are_unauthorized_and_name_host_and_user",
    ) else {
        return;
    };
    let mut url = url::Url::parse(&base).unwrap();
    url.set_username("sched-no-such-user").unwrap();
    url.set_password(Some(SECRET)).unwrap();
    let endpoint = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(6379));
    for (client, e) in failures(&quick(RedisConfig::from_url(url.as_str()))).await {
        assert!(
            matches!(e, RepoError::Unauthorized { .. }),
            "{client}: {e:?}"
        );
        assert!(!e.is_transient(), "{client}");
        let msg = e.to_string();
        assert!(msg.contains(&endpoint), "{client}: {msg}");
        assert!(msg.contains("sched-no-such-user"), "{client}: {msg}");
        no_secret(client, &e);
    }
}

/// Cluster seeds with different passwords cannot work (redis-rs refuses them): a configuration
/// to fix, naming every seed, not an outage.
#[tokio::test]
async fn cluster_seeds_with_different_passwords_are_misconfigured() {
    let cfg = quick(RedisConfig::cluster([
        format!("redis://:{SECRET}@127.0.0.1:1"),
        "redis://:other@127.0.0.1:2".to_owned(),
    ]));
    let e = RedisRepository::connect(&cfg).await.err().unwrap();
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1:1,127.0.0.1:2"), "{e}");
    no_secret("redis-rs", &e);
}
