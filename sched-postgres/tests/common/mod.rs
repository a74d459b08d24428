//! Test harness: every test gets its own fresh schema (random name), migrated, and dropped
//! (CASCADE) when the test ends, even if it panics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cleanup;

use sched_postgres::{PostgresConfig, PostgresRepository};
use sqlx::{Connection, PgConnection};

/// The env var naming the server.
pub const VAR: &str = "DATABASE_URL";

/// A repository in a throw-away schema.
pub struct TestDb {
    pub repo: PostgresRepository,
    url: String,
    schema: String,
}

/// A fresh schema name: `sched_test_<random hex>`.
pub fn random_schema() -> String {
    format!("sched_test_{}", sched_tests::ns::random_hex())
}

/// Connects to `DATABASE_URL` in a new schema and migrates it; `None` (skip) when unset.
pub async fn setup(test: &str) -> Option<TestDb> {
    setup_with(test, |c| c).await
}

/// Like [`setup`], with a hook to adjust the configuration.
pub async fn setup_with(
    test: &str,
    adjust: impl FnOnce(PostgresConfig) -> PostgresConfig,
) -> Option<TestDb> {
    setup_url(test, "", adjust).await
}

/// Like [`setup_with`], with `query` (e.g. `options%5Block_timeout%5D=0`) appended to the URL's
/// query string for the repository's connections (the test's own raw connections use the plain
/// URL).
pub async fn setup_url(
    test: &str,
    query: &str,
    adjust: impl FnOnce(PostgresConfig) -> PostgresConfig,
) -> Option<TestDb> {
    let url = sched_tests::env::require_url(VAR, test)?;
    let schema = random_schema();
    let repo_url = with_query(&url, query);
    let base = PostgresConfig::from_url(&repo_url)
        .expect("DATABASE_URL parses")
        .with_schema(&schema)
        .expect("valid schema name")
        .with_max_connections(12);
    // Migrate with the plain configuration: a test's short call timeout is for its own calls,
    // not for creating the schema.
    let migrator = PostgresRepository::connect(base.clone())
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to {VAR}: {e}"));
    migrator
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("{test}: migrate failed: {e}"));
    drop(migrator);
    let repo = PostgresRepository::connect(adjust(base))
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to {VAR}: {e}"));
    let db = TestDb { repo, url, schema };
    Some(db)
}

/// `url` with `query` appended to its query string.
pub fn with_query(url: &str, query: &str) -> String {
    match (query.is_empty(), url.contains('?')) {
        (true, _) => url.to_owned(),
        (false, true) => format!("{url}&{query}"),
        (false, false) => format!("{url}?{query}"),
    }
}

/// Waits (up to 10 s) until a backend whose `application_name` is `app` waits on a lock, and
/// returns its pid.
pub async fn wait_for_lock_waiter(raw: &mut PgConnection, app: &str) -> i32 {
    for _ in 0..500 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND wait_event_type = 'Lock' LIMIT 1",
        )
        .bind(app)
        .fetch_optional(&mut *raw)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no backend of {app} ever waited on a lock");
}

/// Number of backends whose `application_name` is `app` that are running a statement.
pub async fn active_backends(raw: &mut PgConnection, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
    )
    .bind(app)
    .fetch_one(&mut *raw)
    .await
    .unwrap()
}

/// Waits up to `limit` until no backend of `app` runs a statement; returns whether that happened.
pub async fn wait_until_idle(
    raw: &mut PgConnection,
    app: &str,
    limit: std::time::Duration,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        if active_backends(raw, app).await == 0 {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestDb {
    /// The schema this test works in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A second repository on the same schema (its own pool and counters).
    pub async fn another(&self) -> PostgresRepository {
        PostgresRepository::connect(self.repo.config().clone())
            .await
            .unwrap()
    }

    /// A connection of its own holding `worker`'s row lock in an open transaction (dropping it
    /// ends the transaction and frees the row).
    pub async fn hold_worker_row(&self, worker: &str) -> PgConnection {
        let mut c = self.raw().await;
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query("SELECT 1 FROM workers WHERE id = $1 FOR UPDATE")
            .bind(worker)
            .execute(&mut c)
            .await
            .unwrap();
        c
    }

    /// A plain connection whose search_path is this schema, for poking at tables directly.
    pub async fn raw(&self) -> PgConnection {
        let mut c = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{}\"",
            self.schema
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        let what = format!("test schema {}", self.schema);
        cleanup::run_on_drop(&self.url, vec![sql], &what);
    }
}

/// Forwards everything to the repository; the wrapper only adds the clean-up on drop.
impl sched_core::RepositoryLayer for TestDb {
    type Inner = PostgresRepository;
    fn inner(&self) -> &PostgresRepository {
        &self.repo
    }
}
