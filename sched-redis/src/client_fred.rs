//! The fred client (feature `fred`): same ops, same scripts, same semantics as redis-rs.

use crate::client::{Client, ConnectFault, Dedicated, Op, Reply};
use crate::config::RedisConfig;
use async_trait::async_trait;
use fred::prelude::{ClientLike, Config, Error, ErrorKind, ReconnectPolicy, ServerConfig, Value};
use fred::types::{ClusterHash, CustomCommand};
use redis::Value as V;
use sched_core::RepoError;

/// fred behind [`Client`].
pub(crate) struct FredClient(fred::prelude::Client);

/// The reply may be lost: the command may or may not have run.
fn lost(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled
    )
}

fn classify(e: Error, write: bool) -> RepoError {
    let refused = matches!(e.kind(), ErrorKind::Backpressure | ErrorKind::Routing);
    let lost = lost(&e);
    crate::client::classify(e, refused, lost, write)
}

fn parse_config(cfg: &RedisConfig) -> Result<Config, Error> {
    let first = cfg.urls.first().map(String::as_str).unwrap_or_default();
    let mut config = Config::from_url_centralized(first)?;
    if cfg.cluster {
        let mut hosts = Vec::new();
        for u in &cfg.urls {
            if let ServerConfig::Centralized { server } = Config::from_url_centralized(u)?.server {
                hosts.push((server.host.to_string(), server.port));
            }
        }
        config.server = ServerConfig::new_clustered(hosts);
    }
    config.username = cfg.username.clone().or(config.username);
    config.password = cfg.password.clone().or(config.password);
    Ok(config)
}

/// Sets the TLS settings of `cfg` (read before anything is sent) on `config`.
fn set_tls(cfg: &RedisConfig, config: &mut Config) -> Result<(), RepoError> {
    #[cfg(feature = "tls")]
    if let Some(t) = &cfg.tls {
        let loaded = t.load(&cfg.endpoint())?;
        if loaded.insecure {
            crate::tls::warn_insecure(&cfg.endpoint());
        }
        let rustls = crate::tls::rustls_config(&loaded).map_err(|reason| {
            let endpoint = cfg.endpoint();
            RepoError::Misconfigured { endpoint, reason }
        })?;
        config.tls = Some(fred::types::config::TlsConnector::from(rustls).into());
    }
    let _ = (cfg, config);
    Ok(())
}

/// What a failed connection attempt was: a TLS refusal (either side), else by fred's kind.
fn connect_fault(e: Error) -> (ConnectFault, sched_core::BoxError) {
    #[cfg(feature = "tls")]
    if let Some((fault, reason)) = crate::tls::tls_fault(&e) {
        return (fault, reason.into());
    }
    let fault = match e.kind() {
        ErrorKind::Auth => ConnectFault::Unauthorized,
        ErrorKind::Config | ErrorKind::Url => ConnectFault::Misconfigured,
        ErrorKind::IO | ErrorKind::Timeout => ConnectFault::Unreachable,
        _ => ConnectFault::Other,
    };
    (fault, Box::new(e))
}

