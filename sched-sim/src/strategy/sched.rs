//! `sched`: sched-core's [`Scheduler`] with its defaults: lock-free per-worker atomic commits,
//! group commit of concurrent `schedule()` calls, write-through cache and affinity.

use super::{run_each, PlaceResult, Strategy, StrategyKind, StrategyOptions, StrategyStats};
use async_trait::async_trait;
use sched_core::{ContainerRequest, RepoError, Scheduler, SchedulerConfig, WorkerRepository};
use std::sync::Arc;

/// The sched strategy. See the [module docs](self).
pub struct Sched {
    sched: Scheduler<Arc<dyn WorkerRepository>>,
}

impl Sched {
    /// A scheduler over `repo` with the defaults, `opts.affinity` and `opts.cache_ttl`.
    pub fn new(repo: Arc<dyn WorkerRepository>, opts: StrategyOptions) -> Self {
        let config = SchedulerConfig {
            affinity: opts.affinity,
            cache_ttl: opts.cache_ttl,
            ..SchedulerConfig::default()
        };
        Sched {
            sched: Scheduler::new(repo, config),
        }
    }

    /// The underlying scheduler.
    pub fn scheduler(&self) -> &Scheduler<Arc<dyn WorkerRepository>> {
        &self.sched
    }
}

#[async_trait]
impl Strategy for Sched {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Sched
    }

    async fn place_burst(
        &self,
        requests: Vec<ContainerRequest>,
        concurrency: usize,
    ) -> Vec<PlaceResult> {
        run_each(requests, concurrency, |r| {
            let s = self.sched.clone();
            async move { s.schedule(r).await.map_err(|e| e.to_string()) }
        })
        .await
    }

    async fn release(&self, container_ids: &[String]) -> Result<(), RepoError> {
        self.sched.release(container_ids).await.map(|_| ())
    }

    fn stats(&self) -> StrategyStats {
        let s = self.sched.stats();
        let c = self.sched.cache_stats();
        StrategyStats {
            conflicts: s.conflicts,
            retries: s.retries,
            lock_failures: 0,
            cache_hits: c.hits,
            cache_misses: c.misses,
        }
    }
}
