//! Opening the store named by the options: memory (seeded with the demo state), Redis with
//! redis-rs or fred (standalone or Cluster), or PostgreSQL.

use crate::cli::{BackendKind, StoreArgs};
use crate::demo_state;
use crate::error::{CtlError, Endpoint, ErrorContext};
use percent_encoding::percent_decode_str;
use sched_core::{RepoError, WorkerRepository};
use sched_memory::{ManualClock, MemoryRepository};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use std::sync::Arc;
use std::time::Duration;

/// How long a CLI waits for a connection before calling the store unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An open store.
pub struct Store {
    /// The repository every command works through.
    pub repo: Arc<dyn WorkerRepository>,
    /// What error messages need to know.
    pub ctx: ErrorContext,
    handle: Handle,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("ctx", &self.ctx).finish()
    }
}

/// The concrete backend, for what the trait does not cover.
enum Handle {
    Memory {
        repo: MemoryRepository,
        clock: ManualClock,
    },
    Redis,
    Postgres(PostgresRepository),
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The PostgreSQL schema is up to date.
    Schema(String),
    /// Nothing to migrate on this backend.
    NothingToDo,
}

impl Store {
    /// Opens the store of `args`.
    pub async fn open(args: &StoreArgs) -> Result<Store, CtlError> {
        match args.backend {
            BackendKind::Memory => Ok(Self::memory(args.demo_drift).await),
            BackendKind::Redis | BackendKind::RedisFred => Self::redis(args).await,
            BackendKind::Postgres => Self::postgres(args).await,
        }
    }

    /// A fresh in-process store with the demo state ([`demo_state`]).
    pub async fn memory(drift: bool) -> Store {
        let (repo, clock) = demo_state::seed(drift).await;
        Store {
            repo: Arc::new(repo.clone()),
            ctx: ErrorContext {
                backend: "memory",
                endpoint: None,
                schema: None,
            },
            handle: Handle::Memory { repo, clock },
        }
    }

    async fn redis(args: &StoreArgs) -> Result<Store, CtlError> {
        let backend = args.backend.as_str();
        let cluster = !args.redis_cluster_urls.is_empty();
        let urls: Vec<String> = if cluster {
            args.redis_cluster_urls.clone()
        } else {
            let url = args.redis_url.clone().ok_or_else(|| {
                CtlError::Usage(format!(
                    "--backend {backend} needs --redis-url (or REDIS_URL, or --redis-cluster-urls)"
                ))
            })?;
            vec![url]
        };
        let addrs = urls
            .iter()
            .map(|u| endpoint_of(u, "--redis-url", 6379))
            .collect::<Result<Vec<_>, _>>()?;
        let endpoint = Endpoint {
            what: if cluster { "Redis Cluster" } else { "Redis" },
            addr: addrs.join(","),
        };
        let ctx = ErrorContext {
            backend,
            endpoint: Some(endpoint),
            schema: None,
        };
        let config = match urls.as_slice() {
            [one] if !cluster => RedisConfig::from_url(one.clone()),
            _ => RedisConfig::cluster(urls),
        }
        .with_prefix(args.prefix.clone())
        .with_timeouts(CONNECT_TIMEOUT, Duration::from_secs(10))
        .with_reconnect_retries(1);
        let config = match redis_tls(args) {
            Some(tls) => config.with_tls(tls),
            None => config,
        };
        let connected = if args.backend == BackendKind::Redis {
            RedisRepository::connect(&config).await
        } else {
            RedisRepository::connect_fred(&config).await
        };
        // A connect failure is the server being out of reach, whatever the client calls it.
        let repo = connected.map_err(|e| match e {
            RepoError::Backend(src) | RepoError::Ambiguous(src) => {
                CtlError::from_repo(RepoError::Unavailable(src), &ctx)
            }
            e => CtlError::from_repo(e, &ctx),
        })?;
        // redis-rs connects lazily on some paths: make sure the server answers now.
        repo.ping().await.map_err(|e| match e {
            RepoError::Ambiguous(src) => CtlError::from_repo(RepoError::Unavailable(src), &ctx),
            e => CtlError::from_repo(e, &ctx),
        })?;
        Ok(Store {
            repo: Arc::new(repo),
            ctx,
            handle: Handle::Redis,
        })
    }

