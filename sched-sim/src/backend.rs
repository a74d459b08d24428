//! Backends: open a fresh worker set on one store, wrap it with [`Metered`], measure the floor
//! (one round trip), and clean up.

use crate::hist::{Recorder, Summary};
use crate::locks::{MemoryLocks, PostgresLocks, RedisLocks, WorkerLocks};
use crate::metered::{CallCounters, Latency, Metered, MeteredLocks};
use crate::tls::TlsFiles;
use crate::SimError;
use clap::ValueEnum;
use sched_core::{BackendCounters, RepoError, Resources, WorkerRepository, WorkerSpec};
use sched_memory::MemoryRepository;
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In-process `sched_memory::MemoryRepository` (default).
    Memory,
    /// Redis through redis-rs (`sched-redis`).
    Redis,
    /// Redis through fred (`sched-redis`).
    RedisFred,
    /// PostgreSQL through sqlx (`sched-postgres`).
    Postgres,
    /// Redis Cluster through redis-rs (`--redis-cluster-urls`).
    RedisCluster,
    /// Redis Cluster through fred (`--redis-cluster-urls`).
    RedisFredCluster,
}

impl BackendKind {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisFred => "redis-fred",
            BackendKind::Postgres => "postgres",
            BackendKind::RedisCluster => "redis-cluster",
            BackendKind::RedisFredCluster => "redis-fred-cluster",
        }
    }

    /// True for the Redis Cluster kinds.
    pub fn is_cluster(self) -> bool {
        matches!(
            self,
            BackendKind::RedisCluster | BackendKind::RedisFredCluster
        )
    }

    /// True for the kinds that talk to Redis through fred.
    pub fn is_fred(self) -> bool {
        matches!(self, BackendKind::RedisFred | BackendKind::RedisFredCluster)
    }

    /// True for every Redis kind (single node or cluster).
    pub fn is_redis(self) -> bool {
        !matches!(self, BackendKind::Memory | BackendKind::Postgres)
    }
}

/// How to reach the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOptions {
    /// Which store.
    pub kind: BackendKind,
    /// Redis URL for the Redis backends.
    pub redis_url: Option<String>,
    /// PostgreSQL URL for the Postgres backend.
    pub database_url: Option<String>,
    /// Redis Cluster seed URLs for the cluster backends.
    pub redis_cluster_urls: Vec<String>,
    /// The `--tls-*` files, for every connection (backends and the simulator's own).
    pub tls: TlsFiles,
    /// Latency added per call (`--rtt-ms`).
    pub rtt: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kind: BackendKind::Memory,
            redis_url: None,
            database_url: None,
            redis_cluster_urls: Vec::new(),
            tls: TlsFiles::default(),
            rtt: Duration::ZERO,
        }
    }
}

/// The workers of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSetup {
    /// How many.
    pub count: usize,
    /// Each worker's total.
    pub capacity: Resources,
}

impl WorkerSetup {
    /// Worker ids `worker-00000 ..`.
    pub fn ids(&self) -> Vec<String> {
        (0..self.count).map(|i| format!("worker-{i:05}")).collect()
    }
}

/// A backend's repository, locks and own counters.
type Parts = (
    Arc<dyn WorkerRepository>,
    Arc<dyn WorkerLocks>,
    Option<Arc<BackendCounters>>,
);

/// One fresh worker set on one backend, with metered access for the strategies and raw
/// access for setup and audit.
pub struct Env {
    /// Which store.
    pub kind: BackendKind,
    /// Unmetered repository (setup, audit).
    pub raw: Arc<dyn WorkerRepository>,
    /// Metered repository (strategies).
    pub repo: Arc<dyn WorkerRepository>,
    /// Metered locks (strategies).
    pub locks: Arc<dyn WorkerLocks>,
    /// Call counters of `repo` and `locks`.
    pub calls: Arc<CallCounters>,
    /// The backend's own counters, when it keeps them.
    pub backend_counters: Option<Arc<BackendCounters>>,
    /// The worker ids, in id order.
    pub worker_ids: Vec<String>,
    /// Injected round-trip time.
    pub rtt: Duration,
    /// Key prefix (Redis) or schema (Postgres) of this worker set; empty on memory.
    pub namespace: String,
    handle: Handle,
    owned: bool,
}

/// The concrete backend, for its ping and clean-up.
#[derive(Clone)]
enum Handle {
    Memory,
    Redis(RedisRepository),
    Postgres(PostgresRepository),
}

