//! PostgreSQL over TLS (issue 14), against the server `.ci/tls/start.sh DIR` starts: `ssl = on`
//! on 127.0.0.1:5433 with a private CA, non-SSL connections rejected, three users:
//! `postgres` (trust over SSL), `sched_cert` (client certificate, CN=sched_cert) and `sched_pw`
//! (scram-sha-256, password in `DIR/sched_pw.password`). Its certificate covers `localhost` and
//! 127.0.0.1, not 127.0.0.2 (on which the server listens as well).
//!
//! Needs `DATABASE_TLS_URL` (e.g. `postgres://postgres@127.0.0.1:5433/test`, its query string is
//! replaced) and `SCHED_TLS_DIR` (where `ca.pem`, `other-ca.pem` and the client certificates
//! are); skips when they are unset, unless `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod tls_common;

use sched_core::{RepoError, Resources, WorkerRepository, WorkerSpec};
use sched_tests::conformance;
use tls_common::{connect_err, fresh, names_host_not_secret, server, session, Tls};

/// The whole suite, one check after another (the concurrent run is left to the plain-TCP
/// tests: on a loaded 2-core runner its 1 s heartbeat windows are too tight to be worth the risk).
#[tokio::test]
async fn verify_full_with_a_private_ca_passes_the_conformance_suite() {
    let Some(tls) = server("verify_full_with_a_private_ca_passes_the_conformance_suite") else {
        return;
    };
    let db = fresh(&tls.verify_full("postgres", None, &[])).await;
    assert!(session(&db.repo).await.0, "the connection is not TLS");
    conformance::run_all(&db.repo).await;
    assert!(
        db.repo.list_workers(None).await.unwrap().is_empty(),
        "checks clean up after themselves"
    );
}

/// `localhost` is covered by the certificate as well as 127.0.0.1.
#[tokio::test]
async fn verify_full_by_host_name() {
    let Some(tls) = server("verify_full_by_host_name") else {
        return;
    };
    let ca = tls.file("ca.pem");
    let url = tls.url(
        "postgres",
        None,
        "localhost",
        &[("sslmode", "verify-full"), ("sslrootcert", &ca)],
    );
    let db = fresh(&url).await;
    assert!(session(&db.repo).await.0, "the connection is not TLS");
}

/// `require` encrypts without checking the certificate (no CA given); and the server really
/// insists on TLS: `disable` is refused.
#[tokio::test]
async fn require_works_and_the_server_refuses_plain_connections() {
    let Some(tls) = server("require_works_and_the_server_refuses_plain_connections") else {
        return;
    };
    let db = fresh(&tls.url("postgres", None, "127.0.0.1", &[("sslmode", "require")])).await;
    assert_eq!(session(&db.repo).await, (true, "postgres".to_owned()));

    let e = connect_err(&tls.url("postgres", None, "127.0.0.1", &[("sslmode", "disable")])).await;
    // pg_hba `hostnossl ... reject`: invalid_authorization_specification.
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("no encryption"), "{e}");
}

