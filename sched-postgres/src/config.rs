//! [`PostgresConfig`]: where the store lives and how the pool behaves.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "sched";

/// A configuration value is not acceptable. No variant ever holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection URL could not be parsed. The URL itself is not repeated (it may hold a
    /// password).
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The schema name is not a plain lower-case SQL identifier.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchema {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A required environment variable is not set (or is empty).
    #[error("environment variable {var} is not set")]
    MissingVar {
        /// The variable.
        var: &'static str,
    },
    /// A setting has an unacceptable value: `name` is the environment variable, the
    /// deserialised field or the builder's setting. A URL is never repeated.
    #[error("invalid {name}: {reason}")]
    InvalidSetting {
        /// The environment variable, field or setting.
        name: String,
        /// Why (the value is shown only when it cannot be a secret).
        reason: String,
    },
}

/// How to reach PostgreSQL and how to use it.
///
/// Built from a `postgres://user:password@host:port/db?sslmode=...` URL. The password is kept
/// for connecting but never shown: `Debug` prints it as `<redacted>`. TLS: `sslmode`,
/// `sslrootcert`, `sslcert` and `sslkey` in the URL, or [`with_ssl_mode`](Self::with_ssl_mode),
/// [`with_ssl_root_cert`](Self::with_ssl_root_cert) and
/// [`with_ssl_client_cert`](Self::with_ssl_client_cert) (or their `_from_pem` forms); `Debug`
/// shows the files' paths, never PEM content.
///
/// ```
/// use sched_postgres::PostgresConfig;
/// let c = PostgresConfig::from_url("postgres://app:s3cret@db.internal:5432/sched?sslmode=require")
///     .unwrap()
///     .with_schema("sched_prod")
///     .unwrap()
///     .with_max_connections(16);
/// assert!(!format!("{c:?}").contains("s3cret"));
/// assert_eq!(c.schema(), "sched_prod");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    connect: PgConnectOptions,
    /// What `Debug` shows for the password.
    password: &'static str,
    /// Where the TLS inputs come from (paths, never PEM content).
    tls: tls::TlsInputs,
    schema: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    idle_in_transaction_timeout: Option<Duration>,
    client_connection_check_interval: Option<Duration>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) test_before_acquire: bool,
    pub(crate) max_retries: u32,
}

