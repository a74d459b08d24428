//! `sustained`: placements per second over `--duration-secs` with `--schedulers` concurrent
//! scheduler instances (each with its own cache) on one backend. Each instance places bursts
//! of `--burst-size` containers back to back, as long as it holds less than its share of
//! `--load` × the workers' capacity (a closed loop: with the default load below 1 every burst
//! fits, so the run measures placements, not rejections); every placed container is released
//! after `--lifetime-ms`. At the end, once every container is released, the audit expects
//! empty ledgers and zero drift.
//!
//! Each failed container is either *rejected for capacity* (the store had no room: its
//! [`PlaceError`](crate::strategy::PlaceError) is of kind
//! [`Capacity`](crate::strategy::PlaceErrorKind::Capacity)) or an *error*. A rejection counts as justified only when the containers held at that moment,
//! plus what the other instances may have had in flight, reached the capacity; the run is OK
//! only with no errors and no unjustified rejection (see [`SustainedReport::is_ok`]).

use super::{requests, RunConfig};
use crate::audit::{audit, AuditSummary};
use crate::backend::Env;
use crate::hist::{Recorder, Summary};
use crate::strategy::{self, CallMode, StrategyKind, StrategyStats};
use crate::SimError;
use sched_core::Resources;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sustained-load settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SustainedConfig {
    /// How long to keep placing.
    pub duration: Duration,
    /// Concurrent scheduler instances.
    pub schedulers: usize,
    /// Containers per burst.
    pub burst_size: usize,
    /// How long a container runs before it is released.
    pub lifetime: Duration,
    /// Demand as a share of the capacity: the instances together hold at most this share of
    /// the containers the workers can take (above 1.0, the run asks for more than there is).
    pub load: f64,
}

impl Default for SustainedConfig {
    fn default() -> Self {
        SustainedConfig {
            duration: Duration::from_secs(5),
            schedulers: 4,
            burst_size: 10,
            lifetime: Duration::from_millis(20),
            load: 0.8,
        }
    }
}

/// How many containers of `size` the workers can hold together (the smallest over the
/// resources a container asks for).
pub fn capacity_slots(workers: usize, capacity: Resources, size: Resources) -> u64 {
    let fit = |have: u64, want: u64| have.checked_div(want).unwrap_or(u64::MAX);
    let per = fit(capacity.cpu_millicores, size.cpu_millicores)
        .min(fit(capacity.memory_mib, size.memory_mib))
        .min(fit(capacity.gpu_count, size.gpu_count));
    let per = if per == u64::MAX { 0 } else { per };
    per.saturating_mul(workers as u64)
}

/// What one strategy sustained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SustainedReport {
    /// Which strategy.
    pub strategy: StrategyKind,
    /// Which backend.
    pub backend: String,
    /// Scheduler instances.
    pub schedulers: usize,
    /// Containers per burst.
    pub burst_size: usize,
    /// How each burst reached `sched` (`each`: a call per container; `batch`: one call).
    #[serde(default)]
    pub calls: CallMode,
    /// Injected round-trip time.
    pub rtt_ms: f64,
    /// Measured duration.
    pub seconds: f64,
    /// Containers the workers can hold at once.
    pub capacity_slots: u64,
    /// Containers the instances may hold at once together (`--load` × capacity).
    pub demand_slots: u64,
    /// Containers placed.
    pub placed: u64,
    /// Containers rejected for capacity while the capacity was (nearly) all held.
    pub rejected_at_capacity: u64,
    /// Containers rejected for capacity although the capacity was not exhausted.
    pub rejected_below_capacity: u64,
    /// Containers that failed otherwise (backend errors, retries exhausted on conflicts...).
    pub errors: u64,
    /// The first few failure messages.
    pub failures: Vec<String>,
    /// Placements per second.
    pub placements_per_sec: f64,
    /// Burst latency.
    pub burst_latency: Summary,
    /// Round trips per placement.
    pub round_trips_per_placement: f64,
    /// Conflicts per placement.
    pub conflicts_per_placement: f64,
    /// Retries per placement.
    pub retries_per_placement: f64,
    /// Containers placed twice over the whole run (must be 0).
    pub duplicate_placements: u64,
    /// Final audit after every release (must be clean with no ledger entries).
    pub audit: AuditSummary,
    /// [`is_ok`](Self::is_ok), for JSON readers.
    pub ok: bool,
}

impl SustainedReport {
    /// OK when what was placeable was placed: something was placed, no errors, no rejection
    /// while capacity remained, no duplicates, and a clean final audit with empty ledgers.
    pub fn is_ok(&self) -> bool {
        self.placed > 0
            && self.errors == 0
            && self.rejected_below_capacity == 0
            && self.duplicate_placements == 0
            && self.audit.is_clean()
            && self.audit.ledger_entries == 0
    }

    /// The count of things that make the run not OK (0 when OK).
    pub fn problems(&self) -> u64 {
        self.errors
            + self.rejected_below_capacity
            + self.duplicate_placements
            + self.audit.violations()
            + self.audit.ledger_entries
            + u64::from(self.placed == 0)
    }
}

/// One instance's tallies.
#[derive(Debug, Default)]
struct Tally {
    lat: Recorder,
    /// Containers placed.
    placed: u64,
    /// Their ids, handed back by the release tasks (for the duplicate check, after the run).
    ids: Vec<String>,
    at_capacity: u64,
    below_capacity: u64,
    errors: u64,
    failures: Vec<String>,
}

/// Runs the sustained scenario for one strategy.
pub async fn run(
    cfg: &RunConfig,
    s: &SustainedConfig,
    kind: StrategyKind,
) -> Result<SustainedReport, SimError> {
    let env = Env::open(&cfg.backend, &cfg.worker_setup()).await?;
    let out = run_in(&env, cfg, s, kind).await;
    env.cleanup().await?;
    out
}

