//! `release_batch` (ARCHITECTURE.md, "release_batch") and the holder hints it starts from.
//!
//! * **One node:** one release.lua for the whole call. The script reads the index itself and
//!   declares the workers the hints name; a container held by a worker it was not told about
//!   makes it change nothing and name that worker, and it runs again declaring it (a second
//!   round trip, only for containers this repository did not place or look up).
//! * **Cluster:** release.lua on each hinted worker (its ledger is the truth: held there means
//!   held nowhere else), the index read of the containers without a hint in the same round trip,
//!   then the claims of what was released are compare-and-deleted (they may go only once the
//!   ledger entry is gone, so never in the same round trip: two in all). A hint that finds
//!   nothing falls back to reading the claim, as before.

use crate::client::Op;
use crate::codec::{bad, decode, get, Fields};
use crate::fence::holder_of;
use crate::{scripts, RedisRepository};
use redis::Value;
use sched_core::{ReleaseOutcome, Released, RepoError};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

/// How often a one-node release runs again declaring holders it was not told about.
const RELEASE_ATTEMPTS: usize = 8;

/// Holder hints kept at most; past it the map starts again empty (hints are only a shortcut).
const HINT_LIMIT: usize = 100_000;

const DROP_RELEASED: &str = "release_batch: drop released claims";

/// One container of a cluster release still to settle.
struct Pending {
    /// Its position in the call's ids.
    i: usize,
    /// Its claim value as far as known: a hint, or read from the index (`None`: read it).
    value: Option<Arc<str>>,
    /// `value` is a hint (not read in this call).
    hinted: bool,
    /// A hint whose worker did not hold it: reading exactly this value back means the claim
    /// has nothing behind it.
    stale: Option<Arc<str>>,
}

impl RedisRepository {
    /// Records where containers were just found held: `(container, index value)`.
    pub(crate) fn hint_holders(&self, held: Vec<(String, Arc<str>)>) {
        if held.is_empty() {
            return;
        }
        let mut m = (self.holders.lock()).unwrap_or_else(PoisonError::into_inner);
        if m.len() + held.len() > HINT_LIMIT {
            m.clear();
        }
        m.extend(held);
    }

    fn hints(&self, ids: &[String]) -> Vec<Option<Arc<str>>> {
        let m = (self.holders.lock()).unwrap_or_else(PoisonError::into_inner);
        ids.iter().map(|c| m.get(c).cloned()).collect()
    }

    fn forget_holders(&self, ids: &[String]) {
        let mut m = (self.holders.lock()).unwrap_or_else(PoisonError::into_inner);
        for c in ids {
            m.remove(c);
        }
    }

    /// `release_batch` after validation.
    pub(crate) async fn release(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let hints = self.hints(ids);
        let out = if self.is_cluster() {
            self.release_on_cluster(ids, hints).await?
        } else {
            self.release_on_node(ids, &hints).await?
        };
        self.forget_holders(ids);
        Ok(out)
    }

    /// One node: one release.lua declaring every index key and the hinted workers; again,
    /// declaring more, when it names holders it was not told about (it changed nothing then).
    async fn release_on_node(
        &self,
        ids: &[String],
        hints: &[Option<Arc<str>>],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let k = &self.keys;
        let mut workers: Vec<String> = hints.iter().flatten().map(|h| h.to_string()).collect();
        workers.sort_unstable();
        workers.dedup();
        for _ in 0..RELEASE_ATTEMPTS {
            let keys = (ids.iter().map(|c| k.index(c)))
                .chain(workers.iter().flat_map(|w| k.worker(w)))
                .collect();
            let args = ["s".to_owned(), ids.len().to_string()].into_iter();
            let args = args
                .chain(ids.iter().cloned())
                .chain(workers.iter().cloned());
            let op = Op::script(&scripts::RELEASE, keys, args.collect());
            let reply: Vec<Value> = self.run_one(op, true).await?;
            match reply.field::<String>(0)?.as_str() {
                "retry" => {
                    let more = reply[1..].iter().map(get::<String>);
                    workers.extend(more.collect::<Result<Vec<_>, _>>()?);
                }
                "ok" if reply.len() == ids.len() + 1 => {
                    let entries = ids.iter().zip(&reply[1..]);
                    return entries
                        .map(|(c, e)| Ok(outcome(c, released(e, None)?)))
                        .collect();
                }
                other => return Err(bad(format!("unknown release reply {other:?}"))),
            }
        }
        Err(bad("the holders kept changing during release_batch"))
    }

