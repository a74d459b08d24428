//! `sched`: sched-core's [`Scheduler`] with its defaults: lock-free per-worker atomic commits,
//! group commit of concurrent `schedule()` calls, write-through cache and affinity.

use super::{
    run_each, CallMode, PlaceError, PlaceResult, Strategy, StrategyKind, StrategyOptions,
    StrategyStats,
};
use async_trait::async_trait;
use sched_core::{ContainerRequest, RepoError, Scheduler, SchedulerConfig, WorkerRepository};
use std::sync::Arc;

/// The sched strategy. See the [module docs](self).
pub struct Sched {
    sched: Scheduler<Arc<dyn WorkerRepository>>,
    calls: CallMode,
}

impl Sched {
    /// A scheduler over `repo` with the defaults, `opts.affinity` and `opts.cache_ttl`.
    pub fn new(repo: Arc<dyn WorkerRepository>, opts: StrategyOptions) -> Self {
        let config = SchedulerConfig::default()
            .with_affinity(opts.affinity)
            .with_cache_ttl(opts.cache_ttl);
        Sched {
            sched: Scheduler::new(repo, config),
            calls: opts.calls,
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
        // When every caller runs at once, each call is made when its task is created (the
        // scheduler registers it then) and awaited in the task once the burst is released: the
        // callers arrive together. With fewer concurrent callers, a call is made only once its
        // task holds a caller slot.
        if self.calls == CallMode::Batch {
            return self
                .sched
                .schedule_batch(requests)
                .await
                .into_iter()
                .map(|r| r.map_err(PlaceError::from))
                .collect();
        }
        let together = concurrency == 0 || concurrency >= requests.len();
        run_each(requests, concurrency, |r| {
            let call = if together {
                Ok(self.sched.schedule(r))
            } else {
                Err((self.sched.clone(), r))
            };
            async move {
                match call {
                    Ok(call) => call.await,
                    Err((s, r)) => s.schedule(r).await,
                }
                .map_err(PlaceError::from)
            }
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
