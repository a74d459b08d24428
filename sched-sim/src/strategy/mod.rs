//! The three placement strategies, each a real implementation over the same
//! [`WorkerRepository`] (and, for the lock-based ones, [`WorkerLocks`]) on the same backend.
//!
//! | strategy | reads | locks | commits |
//! |---|---|---|---|
//! | [`naive`] | `list_workers` + `get_worker` per container | one per container (retried) | one `reserve_batch` per container |
//! | [`seed`] | 500 ms TTL cache | one per worker per burst, in id order | one `reserve_batch` per worker |
//! | [`sched`] | write-through cache | none | one `reserve_batch` per group commit |
//!
//! [`peer`] (the beta9 mechanism: one capacity script per worker, pipelined, no ledger) is a
//! yardstick measured beside every burst report on single-node Redis, not a strategy of its own.

pub mod naive;
pub mod peer;
pub mod place_error;
pub mod sched;
pub mod seed;

use crate::locks::WorkerLocks;
use async_trait::async_trait;
use clap::ValueEnum;
pub use place_error::{PlaceError, PlaceErrorKind};
use sched_core::affinity::AffinityMode;
use sched_core::{ContainerRequest, Placement, RepoError, WorkerRepository};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Per-container lock, read-all, re-read, write, unlock.
    Naive,
    /// One lock per worker per burst, 500 ms read cache, sha256-rotation affinity.
    Seed,
    /// sched-core's lock-free batch scheduler with group commit.
    Sched,
    /// The beta9 mechanism (per-worker capacity scripts, pipelined, no ledger) on its own keys;
    /// measured beside every burst report on single-node Redis ([`peer`]), never run alone.
    Peer,
}

impl StrategyKind {
    /// All three, in report order.
    pub const ALL: [StrategyKind; 3] =
        [StrategyKind::Naive, StrategyKind::Seed, StrategyKind::Sched];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Naive => "naive",
            StrategyKind::Seed => "seed",
            StrategyKind::Sched => "sched",
            StrategyKind::Peer => "peer",
        }
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters a strategy keeps about its own work (backend traffic is counted by
/// [`Metered`](crate::metered::Metered)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyStats {
    /// Rejected writes, or re-reads under a lock that showed the pick no longer fits.
    pub conflicts: u64,
    /// Container re-attempts.
    pub retries: u64,
    /// `try_lock` calls that found the lock held.
    pub lock_failures: u64,
    /// Reads served from a cache.
    pub cache_hits: u64,
    /// Reads that went to the backend.
    pub cache_misses: u64,
}

