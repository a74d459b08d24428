//! `contention`: `--instances` scheduler instances on one backend, each with its own cache and
//! its own share of every burst, either as tasks in this process or as separate OS processes
//! (this binary re-executing itself with the hidden `worker` subcommand). Processes need a
//! store they can share, so `--processes` requires a Redis or Postgres backend.

use super::{ratio, requests, RunConfig};
use crate::audit::{audit, AuditSummary};
use crate::backend::{Env, WorkerSetup};
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

/// What a `worker` child prints (one JSON line on stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerOutput {
    /// Its placements, as (container id, worker id).
    pub placements: Vec<(String, String)>,
    /// Failures.
    pub failures: Vec<String>,
    /// Strategy counters.
    pub stats: StrategyStats,
    /// Metered calls.
    pub calls: Calls,
}

/// Runs the contention scenario in tasks mode.
pub async fn run_tasks(
    cfg: &RunConfig,
    kind: StrategyKind,
    instances: usize,
) -> Result<ContentionReport, SimError> {
    let env = Env::open(
        &cfg.backend,
        &WorkerSetup {
            count: cfg.workers,
            capacity: cfg.worker_capacity,
        },
    )
    .await?;
    let k = instances.max(1);
    let strats: Vec<_> = (0..k)
        .map(|_| strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy))
        .collect();
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the hidden `worker` subcommand is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerJob {
    /// Namespace created by the parent.
    pub namespace: String,
    /// Instance number (container ids are disjoint per instance).
    pub instance: usize,
    /// Round number.
    pub round: u32,
    /// Start placing at this wall-clock time (Unix ms), so the instances overlap.
    pub start_at_unix_ms: u64,
    /// Draw containers from a shared pool of this many ids (0 = own ids).
    pub shared_ids: usize,
}

/// Faults and races for the processes mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessFaults {
    /// Every instance places the same pool of this many ids (0 = disjoint shares).
    pub shared_ids: usize,
    /// SIGKILL one instance at a random moment of each round.
    pub kill_one: bool,
}

/// The shared pool's requests for one instance: every id of the pool, in an order of its own.
pub fn shared_requests(
    cfg: &RunConfig,
    round: u32,
    pool: usize,
    instance: usize,
) -> Vec<sched_core::ContainerRequest> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut reqs = requests(
        &format!("k{:x}-shared", cfg.seed),
        round,
        pool,
        cfg.container_size,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        cfg.seed ^ (u64::from(round) << 32) ^ (instance as u64).wrapping_mul(0x9E37_79B9),
    );
    reqs.shuffle(&mut rng);
    reqs
}

/// A `worker` child's whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReply {
    /// What it placed.
    pub output: WorkerOutput,
    /// When it started placing (Unix ms).
    pub started_unix_ms: u64,
    /// When it finished (Unix ms).
    pub finished_unix_ms: u64,
}

/// The child side: attach to the parent's namespace, wait for the start time, place
/// `cfg.containers` containers of this instance's round, and return what happened.
pub async fn run_worker(
    cfg: &RunConfig,
    kind: StrategyKind,
    job: &WorkerJob,
) -> Result<WorkerReply, SimError> {
    let setup = WorkerSetup {
        count: cfg.workers,
        capacity: cfg.worker_capacity,
    };
    let env = Env::open_in(&cfg.backend, &setup, &job.namespace, false).await?;
    let strat = strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy);
    // Warm the connection outside the measured window.
    env.floor(3).await?;
    let now = unix_ms();
    if job.start_at_unix_ms > now {
        tokio::time::sleep(std::time::Duration::from_millis(job.start_at_unix_ms - now)).await;
    }
    let calls0 = env.calls.snapshot();
    let started_unix_ms = unix_ms();
    let reqs = if job.shared_ids > 0 {
        shared_requests(cfg, job.round, job.shared_ids, job.instance)
    } else {
        requests(
            &format!("k{:x}-i{}", cfg.seed, job.instance),
            job.round,
            cfg.containers,
            cfg.container_size,
        )
    };
    let results = strat.place_burst(reqs, cfg.effective_concurrency()).await;
    let finished_unix_ms = unix_ms();
    let mut output = WorkerOutput {
        placements: Vec::new(),
        failures: Vec::new(),
        stats: strat.stats(),
        calls: env.calls.snapshot().since(&calls0),
    };
    for r in results {
        match r {
            Ok(p) => output.placements.push((p.container_id, p.worker_id)),
            Err(e) => output.failures.push(e),
        }
    }
    env.cleanup().await?;
    Ok(WorkerReply {
        output,
        started_unix_ms,
        finished_unix_ms,
    })
}

