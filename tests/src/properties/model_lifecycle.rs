//! The lifecycle steps of a model sequence: renewals, sweeps, heartbeats, status changes and
//! bulk release, each compared with the model at the store's time (named by the answer where it
//! names one, else some instant the model's answers fit) and then applied to the model.

use super::model::{record, MWorker};
use super::model_sequences::{is_invalid, ModelRun};
use sched_core::{ExpiredReservation, RenewOutcome, RepoError, WorkerStatus};
use std::collections::HashSet;
use std::fmt::Debug;

fn unknown<T: Debug>(what: &str, got: &Result<T, RepoError>) {
    assert!(
        matches!(got, Err(RepoError::UnknownWorker(_))),
        "{what} of an unknown worker: {got:?}"
    );
}

/// The model's answer to renewing `ids` on `m` to `t + lease_ms` at the store's time `t`.
fn renewal(m: &MWorker, ids: &[String], lease_ms: u64, t: u64) -> Vec<RenewOutcome> {
    ids.iter()
        .map(|c| match m.ledger.get(c) {
            None => RenewOutcome::NotHeld,
            Some(r) => match (m.due(r, t), r.lease) {
                (Some(reason), _) => RenewOutcome::Expired { reason },
                (None, None) => RenewOutcome::NoLease,
                (None, Some(_)) => RenewOutcome::Renewed {
                    expires_at_ms: t + lease_ms,
                },
            },
        })
        .collect()
}

