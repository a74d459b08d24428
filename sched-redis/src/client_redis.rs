//! The redis-rs client: `ConnectionManager` (standalone, reconnecting) or the async cluster
//! connection.

use crate::client::ConnectFault;
use crate::client::{Client, Dedicated, Op, Reply};
use crate::config::RedisConfig;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, RedisError, Value};
use sched_core::RepoError;
use std::time::Duration;

/// redis-rs behind [`Client`].
#[derive(Clone)]
pub(crate) enum RedisRsClient {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn classify(e: RedisError, write: bool) -> RepoError {
    let lost = e.is_timeout() || e.is_connection_dropped() || e.is_io_error();
    let refused = e.is_connection_refusal();
    crate::client::classify(e, refused, lost, write)
}

impl RedisRsClient {
    /// Connects. Nothing was sent on failure: `Unreachable`, `Unauthorized` or `Misconfigured`
    /// (naming the endpoint), else `Unavailable`.
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Self, RepoError> {
        let tls = load_tls(cfg)?;
        Self::open(cfg, tls.as_ref()).await.map_err(|e| {
            #[cfg(feature = "tls")]
            if let Some((fault, reason)) = crate::tls::tls_fault(&e) {
                return crate::client::connect_error(cfg, fault, reason.into());
            }
            let fault = connect_fault(&e);
            crate::client::connect_error(cfg, fault, Box::new(e))
        })
    }

    async fn open(cfg: &RedisConfig, tls: Option<&Tls>) -> Result<Self, RedisError> {
        let infos = cfg.urls.iter().map(|u| info(cfg, u));
        let infos: Vec<ConnectionInfo> = infos.collect::<Result<_, RedisError>>()?;
        if cfg.cluster {
            #[allow(unused_mut)]
            let mut b = ClusterClientBuilder::new(infos)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.response_timeout)
                .retries(u32::try_from(cfg.reconnect_retries).unwrap_or(u32::MAX));
            #[cfg(feature = "tls")]
            if let Some(t) = tls {
                b = b.certs(certificates(t));
                if t.insecure {
                    b = b.tls(redis::TlsMode::Insecure);
                }
            }
            return Ok(Self::Cluster(b.build()?.get_async_connection().await?));
        }
        let Some(info) = infos.into_iter().next() else {
            return Err((redis::ErrorKind::InvalidClientConfig, "no Redis URL").into());
        };
        let client = single(info, tls)?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.response_timeout))
            .set_number_of_retries(cfg.reconnect_retries);
        let manager = ConnectionManager::new_with_config(client, mcfg).await?;
        Ok(Self::Single(manager))
    }
}

/// What a connection attempt's error was.
fn connect_fault(e: &RedisError) -> ConnectFault {
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed => ConnectFault::Unauthorized,
        redis::ErrorKind::InvalidClientConfig => ConnectFault::Misconfigured,
        _ if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => {
            ConnectFault::Unreachable
        }
        _ if e.code() == Some("NOPERM") => ConnectFault::Unauthorized,
        _ => ConnectFault::Other,
    }
}

/// The loaded TLS settings (a stand-in without feature `tls`).
#[cfg(feature = "tls")]
type Tls = crate::tls::Loaded;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

/// Reads the TLS files of `cfg` (before anything is sent), logging the insecure mode.
fn load_tls(cfg: &RedisConfig) -> Result<Option<Tls>, RepoError> {
    #[cfg(feature = "tls")]
    if let Some(t) = &cfg.tls {
        let loaded = t.load(&cfg.endpoint())?;
        if loaded.insecure {
            crate::tls::warn_insecure(&cfg.endpoint());
        }
        return Ok(Some(loaded));
    }
    let _ = cfg;
    Ok(None)
}

/// redis-rs's form of the TLS settings.
#[cfg(feature = "tls")]
fn certificates(t: &Tls) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: t.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.clone(),
        }),
        root_cert: t.roots_pem.clone(),
    }
}

/// A client of one node, with the TLS settings when there are some.
fn single(info: ConnectionInfo, tls: Option<&Tls>) -> Result<redis::Client, RedisError> {
    #[cfg(feature = "tls")]
    if let Some(t) = tls {
        let mut info = info;
        if let redis::ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone() {
            let insecure = t.insecure;
            let tls_params = None;
            let addr = redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            };
            info = info.set_addr(addr);
        }
        return redis::Client::build_with_tls(info, certificates(t));
    }
    let _ = tls;
    redis::Client::open(info)
}

