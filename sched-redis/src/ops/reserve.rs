//! `reserve_batch`: `lua/reserve.lua`, one script per worker, all in one pipeline. On a
//! cluster the claim protocol runs around it ([`crate::cluster::reserve`]).

use crate::client::{Op, Val};
use crate::codec::{self, bad, Fields};
use crate::{cluster, scripts, RedisRepository};
use sched_core::validate::validate_batch;
use sched_core::{CapacityReservation, CommitMode, Committed, RepoError, WorkerResult};

pub(crate) async fn reserve_batch(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    validate_batch(batch)?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    if repo.is_cluster() {
        return cluster::reserve(repo, batch, mode).await;
    }
    let ops = batch
        .iter()
        .map(|cr| reserve_op(repo, cr, mode, None))
        .collect();
    let replies = repo.run(ops, true).await?;
    batch
        .iter()
        .zip(replies)
        .map(|(cr, v)| reserve_result(cr, v).map(|(r, _)| r))
        .collect()
}

/// reserve.lua for one worker. Standalone, the script reads and writes the container index
/// itself (its keys are declared); in cluster mode (`holders` given: per reservation `""` when
/// this call claimed the container, otherwise the claiming worker) it is told who holds what.
pub(crate) fn reserve_op(
    repo: &RedisRepository,
    cr: &CapacityReservation,
    mode: CommitMode,
    holders: Option<&[String]>,
) -> Op {
    let (k, wid) = (&repo.keys, &cr.worker_id);
    let mut keys = vec![k.state(wid), k.ledger(wid)];
    if holders.is_none() {
        keys.extend(cr.reservations.iter().map(|r| k.index(&r.container_id)));
    }
    let mode = match mode {
        CommitMode::AllOrNothing => "all",
        CommitMode::Partial => "partial",
    };
    let mut args = vec![
        wid.clone(),
        cr.expected_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
        mode.to_owned(),
        if holders.is_some() { "c" } else { "s" }.to_owned(),
        cr.reservations.len().to_string(),
    ];
    for (i, r) in cr.reservations.iter().enumerate() {
        args.push(r.container_id.clone());
        args.extend(codec::resource_args(&r.resources));
        args.push(r.gpu_type.clone().unwrap_or_default());
        args.push(holders.and_then(|h| h.get(i)).cloned().unwrap_or_default());
    }
    Op::script(&scripts::RESERVE, keys, args)
}

/// Parses reserve.lua's reply; also returns the 0-based indexes of the charged reservations.
pub(crate) fn reserve_result(
    cr: &CapacityReservation,
    reply: Val,
) -> Result<(WorkerResult, Vec<usize>), RepoError> {
    let a = codec::array(reply)?;
    let (outcome, charged) = match a.text(0)?.as_str() {
        "rej" => (Err(codec::rejection(&a[1..])?), Vec::new()),
        "ok" => {
            let charged = match a.at(6)? {
                Val::Array(c) => c
                    .iter()
                    .map(|v| codec::num(v).map(|n| (n as usize).saturating_sub(1)))
                    .collect::<Result<Vec<_>, _>>()?,
                Val::Nil => Vec::new(),
                other => return Err(bad(format!("bad charged list {other:?}"))),
            };
            let remainder = match a.get(7) {
                Some(Val::Array(r)) => Some(codec::rejection(r)?),
                _ => None,
            };
            let new_version = a.num(1)?;
            let (free, accepted) = (a.resources(2)?, a.num(5)? as usize);
            (
                Ok(Committed {
                    new_version,
                    free,
                    accepted,
                    remainder,
                }),
                charged,
            )
        }
        other => return Err(bad(format!("unknown reserve reply {other:?}"))),
    };
    Ok((
        WorkerResult {
            worker_id: cr.worker_id.clone(),
            outcome,
        },
        charged,
    ))
}