    async fn postgres(args: &StoreArgs) -> Result<Store, CtlError> {
        let url = args.database_url.clone().ok_or_else(|| {
            CtlError::Usage("--backend postgres needs --database-url (or DATABASE_URL)".into())
        })?;
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(CtlError::Usage(
                "--database-url must be a postgres:// or postgresql:// URL".into(),
            ));
        }
        let config = PostgresConfig::from_url(&url)
            .map_err(|e| CtlError::Usage(format!("--database-url: {e}")))?
            .with_schema(&args.schema)
            .map_err(|e| CtlError::Usage(format!("--schema: {e}")))?
            .with_max_connections(8)
            .with_acquire_timeout(CONNECT_TIMEOUT)
            .with_application_name("schedctl");
        let config = match &args.tls_ca_file {
            Some(ca) => config.with_ssl_root_cert(ca),
            None => config,
        };
        let config = match (&args.tls_client_cert, &args.tls_client_key) {
            (Some(cert), Some(key)) => config.with_ssl_client_cert(cert, key),
            _ => config,
        };
        let addr = match endpoint_of(&url, "--database-url", 5432) {
            Ok(a) if !a.starts_with(':') => a,
            // No host in the URL (a socket, or PGHOST): what the client resolved.
            _ => format!("{}:{}", config.host(), config.port()),
        };
        let ctx = ErrorContext {
            backend: "postgres",
            endpoint: Some(Endpoint {
                what: "PostgreSQL",
                addr,
            }),
            schema: Some(args.schema.clone()),
        };
        // `connect` opens one direct connection first: a refused or silent server is
        // `Unreachable` naming host:port at once (within the acquire timeout), refused
        // credentials `Unauthorized`, an unknown database `Misconfigured`.
        let repo = PostgresRepository::connect(config)
            .await
            .map_err(|e| CtlError::from_repo(e, &ctx))?;
        Ok(Store {
            repo: Arc::new(repo.clone()),
            ctx,
            handle: Handle::Postgres(repo),
        })
    }

    /// Maps a repository error with this store's context.
    pub fn err(&self, e: RepoError) -> CtlError {
        CtlError::from_repo(e, &self.ctx)
    }

    /// "Now" for display (heartbeat ages): the memory store's own clock, else this machine's
    /// (the store's clock decides expiry and staleness; only the ages shown use this one).
    pub fn now_ms(&self) -> u64 {
        match &self.handle {
            Handle::Memory { clock, .. } => clock.now_ms(),
            _ => system_now_ms(),
        }
    }

    /// The memory store's clock and repository (the demo moves time and simulates drift).
    pub fn memory_parts(&self) -> Option<(&MemoryRepository, &ManualClock)> {
        match &self.handle {
            Handle::Memory { repo, clock } => Some((repo, clock)),
            _ => None,
        }
    }

    /// Creates or updates the PostgreSQL schema; nothing on the other backends.
    pub async fn migrate(&self) -> Result<Migrated, CtlError> {
        match &self.handle {
            Handle::Postgres(p) => {
                p.migrate().await.map_err(|e| self.err(e))?;
                Ok(Migrated::Schema(p.config().schema().to_owned()))
            }
            _ => Ok(Migrated::NothingToDo),
        }
    }

    /// Closes connection pools.
    pub async fn close(&self) {
        if let Handle::Postgres(p) = &self.handle {
            p.close().await;
        }
    }
}

/// This machine's clock, ms since the Unix epoch.
pub fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `host:port` of a URL (the scheme's `default_port` when none is given), or the socket path
/// of a `unix` URL. Never the user or password. A URL that does not parse is a usage error
/// naming the option, not the URL (it may hold a password).
pub fn endpoint_of(raw: &str, option: &str, default_port: u16) -> Result<String, CtlError> {
    let u = url::Url::parse(raw)
        .map_err(|e| CtlError::Usage(format!("{option} is not a valid URL: {e}")))?;
    if u.scheme().contains("unix") {
        return Ok(u.path().to_owned());
    }
    let host = u.host_str().unwrap_or_default();
    Ok(format!("{host}:{}", u.port().unwrap_or(default_port)))
}

/// The passwords in the store URLs of `args`, to redact from any message.
pub fn secrets(args: &StoreArgs) -> Vec<String> {
    let mut urls: Vec<&String> = args.redis_cluster_urls.iter().collect();
    urls.extend(args.redis_url.iter());
    urls.extend(args.database_url.iter());
    urls.into_iter()
        .filter_map(|u| url::Url::parse(u).ok())
        .filter_map(|u| u.password().map(str::to_owned))
        .flat_map(|p| {
            // Both as written in the URL and percent-decoded.
            let decoded = percent_decode_str(&p).decode_utf8_lossy().into_owned();
            [p, decoded]
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// The Redis TLS settings of `--tls-ca-file` / `--tls-client-cert` / `--tls-client-key`, if
/// any was given (clap makes the certificate and the key come together).
fn redis_tls(args: &StoreArgs) -> Option<sched_redis::RedisTls> {
    if args.tls_ca_file.is_none() && args.tls_client_cert.is_none() {
        return None;
    }
    let mut tls = sched_redis::RedisTls::new();
    if let Some(ca) = &args.tls_ca_file {
        tls = tls.with_ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.tls_client_cert, &args.tls_client_key) {
        tls = tls.with_client_cert_files(cert, key);
    }
    Some(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_never_show_credentials() {
        let e = endpoint_of("redis://u:s3cret@db.example:6380/2", "--redis-url", 6379);
        assert_eq!(e.unwrap(), "db.example:6380");
        let e = endpoint_of("postgres://app:pw@10.0.0.1/sched", "--database-url", 5432);
        assert_eq!(e.unwrap(), "10.0.0.1:5432");
        let e = endpoint_of("not a url :pw", "--redis-url", 6379).unwrap_err();
        assert!(e.to_string().starts_with("--redis-url is not a valid URL"));
        assert!(!e.to_string().contains("pw"));
    }

    #[test]
    fn secrets_are_redacted_as_written_and_decoded() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            store: StoreArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "x",
            "--backend",
            "redis",
            "--redis-url",
            "redis://u:p%40ss@h:1",
        ])
        .unwrap();
        assert_eq!(secrets(&cli.store), ["p%40ss", "p@ss"]);
    }
}