fn affinity_arg(a: sched_core::affinity::AffinityMode) -> &'static str {
    match a {
        sched_core::affinity::AffinityMode::Off => "off",
        sched_core::affinity::AffinityMode::Rotate => "rotate",
        sched_core::affinity::AffinityMode::Rendezvous => "rendezvous",
    }
}

/// The command line of one child.
fn child_args(cfg: &RunConfig, kind: StrategyKind, share: usize, job: &WorkerJob) -> Vec<String> {
    let b = &cfg.backend;
    let mut a: Vec<String> = vec![
        "--backend".into(),
        b.kind.as_str().into(),
        "--strategy".into(),
        kind.as_str().into(),
        "--affinity".into(),
        // Racing for a shared pool, odd instances spread by rendezvous and even ones by
        // rotation, so they pick different workers for the same container and the store's
        // one-holder rule has to settle it.
        if job.shared_ids > 0 && job.instance % 2 == 1 {
            "rendezvous".into()
        } else {
            affinity_arg(cfg.strategy.affinity).into()
        },
        "--workers".into(),
        cfg.workers.to_string(),
        "--containers".into(),
        share.to_string(),
        "--concurrency".into(),
        cfg.concurrency.to_string(),
        "--seed".into(),
        cfg.seed.to_string(),
        "--worker-cpu".into(),
        cfg.worker_capacity.cpu_millicores.to_string(),
        "--worker-mem".into(),
        cfg.worker_capacity.memory_mib.to_string(),
        "--container-cpu".into(),
        cfg.container_size.cpu_millicores.to_string(),
        "--container-mem".into(),
        cfg.container_size.memory_mib.to_string(),
        "--rtt-ms".into(),
        (b.rtt.as_secs_f64() * 1000.0).to_string(),
        "--cache-ttl-ms".into(),
        cfg.strategy.cache_ttl.as_millis().to_string(),
    ];
    if let Some(u) = &b.redis_url {
        a.extend(["--redis-url".into(), u.clone()]);
    }
    if let Some(u) = &b.database_url {
        a.extend(["--database-url".into(), u.clone()]);
    }
    a.extend([
        "worker".into(),
        "--namespace".into(),
        job.namespace.clone(),
        "--instance".into(),
        job.instance.to_string(),
        "--round".into(),
        job.round.to_string(),
        "--start-at-unix-ms".into(),
        job.start_at_unix_ms.to_string(),
        "--shared-ids".into(),
        job.shared_ids.to_string(),
    ]);
    a
}

/// Runs the contention scenario with each instance in its own OS process (`exe worker ...`).
pub async fn run_processes(
    cfg: &RunConfig,
    kind: StrategyKind,
    instances: usize,
    exe: &std::path::Path,
    faults: ProcessFaults,
) -> Result<ContentionReport, SimError> {
    if cfg.backend.kind == crate::backend::BackendKind::Memory {
        return Err(SimError::Config(
            "--processes needs a backend that processes can share: --backend redis, redis-fred \
             or postgres"
                .into(),
        ));
    }
    let namespace = crate::backend::fresh_namespace();
    let setup = WorkerSetup {
        count: cfg.workers,
        capacity: cfg.worker_capacity,
    };
    let env = Env::open_in(&cfg.backend, &setup, &namespace, true).await?;
    let result = processes_rounds(&env, cfg, kind, instances, exe, &namespace, faults).await;
    env.cleanup().await?;
    result
}

