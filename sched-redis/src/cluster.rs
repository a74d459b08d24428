//! The Redis Cluster claim protocol of `reserve_batch`.
//!
//! A worker's keys share one slot, but a container's index key has its own, so no script can
//! check "held nowhere else" and charge the worker atomically. Instead every container is first
//! *claimed* (`lua/claim.lua`: `SET` if absent, value `<worker>\n<token>\n<ms>`), then the worker
//! scripts run, told which containers this call claimed. The phases, one function each:
//!
//! 1. [`claim`]: one pipeline of claim scripts, one per container.
//! 2. [`run_scripts`]: one pipeline of reserve scripts, plus a ledger look-up per container
//!    claimed by another call (is its reservation committed?).
//! 3. [`await_contested`]: under contention only, poll claims of other calls that have not
//!    committed yet; then those that stay uncommitted are reported as `Contended`.
//! 4. [`drop_claims`]: delete this call's claims that did not commit, and abandoned claims
//!    (older than `claim_grace`) of other calls.
//!
//! See `sched-redis/ARCHITECTURE.md` for why this is safe and for its known weaknesses.

use crate::client::{Op, Val};
use crate::codec::{self, ok, string};
use crate::keys::Keys;
use crate::ops::reserve::{reserve_op, reserve_result};
use crate::{scripts, RedisRepository};
use sched_core::{CapacityReservation, CommitMode, Rejection, RepoError, WorkerResult};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a contested, not yet committed claim is re-read.
const CONTESTED_POLLS: u64 = 10;

/// Per reservation of the batch: `None` when this call made the claim, otherwise the value of
/// the claim found (another call's).
type Claims = Vec<Vec<Option<String>>>;

/// A worker script's outcome and the indexes of the reservations it charged.
type Parsed = Vec<(WorkerResult, Vec<usize>)>;

