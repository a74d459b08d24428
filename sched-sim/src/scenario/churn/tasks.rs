//! The churn scenario's tasks: the worker agents (heartbeat, release what ended, renew the rest
//! in one call), the placer, the drainer, the crash and the sweeper.

use super::fleet::{add, lock, Fate, Running, Shared};
use crate::progress::Progress;
use crate::SimError;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sched_core::lifecycle::sweep_all;
use sched_core::{ContainerRequest, ExpiryReason, RenewOutcome, WorkerStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{interval, sleep, MissedTickBehavior};

/// Runs `f`; on error, asks every task to stop so the run ends quickly with that error.
pub(super) async fn guarded<F>(sh: Arc<Shared>, f: F) -> Result<(), SimError>
where
    F: std::future::Future<Output = Result<(), SimError>>,
{
    let out = f.await;
    if let Err(e) = &out {
        tracing::error!(error = %e, "churn task failed; stopping the run");
        sh.stop();
    }
    out
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = interval(period.max(Duration::from_millis(1)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Sleeps `d`, waking early when `stop` is set. Returns false when stopped.
async fn nap(sh: &Shared, d: Duration, all: bool) -> bool {
    let until = Instant::now() + d;
    loop {
        let stopped = if all {
            sh.stop_all.load(Ordering::Relaxed)
        } else {
            sh.stop_workload.load(Ordering::Relaxed)
        };
        if stopped {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        sleep(left.min(Duration::from_millis(20))).await;
    }
}

/// Worker agent `idx`: every period, unless crashed, one heartbeat, one release of what ended,
/// one `renew_leases` of everything else it runs.
pub(super) async fn agent(sh: Arc<Shared>, idx: usize) -> Result<(), SimError> {
    let Some(worker) = sh.workers.get(idx).cloned() else {
        return Ok(());
    };
    let lease_ms = sh.cfg.lease_ms;
    let mut tick = ticker(sh.cfg.agent_period);
    while !sh.stop_all.load(Ordering::Relaxed) {
        tick.tick().await;
        let Some(round) = sh.begin_round(idx) else {
            continue;
        };
        let t = Instant::now();
        sh.repo.heartbeat(&worker).await?;
        lock(&sh.lat).heartbeat.record(t.elapsed());
        add(&sh.tally.heartbeats, 1);
        if !round.release.is_empty() {
            for o in sh.sched.release(&round.release).await? {
                let held = o.released.is_some();
                sh.released(o.container_id, held);
            }
        }
        if round.renew.is_empty() {
            continue;
        }
        let t = Instant::now();
        let answers = sh
            .repo
            .renew_leases(&worker, &round.renew, lease_ms)
            .await?;
        lock(&sh.lat).renew.record(t.elapsed());
        add(&sh.tally.renew_calls, 1);
        for a in answers {
            let counter = match a.outcome {
                RenewOutcome::Renewed { .. } => {
                    add(&sh.tally.renewed, 1);
                    continue;
                }
                RenewOutcome::NoLease => &sh.tally.renew_no_lease,
                RenewOutcome::Expired { .. } => &sh.tally.renew_expired,
                RenewOutcome::NotHeld => &sh.tally.renew_not_held,
            };
            add(counter, 1);
            tracing::warn!(worker = %worker, container = %a.container_id, outcome = ?a.outcome,
                "a live container's lease was not renewed");
            sh.evict(idx, &a.container_id);
        }
    }
    Ok(())
}

/// Places a burst every `burst_interval` until the workload stops; each placement gets a
/// random lifetime and dies without release with probability `die_share`.
pub(super) async fn placer(sh: Arc<Shared>, seed: u64, progress: Progress) -> Result<(), SimError> {
    let cfg = sh.cfg.clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tick = ticker(cfg.burst_interval);
    let lease = Duration::from_millis(cfg.lease_ms);
    let (lo, hi) = (
        cfg.lifetime_min.as_millis(),
        cfg.lifetime_max
            .as_millis()
            .max(cfg.lifetime_min.as_millis()),
    );
    let mut n = 0u64;
    while !sh.stop_workload.load(Ordering::Relaxed) {
        tick.tick().await;
        if sh.stop_workload.load(Ordering::Relaxed) {
            break;
        }
        let reqs: Vec<ContainerRequest> = (0..cfg.burst_size.max(1))
            .map(|_| {
                n += 1;
                ContainerRequest::new(format!("churn-{seed:x}-c{n}"), sh.container_size)
                    .with_lease(lease)
            })
            .collect();
        add(&sh.tally.requested, reqs.len() as u64);
        let t = Instant::now();
        let out = sh.sched.schedule_batch(reqs).await;
        lock(&sh.lat).place_burst.record(t.elapsed());
        for r in out {
            match r {
                Ok(p) => {
                    let life = u64::try_from(rng.random_range(lo..=hi)).unwrap_or(u64::MAX);
                    let running = Running {
                        resources: sh.container_size,
                        ends_at: Instant::now() + Duration::from_millis(life),
                        dies: rng.random_bool(cfg.die_share.clamp(0.0, 1.0)),
                    };
                    sh.adopt(p.container_id, &p.worker_id, running);
                }
                Err(e) if e.may_be_held() => {
                    // Perhaps held, by nobody who renews it: dead, for the sweep to find.
                    add(&sh.tally.ambiguous, 1);
                    sh.dead(e.container_id().to_owned(), sh.container_size);
                }
                Err(e) => {
                    add(&sh.tally.unplaced, 1);
                    tracing::debug!(error = %e, "not placed");
                }
            }
        }
        progress.inc();
    }
    Ok(())
}

/// Every `drain_period`, drains a random worker (never the crashing one) for `drain_for`, then
/// brings it back; always brings it back before returning.
pub(super) async fn drainer(sh: Arc<Shared>, seed: u64, spared: usize) -> Result<(), SimError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let candidates: Vec<usize> = (0..sh.workers.len()).filter(|&i| i != spared).collect();
    if candidates.is_empty() || sh.cfg.drain_for.is_zero() {
        return Ok(());
    }
    while nap(&sh, sh.cfg.drain_period, false).await {
        let idx = candidates[rng.random_range(0..candidates.len())];
        let Some(worker) = sh.workers.get(idx) else {
            continue;
        };
        sh.repo
            .set_worker_status(worker, WorkerStatus::Draining)
            .await?;
        add(&sh.tally.drains, 1);
        // Wake on the stop of everything only: a drained worker always comes back.
        nap(&sh, sh.cfg.drain_for, true).await;
        sh.repo
            .set_worker_status(worker, WorkerStatus::Available)
            .await?;
    }
    Ok(())
}

/// What the crash did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CrashOutcome {
    /// Seconds after the start.
    pub crashed_at: Option<f64>,
    /// Seconds after the start.
    pub back_at: Option<f64>,
    /// The comeback heartbeat found the worker stale.
    pub came_back_stale: Option<bool>,
}

/// Crashes agent `idx` at `crash_at` and brings it back `crash_for` later with a heartbeat.
pub(super) async fn crash(
    sh: Arc<Shared>,
    idx: usize,
    started: Instant,
) -> Result<CrashOutcome, SimError> {
    let mut out = CrashOutcome::default();
    let Some(worker) = sh.workers.get(idx).cloned() else {
        return Ok(out);
    };
    if sh.cfg.crash_for.is_zero() || !nap(&sh, sh.cfg.crash_at, false).await {
        return Ok(out);
    }
    sh.crash(idx);
    out.crashed_at = Some(started.elapsed().as_secs_f64());
    // Comes back even if the workload stops meanwhile, so the run ends with every agent up.
    nap(&sh, sh.cfg.crash_for, true).await;
    let hb = sh.repo.heartbeat(&worker).await?;
    sh.revive(idx);
    out.back_at = Some(started.elapsed().as_secs_f64());
    out.came_back_stale = Some(hb.was_stale);
    Ok(out)
}

/// `sweep_all` every `sweep_period` until everything stops.
pub(super) async fn sweeper(sh: Arc<Shared>) -> Result<(), SimError> {
    // Half a period out of phase with the agents, whose rounds (and so every lease deadline)
    // start together: otherwise every sweep would run just before the deadlines it could take.
    let period = sh.cfg.sweep_period.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !sh.stop_all.load(Ordering::Relaxed) {
        tick.tick().await;
        sweep_once(&sh).await?;
    }
    Ok(())
}

/// One `sweep_all`, tallied: expiries by reason, of dead or of live containers, capacity
/// returned, and how long after its deadline (store clock) each lease was swept.
pub(super) async fn sweep_once(sh: &Shared) -> Result<(), SimError> {
    let t = Instant::now();
    let sweeps = sweep_all(&*sh.repo, None).await?;
    lock(&sh.lat).sweep_round.record(t.elapsed());
    add(&sh.tally.sweep_rounds, 1);
    let tl = &sh.tally;
    for s in sweeps {
        for e in s.expired {
            let rec = &e.record;
            add(&tl.returned_cpu, rec.resources.cpu_millicores);
            add(&tl.returned_mem, rec.resources.memory_mib);
            add(&tl.returned_gpu, rec.resources.gpu_count);
            match e.reason {
                ExpiryReason::LeaseExpired => {
                    add(&tl.expired_lease, 1);
                    if let Some(deadline) = rec.lease_expires_at_ms {
                        let after = s.swept_at_ms.saturating_sub(deadline);
                        lock(&sh.lat)
                            .swept_after_deadline
                            .record(Duration::from_millis(after));
                    }
                }
                ExpiryReason::WorkerStale => add(&tl.expired_stale, 1),
            }
            match sh.fate(&rec.container_id) {
                Some(Fate::Dead { .. }) => add(&tl.expired_dead, 1),
                Some(Fate::Live { worker }) => {
                    add(&tl.expired_live, 1);
                    tracing::warn!(container = %rec.container_id, reason = ?e.reason,
                        "the sweep took a live container");
                    sh.evict(worker, &rec.container_id);
                }
                _ => add(&tl.expired_other, 1),
            }
        }
    }
    Ok(())
}
