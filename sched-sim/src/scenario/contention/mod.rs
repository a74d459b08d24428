//! `contention`: `--instances` scheduler instances on one backend, each with its own cache and
//! its own share of every burst, either as tasks in this process or as separate OS processes
//! (this binary re-executing itself with the hidden `worker` subcommand). Processes need a
//! store they can share, so `--processes` requires a Redis or Postgres backend.
//!
//! `mod.rs` holds the report, the tasks mode and the tally both modes share; `processes.rs` the
//! processes mode (the parent's rounds and the `worker` child's side).

mod processes;

pub use processes::{
    run_processes, run_worker, shared_requests, ProcessFaults, WorkerJob, WorkerOutput, WorkerReply,
};

use super::{ratio, requests, RunConfig};
use crate::audit::{audit, AuditSummary};
use crate::backend::Env;
use crate::hist::{Recorder, Summary};
use crate::metered::Calls;
use crate::scenario::burst::{max_over_mean, per_worker};
use crate::strategy::{self, StrategyKind, StrategyStats};
use crate::SimError;
use sched_core::Placement;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How the instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Tokio tasks in this process.
    Tasks,
    /// Separate OS processes.
    Processes,
}

/// What K instances did together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentionReport {
    /// Which strategy.
    pub strategy: StrategyKind,
    /// Which backend.
    pub backend: String,
    /// Tasks or processes.
    pub mode: Mode,
    /// Scheduler instances.
    pub instances: usize,
    /// Containers per round (split across the instances).
    pub containers: usize,
    /// Rounds.
    pub rounds: u32,
    /// Injected round-trip time.
    pub rtt_ms: f64,
    /// Wall time of a round: from the first instance starting to place to the last one done
    /// (process start-up and connecting are outside it).
    pub round_time: Summary,
    /// Requested over all rounds.
    pub requested: u64,
    /// Placed over all rounds.
    pub placed: u64,
    /// Conflicts per placement.
    pub conflicts_per_placement: f64,
    /// Retries per placement.
    pub retries_per_placement: f64,
    /// Round trips per round (metered calls; in processes mode summed over the children).
    pub round_trips_per_round: f64,
    /// Atomic sections per round.
    pub atomic_sections_per_round: f64,
    /// Max over mean placements per worker, averaged over rounds.
    pub max_over_mean: f64,
    /// Audit totals (must be clean).
    pub audit: AuditSummary,
    /// Size of the shared id pool every instance raced for (0 = disjoint shares).
    pub shared_ids: usize,
    /// Instances killed mid-round (`--kill-one`).
    pub crashed_instances: u64,
    /// Reservations committed by killed instances: handed off through the ledgers, not leaked.
    pub crash_handoffs: u64,
}

/// Runs the contention scenario in tasks mode.
pub async fn run_tasks(
    cfg: &RunConfig,
    kind: StrategyKind,
    instances: usize,
) -> Result<ContentionReport, SimError> {
    let env = Env::open(&cfg.backend, &cfg.worker_setup()).await?;
    let k = instances.max(1);
    let strats = (0..k)
        .map(|_| strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy))
        .collect::<Result<Vec<_>, _>>()?;
    let share = cfg.containers.div_ceil(k);
    let conc = cfg.effective_concurrency().div_ceil(k).max(1);
    let mut times = Recorder::new();
    let mut audit_sum = AuditSummary::default();
    let (mut requested, mut placed, mut spread) = (0u64, 0u64, 0.0);
    let calls0 = env.calls.snapshot();
    let stats0: Vec<StrategyStats> = strats.iter().map(|s| s.stats()).collect();
    for round in 0..cfg.repeat {
        let t = Instant::now();
        let futs = strats.iter().enumerate().map(|(i, s)| {
            let n = share.min(cfg.containers.saturating_sub(i * share));
            let reqs = requests(
                &format!("k{:x}-i{i}", cfg.seed),
                round,
                n,
                cfg.container_size,
            );
            requested += n as u64;
            s.place_burst(reqs, conc)
        });
        let outs = futures::future::join_all(futs).await;
        times.record(t.elapsed());
        let placements: Vec<Placement> =
            outs.into_iter().flatten().filter_map(Result::ok).collect();
        placed += placements.len() as u64;
        spread += max_over_mean(&per_worker(&env.worker_ids, &placements));
        audit_sum = audit_sum.plus(&audit(&*env.raw, &env.worker_ids, &placements).await?);
        let ids: Vec<String> = placements.into_iter().map(|p| p.container_id).collect();
        for chunk in ids.chunks(sched_core::validate::MAX_BATCH) {
            env.raw.release_batch(chunk).await?;
        }
    }
    let calls = env.calls.snapshot().since(&calls0);
    let stats = strats
        .iter()
        .zip(&stats0)
        .fold(StrategyStats::default(), |acc, (s, s0)| {
            acc.plus(&s.stats().since(s0))
        });
    let report = Tally {
        times,
        audit: audit_sum,
        requested,
        placed,
        spread,
        stats,
        calls,
    }
    .into_report(cfg, &env, kind, Mode::Tasks, k);
    env.cleanup().await?;
    Ok(report)
}

/// What a contention run accumulated over its rounds, in either mode.
struct Tally {
    times: Recorder,
    audit: AuditSummary,
    requested: u64,
    placed: u64,
    spread: f64,
    stats: StrategyStats,
    calls: Calls,
}

impl Tally {
    fn into_report(
        self,
        cfg: &RunConfig,
        env: &Env,
        kind: StrategyKind,
        mode: Mode,
        instances: usize,
    ) -> ContentionReport {
        let rounds = f64::from(cfg.repeat.max(1));
        let placed = self.placed as f64;
        ContentionReport {
            strategy: kind,
            backend: env.kind.as_str().into(),
            mode,
            instances,
            containers: cfg.containers,
            rounds: cfg.repeat,
            rtt_ms: env.rtt.as_secs_f64() * 1000.0,
            round_time: self.times.summary(),
            requested: self.requested,
            placed: self.placed,
            conflicts_per_placement: ratio(self.stats.conflicts as f64, placed),
            retries_per_placement: ratio(self.stats.retries as f64, placed),
            round_trips_per_round: self.calls.round_trips as f64 / rounds,
            atomic_sections_per_round: self.calls.atomic_sections as f64 / rounds,
            max_over_mean: self.spread / rounds,
            audit: self.audit,
            shared_ids: 0,
            crashed_instances: 0,
            crash_handoffs: 0,
        }
    }
}
