//! The Redis Cluster claim protocol of `reserve_batch`, one method per phase of [`Call`]:
//! [`claim`](Call::claim), [`run_scripts`](Call::run_scripts),
//! [`await_contested`](Call::await_contested), [`drop_claims`](Call::drop_claims).
//! `sched-redis/ARCHITECTURE.md` describes it, why it is safe, and its known weaknesses.

use crate::client::{Op, Reply};
use crate::codec::decode;
use crate::keys::Keys;
use crate::ops::{outcome, reserve_script};
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

/// The rejection of a worker's result: the whole result's, or its partial remainder's.
fn rejection(r: &mut WorkerResult) -> Option<&mut Rejection> {
    match &mut r.outcome {
        Err(rej) => Some(rej),
        Ok(c) => c.remainder.as_mut(),
    }
}

/// One cluster `reserve_batch` call.
pub(crate) async fn reserve(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    let mut call = Call::new(repo, batch);
    if let Some(e) = call.claim().await? {
        call.drop_claims(&[], &[]).await;
        return Err(e);
    }
    let (mut parsed, committed) = match call.run_scripts(mode).await {
        Ok(r) => r,
        // The worker scripts may have run: keep the claims (they are the one-holder guarantee
        // for whatever committed) and report the doubt.
        Err(e) if e.is_ambiguous() => return Err(e),
        Err(e) => {
            call.drop_claims(&[], &[]).await;
            return Err(e);
        }
    };
    let committed = call.await_contested(&mut parsed, committed).await?;
    // An `AlreadyReserved` with nothing committed behind its claim must not say "held there"
    // (callers treat that as placed): it becomes `Contended`, and its claim may be stale.
    let mut stale = Vec::new();
    for (r, _) in &mut parsed {
        let Some(rej) = rejection(r) else { continue };
        if let Rejection::AlreadyReserved { container_id, .. } = rej {
            if !committed.contains(container_id) {
                let container_id = container_id.clone();
                stale.push(container_id.clone());
                *rej = Rejection::Contended { container_id };
            }
        }
    }
    let (results, charged): (Vec<_>, Vec<_>) = parsed.into_iter().unzip();
    call.drop_claims(&charged, &stale).await;
    Ok(results)
}

struct Call<'a> {
    repo: &'a RedisRepository,
    batch: &'a [CapacityReservation],
    /// This call's claim value, per worker of the batch.
    values: Vec<String>,
    /// Every reservation of the batch, in order.
    items: Vec<Item<'a>>,
}

/// One reservation of the batch and its claim.
struct Item<'a> {
    /// Its worker's index in the batch.
    worker: usize,
    /// Its index among that worker's reservations.
    pos: usize,
    container: &'a str,
    /// `None` when this call made the claim, else the claim value found (another call's).
    claim: Option<String>,
}

impl Item<'_> {
    /// The worker named by another call's claim; `None` when the claim is this call's.
    fn holder(&self) -> Option<&str> {
        self.claim.as_deref().map(holder_of)
    }
}

impl<'a> Call<'a> {
    fn new(repo: &'a RedisRepository, batch: &'a [CapacityReservation]) -> Self {
        let (token, ms) = (format!("{:016x}", rand::random::<u64>()), now_ms());
        let values = batch
            .iter()
            .map(|cr| format!("{}\n{token}\n{ms}", cr.worker_id));
        let items = batch.iter().enumerate().flat_map(|(worker, cr)| {
            (cr.reservations.iter().enumerate()).map(move |(pos, r)| Item {
                worker,
                pos,
                container: &r.container_id,
                claim: None,
            })
        });
        let (values, items) = (values.collect(), items.collect());
        Call {
            repo,
            batch,
            values,
            items,
        }
    }

