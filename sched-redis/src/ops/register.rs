//! `register_worker`: `lua/register.lua`.

use crate::client::Op;
use crate::codec::{bad, decode, kind, resource_args, Fields};
use crate::{scripts, RedisRepository};
use redis::Value;
use sched_core::{validate::validate_spec, RepoError, Worker, WorkerSpec};

pub(crate) async fn register(
    repo: &RedisRepository,
    spec: &WorkerSpec,
) -> Result<Worker, RepoError> {
    validate_spec(spec)?;
    let (id, k) = (&spec.id, &repo.keys);
    let flags = [spec.requires_pool_selector, spec.preemptable].map(|b| u8::from(b).to_string());
    let mut args = vec![
        id.clone(),
        spec.pool.clone(),
        spec.status.as_str().to_owned(),
    ];
    args.extend([
        spec.priority.to_string(),
        spec.gpu_type.clone().unwrap_or_default(),
    ]);
    args.extend(flags.into_iter().chain(resource_args(&spec.total)));
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
    let replies = repo.run(ops, true).await?;
    decode::<Value>(&replies[0])?;
    let a: Vec<Value> = decode(&replies[1])?;
    match a.field::<String>(0)?.as_str() {
        "ok" => Ok(Worker {
            free: a.resources(2)?,
            ..Worker::from_spec(spec, a.field(1)?)
        }),
        "below" => Err(RepoError::TotalBelowReserved {
            resource: kind(&a.field::<String>(1)?)?,
            total: a.field(2)?,
            reserved: a.field(3)?,
        }),
        other => Err(bad(format!("unknown register reply {other:?}"))),
    }
}
