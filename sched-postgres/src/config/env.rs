//! [`PostgresConfig::from_env`]: the configuration from environment variables, and the
//! [`Settings`] that it and deserialisation (feature `serde`) both apply through the builders.

use super::{ConfigError, PostgresConfig};
use std::time::Duration;

/// The variable holding the connection URL (required).
const URL_VAR: &str = "DATABASE_URL";

/// Every setting beyond the URL, each optional, named as fields (`schema`, ...); the
/// environment variable is `SCHED_PG_` + the field's name in upper case. Durations are whole
/// milliseconds; for the optional timeouts 0 means "none" (see each builder).
// No `Debug`: the URL may hold a password and `ssl_key` a private key.
#[derive(Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub(super) struct Settings {
    /// The connection URL.
    pub(super) url: String,
    schema: Option<String>,
    application_name: Option<String>,
    ssl_mode: Option<String>,
    ssl_root_cert: Option<String>,
    ssl_cert: Option<String>,
    ssl_key: Option<String>,
    max_connections: Option<u32>,
    acquire_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
    lock_timeout_ms: Option<u64>,
    idle_in_transaction_timeout_ms: Option<u64>,
    client_connection_check_interval_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    test_before_acquire: Option<bool>,
    max_retries: Option<u32>,
}

/// PEM text (as sqlx reads `PGSSL*`: it starts with `-----BEGIN` and ends with `-----`), not a
/// path.
fn is_pem(value: &str) -> bool {
    let t = value.trim();
    t.starts_with("-----BEGIN") && t.ends_with("-----")
}

/// `Some(d)`, or `None` for 0 ms.
fn optional(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Settings {
    /// Builds the configuration: the URL through [`PostgresConfig::from_url`], each setting
    /// given through its builder. `name` turns a field's name into the name an error shows
    /// (the environment variable, or the field itself).
    pub(super) fn build(
        self,
        url_name: &str,
        name: impl Fn(&str) -> String,
    ) -> Result<PostgresConfig, ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::InvalidSetting {
            name: name(field),
            reason,
        };
        // sqlx's parse errors describe the problem without echoing the URL.
        let mut c = PostgresConfig::from_url(&self.url).map_err(|e| match e {
            ConfigError::InvalidUrl(reason) => ConfigError::InvalidSetting {
                name: url_name.to_owned(),
                reason,
            },
            other => other,
        })?;
        if let Some(schema) = self.schema {
            c = c
                .with_schema(&schema)
                .map_err(|e| invalid("schema", e.to_string()))?;
        }
        if let Some(app) = self.application_name {
            c = c.with_application_name(&app);
        }
        if let Some(mode) = self.ssl_mode {
            c = c
                .with_ssl_mode(&mode)
                .map_err(|e| invalid("ssl_mode", e.to_string()))?;
        }
        match self.ssl_root_cert {
            Some(pem) if is_pem(&pem) => c = c.with_ssl_root_cert_from_pem(pem),
            Some(path) => c = c.with_ssl_root_cert(path),
            None => {}
        }
        // The values are paths or PEM (a key): never repeated in an error.
        match (self.ssl_cert, self.ssl_key) {
            (Some(cert), Some(key)) if is_pem(&cert) && is_pem(&key) => {
                c = c.with_ssl_client_cert_from_pem(cert, key)
            }
            (Some(cert), Some(key)) if !is_pem(&cert) && !is_pem(&key) => {
                c = c.with_ssl_client_cert(cert, key)
            }
            (Some(_), Some(_)) => {
                let reason = format!(
                    "give both {} and {} as file paths, or both as PEM text",
                    name("ssl_cert"),
                    name("ssl_key")
                );
                return Err(invalid("ssl_key", reason));
            }
            (Some(_), None) => {
                let reason = format!("the client certificate needs {} too", name("ssl_key"));
                return Err(invalid("ssl_cert", reason));
            }
            (None, Some(_)) => {
                let reason = format!("the key needs {} too", name("ssl_cert"));
                return Err(invalid("ssl_key", reason));
            }
            (None, None) => {}
        }
        match self.max_connections {
            Some(0) => return Err(invalid("max_connections", "must be at least 1".into())),
            Some(n) => c = c.with_max_connections(n),
            None => {}
        }
        match self.acquire_timeout_ms {
            Some(0) => return Err(invalid("acquire_timeout_ms", "must be at least 1".into())),
            Some(ms) => c = c.with_acquire_timeout(Duration::from_millis(ms)),
            None => {}
        }
        if let Some(ms) = self.statement_timeout_ms {
            c = c.with_statement_timeout(optional(ms));
        }
        if let Some(ms) = self.lock_timeout_ms {
            c = c.with_lock_timeout(optional(ms));
        }
        if let Some(ms) = self.idle_in_transaction_timeout_ms {
            c = c.with_idle_in_transaction_timeout(optional(ms));
        }
        if let Some(ms) = self.client_connection_check_interval_ms {
            c = c.with_client_connection_check_interval(optional(ms));
        }
        if let Some(ms) = self.call_timeout_ms {
            c = c.with_call_timeout(optional(ms));
        }
        if let Some(on) = self.test_before_acquire {
            c = c.with_test_before_acquire(on);
        }
        if let Some(n) = self.max_retries {
            c = c.with_max_retries(n);
        }
        Ok(c)
    }
}

/// `SCHED_PG_` + the field's name in upper case.
fn var_name(field: &str) -> String {
    format!("SCHED_PG_{}", field.to_ascii_uppercase())
}

