//! `naive`: the design sched replaces. For each container, from its own task:
//!
//! 1. read all workers (`list_workers`, no cache);
//! 2. pick the first that fits, in id order (no affinity, so a burst piles onto the first
//!    workers and every task contends for the same lock);
//! 3. take that worker's lock in the backend, retrying with small sleeps;
//! 4. re-read the worker under the lock (`get_worker`); if it no longer fits, unlock and start
//!    over;
//! 5. write one reservation (`reserve_batch` with one worker part of one container);
//! 6. unlock.

use super::{jitter_sleep, run_each, AtomicStats, PlaceError, PlaceResult, Strategy, StrategyKind};
use super::{StrategyOptions, StrategyStats};
use crate::locks::WorkerLocks;
use async_trait::async_trait;
use sched_core::bench_support::{eligible, PlanConfig};
use sched_core::{
    affinity::AffinityMode, CapacityReservation, CommitMode, ContainerRequest, Placement,
    Rejection, RepoError, ResourceReservation, WorkerRepository,
};
use std::sync::Arc;
use std::time::Instant;

/// Failed `try_lock` calls on one pick before reading all workers again.
const LOCK_TRIES_PER_PICK: u32 = 50;

struct Inner {
    repo: Arc<dyn WorkerRepository>,
    locks: Arc<dyn WorkerLocks>,
    opts: StrategyOptions,
    stats: AtomicStats,
}

/// The per-container locking baseline. See the [module docs](self).
pub struct Naive {
    inner: Arc<Inner>,
}

impl Naive {
    /// A naive scheduler over `repo` and `locks`.
    pub fn new(
        repo: Arc<dyn WorkerRepository>,
        locks: Arc<dyn WorkerLocks>,
        opts: StrategyOptions,
    ) -> Self {
        Naive {
            inner: Arc::new(Inner {
                repo,
                locks,
                opts,
                stats: AtomicStats::default(),
            }),
        }
    }
}

impl Inner {
    async fn place_one(&self, req: ContainerRequest) -> PlaceResult {
        let started = Instant::now();
        let cfg = PlanConfig {
            affinity: AffinityMode::Off,
            ..PlanConfig::default()
        };
        let mut attempts = 0u32;
        // Why the latest attempt failed (an insufficient-capacity rejection keeps its kind).
        let mut last: Option<PlaceError> = None;
        loop {
            attempts += 1;
            if started.elapsed() > self.opts.deadline {
                let last = last.unwrap_or_else(|| PlaceError::other(""));
                return Err(last.context(format!("{}: gave up after {attempts} attempts", req.id)));
            }
            if attempts > 1 {
                self.stats.retries(1);
            }
            // 1. read everything
            self.stats.cache(false);
            let workers = match self.repo.list_workers(None).await {
                Ok(w) => w,
                Err(e) => {
                    last = Some(PlaceError::other(format!("list_workers: {e}")));
                    jitter_sleep(1000, 3000).await;
                    continue;
                }
            };
            // 2. first fit
            let Some(pick) = workers
                .iter()
                .find(|w| eligible(w, &req, &cfg) && w.free.fits(&req.resources))
            else {
                return Err(PlaceError::capacity(format!(
                    "{}: no eligible worker has room",
                    req.id
                )));
            };
            // 3. lock it
            let mut token = None;
            for _ in 0..LOCK_TRIES_PER_PICK {
                match self.locks.try_lock(&pick.id, self.opts.lock_ttl).await {
                    Ok(Some(t)) => {
                        token = Some(t);
                        break;
                    }
                    Ok(None) => {
                        self.stats.lock_failure();
                        jitter_sleep(500, 2500).await;
                    }
                    Err(e) => {
                        last = Some(PlaceError::other(format!("try_lock: {e}")));
                        break;
                    }
                }
            }
            let Some(token) = token else {
                if last.is_none() {
                    last = Some(PlaceError::other(format!(
                        "lock on {} stayed busy",
                        pick.id
                    )));
                }
                continue;
            };
            // 4. re-read under the lock
            let fits = match self.repo.get_worker(&pick.id).await {
                Ok(Some(w)) => w.is_available() && w.free.fits(&req.resources),
                Ok(None) => false,
                Err(e) => {
                    last = Some(PlaceError::other(format!("get_worker: {e}")));
                    false
                }
            };
            if !fits {
                self.stats.conflict();
                let _ = self.locks.unlock(token).await;
                continue;
            }
            // 5. write, 6. unlock
            let batch = [CapacityReservation::new(
                pick.id.clone(),
                vec![ResourceReservation::new(req.id.clone(), req.resources)],
            )];
            let res = self
                .repo
                .reserve_batch(&batch, CommitMode::AllOrNothing)
                .await;
            let _ = self.locks.unlock(token).await;
            match res {
                Ok(out) => match out.into_iter().next().map(|r| r.outcome) {
                    Some(Ok(c)) => {
                        return Ok(Placement {
                            container_id: req.id,
                            worker_id: pick.id.clone(),
                            resource_version: c.new_version,
                            attempts,
                            already_held: false,
                        })
                    }
                    Some(Err(Rejection::AlreadyReserved {
                        container_id,
                        worker_id,
                    })) if container_id == req.id => {
                        return Ok(Placement {
                            container_id,
                            worker_id,
                            resource_version: 0,
                            attempts,
                            already_held: true,
                        })
                    }
                    Some(Err(rej)) => {
                        self.stats.conflict();
                        last = Some(PlaceError::from_rejection(&rej));
                    }
                    None => last = Some(PlaceError::other("reserve_batch returned no result")),
                },
                Err(RepoError::InvalidInput(e)) => {
                    return Err(PlaceError::other(format!("{}: {e}", req.id)))
                }
                // A lost reply is safe to retry: the one-holder rule turns a second placement
                // into AlreadyReserved, which is reported as placed.
                Err(e) => last = Some(PlaceError::other(format!("reserve_batch: {e}"))),
            }
        }
    }
}

#[async_trait]
impl Strategy for Naive {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Naive
    }

    async fn place_burst(
        &self,
        requests: Vec<ContainerRequest>,
        concurrency: usize,
    ) -> Vec<PlaceResult> {
        run_each(requests, concurrency, |r| {
            let inner = Arc::clone(&self.inner);
            async move { inner.place_one(r).await }
        })
        .await
    }

    async fn release(&self, container_ids: &[String]) -> Result<(), RepoError> {
        for chunk in container_ids.chunks(sched_core::validate::MAX_BATCH) {
            self.inner.repo.release_batch(chunk).await?;
        }
        Ok(())
    }

    fn stats(&self) -> StrategyStats {
        self.inner.stats.snapshot()
    }
}