#[tokio::test]
async fn a_client_certificate_logs_in_its_user() {
    let Some(tls) = server("a_client_certificate_logs_in_its_user") else {
        return;
    };
    let (cert, key) = (
        tls.file("client-cert-user.pem"),
        tls.file("client-cert-user.key"),
    );
    let url = tls.verify_full("sched_cert", None, &[("sslcert", &cert), ("sslkey", &key)]);
    let db = fresh(&url).await;
    assert_eq!(session(&db.repo).await, (true, "sched_cert".to_owned()));
    let w = WorkerSpec::new("tls-worker", Resources::cpu_mem(1000, 1024));
    db.repo.register_worker(&w).await.unwrap();
    assert_eq!(db.repo.list_workers(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_password_user_logs_in_with_its_password() {
    let Some(tls) = server("a_password_user_logs_in_with_its_password") else {
        return;
    };
    let pw = tls.password();
    let db = fresh(&tls.verify_full("sched_pw", Some(&pw), &[])).await;
    assert_eq!(session(&db.repo).await, (true, "sched_pw".to_owned()));
    assert!(!format!("{:?}", db.repo.config()).contains(&pw));
}

/// How the connection is refused.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// The client's configuration is wrong.
    Misconfigured,
    /// The server refused the credential.
    Unauthorized,
}

const WRONG_PASSWORD: &str = "wrong-password-never-shown";

/// Connects to `url` (at `host`) and checks the refusal every TLS failure shares: of `kind`, not
/// transient, for an operator, naming `host:port` and `shows`, and never the password of
/// `sched_pw` nor [`WRONG_PASSWORD`].
async fn assert_refused(tls: &Tls, url: &str, host: &str, kind: Refused, shows: &str) {
    let e = connect_err(url).await;
    eprintln!("{kind:?}: {e:?}\n    {e}");
    let of_kind = match kind {
        Refused::Misconfigured => matches!(e, RepoError::Misconfigured { .. }),
        Refused::Unauthorized => matches!(e, RepoError::Unauthorized { .. }),
    };
    assert!(of_kind, "not {kind:?}: {e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    let endpoint = tls.endpoint(host);
    names_host_not_secret(&e, &endpoint, &tls.password());
    names_host_not_secret(&e, &endpoint, WRONG_PASSWORD);
    let msg = e.to_string();
    assert!(
        msg.contains(&endpoint) && msg.contains(shows),
        "{endpoint}, {shows}: {msg}"
    );
}

/// A server certificate from a CA the client does not trust: the configuration is wrong, and
/// retrying will not help.
#[tokio::test]
async fn an_unknown_ca_is_misconfigured() {
    let Some(tls) = server("an_unknown_ca_is_misconfigured") else {
        return;
    };
    let (pw, other_ca) = (tls.password(), tls.file("other-ca.pem"));
    let url = tls.url(
        "sched_pw",
        Some(&pw),
        "127.0.0.1",
        &[("sslmode", "verify-full"), ("sslrootcert", &other_ca)],
    );
    assert_refused(
        &tls,
        &url,
        "127.0.0.1",
        Refused::Misconfigured,
        "UnknownIssuer",
    )
    .await;
}

/// `verify-full` to a name the server certificate does not cover.
#[tokio::test]
async fn a_wrong_host_name_is_misconfigured() {
    let Some(tls) = server("a_wrong_host_name_is_misconfigured") else {
        return;
    };
    let (pw, ca) = (tls.password(), tls.file("ca.pem"));
    let url = tls.url(
        "sched_pw",
        Some(&pw),
        "127.0.0.2",
        &[("sslmode", "verify-full"), ("sslrootcert", &ca)],
    );
    let fragment = "not valid for name";
    assert_refused(&tls, &url, "127.0.0.2", Refused::Misconfigured, fragment).await;
}

/// The certificate user without a certificate: the server refuses it (SQLSTATE 28000).
#[tokio::test]
async fn a_missing_client_certificate_is_unauthorized() {
    let Some(tls) = server("a_missing_client_certificate_is_unauthorized") else {
        return;
    };
    let url = tls.verify_full("sched_cert", None, &[]);
    assert_refused(&tls, &url, "127.0.0.1", Refused::Unauthorized, "sched_cert").await;
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_not_shown() {
    let Some(tls) = server("a_wrong_password_is_unauthorized_and_not_shown") else {
        return;
    };
    let url = tls.verify_full("sched_pw", Some(WRONG_PASSWORD), &[]);
    assert_refused(&tls, &url, "127.0.0.1", Refused::Unauthorized, "sched_pw").await;
}

/// A client certificate the server does not trust (signed by another CA): the server refuses the
/// credential with a TLS alert.
#[tokio::test]
async fn an_untrusted_client_certificate_is_unauthorized() {
    let Some(tls) = server("an_untrusted_client_certificate_is_unauthorized") else {
        return;
    };
    let (cert, key) = (tls.file("other-client.pem"), tls.file("other-client.key"));
    let url = tls.verify_full("sched_cert", None, &[("sslcert", &cert), ("sslkey", &key)]);
    assert_refused(&tls, &url, "127.0.0.1", Refused::Unauthorized, "sched_cert").await;
}

/// `sslrootcert` naming a file that does not exist: a configuration error naming the file.
#[tokio::test]
async fn a_missing_ca_file_is_misconfigured_and_named() {
    let Some(tls) = server("a_missing_ca_file_is_misconfigured_and_named") else {
        return;
    };
    let (pw, missing) = (tls.password(), "/nonexistent/sched-ca.pem");
    let url = tls.url(
        "sched_pw",
        Some(&pw),
        "127.0.0.1",
        &[("sslmode", "verify-full"), ("sslrootcert", missing)],
    );
    assert_refused(&tls, &url, "127.0.0.1", Refused::Misconfigured, missing).await;
}
