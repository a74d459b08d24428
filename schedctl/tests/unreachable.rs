//! Unreachable stores: the message names the server (host:port), never the password; exit 1.
//! Port 1 on the loopback refuses at once, so no server is needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::schedctl;

#[track_caller]
fn check(args: &[&str], starts_with: &str) {
    let r = schedctl(args).expect(1);
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(r.stderr.starts_with(starts_with), "{r:#?}");
    assert!(!r.stderr.contains("hunter2"), "password shown: {r:#?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:#?}");
}

#[test]
fn redis_names_host_and_port() {
    for backend in ["redis", "redis-fred"] {
        check(
            &[
                "--backend",
                backend,
                "--redis-url",
                "redis://admin:hunter2@127.0.0.1:1/0",
                "workers",
            ],
            "schedctl: error: cannot reach Redis at 127.0.0.1:1: ",
        );
    }
}

#[test]
fn redis_cluster_names_every_seed() {
    check(
        &[
            "--backend",
            "redis",
            "--redis-cluster-urls",
            "redis://:hunter2@127.0.0.1:1,redis://:hunter2@127.0.0.1:2",
            "workers",
        ],
        "schedctl: error: cannot reach Redis Cluster at 127.0.0.1:1,127.0.0.1:2: ",
    );
}

#[test]
fn postgres_names_host_and_port() {
    check(
        &[
            "--backend",
            "postgres",
            "--database-url",
            "postgres://postgres:hunter2@127.0.0.1:1/test",
            "audit",
        ],
        "schedctl: error: cannot reach PostgreSQL at 127.0.0.1:1: ",
    );
}

#[test]
fn a_malformed_url_is_a_usage_error_without_the_url() {
    let r = schedctl(&[
        "--backend",
        "redis",
        "--redis-url",
        "redis://u:hunter2@[bad",
        "workers",
    ])
    .expect(2);
    assert!(
        r.stderr
            .starts_with("schedctl: error: --redis-url is not a valid URL"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("hunter2"));
    let r = schedctl(&[
        "--backend",
        "postgres",
        "--database-url",
        "mysql://u:hunter2@h/db",
        "workers",
    ])
    .expect(2);
    assert_eq!(
        r.stderr,
        "schedctl: error: --database-url must be a postgres:// or postgresql:// URL\n"
    );
    assert!(!r.stderr.contains("hunter2"));
    let r = schedctl(&[
        "--backend",
        "postgres",
        "--database-url",
        "postgres://h/db",
        "--schema",
        "Bad-Name",
        "workers",
    ])
    .expect(2);
    assert!(
        r.stderr
            .starts_with("schedctl: error: --schema: invalid schema name"),
        "{r:?}"
    );
}