impl PostgresConfig {
    /// The configuration from the process environment: see [`Self::from_env_vars`].
    /// A value that is not valid UTF-8 is read lossily (so it fails validation, not silently).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(|var| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned()))
    }

    /// The configuration from variables looked up with `lookup` (tests pass a map instead of
    /// changing the process environment). An empty value counts as unset.
    ///
    /// | variable | builder | unset |
    /// |---|---|---|
    /// | `DATABASE_URL` (required) | [`from_url`](Self::from_url) | [`ConfigError::MissingVar`] |
    /// | `SCHED_PG_SCHEMA` | [`with_schema`](Self::with_schema) | `sched` |
    /// | `SCHED_PG_APPLICATION_NAME` | [`with_application_name`](Self::with_application_name) | the URL's |
    /// | `SCHED_PG_SSL_MODE` (`disable` … `verify-full`) | [`with_ssl_mode`](Self::with_ssl_mode) | the URL's `sslmode`, else `prefer` |
    /// | `SCHED_PG_SSL_ROOT_CERT` (a path, or PEM text) | [`with_ssl_root_cert`](Self::with_ssl_root_cert) / [`…_from_pem`](Self::with_ssl_root_cert_from_pem) | the URL's `sslrootcert`, else `PGSSLROOTCERT` |
    /// | `SCHED_PG_SSL_CERT` and `SCHED_PG_SSL_KEY` (both paths, or both PEM text) | [`with_ssl_client_cert`](Self::with_ssl_client_cert) / [`…_from_pem`](Self::with_ssl_client_cert_from_pem) | the URL's `sslcert`/`sslkey`, else `PGSSLCERT`/`PGSSLKEY` |
    /// | `SCHED_PG_MAX_CONNECTIONS` (at least 1) | [`with_max_connections`](Self::with_max_connections) | 10 |
    /// | `SCHED_PG_ACQUIRE_TIMEOUT_MS` (at least 1) | [`with_acquire_timeout`](Self::with_acquire_timeout) | 5000 |
    /// | `SCHED_PG_STATEMENT_TIMEOUT_MS` (0: the server's) | [`with_statement_timeout`](Self::with_statement_timeout) | 30000 |
    /// | `SCHED_PG_LOCK_TIMEOUT_MS` (0: none) | [`with_lock_timeout`](Self::with_lock_timeout) | 10000 |
    /// | `SCHED_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS` (0: none) | [`with_idle_in_transaction_timeout`](Self::with_idle_in_transaction_timeout) | 60000 |
    /// | `SCHED_PG_CLIENT_CONNECTION_CHECK_INTERVAL_MS` (0: not sent) | [`with_client_connection_check_interval`](Self::with_client_connection_check_interval) | 1000 |
    /// | `SCHED_PG_CALL_TIMEOUT_MS` (0: none) | [`with_call_timeout`](Self::with_call_timeout) | 40000 |
    /// | `SCHED_PG_TEST_BEFORE_ACQUIRE` (`true`/`false`/`1`/`0`) | [`with_test_before_acquire`](Self::with_test_before_acquire) | false |
    /// | `SCHED_PG_MAX_RETRIES` | [`with_max_retries`](Self::with_max_retries) | 5 |
    ///
    /// A bad value is [`ConfigError::InvalidSetting`] naming the variable (the URL is never
    /// repeated).
    ///
    /// ```
    /// use sched_postgres::PostgresConfig;
    /// let env = |var: &str| match var {
    ///     "DATABASE_URL" => Some("postgres://app@db:5432/sched".to_owned()),
    ///     "SCHED_PG_SCHEMA" => Some("sched_prod".to_owned()),
    ///     _ => None,
    /// };
    /// let c = PostgresConfig::from_env_vars(env).unwrap();
    /// assert_eq!(c.schema(), "sched_prod");
    /// ```
    pub fn from_env_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |field: &str| lookup(&var_name(field)).filter(|v| !v.is_empty());
        let number = |field: &str| -> Result<Option<u64>, ConfigError> {
            get(field)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| ConfigError::InvalidSetting {
                            name: var_name(field),
                            reason: format!("{v:?} is not a whole number"),
                        })
                })
                .transpose()
        };
        let small = |field: &str| -> Result<Option<u32>, ConfigError> {
            number(field)?
                .map(|n| {
                    u32::try_from(n).map_err(|_| ConfigError::InvalidSetting {
                        name: var_name(field),
                        reason: format!("{n} is too large"),
                    })
                })
                .transpose()
        };
        let test_before_acquire = match get("test_before_acquire") {
            None => None,
            Some(v) => Some(match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ConfigError::InvalidSetting {
                        name: var_name("test_before_acquire"),
                        reason: format!("{v:?} is not true, false, 1 or 0"),
                    })
                }
            }),
        };
        let url = lookup(URL_VAR)
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::MissingVar { var: URL_VAR })?;
        let settings = Settings {
            url,
            schema: get("schema"),
            application_name: get("application_name"),
            ssl_mode: get("ssl_mode"),
            ssl_root_cert: get("ssl_root_cert"),
            ssl_cert: get("ssl_cert"),
            ssl_key: get("ssl_key"),
            max_connections: small("max_connections")?,
            acquire_timeout_ms: number("acquire_timeout_ms")?,
            statement_timeout_ms: number("statement_timeout_ms")?,
            lock_timeout_ms: number("lock_timeout_ms")?,
            idle_in_transaction_timeout_ms: number("idle_in_transaction_timeout_ms")?,
            client_connection_check_interval_ms: number("client_connection_check_interval_ms")?,
            call_timeout_ms: number("call_timeout_ms")?,
            test_before_acquire,
            max_retries: small("max_retries")?,
        };
        settings.build(URL_VAR, var_name)
    }
}
