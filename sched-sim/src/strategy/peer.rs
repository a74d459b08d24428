//! `peer`: the beta9 mechanism, as a yardstick for sched's Redis commit. Per worker one small
//! Lua script checks the worker's status and free capacity and subtracts (no ledger, no
//! container index, no idempotency); all workers' scripts go in one pipelined round trip. The
//! plan is a plain rotation over the workers. It runs on its own keys (its own prefix, deleted
//! at the end), single-node Redis only. It is not a [`Strategy`](super::Strategy): it holds
//! no containers anyone could audit, so it is measured beside the burst report, never as one.

use crate::floor::redis_err;
use crate::hist::{Recorder, Summary};
use crate::tls::TlsFiles;
use crate::SimError;
use sched_core::Resources;
use std::time::Instant;

/// KEYS[1] = the worker's hash; ARGV = cpu, memory, gpu to take. 1 = taken, 0 = no room,
/// -1 = not available.
const SCRIPT: &str = r"
local w = redis.call('HMGET', KEYS[1], 'status', 'cpu', 'mem', 'gpu')
if w[1] ~= 'available' then return -1 end
local c, m, g = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tonumber(w[2]) < c or tonumber(w[3]) < m or tonumber(w[4]) < g then return 0 end
redis.call('HINCRBY', KEYS[1], 'cpu', 0 - c)
redis.call('HINCRBY', KEYS[1], 'mem', 0 - m)
redis.call('HINCRBY', KEYS[1], 'gpu', 0 - g)
return 1
";

/// What to place, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetup {
    /// Single-node Redis URL.
    pub url: String,
    /// The `--tls-*` files (with a `rediss://` URL).
    pub tls: TlsFiles,
    /// Key prefix of the peer's own keys (deleted at the end).
    pub prefix: String,
    /// Workers.
    pub workers: usize,
    /// Each worker's total.
    pub capacity: Resources,
    /// Containers per burst.
    pub containers: usize,
    /// Each container's request.
    pub size: Resources,
}

/// Registers `setup.workers` worker hashes, then `samples` times: plans a burst by rotation
/// (the rotation start moves one worker per burst), sends one script per worker with that
/// worker's share as ONE pipeline and times it, checks every worker took its share, and resets
/// the hashes (untimed). Deletes its keys at the end, also after an error.
pub async fn measure(setup: &PeerSetup, samples: u32) -> Result<Summary, SimError> {
    let client = setup.tls.redis_client(setup.url.as_str())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_err)?;
    let keys: Vec<String> = (0..setup.workers.max(1))
        .map(|i| format!("{}:peer:w:{i:05}", setup.prefix))
        .collect();
    let out = run(&mut conn, setup, &keys, samples).await;
    let deleted: Result<(), redis::RedisError> =
        redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
    let summary = out?;
    deleted.map_err(redis_err)?;
    Ok(summary)
}

async fn reset(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
    cap: Resources,
) -> Result<(), SimError> {
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("HSET")
            .arg(k)
            .arg("status")
            .arg("available")
            .arg("cpu")
            .arg(cap.cpu_millicores)
            .arg("mem")
            .arg(cap.memory_mib)
            .arg("gpu")
            .arg(cap.gpu_count)
            .ignore();
    }
    p.query_async::<()>(conn).await.map_err(redis_err)
}

async fn run(
    conn: &mut redis::aio::MultiplexedConnection,
    setup: &PeerSetup,
    keys: &[String],
    samples: u32,
) -> Result<Summary, SimError> {
    let script = redis::Script::new(SCRIPT);
    let sha = script.get_hash().to_owned();
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query_async::<String>(conn)
        .await
        .map_err(redis_err)?;
    let n = keys.len();
    let mut rec = Recorder::new();
    for b in 0..samples.max(1) as usize {
        reset(conn, keys, setup.capacity).await?;
        // Rotation: container i of burst b goes to worker (b + i) mod n.
        let mut share = vec![0u64; n];
        for i in 0..setup.containers {
            share[(b + i) % n] += 1;
        }
        let mut p = redis::pipe();
        let mut sent = 0usize;
        for (k, &c) in keys.iter().zip(&share) {
            if c == 0 {
                continue;
            }
            let s = setup.size;
            p.cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(k)
                .arg(s.cpu_millicores.saturating_mul(c))
                .arg(s.memory_mib.saturating_mul(c))
                .arg(s.gpu_count.saturating_mul(c));
            sent += 1;
        }
        let t = Instant::now();
        let replies: Vec<i64> = p.query_async(conn).await.map_err(redis_err)?;
        rec.record(t.elapsed());
        let taken = replies.iter().filter(|&&r| r == 1).count();
        if taken != sent {
            return Err(SimError::Config(format!(
                "peer: {taken} of {sent} workers took their share (the burst does not fit)"
            )));
        }
    }
    Ok(rec.summary())
}
