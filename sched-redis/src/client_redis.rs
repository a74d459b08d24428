//! The redis-rs client: `ConnectionManager` (standalone, reconnecting) or the async cluster
//! connection.

use crate::client::{Client, ClientError, Op, Val};
use crate::config::RedisConfig;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, RedisError, Value};

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// redis-rs behind [`Client`].
#[derive(Clone)]
pub(crate) struct RedisRsClient {
    conn: Conn,
}

fn classify(e: RedisError) -> ClientError {
    if e.is_connection_refusal() {
        ClientError::NotSent(Box::new(e))
    } else if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
        ClientError::Lost(Box::new(e))
    } else {
        ClientError::Other(Box::new(e))
    }
}

/// Connect-time failures are all `NotSent`: nothing was sent.
fn connect_error(e: RedisError) -> ClientError {
    ClientError::NotSent(Box::new(e))
}

impl RedisRsClient {
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Self, ClientError> {
        if cfg.cluster {
            let mut b = ClusterClientBuilder::new(cfg.urls.clone())
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.response_timeout)
                .retries(u32::try_from(cfg.reconnect_retries).unwrap_or(u32::MAX));
            if let Some(u) = &cfg.username {
                b = b.username(u);
            }
            if let Some(p) = &cfg.password {
                b = b.password(p);
            }
            let client = b.build().map_err(connect_error)?;
            let conn = client.get_async_connection().await.map_err(connect_error)?;
            return Ok(RedisRsClient {
                conn: Conn::Cluster(conn),
            });
        }
        let url = cfg.urls.first().map(String::as_str).unwrap_or_default();
        let mut info = url.into_connection_info().map_err(connect_error)?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &cfg.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &cfg.password {
            settings = settings.set_password(p);
        }
        info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(connect_error)?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.response_timeout))
            .set_number_of_retries(cfg.reconnect_retries);
        let conn = ConnectionManager::new_with_config(client, mcfg)
            .await
            .map_err(connect_error)?;
        Ok(RedisRsClient {
            conn: Conn::Single(conn),
        })
    }
}

fn build(ops: &[Op]) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.ignore_errors();
    for op in ops {
        p.cmd(op.name).arg(op.wire_args().collect::<Vec<_>>());
    }
    p
}

fn convert(v: Value) -> Val {
    match v {
        Value::Nil => Val::Nil,
        Value::Int(i) => Val::Int(i),
        Value::BulkString(b) => Val::Bytes(b),
        Value::SimpleString(s) => Val::Bytes(s.into_bytes()),
        Value::Okay => Val::Bytes(b"OK".to_vec()),
        Value::Array(a) | Value::Set(a) => Val::Array(a.into_iter().map(convert).collect()),
        Value::Map(m) => Val::Array(
            m.into_iter()
                .flat_map(|(k, v)| [convert(k), convert(v)])
                .collect(),
        ),
        Value::Boolean(b) => Val::Int(i64::from(b)),
        Value::Double(d) => Val::Bytes(d.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Val::Bytes(text.into_bytes()),
        Value::ServerError(e) => Val::Err(match e.details() {
            Some(d) => format!("{} {}", e.code(), d),
            None => e.code().to_owned(),
        }),
        Value::Attribute { data, .. } => convert(*data),
        other => Val::Err(format!("unexpected reply {other:?}")),
    }
}

#[async_trait]
impl Client for RedisRsClient {
    async fn pipeline(&self, ops: &[Op]) -> Result<Vec<Val>, ClientError> {
        let out: Vec<Value> = match &self.conn {
            Conn::Single(c) => build(ops)
                .query_async(&mut c.clone())
                .await
                .map_err(classify)?,
            // redis-rs refuses a cluster pipeline whose commands span slots, and every worker
            // has its own slot. So each command is its own request, all issued at once: the
            // multiplexed per-node connections put them on the wire together and the call
            // waits for them together -- one round trip of latency, as with a pipeline.
            Conn::Cluster(c) => {
                let replies = futures::future::join_all(ops.iter().map(|op| {
                    let p = build(std::slice::from_ref(op));
                    let mut c = c.clone();
                    async move { p.query_async::<Vec<Value>>(&mut c).await }
                }))
                .await;
                let mut out = Vec::with_capacity(ops.len());
                for r in replies {
                    out.extend(r.map_err(classify)?);
                }
                out
            }
        };
        Ok(out.into_iter().map(convert).collect())
    }

    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, ClientError> {
        match &self.conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                let mut cursor: u64 = 0;
                let mut out = Vec::new();
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                        .map_err(classify)?;
                    out.extend(keys);
                    if next == 0 {
                        return Ok(out);
                    }
                    cursor = next;
                }
            }
            Conn::Cluster(c) => redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut c.clone())
                .await
                .map_err(classify),
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
