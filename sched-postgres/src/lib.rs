//! # sched-postgres
//!
//! [`PostgresRepository`]: a [`WorkerRepository`](sched_core::WorkerRepository) on PostgreSQL
//! (sqlx, runtime queries only, so building needs no database).
//!
//! * **Schema** from embedded migrations, applied by an explicit [`PostgresRepository::migrate`]
//!   into a configurable schema (the connection's `search_path`), so runs are kept apart.
//! * **One round trip per burst**: one plpgsql function per `reserve_batch` / `release_batch`
//!   locks the workers in id order; `reserve_batch` then judges and writes the whole burst with
//!   set-based statements (no subtransaction). Its per-worker rule mirrors sched-core's
//!   reference rule.
//! * **The database enforces the invariants**: `0 <= free <= total` (CHECK), one holder per
//!   container (primary key), versions never repeat across remove/re-register (tombstones).
//! * **Session settings pinned** on every pooled connection (startup options, overriding the
//!   URL's and the server's defaults): `read committed`, `lock_timeout`,
//!   `idle_in_transaction_session_timeout`, `client_connection_check_interval`, and the
//!   statement timeout; a statement whose call was abandoned has its connection closed, so the
//!   server aborts it instead of committing it later.
//! * **The lifecycle** (leases, heartbeats, status, bulk release) in one statement per call,
//!   under the worker's row lock, judged by the server's clock (`clock_timestamp()`), never the
//!   client's; **wake-ups** over `LISTEN/NOTIFY` on a channel derived from the schema, on a
//!   dedicated connection per subscription.
//! * **Configuration** from a URL and builders, from the environment
//!   ([`PostgresConfig::from_env`]: `DATABASE_URL` and `SCHED_PG_*`), or, with the `serde`
//!   feature, deserialised (`url` plus the same settings), all through the same checks.
//! * **Typed errors**: refused connections, credentials or privileges
//!   ([`RepoError::Unauthorized`](sched_core::RepoError::Unauthorized), also at request time),
//!   unknown databases and unmigrated schemas are told apart from transient failures.
//! * **Test hooks** (`drop_schema`, `corrupt_free`, `pool`, `MIGRATOR`, `function_usec`) need the
//!   `testing` feature.
//!
//! The crate's `ARCHITECTURE.md` describes the tables, functions, retries and round trips.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod burst;
mod config;
mod error;
mod exec;
#[cfg(feature = "testing")]
mod hooks;
mod lifecycle;
mod repo;
mod wakeups;

pub use config::{validate_schema, ConfigError, PostgresConfig, DEFAULT_SCHEMA};
pub use repo::PostgresRepository;
#[cfg(feature = "testing")]
pub use repo::MIGRATOR;
