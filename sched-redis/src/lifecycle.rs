//! The lifecycle calls (leases, the sweep, heartbeats, status, bulk release): one script each on
//! the worker's slot (`lua/renew.lua`, `expire.lua`, `heartbeat.lua`, `set_status.lua`), judged
//! at the server's `TIME`; on a cluster, the claims of what the sweep or a bulk release removed
//! are then fenced and compare-and-deleted (ARCHITECTURE.md, "The lifecycle").

use crate::client::Op;
use crate::codec::{bad, get, record, worker, Fields};
use crate::ops::Hash;
use crate::{scripts, RedisRepository};
use redis::Value;
use sched_core::validate::{validate_id, validate_renewal};
use sched_core::{
    ExpiredReservation, ExpiryReason, Heartbeat, LeaseRenewal, LeaseSweep, RenewOutcome, RepoError,
    ReservationRecord, Resources, Worker, WorkerRelease, WorkerStatus,
};

/// How often a standalone sweep runs again declaring index keys it found it needs.
const SWEEP_ATTEMPTS: usize = 8;

/// What expire.lua takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// What [`sched_core::rules::expiry`] says is due (`expire_leases`).
    Expired,
    /// Everything (`release_worker`).
    All,
}

/// What one run of expire.lua removed.
pub(crate) struct Swept {
    worker_id: String,
    now_ms: u64,
    free: Resources,
    version: u64,
    /// Ordered by container id; the reason is `None` for a bulk release.
    removed: Vec<(ReservationRecord, Option<ExpiryReason>)>,
}

impl Swept {
    /// As `expire_leases` reports it.
    pub(crate) fn into_lease_sweep(self) -> LeaseSweep {
        let expired = (self.removed.into_iter())
            .map(|(record, reason)| ExpiredReservation {
                record,
                reason: reason.unwrap_or(ExpiryReason::LeaseExpired),
            })
            .collect();
        LeaseSweep {
            worker_id: self.worker_id,
            swept_at_ms: self.now_ms,
            expired,
            free: self.free,
            resource_version: self.version,
        }
    }

    /// As `release_worker` reports it.
    pub(crate) fn into_release(self) -> WorkerRelease {
        WorkerRelease {
            worker_id: self.worker_id,
            released: self.removed.into_iter().map(|(r, _)| r).collect(),
            free: self.free,
            resource_version: self.version,
        }
    }
}

fn unknown(id: &str) -> RepoError {
    RepoError::UnknownWorker(id.to_owned())
}

fn renew_outcome(s: &str) -> Result<RenewOutcome, RepoError> {
    Ok(match s {
        "not_held" => RenewOutcome::NotHeld,
        "no_lease" => RenewOutcome::NoLease,
        other => match ExpiryReason::parse(other) {
            Some(reason) => RenewOutcome::Expired { reason },
            None => RenewOutcome::Renewed {
                expires_at_ms: other
                    .parse()
                    .map_err(|_| bad(format!("unknown renew outcome {other:?}")))?,
            },
        },
    })
}

impl RedisRepository {
    /// `renew_leases`: renew.lua, one round trip.
    pub(crate) async fn renew(
        &self,
        id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        validate_renewal(id, container_ids, lease_ms)?;
        let args = std::iter::once(lease_ms.to_string()).chain(container_ids.iter().cloned());
        let op = Op::script(&scripts::RENEW, self.keys.worker(id), args.collect());
        let reply: Option<(u64, Vec<String>)> = self.run_one(op, true).await?;
        let (_, outcomes) = reply.ok_or_else(|| unknown(id))?;
        if outcomes.len() != container_ids.len() {
            return Err(bad(format!(
                "{} outcomes for {} containers",
                outcomes.len(),
                container_ids.len()
            )));
        }
        (container_ids.iter().zip(outcomes))
            .map(|(c, o)| {
                Ok(LeaseRenewal {
                    container_id: c.clone(),
                    outcome: renew_outcome(&o)?,
                })
            })
            .collect()
    }