    /// Cluster: release.lua on the hinted workers with the index read of the rest, then
    /// release.lua on the holders read (and the read of the hints that found nothing), then the
    /// claims of what was released are dropped; claims with nothing behind them are fenced first.
    async fn release_on_cluster(
        &self,
        ids: &[String],
        hints: Vec<Option<Arc<str>>>,
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        let mut out: Vec<ReleaseOutcome> = ids.iter().map(|c| outcome(c, None)).collect();
        let mut pending: Vec<Pending> = (hints.into_iter().enumerate())
            .map(|(i, h)| Pending {
                i,
                hinted: h.is_some(),
                value: h,
                stale: None,
            })
            .collect();
        // (container, claim value, the value was a hint)
        let mut released_claims: Vec<(String, String, bool)> = Vec::new();
        let mut orphans: Vec<(String, String)> = Vec::new();
        let mut applied = false;
        // Each container goes hint -> read -> holder at most: three rounds.
        while !pending.is_empty() {
            let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            let mut reads = Vec::new();
            for (n, p) in pending.iter().enumerate() {
                match &p.value {
                    Some(v) => groups.entry(holder_of(v)).or_default().push(n),
                    None => reads.push(n),
                }
            }
            let scripts = groups.iter().map(|(w, ns)| {
                let args = ["c".to_owned(), (*w).to_owned()].into_iter();
                let args = args.chain(ns.iter().map(|&n| ids[pending[n].i].clone()));
                Op::script(&scripts::RELEASE, self.keys.worker(w), args.collect())
            });
            let gets =
                (reads.iter()).map(|&n| Op::cmd("GET", vec![self.keys.index(&ids[pending[n].i])]));
            let ops: Vec<Op> = scripts.chain(gets).collect();
            let write = !groups.is_empty();
            let replies = match self.run(ops, write).await {
                Ok(r) => r,
                Err(e) => return Err(after(applied, e)),
            };
            let (script_replies, get_replies) = replies.split_at(groups.len());
            let mut next = Vec::new();
            let mut failed = None;
            for ((w, ns), reply) in groups.iter().zip(script_replies) {
                let entries = match decode::<Vec<Value>>(reply) {
                    Ok(e) if e.len() == ns.len() => e,
                    Ok(e) => {
                        failed = Some(bad(format!(
                            "{} release entries, {} sent",
                            e.len(),
                            ns.len()
                        )));
                        continue;
                    }
                    Err(e) => {
                        failed = Some(e);
                        continue;
                    }
                };
                for (&n, e) in ns.iter().zip(&entries) {
                    let p = &pending[n];
                    let value = p.value.as_deref().unwrap_or_default();
                    let r = match released(e, Some(w)) {
                        Ok(r) => r,
                        Err(e) => return Err(after(applied, e)),
                    };
                    if r.is_some() {
                        applied = true;
                        released_claims.push((ids[p.i].clone(), value.to_owned(), p.hinted));
                    } else if p.hinted {
                        next.push(Pending {
                            i: p.i,
                            value: None,
                            hinted: false,
                            stale: p.value.clone(),
                        });
                    } else {
                        orphans.push((ids[p.i].clone(), value.to_owned()));
                    }
                    out[p.i].released = r;
                }
            }
            if let Some(e) = failed {
                return Err(after(applied, e));
            }
            for (&n, reply) in reads.iter().zip(get_replies) {
                let p = &pending[n];
                let value = match decode::<Option<String>>(reply) {
                    Ok(v) => v,
                    Err(e) => return Err(after(applied, e)),
                };
                match value {
                    None => {} // not held
                    Some(v) if p.stale.as_deref() == Some(v.as_str()) => {
                        orphans.push((ids[p.i].clone(), v));
                    }
                    Some(v) => next.push(Pending {
                        i: p.i,
                        value: Some(v.into()),
                        hinted: false,
                        stale: None,
                    }),
                }
            }
            pending = next;
        }
        self.drop_released_claims(released_claims, &orphans).await;
        Ok(out)
    }

