//! The fence of the cluster claim protocol (ARCHITECTURE.md, "The fenced claim protocol"):
//! claim values, resolving claims with fence.lua on their worker's slot, and compare-and-delete.

use crate::client::Op;
use crate::codec::{bad, decode};
use crate::keys::Keys;
use crate::{scripts, RedisRepository};
use sched_core::{RepoError, ReservationRecord};
use std::collections::{BTreeMap, HashMap};

/// The worker id named by an index value (`<worker id>` on one node, `<worker id>\n<token>` on a
/// cluster). Ids never hold control characters, so `\n` is a safe separator.
pub(crate) fn holder_of(value: &str) -> &str {
    value.split('\n').next().unwrap_or(value)
}

/// The claim token of a cluster index value (`""` for a value without one).
pub(crate) fn token_of(value: &str) -> &str {
    value.split('\n').nth(1).unwrap_or("")
}

/// A fresh claim token: 128 random bits, hex.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Deletes the claim of `container` if its value is still exactly `value`.
pub(crate) fn unclaim(keys: &Keys, container: &str, value: &str) -> Op {
    Op::script(
        &scripts::UNCLAIM,
        vec![keys.index(container)],
        vec![value.to_owned()],
    )
}

/// What fence.lua found for one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fenced {
    /// The worker does not exist: the claim can never commit.
    Absent,
    /// Not in the ledger: the token is revoked, the claim can never commit.
    Revoked,
    /// In the ledger (this entry): the claim is real, keep it.
    Held(String),
}

impl Fenced {
    /// True when the claim may be compare-and-deleted.
    pub(crate) fn dead(&self) -> bool {
        !matches!(self, Fenced::Held(_))
    }
}

impl RedisRepository {
    /// Resolves claims `(container, claim value)` with fence.lua, one script per worker, all in one
    /// round trip. Each claim is held (keep it) or dead (revoked or absent: may be deleted). A
    /// worker whose script failed gives an error for its claims.
    pub(crate) async fn fence(
        &self,
        claims: &[(&str, &str)],
    ) -> Result<Vec<Result<Fenced, RepoError>>, RepoError> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (_, v)) in claims.iter().enumerate() {
            groups.entry(holder_of(v)).or_default().push(i);
        }
        let ops = groups.iter().map(|(w, idx)| {
            let args = idx.iter().flat_map(|&i| {
                let (c, v) = claims[i];
                [c.to_owned(), token_of(v).to_owned()]
            });
            Op::script(&scripts::FENCE, self.keys.fenced(w), args.collect())
        });
        let replies = self.run(ops.collect(), true).await?;
        let mut out: Vec<Result<Fenced, RepoError>> = Vec::with_capacity(claims.len());
        out.resize_with(claims.len(), || Err(bad("no fence reply")));
        for ((_, idx), reply) in groups.iter().zip(replies) {
            let entries = decode::<Vec<Vec<String>>>(&reply);
            for (n, &i) in idx.iter().enumerate() {
                out[i] = match &entries {
                    Err(e) => Err(bad(e.to_string())),
                    Ok(entries) => match entries.get(n).map(Vec::as_slice) {
                        Some([k]) if k == "absent" => Ok(Fenced::Absent),
                        Some([k]) if k == "revoked" => Ok(Fenced::Revoked),
                        Some([k, e]) if k == "held" => Ok(Fenced::Held(e.clone())),
                        other => Err(bad(format!("unknown fence reply {other:?}"))),
                    },
                };
            }
        }
        Ok(out)
    }

    /// Compare-and-deletes claims `(container, exact value)` whose tokens can no longer charge;
    /// a failure is a clean-up failure (logged and counted), never an error of the call.
    pub(crate) async fn drop_dead_claims(&self, claims: &[(String, String)], what: &str) {
        self.unclaim_all(claims, what).await;
    }

    /// [`drop_dead_claims`](Self::drop_dead_claims), telling per claim whether it was deleted
    /// (`Some(false)`: the key held another value or none; `None`: unknown, the failure is
    /// counted).
    pub(crate) async fn unclaim_all(
        &self,
        claims: &[(String, String)],
        what: &str,
    ) -> Vec<Option<bool>> {
        let ops = claims
            .iter()
            .map(|(c, v)| unclaim(&self.keys, c, v))
            .collect();
        match self.run(ops, true).await {
            Ok(replies) => {
                let deleted: Vec<Option<bool>> = (replies.iter())
                    .map(|r| decode::<i64>(r).ok().map(|n| n == 1))
                    .collect();
                if let Some(Err(e)) = replies.into_iter().find(Result::is_err) {
                    self.cleanup_failed(what, &bad(format!("redis error: {e}")));
                }
                deleted
            }
            Err(e) => {
                self.cleanup_failed(what, &e);
                vec![None; claims.len()]
            }
        }
    }

    /// Resolves claims with fence.lua, then deletes the dead ones (clean-up: failures are logged
    /// and counted). Returns what each claim was found to be (`None`: the fence failed).
    pub(crate) async fn fence_and_drop(
        &self,
        claims: &[(String, String)],
        what: &str,
    ) -> Vec<Option<Fenced>> {
        if claims.is_empty() {
            return Vec::new();
        }
        let refs: Vec<(&str, &str)> = claims
            .iter()
            .map(|(c, v)| (c.as_str(), v.as_str()))
            .collect();
        let found: Vec<Option<Fenced>> = match self.fence(&refs).await {
            Ok(found) => {
                let found: Vec<_> = found.into_iter().map(Result::ok).collect();
                if found.iter().any(Option::is_none) {
                    self.cleanup_failed(what, &bad("some claims could not be fenced"));
                }
                found
            }
            Err(e) => {
                self.cleanup_failed(what, &e);
                vec![None; claims.len()]
            }
        };
        let dead: Vec<(String, String)> = (claims.iter().zip(&found))
            .filter(|(_, f)| f.as_ref().is_some_and(Fenced::dead))
            .map(|(c, _)| c.clone())
            .collect();
        self.drop_dead_claims(&dead, what).await;
        found
    }
}

