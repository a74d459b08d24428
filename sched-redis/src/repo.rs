//! [`RedisRepository`]: the struct and its constructors (the trait impl is in `ops.rs`).

use crate::client::{Client, Op};
use crate::config::RedisConfig;
use crate::keys::Keys;
use sched_core::{BackendCounters, RepoError};
use std::sync::Arc;
use std::time::Duration;

/// A [`WorkerRepository`](sched_core::WorkerRepository) on Redis or Redis Cluster.
///
/// The design is in `sched-redis/ARCHITECTURE.md`. Cheap to clone: clones share the connection
/// and the counters. `Debug` shows no credentials.
#[derive(Clone)]
pub struct RedisRepository {
    pub(crate) client: Arc<dyn Client>,
    pub(crate) keys: Keys,
    pub(crate) counters: Arc<BackendCounters>,
    /// Cluster mode: age after which a claim with no reservation behind it counts as abandoned.
    pub(crate) claim_grace: Duration,
    /// `backend_name`, and the counters' backend label.
    pub(crate) name: &'static str,
    pub(crate) cluster: bool,
}

impl std::fmt::Debug for RedisRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRepository")
            .field("client", &self.name)
            .field("cluster", &self.cluster)
            .field("keys", &self.keys)
            .finish()
    }
}

impl RedisRepository {
    /// Connects with redis-rs (`ConnectionManager`, or the async cluster client when
    /// [`RedisConfig::cluster`] is set). A server that cannot be reached gives
    /// [`RepoError::Unavailable`].
    pub async fn connect(config: &RedisConfig) -> Result<Self, RepoError> {
        let client = crate::client_redis::RedisRsClient::connect(config).await?;
        Ok(Self::with_client(Arc::new(client), "redis", config))
    }

    /// Connects with fred (same behaviour as [`connect`](Self::connect)).
    #[cfg(feature = "fred")]
    pub async fn connect_fred(config: &RedisConfig) -> Result<Self, RepoError> {
        let client = crate::client_fred::FredClient::connect(config).await?;
        Ok(Self::with_client(Arc::new(client), "redis-fred", config))
    }

    fn with_client(client: Arc<dyn Client>, name: &'static str, config: &RedisConfig) -> Self {
        RedisRepository {
            client,
            keys: Keys::new(&config.key_prefix),
            counters: Arc::default(),
            claim_grace: config.claim_grace,
            name,
            cluster: config.cluster,
        }
    }

    /// Traffic counters: physical round trips (a pipeline counts once). Share them with a
    /// [`Counted`](sched_core::layers::Counted) layer for calls and atomic sections.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// One round trip with a plain `PING`, for latency comparisons (not retried).
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.round_trip(&[Op::cmd("PING", Vec::new())], false)
            .await
            .map(|_| ())
    }

    /// The scripts' mode argument: `"c"` on a cluster, `"s"` (standalone) otherwise.
    pub(crate) fn mode(&self) -> String {
        if self.is_cluster() { "c" } else { "s" }.to_owned()
    }
}
