//! `scale`: cost per placement as workers grow from 10 to 10,000 and containers from 100 to
//! 100,000 (ten containers per worker). The defaults run in well under a minute on 2 cores
//! for `sched`; the lock-based strategies are capped lower by default because their cost grows
//! with contention (`--max-containers` overrides).

use super::{ratio, RunConfig};
use crate::scenario::burst::{run_strategy, StrategyReport};
use crate::strategy::StrategyKind;
use crate::SimError;
use serde::{Deserialize, Serialize};

/// One point of the scale grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Workers.
    pub workers: usize,
    /// Containers per burst.
    pub containers: usize,
    /// Microseconds of burst time (p50) per placement.
    pub us_per_placement: f64,
    /// Round trips per placement.
    pub round_trips_per_placement: f64,
    /// The full report.
    pub report: StrategyReport,
}

/// The default grid: (10, 100), (100, 1000), (1000, 10 000), (10 000, 100 000), capped.
pub fn grid(max_workers: usize, max_containers: usize) -> Vec<(usize, usize)> {
    [(10, 100), (100, 1_000), (1_000, 10_000), (10_000, 100_000)]
        .into_iter()
        .filter(|&(w, c)| w <= max_workers && c <= max_containers)
        .collect()
}

/// Runs the grid for one strategy.
pub async fn run(
    cfg: &RunConfig,
    kind: StrategyKind,
    points: &[(usize, usize)],
) -> Result<Vec<ScalePoint>, SimError> {
    let mut out = Vec::new();
    for &(workers, containers) in points {
        let mut c = cfg.clone();
        c.workers = workers;
        c.containers = containers;
        c.yardsticks = false;
        let r = run_strategy(&c, kind).await?;
        let placed_per_burst = r.placed as f64 / f64::from(r.bursts.max(1));
        out.push(ScalePoint {
            workers,
            containers,
            us_per_placement: ratio(r.burst_time.p50_ms * 1000.0, placed_per_burst),
            round_trips_per_placement: ratio(r.per_burst.round_trips, placed_per_burst),
            report: r,
        });
    }
    Ok(out)
}
