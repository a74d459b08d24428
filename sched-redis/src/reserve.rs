//! Building `reserve.lua` calls (one script per burst or group of worker parts on one node,
//! one per part on a cluster) and reading each worker part's reply.

use crate::client::Op;
use crate::codec::{bad, rejection, resource_args, Fields};
use crate::{scripts, RedisRepository};
use redis::Value;
use sched_core::rules;
use sched_core::{CapacityReservation as Cr, CommitMode, RepoError, WorkerResult};

/// Reservations one burst script carries at most (unless a single worker part is larger): a
/// script blocks Redis while it runs, so a huge burst is cut, between worker parts, into
/// scripts of about this size, all in one pipeline.
pub(crate) const BURST_SCRIPT_RESERVATIONS: usize = 1000;

/// `batch` cut into consecutive groups of whole worker parts, each with at most
/// [`BURST_SCRIPT_RESERVATIONS`] reservations (a larger part is a group of its own).
pub(crate) fn burst_groups(batch: &[Cr]) -> impl Iterator<Item = &[Cr]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut n, mut total) = (0, 0);
        while let Some(cr) = rest.get(n) {
            let len = cr.reservations.len();
            if n > 0 && total + len > BURST_SCRIPT_RESERVATIONS {
                break;
            }
            total += len;
            n += 1;
        }
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}

/// reserve.lua for a whole burst on one node: every worker part in one call, each judged on its
/// own (the reply holds one part reply per element, in order). The script reads and writes the
/// container index itself (its keys are declared).
pub(crate) fn reserve_burst(repo: &RedisRepository, batch: &[Cr], mode: CommitMode) -> Op {
    let n: usize = batch.iter().map(|cr| cr.reservations.len()).sum();
    let mut keys = Vec::with_capacity(4 * batch.len() + n);
    let mut args = reserve_header(mode, None, batch.len());
    args.reserve(3 * batch.len() + 6 * n);
    for cr in batch {
        reserve_part(repo, cr, None, &mut keys, &mut args);
    }
    Op::script(&scripts::RESERVE, keys, args)
}

/// reserve.lua for one worker. On a cluster it is told who holds each container (`cluster.0`
/// has per reservation `""` when this call claimed it, else the claiming worker) and the fence
/// epoch and token of the call (`cluster.1`), and replies with the part's reply; without
/// `cluster` it is a one-part [`reserve_burst`] (a one-element array).
pub(crate) fn reserve_script(
    repo: &RedisRepository,
    cr: &Cr,
    mode: CommitMode,
    cluster: Option<(&[String], (u64, &str))>,
) -> Op {
    let (mut keys, mut args) = (Vec::new(), reserve_header(mode, cluster.map(|c| c.1), 1));
    reserve_part(repo, cr, cluster.map(|c| c.0), &mut keys, &mut args);
    Op::script(&scripts::RESERVE, keys, args)
}

/// reserve.lua's first ARGV: mode, topology, fence epoch and token (cluster), number of parts.
fn reserve_header(mode: CommitMode, fence: Option<(u64, &str)>, parts: usize) -> Vec<String> {
    let all = if mode == CommitMode::AllOrNothing {
        "all"
    } else {
        "partial"
    };
    let topology = if fence.is_some() { "c" } else { "s" };
    let (epoch, token) = fence.map_or((String::new(), ""), |(e, t)| (e.to_string(), t));
    let head = [all, topology].map(str::to_owned);
    (head.into_iter())
        .chain([epoch, token.to_owned(), parts.to_string()])
        .collect()
}

/// One worker part of reserve.lua: its keys (on one node with the index keys) and its ARGV,
/// 6 per reservation (7 on a cluster: the holder last).
fn reserve_part(
    repo: &RedisRepository,
    cr: &Cr,
    holders: Option<&[String]>,
    keys: &mut Vec<String>,
    args: &mut Vec<String>,
) {
    let (k, wid) = (&repo.keys, &cr.worker_id);
    keys.extend(k.fenced(wid));
    keys.push(k.events(wid));
    if holders.is_none() {
        keys.extend(cr.reservations.iter().map(|r| k.index(&r.container_id)));
    }
    let version = cr.expected_version.map_or(String::new(), |v| v.to_string());
    args.extend([wid.clone(), version, cr.reservations.len().to_string()]);
    for (i, r) in cr.reservations.iter().enumerate() {
        args.push(r.container_id.clone());
        args.extend(resource_args(&r.resources));
        args.push(r.gpu_type.clone().unwrap_or_default());
        args.push(r.lease_ms.map_or_else(String::new, |l| l.to_string()));
        if let Some(h) = holders {
            args.push(h.get(i).cloned().unwrap_or_default());
        }
    }
}

/// reserve.lua's reply as the worker's result, with the 0-based indexes of the reservations
/// it charged.
pub(crate) fn outcome(cr: &Cr, a: Vec<Value>) -> Result<(WorkerResult, Vec<usize>), RepoError> {
    let worker_id = cr.worker_id.clone();
    let (outcome, charged) = match a.field::<String>(0)?.as_str() {
        "rej" => (Err(rejection(&a[1..])?), Vec::new()),
        "ok" => {
            let remainder = match a.get(8) {
                Some(Value::Array(r)) => Some(rejection(r)?),
                _ => None,
            };
            let (new_version, free, accepted) = (a.field(1)?, a.resources(2)?, a.field(5)?);
            let charged: Vec<usize> = a.field(6)?;
            let outcome = rules::committed(new_version, free, accepted, remainder);
            (
                Ok(outcome),
                charged.into_iter().map(|i| i.saturating_sub(1)).collect(),
            )
        }
        other => return Err(bad(format!("unknown reserve reply {other:?}"))),
    };
    Ok((WorkerResult { worker_id, outcome }, charged))
}
