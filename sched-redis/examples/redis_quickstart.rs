//! Quickstart: configure from the environment, register 4 workers, place a burst of 20
//! containers with the `Scheduler`, release them, check every worker's capacity is back, remove
//! the workers and delete every key of the run. Exits non-zero on any failure.
//!
//! ```text
//! # one node
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p sched-redis --example redis_quickstart
//! # Redis Cluster (wins when set)
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
//!     cargo run -p sched-redis --example redis_quickstart
//! # the fred client instead of redis-rs
//! cargo run -p sched-redis --features fred --example redis_quickstart -- fred
//! ```
//!
//! Settings: `RedisConfig::from_env` (`SCHED_REDIS_USERNAME`, `SCHED_REDIS_PASSWORD`, timeouts,
//! ...). The key prefix is `<SCHED_REDIS_PREFIX or sched>-quickstart-<pid>-<random>`, so runs
//! never share keys with each other or with a deployment.
#![allow(clippy::print_stdout)]

use sched_core::{
    AuditMode, ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository,
    WorkerSpec, WorkerStatus,
};
use sched_redis::{RedisConfig, RedisRepository};
use std::collections::BTreeMap;
use std::error::Error;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const WORKERS: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const BURST: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let base = RedisConfig::from_env()?;
    let prefix = format!(
        "{}-quickstart-{}-{:08x}",
        base.key_prefix,
        std::process::id(),
        rand::random::<u32>()
    );
    let cfg = base.with_prefix(prefix);
    let fred = std::env::args().skip(1).any(|a| a == "fred");
    let repo = connect(&cfg, fred).await?;
    let client = if fred { "fred" } else { "redis-rs" };
    let topology = if repo.is_cluster() {
        "cluster"
    } else {
        "one node"
    };
    println!(
        "connected to {} ({topology}, {client}) as {:?}, prefix {:?}",
        cfg.endpoint(),
        cfg.user(),
        cfg.key_prefix
    );

    // The scenario, then the clean-up whatever the scenario's outcome.
    let outcome = scenario(&repo).await;
    let cleanup = cleanup(&repo, &cfg).await;
    let placed = outcome?;
    let deleted = cleanup?;
    println!("placed {BURST} containers on {} workers ({placed}), released them all, capacity back to total; removed the workers and deleted {deleted} remaining keys", WORKERS.len());
    Ok(())
}

async fn connect(cfg: &RedisConfig, fred: bool) -> Res<RedisRepository> {
    if !fred {
        return Ok(RedisRepository::connect(cfg).await?);
    }
    #[cfg(feature = "fred")]
    return Ok(RedisRepository::connect_fred(cfg).await?);
    #[cfg(not(feature = "fred"))]
    Err("the fred client needs `--features fred`".into())
}

/// Register, place a burst, release, audit. Returns the placement per worker, as text.
async fn scenario(repo: &RedisRepository) -> Res<String> {
    let total = Resources::cpu_mem(8_000, 32_768);
    for id in WORKERS {
        repo.register_worker(&WorkerSpec::new(id, total)).await?;
    }

    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let burst = (0..BURST)
        .map(|i| ContainerRequest::new(format!("job-{i}"), Resources::cpu_mem(1_000, 2_048)))
        .collect();
    let mut placed = Vec::new();
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for result in sched.schedule_batch(burst).await {
        let p = result.map_err(|e| format!("not placed: {e}"))?;
        *per_worker.entry(p.worker_id).or_default() += 1;
        placed.push(p.container_id);
    }
    if placed.len() != BURST {
        return Err(format!("{} of {BURST} placed", placed.len()).into());
    }
    let mut held = 0;
    for id in WORKERS {
        held += repo.list_reservations(id).await?.len();
    }
    if held != BURST {
        return Err(format!("the ledgers hold {held} reservations, not {BURST}").into());
    }

    let released = sched.release(&placed).await?;
    let not_held: Vec<&str> = (released.iter())
        .filter(|r| r.released.is_none())
        .map(|r| r.container_id.as_str())
        .collect();
    if released.len() != BURST || !not_held.is_empty() {
        return Err(format!("{} releases, not held: {not_held:?}", released.len()).into());
    }

    for id in WORKERS {
        let audit = repo.audit_worker(id, AuditMode::Check).await?;
        let worker = repo.get_worker(id).await?.ok_or(format!("{id} is gone"))?;
        if audit.reservations != 0 || !audit.drift.is_zero() || worker.free != worker.total {
            return Err(
                format!("{id} is not back to total: {audit:?}, free {}", worker.free).into(),
            );
        }
    }
    let summary: Vec<String> = per_worker
        .iter()
        .map(|(w, n)| format!("{w}: {n}"))
        .collect();
    Ok(summary.join(", "))
}

/// Drains and removes the workers, then deletes what Redis keeps on purpose after a removal (the
/// tombstones, the wake-up streams, the worker set: sched-redis/ARCHITECTURE.md, "Key layout")
/// with plain redis-rs, by the run's prefix. Returns the number of keys deleted that way.
async fn cleanup(repo: &RedisRepository, cfg: &RedisConfig) -> Res<usize> {
    for id in WORKERS {
        if repo.get_worker(id).await?.is_some() {
            repo.set_worker_status(id, WorkerStatus::Draining).await?;
            repo.remove_worker(id).await?;
        }
    }
    // Every key of a prefix starts with `{<prefix>:`; this prefix has no character that needs
    // percent-encoding or glob escaping.
    let pattern = format!("{{{}:*", cfg.key_prefix);
    let infos = (cfg.urls.iter())
        .map(|u| info(cfg, u))
        .collect::<Result<Vec<_>, _>>()?;
    let deleted = if cfg.cluster {
        let client = redis::cluster::ClusterClientBuilder::new(infos).build()?;
        let mut conn = client.get_async_connection().await?;
        unlink_all(&mut conn, &pattern).await?
    } else {
        let info = infos.into_iter().next().ok_or("no Redis URL")?;
        let mut conn = redis::Client::open(info)?
            .get_multiplexed_async_connection()
            .await?;
        unlink_all(&mut conn, &pattern).await?
    };
    Ok(deleted)
}

/// Deletes every key matching `pattern`, one `UNLINK` each (on a cluster each worker's keys and
/// each container's index key live in slots of their own), then checks that none is left.
/// Returns the number deleted.
async fn unlink_all(conn: &mut impl redis::aio::ConnectionLike, pattern: &str) -> Res<usize> {
    // A cluster sends KEYS to every primary and merges the answers.
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(conn).await?;
    let mut deleted = 0;
    for key in &keys {
        deleted += redis::cmd("UNLINK")
            .arg(key)
            .query_async::<usize>(conn)
            .await?;
    }
    let left: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(conn).await?;
    if !left.is_empty() {
        return Err(format!("keys left behind: {left:?}").into());
    }
    Ok(deleted)
}

/// `url` with the configured user and password.
fn info(cfg: &RedisConfig, url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings))
}