/// The worker id named by an index value (`<worker id>` or, in cluster mode,
/// `<worker id>\n<token>\n<ms>`). Ids never hold control characters, so `\n` is a safe separator.
pub(crate) fn holder_of(value: &str) -> &str {
    value.split('\n').next().unwrap_or(value)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Whether the claim `value` is older than `claim_grace`; `None` when it carries no time.
pub(crate) fn expired(repo: &RedisRepository, value: &str) -> Option<bool> {
    let ms: u128 = value.split('\n').nth(2)?.parse().ok()?;
    Some(now_ms().saturating_sub(ms) > repo.claim_grace.as_millis())
}

/// Deletes the claim of `container_id` if its value is still `value`.
pub(crate) fn unclaim(keys: &Keys, container_id: &str, value: &str) -> Op {
    let args = vec![value.to_owned(), String::new()];
    Op::script(&scripts::UNCLAIM, vec![keys.index(container_id)], args)
}

/// Deletes the claim of `container_id` if it names `worker_id` (whichever call made it).
pub(crate) fn unclaim_worker(keys: &Keys, container_id: &str, worker_id: &str) -> Op {
    let args = vec![worker_id.to_owned(), "worker".to_owned()];
    Op::script(&scripts::UNCLAIM, vec![keys.index(container_id)], args)
}

/// `reserve_batch` on a cluster: two round trips (claims, scripts) when nothing is contested.
pub(crate) async fn reserve(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    let (token, ms) = (format!("{:016x}", rand::random::<u64>()), now_ms());
    let values: Vec<String> = batch
        .iter()
        .map(|cr| format!("{}\n{token}\n{ms}", cr.worker_id))
        .collect();
    let claims = match claim(repo, batch, &values).await? {
        (claims, None) => claims,
        (claims, Some(e)) => {
            drop_claims(repo, batch, &values, &claims, &[], &[]).await;
            return Err(e);
        }
    };
    let (parsed, committed) = match run_scripts(repo, batch, mode, &claims).await {
        Ok(r) => r,
        // The worker scripts may have run: keep the claims (they are the one-holder guarantee
        // for whatever committed) and report the doubt.
        Err(e) if e.is_ambiguous() => return Err(e),
        Err(e) => {
            drop_claims(repo, batch, &values, &claims, &[], &[]).await;
            return Err(e);
        }
    };
    let committed = await_contested(repo, batch, &claims, &parsed, committed).await?;
    // An AlreadyReserved whose claim has no committed reservation behind it (the claiming call
    // is still in flight, or died) must not be reported as "held there": callers treat that as
    // placed. It becomes Contended ("retry"); abandoned ones are dropped below.
    let mut stale = Vec::new();
    let (results, charged): (Vec<_>, Vec<_>) = parsed
        .into_iter()
        .map(|(mut r, charged)| {
            if let Some(rej) = rejection_mut(&mut r) {
                if let Rejection::AlreadyReserved { container_id, .. } = rej {
                    if !committed.contains(container_id) {
                        stale.push(container_id.clone());
                        *rej = Rejection::Contended {
                            container_id: container_id.clone(),
                        };
                    }
                }
            }
            (r, charged)
        })
        .unzip();
    drop_claims(repo, batch, &values, &claims, &charged, &stale).await;
    Ok(results)
}

fn rejection_mut(r: &mut WorkerResult) -> Option<&mut Rejection> {
    match &mut r.outcome {
        Err(rej) => Some(rej),
        Ok(c) => c.remainder.as_mut(),
    }
}

/// Phase 1: claims every container. A claim that failed with a server error is not this
/// call's; the first such error is returned next to the claims.
async fn claim(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    values: &[String],
) -> Result<(Claims, Option<RepoError>), RepoError> {
    let ops = batch
        .iter()
        .zip(values)
        .flat_map(|(cr, v)| {
            cr.reservations.iter().map(|r| {
                Op::script(
                    &scripts::CLAIM,
                    vec![repo.keys.index(&r.container_id)],
                    vec![v.clone()],
                )
            })
        })
        .collect();
    let mut replies = repo.run(ops, true).await?.into_iter();
    let mut failure = None;
    let claims = batch
        .iter()
        .map(|cr| {
            cr.reservations
                .iter()
                .map(|_| {
                    match replies
                        .next()
                        .map_or(Ok(Val::Nil), ok)
                        .and_then(|v| string(&v))
                    {
                        Ok(s) if s.is_empty() => None,
                        Ok(s) => Some(s),
                        Err(e) => {
                            failure.get_or_insert(e);
                            Some(String::new())
                        }
                    }
                })
                .collect()
        })
        .collect();
    Ok((claims, failure))
}

/// Phase 2: the worker scripts, told who holds each container; in the same pipeline, whether
/// each container claimed by another call is committed in that worker's ledger.
async fn run_scripts(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
    claims: &Claims,
) -> Result<(Parsed, HashSet<String>), RepoError> {
    let mut ops = Vec::with_capacity(batch.len());
    let mut contested = Vec::new();
    for (cr, c) in batch.iter().zip(claims) {
        let holders: Vec<String> = c
            .iter()
            .map(|v| v.as_deref().map_or("", holder_of).to_owned())
            .collect();
        ops.push(reserve_op(repo, cr, mode, Some(&holders)));
        for ((r, h), claim) in cr.reservations.iter().zip(holders).zip(c) {
            if claim.is_some() {
                contested.push((r.container_id.clone(), h));
            }
        }
    }
    ops.extend(contested.iter().map(|(c, w)| ledger_get(&repo.keys, c, w)));
    let mut replies = repo.run(ops, true).await?;
    let lookups = replies.split_off(batch.len());
    let committed = contested
        .into_iter()
        .zip(lookups)
        .filter(|(_, v)| !matches!(v, Val::Nil | Val::Err(_)))
        .map(|((c, _), _)| c)
        .collect();
    let parsed = batch
        .iter()
        .zip(replies)
        .map(|(cr, v)| reserve_result(cr, v));
    Ok((parsed.collect::<Result<_, _>>()?, committed))
}

fn ledger_get(keys: &Keys, container_id: &str, worker_id: &str) -> Op {
    Op::cmd(
        "HGET",
        vec![keys.ledger(worker_id), container_id.to_owned()],
    )
}

/// Phase 3, under contention only: containers rejected because another call's claim holds them
/// with no committed reservation behind it yet. Usually that call's worker script is just
/// about to commit: re-read the claim and the holder's ledger a few times (1, 2, ... ms apart)
/// until it commits, the claim goes away or changes hands, or we give up. Returns `committed`
/// with the containers found committed added.
async fn await_contested(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    claims: &Claims,
    parsed: &Parsed,
    mut committed: HashSet<String>,
) -> Result<HashSet<String>, RepoError> {
    let mut pending: Vec<(String, String, String)> = Vec::new(); // container, holder, claim
    for ((r, _), (cr, c)) in parsed.iter().zip(batch.iter().zip(claims)) {
        let rej = match &r.outcome {
            Err(rej) => Some(rej),
            Ok(c) => c.remainder.as_ref(),
        };
        if let Some(Rejection::AlreadyReserved {
            container_id,
            worker_id,
        }) = rej
        {
            let j = cr
                .reservations
                .iter()
                .position(|x| &x.container_id == container_id);
            let raw = j
                .and_then(|j| c[j].as_ref())
                .filter(|_| !committed.contains(container_id));
            if let Some(raw) = raw {
                pending.push((container_id.clone(), worker_id.clone(), raw.clone()));
            }
        }
    }
    for attempt in 0..CONTESTED_POLLS {
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
        let ops = pending
            .iter()
            .flat_map(|(c, w, _)| {
                [
                    Op::cmd("GET", vec![repo.keys.index(c)]),
                    ledger_get(&repo.keys, c, w),
                ]
            })
            .collect();
        let replies = repo.run(ops, false).await?;
        let mut still = Vec::new();
        for ((c, w, raw), pair) in pending.into_iter().zip(replies.chunks(2)) {
            let claim = pair.first().map(codec::opt_string).transpose()?.flatten();
            if !matches!(pair.get(1), Some(Val::Nil | Val::Err(_)) | None) {
                committed.insert(c);
            } else if claim.as_deref() == Some(raw.as_str()) {
                still.push((c, w, raw));
            }
            // else: the claim went away or changed hands: report a conflict (retry).
        }
        pending = still;
    }
    Ok(committed)
}

/// Phase 4: deletes this call's claims that did not commit (`charged` per worker; all of them
/// when it is empty), and the `stale` containers' claims of other calls that are older than
/// `claim_grace`. Best effort: `release_batch` clears leftovers after `claim_grace`.
async fn drop_claims(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    values: &[String],
    claims: &Claims,
    charged: &[Vec<usize>],
    stale: &[String],
) {
    let mut ops = Vec::new();
    for (i, ((cr, c), mine)) in batch.iter().zip(claims).zip(values).enumerate() {
        let charged = charged.get(i).map_or(&[][..], Vec::as_slice);
        for (j, (r, claim)) in cr.reservations.iter().zip(c).enumerate() {
            let value = match claim {
                None if !charged.contains(&j) => mine,
                Some(raw)
                    if stale.contains(&r.container_id) && expired(repo, raw) == Some(true) =>
                {
                    raw
                }
                _ => continue,
            };
            ops.push(unclaim(&repo.keys, &r.container_id, value));
        }
    }
    if !ops.is_empty() {
        if let Err(e) = repo.run(ops, true).await {
            tracing::warn!(error = %e, "could not drop unused claims; release_batch clears them after claim_grace");
        }
    }
}
