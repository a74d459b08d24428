//! The Redis Cluster claim protocol of `reserve_batch`.
//!
//! A worker's keys share one slot but each container's index key has its own, so no script can
//! check "held nowhere else" and charge the worker atomically. Instead each container is first
//! *claimed* (`lua/claim.lua`: set if absent, value `<worker>\n<token>\n<ms>`), then the worker
//! scripts run, told which containers this call claimed. One method per phase of [`Call`]:
//! [`claim`](Call::claim), [`run_scripts`](Call::run_scripts),
//! [`await_contested`](Call::await_contested), [`drop_claims`](Call::drop_claims).
//! `sched-redis/ARCHITECTURE.md` explains why this is safe and its known weaknesses.

use crate::client::{Op, Reply};
use crate::codec::decode;
use crate::keys::Keys;
use crate::ops::reserve::{outcome, script};
use crate::{scripts, RedisRepository};
use sched_core::{CapacityReservation, CommitMode, Rejection, RepoError, WorkerResult};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a contested, not yet committed claim is re-read.
const CONTESTED_POLLS: u64 = 10;

/// Each worker's result, with the indexes of the reservations it charged.
type Parsed = Vec<(WorkerResult, Vec<usize>)>;

/// The worker id named by an index value (`<worker id>` or, in cluster mode,
/// `<worker id>\n<token>\n<ms>`). Ids never hold control characters, so `\n` is a safe separator.
pub(crate) fn holder_of(value: &str) -> &str {
    value.split('\n').next().unwrap_or(value)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Whether the claim `value` is older than `claim_grace`; `None` when it carries no time.
pub(crate) fn expired(repo: &RedisRepository, value: &str) -> Option<bool> {
    let ms: u128 = value.split('\n').nth(2)?.parse().ok()?;
    Some(now_ms().saturating_sub(ms) > repo.claim_grace.as_millis())
}

/// Deletes the claim of `container` if its value is still `value`.
pub(crate) fn unclaim(keys: &Keys, container: &str, value: &str) -> Op {
    let args = vec![value.to_owned(), String::new()];
    Op::script(&scripts::UNCLAIM, vec![keys.index(container)], args)
}

/// Deletes the claim of `container` if it names `worker` (whichever call made it).
pub(crate) fn unclaim_worker(keys: &Keys, container: &str, worker: &str) -> Op {
    let args = vec![worker.to_owned(), "worker".to_owned()];
    Op::script(&scripts::UNCLAIM, vec![keys.index(container)], args)
}

/// Whether a ledger look-up found the reservation.
fn in_ledger(lookup: &Reply) -> bool {
    !matches!(lookup, Ok(redis::Value::Nil) | Err(_))
}

fn ledger_get(keys: &Keys, container: &str, worker: &str) -> Op {
    Op::cmd("HGET", vec![keys.ledger(worker), container.to_owned()])
}

/// One cluster `reserve_batch` call: two round trips (claims, scripts) when nothing is
/// contested, a third to drop claims that did not commit.
pub(crate) async fn reserve(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    let (token, ms) = (format!("{:016x}", rand::random::<u64>()), now_ms());
    let mut call = Call {
        repo,
        batch,
        values: batch
            .iter()
            .map(|cr| format!("{}\n{token}\n{ms}", cr.worker_id))
            .collect(),
        items: (batch.iter().enumerate())
            .flat_map(|(i, cr)| {
                cr.reservations
                    .iter()
                    .enumerate()
                    .map(move |(j, r)| (i, j, r.container_id.as_str()))
            })
            .collect(),
        claims: Vec::new(),
    };
    if let Some(e) = call.claim().await? {
        call.drop_claims(&[], &[]).await;
        return Err(e);
    }
    let (parsed, committed) = match call.run_scripts(mode).await {
        Ok(r) => r,
        // The worker scripts may have run: keep the claims (they are the one-holder guarantee
        // for whatever committed) and report the doubt.
        Err(e) if e.is_ambiguous() => return Err(e),
        Err(e) => {
            call.drop_claims(&[], &[]).await;
            return Err(e);
        }
    };
    let committed = call.await_contested(&parsed, committed).await?;
    // An AlreadyReserved whose claim has no committed reservation behind it (its call is still
    // in flight, or died) must not say "held there": callers treat that as placed. It becomes
    // Contended ("retry"), and the claim is dropped if abandoned.
    let mut stale = Vec::new();
    let (results, charged): (Vec<_>, Vec<_>) = (parsed.into_iter())
        .map(|(mut r, charged)| {
            let rej = match &mut r.outcome {
                Err(rej) => Some(rej),
                Ok(c) => c.remainder.as_mut(),
            };
            if let Some(rej) = rej {
                if let Rejection::AlreadyReserved {
                    container_id: c, ..
                } = rej
                {
                    if !committed.contains(c) {
                        stale.push(c.clone());
                        *rej = Rejection::Contended {
                            container_id: c.clone(),
                        };
                    }
                }
            }
            (r, charged)
        })
        .unzip();
    call.drop_claims(&charged, &stale).await;
    Ok(results)
}

struct Call<'a> {
    repo: &'a RedisRepository,
    batch: &'a [CapacityReservation],
    /// This call's claim value, per worker of the batch.
    values: Vec<String>,
    /// Every reservation of the batch: (worker index, index in its worker, container).
    items: Vec<(usize, usize, &'a str)>,
    /// Per item: `None` when this call made the claim, else the claim value found.
    claims: Vec<Option<String>>,
}

impl Call<'_> {
    /// Phase 1: claims every container. A claim that failed with a server error is not this
    /// call's; the first such error is returned.
    async fn claim(&mut self) -> Result<Option<RepoError>, RepoError> {
        let claim = |&(i, _, c): &(usize, usize, &str)| {
            let args = vec![self.values[i].clone()];
            Op::script(&scripts::CLAIM, vec![self.repo.keys.index(c)], args)
        };
        let replies = self
            .repo
            .run(self.items.iter().map(claim).collect(), true)
            .await?;
        let mut failure = None;
        for v in replies {
            self.claims.push(match decode::<String>(&v) {
                Ok(s) => Some(s).filter(|s| !s.is_empty()),
                Err(e) => {
                    failure.get_or_insert(e);
                    Some(String::new()) // not this call's
                }
            });
        }
        Ok(failure)
    }

    /// This call's claims and the claims found, with their items.
    fn claimed(&self) -> impl Iterator<Item = (&(usize, usize, &str), &Option<String>)> {
        self.items.iter().zip(&self.claims)
    }

    /// Phase 2: the worker scripts, told who holds each container; in the same pipeline, for
    /// each container another call claimed, whether its reservation is in that worker's ledger.
    async fn run_scripts(&self, mode: CommitMode) -> Result<(Parsed, HashSet<String>), RepoError> {
        let k = &self.repo.keys;
        let mut ops: Vec<Op> = (self.batch.iter().enumerate())
            .map(|(i, cr)| {
                let holders = self.claimed().filter(|(it, _)| it.0 == i);
                let holders: Vec<_> = holders
                    .map(|(_, v)| v.as_deref().map_or("", holder_of).to_owned())
                    .collect();
                script(self.repo, cr, mode, Some(&holders))
            })
            .collect();
        let contested: Vec<_> = self
            .claimed()
            .filter_map(|(it, v)| Some((it.2, holder_of(v.as_deref()?))))
            .collect();
        ops.extend(contested.iter().map(|&(c, w)| ledger_get(k, c, w)));
        let mut replies = self.repo.run(ops, true).await?;
        let lookups = replies.split_off(self.batch.len());
        let committed = (contested.iter().zip(lookups))
            .filter(|(_, v)| in_ledger(v))
            .map(|((c, _), _)| c.to_string())
            .collect();
        let parsed = self
            .batch
            .iter()
            .zip(&replies)
            .map(|(cr, v)| outcome(cr, v));
        Ok((parsed.collect::<Result<_, _>>()?, committed))
    }

    /// Phase 3, under contention only: containers rejected because another call's claim holds
    /// them with nothing committed behind it yet. Usually that call is about to commit: re-read
    /// the claim and the holder's ledger a few times (1, 2, ... ms apart) until it commits, the
    /// claim goes away or changes hands, or we give up. Returns every container found committed.
    async fn await_contested(
        &self,
        parsed: &Parsed,
        mut committed: HashSet<String>,
    ) -> Result<HashSet<String>, RepoError> {
        let mut pending = Vec::new(); // (container, holder, claim value)
        for (i, (r, _)) in parsed.iter().enumerate() {
            let rej = r
                .outcome
                .as_ref()
                .map_or_else(Some, |c| c.remainder.as_ref());
            let Some(Rejection::AlreadyReserved {
                container_id: c,
                worker_id: w,
            }) = rej
            else {
                continue;
            };
            let claim = self
                .claimed()
                .find(|(it, _)| it.0 == i && it.2 == c)
                .and_then(|(_, v)| v.as_ref());
            if let Some(raw) = claim.filter(|_| !committed.contains(c)) {
                pending.push((c.clone(), w.clone(), raw.clone()));
            }
        }
        for attempt in 0..CONTESTED_POLLS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
            let k = &self.repo.keys;
            let ops = pending
                .iter()
                .flat_map(|(c, w, _)| [Op::cmd("GET", vec![k.index(c)]), ledger_get(k, c, w)]);
            let replies = self.repo.run(ops.collect(), false).await?;
            let mut still = Vec::new();
            for ((c, w, raw), pair) in pending.into_iter().zip(replies.chunks(2)) {
                if in_ledger(&pair[1]) {
                    committed.insert(c);
                } else if decode::<Option<String>>(&pair[0])?.as_deref() == Some(raw.as_str()) {
                    still.push((c, w, raw));
                } // else the claim went away or changed hands: a conflict (retry)
            }
            pending = still;
        }
        Ok(committed)
    }

    /// Phase 4: deletes this call's claims that did not commit (`charged` per worker: all of
    /// them when empty), and the `stale` containers' claims older than `claim_grace`. Best
    /// effort: `release_batch` clears leftovers after `claim_grace`.
    async fn drop_claims(&self, charged: &[Vec<usize>], stale: &[String]) {
        let ops: Vec<Op> = (self.claimed())
            .filter_map(|(&(i, j, c), claim)| {
                let value = match claim {
                    None if !charged.get(i).is_some_and(|ch| ch.contains(&j)) => &self.values[i],
                    Some(v)
                        if stale.iter().any(|s| s == c) && expired(self.repo, v) == Some(true) =>
                    {
                        v
                    }
                    _ => return None,
                };
                Some(unclaim(&self.repo.keys, c, value))
            })
            .collect();
        if ops.is_empty() {
            return;
        }
        if let Err(e) = self.repo.run(ops, true).await {
            tracing::warn!(error = %e, "could not drop unused claims; release_batch clears them after claim_grace");
        }
    }
}
