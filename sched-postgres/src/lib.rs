//! # sched-postgres
//!
//! [`PostgresRepository`]: a [`WorkerRepository`](sched_core::WorkerRepository) on PostgreSQL
//! (sqlx, runtime queries only, so building needs no database).
//!
//! * **Schema** from embedded migrations, applied by an explicit
//!   [`PostgresRepository::migrate`] into a configurable schema (the connection's
//!   `search_path`), so deployments and test runs are kept apart.
//! * **One round trip per burst.** `reserve_batch` and `release_batch` each call one plpgsql
//!   function that handles every worker of the burst: workers are locked in id order
//!   (`SELECT … FOR UPDATE`), and each worker's part runs in its own subtransaction, so one
//!   worker's rejection never undoes another's commit.
//! * **The database enforces the invariants**: CHECK constraints keep `0 <= free <= total`, the
//!   reservations' primary key allows one holder per container, and a tombstone table keeps
//!   versions from repeating across remove/re-register.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sched_postgres::{PostgresConfig, PostgresRepository};
//! let config = PostgresConfig::from_url("postgres://postgres@127.0.0.1:5432/test")?
//!     .with_schema("sched")?;
//! let repo = PostgresRepository::connect(config).await?;
//! repo.migrate().await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod repo;

pub use config::{validate_schema, ConfigError, PostgresConfig, DEFAULT_SCHEMA};
pub use repo::{PostgresRepository, MIGRATOR};