    /// `expire_leases` / `release_worker`: expire.lua (standalone: again, declaring the index keys
    /// of what it removes, when it asks to); on a cluster then the clean-up of the removed
    /// containers' claims.
    pub(crate) async fn sweep(&self, id: &str, what: Sweep) -> Result<Swept, RepoError> {
        validate_id("worker", id)?;
        let (k, cluster) = (&self.keys, self.is_cluster());
        let all = if what == Sweep::All { "all" } else { "expired" };
        let mut declared: Vec<String> = Vec::new();
        for _ in 0..SWEEP_ATTEMPTS {
            let mut keys = k.worker(id);
            keys.extend(declared.iter().map(|c| k.index(c)));
            let args = [id.to_owned(), self.mode(), all.to_owned()].into_iter();
            let op = Op::script(
                &scripts::EXPIRE,
                keys,
                args.chain(declared.clone()).collect(),
            );
            let reply: Option<Vec<Value>> = self.run_one(op, true).await?;
            let reply = reply.ok_or_else(|| unknown(id))?;
            match reply.field::<String>(0)?.as_str() {
                "retry" if !cluster => {
                    for v in &reply[1..] {
                        let c: String = get(v)?;
                        if !declared.contains(&c) {
                            declared.push(c);
                        }
                    }
                }
                "ok" => return self.swept(id, &reply).await,
                other => return Err(bad(format!("unknown expire reply {other:?}"))),
            }
        }
        Err(bad(format!(
            "worker {id:?}: ledger kept changing during the sweep"
        )))
    }

    async fn swept(&self, id: &str, reply: &[Value]) -> Result<Swept, RepoError> {
        let mut removed = Vec::with_capacity(reply.len().saturating_sub(6));
        for v in &reply[6.min(reply.len())..] {
            let [c, entry, reason]: [String; 3] = get::<Vec<String>>(v)?
                .try_into()
                .map_err(|e| bad(format!("bad expire entry {e:?}")))?;
            let reason = match reason.as_str() {
                "released" => None,
                r => Some(ExpiryReason::parse(r).ok_or_else(|| bad(format!("reason {r:?}")))?),
            };
            removed.push((record(id, c, &entry)?, reason));
        }
        removed.sort_by(|a, b| a.0.container_id.cmp(&b.0.container_id));
        if self.is_cluster() && !removed.is_empty() {
            let ids: Vec<String> = removed.iter().map(|r| r.0.container_id.clone()).collect();
            self.drop_claims_of_removed(id, &ids, "expire/release_worker: drop the claims")
                .await;
        }
        Ok(Swept {
            worker_id: id.to_owned(),
            now_ms: reply.field(1)?,
            version: reply.field(2)?,
            free: reply.resources(3)?,
            removed,
        })
    }

    /// `heartbeat`: heartbeat.lua.
    pub(crate) async fn beat(&self, id: &str) -> Result<Heartbeat, RepoError> {
        validate_id("worker", id)?;
        let op = Op::script(&scripts::HEARTBEAT, vec![self.keys.state(id)], Vec::new());
        let reply: Option<(u64, u8)> = self.run_one(op, true).await?;
        let (at_ms, was_stale) = reply.ok_or_else(|| unknown(id))?;
        Ok(Heartbeat {
            at_ms,
            was_stale: was_stale == 1,
        })
    }

    /// `set_worker_status`: set_status.lua.
    pub(crate) async fn set_status(
        &self,
        id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        validate_id("worker", id)?;
        let args = vec![status.as_str().to_owned()];
        let op = Op::script(&scripts::SET_STATUS, vec![self.keys.state(id)], args);
        let reply: Option<(u64, Hash)> = self.run_one(op, true).await?;
        let (now, state) = reply.ok_or_else(|| unknown(id))?;
        self.learn_from(&state);
        worker(&state, Some(now))
    }
}
