//! The reservation lifecycle: leases and their sweep, heartbeats, status changes and bulk
//! release — the values the lifecycle calls of [`WorkerRepository`]
//! return, [`sweep_all`], the expiry sweep over every worker, and [`Sweeper`], which runs it in
//! the background.
//!
//! Every deadline and heartbeat is in milliseconds since the Unix epoch **by the store's clock**
//! (Redis `TIME`, Postgres `clock_timestamp()`, the process clock in memory), never a scheduler's.
//! A renewal and the sweep of one worker run in that worker's atomic section and judge a lease by
//! the same rule ([`rules::expiry`](crate::rules::expiry)), so a renewal racing the sweep either
//! wins (renewed, still held) or loses (expired, capacity back), never half of each.

use crate::{RepoError, ReservationRecord, Resources, Worker, WorkerRepository};

mod sweeper;
use serde::{Deserialize, Serialize};
use std::time::Duration;
pub use sweeper::Sweeper;

/// The longest lease or heartbeat timeout accepted: 30 days, in milliseconds.
pub const MAX_LEASE_MS: u64 = 30 * 24 * 3600 * 1000;

/// `d` in whole milliseconds, rounded up, at least 1, saturating at `u64::MAX`.
pub fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Why the sweep took a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    /// Its lease deadline passed.
    LeaseExpired,
    /// Its worker is stale and its [`StalePolicy`](crate::StalePolicy) is `Release`.
    WorkerStale,
}

impl ExpiryReason {
    /// Every reason, in declaration order.
    pub const ALL: [ExpiryReason; 2] = [ExpiryReason::LeaseExpired, ExpiryReason::WorkerStale];

    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryReason::LeaseExpired => "lease_expired",
            ExpiryReason::WorkerStale => "worker_stale",
        }
    }

    /// Parses the name produced by [`ExpiryReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lease_expired" => Some(ExpiryReason::LeaseExpired),
            "worker_stale" => Some(ExpiryReason::WorkerStale),
            _ => None,
        }
    }
}

/// What [`renew_leases`](crate::WorkerRepository::renew_leases) did for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenewOutcome {
    /// Renewed: the new deadline (store clock, ms since the epoch).
    Renewed {
        /// The new deadline.
        expires_at_ms: u64,
    },
    /// Too late: the sweep would take it now (it still holds capacity until the sweep runs).
    /// Nothing changed.
    Expired {
        /// Why.
        reason: ExpiryReason,
    },
    /// Held on this worker without a lease; nothing changed (a lease is given at reserve time).
    NoLease,
    /// Not held on this worker (released, expired and swept, or held elsewhere).
    NotHeld,
}

/// One container's answer from [`renew_leases`](crate::WorkerRepository::renew_leases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewal {
    /// The container.
    pub container_id: String,
    /// What happened.
    pub outcome: RenewOutcome,
}

/// A reservation the sweep expired: who held what, until when, and why it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredReservation {
    /// The reservation as it was held (its `lease_expires_at_ms` says when the lease ran out).
    pub record: ReservationRecord,
    /// Why it was taken.
    pub reason: ExpiryReason,
}

/// What one worker's sweep did ([`expire_leases`](crate::WorkerRepository::expire_leases)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSweep {
    /// The worker.
    pub worker_id: String,
    /// The store's clock when the sweep ran.
    pub swept_at_ms: u64,
    /// What was expired, ordered by container id; empty when nothing was due.
    pub expired: Vec<ExpiredReservation>,
    /// Free capacity after the sweep.
    pub free: Resources,
    /// The worker's version after the sweep (bumped once when anything expired).
    pub resource_version: u64,
}

impl LeaseSweep {
    /// The capacity the sweep returned.
    pub fn returned(&self) -> Resources {
        crate::rules::ledger_sum(self.expired.iter().map(|e| &e.record.resources))
    }
}

/// What [`release_worker`](crate::WorkerRepository::release_worker) released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRelease {
    /// The worker.
    pub worker_id: String,
    /// Every reservation it held, ordered by container id.
    pub released: Vec<ReservationRecord>,
    /// Free capacity after (its total, unless drift was present).
    pub free: Resources,
    /// The worker's version after (bumped once when anything was released).
    pub resource_version: u64,
}

/// What [`heartbeat`](crate::WorkerRepository::heartbeat) recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The store's clock at the heartbeat.
    pub at_ms: u64,
    /// Whether the worker was stale just before it.
    pub was_stale: bool,
}

/// The sweep of every worker (of one pool, or all): one
/// [`expire_leases`](crate::WorkerRepository::expire_leases) call per worker, in id order.
/// Workers removed between the listing and their sweep are skipped. Stops at the first other
/// error (the sweeps before it are applied; run it again, it is idempotent).
pub async fn sweep_all<R: WorkerRepository + ?Sized>(
    repo: &R,
    pool: Option<&str>,
) -> Result<Vec<LeaseSweep>, RepoError> {
    let workers: Vec<Worker> = repo.list_workers(pool).await?;
    let mut out = Vec::with_capacity(workers.len());
    for w in workers {
        match repo.expire_leases(&w.id).await {
            Ok(s) => out.push(s),
            Err(RepoError::UnknownWorker(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_ms_rounds_up_and_is_never_zero() {
        assert_eq!(duration_ms(Duration::ZERO), 1);
        assert_eq!(duration_ms(Duration::from_micros(1)), 1);
        assert_eq!(duration_ms(Duration::from_micros(1001)), 2);
        assert_eq!(duration_ms(Duration::from_secs(3)), 3000);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn names_round_trip() {
        for r in [ExpiryReason::LeaseExpired, ExpiryReason::WorkerStale] {
            assert_eq!(ExpiryReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(ExpiryReason::parse("soon"), None);
    }
}
