//! The lifecycle rules of one worker's atomic section: lease renewal and the sweep (judged by
//! one predicate, [`expiry`], so they can never disagree), heartbeats, status changes and bulk
//! release. Backends mirror these as they mirror the reserve rule.

use super::{release_credit, Held, WorkerState};
use crate::{
    ExpiredReservation, ExpiryReason, Heartbeat, LeaseRenewal, LeaseSweep, RenewOutcome,
    StalePolicy, Worker, WorkerRelease, WorkerStatus,
};

/// Whether the sweep takes `held` from `worker` at `now_ms`, and why: its lease deadline is at
/// or before `now_ms` → [`ExpiryReason::LeaseExpired`]; otherwise the worker is stale with
/// [`StalePolicy::Release`] → [`ExpiryReason::WorkerStale`]; otherwise `None` (kept).
///
/// A renewal uses the same predicate: what the sweep would take now cannot be renewed.
pub fn expiry(worker: &Worker, held: &Held, now_ms: u64) -> Option<ExpiryReason> {
    if held.lease_expires_at_ms.is_some_and(|d| d <= now_ms) {
        return Some(ExpiryReason::LeaseExpired);
    }
    if worker.on_stale == StalePolicy::Release && worker.is_stale_at(now_ms) {
        return Some(ExpiryReason::WorkerStale);
    }
    None
}

impl WorkerState {
    /// The worker as a read at `now_ms` reports it: with `stale` judged at that instant.
    pub fn observe(&self, now_ms: u64) -> Worker {
        let mut w = self.worker.clone();
        w.stale = w.is_stale_at(now_ms);
        w
    }

    /// Renews the leases of `container_ids` to `now_ms + lease_ms`, in input order. Per id:
    /// not in this ledger → `NotHeld`; the sweep would take it now ([`expiry`]) → `Expired`;
    /// held without a lease → `NoLease`; otherwise `Renewed`. Renewal changes no capacity and
    /// does not bump the version.
    pub fn renew(
        &mut self,
        container_ids: &[String],
        lease_ms: u64,
        now_ms: u64,
    ) -> Vec<LeaseRenewal> {
        let deadline = now_ms.saturating_add(lease_ms);
        container_ids
            .iter()
            .map(|cid| {
                let outcome = match self.ledger.get(cid) {
                    None => RenewOutcome::NotHeld,
                    Some(h) => match expiry(&self.worker, h, now_ms) {
                        Some(reason) => RenewOutcome::Expired { reason },
                        None if h.lease_expires_at_ms.is_none() => RenewOutcome::NoLease,
                        None => RenewOutcome::Renewed {
                            expires_at_ms: deadline,
                        },
                    },
                };
                if let (RenewOutcome::Renewed { expires_at_ms }, Some(h)) =
                    (outcome, self.ledger.get_mut(cid))
                {
                    h.lease_expires_at_ms = Some(expires_at_ms);
                }
                LeaseRenewal {
                    container_id: cid.clone(),
                    outcome,
                }
            })
            .collect()
    }

    /// The sweep at `now_ms`: removes every reservation [`expiry`] takes, credits its capacity
    /// back and bumps the version once if anything went. The caller drops the expired
    /// containers from its one-holder index.
    pub fn sweep(&mut self, now_ms: u64) -> LeaseSweep {
        let due: Vec<(String, ExpiryReason)> = self
            .ledger
            .iter()
            .filter_map(|(cid, h)| expiry(&self.worker, h, now_ms).map(|r| (cid.clone(), r)))
            .collect();
        let mut expired = Vec::with_capacity(due.len());
        for (cid, reason) in due {
            if let Some(h) = self.ledger.remove(&cid) {
                let w = &mut self.worker;
                w.free = release_credit(&w.free, &w.total, &h.resources);
                expired.push(ExpiredReservation {
                    record: h.record(&w.id, &cid),
                    reason,
                });
            }
        }
        if !expired.is_empty() {
            self.bump();
        }
        LeaseSweep {
            worker_id: self.worker.id.clone(),
            swept_at_ms: now_ms,
            expired,
            free: self.worker.free,
            resource_version: self.worker.resource_version,
        }
    }

    /// Releases every reservation (decommission): the ledger empties, its capacity comes back,
    /// and the version goes up once if anything was held. The caller drops the released
    /// containers from its index.
    pub fn release_all(&mut self) -> WorkerRelease {
        let ledger = std::mem::take(&mut self.ledger);
        let mut released = Vec::with_capacity(ledger.len());
        for (cid, h) in ledger {
            let w = &mut self.worker;
            w.free = release_credit(&w.free, &w.total, &h.resources);
            released.push(h.record(&w.id, &cid));
        }
        if !released.is_empty() {
            self.bump();
        }
        WorkerRelease {
            worker_id: self.worker.id.clone(),
            released,
            free: self.worker.free,
            resource_version: self.worker.resource_version,
        }
    }

    /// Sets the status, keeping capacity and ledger; always bumps the version (so a scheduler
    /// holding an older snapshot gets a version conflict rather than a stale plan).
    pub fn set_status(&mut self, status: WorkerStatus) -> Worker {
        self.worker.status = status;
        self.bump();
        self.worker.clone()
    }