    /// Phase 1: claims every container; returns the first claim's server error, if any.
    async fn claim(&mut self) -> Result<Option<RepoError>, RepoError> {
        let (k, values) = (&self.repo.keys, &self.values);
        let claim = |it: &Item<'_>| {
            let args = vec![values[it.worker].clone()];
            Op::script(&scripts::CLAIM, vec![k.index(it.container)], args)
        };
        let ops = self.items.iter().map(claim).collect();
        let replies = self.repo.run(ops, true).await?;
        let mut failure = None;
        for (it, v) in self.items.iter_mut().zip(replies) {
            it.claim = match decode::<String>(&v) {
                Ok(s) => Some(s).filter(|s| !s.is_empty()),
                Err(e) => {
                    failure.get_or_insert(e);
                    Some(String::new()) // not this call's
                }
            };
        }
        Ok(failure)
    }

    /// Phase 2: the worker scripts, and whether each contested container is in its claimer's
    /// ledger. Returns the results and the contested containers found committed.
    async fn run_scripts(&self, mode: CommitMode) -> Result<(Parsed, HashSet<String>), RepoError> {
        let script = |(i, cr)| {
            let mine = self.items.iter().filter(|it| it.worker == i);
            let holders: Vec<_> = mine
                .map(|it| it.holder().unwrap_or("").to_owned())
                .collect();
            reserve_script(self.repo, cr, mode, Some(&holders))
        };
        let mut ops: Vec<Op> = self.batch.iter().enumerate().map(script).collect();
        let contested: Vec<_> = (self.items.iter())
            .filter_map(|it| Some((it.container, it.holder()?)))
            .collect();
        let k = &self.repo.keys;
        ops.extend(contested.iter().map(|&(c, w)| ledger_get(k, c, w)));
        let mut replies = self.repo.run(ops, true).await?;
        let lookups = replies.split_off(self.batch.len());
        let committed = (contested.iter().zip(lookups))
            .filter(|(_, v)| in_ledger(v))
            .map(|((c, _), _)| c.to_string())
            .collect();
        let parsed = (self.batch.iter().zip(&replies)).map(|(cr, v)| outcome(cr, decode(v)?));
        Ok((parsed.collect::<Result<_, _>>()?, committed))
    }

    /// Phase 3, under contention only: re-reads contested claims with nothing committed behind
    /// them a few times. Returns every container found committed.
    async fn await_contested(
        &self,
        parsed: &mut Parsed,
        mut committed: HashSet<String>,
    ) -> Result<HashSet<String>, RepoError> {
        let mut pending = Vec::new(); // (container, holder, claim value)
        for (i, (r, _)) in parsed.iter_mut().enumerate() {
            let Some(Rejection::AlreadyReserved {
                container_id: c,
                worker_id: w,
            }) = rejection(r)
            else {
                continue;
            };
            let item = self
                .items
                .iter()
                .find(|it| it.worker == i && it.container == c);
            if let Some(raw) = item.and_then(|it| it.claim.as_ref()) {
                if !committed.contains(c.as_str()) {
                    pending.push((c.clone(), w.clone(), raw.clone()));
                }
            }
        }
        let k = &self.repo.keys;
        for attempt in 0..CONTESTED_POLLS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
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

    /// Phase 4, best effort: deletes this call's claims that did not commit (`charged` per
    /// worker: all of them when empty), and the `stale` containers' claims older than
    /// `claim_grace`.
    async fn drop_claims(&self, charged: &[Vec<usize>], stale: &[String]) {
        let charged = |it: &Item<'_>| charged.get(it.worker).is_some_and(|c| c.contains(&it.pos));
        let stale = |it: &Item<'_>, v| {
            stale.iter().any(|s| s == it.container) && expired(self.repo, v) == Some(true)
        };
        let ops = self.items.iter().filter_map(|it| {
            let value = match &it.claim {
                None if !charged(it) => &self.values[it.worker],
                Some(v) if stale(it, v) => v,
                _ => return None,
            };
            Some(unclaim(&self.repo.keys, it.container, value))
        });
        if let Err(e) = self.repo.run(ops.collect(), true).await {
            tracing::warn!(error = %e, "could not drop unused claims; release_batch clears them after claim_grace");
        }
    }
}
