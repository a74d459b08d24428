//! The fred client (feature `fred`): same ops, same scripts, same semantics as redis-rs.

use crate::client::{Client, ClientError, Op, Val};
use crate::config::RedisConfig;
use async_trait::async_trait;
use fred::prelude::{ClientLike, Config, Error, ErrorKind, ReconnectPolicy, ServerConfig, Value};
use fred::types::{ClusterHash, CustomCommand};

/// fred behind [`Client`].
pub(crate) struct FredClient {
    client: fred::prelude::Client,
    cluster: bool,
}

fn is_transport(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure
    )
}

fn classify(e: Error) -> ClientError {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled => ClientError::Lost(Box::new(e)),
        ErrorKind::Backpressure | ErrorKind::Routing => ClientError::NotSent(Box::new(e)),
        _ => ClientError::Other(Box::new(e)),
    }
}

fn config_error(e: Error) -> ClientError {
    ClientError::NotSent(Box::new(e))
}

fn parse_config(cfg: &RedisConfig) -> Result<Config, ClientError> {
    let first = cfg.urls.first().map(String::as_str).unwrap_or_default();
    let mut config = Config::from_url_centralized(first).map_err(config_error)?;
    if cfg.cluster {
        let mut hosts = Vec::new();
        for u in &cfg.urls {
            let c = Config::from_url_centralized(u).map_err(config_error)?;
            if let ServerConfig::Centralized { server } = c.server {
                hosts.push((server.host.to_string(), server.port));
            }
        }
        config.server = ServerConfig::new_clustered(hosts);
    }
    if let Some(u) = &cfg.username {
        config.username = Some(u.clone());
    }
    if let Some(p) = &cfg.password {
        config.password = Some(p.clone());
    }
    Ok(config)
}

impl FredClient {
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Self, ClientError> {
        let config = parse_config(cfg)?;
        let retries = u32::try_from(cfg.reconnect_retries).unwrap_or(u32::MAX);
        let client = fred::types::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = cfg.connect_timeout;
                // Without it, a pipeline split across cluster nodes waits on delayed ACKs.
                c.tcp.nodelay = Some(true);
                c.internal_command_timeout = cfg.response_timeout;
                // Never re-send a command after a dropped connection: a write whose reply was
                // lost must surface as Ambiguous, not be applied twice.
                // (A cluster needs a few: following a MOVED/ASK redirection counts as one.)
                c.max_command_attempts = if cfg.cluster { 3 } else { 1 };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = cfg.response_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(retries, 50, 2_000, 2))
            .build()
            .map_err(config_error)?;
        let deadline = cfg
            .connect_timeout
            .saturating_mul(u32::try_from(cfg.reconnect_retries + 1).unwrap_or(1));
        match tokio::time::timeout(deadline, client.init()).await {
            Ok(Ok(_handle)) => {}
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(ClientError::NotSent(Box::new(e)));
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err(ClientError::NotSent("timed out connecting to redis".into()));
            }
        }
        Ok(FredClient {
            client,
            cluster: cfg.cluster,
        })
    }
}

fn convert(v: Value) -> Val {
    match v {
        Value::Null => Val::Nil,
        Value::Integer(i) => Val::Int(i),
        Value::Boolean(b) => Val::Int(i64::from(b)),
        Value::Double(d) => Val::Bytes(d.to_string().into_bytes()),
        Value::String(s) => Val::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => Val::Bytes(b.to_vec()),
        Value::Array(a) => Val::Array(a.into_iter().map(convert).collect()),
        Value::Map(m) => Val::Array(
            m.inner()
                .into_iter()
                .flat_map(|(k, v)| [Val::Bytes(k.as_bytes().to_vec()), convert(v)])
                .collect(),
        ),
        Value::Queued => Val::Err("unexpected QUEUED".to_owned()),
    }
}

#[async_trait]
impl Client for FredClient {
    async fn pipeline(&self, ops: &[Op]) -> Result<Vec<Val>, ClientError> {
        let pipe = self.client.pipeline();
        for op in ops {
            let hash = op
                .route_key()
                .map_or(ClusterHash::Random, ClusterHash::from);
            let args: Vec<Value> = op.wire_args().map(Value::from).collect();
            // Queuing on a pipeline only buffers the command; errors show up in try_all.
            let queued: Result<Value, Error> = pipe
                .custom(CustomCommand::new_static(op.name, hash, false), args)
                .await;
            queued.map_err(classify)?;
        }
        let results = pipe.try_all::<Value>().await;
        if results.len() != ops.len() {
            // A whole-pipeline failure comes back as one error.
            return Err(match results.into_iter().find_map(Result::err) {
                Some(e) => classify(e),
                None => ClientError::Other("pipeline reply count mismatch".into()),
            });
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(v) => out.push(convert(v)),
                Err(e) if is_transport(&e) => return Err(classify(e)),
                Err(e) => out.push(Val::Err(e.details().to_owned())),
            }
        }
        Ok(out)
    }

    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, ClientError> {
        use futures::TryStreamExt;
        let keys: Vec<fred::types::Key> = if self.cluster {
            self.client
                .scan_cluster_buffered(pattern, Some(1000), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern, Some(1000), None)
                .try_collect()
                .await
        }
        .map_err(classify)?;
        Ok(keys
            .into_iter()
            .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
            .collect())
    }

    fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn name(&self) -> &'static str {
        "redis-fred"
    }
}
