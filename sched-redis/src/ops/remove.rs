//! `remove_worker`: `lua/remove.lua` (then, on a cluster, `lua/unclaim.lua` per container).

use crate::client::Op;
use crate::codec::{self, bad, Fields};
use crate::{cluster, scripts, RedisRepository};
use sched_core::validate::validate_id;
use sched_core::RepoError;

/// How often `remove_worker` re-reads a ledger that changed under it (standalone mode).
const REMOVE_ATTEMPTS: usize = 8;

pub(crate) async fn remove_worker(
    repo: &RedisRepository,
    worker_id: &str,
) -> Result<bool, RepoError> {
    validate_id("worker", worker_id)?;
    let k = &repo.keys;
    let cluster = repo.is_cluster();
    for _ in 0..REMOVE_ATTEMPTS {
        let mut keys = vec![k.state(worker_id), k.ledger(worker_id), k.tomb(worker_id)];
        let mut args = vec![worker_id.to_owned(), repo.mode().to_owned()];
        if !cluster {
            // The script must declare the index keys it deletes: read the ledger first.
            let cids = repo
                .run_one(Op::cmd("HKEYS", vec![k.ledger(worker_id)]), false)
                .await?;
            for c in codec::array(cids)? {
                let c = codec::string(&c)?;
                keys.push(k.index(&c));
                args.push(c);
            }
        }
        let reply = repo
            .run_one(Op::script(&scripts::REMOVE, keys, args), true)
            .await?;
        let a = codec::array(reply)?;
        match a.text(0)?.as_str() {
            "absent" => return Ok(false),
            "retry" => continue,
            "ok" => {
                if cluster && a.len() > 1 {
                    let ops = a[1..]
                        .iter()
                        .map(|c| Ok(cluster::unclaim_worker(k, &codec::string(c)?, worker_id)))
                        .collect::<Result<Vec<_>, RepoError>>()?;
                    repo.run(ops, true).await?;
                }
                return Ok(true);
            }
            other => return Err(bad(format!("unknown remove reply {other:?}"))),
        }
    }
    Err(bad(format!(
        "worker {worker_id:?}: ledger kept changing during remove_worker"
    )))
}