impl PostgresConfig {
    /// Parses a `postgres://` (or `postgresql://`) URL. `sslmode`, `application_name` and the
    /// other query parameters libpq knows are honoured.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            // sqlx's parse errors describe the problem without echoing the URL.
            ConfigError::InvalidUrl(e.to_string())
        })?;
        // Whether the URL itself carries a password (the options also read PGPASSWORD/.pgpass,
        // which we cannot observe through the public API).
        let parsed = url::Url::parse(url).ok();
        let password = match parsed.as_ref().is_some_and(|u| u.password().is_some()) {
            true => "<redacted>",
            false => "<none in url>",
        };
        // What sqlx took from the URL and the PGSSL* variables (it read the same ones).
        let tls = parsed
            .map(|u| tls::TlsInputs::of_url(&u, |v| std::env::var(v).ok()))
            .unwrap_or_default();
        Ok(PostgresConfig {
            connect,
            password,
            tls,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            lock_timeout: Some(Duration::from_secs(10)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            client_connection_check_interval: Some(Duration::from_secs(1)),
            call_timeout: Some(Duration::from_secs(40)),
            test_before_acquire: false,
            max_retries: 5,
        })
    }

    /// Sets the schema every table, function and the migration history live in. Must be a plain
    /// lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes, not starting with `pg_`).
    pub fn with_schema(mut self, schema: &str) -> Result<Self, ConfigError> {
        validate_schema(schema)?;
        self.schema = schema.to_owned();
        Ok(self)
    }

    /// Sets the user to log in as (overrides the URL's).
    pub fn with_user(mut self, user: &str) -> Self {
        self.connect = self.connect.username(user);
        self
    }

    /// Sets the password (overrides the URL's). Never shown: `Debug` prints `<redacted>`.
    pub fn with_password(mut self, password: &str) -> Self {
        self.connect = self.connect.password(password);
        self.password = "<redacted>";
        self
    }

    /// Sets the database to connect to (overrides the URL's).
    pub fn with_database(mut self, database: &str) -> Self {
        self.connect = self.connect.database(database);
        self
    }

    /// Sets the TLS mode by its libpq name: `disable`, `allow`, `prefer`, `require`,
    /// `verify-ca` or `verify-full` (case-insensitive; overrides the URL's `sslmode`).
    pub fn with_ssl_mode(mut self, mode: &str) -> Result<Self, ConfigError> {
        let parsed = PgSslMode::from_str(mode).map_err(|_| ConfigError::InvalidSetting {
            name: "sslmode".to_owned(),
            reason: format!(
                "{mode:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
        })?;
        self.connect = self.connect.ssl_mode(parsed);
        Ok(self)
    }

    /// The user connections log in as.
    pub fn user(&self) -> &str {
        self.connect.get_username()
    }

    /// The database, if one is set (else the server uses the user's name).
    pub fn database(&self) -> Option<&str> {
        self.connect.get_database()
    }

    /// The TLS mode, by its libpq name (`prefer` unless set).
    pub fn ssl_mode(&self) -> &'static str {
        match self.connect.get_ssl_mode() {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    /// `host:port`, for error messages (never credentials).
    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    /// Overrides the server host (e.g. to go through a proxy).
    pub fn with_host(mut self, host: &str) -> Self {
        self.connect = self.connect.host(host);
        self
    }

    /// Overrides the server port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.connect = self.connect.port(port);
        self
    }

    /// Sets `application_name` on every connection (shown in `pg_stat_activity`), e.g. to find
    /// or terminate this repository's connections. Overrides one given in the URL.
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.connect = self.connect.application_name(name);
        self
    }

    /// The `application_name` connections report, if set.
    pub fn application_name(&self) -> Option<&str> {
        self.connect.get_application_name()
    }

    /// The server host.
    pub fn host(&self) -> &str {
        self.connect.get_host()
    }

    /// The server port.
    pub fn port(&self) -> u16 {
        self.connect.get_port()
    }

    /// The pool's size.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// How long a call waits for a pooled connection.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// Most connections the pool opens (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a call waits for a pooled connection (including connecting) before failing with
    /// [`RepoError::Unavailable`](sched_core::RepoError::Unavailable).
    pub fn with_acquire_timeout(mut self, t: Duration) -> Self {
        self.acquire_timeout = t;
        self
    }

    /// Server-side `statement_timeout` for every statement (`None`: the server's default).
    /// A statement that times out is rolled back.
    pub fn with_statement_timeout(mut self, t: Option<Duration>) -> Self {
        self.statement_timeout = t;
        self
    }

    /// Server-side `lock_timeout` (default 10 s; `None`: no limit). A statement that waits longer
    /// than this for one lock (a worker row held by a stuck transaction) is rolled back and the
    /// call fails with [`RepoError::Unavailable`](sched_core::RepoError::Unavailable). Pinned on
    /// every connection: a value in the URL or the server's configuration is overridden.
    pub fn with_lock_timeout(mut self, t: Option<Duration>) -> Self {
        self.lock_timeout = t;
        self
    }

    /// Server-side `idle_in_transaction_session_timeout` (default 60 s; `None`: no limit): the
    /// server ends a session left idle inside an open transaction (its locks go with it). The
    /// repository never leaves a transaction open between statements; this bounds what a stray
    /// one could hold. Pinned on every connection.
    pub fn with_idle_in_transaction_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_in_transaction_timeout = t;
        self
    }

    /// Server-side `client_connection_check_interval` (default 1 s; PostgreSQL 14 or later):
    /// how often a backend running a statement checks that its client is still connected, so a
    /// statement whose connection was closed (an abandoned call) is aborted instead of
    /// committing later. `None` sends nothing (the server's default applies; needed for servers
    /// older than 14, which do not know the setting). A write whose connection is lost
    /// mid-statement waits one interval (+ 0.5 s) before it reports
    /// [`RepoError::Ambiguous`](sched_core::RepoError::Ambiguous), so that a lookup made next
    /// sees the final outcome.
    pub fn with_client_connection_check_interval(mut self, t: Option<Duration>) -> Self {
        self.client_connection_check_interval = t;
        self
    }

    /// Client-side limit on one statement's round trip (default 40 s; `None`: none). When it
    /// passes, the connection is closed (so the server aborts the statement at its next client
    /// check) and a write fails with [`RepoError::Ambiguous`](sched_core::RepoError::Ambiguous)
    /// (it may have committed just before), a read with
    /// [`RepoError::Unavailable`](sched_core::RepoError::Unavailable). Keep it above the
    /// statement timeout, so that a live server's own timeout (a clean rollback) fires first.
    pub fn with_call_timeout(mut self, t: Option<Duration>) -> Self {
        self.call_timeout = t;
        self
    }

    /// Whether the pool pings a connection before handing it out. Off by default: the ping is an
    /// extra round trip per call. With it off, a connection the server dropped while idle shows
    /// up as one [`RepoError::Ambiguous`](sched_core::RepoError::Ambiguous) write (a read
    /// is retried on another connection).
    pub fn with_test_before_acquire(mut self, on: bool) -> Self {
        self.test_before_acquire = on;
        self
    }

    /// How often a call is retried after a serialization failure or deadlock (the statement was
    /// rolled back, so retrying is safe).
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The server-side statement timeout (`None`: the server's default).
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// The server-side lock timeout (`None`: no limit).
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// The server-side idle-in-transaction session timeout (`None`: no limit).
    pub fn idle_in_transaction_timeout(&self) -> Option<Duration> {
        self.idle_in_transaction_timeout
    }

    /// How often the server checks that a running statement's client is still there (`None`:
    /// not sent, the server's default).
    pub fn client_connection_check_interval(&self) -> Option<Duration> {
        self.client_connection_check_interval
    }

    /// The client-side limit on one statement's round trip (`None`: none).
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// How many times a rolled-back statement is retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The session settings pinned on every connection, as startup options (they come after
    /// any `options` given in the URL, so they win over it, and startup options rank above the
    /// server's, database's and role's defaults): the schema as `search_path`,
    /// `default_transaction_isolation = 'read committed'` (the SQL functions assume it), and
    /// the timeouts. Durations are in milliseconds; 0 disables a timeout.
    pub(crate) fn session_settings(&self) -> Vec<(&'static str, String)> {
        let ms = |t: Option<Duration>| t.map_or(0, |t| t.as_millis().max(1)).to_string();
        let mut opts = vec![
            ("search_path", self.schema.clone()),
            ("default_transaction_isolation", "read committed".to_owned()),
            ("lock_timeout", ms(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction_timeout),
            ),
        ];
        if self.statement_timeout.is_some() {
            opts.push(("statement_timeout", ms(self.statement_timeout)));
        }
        if self.client_connection_check_interval.is_some() {
            opts.push((
                "client_connection_check_interval",
                ms(self.client_connection_check_interval),
            ));
        }
        opts
    }

    /// Connection options carrying [`Self::session_settings`].
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        self.connect.clone().options(self.session_settings())
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ssl = self.ssl_mode();
        f.debug_struct("PostgresConfig")
            .field("host", &self.connect.get_host())
            .field("port", &self.connect.get_port())
            .field("user", &self.connect.get_username())
            .field("password", &self.password)
            .field("database", &self.connect.get_database())
            .field("sslmode", &ssl)
            .field("ssl_root_cert", &self.tls.root_cert)
            .field("ssl_client_cert", &self.tls.client_cert)
            .field("ssl_client_key", &self.tls.client_key)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field(
                "client_connection_check_interval",
                &self.client_connection_check_interval,
            )
            .field("call_timeout", &self.call_timeout)
            .field("test_before_acquire", &self.test_before_acquire)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// Checks a schema name: `[a-z_][a-z0-9_]*`, 1..=63 bytes, not `pg_*`.
pub fn validate_schema(name: &str) -> Result<(), ConfigError> {
    let ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let reason = match name.chars().next() {
        None => "empty",
        _ if name.len() > 63 => "longer than 63 bytes",
        _ if name.starts_with("pg_") => "names starting with pg_ are reserved",
        Some(c) if c.is_ascii_digit() || !ident(c) => {
            "must start with a lower-case ASCII letter or underscore"
        }
        _ if !name.chars().all(ident) => {
            "only lower-case ASCII letters, digits and underscores are allowed"
        }
        _ => return Ok(()),
    };
    let name = name.to_owned();
    Err(ConfigError::InvalidSchema { name, reason })
}

/// The schema name as a quoted SQL identifier (it is validated, so this is belt and braces).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(feature = "serde")]
mod de;
mod env;
#[cfg(test)]
mod tests;
mod tls;
