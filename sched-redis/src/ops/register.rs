//! `register_worker`: `lua/register.lua`.

use crate::client::Op;
use crate::codec::{self, bad, Fields};
use crate::scripts;
use crate::RedisRepository;
use sched_core::validate::validate_spec;
use sched_core::{RepoError, Worker, WorkerSpec};

pub(crate) async fn register_worker(
    repo: &RedisRepository,
    spec: &WorkerSpec,
) -> Result<Worker, RepoError> {
    validate_spec(spec)?;
    let (id, k) = (&spec.id, &repo.keys);
    let mut args = vec![
        id.clone(),
        spec.pool.clone(),
        spec.status.as_str().to_owned(),
        spec.priority.to_string(),
        spec.gpu_type.clone().unwrap_or_default(),
        u8::from(spec.requires_pool_selector).to_string(),
        u8::from(spec.preemptable).to_string(),
    ];
    args.extend(codec::resource_args(&spec.total));
    // The id goes into the set first (same pipeline): list_workers never misses a registered
    // worker. The set is never shrunk, so it doubles as the tombstone index.
    let ops = vec![
        Op::cmd("SADD", vec![k.workers(), id.clone()]),
        Op::script(
            &scripts::REGISTER,
            vec![k.state(id), k.ledger(id), k.tomb(id)],
            args,
        ),
    ];
    let [added, reply]: [_; 2] = repo
        .run(ops, true)
        .await?
        .try_into()
        .map_err(|_| bad("no reply"))?;
    codec::ok(added)?;
    let a = codec::array(reply)?;
    match a.text(0)?.as_str() {
        "ok" => {
            let mut w = Worker::from_spec(spec, a.num(1)?);
            w.free = a.resources(2)?;
            Ok(w)
        }
        "below" => Err(RepoError::TotalBelowReserved {
            resource: codec::kind(a.at(1)?)?,
            total: a.num(2)?,
            reserved: a.num(3)?,
        }),
        other => Err(bad(format!("unknown register reply {other:?}"))),
    }
}
