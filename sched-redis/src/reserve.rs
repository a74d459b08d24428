//! Building `reserve.lua` calls (one script per burst or group of worker parts on one node,
//! one per part on a cluster) and reading each worker part's reply.

use crate::client::{Args, Op};
use crate::codec::{bad, rejection, Fields};
use crate::keys::Keys;
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
    burst_op(&repo.keys, batch, mode)
}

/// [`reserve_burst`] with the key layout `k`.
fn burst_op(k: &Keys, batch: &[Cr], mode: CommitMode) -> Op {
    let n: usize = batch.iter().map(|cr| cr.reservations.len()).sum();
    let numkeys = 4 * batch.len() + n;
    let mut a = packed_args(numkeys + 5 + 3 * batch.len() + 6 * n);
    a.push_u64(numkeys as u64);
    for cr in batch {
        part_keys(k, cr, true, &mut a);
    }
    reserve_header(&mut a, mode, None, batch.len());
    for cr in batch {
        part_args(cr, None, &mut a);
    }
    Op::packed(&scripts::RESERVE, a)
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
    let Some((holders, fence)) = cluster else {
        return reserve_burst(repo, std::slice::from_ref(cr), mode);
    };
    let n = cr.reservations.len();
    let mut a = packed_args(4 + 5 + 3 + 7 * n);
    a.push_u64(4);
    part_keys(&repo.keys, cr, false, &mut a);
    reserve_header(&mut a, mode, Some(fence), 1);
    part_args(cr, Some(holders), &mut a);
    Op::packed(&scripts::RESERVE, a)
}

/// An empty argument buffer for about `words` words (ids and numbers: ~24 bytes each).
fn packed_args(words: usize) -> Args {
    Args::with_capacity(1 + words, 24 * (1 + words))
}

/// reserve.lua's first ARGV: mode, topology, fence epoch and token (cluster), number of parts.
fn reserve_header(a: &mut Args, mode: CommitMode, fence: Option<(u64, &str)>, parts: usize) {
    a.push(if mode == CommitMode::AllOrNothing {
        "all"
    } else {
        "partial"
    });
    match fence {
        Some((epoch, token)) => {
            a.push("c");
            a.push_u64(epoch);
            a.push(token);
        }
        None => {
            a.push("s");
            a.push("");
            a.push("");
        }
    }
    a.push_u64(parts as u64);
}

/// One worker part's keys: state, ledger, fence set, events (with `index`, one node: then the
/// index key of each of its containers).
fn part_keys(k: &Keys, cr: &Cr, index: bool, a: &mut Args) {
    let wid = cr.worker_id.as_str();
    for part in ["state", "ledger", "fence", "events"] {
        k.push_part(a, wid, part);
    }
    if index {
        for r in &cr.reservations {
            k.push_index(a, &r.container_id);
        }
    }
}

/// One worker part's ARGV: worker id, expected version, n, then 6 per reservation (container,
/// cpu, memory, gpu, GPU type, lease; on a cluster the holder as a 7th).
fn part_args(cr: &Cr, holders: Option<&[String]>, a: &mut Args) {
    a.push(&cr.worker_id);
    a.push_opt(cr.expected_version);
    a.push_u64(cr.reservations.len() as u64);
    for (i, r) in cr.reservations.iter().enumerate() {
        a.push(&r.container_id);
        let res = &r.resources;
        for v in [res.cpu_millicores, res.memory_mib, res.gpu_count] {
            a.push_u64(v);
        }
        a.push(r.gpu_type.as_deref().unwrap_or_default());
        a.push_opt(r.lease_ms);
        if let Some(h) = holders {
            a.push(h.get(i).map_or("", String::as_str));
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

#[cfg(test)]
mod tests {
    use super::*;
    use sched_core::{ResourceReservation, Resources};

    /// The words reserve.lua got before they were packed: one `String` each, built apart.
    fn unpacked(k: &Keys, batch: &[Cr], mode: CommitMode) -> Vec<String> {
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        let all = if mode == CommitMode::AllOrNothing {
            "all"
        } else {
            "partial"
        };
        args.extend([all, "s", "", ""].map(str::to_owned));
        args.push(batch.len().to_string());
        for cr in batch {
            let wid = &cr.worker_id;
            keys.extend(k.fenced(wid));
            keys.push(k.events(wid));
            keys.extend(cr.reservations.iter().map(|r| k.index(&r.container_id)));
            let version = cr.expected_version.map_or(String::new(), |v| v.to_string());
            args.extend([wid.clone(), version, cr.reservations.len().to_string()]);
            for r in &cr.reservations {
                args.push(r.container_id.clone());
                let res = &r.resources;
                let n = [res.cpu_millicores, res.memory_mib, res.gpu_count];
                args.extend(n.map(|n| n.to_string()));
                args.push(r.gpu_type.clone().unwrap_or_default());
                args.push(r.lease_ms.map_or_else(String::new, |l| l.to_string()));
            }
        }
        let mut words = vec![keys.len().to_string()];
        words.extend(keys);
        words.extend(args);
        words
    }

    #[test]
    fn packed_words_are_the_unpacked_ones() {
        let k = Keys::new("p{x}");
        let mut a = ResourceReservation::new("c:1", Resources::new(250, 0, u64::MAX));
        a.gpu_type = Some("L4 x".into());
        a.lease_ms = Some(30_000);
        let b = ResourceReservation::new("{é}", Resources::new(1, 2, 3));
        let mut w1 = Cr::new("w 1", vec![a, b.clone()]);
        w1.expected_version = Some(7);
        let batch = [w1, Cr::new("w2", vec![b]), Cr::new("w3", Vec::new())];
        for mode in [CommitMode::AllOrNothing, CommitMode::Partial] {
            let op = burst_op(&k, &batch, mode);
            let words: Vec<String> = (op.args.iter())
                .map(|w| String::from_utf8(w.to_vec()).unwrap_or_default())
                .collect();
            assert_eq!(words, unpacked(&k, &batch, mode));
            assert_eq!(op.name, "EVALSHA");
        }
    }
}