    /// Cluster clean-up after a release: claims with nothing behind them are fenced, then they
    /// (the dead ones) and the released claims are compare-and-deleted in one round trip. A
    /// released claim known only from a hint that was not deleted holds another token than the
    /// hint: it is read and resolved like a removed ledger's claims. Failures are counted.
    async fn drop_released_claims(
        &self,
        released: Vec<(String, String, bool)>,
        orphans: &[(String, String)],
    ) {
        let mut drop: Vec<(String, String)> = Vec::new();
        let mut hinted = Vec::new();
        for (c, v, h) in released {
            hinted.push(h);
            drop.push((c, v));
        }
        if !orphans.is_empty() {
            const WHAT: &str = "release_batch: resolve claims with nothing behind them";
            let refs: Vec<(&str, &str)> = (orphans.iter())
                .map(|(c, v)| (c.as_str(), v.as_str()))
                .collect();
            match self.fence(&refs).await {
                Ok(found) => {
                    for (o, f) in orphans.iter().zip(found) {
                        match f {
                            Ok(f) if f.dead() => drop.push(o.clone()),
                            Ok(_) => {}
                            Err(e) => self.cleanup_failed(WHAT, &e),
                        }
                    }
                }
                Err(e) => self.cleanup_failed(WHAT, &e),
            }
        }
        let deleted = self.unclaim_all(&drop, DROP_RELEASED).await;
        let other_token: Vec<&(String, String)> = (drop.iter().zip(hinted).zip(deleted))
            .filter(|&((_, h), d)| h && d == Some(false))
            .map(|((c, _), _)| c)
            .collect();
        if other_token.is_empty() {
            return;
        }
        // Read those claims; the ones still naming the worker that released them are fenced
        // (a re-charge since keeps its claim) and deleted when dead.
        let gets = (other_token.iter()).map(|(c, _)| Op::cmd("GET", vec![self.keys.index(c)]));
        let values = match self.run_as::<Option<String>>(gets.collect(), false).await {
            Ok(v) => v,
            Err(e) => return self.cleanup_failed(DROP_RELEASED, &e),
        };
        let claims: Vec<(String, String)> = (other_token.into_iter().zip(values))
            .filter_map(|((c, hint), v)| {
                let v = v?;
                (holder_of(&v) == holder_of(hint)).then(|| (c.clone(), v))
            })
            .collect();
        self.fence_and_drop(&claims, DROP_RELEASED).await;
    }
}

/// The outcome of one container.
fn outcome(c: &str, released: Option<Released>) -> ReleaseOutcome {
    ReleaseOutcome {
        container_id: c.to_owned(),
        released,
    }
}

/// One release.lua entry: `0` (not held) or `{cpu, mem, gpu, version}` (`worker` given, the
/// cluster form) / `{cpu, mem, gpu, version, worker}` (one node).
fn released(e: &Value, worker: Option<&str>) -> Result<Option<Released>, RepoError> {
    match e {
        Value::Array(e) => Ok(Some(Released {
            worker_id: match worker {
                Some(w) => w.to_owned(),
                None => e.field(4)?,
            },
            resources: e.resources(0)?,
            new_version: e.field(3)?,
        })),
        Value::Int(0) => Ok(None),
        other => Err(bad(format!("unknown release entry {other:?}"))),
    }
}

/// An error after earlier round trips of the call may have released something: `Ambiguous`.
fn after(applied: bool, e: RepoError) -> RepoError {
    if applied && !e.is_ambiguous() {
        RepoError::Ambiguous(format!("released some containers, then: {e}").into())
    } else {
        e
    }
}