/// A fresh namespace name: `sched_sim_<pid>_<random>` (valid as a Postgres schema and as a
/// Redis key prefix).
pub fn fresh_namespace() -> String {
    format!(
        "sched_sim_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Connections per pool on Postgres: one per worker (seed's simultaneous locks) plus a few,
/// between 8 and 32.
pub fn pg_pool_size(workers: usize) -> u32 {
    u32::try_from(workers.saturating_add(4).clamp(8, 32)).unwrap_or(32)
}

fn need(url: &Option<String>, what: &str, kind: BackendKind) -> Result<String, SimError> {
    url.clone()
        .ok_or_else(|| SimError::Config(format!("--backend {} needs {what}", kind.as_str())))
}

/// The Redis configuration of `opts` without prefix: a single node (`--redis-url`) or a
/// cluster (`--redis-cluster-urls`), by kind, with the `--tls-*` files.
pub fn redis_config(opts: &BackendOptions) -> Result<RedisConfig, SimError> {
    redis_config_plain(opts).map(|c| opts.tls.redis_config(c))
}

fn redis_config_plain(opts: &BackendOptions) -> Result<RedisConfig, SimError> {
    if opts.kind.is_cluster() {
        let urls: Vec<String> = opts
            .redis_cluster_urls
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(SimError::Config(format!(
                "--backend {} needs --redis-cluster-urls (or REDIS_CLUSTER_URLS)",
                opts.kind.as_str()
            )));
        }
        Ok(RedisConfig::cluster(urls))
    } else {
        let url = need(&opts.redis_url, "--redis-url (or REDIS_URL)", opts.kind)?;
        Ok(RedisConfig::from_url(url))
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kind", &self.kind)
            .field("workers", &self.worker_ids.len())
            .field("rtt", &self.rtt)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// Opens `opts.kind` in a fresh namespace and registers the workers.
    pub async fn open(opts: &BackendOptions, setup: &WorkerSetup) -> Result<Env, SimError> {
        Self::open_in(opts, setup, &fresh_namespace(), true).await
    }

    /// Opens `opts.kind` in `namespace`. With `create`, prepares the namespace (schema
    /// migration), registers the workers and owns the clean-up; without, attaches to a
    /// namespace another process created (contention `--processes`).
    pub async fn open_in(
        opts: &BackendOptions,
        setup: &WorkerSetup,
        namespace: &str,
        create: bool,
    ) -> Result<Env, SimError> {
        // A missing or wrong TLS file is named now, before anything connects.
        opts.tls.check()?;
        let unavailable =
            |e: RepoError| SimError::BackendUnavailable(opts.kind.as_str().into(), e.to_string());
        let (parts, handle): (Parts, Handle) = match opts.kind {
            BackendKind::Memory => {
                if !create {
                    return Err(SimError::Config(
                        "the memory backend cannot be shared between processes".into(),
                    ));
                }
                let repo = MemoryRepository::new();
                let counters = repo.counters();
                (
                    (Arc::new(repo), Arc::new(MemoryLocks::new()), Some(counters)),
                    Handle::Memory,
                )
            }
            BackendKind::Redis
            | BackendKind::RedisFred
            | BackendKind::RedisCluster
            | BackendKind::RedisFredCluster => {
                let config = redis_config(opts)?.with_prefix(namespace);
                let repo = if opts.kind.is_fred() {
                    RedisRepository::connect_fred(&config).await
                } else {
                    RedisRepository::connect(&config).await
                }
                .map_err(unavailable)?;
                let counters = repo.counters();
                // The locks have their own redis-rs connection, whichever client the
                // repository uses. On a cluster the baselines' locks are in-process (the
                // simulator's Redis locks are standalone only): naive and seed on a cluster
                // coordinate the tasks of one process, not separate processes.
                let locks: Arc<dyn WorkerLocks> = if opts.kind.is_cluster() {
                    Arc::new(MemoryLocks::new())
                } else {
                    let counters = Arc::clone(&counters);
                    let name = repo.backend_name();
                    let locks = RedisLocks::connect(&config, &opts.tls, counters, name)
                        .await
                        .map_err(unavailable)?;
                    Arc::new(locks)
                };
                (
                    (Arc::new(repo.clone()), locks, Some(counters)),
                    Handle::Redis(repo),
                )
            }
            BackendKind::Postgres => {
                let url = need(
                    &opts.database_url,
                    "--database-url (or DATABASE_URL)",
                    opts.kind,
                )?;
                let config = PostgresConfig::from_url(&url)
                    .and_then(|c| c.with_schema(namespace))
                    .map_err(|e| SimError::Config(e.to_string()))?
                    // The lock pool is sized like this one, and seed holds one lock (one
                    // connection) per planned worker at once; stay well below the server's
                    // default max_connections of 100 with both pools.
                    .with_max_connections(pg_pool_size(setup.count));
                let config = opts.tls.postgres_config(config);
                let repo = PostgresRepository::connect(config)
                    .await
                    .map_err(unavailable)?;
                if create {
                    repo.migrate().await?;
                }
                let counters = repo.counters();
                let locks = PostgresLocks::new(&repo);
                if create {
                    locks.install(&setup.ids()).await?;
                }
                (
                    (Arc::new(repo.clone()), Arc::new(locks), Some(counters)),
                    Handle::Postgres(repo),
                )
            }
        };
        let (raw, locks, counters) = parts;
        if create {
            register(&*raw, &setup.ids(), setup.capacity).await?;
        }
        let mut env = Self::with_parts(opts, setup, raw, locks, counters);
        env.namespace = if opts.kind == BackendKind::Memory {
            String::new()
        } else {
            namespace.to_owned()
        };
        env.handle = handle;
        env.owned = create;
        Ok(env)
    }

    fn with_parts(
        opts: &BackendOptions,
        setup: &WorkerSetup,
        raw: Arc<dyn WorkerRepository>,
        raw_locks: Arc<dyn WorkerLocks>,
        backend_counters: Option<Arc<BackendCounters>>,
    ) -> Env {
        let ids = setup.ids();
        let calls = Arc::new(CallCounters::default());
        let repo: Arc<dyn WorkerRepository> = Arc::new(Metered::with_counters(
            Arc::clone(&raw),
            opts.rtt,
            Arc::clone(&calls),
        ));
        let locks: Arc<dyn WorkerLocks> =
            Arc::new(MeteredLocks::new(raw_locks, opts.rtt, Arc::clone(&calls)));
        Env {
            kind: opts.kind,
            raw,
            repo,
            locks,
            calls,
            backend_counters,
            worker_ids: ids,
            rtt: opts.rtt,
            namespace: String::new(),
            handle: Handle::Memory,
            owned: true,
        }
    }

    /// The floor: `samples` single round trips, with `--rtt-ms` added like any call. On memory a
    /// `get_worker` (through the metered layer); on Redis a key-free read (`PING`-like); on
    /// Postgres a `SELECT 1`, both through the backend clients.
    pub async fn floor(&self, samples: usize) -> Result<Summary, SimError> {
        let mut rec = Recorder::new();
        let latency = Latency::new(self.rtt);
        let id = self
            .worker_ids
            .first()
            .cloned()
            .unwrap_or_else(|| "worker-00000".into());
        for _ in 0..samples.max(1) {
            let t = Instant::now();
            match &self.handle {
                Handle::Memory => {
                    self.repo.get_worker(&id).await?;
                }
                Handle::Redis(r) => latency.around(r.ping()).await?,
                Handle::Postgres(p) => {
                    latency.around(p.ping()).await?;
                }
            }
            rec.record(t.elapsed());
        }
        Ok(rec.summary())
    }

    /// The Redis repository of this worker set (raw, unmetered), on the Redis kinds.
    pub fn redis(&self) -> Option<&RedisRepository> {
        match &self.handle {
            Handle::Redis(r) => Some(r),
            Handle::Memory | Handle::Postgres(_) => None,
        }
    }

    /// The backend's own round-trip counter, if it keeps one.
    pub fn backend_round_trips(&self) -> Option<u64> {
        self.backend_counters
            .as_ref()
            .map(|c| c.snapshot().round_trips)
    }

    /// Removes everything this worker set wrote: the Redis keys under its prefix, or its
    /// Postgres schema. Memory needs nothing; an attached (non-owning) env leaves it alone.
    pub async fn cleanup(self) -> Result<(), SimError> {
        if !self.owned {
            return Ok(());
        }
        match &self.handle {
            Handle::Memory => {}
            Handle::Redis(r) => {
                r.delete_all_keys().await?;
            }
            Handle::Postgres(p) => {
                p.drop_schema().await?;
                p.close().await;
            }
        }
        Ok(())
    }
}

/// Registers `ids` with `capacity`, a few at a time.
pub async fn register(
    repo: &dyn WorkerRepository,
    ids: &[String],
    capacity: Resources,
) -> Result<(), SimError> {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(ids.iter())
        .map(|id| async move {
            repo.register_worker(&WorkerSpec::new(id.clone(), capacity))
                .await
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}