/// `url`, with the configured credentials overriding its own.
fn info(cfg: &RedisConfig, url: &str) -> Result<ConnectionInfo, RedisError> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings))
}

/// A plain multiplexed connection of its own (no reconnection: a dropped connection ends the
/// wake-up stream, whose watch subscribes again). Its driver task ends when it is dropped.
struct Own(MultiplexedConnection);

#[async_trait]
impl Dedicated for Own {
    async fn call(&mut self, args: Vec<String>) -> Result<Reply, RepoError> {
        let mut p = redis::pipe();
        p.ignore_errors();
        let mut it = args.iter();
        let name = it.next().map_or("PING", String::as_str);
        p.cmd(name).arg(it.collect::<Vec<_>>());
        let out: Vec<Value> = p
            .query_async(&mut self.0)
            .await
            .map_err(|e| classify(e, false))?;
        out.into_iter()
            .next()
            .map(reply)
            .ok_or_else(|| RepoError::Backend("no reply".into()))
    }
}

/// A server error reply as its text (`MOVED 3999 127.0.0.1:7002`), anything else as a value.
fn reply(v: Value) -> Reply {
    match v {
        Value::ServerError(e) => Err(e
            .details()
            .map_or(e.code().to_owned(), |d| format!("{} {d}", e.code()))),
        v => Ok(v),
    }
}

/// One pipeline whose server errors are reply values.
fn build(ops: &[Op]) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.ignore_errors();
    for op in ops {
        let c = p.cmd(op.name);
        for a in op.wire_args() {
            c.arg(a);
        }
    }
    p
}

#[async_trait]
impl Client for RedisRsClient {
    async fn pipeline(&self, ops: &[Op], write: bool) -> Result<Vec<Reply>, RepoError> {
        let out: Vec<Value> = match self {
            Self::Single(c) => build(ops).query_async(&mut c.clone()).await,
            // redis-rs refuses a cluster pipeline spanning slots: each command is its own
            // request, all issued at once on the multiplexed connections (one round trip).
            Self::Cluster(c) => futures::future::join_all(ops.iter().map(|op| {
                let (p, mut c) = (build(std::slice::from_ref(op)), c.clone());
                async move { p.query_async::<Vec<Value>>(&mut c).await }
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|r| r.into_iter().flatten().collect()),
        }
        .map_err(|e| classify(e, write))?;
        Ok(out.into_iter().map(reply).collect())
    }

    async fn dedicated(
        &self,
        cfg: &RedisConfig,
        url: &str,
        block: Duration,
    ) -> Result<Box<dyn Dedicated>, RepoError> {
        let not_sent = |e: RedisError| RepoError::Unavailable(Box::new(e));
        let tls = load_tls(cfg)?;
        let client = single(info(cfg, url).map_err(not_sent)?, tls.as_ref()).map_err(not_sent)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.response_timeout.saturating_add(block)));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(not_sent)?;
        Ok(Box::new(Own(conn)))
    }

    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, RepoError> {
        use futures::TryStreamExt;
        use redis::{AsyncCommands, ScanOptions};
        let keys = match self {
            Self::Single(c) => {
                let opts = ScanOptions::default()
                    .with_pattern(pattern)
                    .with_count(1000);
                let mut c = c.clone();
                let keys = c.scan_options(opts).await.map_err(|e| classify(e, false))?;
                keys.try_collect().await
            }
            // KEYS is sent to every primary and the answers are merged.
            Self::Cluster(c) => {
                redis::cmd("KEYS")
                    .arg(pattern)
                    .query_async(&mut c.clone())
                    .await
            }
        };
        keys.map_err(|e| classify(e, false))
    }

    #[cfg(feature = "testing")]
    async fn command_stats(&self) -> Result<Vec<String>, RepoError> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("commandstats");
        // A cluster sends INFO to every node and answers a map: node address -> text.
        let v: Value = match self {
            Self::Single(c) => cmd.query_async(&mut c.clone()).await,
            Self::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
        .map_err(|e| classify(e, false))?;
        Ok(crate::codec::texts(&v))
    }
}