    /// Records a heartbeat at `now_ms`. Changes no capacity and does not bump the version.
    pub fn heartbeat(&mut self, now_ms: u64) -> Heartbeat {
        let was_stale = self.worker.is_stale_at(now_ms);
        self.worker.last_heartbeat_ms = Some(now_ms);
        Heartbeat {
            at_ms: now_ms,
            was_stale,
        }
    }

    fn bump(&mut self) {
        self.worker.resource_version = self.worker.resource_version.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{self, WorkerState};
    use crate::*;

    fn worker(timeout: Option<u64>, policy: StalePolicy) -> WorkerState {
        let mut spec =
            WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)).with_stale_policy(policy);
        spec.heartbeat_timeout_ms = timeout;
        WorkerState::new(rules::register(None, &spec, 0, 1_000).unwrap())
    }

    fn reserve(s: &mut WorkerState, id: &str, lease: Option<u64>, now: u64) {
        let mut r = ResourceReservation::new(id, Resources::cpu_mem(100, 100));
        r.lease_ms = lease;
        let part = CapacityReservation::new("w", vec![r]);
        let done = rules::reserve(Some(s), &part, CommitMode::AllOrNothing, |_| None, now).unwrap();
        s.commit(done);
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leases_expire_at_their_deadline_and_renewal_moves_it() {
        let mut s = worker(None, StalePolicy::Keep);
        reserve(&mut s, "a", Some(100), 1_000);
        reserve(&mut s, "b", None, 1_000);
        assert_eq!(s.records()[0].lease_expires_at_ms, Some(1_100));
        let v = s.worker.resource_version;
        // Before the deadline: renewed, no version bump; the unleased one says so.
        let r = s.renew(&ids(&["a", "b", "x"]), 500, 1_099);
        let outcomes: Vec<_> = r.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                RenewOutcome::Renewed {
                    expires_at_ms: 1_599
                },
                RenewOutcome::NoLease,
                RenewOutcome::NotHeld
            ]
        );
        assert_eq!(s.worker.resource_version, v);
        assert!(s.sweep(1_598).expired.is_empty());
        // At the deadline the renewal loses and the sweep takes it, crediting capacity once.
        assert_eq!(
            s.renew(&ids(&["a"]), 500, 1_599)[0].outcome,
            RenewOutcome::Expired {
                reason: ExpiryReason::LeaseExpired
            }
        );
        let sw = s.sweep(1_599);
        assert_eq!(sw.expired.len(), 1);
        assert_eq!(sw.expired[0].record.container_id, "a");
        assert_eq!(sw.free, Resources::cpu_mem(900, 900));
        assert_eq!(sw.resource_version, v + 1);
        assert!(s.audit().is_consistent());
        assert!(s.sweep(10_000).expired.is_empty());
    }

    #[test]
    fn stale_workers_are_refused_and_swept_by_policy() {
        let mut keep = worker(Some(50), StalePolicy::Keep);
        reserve(&mut keep, "a", None, 1_000);
        assert!(!keep.observe(1_050).stale);
        assert!(keep.observe(1_051).stale);
        let part = CapacityReservation::new(
            "w",
            vec![ResourceReservation::new("b", Resources::cpu_mem(1, 1))],
        );
        assert!(matches!(
            rules::reserve(Some(&keep), &part, CommitMode::Partial, |_| None, 2_000),
            Err(Rejection::HeartbeatExpired { timeout_ms: 50, .. })
        ));
        assert!(keep.sweep(2_000).expired.is_empty());
        let hb = keep.heartbeat(2_000);
        assert!(hb.was_stale);
        assert!(rules::reserve(Some(&keep), &part, CommitMode::Partial, |_| None, 2_000).is_ok());

        let mut release = worker(Some(50), StalePolicy::Release);
        reserve(&mut release, "a", None, 1_000);
        assert_eq!(
            release.renew(&ids(&["a"]), 10, 2_000)[0].outcome,
            RenewOutcome::Expired {
                reason: ExpiryReason::WorkerStale
            }
        );
        let sw = release.sweep(2_000);
        assert_eq!(sw.expired[0].reason, ExpiryReason::WorkerStale);
        assert!(release.ledger.is_empty() && release.audit().is_consistent());
    }

    #[test]
    fn status_and_bulk_release_keep_the_ledger_true() {
        let mut s = worker(None, StalePolicy::Keep);
        reserve(&mut s, "a", None, 1_000);
        reserve(&mut s, "b", Some(10), 1_000);
        let v = s.worker.resource_version;
        let w = s.set_status(WorkerStatus::Draining);
        assert_eq!(
            (w.status, w.resource_version, w.free),
            (WorkerStatus::Draining, v + 1, Resources::cpu_mem(800, 800))
        );
        let rel = s.release_all();
        assert_eq!(rel.released.len(), 2);
        assert_eq!(
            (rel.free, rel.resource_version),
            (Resources::cpu_mem(1000, 1000), v + 2)
        );
        assert!(s.audit().is_consistent());
        let again = s.release_all();
        assert!(again.released.is_empty());
        assert_eq!(again.resource_version, v + 2);
    }
}