impl ModelRun<'_> {
    /// A time the store reported: never before the model's clock; the clock itself when exact.
    pub(super) fn observed_time(&self, at: Option<u64>, what: &str) -> u64 {
        let Some(at) = at else {
            panic!("{what}: the store reported no time");
        };
        if self.model.exact {
            assert_eq!(at, self.model.now, "{what}: the store's clock");
        }
        assert!(
            at >= self.model.now,
            "{what}: {at} is before a time the store already reported ({})",
            self.model.now
        );
        at
    }

    pub(super) async fn renew(&mut self, w: Option<usize>, cs: &[usize], lease_ms: u64) {
        let mut ids: Vec<String> = cs.iter().map(|&c| self.container_id(c)).collect();
        let id = match w {
            Some(w) => self.worker_id(w),
            // A holder renewing everything it holds (and a few other ids).
            None => {
                let busiest = self
                    .model
                    .workers
                    .iter()
                    .max_by_key(|(_, m)| m.ledger.len())
                    .map_or_else(|| self.worker_id(0), |(id, _)| id.clone());
                let mut all: Vec<String> = self
                    .model
                    .workers
                    .get(&busiest)
                    .map_or_else(Vec::new, |m| m.ledger.keys().cloned().collect());
                ids.retain(|c| !all.contains(c));
                all.append(&mut ids);
                ids = all;
                busiest
            }
        };
        let got = self.repo.renew_leases(&id, &ids, lease_ms).await;
        if lease_ms == 0 || ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            assert!(
                is_invalid(&got),
                "a renewal with a repeated id or a zero lease must be InvalidInput: {got:?}"
            );
            return;
        }
        let Some(m) = self.model.workers.get(&id) else {
            return unknown("renew_leases", &got);
        };
        let got = got.expect("renew_leases");
        let got_ids: Vec<&str> = got.iter().map(|r| r.container_id.as_str()).collect();
        assert_eq!(
            got_ids,
            ids.iter().map(String::as_str).collect::<Vec<_>>(),
            "renewals in input order"
        );
        let outcomes: Vec<RenewOutcome> = got.iter().map(|r| r.outcome).collect();
        // A `Renewed` names the instant the renewal ran; otherwise any instant the answers fit.
        let named = outcomes.iter().find_map(|o| match o {
            RenewOutcome::Renewed { expires_at_ms } => Some(expires_at_ms.saturating_sub(lease_ms)),
            _ => None,
        });
        let instants = match named {
            Some(t) => vec![self.observed_time(Some(t), "renewal")],
            None => self.model.instants(),
        };
        let Some(t) = instants
            .iter()
            .copied()
            .find(|&t| renewal(m, &ids, lease_ms, t) == outcomes)
        else {
            let want: Vec<_> = instants
                .iter()
                .map(|&t| (t, renewal(m, &ids, lease_ms, t)))
                .collect();
            panic!("renew_leases({id:?}, {ids:?}): {outcomes:?} is the model's answer at none of {want:?}");
        };
        self.model.now = self.model.now.max(t);
        if let Some(m) = self.model.workers.get_mut(&id) {
            for (c, o) in ids.iter().zip(outcomes) {
                if let (RenewOutcome::Renewed { expires_at_ms }, Some(r)) = (o, m.ledger.get_mut(c))
                {
                    r.lease = Some(expires_at_ms);
                }
            }
        }
    }

    pub(super) async fn sweep(&mut self, w: usize) {
        let id = self.worker_id(w);
        let got = self.repo.expire_leases(&id).await;
        if !self.model.workers.contains_key(&id) {
            return unknown("expire_leases", &got);
        }
        let s = got.expect("expire_leases");
        let t = self.observed_time(Some(s.swept_at_ms), "sweep");
        self.model.now = t;
        let m = self.model.workers.get_mut(&id).expect("model worker");
        let want: Vec<ExpiredReservation> = m
            .ledger
            .iter()
            .filter_map(|(c, r)| {
                m.due(r, t).map(|reason| ExpiredReservation {
                    record: record(&id, c, r),
                    reason,
                })
            })
            .collect();
        assert_eq!(
            (s.worker_id.as_str(), &s.expired),
            (id.as_str(), &want),
            "the sweep at {t} takes exactly what is due then, ordered by container id"
        );
        for e in &want {
            m.ledger.remove(&e.record.container_id);
        }
        self.bumped(&id, s.resource_version, !want.is_empty(), "sweep");
        assert_eq!(s.free, self.model.free(&id), "free after the sweep");
    }

    /// Checks a reported version after a change that bumps it iff `changed`, and records it.
    fn bumped(&mut self, id: &str, got: u64, changed: bool, what: &str) {
        let old = self.model.versions[id];
        assert!(
            if changed { got > old } else { got == old },
            "{what} of {id:?}: version {old} -> {got} (changed anything: {changed})"
        );
        self.model.versions.insert(id.to_owned(), got);
    }

    pub(super) async fn heartbeat(&mut self, w: usize) {
        let id = self.worker_id(w);
        let got = self.repo.heartbeat(&id).await;
        if !self.model.workers.contains_key(&id) {
            return unknown("heartbeat", &got);
        }
        let hb = got.expect("heartbeat");
        let t = self.observed_time(Some(hb.at_ms), "heartbeat");
        self.model.now = t;
        let m = self.model.workers.get_mut(&id).expect("model worker");
        assert_eq!(
            hb.was_stale,
            m.stale_at(t),
            "heartbeat of {id:?} at {t}: was it stale (last {:?}, timeout {:?})",
            m.last_heartbeat,
            m.spec.heartbeat_timeout_ms
        );
        m.last_heartbeat = Some(t);
    }

    pub(super) async fn set_status(&mut self, w: usize, status: WorkerStatus) {
        let id = self.worker_id(w);
        let got = self.repo.set_worker_status(&id, status).await;
        let Some(m) = self.model.workers.get_mut(&id) else {
            return unknown("set_worker_status", &got);
        };
        m.spec.status = status;
        let got = got.expect("set_worker_status");
        self.bumped(&id, got.resource_version, true, "set_worker_status");
        let want = self.model.observe(&got);
        assert_eq!(Some(got), want, "set_worker_status's answer");
    }

    pub(super) async fn release_worker(&mut self, w: usize) {
        let id = self.worker_id(w);
        let got = self.repo.release_worker(&id).await;
        if !self.model.workers.contains_key(&id) {
            return unknown("release_worker", &got);
        }
        let rel = got.expect("release_worker");
        let want = self.model.records(&id);
        assert_eq!(
            (rel.worker_id.as_str(), &rel.released),
            (id.as_str(), &want),
            "release_worker releases every reservation, ordered by container id"
        );
        if let Some(m) = self.model.workers.get_mut(&id) {
            m.ledger.clear();
        }
        self.bumped(
            &id,
            rel.resource_version,
            !want.is_empty(),
            "release_worker",
        );
        assert_eq!(rel.free, self.model.free(&id), "free after release_worker");
    }
}
