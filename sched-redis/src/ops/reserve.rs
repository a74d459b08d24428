//! `reserve_batch`: `lua/reserve.lua`, one script per worker, all in one pipeline. On a
//! cluster the claim protocol runs around it ([`crate::cluster::reserve`]).

use crate::client::{Op, Reply};
use crate::codec::{bad, decode, rejection, resource_args, Fields};
use crate::{cluster, scripts, RedisRepository};
use redis::Value;
use sched_core::validate::validate_batch;
use sched_core::{CapacityReservation as Cr, CommitMode, Committed, RepoError, WorkerResult};

pub(crate) async fn reserve(
    repo: &RedisRepository,
    batch: &[Cr],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    validate_batch(batch)?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    if repo.is_cluster() {
        return cluster::reserve(repo, batch, mode).await;
    }
    let ops = batch.iter().map(|cr| script(repo, cr, mode, None));
    let replies = repo.run(ops.collect(), true).await?;
    let results = batch
        .iter()
        .zip(&replies)
        .map(|(cr, v)| Ok(outcome(cr, v)?.0));
    results.collect()
}

/// reserve.lua for one worker. Standalone, the script reads and writes the container index
/// itself (its keys are declared); on a cluster it is told who holds each container:
/// `holders` has per reservation `""` when this call claimed it, else the claiming worker.
pub(crate) fn script(
    repo: &RedisRepository,
    cr: &Cr,
    mode: CommitMode,
    holders: Option<&[String]>,
) -> Op {
    let (k, wid) = (&repo.keys, &cr.worker_id);
    let mut keys = vec![k.state(wid), k.ledger(wid)];
    if holders.is_none() {
        keys.extend(cr.reservations.iter().map(|r| k.index(&r.container_id)));
    }
    let mut args = vec![
        wid.clone(),
        cr.expected_version.map_or(String::new(), |v| v.to_string()),
        if mode == CommitMode::AllOrNothing {
            "all"
        } else {
            "partial"
        }
        .to_owned(),
        if holders.is_some() { "c" } else { "s" }.to_owned(),
        cr.reservations.len().to_string(),
    ];
    for (i, r) in cr.reservations.iter().enumerate() {
        args.push(r.container_id.clone());
        args.extend(resource_args(&r.resources));
        args.push(r.gpu_type.clone().unwrap_or_default());
        args.push(holders.and_then(|h| h.get(i)).cloned().unwrap_or_default());
    }
    Op::script(&scripts::RESERVE, keys, args)
}

/// reserve.lua's reply as the worker's result, with the 0-based indexes of the reservations
/// it charged.
pub(crate) fn outcome(cr: &Cr, reply: &Reply) -> Result<(WorkerResult, Vec<usize>), RepoError> {
    let a: Vec<Value> = decode(reply)?;
    let worker_id = cr.worker_id.clone();
    match a.field::<String>(0)?.as_str() {
        "rej" => Ok((
            WorkerResult {
                worker_id,
                outcome: Err(rejection(&a[1..])?),
            },
            Vec::new(),
        )),
        "ok" => {
            let remainder = match a.get(7) {
                Some(Value::Array(r)) => Some(rejection(r)?),
                _ => None,
            };
            let (new_version, free, accepted) = (a.field(1)?, a.resources(2)?, a.field(5)?);
            let outcome = Ok(Committed {
                new_version,
                free,
                accepted,
                remainder,
            });
            let charged: Vec<usize> = a.field(6)?;
            let charged = charged.into_iter().map(|i| i.saturating_sub(1)).collect();
            Ok((WorkerResult { worker_id, outcome }, charged))
        }
        other => Err(bad(format!("unknown reserve reply {other:?}"))),
    }
}
