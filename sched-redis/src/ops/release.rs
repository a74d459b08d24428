//! `release_batch`: the container index, then `lua/release.lua` per worker in one pipeline
//! (then, on a cluster, the claims are dropped).

use crate::client::{Op, Val};
use crate::codec::{self, Fields};
use crate::{cluster, scripts, RedisRepository};
use sched_core::validate::validate_release;
use sched_core::{ReleaseOutcome, Released, RepoError};
use std::collections::BTreeMap;

/// Two round trips (three on a cluster): where each container is held, one release script
/// per holding worker, (cluster) drop the claims.
pub(crate) async fn release_batch(
    repo: &RedisRepository,
    container_ids: &[String],
) -> Result<Vec<ReleaseOutcome>, RepoError> {
    validate_release(container_ids)?;
    if container_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (k, cluster) = (&repo.keys, repo.is_cluster());
    let ops = container_ids
        .iter()
        .map(|c| Op::cmd("GET", vec![k.index(c)]))
        .collect();
    let index: Vec<Option<String>> = repo
        .run(ops, false)
        .await?
        .iter()
        .map(codec::opt_string)
        .collect::<Result<_, _>>()?;
    // Group by worker, keeping the input order inside each group.
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, v) in index.iter().enumerate() {
        if let Some(v) = v {
            groups.entry(cluster::holder_of(v)).or_default().push(i);
        }
    }
    let mut out: Vec<ReleaseOutcome> = container_ids
        .iter()
        .map(|c| ReleaseOutcome {
            container_id: c.clone(),
            released: None,
        })
        .collect();
    if groups.is_empty() {
        return Ok(out);
    }
    let ops = groups
        .iter()
        .map(|(wid, idx)| {
            let mut keys = vec![k.state(wid), k.ledger(wid)];
            let mut args = vec![(*wid).to_owned(), repo.mode().to_owned()];
            for &i in idx {
                if !cluster {
                    keys.push(k.index(&container_ids[i]));
                }
                args.push(container_ids[i].clone());
            }
            Op::script(&scripts::RELEASE, keys, args)
        })
        .collect();
    let replies = repo.run(ops, true).await?;
    let mut unclaim = Vec::new();
    for ((wid, idx), reply) in groups.iter().zip(replies) {
        for (&i, entry) in idx.iter().zip(codec::array(reply)?) {
            let released = match entry {
                Val::Array(e) => Some(Released {
                    worker_id: (*wid).to_owned(),
                    resources: e.resources(0)?,
                    new_version: e.num(3)?,
                }),
                _ => None,
            };
            // Cluster: drop the claim when we released it, or when it is an abandoned claim
            // (no ledger entry behind it for longer than claim_grace).
            if let (true, Some(v)) = (cluster, &index[i]) {
                if released.is_some() || cluster::expired(repo, v).unwrap_or(true) {
                    unclaim.push(cluster::unclaim(k, &container_ids[i], v));
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