impl RedisRepository {
    /// Learns the fence epoch of a worker state hash read with `HGETALL`.
    pub(crate) fn learn_from(&self, state: &HashMap<String, String>) {
        if let (Some(id), Some(f)) = (state.get("id"), state.get("f")) {
            if let Ok(f) = f.parse() {
                self.learn(id, f);
            }
        }
    }

    /// After a cluster `remove_worker`, `expire_leases` or `release_worker`: the claims of the
    /// removed ledger entries' containers that name the worker are fenced (a claim that committed
    /// again since is kept, a live uncommitted one is revoked), then compare-and-deleted by exact
    /// value. Clean-up only: failures are logged and counted.
    pub(crate) async fn drop_claims_of_removed(&self, worker: &str, ledger: &[String], what: &str) {
        let gets = ledger
            .iter()
            .map(|c| Op::cmd("GET", vec![self.keys.index(c)]));
        let values = match self.run_as::<Option<String>>(gets.collect(), false).await {
            Ok(v) => v,
            Err(e) => return self.cleanup_failed(what, &e),
        };
        let claims: Vec<(String, String)> = (ledger.iter().zip(values))
            .filter_map(|(c, v)| Some((c.clone(), v?)))
            .filter(|(_, v)| holder_of(v) == worker)
            .collect();
        self.fence_and_drop(&claims, what).await;
    }

    /// `find_reservations` on a cluster: the claims `(index in ids, value)` with nothing in the
    /// ledger behind them are fenced: held ones are answered from the ledger entry the fence
    /// found, the others are revoked (they can never commit: "not held" is final) and dropped.
    pub(crate) async fn settle_orphans(
        &self,
        ids: &[String],
        orphans: &[(usize, &str)],
        out: &mut [Option<ReservationRecord>],
    ) -> Result<(), RepoError> {
        if orphans.is_empty() {
            return Ok(());
        }
        let claims: Vec<(&str, &str)> =
            orphans.iter().map(|&(i, v)| (ids[i].as_str(), v)).collect();
        let mut dead = Vec::new();
        for (&(i, v), found) in orphans.iter().zip(self.fence(&claims).await?) {
            match found? {
                Fenced::Held(entry) => {
                    out[i] = Some(crate::codec::record(holder_of(v), ids[i].clone(), &entry)?);
                }
                _ => dead.push((ids[i].clone(), v.to_owned())),
            }
        }
        self.drop_dead_claims(&dead, "find_reservations: drop revoked claims")
            .await;
        Ok(())
    }
}
