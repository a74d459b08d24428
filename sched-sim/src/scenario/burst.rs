//! `burst`: the original scenario. Every strategy places `--repeat` bursts of `--containers`
//! CPU-only containers (each a separate call from its own task) onto a fresh set of
//! `--workers` workers; after each burst the store is audited and the burst released.

use super::{ratio, requests, RunConfig};
use crate::audit::{audit, AuditSummary};
use crate::backend::Env;
use crate::floor::{self, Floors};
use crate::hist::{Recorder, Summary};
use crate::metered::Calls;
use crate::progress::Progress;
use crate::strategy::{self, CallMode, StrategyKind, StrategyStats};
use crate::SimError;
use sched_core::affinity::AffinityMode;
use sched_core::Placement;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// Backend traffic per burst (means over the bursts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerBurst {
    /// Calls to the store (each one round trip).
    pub round_trips: f64,
    /// Round trips counted by the backend itself (pipelines count once), when it reports them.
    pub backend_round_trips: Option<f64>,
    /// `get_worker` / `list_workers` calls.
    pub reads: f64,
    /// `reserve_batch` calls.
    pub reserve_calls: f64,
    /// Per-worker atomic sections (worker parts of `reserve_batch` calls).
    pub atomic_sections: f64,
    /// `try_lock` calls.
    pub lock_calls: f64,
    /// `unlock` calls.
    pub unlock_calls: f64,
}

/// Everything measured for one strategy in one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyReport {
    /// Which strategy.
    pub strategy: StrategyKind,
    /// Which backend.
    pub backend: String,
    /// Affinity mode (meaningful for `sched`; `seed` always rotates, `naive` never spreads).
    pub affinity: AffinityMode,
    /// Workers.
    pub workers: usize,
    /// Containers per burst.
    pub containers: usize,
    /// Concurrent callers per burst.
    pub concurrency: usize,
    /// How the burst reached `sched` (`each`: a call per container; `batch`: one call).
    #[serde(default)]
    pub calls: CallMode,
    /// Bursts measured (after one unmeasured cold burst).
    pub bursts: u32,
    /// Injected round-trip time.
    pub rtt_ms: f64,
    /// Containers requested over all bursts, the cold one included.
    pub requested: u64,
    /// Containers placed over all bursts.
    pub placed: u64,
    /// The worst burst's placements.
    pub min_placed_per_burst: u64,
    /// Burst wall time, percentiles over the bursts.
    pub burst_time: Summary,
    /// The first (cold-cache) burst's time.
    pub first_burst_ms: f64,
    /// One bare backend round trip (`PING` / `SELECT 1` / a memory read), same run.
    pub round_trip: Summary,
    /// The same commit sent raw: the last measured burst's `reserve_batch` wire commands as one
    /// pipeline on a bare redis-rs connection (single-node Redis only).
    pub raw_commit: Option<Summary>,
    /// The floor: `raw_commit` when measured, else `round_trip`.
    pub floor: Summary,
    /// What `floor` is: `raw_commit` or `round_trip`.
    pub floor_kind: String,
    /// Burst p50 as a multiple of the floor p50.
    pub burst_p50_over_floor: f64,
    /// Burst p50 as a multiple of the bare round trip p50.
    pub burst_p50_over_round_trip: f64,
    /// The beta9-style peer's burst (single-node Redis only).
    pub peer: Option<Summary>,
    /// Burst p50 as a multiple of the peer's p50.
    pub burst_p50_over_peer: Option<f64>,
    /// The callers alone: the burst's tasks spawned, released and joined with no work
    /// (`--calls each`).
    #[serde(default)]
    pub callers: Option<Summary>,
    /// Burst p50 as a multiple of (floor p50 + callers p50): what the scheduler adds beyond the
    /// store's floor and the caller tasks the scenario itself spawns.
    #[serde(default)]
    pub burst_p50_over_floor_and_callers: Option<f64>,
    /// Why a yardstick is missing on this backend.
    pub notes: Vec<String>,
    /// Backend traffic per burst.
    pub per_burst: PerBurst,
    /// Conflicts per placement.
    pub conflicts_per_placement: f64,
    /// Retries per placement.
    pub retries_per_placement: f64,
    /// Failed `try_lock` calls per placement.
    pub lock_failures_per_placement: f64,
    /// Read-cache hit rate (0 for `naive`, which has no cache).
    pub cache_hit_rate: f64,
    /// Placements per worker in the last burst, in worker-id order.
    pub placements_per_worker: Vec<u64>,
    /// Max over mean placements per worker, averaged over the bursts (1.0 is perfectly even).
    pub max_over_mean: f64,
    /// Audit totals over all bursts, the cold one included.
    pub audit: AuditSummary,
    /// The first few placement failures.
    pub failures: Vec<String>,
}