async fn run_in(
    env: &Env,
    cfg: &RunConfig,
    s: &SustainedConfig,
    kind: StrategyKind,
) -> Result<SustainedReport, SimError> {
    let instances = s.schedulers.max(1);
    let slots = capacity_slots(cfg.workers, cfg.worker_capacity, cfg.container_size);
    let demand = ((slots as f64) * s.load.max(0.0)).floor() as u64;
    let share = (demand / instances as u64).max(1);
    let burst_size = s
        .burst_size
        .max(1)
        .min(usize::try_from(share).unwrap_or(usize::MAX));
    // Containers possibly in flight in other instances' bursts when one is rejected.
    let slack = (burst_size as u64).saturating_mul(instances as u64);
    let held = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + s.duration;
    let calls0 = env.calls.snapshot();
    let mut tasks = Vec::new();
    for k in 0..instances {
        let strat = strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy)?;
        let tag = format!("s{:x}-n{instances}-i{k}", cfg.seed);
        let (lifetime, size) = (s.lifetime, cfg.container_size);
        let permits = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(share).unwrap_or(usize::MAX),
        ));
        let held = Arc::clone(&held);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut releases = Vec::new();
            let mut b = 0u32;
            let n = u32::try_from(burst_size).unwrap_or(u32::MAX);
            while Instant::now() < until {
                // Wait for this instance's share to have room for a burst (released containers
                // give their permits back).
                let Ok(permit) = Arc::clone(&permits).acquire_many_owned(n).await else {
                    break;
                };
                let reqs = requests(&tag, b, burst_size, size);
                b += 1;
                let held_before = held.load(Ordering::Relaxed);
                let start = Instant::now();
                let out = strat.place_burst(reqs, burst_size).await;
                t.lat.record(start.elapsed());
                // A rejection may come from the store while full and the count drop before we
                // read it (releases run meanwhile): the burst saw the larger of the two.
                let held_now = held.load(Ordering::Relaxed).max(held_before);
                let mut ids = Vec::new();
                for r in out {
                    match r {
                        Ok(p) => ids.push(p.container_id),
                        Err(e) => {
                            if !e.is_capacity() {
                                t.errors += 1;
                            } else if held_now + slack >= slots {
                                t.at_capacity += 1;
                                continue;
                            } else {
                                t.below_capacity += 1;
                            }
                            if t.failures.len() < 3 {
                                t.failures.push(e.to_string());
                            }
                        }
                    }
                }
                held.fetch_add(ids.len() as u64, Ordering::Relaxed);
                t.placed += ids.len() as u64;
                // Permits of failed containers come back now, the rest after release.
                let mut permit = permit;
                drop(permit.split(burst_size - ids.len()));
                let st = Arc::clone(&strat);
                let held = Arc::clone(&held);
                releases.push(tokio::spawn(async move {
                    tokio::time::sleep(lifetime).await;
                    let r = st.release(&ids).await;
                    held.fetch_sub(ids.len() as u64, Ordering::Relaxed);
                    drop(permit);
                    // The ids come back for the duplicate check: no copy per placement.
                    (r, ids)
                }));
            }
            let placing_ended = Instant::now();
            for r in releases {
                match r.await {
                    Ok((r, ids)) => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "release failed");
                            t.errors += 1;
                        }
                        t.ids.extend(ids);
                    }
                    Err(e) => {
                        // Its ids are lost to the duplicate check; the error fails the run.
                        tracing::warn!(error = %e, "release task failed");
                        t.errors += 1;
                    }
                }
            }
            (t, strat.stats(), placing_ended)
        }));
    }
    let mut lat = Recorder::new();
    let mut all = Vec::new();
    let mut placed = 0u64;
    let (mut at_cap, mut below, mut errors) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut stats = StrategyStats::default();
    let mut end = started;
    for task in tasks {
        let (t, st, e) = task
            .await
            .map_err(|e| SimError::Config(format!("scheduler task failed: {e}")))?;
        lat.merge(&t.lat);
        all.extend(t.ids);
        placed += t.placed;
        at_cap += t.at_capacity;
        below += t.below_capacity;
        errors += t.errors;
        for f in t.failures {
            if failures.len() < 5 {
                failures.push(f);
            }
        }
        stats = stats.plus(&st);
        end = end.max(e);
    }
    let calls = env.calls.snapshot().since(&calls0);
    let seconds = end.duration_since(started).as_secs_f64();
    let mut seen = HashSet::new();
    let duplicate_placements = all.iter().filter(|c| !seen.insert(c.as_str())).count() as u64;
    let audit = audit(&*env.raw, &env.worker_ids, &[]).await?;
    let per = placed.max(1) as f64;
    let mut report = SustainedReport {
        strategy: kind,
        backend: env.kind.as_str().into(),
        schedulers: instances,
        burst_size,
        calls: cfg.strategy.calls,
        rtt_ms: env.rtt.as_secs_f64() * 1000.0,
        seconds,
        capacity_slots: slots,
        demand_slots: share.saturating_mul(instances as u64),
        placed,
        rejected_at_capacity: at_cap,
        rejected_below_capacity: below,
        errors,
        failures,
        placements_per_sec: if seconds > 0.0 {
            placed as f64 / seconds
        } else {
            0.0
        },
        burst_latency: lat.summary(),
        round_trips_per_placement: calls.round_trips as f64 / per,
        conflicts_per_placement: stats.conflicts as f64 / per,
        retries_per_placement: stats.retries as f64 / per,
        duplicate_placements,
        audit,
        ok: false,
    };
    report.ok = report.is_ok();
    Ok(report)
}
