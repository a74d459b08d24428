//! The reference model of the model-based test: each worker's spec, ledger (with lease
//! deadlines) and last heartbeat, and what one worker's part of a batch should do. Written
//! independently of every backend and of `sched_core::rules` (it is the second opinion on those
//! rules): do not rebuild it on them.
//!
//! Time: the model keeps `now`, a lower bound of the store's clock (every time the store has
//! reported so far; the store's clock never goes back). With a clock the test moves by hand it is
//! the store's time exactly; with a real clock the driver asks which instants at or after `now`
//! explain an answer ([`Model::instants`]) and moves `now` up to the one the answer reveals.

use sched_core::{
    CapacityReservation, CommitMode, ExpiryReason, Rejection, ReservationRecord, ResourceKind,
    ResourceReservation, Resources, StalePolicy, Worker, WorkerSpec, WorkerStatus,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One reservation of the model's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MRes {
    pub(super) resources: Resources,
    pub(super) gpu_type: Option<String>,
    /// The lease deadline (store clock), if leased.
    pub(super) lease: Option<u64>,
}

/// The reference model: a worker's spec and ledger; free is always derived from the ledger.
#[derive(Debug, Clone)]
pub(super) struct MWorker {
    pub(super) spec: WorkerSpec,
    pub(super) ledger: BTreeMap<String, MRes>,
    /// The store's time of the last heartbeat (registration counts), as the store reported it.
    pub(super) last_heartbeat: Option<u64>,
}

