//! The redis-rs client: `ConnectionManager` (standalone, reconnecting) or the async cluster
//! connection.

use crate::client::{Client, Op, Reply};
use crate::config::RedisConfig;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisError, Value};
use sched_core::RepoError;

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
    /// Connects; every failure is `Unavailable` (nothing was sent).
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Self, RepoError> {
        Self::open(cfg)
            .await
            .map_err(|e| RepoError::Unavailable(Box::new(e)))
    }

    async fn open(cfg: &RedisConfig) -> Result<Self, RedisError> {
        // The URLs, with the configured credentials overriding theirs.
        let infos = cfg.urls.iter().map(|u| {
            let info = u.as_str().into_connection_info()?;
            let mut settings = info.redis_settings().clone();
            if let Some(u) = &cfg.username {
                settings = settings.set_username(u);
            }
            if let Some(p) = &cfg.password {
                settings = settings.set_password(p);
            }
            Ok(info.set_redis_settings(settings))
        });
        let infos: Vec<ConnectionInfo> = infos.collect::<Result<_, RedisError>>()?;
        if cfg.cluster {
            let b = ClusterClientBuilder::new(infos)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.response_timeout)
                .retries(u32::try_from(cfg.reconnect_retries).unwrap_or(u32::MAX));
            return Ok(Self::Cluster(b.build()?.get_async_connection().await?));
        }
        let Some(info) = infos.into_iter().next() else {
            return Err((redis::ErrorKind::InvalidClientConfig, "no Redis URL").into());
        };
        let client = redis::Client::open(info)?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.response_timeout))
            .set_number_of_retries(cfg.reconnect_retries);
        let manager = ConnectionManager::new_with_config(client, mcfg).await?;
        Ok(Self::Single(manager))
    }
}

/// One pipeline whose server errors are reply values.
fn build(ops: &[Op]) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.ignore_errors();
    for op in ops {
        p.cmd(op.name).arg(op.wire_args().collect::<Vec<_>>());
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
        let reply = |v| match v {
            Value::ServerError(e) => Err(e
                .details()
                .map_or(e.code().to_owned(), |d| format!("{} {d}", e.code()))),
            v => Ok(v),
        };
        Ok(out.into_iter().map(reply).collect())
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
}
