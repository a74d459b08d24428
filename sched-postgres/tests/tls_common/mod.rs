//! Shared by `tls.rs` and `tls_builders.rs`: the TLS server `.ci/tls/start.sh` starts, its
//! certificates, and helpers. Not every test file uses every helper.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

#[path = "../common/cleanup.rs"]
mod cleanup;

use sched_core::RepoError;
use sched_postgres::{PostgresConfig, PostgresRepository};
use std::path::PathBuf;

pub const VAR: &str = "DATABASE_TLS_URL";

/// The TLS server and the certificates `.ci/tls/start.sh` made for it.
pub struct Tls {
    pub url: url::Url,
    pub dir: PathBuf,
}

pub fn server(test: &str) -> Option<Tls> {
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
    pub fn file(&self, name: &str) -> String {
        let p = self.dir.join(name);
        assert!(
            p.exists(),
            "{} is missing (run .ci/tls/start.sh)",
            p.display()
        );
        p.to_string_lossy().into_owned()
    }

    /// The password of `sched_pw`.
    pub fn password(&self) -> String {
        std::fs::read_to_string(self.file("sched_pw.password"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The server URL as `user` (with `password`), at `host`, with the query `params`.
    pub fn url(
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
    pub fn verify_full(
        &self,
        user: &str,
        password: Option<&str>,
        extra: &[(&str, &str)],
    ) -> String {
        let ca = self.file("ca.pem");
        let mut params = vec![("sslmode", "verify-full"), ("sslrootcert", ca.as_str())];
        params.extend_from_slice(extra);
        self.url(user, password, "127.0.0.1", &params)
    }

    /// `host:port` as errors show it.
    pub fn endpoint(&self, host: &str) -> String {
        format!("{host}:{}", self.url.port().unwrap_or(5432))
    }
}

/// A migrated repository in a fresh schema, dropped (with a connection of its own, even when the
/// test panics) at the end.
pub struct TlsDb {
    pub repo: PostgresRepository,
    pub url: String,
    pub schema: String,
}

pub async fn fresh(url: &str) -> TlsDb {
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
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        let what = format!("schema {}", self.schema);
        cleanup::run_on_drop(&self.url, vec![sql], &what);
    }
}

/// `(ssl, current_user)` of one of the repository's own pooled connections.
pub async fn session(repo: &PostgresRepository) -> (bool, String) {
    sqlx::query_as("SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(repo.pool())
        .await
        .unwrap()
}

pub async fn connect_err(url: &str) -> RepoError {
    let cfg = PostgresConfig::from_url(url).unwrap();
    match PostgresRepository::connect(cfg).await {
        Ok(_) => panic!("connected, but the connection should have been refused"),
        Err(e) => e,
    }
}

/// Every connect error: names `host:port`, never `secret`.
pub fn names_host_not_secret(e: &RepoError, endpoint: &str, secret: &str) {
    let shown = format!("{e} / {e:?}");
    assert!(
        shown.contains(endpoint),
        "does not name {endpoint}: {shown}"
    );
    assert!(!shown.contains(secret), "the secret leaked: {shown}");
}
