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

use sched_core::{RepoError, Resources, WorkerRepository, WorkerSpec};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_tests::conformance;
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;

const VAR: &str = "DATABASE_TLS_URL";

/// The TLS server and the certificates `.ci/tls/start.sh` made for it.
struct Tls {
    url: url::Url,
    dir: PathBuf,
}

fn server(test: &str) -> Option<Tls> {
    let url = sched_tests::env::require_url(VAR, test)?;
    let dir = std::env::var("SCHED_TLS_DIR")
        .unwrap_or_else(|_| panic!("{test}: {VAR} is set but SCHED_TLS_DIR is not"));
    let mut url = url::Url::parse(&url).unwrap();
    url.set_query(None);
    Some(Tls {
        url,
        dir: dir.into(),
    })
}

impl Tls {
    /// A file of `SCHED_TLS_DIR`, as a path string.
    fn file(&self, name: &str) -> String {
        let p = self.dir.join(name);
        assert!(
            p.exists(),
            "{} is missing (run .ci/tls/start.sh)",
            p.display()
        );
        p.to_string_lossy().into_owned()
    }

    /// The password of `sched_pw`.
    fn password(&self) -> String {
        std::fs::read_to_string(self.file("sched_pw.password"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The server URL as `user` (with `password`), at `host`, with the query `params`.
    fn url(
        &self,
        user: &str,
        password: Option<&str>,
        host: &str,
        params: &[(&str, &str)],
    ) -> String {
        let mut u = self.url.clone();
        u.set_username(user).unwrap();
        u.set_password(password).unwrap();
        u.set_host(Some(host)).unwrap();
        for (k, v) in params {
            u.query_pairs_mut().append_pair(k, v);
        }
        u.into()
    }

    /// `sslmode=verify-full` trusting the test CA.
    fn verify_full(&self, user: &str, password: Option<&str>, extra: &[(&str, &str)]) -> String {
        let ca = self.file("ca.pem");
        let mut params = vec![("sslmode", "verify-full"), ("sslrootcert", ca.as_str())];
        params.extend_from_slice(extra);
        self.url(user, password, "127.0.0.1", &params)
    }

    /// `host:port` as errors show it.
    fn endpoint(&self, host: &str) -> String {
        format!("{host}:{}", self.url.port().unwrap_or(5432))
    }
}

/// A migrated repository in a fresh schema, dropped (with a connection of its own, even when the
/// test panics) at the end.
struct TlsDb {
    repo: PostgresRepository,
    url: String,
    schema: String,
}

async fn fresh(url: &str) -> TlsDb {
    let schema = format!("sched_tls_{}", sched_tests::ns::random_hex());
    let cfg = PostgresConfig::from_url(url)
        .unwrap()
        .with_schema(&schema)
        .unwrap()
        .with_max_connections(12);
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    repo.migrate().await.unwrap();
    TlsDb {
        repo,
        url: url.to_owned(),
        schema,
    }
}

impl Drop for TlsDb {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = PgConnection::connect(&url).await?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await?;
                c.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: could not drop schema {}: {done:?}", self.schema);
        }
    }
}

/// `(ssl, current_user)` of one of the repository's own pooled connections.
async fn session(repo: &PostgresRepository) -> (bool, String) {
    sqlx::query_as("SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(repo.pool())
        .await
        .unwrap()
}

async fn connect_err(url: &str) -> RepoError {
    let cfg = PostgresConfig::from_url(url).unwrap();
    match PostgresRepository::connect(cfg).await {
        Ok(_) => panic!("connected, but the connection should have been refused"),
        Err(e) => e,
    }
}

/// Every connect error: names `host:port`, never `secret`.
fn names_host_not_secret(e: &RepoError, endpoint: &str, secret: &str) {
    let shown = format!("{e} / {e:?}");
    assert!(
        shown.contains(endpoint),
        "does not name {endpoint}: {shown}"
    );
    assert!(!shown.contains(secret), "the secret leaked: {shown}");
}

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

/// Every failure: an error that names the host and not the password (the type is asserted by
/// the tests below).
#[tokio::test]
async fn every_tls_failure_names_the_host_and_not_the_secret() {
    let Some(tls) = server("every_tls_failure_names_the_host_and_not_the_secret") else {
        return;
    };
    let pw = tls.password();
    let other_ca = tls.file("other-ca.pem");
    let ca = tls.file("ca.pem");
    let cases = [
        (
            "unknown CA",
            tls.url(
                "sched_pw",
                Some(&pw),
                "127.0.0.1",
                &[("sslmode", "verify-full"), ("sslrootcert", &other_ca)],
            ),
            "127.0.0.1",
        ),
        (
            "wrong host name",
            tls.url(
                "sched_pw",
                Some(&pw),
                "127.0.0.2",
                &[("sslmode", "verify-full"), ("sslrootcert", &ca)],
            ),
            "127.0.0.2",
        ),
        (
            "missing client certificate",
            tls.verify_full("sched_cert", None, &[]),
            "127.0.0.1",
        ),
        (
            "missing CA file",
            tls.url(
                "sched_pw",
                Some(&pw),
                "127.0.0.1",
                &[
                    ("sslmode", "verify-full"),
                    ("sslrootcert", "/nonexistent/ca.pem"),
                ],
            ),
            "127.0.0.1",
        ),
        (
            "untrusted client certificate",
            tls.verify_full(
                "sched_cert",
                None,
                &[
                    ("sslcert", &tls.file("other-client.pem")),
                    ("sslkey", &tls.file("other-client.key")),
                ],
            ),
            "127.0.0.1",
        ),
        (
            "wrong password",
            tls.verify_full("sched_pw", Some("wrong-password-never-shown"), &[]),
            "127.0.0.1",
        ),
    ];
    for (case, url, host) in cases {
        let e = connect_err(&url).await;
        eprintln!("{case}: {e:?}\n    {e}");
        names_host_not_secret(&e, &tls.endpoint(host), &pw);
        assert!(!e.to_string().contains("wrong-password-never-shown"), "{e}");
    }
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
    let e = connect_err(&url).await;
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    names_host_not_secret(&e, &tls.endpoint("127.0.0.1"), &pw);
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
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
    let e = connect_err(&url).await;
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    names_host_not_secret(&e, &tls.endpoint("127.0.0.2"), &pw);
    assert!(e.to_string().contains("not valid for name"), "{e}");
}

/// The certificate user without a certificate: the server refuses it (SQLSTATE 28000).
#[tokio::test]
async fn a_missing_client_certificate_is_unauthorized() {
    let Some(tls) = server("a_missing_client_certificate_is_unauthorized") else {
        return;
    };
    let e = connect_err(&tls.verify_full("sched_cert", None, &[])).await;
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&tls.endpoint("127.0.0.1")), "{msg}");
    assert!(msg.contains("sched_cert"), "{msg}");
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_not_shown() {
    let Some(tls) = server("a_wrong_password_is_unauthorized_and_not_shown") else {
        return;
    };
    let wrong = "wrong-password-never-shown";
    let e = connect_err(&tls.verify_full("sched_pw", Some(wrong), &[])).await;
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    names_host_not_secret(&e, &tls.endpoint("127.0.0.1"), wrong);
    assert!(e.to_string().contains("sched_pw"), "{e}");
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
    let e = connect_err(&url).await;
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&tls.endpoint("127.0.0.1")), "{msg}");
    assert!(msg.contains("sched_cert"), "{msg}");
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
    let e = connect_err(&url).await;
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    names_host_not_secret(&e, &tls.endpoint("127.0.0.1"), &pw);
    assert!(e.to_string().contains(missing), "{e}");
}

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
