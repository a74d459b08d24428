//! The floors printed next to each burst report, measured in the same run: the store's bare
//! round trip ([`Env::floor`]), the same commit sent raw ([`raw_commit`]: the wire commands of
//! `reserve_batch` as one pipeline on a bare redis-rs connection, single-node Redis only), and
//! the beta9-style peer ([`crate::strategy::peer`]), and the callers' own cost ([`callers`]:
//! as many tasks as the burst has callers, spawned, released and joined with no work).

use crate::backend::{BackendKind, Env};
use crate::hist::{Recorder, Summary};
use crate::scenario::RunConfig;
use crate::strategy::peer::{self, PeerSetup};
use crate::strategy::{run_each, CallMode, PlaceError};
use crate::tls::TlsFiles;
use crate::SimError;
use sched_core::{
    CapacityReservation, CommitMode, Placement, ResourceReservation, Resources, WorkerRepository,
};
use std::collections::BTreeMap;
use std::time::Instant;

/// A redis-rs failure as a [`SimError`].
pub(crate) fn redis_err(e: redis::RedisError) -> SimError {
    SimError::BackendUnavailable("redis".into(), e.to_string())
}

/// The commit of `placements` as `reserve_batch` sends it: one part per worker (in worker-id
/// order), each container with `size`, in placement order.
pub fn batch_of(placements: &[Placement], size: Resources) -> Vec<CapacityReservation> {
    let mut by_worker: BTreeMap<&str, Vec<ResourceReservation>> = BTreeMap::new();
    for p in placements {
        by_worker
            .entry(p.worker_id.as_str())
            .or_default()
            .push(ResourceReservation::new(p.container_id.clone(), size));
    }
    by_worker
        .into_iter()
        .map(|(w, rs)| CapacityReservation::new(w, rs))
        .collect()
}

/// The raw commit: `samples` times, the exact wire commands of `reserve_batch(batch, Partial)`
/// (from `RedisRepository::reserve_wire`) sent as ONE pipeline on a bare multiplexed redis-rs
/// connection to `url` (over TLS with the files of `tls`) and timed; then the containers are
/// released untimed through the repository, which must find every one of them held (else the
/// raw commit did not commit what sched would have, and the measurement is refused). `None`
/// when `env` is not single-node Redis or `batch` is empty.
pub async fn raw_commit(
    env: &Env,
    url: &str,
    tls: &TlsFiles,
    batch: &[CapacityReservation],
    samples: u32,
) -> Result<Option<Summary>, SimError> {
    let Some(repo) = env.redis() else {
        return Ok(None);
    };
    if batch.is_empty() || repo.is_cluster() {
        return Ok(None);
    }
    let words = repo.reserve_wire(batch, CommitMode::Partial)?;
    let ids: Vec<String> = batch
        .iter()
        .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
        .collect();
    let client = tls.redis_client(url)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_err)?;
    let mut pipe = redis::pipe();
    for w in &words {
        let mut it = w.iter();
        if let Some(name) = it.next() {
            let c = pipe.cmd(name);
            for a in it {
                c.arg(a);
            }
        }
    }
    let mut rec = Recorder::new();
    for _ in 0..samples.max(1) {
        let t = Instant::now();
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        rec.record(t.elapsed());
        if replies.len() != words.len() {
            return Err(SimError::Config(format!(
                "raw commit: {} replies to {} commands",
                replies.len(),
                words.len()
            )));
        }
        let released = env.raw.release_batch(&ids).await?;
        let held = released.iter().filter(|r| r.released.is_some()).count();
        if held != ids.len() {
            return Err(SimError::Config(format!(
                "raw commit held {held} of {} containers (the store rejected part of it)",
                ids.len()
            )));
        }
    }
    Ok(Some(rec.summary()))
}

/// The yardsticks of one burst report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Floors {
    /// The bare round trip (`PING` / `SELECT 1` / a memory read).
    pub round_trip: Summary,
    /// The same commit sent raw (single-node Redis).
    pub raw_commit: Option<Summary>,
    /// The beta9-style peer (single-node Redis).
    pub peer: Option<Summary>,
    /// The callers alone: the burst's tasks spawned, released and joined with no work
    /// (`--calls each` only; any backend).
    pub callers: Option<Summary>,
    /// Why a yardstick is missing.
    pub notes: Vec<String>,
}

/// Measures the raw commit of `placements` (a measured burst's) and the peer, `samples`
/// each, on the backends that have them; notes why not on the others.
pub async fn beside(
    env: &Env,
    cfg: &RunConfig,
    placements: &[Placement],
    round_trip: Summary,
) -> Result<Floors, SimError> {
    let mut f = Floors {
        round_trip,
        ..Floors::default()
    };
    if !cfg.yardsticks {
        return Ok(f);
    }
    let samples = cfg.repeat.max(3);
    if cfg.strategy.calls == CallMode::Each {
        f.callers = Some(callers(cfg.containers, cfg.effective_concurrency(), samples).await);
    }
    let kind = env.kind;
    let url = cfg.backend.redis_url.clone().unwrap_or_default();
    match kind {
        BackendKind::Redis | BackendKind::RedisFred => {
            let batch = batch_of(placements, cfg.container_size);
            f.raw_commit = raw_commit(env, &url, &cfg.backend.tls, &batch, samples).await?;
            if f.raw_commit.is_none() {
                f.notes
                    .push("raw commit not measured: no placements to commit".into());
            }
            let setup = PeerSetup {
                url,
                tls: cfg.backend.tls.clone(),
                prefix: format!("{}-peer", env.namespace),
                workers: env.worker_ids.len(),
                capacity: cfg.worker_capacity,
                containers: cfg.containers,
                size: cfg.container_size,
            };
            f.peer = Some(peer::measure(&setup, samples).await?);
        }
        BackendKind::Postgres => f.notes.push(
            "postgres: raw commit and peer not measured; the floor is one round trip (SELECT 1)"
                .into(),
        ),
        BackendKind::RedisCluster | BackendKind::RedisFredCluster => f.notes.push(
            "redis cluster: raw commit and peer not measured (the cluster commit is several \
             pipelines); the floor is one round trip (PING)"
                .into(),
        ),
        BackendKind::Memory => f
            .notes
            .push("memory: no raw commit or peer; the floor is one metered get_worker".into()),
    }
    Ok(f)
}

/// The harness's share of a `--calls each` burst: `containers` tasks spawned, released at once
/// and joined exactly as the burst's callers are (the strategies' `run_each`), each doing
/// nothing, `samples` times. No store is involved.
pub async fn callers(containers: usize, concurrency: usize, samples: u32) -> Summary {
    let mut rec = Recorder::new();
    for _ in 0..samples {
        let reqs: Vec<_> = (0..containers)
            .map(|i| {
                sched_core::ContainerRequest::new(format!("callers-{i}"), Resources::default())
            })
            .collect();
        let started = Instant::now();
        let _ = run_each(reqs, concurrency, |r| async move {
            Err(PlaceError::other(r.id))
        })
        .await;
        rec.record(started.elapsed());
    }
    rec.summary()
}
