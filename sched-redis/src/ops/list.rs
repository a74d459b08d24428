//! `get_worker` and `list_workers`: plain pipelined reads of the worker hashes.

use crate::client::Op;
use crate::codec::{decode, worker};
use crate::RedisRepository;
use sched_core::{validate::validate_id, RepoError, Worker};
use std::collections::HashMap;

pub(crate) async fn get(repo: &RedisRepository, id: &str) -> Result<Option<Worker>, RepoError> {
    validate_id("worker", id)?;
    let m: HashMap<_, _> = repo
        .run_one(Op::cmd("HGETALL", vec![repo.keys.state(id)]), false)
        .await?;
    if m.is_empty() {
        return Ok(None);
    }
    worker(&m).map(Some)
}

/// Two round trips: the id set, then every worker hash in one pipeline.
pub(crate) async fn list(
    repo: &RedisRepository,
    pool: Option<&str>,
) -> Result<Vec<Worker>, RepoError> {
    if let Some(p) = pool {
        validate_id("pool", p)?;
    }
    let ids: Vec<String> = repo
        .run_one(Op::cmd("SMEMBERS", vec![repo.keys.workers()]), false)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ops = ids
        .iter()
        .map(|id| Op::cmd("HGETALL", vec![repo.keys.state(id)]))
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for reply in repo.run(ops, false).await? {
        let m: HashMap<_, _> = decode(&reply)?;
        if m.is_empty() {
            continue; // removed (the id stays in the set as a tombstone)
        }
        let w = worker(&m)?;
        if pool.is_none_or(|p| w.pool == p) {
            out.push(w);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
