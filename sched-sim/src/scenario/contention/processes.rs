//! The processes mode: each instance in its own OS process (this binary re-executing itself with
//! the hidden `worker` subcommand), the parent's rounds and the child's side.

use super::{ContentionReport, Mode, Tally};
use crate::audit::{audit, AuditSummary};
use crate::backend::Env;
use crate::hist::Recorder;
use crate::metered::Calls;
use crate::scenario::burst::{max_over_mean, per_worker};
use crate::scenario::{requests, RunConfig};
use crate::strategy::{self, StrategyKind, StrategyStats};
use crate::SimError;
use sched_core::Placement;
use serde::{Deserialize, Serialize};

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
    let setup = cfg.worker_setup();
    let env = Env::open_in(&cfg.backend, &setup, &job.namespace, false).await?;
    let strat = strategy::build(kind, env.repo.clone(), env.locks.clone(), cfg.strategy)?;
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
            Err(e) => output.failures.push(e.to_string()),
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
        sched_core::affinity::AffinityMode::Balanced => "balanced",
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
    // The children connect like the parent: same CA, same client certificate.
    a.extend(b.tls.args());
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
    let setup = cfg.worker_setup();
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
            use rand::RngExt;
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