impl FredClient {
    /// Connects. Nothing was sent on failure: `Unreachable`, `Unauthorized` or `Misconfigured`
    /// (naming the endpoint), else `Unavailable`.
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Self, RepoError> {
        let not_sent = |e: Error| {
            let (fault, e) = connect_fault(e);
            crate::client::connect_error(cfg, fault, e)
        };
        let retries = u32::try_from(cfg.reconnect_retries).unwrap_or(u32::MAX);
        let mut config = parse_config(cfg).map_err(not_sent)?;
        set_tls(cfg, &mut config)?;
        let client = fred::types::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = cfg.connect_timeout;
                // Without it, a pipeline split across cluster nodes waits on delayed ACKs.
                c.tcp.nodelay = Some(true);
                c.internal_command_timeout = cfg.response_timeout;
                // Never re-send a write whose reply was lost (it must be Ambiguous); a cluster
                // needs a few, as following a MOVED/ASK redirection counts as an attempt.
                c.max_command_attempts = if cfg.cluster { 3 } else { 1 };
            })
            .with_performance_config(|p| p.default_command_timeout = cfg.response_timeout)
            .set_policy(ReconnectPolicy::new_exponential(retries, 50, 2_000, 2))
            .build()
            .map_err(not_sent)?;
        let attempts = u32::try_from(cfg.reconnect_retries + 1).unwrap_or(1);
        let deadline = cfg.connect_timeout.saturating_mul(attempts);
        let err = match tokio::time::timeout(deadline, client.init()).await {
            Ok(Ok(_)) => return Ok(FredClient(client)),
            Ok(Err(e)) => not_sent(e),
            Err(_) => crate::client::connect_error(
                cfg,
                ConnectFault::Unreachable,
                format!("no connection within {deadline:?}").into(),
            ),
        };
        let _ = client.quit().await;
        Err(err)
    }
}

/// A fred client of its own on one node (no reconnection: a dropped connection ends the wake-up
/// stream, whose watch subscribes again). fred keeps a client's connection open until `QUIT`,
/// so dropping it sends one (after a blocked `XREAD` returns, within its block time).
struct Own(Option<fred::prelude::Client>);

#[async_trait]
impl Dedicated for Own {
    async fn call(&mut self, args: Vec<String>) -> Result<Reply, RepoError> {
        let Some(c) = &self.0 else {
            return Err(RepoError::Backend("closed".into()));
        };
        let mut it = args.into_iter();
        let name = it.next().unwrap_or_else(|| "PING".to_owned());
        let cmd = CustomCommand::new(name, ClusterHash::FirstKey, true);
        let args: Vec<Value> = it.map(Value::from).collect();
        match c.custom::<Value, Value>(cmd, args).await {
            Ok(v) => Ok(Ok(convert(v))),
            Err(e) if lost(&e) || *e.kind() == ErrorKind::Backpressure => Err(classify(e, false)),
            Err(e) => Ok(Err(e.details().to_owned())),
        }
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        if let (Some(c), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = c.quit().await;
            });
        }
    }
}

fn convert(v: Value) -> V {
    let bulk = |b: &[u8]| V::BulkString(b.to_vec());
    match v {
        Value::Null | Value::Queued => V::Nil, // QUEUED: only inside MULTI, never sent
        Value::Integer(i) => V::Int(i),
        Value::Boolean(b) => V::Int(i64::from(b)),
        Value::Double(d) => V::Double(d),
        Value::String(s) => bulk(s.as_bytes()),
        Value::Bytes(b) => bulk(&b),
        Value::Array(a) => V::Array(a.into_iter().map(convert).collect()),
        Value::Map(m) => V::Map(
            (m.inner().into_iter())
                .map(|(k, v)| (bulk(k.as_bytes()), convert(v)))
                .collect(),
        ),
    }
}

/// `op` as fred's command and arguments. The words go as slices of one shared buffer: one copy
/// per op, not one allocation per word.
fn command(op: &Op) -> (CustomCommand, Vec<Value>) {
    let hash = op.route_key().map_or(ClusterHash::Random, Into::into);
    let buf = fred::bytes::Bytes::copy_from_slice(op.args.bytes());
    let head = op.head().map(Value::from_static_str);
    let words = op.args.ranges().map(|r| Value::Bytes(buf.slice(r)));
    let args = head.into_iter().chain(words).collect();
    (CustomCommand::new_static(op.name, hash, false), args)
}

/// One command's outcome as its [`Reply`]: a lost or refused request fails the call, a server
/// error reply is that command's `Err`.
fn reply(r: Result<Value, Error>, write: bool) -> Result<Reply, RepoError> {
    match r {
        Ok(Value::Queued) => Ok(Err("unexpected QUEUED".to_owned())),
        Ok(v) => Ok(Ok(convert(v))),
        Err(e) if lost(&e) || *e.kind() == ErrorKind::Backpressure => Err(classify(e, write)),
        Err(e) => Ok(Err(e.details().to_owned())),
    }
}