impl StrategyStats {
    /// `self - earlier`, per field (saturating).
    pub fn since(&self, e: &StrategyStats) -> StrategyStats {
        StrategyStats {
            conflicts: self.conflicts.saturating_sub(e.conflicts),
            retries: self.retries.saturating_sub(e.retries),
            lock_failures: self.lock_failures.saturating_sub(e.lock_failures),
            cache_hits: self.cache_hits.saturating_sub(e.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(e.cache_misses),
        }
    }

    /// Per-field sum.
    pub fn plus(&self, o: &StrategyStats) -> StrategyStats {
        StrategyStats {
            conflicts: self.conflicts + o.conflicts,
            retries: self.retries + o.retries,
            lock_failures: self.lock_failures + o.lock_failures,
            cache_hits: self.cache_hits + o.cache_hits,
            cache_misses: self.cache_misses + o.cache_misses,
        }
    }

    /// `hits / (hits + misses)`, 0 with no reads.
    pub fn cache_hit_rate(&self) -> f64 {
        let t = self.cache_hits + self.cache_misses;
        if t == 0 {
            0.0
        } else {
            self.cache_hits as f64 / t as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct AtomicStats {
    conflicts: AtomicU64,
    retries: AtomicU64,
    lock_failures: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl AtomicStats {
    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retries(&self, n: u64) {
        self.retries.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn lock_failure(&self) {
        self.lock_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn snapshot(&self) -> StrategyStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StrategyStats {
            conflicts: l(&self.conflicts),
            retries: l(&self.retries),
            lock_failures: l(&self.lock_failures),
            cache_hits: l(&self.cache_hits),
            cache_misses: l(&self.cache_misses),
        }
    }
}

/// The outcome of one container: where it went, or why not (typed: see [`PlaceError`]).
pub type PlaceResult = Result<Placement, PlaceError>;

/// Settings shared by the strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyOptions {
    /// Spreading for `sched` (`seed` always rotates, `naive` never spreads).
    pub affinity: AffinityMode,
    /// How a burst reaches `sched` (the baselines place container by container either way).
    pub calls: CallMode,
    /// Read-cache TTL for `seed` and `sched` (zero: no cache).
    pub cache_ttl: Duration,
    /// Lock expiry for the lock-based strategies.
    pub lock_ttl: Duration,
    /// Give up on a container after this long.
    pub deadline: Duration,
}

/// How a burst's containers reach the `sched` strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CallMode {
    /// One `schedule()` call per container, each from its own task, all at once: the original
    /// scenario; group commit turns them into one commit.
    #[default]
    Each,
    /// One `schedule_batch()` call for the whole burst, from one task.
    Batch,
}

impl Default for StrategyOptions {
    fn default() -> Self {
        StrategyOptions {
            affinity: AffinityMode::Balanced,
            calls: CallMode::Each,
            cache_ttl: Duration::from_millis(500),
            lock_ttl: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

/// A way of placing bursts of containers.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// Which one.
    fn kind(&self) -> StrategyKind;

    /// Places a burst and returns one result per request, in input order. `naive` and `sched`
    /// place each container from its own task (at most `concurrency` at a time); `seed` takes
    /// the burst as one batch, as the seed design did.
    async fn place_burst(
        &self,
        requests: Vec<ContainerRequest>,
        concurrency: usize,
    ) -> Vec<PlaceResult>;

    /// Releases containers.
    async fn release(&self, container_ids: &[String]) -> Result<(), RepoError>;

    /// Counters since creation.
    fn stats(&self) -> StrategyStats;
}

/// Builds a strategy over `repo` and `locks` (normally the metered ones). `peer` is not one
/// (it writes no ledger anyone could audit): `Config` error.
pub fn build(
    kind: StrategyKind,
    repo: Arc<dyn WorkerRepository>,
    locks: Arc<dyn WorkerLocks>,
    opts: StrategyOptions,
) -> Result<Arc<dyn Strategy>, crate::SimError> {
    Ok(match kind {
        StrategyKind::Naive => Arc::new(naive::Naive::new(repo, locks, opts)),
        StrategyKind::Seed => Arc::new(seed::Seed::new(repo, locks, opts)),
        StrategyKind::Sched => Arc::new(sched::Sched::new(repo, opts)),
        StrategyKind::Peer => return Err(peer_alone()),
    })
}

/// The error for `--strategy peer`.
pub fn peer_alone() -> crate::SimError {
    crate::SimError::Config(
        "peer is a yardstick measured beside every burst report on single-node Redis \
         (--backend redis / redis-fred), not a strategy to run alone"
            .into(),
    )
}

/// Runs `f` for every request, each in its own task, at most `concurrency` at a time; results
/// in input order.
pub(crate) async fn run_each<F, Fut>(
    requests: Vec<ContainerRequest>,
    concurrency: usize,
    f: F,
) -> Vec<PlaceResult>
where
    F: Fn(ContainerRequest) -> Fut,
    Fut: Future<Output = PlaceResult> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    // The burst arrives at once: every task is spawned first, then all are released together.
    let (go, ready) = tokio::sync::watch::channel(false);
    let handles: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let permits = Arc::clone(&permits);
            let mut ready = ready.clone();
            let fut = f(r);
            tokio::spawn(async move {
                let _ = ready.wait_for(|go| *go).await;
                let _permit = permits.acquire_owned().await;
                fut.await
            })
        })
        .collect();
    let _ = go.send(true);
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| Err(PlaceError::other(format!("task failed: {e}")))),
        );
    }
    out
}

/// A short random pause (`lo..hi` microseconds) for lock retries.
pub(crate) async fn jitter_sleep(lo_us: u64, hi_us: u64) {
    use rand::RngExt;
    let us = rand::rng().random_range(lo_us..hi_us.max(lo_us + 1));
    tokio::time::sleep(Duration::from_micros(us)).await;
}