/// Max over mean of `counts` (0 when empty or nothing placed).
pub fn max_over_mean(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if counts.is_empty() || total == 0 {
        return 0.0;
    }
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}

/// Per-worker counts of `placements`, in `worker_ids` order.
pub fn per_worker(worker_ids: &[String], placements: &[Placement]) -> Vec<u64> {
    let mut m: HashMap<&str, u64> = HashMap::new();
    for p in placements {
        *m.entry(p.worker_id.as_str()).or_default() += 1;
    }
    worker_ids
        .iter()
        .map(|w| m.get(w.as_str()).copied().unwrap_or(0))
        .collect()
}

/// Raw totals of a series of bursts, before they are turned into a [`StrategyReport`].
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Burst times.
    pub times: Recorder,
    /// First burst time, ms.
    pub first_ms: f64,
    /// Bursts.
    pub bursts: u32,
    /// Requested.
    pub requested: u64,
    /// Placed.
    pub placed: u64,
    /// Worst burst.
    pub min_placed: u64,
    /// Metered calls.
    pub calls: Calls,
    /// Backend round trips, when known.
    pub backend_round_trips: Option<u64>,
    /// Strategy counters.
    pub stats: StrategyStats,
    /// Sum of per-burst max/mean.
    pub spread_sum: f64,
    /// Last burst's distribution.
    pub last_per_worker: Vec<u64>,
    /// Audit totals.
    pub audit: AuditSummary,
    /// First few failures.
    pub failures: Vec<String>,
    /// The last measured burst's placements (for the raw commit).
    pub last_placements: Vec<Placement>,
}

/// Runs `cfg.repeat` bursts of `kind` on `env` (already holding the workers).
pub async fn run_on(
    env: &Env,
    cfg: &RunConfig,
    kind: StrategyKind,
    tag: &str,
    progress: &Progress,
) -> Result<Totals, SimError> {
    let strat = strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy)?;
    let conc = cfg.effective_concurrency();
    let mut t = Totals {
        min_placed: u64::MAX,
        ..Totals::default()
    };
    // Burst 0 is the cold one (empty cache, fresh connections): reported on its own as
    // `first_burst_ms`, then `cfg.repeat` measured bursts.
    for b in 0..=cfg.repeat {
        let reqs = requests(tag, b, cfg.containers, cfg.container_size);
        let calls0 = env.calls.snapshot();
        let rt0 = env.backend_round_trips();
        let stats0 = strat.stats();
        let started = Instant::now();
        let results = strat.place_burst(reqs, conc).await;
        let took = started.elapsed();
        if b == 0 {
            t.first_ms = took.as_secs_f64() * 1000.0;
        } else {
            t.calls = t.calls.plus(&env.calls.snapshot().since(&calls0));
            if let (Some(a), Some(b)) = (rt0, env.backend_round_trips()) {
                *t.backend_round_trips.get_or_insert(0) += b.saturating_sub(a);
            }
            t.stats = t.stats.plus(&strat.stats().since(&stats0));
            t.times.record(took);
        }
        let mut placements = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(p) => placements.push(p),
                Err(e) => {
                    if t.failures.len() < 5 {
                        t.failures.push(e.to_string());
                    }
                }
            }
        }
        let placed = placements.len() as u64;
        t.requested += cfg.containers as u64;
        t.placed += placed;
        t.min_placed = t.min_placed.min(placed);
        let counts = per_worker(&env.worker_ids, &placements);
        if b > 0 {
            t.bursts += 1;
            t.spread_sum += max_over_mean(&counts);
        }
        t.last_per_worker = counts;
        t.audit = t
            .audit
            .plus(&audit(&*env.raw, &env.worker_ids, &placements).await?);
        let ids: Vec<String> = placements.iter().map(|p| p.container_id.clone()).collect();
        strat.release(&ids).await?;
        t.last_placements = placements;
        progress.inc();
    }
    if t.min_placed == u64::MAX {
        t.min_placed = 0;
    }
    Ok(t)
}

