//! [`RedisRepository`]: the struct, its constructors, and the [`WorkerRepository`] impl, which
//! hands each operation to its module under `ops/`.

use crate::client::{Client, Op};
use crate::config::RedisConfig;
use crate::keys::Keys;
use crate::ops;
use async_trait::async_trait;
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, ReleaseOutcome,
    RepoError, ReservationRecord, Worker, WorkerRepository, WorkerResult, WorkerSpec,
};
use std::sync::Arc;
use std::time::Duration;

/// A [`WorkerRepository`] on Redis or Redis Cluster.
///
/// Each worker's part of `reserve_batch` / `release_batch` is one Lua script; all the scripts
/// of a call go out as one pipeline of `EVALSHA`s. No locks. The key layout, the scripts and the
/// cluster claim protocol are described in `sched-redis/ARCHITECTURE.md`. Cheap to clone: clones
/// share the connection and the counters. `Debug` shows no credentials.
#[derive(Clone)]
pub struct RedisRepository {
    pub(crate) client: Arc<dyn Client>,
    pub(crate) keys: Keys,
    pub(crate) counters: Arc<BackendCounters>,
    /// Cluster mode: age after which a claim with no reservation behind it counts as abandoned.
    pub(crate) claim_grace: Duration,
}

impl std::fmt::Debug for RedisRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRepository")
            .field("client", &self.client.name())
            .field("cluster", &self.client.is_cluster())
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
        Ok(Self::with_client(Arc::new(client), config))
    }

    /// Connects with fred (same behaviour as [`connect`](Self::connect)).
    #[cfg(feature = "fred")]
    pub async fn connect_fred(config: &RedisConfig) -> Result<Self, RepoError> {
        let client = crate::client_fred::FredClient::connect(config).await?;
        Ok(Self::with_client(Arc::new(client), config))
    }

    fn with_client(client: Arc<dyn Client>, config: &RedisConfig) -> Self {
        let (keys, claim_grace) = (Keys::new(&config.key_prefix), config.claim_grace);
        RedisRepository {
            client,
            keys,
            counters: Arc::default(),
            claim_grace,
        }
    }

    /// Traffic counters: physical round trips (a pipeline counts once). Share them with a
    /// [`Counted`](sched_core::layers::Counted) layer for calls and atomic sections.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// One round trip with a plain `PING`, for latency comparisons (not retried).
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.round_trip(&[Op::cmd("PING", Vec::new())], false)
            .await
            .map(|_| ())
    }

    /// The scripts' mode argument: `"c"` on a cluster, `"s"` (standalone) otherwise.
    pub(crate) fn mode(&self) -> &'static str {
        if self.is_cluster() {
            "c"
        } else {
            "s"
        }
    }
}

#[async_trait]
impl WorkerRepository for RedisRepository {
    fn backend_name(&self) -> &str {
        self.client.name()
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        ops::register::register(self, spec).await
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        ops::remove::remove(self, worker_id).await
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        ops::list::get(self, worker_id).await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        ops::list::list(self, pool).await
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        ops::reserve::reserve(self, batch, mode).await
    }

    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        ops::release::release(self, ids).await
    }

    async fn find_reservations(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        ops::find::find(self, ids).await
    }

    async fn list_reservations(&self, id: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        Ok(ops::audit::snapshot(self, id, AuditMode::Check).await?.1)
    }

    async fn audit_worker(&self, id: &str, mode: AuditMode) -> Result<AuditReport, RepoError> {
        ops::audit::audit(self, id, mode).await
    }
}