impl MWorker {
    /// Whether the worker is stale at `t`: it tracks liveness and its heartbeat is more than its
    /// timeout old (or it never had one).
    pub(super) fn stale_at(&self, t: u64) -> bool {
        match (self.spec.heartbeat_timeout_ms, self.last_heartbeat) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(limit), Some(last)) => t > last && t - last > limit,
        }
    }

    /// Why the sweep at `t` takes `r`, if it does.
    pub(super) fn due(&self, r: &MRes, t: u64) -> Option<ExpiryReason> {
        match r.lease {
            Some(d) if t >= d => Some(ExpiryReason::LeaseExpired),
            _ if self.spec.on_stale == StalePolicy::Release && self.stale_at(t) => {
                Some(ExpiryReason::WorkerStale)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) workers: BTreeMap<String, MWorker>,
    /// Last version seen for each worker id, kept after removal (versions never repeat).
    pub(super) versions: HashMap<String, u64>,
    /// The store's clock: exactly (a manual clock) or a lower bound (a real one).
    pub(super) now: u64,
    /// Whether `now` is exact.
    pub(super) exact: bool,
}

/// What the model expects of one worker's part.
#[derive(Debug)]
pub(super) enum PartExpect {
    /// Rejected with one of these.
    Rejected(Vec<Rejection>),
    /// Committed.
    Committed {
        accepted: usize,
        free: Resources,
        remainder: Option<Vec<Rejection>>,
        new: Vec<ResourceReservation>,
    },
}

fn shortfalls(container: &str, free: &Resources, want: &Resources) -> Vec<Rejection> {
    ResourceKind::ALL
        .into_iter()
        .filter(|k| want.get(*k) > free.get(*k))
        .map(|k| Rejection::InsufficientCapacity {
            container_id: container.to_owned(),
            resource: k,
            requested: want.get(k),
            available: free.get(k),
        })
        .collect()
}

impl Model {
    pub(super) fn reserved(&self, w: &str) -> Resources {
        let mut sum = Resources::ZERO;
        if let Some(m) = self.workers.get(w) {
            for r in m.ledger.values() {
                let r = &r.resources;
                sum = Resources::new(
                    sum.cpu_millicores + r.cpu_millicores,
                    sum.memory_mib + r.memory_mib,
                    sum.gpu_count + r.gpu_count,
                );
            }
        }
        sum
    }

    pub(super) fn free(&self, w: &str) -> Resources {
        let total = self
            .workers
            .get(w)
            .map(|m| m.spec.total)
            .unwrap_or_default();
        let r = self.reserved(w);
        Resources::new(
            total.cpu_millicores - r.cpu_millicores,
            total.memory_mib - r.memory_mib,
            total.gpu_count - r.gpu_count,
        )
    }

    pub(super) fn holder(&self, c: &str) -> Option<&str> {
        self.workers
            .iter()
            .find(|(_, m)| m.ledger.contains_key(c))
            .map(|(id, _)| id.as_str())
    }

    /// The instants at or after `now` at which the store may have answered: `now` itself, or
    /// (with a real clock) the first instant of every later change of the model's time-dependent
    /// state (a lease falling due, a worker going stale). Every answer that depends on time is
    /// the same between two consecutive instants of this list.
    pub(super) fn instants(&self) -> Vec<u64> {
        let mut at = BTreeSet::from([self.now]);
        if !self.exact {
            for m in self.workers.values() {
                at.extend(m.ledger.values().filter_map(|r| r.lease));
                if let (Some(limit), Some(last)) = (m.spec.heartbeat_timeout_ms, m.last_heartbeat) {
                    at.insert(last.saturating_add(limit).saturating_add(1));
                }
            }
        }
        at.into_iter().filter(|t| *t >= self.now).collect()
    }

    /// What one part should do at the store's time `t`.
    pub(super) fn part(&self, b: &CapacityReservation, mode: CommitMode, t: u64) -> PartExpect {
        let Some(m) = self.workers.get(&b.worker_id) else {
            return PartExpect::Rejected(vec![Rejection::UnknownWorker]);
        };
        let current = self.versions[&b.worker_id];
        if let Some(e) = b.expected_version {
            if e != current {
                return PartExpect::Rejected(vec![Rejection::VersionConflict {
                    expected: e,
                    current,
                }]);
            }
        }
        if m.spec.status != WorkerStatus::Available {
            return PartExpect::Rejected(vec![Rejection::WorkerUnavailable {
                status: m.spec.status,
            }]);
        }
        if let (true, Some(timeout_ms)) = (m.stale_at(t), m.spec.heartbeat_timeout_ms) {
            return PartExpect::Rejected(vec![Rejection::HeartbeatExpired {
                last_heartbeat_ms: m.last_heartbeat,
                timeout_ms,
            }]);
        }
        let mut free = self.free(&b.worker_id);
        let mut accepted = 0;
        let mut new = Vec::new();
        let mut stop = None;
        for r in &b.reservations {
            // Held anywhere, this worker included: rejected, naming the holder.
            if let Some(h) = self.holder(&r.container_id) {
                stop = Some(vec![Rejection::AlreadyReserved {
                    container_id: r.container_id.clone(),
                    worker_id: h.to_owned(),
                }]);
                break;
            }
            if let Some(t) = &r.gpu_type {
                if m.spec.gpu_type.as_ref() != Some(t) {
                    stop = Some(vec![Rejection::GpuTypeMismatch {
                        container_id: r.container_id.clone(),
                        requested: t.clone(),
                        actual: m.spec.gpu_type.clone(),
                    }]);
                    break;
                }
            }
            let short = shortfalls(&r.container_id, &free, &r.resources);
            if !short.is_empty() {
                stop = Some(short);
                break;
            }
            free = free.saturating_sub(&r.resources);
            new.push(r.clone());
            accepted += 1;
        }
        match stop {
            Some(alts) if mode == CommitMode::AllOrNothing || accepted == 0 => {
                PartExpect::Rejected(alts)
            }
            remainder => PartExpect::Committed {
                accepted,
                free,
                remainder,
                new,
            },
        }
    }

    /// The worker as a read should report it; `stale` as judged at `now`.
    pub(super) fn expected_worker(&self, id: &str) -> Option<Worker> {
        self.workers.get(id).map(|m| {
            let mut w = Worker::from_spec(&m.spec, self.versions[id]);
            w.free = self.free(id);
            w.last_heartbeat_ms = m.last_heartbeat;
            w.stale = m.stale_at(self.now);
            w
        })
    }

    /// Checks a read's `stale` flag against the model — exactly with an exact clock; with a real
    /// one, "not stale" is impossible once the model knows the worker is stale, and "stale"
    /// reveals that the clock is past the heartbeat's timeout — and returns the expected worker
    /// with that flag.
    pub(super) fn observe(&mut self, got: &Worker) -> Option<Worker> {
        let mut want = self.expected_worker(&got.id)?;
        if !self.exact && got.stale != want.stale {
            let m = &self.workers[&got.id];
            if got.stale {
                if let (Some(limit), Some(last)) = (m.spec.heartbeat_timeout_ms, m.last_heartbeat) {
                    self.now = self.now.max(last.saturating_add(limit).saturating_add(1));
                    want.stale = true;
                }
            }
        }
        Some(want)
    }

    pub(super) fn records(&self, id: &str) -> Vec<ReservationRecord> {
        self.workers.get(id).map_or_else(Vec::new, |m| {
            m.ledger.iter().map(|(c, r)| record(id, c, r)).collect()
        })
    }
}

/// A model reservation as the store reports it.
pub(super) fn record(worker: &str, container: &str, r: &MRes) -> ReservationRecord {
    ReservationRecord {
        worker_id: worker.to_owned(),
        container_id: container.to_owned(),
        resources: r.resources,
        gpu_type: r.gpu_type.clone(),
        lease_expires_at_ms: r.lease,
    }
}