/// Turns totals into a report.
pub fn report(
    env: &Env,
    cfg: &RunConfig,
    kind: StrategyKind,
    t: &Totals,
    floors: Floors,
) -> StrategyReport {
    let n = f64::from(t.bursts.max(1));
    let placed = t.placed.max(1) as f64;
    let burst_time = t.times.summary();
    let (floor, floor_kind) = match floors.raw_commit {
        Some(r) => (r, "raw_commit"),
        None => (floors.round_trip, "round_trip"),
    };
    StrategyReport {
        strategy: kind,
        backend: env.kind.as_str().to_owned(),
        affinity: match kind {
            StrategyKind::Naive => AffinityMode::Off,
            StrategyKind::Seed => AffinityMode::Rotate,
            StrategyKind::Sched => cfg.strategy.affinity,
            StrategyKind::Peer => AffinityMode::Off,
        },
        workers: env.worker_ids.len(),
        containers: cfg.containers,
        concurrency: cfg.effective_concurrency(),
        calls: cfg.strategy.calls,
        bursts: t.bursts,
        rtt_ms: env.rtt.as_secs_f64() * 1000.0,
        requested: t.requested,
        placed: t.placed,
        min_placed_per_burst: t.min_placed,
        burst_time,
        first_burst_ms: t.first_ms,
        round_trip: floors.round_trip,
        raw_commit: floors.raw_commit,
        floor,
        floor_kind: floor_kind.into(),
        burst_p50_over_floor: ratio(burst_time.p50_ms, floor.p50_ms),
        burst_p50_over_round_trip: ratio(burst_time.p50_ms, floors.round_trip.p50_ms),
        peer: floors.peer,
        burst_p50_over_peer: floors.peer.map(|p| ratio(burst_time.p50_ms, p.p50_ms)),
        callers: floors.callers,
        burst_p50_over_floor_and_callers: floors
            .callers
            .map(|c| ratio(burst_time.p50_ms, floor.p50_ms + c.p50_ms)),
        notes: floors.notes,
        per_burst: PerBurst {
            round_trips: t.calls.round_trips as f64 / n,
            backend_round_trips: t.backend_round_trips.map(|r| r as f64 / n),
            reads: t.calls.reads as f64 / n,
            reserve_calls: t.calls.reserve_calls as f64 / n,
            atomic_sections: t.calls.atomic_sections as f64 / n,
            lock_calls: t.calls.lock_calls as f64 / n,
            unlock_calls: t.calls.unlock_calls as f64 / n,
        },
        conflicts_per_placement: t.stats.conflicts as f64 / placed,
        retries_per_placement: t.stats.retries as f64 / placed,
        lock_failures_per_placement: t.stats.lock_failures as f64 / placed,
        cache_hit_rate: t.stats.cache_hit_rate(),
        placements_per_worker: t.last_per_worker.clone(),
        max_over_mean: t.spread_sum / n,
        audit: t.audit,
        failures: t.failures.clone(),
    }
}

/// Runs one strategy on a fresh worker set: floor, bursts, audit, cleanup.
pub async fn run_strategy(cfg: &RunConfig, kind: StrategyKind) -> Result<StrategyReport, SimError> {
    let env = Env::open(&cfg.backend, &cfg.worker_setup()).await?;
    let floor = env.floor(50).await?;
    let progress = Progress::new(
        u64::from(cfg.repeat) + 1,
        format!("{kind} bursts"),
        cfg.quiet,
    );
    let tag = format!("c{:x}", cfg.seed);
    let totals = run_on(&env, cfg, kind, &tag, &progress).await;
    progress.finish();
    let out = match totals {
        Ok(t) => floor::beside(&env, cfg, &t.last_placements, floor)
            .await
            .map(|f| report(&env, cfg, kind, &t, f)),
        Err(e) => Err(e),
    };
    env.cleanup().await?;
    out
}

/// `a / b` for the headline figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Burst p50.
    pub burst_p50: f64,
    /// Burst p99.
    pub burst_p99: f64,
    /// Round trips per burst.
    pub round_trips: f64,
    /// Atomic sections (per-worker commits) per burst.
    pub atomic_sections: f64,
}

