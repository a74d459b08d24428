//! `Deserialize` for [`PostgresConfig`] (feature `serde`).

use super::env::Settings;
use super::PostgresConfig;
use serde::{Deserialize, Deserializer};

/// Reads a map with a required `url` and the optional fields `schema`, `application_name`,
/// `ssl_mode`, `ssl_root_cert`, `ssl_cert`, `ssl_key` (paths, or PEM text), `max_connections`, `acquire_timeout_ms`, `statement_timeout_ms`, `lock_timeout_ms`,
/// `idle_in_transaction_timeout_ms`, `client_connection_check_interval_ms`,
/// `call_timeout_ms`, `test_before_acquire` and `max_retries`: the same settings, meanings and
/// checks as [`PostgresConfig::from_env_vars`] (0 ms turns an optional timeout off). An unknown
/// field, or a value the builders refuse (a bad schema name, `max_connections: 0`), is a
/// deserialisation error naming the field; the URL is never repeated in an error.
///
/// ```
/// # fn main() -> Result<(), serde_json::Error> {
/// let c: sched_postgres::PostgresConfig = serde_json::from_str(
///     r#"{"url": "postgres://app@db/sched", "schema": "sched_prod", "lock_timeout_ms": 0}"#,
/// )?;
/// assert_eq!(c.schema(), "sched_prod");
/// assert_eq!(c.lock_timeout(), None);
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for PostgresConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let settings = Settings::deserialize(deserializer)?;
        settings
            .build("url", str::to_owned)
            .map_err(serde::de::Error::custom)
    }
}
