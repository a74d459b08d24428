//! Test harness: every test gets its own fresh schema (random name), migrated, and dropped
//! (CASCADE) when the test ends, even if it panics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let url = sched_tests::env::require_url(VAR, test)?;
    let schema = random_schema();
    let config = adjust(
        PostgresConfig::from_url(&url)
            .expect("DATABASE_URL parses")
            .with_schema(&schema)
            .expect("valid schema name")
            .with_max_connections(12),
    );
    let repo = PostgresRepository::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to {VAR}: {e}"));
    let db = TestDb { repo, url, schema };
    db.repo
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("{test}: migrate failed: {e}"));
    Some(db)
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
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = PgConnection::connect(&url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut c)
                .await?;
                c.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop test schema {}: {done:?}",
                self.schema
            );
        }
    }
}

/// Forwards everything to the repository; the wrapper only adds the clean-up on drop.
impl sched_core::RepositoryLayer for TestDb {
    type Inner = PostgresRepository;
    fn inner(&self) -> &PostgresRepository {
        &self.repo
    }
}
