//! `churn`: the reservation lifecycle under a moving fleet.
//!
//! Workers are registered with a heartbeat timeout and a [`StalePolicy`]. One agent per worker
//! heartbeats every `agent_period` and renews the leases of the containers it runs in one
//! `renew_leases` call per round. A placer places bursts of leased containers with the
//! [`Scheduler`](sched_core::Scheduler); each gets a random lifetime, at the end of which it is
//! released, or, for a `die_share` of them, dies without a release (its agent simply stops
//! renewing it). Meanwhile workers are drained and brought back, one agent crashes (no
//! heartbeat, no renewal: what it ran is dead) and comes back later with a heartbeat, and a
//! sweeper runs [`sweep_all`](sched_core::lifecycle::sweep_all) every `sweep_period`.
//!
//! At `duration` placing stops and lifetimes freeze; agents keep renewing for one lease and a
//! few periods more, then a final sweep runs and the store is asked: every dead container must
//! be gone (leaked capacity 0), every live one held where it was placed, drift 0 on every
//! worker ([`audit`]). Then the live containers are released and the ledgers must be empty.
//!
//! Leases and staleness are judged by the store's clock; the simulator's timers only drive
//! the workload.

mod fleet;
mod report;
mod tasks;
mod text;

pub use report::{
    ChurnReport, ChurnSettings, CrashReport, EndCounts, ExpiryCounts, Leak, PlacementCounts,
    RenewalCounts,
};

