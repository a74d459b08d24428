//! Shared helpers of the sched-redis integration tests: a fresh random key prefix per test,
//! deleted again when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use sched_core::{
    AuditReport, CapacityReservation, CommitMode, ReleaseOutcome, RepoError, ReservationRecord,
    Worker, WorkerRepository, WorkerResult, WorkerSpec,
};
use sched_redis::{RedisConfig, RedisRepository};
use std::ops::Deref;

/// Which client library to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// redis-rs
    RedisRs,
    /// fred
    #[cfg(feature = "fred")]
    Fred,
}

/// Every client compiled in.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind::RedisRs,
        #[cfg(feature = "fred")]
        Kind::Fred,
    ]
}

/// Where: a single node (`REDIS_URL`) or a cluster (`REDIS_CLUSTER_URLS`, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

pub fn config(topology: Topology, test: &str) -> Option<RedisConfig> {
    let prefix = format!("sched-test-{:016x}", rand::random::<u64>());
    match topology {
        Topology::Single => sched_tests::env::require_url("REDIS_URL", test)
            .map(|u| RedisConfig::from_url(u).with_prefix(prefix)),
        Topology::Cluster => sched_tests::env::require_url("REDIS_CLUSTER_URLS", test).map(|u| {
            RedisConfig::cluster(u.split(',').map(str::trim).filter(|s| !s.is_empty()))
                .with_prefix(prefix)
        }),
    }
}

pub async fn connect(kind: Kind, cfg: &RedisConfig) -> Result<RedisRepository, RepoError> {
    match kind {
        Kind::RedisRs => RedisRepository::connect(cfg).await,
        #[cfg(feature = "fred")]
        Kind::Fred => RedisRepository::connect_fred(cfg).await,
    }
}

/// A repository on a fresh prefix whose keys are deleted on drop.
pub struct Fresh {
    pub repo: RedisRepository,
    cfg: RedisConfig,
    kind: Kind,
}

pub async fn fresh(kind: Kind, topology: Topology, test: &str) -> Option<Fresh> {
    let cfg = config(topology, test)?;
    let repo = connect(kind, &cfg).await.expect("connect to redis");
    Some(Fresh { repo, cfg, kind })
}

impl Deref for Fresh {
    type Target = RedisRepository;
    fn deref(&self) -> &RedisRepository {
        &self.repo
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // The test's runtime is busy dropping us: clean up on a thread with its own runtime
        // and its own connection.
        let cfg = self.cfg.clone();
        let kind = self.kind;
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let repo = connect(kind, &cfg).await.expect("connect for clean-up");
                repo.delete_all_keys().await.expect("delete test keys");
                let left = repo.delete_all_keys().await.expect("count test keys");
                assert_eq!(left, 0, "keys left behind under {}", repo.key_pattern());
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("clean-up of {:?} failed", self.cfg.key_prefix);
        }
    }
}

#[async_trait]
impl WorkerRepository for Fresh {
    fn backend_name(&self) -> &str {
        self.repo.backend_name()
    }
    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        self.repo.register_worker(spec).await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        self.repo.remove_worker(worker_id).await
    }
    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        self.repo.get_worker(worker_id).await
    }
    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        self.repo.list_workers(pool).await
    }
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        self.repo.reserve_batch(batch, mode).await
    }
    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        self.repo.release_batch(ids).await
    }
    async fn find_reservation(&self, id: &str) -> Result<Option<ReservationRecord>, RepoError> {
        self.repo.find_reservation(id).await
    }
    async fn list_reservations(&self, id: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        self.repo.list_reservations(id).await
    }
    async fn audit(&self, id: &str) -> Result<AuditReport, RepoError> {
        self.repo.audit(id).await
    }
    async fn reconcile(&self, id: &str) -> Result<AuditReport, RepoError> {
        self.repo.reconcile(id).await
    }
}
