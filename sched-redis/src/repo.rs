//! [`RedisRepository`]: the struct and its constructors (the trait impl is in `ops.rs`).

use crate::client::{Client, Op};
use crate::config::RedisConfig;
use crate::keys::Keys;
use sched_core::{BackendCounters, RepoError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A [`WorkerRepository`](sched_core::WorkerRepository) on Redis or Redis Cluster.
///
/// The design is in `sched-redis/ARCHITECTURE.md`. Cheap to clone: clones share the connection
/// and the counters. `Debug` shows no credentials.
#[derive(Clone)]
pub struct RedisRepository {
    pub(crate) client: Arc<dyn Client>,
    pub(crate) keys: Keys,
    pub(crate) counters: Arc<BackendCounters>,
    /// Cluster mode: the last fence epoch seen per worker (unknown: 0). Only grows.
    pub(crate) epochs: Arc<Mutex<HashMap<String, u64>>>,
    /// Clean-up steps that failed after a change was applied (logged, left for the resolver).
    pub(crate) cleanup_failures: Arc<AtomicU64>,
    /// Cluster mode: other calls' claims seen uncommitted by an earlier `reserve_batch`,
    /// container → claim value. A claim seen again unchanged is fenced (`cluster/contested.rs`).
    pub(crate) suspects: Arc<Mutex<HashMap<String, String>>>,
    /// One node: the worker set as last seen (`list_workers` declares their state keys).
    pub(crate) worker_ids: Arc<Mutex<Vec<String>>>,
    /// Where this repository last saw each container held, container → index value (a worker
    /// id; on a cluster the claim `<worker>\n<token>`): lets `release_batch` go straight to the
    /// holder. A hint only, never trusted for an answer (`ops/release.rs`).
    pub(crate) holders: Arc<Mutex<HashMap<String, Arc<str>>>>,
    /// Armed faults (feature `testing`).
    #[cfg(feature = "testing")]
    pub(crate) faults: Arc<crate::inject::Faults>,
    /// `backend_name`, and the counters' backend label.
    pub(crate) name: &'static str,
    pub(crate) cluster: bool,
    /// Where and how to connect: the wake-up streams open their own connections with it.
    pub(crate) config: Arc<RedisConfig>,
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
    /// [`RedisConfig::cluster`] is set). Fails, naming the endpoint, with
    /// [`RepoError::Misconfigured`] (no URL, an unparsable one, a scheme other than `redis`,
    /// `rediss`, `redis+unix` or `unix`), [`RepoError::Unreachable`] or
    /// [`RepoError::Unauthorized`] (the user, never the password).
    pub async fn connect(config: &RedisConfig) -> Result<Self, RepoError> {
        config.check()?;
        let client = crate::client_redis::RedisRsClient::connect(config).await?;
        Ok(Self::with_client(Arc::new(client), "redis", config))
    }

    /// Connects with fred (same behaviour as [`connect`](Self::connect)).
    #[cfg(feature = "fred")]
    pub async fn connect_fred(config: &RedisConfig) -> Result<Self, RepoError> {
        config.check()?;
        let client = crate::client_fred::FredClient::connect(config).await?;
        Ok(Self::with_client(Arc::new(client), "redis-fred", config))
    }

    fn with_client(client: Arc<dyn Client>, name: &'static str, config: &RedisConfig) -> Self {
        RedisRepository {
            client,
            keys: Keys::new(&config.key_prefix),
            counters: Arc::default(),
            epochs: Arc::default(),
            cleanup_failures: Arc::default(),
            suspects: Arc::default(),
            worker_ids: Arc::default(),
            holders: Arc::default(),
            #[cfg(feature = "testing")]
            faults: Arc::default(),
            name,
            cluster: config.cluster,
            config: Arc::new(config.clone()),
        }
    }

    /// Traffic counters: physical round trips (a pipeline counts once). Share them with a
    /// [`Counted`](sched_core::layers::Counted) layer for calls and atomic sections.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// Clean-up steps that failed after their call's change was applied (a claim that could
    /// not be deleted after a release, say). Each is also logged; the claims it left are resolved
    /// by the next call that needs their container.
    pub fn cleanup_failures(&self) -> u64 {
        self.cleanup_failures.load(Ordering::Relaxed)
    }

    /// Counts and logs a failed clean-up step (never an error of the call).
    pub(crate) fn cleanup_failed(&self, what: &str, e: &RepoError) {
        self.cleanup_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_redis_cleanup_failures_total", "backend" => self.name)
            .increment(1);
        tracing::warn!(error = %e, what, "clean-up failed after the change was applied; left for the resolver");
    }

    /// The last fence epoch seen for `worker` (0 when unknown).
    pub(crate) fn epoch(&self, worker: &str) -> u64 {
        let m = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(worker).copied().unwrap_or(0)
    }

    /// Records a fence epoch read from the store (the cache keeps the highest).
    pub(crate) fn learn(&self, worker: &str, f: u64) {
        let mut m = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = m.entry(worker.to_owned()).or_default();
        *e = (*e).max(f);
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
