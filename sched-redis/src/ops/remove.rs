//! `remove_worker`: `lua/remove.lua` (then, on a cluster, `lua/unclaim.lua` per container).

use crate::client::Op;
use crate::codec::{bad, Fields};
use crate::{cluster, scripts, RedisRepository};
use redis::Value;
use sched_core::{validate::validate_id, RepoError};

/// How often a standalone `remove_worker` re-reads a ledger that changed under it.
const ATTEMPTS: usize = 8;

pub(crate) async fn remove(repo: &RedisRepository, id: &str) -> Result<bool, RepoError> {
    validate_id("worker", id)?;
    let (k, cluster) = (&repo.keys, repo.is_cluster());
    for _ in 0..ATTEMPTS {
        let mut keys = vec![k.state(id), k.ledger(id), k.tomb(id)];
        let mut args = vec![id.to_owned(), repo.mode().to_owned()];
        if !cluster {
            // The script must declare the index keys it deletes: read the ledger first.
            let hkeys = Op::cmd("HKEYS", vec![k.ledger(id)]);
            let ledger: Vec<String> = repo.run_one(hkeys, false).await?;
            keys.extend(ledger.iter().map(|c| k.index(c)));
            args.extend(ledger);
        }
        let op = Op::script(&scripts::REMOVE, keys, args);
        let reply: Vec<Value> = repo.run_one(op, true).await?;
        match reply.field::<String>(0)?.as_str() {
            "absent" => return Ok(false),
            "retry" => continue,
            "ok" => {
                if cluster && reply.len() > 1 {
                    // The removed ledger's containers: drop their claims naming this worker.
                    let unclaim =
                        |i| Ok(cluster::unclaim_worker(k, &reply.field::<String>(i)?, id));
                    let ops = (1..reply.len())
                        .map(unclaim)
                        .collect::<Result<_, RepoError>>()?;
                    repo.run(ops, true).await?;
                }
                return Ok(true);
            }
            other => return Err(bad(format!("unknown remove reply {other:?}"))),
        }
    }
    Err(bad(format!(
        "worker {id:?}: ledger kept changing during remove_worker"
    )))
}