async fn processes_rounds(
    env: &Env,
    cfg: &RunConfig,
    kind: StrategyKind,
    instances: usize,
    exe: &std::path::Path,
    namespace: &str,
    faults: ProcessFaults,
) -> Result<ContentionReport, SimError> {
    let k = instances.max(1);
    let (mut disagreements, mut crashed, mut crash_handoffs) = (0u64, 0u64, 0u64);
    let share = cfg.containers.div_ceil(k);
    let mut times = Recorder::new();
    let mut audit_sum = AuditSummary::default();
    let (mut requested, mut placed, mut spread) = (0u64, 0u64, 0.0);
    let mut stats = StrategyStats::default();
    let mut calls = Calls::default();
    for round in 0..cfg.repeat {
        let start_at = unix_ms() + 700;
        let mut children = Vec::new();
        let mut shares: Vec<u64> = Vec::with_capacity(k);
        for i in 0..k {
            let n = if faults.shared_ids > 0 {
                faults.shared_ids
            } else {
                share.min(cfg.containers.saturating_sub(i * share))
            };
            // A shared pool is requested once per round, however many instances race for it.
            if faults.shared_ids == 0 || i == 0 {
                requested += n as u64;
            }
            shares.push(n as u64);
            let job = WorkerJob {
                namespace: namespace.to_owned(),
                instance: i,
                round,
                start_at_unix_ms: start_at,
                shared_ids: faults.shared_ids,
            };
            let child = tokio::process::Command::new(exe)
                .args(child_args(cfg, kind, n, &job))
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| SimError::Process(format!("spawning {}: {e}", exe.display())))?;
            children.push(child);
        }
        // Kill one instance somewhere in the round: before, during or after its commits.
        let victim = if faults.kill_one {
            use rand::Rng;
            let delay = rand::rng().random_range(0..30u64);
            let wait = start_at.saturating_sub(unix_ms()) + delay;
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            let v = usize::try_from(u64::from(round)).unwrap_or(0) % k;
            if let Some(c) = children.get_mut(v) {
                let _ = c.start_kill();
            }
            Some(v)
        } else {
            None
        };
        let outs =
            futures::future::join_all(children.into_iter().map(|c| c.wait_with_output())).await;
        let mut placements: Vec<Placement> = Vec::new();
        let mut holder_of: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let (mut first_start, mut last_end) = (u64::MAX, 0u64);
        for (i, out) in outs.into_iter().enumerate() {
            let out = out.map_err(|e| SimError::Process(e.to_string()))?;
            if Some(i) == victim && !out.status.success() {
                crashed += 1;
                // Its own containers (disjoint mode) were never promised to anyone: what it
                // committed shows up below as handed off, the rest is not a failure.
                if faults.shared_ids == 0 {
                    requested -= shares.get(i).copied().unwrap_or(0);
                }
                continue;
            }
            if !out.status.success() {
                return Err(SimError::Process(format!(
                    "worker exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let reply: WorkerReply = serde_json::from_slice(&out.stdout)?;
            first_start = first_start.min(reply.started_unix_ms);
            last_end = last_end.max(reply.finished_unix_ms);
            stats = stats.plus(&reply.output.stats);
            calls = calls.plus(&reply.output.calls);
            for (c, w) in reply.output.placements {
                // With a shared pool several instances report the same container: they must all
                // name the same worker (the store's one-holder rule), and it counts once.
                match holder_of.get(&c) {
                    Some(prev) if *prev != w => disagreements += 1,
                    Some(_) => {}
                    None => {
                        holder_of.insert(c.clone(), w.clone());
                        placements.push(Placement {
                            container_id: c,
                            worker_id: w,
                            resource_version: 0,
                            attempts: 0,
                            already_held: false,
                        });
                    }
                }
            }
        }
        times.record(std::time::Duration::from_millis(
            last_end.saturating_sub(first_start.min(last_end)),
        ));
        placed += placements.len() as u64;
        spread += max_over_mean(&per_worker(&env.worker_ids, &placements));
        let mut round_audit = audit(&*env.raw, &env.worker_ids, &placements).await?;
        round_audit.double_bookings += disagreements;
        disagreements = 0;
        if victim.is_some() {
            // Held but reported by nobody: committed by the killed instance. Its commit was the
            // hand-off (the worker's ledger is its inbox), so this is not a leak.
            crash_handoffs += round_audit.orphaned;
            round_audit.orphaned = 0;
        }
        audit_sum = audit_sum.plus(&round_audit);
        // Release everything held, including what the killed instance handed off.
        let mut ids: Vec<String> = Vec::new();
        for w in &env.worker_ids {
            ids.extend(
                env.raw
                    .list_reservations(w)
                    .await?
                    .into_iter()
                    .map(|r| r.container_id),
            );
        }
        for chunk in ids.chunks(sched_core::validate::MAX_BATCH) {
            env.raw.release_batch(chunk).await?;
        }
    }
    Ok(ContentionReport {
        shared_ids: faults.shared_ids,
        crashed_instances: crashed,
        crash_handoffs,
        ..Tally {
            times,
            audit: audit_sum,
            requested,
            placed,
            spread,
            stats,
            calls,
        }
        .into_report(cfg, env, kind, Mode::Processes, k)
    })
}
