//! `sustained`: placements per second over `--duration-secs` with `--schedulers` concurrent
//! scheduler instances (each with its own cache) on one backend. Each instance places bursts
//! of `--burst-size` containers back to back; every placed container is released after
//! `--lifetime-ms`, so capacity keeps turning over. At the end, once every container is
//! released, the audit expects empty ledgers and zero drift.

use super::{requests, RunConfig};
use crate::audit::{audit, AuditSummary};
use crate::backend::Env;
use crate::hist::{Recorder, Summary};
use crate::strategy::{self, StrategyKind, StrategyStats};
use crate::SimError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Sustained-load settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SustainedConfig {
    /// How long to keep placing.
    pub duration: Duration,
    /// Concurrent scheduler instances.
    pub schedulers: usize,
    /// Containers per burst.
    pub burst_size: usize,
    /// How long a container runs before it is released.
    pub lifetime: Duration,
}

impl Default for SustainedConfig {
    fn default() -> Self {
        SustainedConfig {
            duration: Duration::from_secs(5),
            schedulers: 4,
            burst_size: 10,
            lifetime: Duration::from_millis(200),
        }
    }
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
    /// Injected round-trip time.
    pub rtt_ms: f64,
    /// Measured duration.
    pub seconds: f64,
    /// Containers placed.
    pub placed: u64,
    /// Containers not placed (no capacity at that moment, or gave up).
    pub failed: u64,
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
}

/// Runs the sustained scenario for one strategy.
pub async fn run(
    cfg: &RunConfig,
    s: &SustainedConfig,
    kind: StrategyKind,
) -> Result<SustainedReport, SimError> {
    let env = Env::open(&cfg.backend, &cfg.worker_setup()).await?;
    let started = Instant::now();
    let until = started + s.duration;
    let calls0 = env.calls.snapshot();
    let mut tasks = Vec::new();
    for k in 0..s.schedulers.max(1) {
        let strat = strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy);
        let tag = format!("s{:x}-i{k}", cfg.seed);
        let (burst_size, lifetime, size) = (s.burst_size.max(1), s.lifetime, cfg.container_size);
        tasks.push(tokio::spawn(async move {
            let mut lat = Recorder::new();
            let mut placed = Vec::new();
            let mut failed = 0u64;
            let mut releases = Vec::new();
            let mut b = 0u32;
            while Instant::now() < until {
                let reqs = requests(&tag, b, burst_size, size);
                b += 1;
                let t = Instant::now();
                let out = strat.place_burst(reqs, burst_size).await;
                lat.record(t.elapsed());
                let mut ids = Vec::new();
                for r in out {
                    match r {
                        Ok(p) => {
                            ids.push(p.container_id.clone());
                            placed.push(p.container_id);
                        }
                        Err(_) => failed += 1,
                    }
                }
                let st = std::sync::Arc::clone(&strat);
                releases.push(tokio::spawn(async move {
                    tokio::time::sleep(lifetime).await;
                    st.release(&ids).await
                }));
            }
            let elapsed_placing = Instant::now();
            for r in releases {
                if let Ok(Err(e)) = r.await {
                    tracing::warn!(error = %e, "release failed");
                }
            }
            (lat, placed, failed, strat.stats(), elapsed_placing)
        }));
    }
    let mut lat = Recorder::new();
    let mut all = Vec::new();
    let mut failed = 0;
    let mut stats = StrategyStats::default();
    let mut end = started;
    for t in tasks {
        let (l, p, f, st, e) = t
            .await
            .map_err(|e| SimError::Config(format!("scheduler task failed: {e}")))?;
        lat.merge(&l);
        all.extend(p);
        failed += f;
        stats = stats.plus(&st);
        end = end.max(e);
    }
    let calls = env.calls.snapshot().since(&calls0);
    let seconds = end.duration_since(started).as_secs_f64();
    let mut seen = HashSet::new();
    let duplicate_placements = all.iter().filter(|c| !seen.insert(c.as_str())).count() as u64;
    let audit = audit(&*env.raw, &env.worker_ids, &[]).await?;
    let placed = all.len() as u64;
    let per = placed.max(1) as f64;
    let report = SustainedReport {
        strategy: kind,
        backend: env.kind.as_str().into(),
        schedulers: s.schedulers.max(1),
        burst_size: s.burst_size.max(1),
        rtt_ms: env.rtt.as_secs_f64() * 1000.0,
        seconds,
        placed,
        failed,
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
    };
    env.cleanup().await?;
    Ok(report)
}