use super::RunConfig;
use crate::audit::audit;
use crate::backend::Env;
use crate::progress::Progress;
use crate::strategy::sched::Sched;
use crate::SimError;
use fleet::{Agent, Latencies, Shared, Tally};
use rand::{RngExt, SeedableRng};
use sched_core::{Placement, Resources, StalePolicy, WorkerSpec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Churn settings (the worker set, container size, backend and seed come from [`RunConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnConfig {
    /// How long to place containers.
    pub duration: Duration,
    /// Lease of every placement, milliseconds.
    pub lease_ms: u64,
    /// Each worker's heartbeat timeout, milliseconds.
    pub heartbeat_timeout_ms: u64,
    /// What the sweep does with a stale worker's reservations.
    pub on_stale: StalePolicy,
    /// Each agent's round: one heartbeat, one release, one renewal.
    pub agent_period: Duration,
    /// How often the sweeper runs `sweep_all`.
    pub sweep_period: Duration,
    /// Containers per placement burst.
    pub burst_size: usize,
    /// Time between placement bursts.
    pub burst_interval: Duration,
    /// Shortest container lifetime.
    pub lifetime_min: Duration,
    /// Longest container lifetime.
    pub lifetime_max: Duration,
    /// Share of containers that die without a release (0..=1).
    pub die_share: f64,
    /// Time between drains (one worker at a time).
    pub drain_period: Duration,
    /// How long a worker stays drained (0: no drains).
    pub drain_for: Duration,
    /// When the agent crashes, after the start.
    pub crash_at: Duration,
    /// How long it stays down (0: no crash).
    pub crash_for: Duration,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            duration: Duration::from_secs(3),
            lease_ms: 500,
            heartbeat_timeout_ms: 400,
            on_stale: StalePolicy::Release,
            agent_period: Duration::from_millis(100),
            sweep_period: Duration::from_millis(100),
            burst_size: 10,
            burst_interval: Duration::from_millis(40),
            lifetime_min: Duration::from_millis(200),
            lifetime_max: Duration::from_millis(1000),
            die_share: 0.3,
            drain_period: Duration::from_millis(500),
            drain_for: Duration::from_millis(300),
            crash_at: Duration::from_millis(900),
            crash_for: Duration::from_millis(900),
        }
    }
}

impl ChurnConfig {
    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Config(format!("churn: {m}")));
        if !(0.0..=1.0).contains(&self.die_share) {
            return bad("--die-share must be between 0 and 1");
        }
        if self.lease_ms == 0 || self.lease_ms > sched_core::lifecycle::MAX_LEASE_MS {
            return bad("--lease-ms must be between 1 and 30 days");
        }
        if self.heartbeat_timeout_ms == 0
            || self.heartbeat_timeout_ms > sched_core::lifecycle::MAX_LEASE_MS
        {
            return bad("--heartbeat-timeout-ms must be between 1 and 30 days");
        }
        if self.lifetime_min > self.lifetime_max {
            return bad("--lifetime-min-ms is above --lifetime-max-ms");
        }
        if self.agent_period.as_millis() >= u128::from(self.lease_ms)
            || self.agent_period.as_millis() >= u128::from(self.heartbeat_timeout_ms)
        {
            return bad(
                "--agent-period-ms must be shorter than the lease and the heartbeat timeout",
            );
        }
        Ok(())
    }
}

/// Runs the churn scenario once.
pub async fn run(cfg: &RunConfig, churn: &ChurnConfig) -> Result<ChurnReport, SimError> {
    churn.validate()?;
    let env = Env::open(&cfg.backend, &cfg.worker_setup()).await?;
    let out = run_in(&env, cfg, churn).await;
    // Clean up whatever happened (a failed run leaves no keys or schema behind).
    let cleaned = env.cleanup().await;
    let report = out?;
    cleaned?;
    Ok(report)
}

async fn run_in(env: &Env, cfg: &RunConfig, churn: &ChurnConfig) -> Result<ChurnReport, SimError> {
    let started = Instant::now();
    for id in &env.worker_ids {
        let spec = WorkerSpec::new(id.clone(), cfg.worker_capacity)
            .with_heartbeat_timeout(Duration::from_millis(churn.heartbeat_timeout_ms))
            .with_stale_policy(churn.on_stale);
        env.raw.register_worker(&spec).await?;
    }
    let sched = Sched::new(env.repo.clone(), cfg.strategy)
        .scheduler()
        .clone();
    let sh = Arc::new(Shared {
        cfg: churn.clone(),
        container_size: cfg.container_size,
        repo: env.repo.clone(),
        sched: sched.clone(),
        workers: env.worker_ids.clone(),
        index: env
            .worker_ids
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect::<HashMap<_, _>>(),
        agents: env
            .worker_ids
            .iter()
            .map(|_| Mutex::new(Agent::default()))
            .collect(),
        book: Mutex::default(),
        tally: Tally::default(),
        lat: Mutex::new(Latencies::default()),
        frozen: AtomicBool::new(false),
        stop_workload: AtomicBool::new(false),
        stop_all: AtomicBool::new(false),
    });
    let crash_idx = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xc4a5)
        .random_range(0..env.worker_ids.len().max(1));
    let bursts = churn.duration.as_millis() / churn.burst_interval.as_millis().max(1);
    let progress = Progress::new(
        u64::try_from(bursts).unwrap_or(u64::MAX),
        "churn bursts",
        cfg.quiet,
    );

    let g = |f| tokio::spawn(tasks::guarded(Arc::clone(&sh), f));
    let sweeper = g(Box::pin(tasks::sweeper(Arc::clone(&sh))) as BoxFut);
    let agents: Vec<_> = (0..env.worker_ids.len())
        .map(|i| g(Box::pin(tasks::agent(Arc::clone(&sh), i)) as BoxFut))
        .collect();
    let placer = g(Box::pin(tasks::placer(Arc::clone(&sh), cfg.seed, progress.clone())) as BoxFut);
    let drainer = g(Box::pin(tasks::drainer(
        Arc::clone(&sh),
        cfg.seed ^ 0xd4a1,
        crash_idx,
    )) as BoxFut);
    let crash = tokio::spawn(tasks::crash(Arc::clone(&sh), crash_idx, started));

    // The workload phase.
    let until = started + churn.duration;
    while Instant::now() < until && !sh.stop_all.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20).min(until - Instant::now().min(until))).await;
    }
    sh.frozen.store(true, Ordering::Relaxed);
    sh.stop_workload.store(true, Ordering::Relaxed);
    let mut first_err: Option<SimError> = None;
    let mut keep = |r: Result<Result<(), SimError>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            first_err.get_or_insert(e);
        }
        Err(e) => {
            first_err.get_or_insert(SimError::Config(format!("churn task failed: {e}")));
        }
    };
    keep(placer.await);
    keep(drainer.await);
    let crashed = match crash.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            sh.stop();
            keep(Ok(Err(e)));
            tasks::CrashOutcome::default()
        }
        Err(e) => {
            sh.stop();
            keep(Err(e));
            tasks::CrashOutcome::default()
        }
    };
    progress.finish();

    // The final phase: agents keep renewing what is live while every dead lease runs out.
    let settle =
        Duration::from_millis(churn.lease_ms) + churn.agent_period + churn.sweep_period * 2;
    let settle_until = Instant::now() + settle;
    while Instant::now() < settle_until && !sh.stop_all.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sh.stop();
    for a in agents {
        keep(a.await);
    }
    keep(sweeper.await);
    if let Some(e) = first_err {
        return Err(e);
    }
    tasks::sweep_once(&sh).await?;

    // The checks, against the store.
    let leaked = leak(env, &sh).await?;
    let live = sh.live_containers();
    let placements: Vec<Placement> = live
        .iter()
        .map(|(c, w)| Placement {
            container_id: c.clone(),
            worker_id: w.clone(),
            resource_version: 0,
            attempts: 0,
            already_held: false,
        })
        .collect();
    let audited = audit(&*env.raw, &env.worker_ids, &placements).await?;
    let live_ids: Vec<String> = live.into_iter().map(|(c, _)| c).collect();
    sched.release(&live_ids).await?;
    let after_release = audit(&*env.raw, &env.worker_ids, &[]).await?;

    let findings = report::Findings {
        started,
        crash_idx,
        crashed,
        leaked,
        audit: audited,
        after_release,
        live_at_end: live_ids.len(),
    };
    Ok(report::build(env, churn, &sh, findings))
}

type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SimError>> + Send>>;

/// Dead containers the store still holds after the final sweep, and what they hold.
async fn leak(env: &Env, sh: &Shared) -> Result<Leak, SimError> {
    let dead = sh.dead_containers();
    let mut out = Leak::default();
    for chunk in dead.chunks(256) {
        let ids: Vec<String> = chunk.iter().map(|(c, _)| c.clone()).collect();
        for rec in env.raw.find_reservations(&ids).await?.into_iter().flatten() {
            tracing::error!(container = %rec.container_id, worker = %rec.worker_id,
                lease_expires_at_ms = ?rec.lease_expires_at_ms, "a dead container is still held");
            out.containers += 1;
            out.capacity = out
                .capacity
                .checked_add(&rec.resources)
                .unwrap_or(Resources::new(u64::MAX, u64::MAX, u64::MAX));
        }
    }
    Ok(out)
}