impl Ratios {
    /// `a / b`.
    pub fn between(a: &StrategyReport, b: &StrategyReport) -> Ratios {
        Ratios {
            burst_p50: ratio(a.burst_time.p50_ms, b.burst_time.p50_ms),
            burst_p99: ratio(a.burst_time.p99_ms, b.burst_time.p99_ms),
            round_trips: ratio(a.per_burst.round_trips, b.per_burst.round_trips),
            atomic_sections: ratio(a.per_burst.atomic_sections, b.per_burst.atomic_sections),
        }
    }
}

/// Spreading of one affinity variant of `sched`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AffinityRow {
    /// The variant.
    pub affinity: AffinityMode,
    /// Max over mean placements per worker.
    pub max_over_mean: f64,
    /// Burst p50.
    pub burst_p50_ms: f64,
    /// Audit violations (must be 0).
    pub violations: u64,
}

/// `--compare`: the three strategies side by side, plus sched's affinity variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// One report per strategy, naive, seed, sched.
    pub runs: Vec<StrategyReport>,
    /// naive / sched.
    pub naive_over_sched: Option<Ratios>,
    /// seed / sched.
    pub seed_over_sched: Option<Ratios>,
    /// sched with each affinity variant.
    pub affinity: Vec<AffinityRow>,
}

impl CompareReport {
    /// The report of one strategy.
    pub fn get(&self, kind: StrategyKind) -> Option<&StrategyReport> {
        self.runs.iter().find(|r| r.strategy == kind)
    }

    /// True when every run placed everything and every audit is clean.
    pub fn all_clean(&self) -> bool {
        self.runs
            .iter()
            .all(|r| r.audit.is_clean() && r.placed == r.requested)
            && self.affinity.iter().all(|a| a.violations == 0)
    }
}

/// Builds the ratios of a set of runs.
pub fn compare_runs(runs: Vec<StrategyReport>, affinity: Vec<AffinityRow>) -> CompareReport {
    let find = |k| runs.iter().find(|r: &&StrategyReport| r.strategy == k);
    let sched = find(StrategyKind::Sched);
    let naive_over_sched = find(StrategyKind::Naive)
        .zip(sched)
        .map(|(a, b)| Ratios::between(a, b));
    let seed_over_sched = find(StrategyKind::Seed)
        .zip(sched)
        .map(|(a, b)| Ratios::between(a, b));
    CompareReport {
        runs,
        naive_over_sched,
        seed_over_sched,
        affinity,
    }
}

/// Runs `sched` with each affinity variant (`bursts` bursts each) and reports the spreading.
pub async fn affinity_rows(cfg: &RunConfig, bursts: u32) -> Result<Vec<AffinityRow>, SimError> {
    let mut rows = Vec::new();
    for affinity in [
        AffinityMode::Off,
        AffinityMode::Rotate,
        AffinityMode::Rendezvous,
        AffinityMode::Balanced,
    ] {
        let mut c = cfg.clone();
        c.strategy.affinity = affinity;
        c.repeat = bursts.max(1);
        c.yardsticks = false;
        let r = run_strategy(&c, StrategyKind::Sched).await?;
        rows.push(AffinityRow {
            affinity,
            max_over_mean: r.max_over_mean,
            burst_p50_ms: r.burst_time.p50_ms,
            violations: r.audit.violations() + (r.requested - r.placed.min(r.requested)),
        });
    }
    Ok(rows)
}

/// `--compare`: all three strategies on fresh worker sets, then the affinity variants.
pub async fn compare(cfg: &RunConfig) -> Result<CompareReport, SimError> {
    let mut runs = Vec::new();
    for kind in StrategyKind::ALL {
        runs.push(run_strategy(cfg, kind).await?);
    }
    let affinity = affinity_rows(cfg, cfg.repeat.min(5)).await?;
    Ok(compare_runs(runs, affinity))
}

/// One point of a `--sweep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Workers at this point.
    pub workers: usize,
    /// One report per strategy run.
    pub runs: Vec<StrategyReport>,
}

/// `--sweep`: the burst over a range of worker counts.
pub async fn sweep(
    cfg: &RunConfig,
    kinds: &[StrategyKind],
    workers: impl IntoIterator<Item = usize>,
) -> Result<Vec<SweepPoint>, SimError> {
    let mut out = Vec::new();
    for w in workers {
        let mut c = cfg.clone();
        c.workers = w;
        let mut runs = Vec::new();
        for &k in kinds {
            runs.push(run_strategy(&c, k).await?);
        }
        out.push(SweepPoint { workers: w, runs });
    }
    Ok(out)
}
