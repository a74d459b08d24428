//! Backends: open a fresh worker set on one store, wrap it with [`Metered`], measure the floor
//! (one round trip), and clean up.

use crate::hist::{Recorder, Summary};
use crate::metered::{CallCounters, Metered, MeteredLocks};
use crate::SimError;
use clap::ValueEnum;
use sched_core::{BackendCounters, Resources, WorkerLocks, WorkerRepository, WorkerSpec};
use sched_memory::{MemoryLocks, MemoryRepository};
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
}

impl BackendKind {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisFred => "redis-fred",
            BackendKind::Postgres => "postgres",
        }
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
    /// Latency added per call (`--rtt-ms`).
    pub rtt: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kind: BackendKind::Memory,
            redis_url: None,
            database_url: None,
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
    /// Opens `opts.kind` with a fresh namespace and registers the workers.
    pub async fn open(opts: &BackendOptions, setup: &WorkerSetup) -> Result<Env, SimError> {
        let (raw, locks, counters): Parts = match opts.kind {
            BackendKind::Memory => {
                let repo = MemoryRepository::new();
                let counters = repo.counters();
                (Arc::new(repo), Arc::new(MemoryLocks::new()), Some(counters))
            }
            other => {
                return Err(SimError::BackendUnavailable(
                    other.as_str().into(),
                    "this backend's crate has not landed in the workspace yet".into(),
                ))
            }
        };
        Self::with_parts(opts, setup, raw, locks, counters).await
    }

    async fn with_parts(
        opts: &BackendOptions,
        setup: &WorkerSetup,
        raw: Arc<dyn WorkerRepository>,
        raw_locks: Arc<dyn WorkerLocks>,
        backend_counters: Option<Arc<BackendCounters>>,
    ) -> Result<Env, SimError> {
        let ids = setup.ids();
        register(&*raw, &ids, setup.capacity).await?;
        let calls = Arc::new(CallCounters::default());
        let repo: Arc<dyn WorkerRepository> = Arc::new(Metered::with_counters(
            Arc::clone(&raw),
            opts.rtt,
            Arc::clone(&calls),
        ));
        let locks: Arc<dyn WorkerLocks> =
            Arc::new(MeteredLocks::new(raw_locks, opts.rtt, Arc::clone(&calls)));
        Ok(Env {
            kind: opts.kind,
            raw,
            repo,
            locks,
            calls,
            backend_counters,
            worker_ids: ids,
            rtt: opts.rtt,
        })
    }

    /// The floor: `samples` single round trips through the metered layer (so `--rtt-ms` is
    /// included). On memory a `get_worker`.
    pub async fn floor(&self, samples: usize) -> Result<Summary, SimError> {
        let mut rec = Recorder::new();
        let id = self
            .worker_ids
            .first()
            .cloned()
            .unwrap_or_else(|| "worker-00000".into());
        for _ in 0..samples.max(1) {
            let t = Instant::now();
            self.repo.get_worker(&id).await?;
            rec.record(t.elapsed());
        }
        Ok(rec.summary())
    }

    /// The backend's own round-trip counter, if it keeps one.
    pub fn backend_round_trips(&self) -> Option<u64> {
        self.backend_counters
            .as_ref()
            .map(|c| c.snapshot().round_trips)
    }

    /// Removes the workers (and their ledgers) again. Memory needs nothing.
    pub async fn cleanup(self) -> Result<(), SimError> {
        match self.kind {
            BackendKind::Memory => Ok(()),
            _ => {
                for id in &self.worker_ids {
                    self.raw.remove_worker(id).await?;
                }
                Ok(())
            }
        }
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
