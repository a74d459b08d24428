//! `get_worker` and `list_workers`: plain pipelined reads of the worker hashes.

use crate::client::Op;
use crate::codec;
use crate::RedisRepository;
use sched_core::validate::validate_id;
use sched_core::{RepoError, Worker};

pub(crate) async fn get_worker(
    repo: &RedisRepository,
    worker_id: &str,
) -> Result<Option<Worker>, RepoError> {
    validate_id("worker", worker_id)?;
    let m = codec::hash(
        repo.run_one(Op::cmd("HGETALL", vec![repo.keys.state(worker_id)]), false)
            .await?,
    )?;
    if m.is_empty() {
        return Ok(None);
    }
    codec::worker(&m).map(Some)
}

/// Two round trips: the id set, then every worker hash in one pipeline.
pub(crate) async fn list_workers(
    repo: &RedisRepository,
    pool: Option<&str>,
) -> Result<Vec<Worker>, RepoError> {
    if let Some(p) = pool {
        validate_id("pool", p)?;
    }
    let ids = repo
        .run_one(Op::cmd("SMEMBERS", vec![repo.keys.workers()]), false)
        .await?;
    let ops: Vec<Op> = codec::array(ids)?
        .iter()
        .map(|id| {
            Ok(Op::cmd(
                "HGETALL",
                vec![repo.keys.state(&codec::string(id)?)],
            ))
        })
        .collect::<Result<_, RepoError>>()?;
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(ops.len());
    for reply in repo.run(ops, false).await? {
        let m = codec::hash(reply)?;
        if m.is_empty() {
            continue; // removed (the id stays in the set as a tombstone)
        }
        let w = codec::worker(&m)?;
        if pool.is_none_or(|p| w.pool == p) {
            out.push(w);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