#[async_trait]
impl Client for FredClient {
    async fn pipeline(&self, ops: &[Op], write: bool) -> Result<Vec<Reply>, RepoError> {
        if let [op] = ops {
            // One command (a burst on one node): sent as such, without the pipeline's buffer,
            // its copy of every buffered command and its shared response buffer.
            let (cmd, args) = command(op);
            return Ok(vec![reply(
                self.0.custom::<Value, Value>(cmd, args).await,
                write,
            )?]);
        }
        let pipe = self.0.pipeline();
        for op in ops {
            let (cmd, args) = command(op);
            // Queuing on a pipeline only buffers the command; errors show up in try_all.
            let queued: Result<Value, Error> = pipe.custom(cmd, args).await;
            queued.map_err(|e| classify(e, write))?;
        }
        let results = pipe.try_all::<Value>().await;
        if results.len() != ops.len() {
            // A whole-pipeline failure comes back as one error.
            return Err(match results.into_iter().find_map(Result::err) {
                Some(e) => classify(e, write),
                None => RepoError::Backend("pipeline reply count mismatch".into()),
            });
        }
        results.into_iter().map(|r| reply(r, write)).collect()
    }

    async fn dedicated(
        &self,
        cfg: &RedisConfig,
        url: &str,
        block: std::time::Duration,
    ) -> Result<Box<dyn Dedicated>, RepoError> {
        let not_sent = |e: Error| RepoError::Unavailable(Box::new(e));
        let mut config = Config::from_url_centralized(url).map_err(not_sent)?;
        config.username = cfg.username.clone().or(config.username);
        config.password = cfg.password.clone().or(config.password);
        set_tls(cfg, &mut config)?;
        let client = fred::types::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = cfg.connect_timeout;
                c.tcp.nodelay = Some(true);
                c.internal_command_timeout = cfg.response_timeout;
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = cfg.response_timeout.saturating_add(block);
            })
            .build()
            .map_err(not_sent)?;
        let own = Own(Some(client.clone()));
        match tokio::time::timeout(cfg.connect_timeout, client.init()).await {
            Ok(Ok(_)) => Ok(Box::new(own)),
            Ok(Err(e)) => Err(not_sent(e)),
            Err(_) => Err(RepoError::Unavailable(
                "timed out connecting to redis".into(),
            )),
        }
    }

    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, RepoError> {
        use futures::TryStreamExt;
        let c = &self.0;
        let keys: Result<Vec<fred::types::Key>, _> = if c.is_clustered() {
            let scan = c.scan_cluster_buffered(pattern, Some(1000), None);
            scan.try_collect().await
        } else {
            c.scan_buffered(pattern, Some(1000), None)
                .try_collect()
                .await
        };
        let keys = keys.map_err(|e| classify(e, false))?.into_iter();
        Ok(keys
            .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
            .collect())
    }

    #[cfg(feature = "testing")]
    async fn command_stats(&self) -> Result<Vec<String>, RepoError> {
        use fred::interfaces::ClusterInterface;
        use fred::types::InfoKind;
        let c = &self.0;
        if !c.is_clustered() {
            return c
                .info(Some(InfoKind::CommandStats))
                .await
                .map(|t| vec![t])
                .map_err(|e| classify(e, false));
        }
        let nodes = c.cached_cluster_state().map(|s| s.unique_primary_nodes());
        let mut out = Vec::new();
        for node in nodes.unwrap_or_default() {
            let text: String = (c
                .with_cluster_node(node)
                .info(Some(InfoKind::CommandStats))
                .await)
                .map_err(|e| classify(e, false))?;
            out.push(text);
        }
        Ok(out)
    }
}
