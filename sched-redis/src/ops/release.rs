//! `release_batch`: the container index, then `lua/release.lua` per worker in one pipeline
//! (then, on a cluster, the claims are dropped).

use crate::client::Op;
use crate::codec::{decode, Fields};
use crate::{cluster, scripts, RedisRepository};
use redis::Value;
use sched_core::validate::validate_release;
use sched_core::{ReleaseOutcome, Released, RepoError};
use std::collections::BTreeMap;

/// Two round trips (three on a cluster): where each container is held, one release script per
/// holding worker, (cluster) drop the claims.
pub(crate) async fn release(
    repo: &RedisRepository,
    ids: &[String],
) -> Result<Vec<ReleaseOutcome>, RepoError> {
    validate_release(ids)?;
    let none = |c: &String| ReleaseOutcome {
        container_id: c.clone(),
        released: None,
    };
    let mut out: Vec<ReleaseOutcome> = ids.iter().map(none).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let (k, cluster) = (&repo.keys, repo.is_cluster());
    let index = ids
        .iter()
        .map(|c| Op::cmd("GET", vec![k.index(c)]))
        .collect();
    let index: Vec<Option<String>> = (repo.run(index, false).await?.iter())
        .map(decode)
        .collect::<Result<_, _>>()?;
    // Group by worker, keeping the input order inside each group.
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, v) in index.iter().enumerate() {
        if let Some(v) = v {
            groups.entry(cluster::holder_of(v)).or_default().push(i);
        }
    }
    if groups.is_empty() {
        return Ok(out);
    }
    let ops = groups.iter().map(|(w, idx)| {
        let mut keys = vec![k.state(w), k.ledger(w)];
        if !cluster {
            keys.extend(idx.iter().map(|&i| k.index(&ids[i])));
        }
        let mut args = vec![w.to_string(), repo.mode().to_owned()];
        args.extend(idx.iter().map(|&i| ids[i].clone()));
        Op::script(&scripts::RELEASE, keys, args)
    });
    let replies = repo.run(ops.collect(), true).await?;
    let mut unclaim = Vec::new();
    for ((w, idx), reply) in groups.iter().zip(replies) {
        for (&i, entry) in idx.iter().zip(decode::<Vec<Value>>(&reply)?) {
            let released = match entry {
                Value::Array(e) => Some(Released {
                    worker_id: w.to_string(),
                    resources: e.resources(0)?,
                    new_version: e.field(3)?,
                }),
                _ => None,
            };
            // Cluster: drop the claim when we released it, or when it is an abandoned claim
            // (no ledger entry behind it for longer than claim_grace).
            if let (true, Some(v)) = (cluster, &index[i]) {
                if released.is_some() || cluster::expired(repo, v).unwrap_or(true) {
                    unclaim.push(cluster::unclaim(k, &ids[i], v));
                }
            }
            out[i].released = released;
        }
    }
    if !unclaim.is_empty() {
        repo.run(unclaim, true).await?;
    }
    Ok(out)
}
