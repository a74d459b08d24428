//! The TLS builders of `PostgresConfig` against the TLS server of `.ci/tls/start.sh` (see
//! `tls.rs` for the server and the variables): a CA file or PEM in memory, a client certificate
//! from files or memory, a missing key file, and a TLS failure at request time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod tls_common;

use sched_core::RepoError;
use sched_postgres::{PostgresConfig, PostgresRepository};
use tls_common::{connect_err, server, session};

/// `verify-full` trusting the CA given by the builder (a file), not by the URL.
#[tokio::test]
async fn verify_full_with_the_root_cert_builder() {
    let Some(tls) = server("verify_full_with_the_root_cert_builder") else {
        return;
    };
    let url = tls.url("postgres", None, "127.0.0.1", &[]);
    let cfg = PostgresConfig::from_url(&url)
        .unwrap()
        .with_ssl_mode("verify-full")
        .unwrap()
        .with_ssl_root_cert(tls.file("ca.pem"));
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    assert_eq!(session(&repo).await, (true, "postgres".to_owned()));
    // The same configuration without the CA does not trust the server.
    let bare = PostgresConfig::from_url(&url)
        .unwrap()
        .with_ssl_mode("verify-full")
        .unwrap();
    let e = PostgresRepository::connect(bare).await.err().unwrap();
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(e.to_string().contains("no sslrootcert is set"), "{e}");
}

/// The CA as PEM in memory; `Debug` never shows it.
#[tokio::test]
async fn verify_full_with_the_ca_in_memory() {
    let Some(tls) = server("verify_full_with_the_ca_in_memory") else {
        return;
    };
    let pem = std::fs::read_to_string(tls.file("ca.pem")).unwrap();
    let cfg = PostgresConfig::from_url(&tls.url("postgres", None, "localhost", &[]))
        .unwrap()
        .with_ssl_mode("verify-full")
        .unwrap()
        .with_ssl_root_cert_from_pem(&pem);
    let shown = format!("{cfg:?}");
    assert!(
        shown.contains("<PEM in memory>") && !shown.contains("BEGIN"),
        "{shown}"
    );
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    assert!(session(&repo).await.0, "the connection is not TLS");
}

/// The certificate user through `with_ssl_client_cert` (files), then with the certificate and
/// key in memory; `Debug` shows the paths but never the key.
#[tokio::test]
async fn a_client_certificate_through_the_builders() {
    let Some(tls) = server("a_client_certificate_through_the_builders") else {
        return;
    };
    let (cert, key) = (
        tls.file("client-cert-user.pem"),
        tls.file("client-cert-user.key"),
    );
    let base = || {
        PostgresConfig::from_url(&tls.url("sched_cert", None, "127.0.0.1", &[]))
            .unwrap()
            .with_ssl_mode("verify-full")
            .unwrap()
            .with_ssl_root_cert(tls.file("ca.pem"))
    };
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap().to_owned();

    let cfg = base().with_ssl_client_cert(&cert, &key);
    let shown = format!("{cfg:?}");
    assert!(shown.contains(&cert) && shown.contains(&key), "{shown}");
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    assert_eq!(session(&repo).await, (true, "sched_cert".to_owned()));

    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let cfg = base().with_ssl_client_cert_from_pem(&cert_pem, &key_pem);
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains(&key_body) && !shown.contains("BEGIN"),
        "{shown}"
    );
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    assert_eq!(session(&repo).await, (true, "sched_cert".to_owned()));
}

/// `sslkey` naming a file that does not exist: found before connecting, named, not transient.
#[tokio::test]
async fn a_missing_key_file_is_misconfigured_and_named() {
    let Some(tls) = server("a_missing_key_file_is_misconfigured_and_named") else {
        return;
    };
    let missing = "/nonexistent/sched-client.key";
    let cert = tls.file("client-cert-user.pem");
    let url = tls.verify_full(
        "sched_cert",
        None,
        &[("sslcert", &cert), ("sslkey", missing)],
    );
    let e = connect_err(&url).await;
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(missing) && msg.contains("sslkey"), "{msg}");
    assert!(msg.contains(&tls.endpoint("127.0.0.1")), "{msg}");
}

/// A TLS failure when the pool opens a fresh connection later, at request time, is typed the
/// same as at connect: the CA file replaced by an unrelated CA, then removed, while every
/// pooled connection is busy.
#[tokio::test]
async fn a_tls_failure_at_request_time_is_typed_like_at_connect() {
    let Some(tls) = server("a_tls_failure_at_request_time_is_typed_like_at_connect") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("sched-pg-ca-{}", sched_tests::ns::random_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::copy(tls.file("ca.pem"), &ca).unwrap();
    let cfg = PostgresConfig::from_url(&tls.url("postgres", None, "127.0.0.1", &[]))
        .unwrap()
        .with_ssl_mode("verify-full")
        .unwrap()
        .with_ssl_root_cert(&ca)
        .with_max_connections(4);
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    repo.ping().await.unwrap();
    // Hold every pooled connection (once the last call's is back), so that the next call needs
    // a new one.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut held = Vec::new();
    while held.len() < repo.pool().size() as usize {
        held.push(repo.pool().acquire().await.unwrap());
    }
    assert!(
        held.len() < 4,
        "the pool is full: {} connections",
        held.len()
    );

    std::fs::copy(tls.file("other-ca.pem"), &ca).unwrap();
    let e = repo.ping().await.unwrap_err();
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    std::fs::remove_file(&ca).unwrap();
    let e = repo.ping().await.unwrap_err();
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(e.to_string().contains(&*ca.to_string_lossy()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    drop(held);
}
