//! The reference model of the model-based test: each worker's spec and ledger, and what one
//! worker's part of a batch should do. Written independently of every backend and of
//! `sched_core::rules` (it is the second opinion on those rules): do not rebuild it on them.

use sched_core::{
    CapacityReservation, CommitMode, Rejection, ReservationRecord, ResourceKind,
    ResourceReservation, Resources, Worker, WorkerSpec, WorkerStatus,
};
use std::collections::{BTreeMap, HashMap};

/// The reference model: a worker's spec and ledger; free is always derived from the ledger.
#[derive(Debug, Clone)]
pub(super) struct MWorker {
    pub(super) spec: WorkerSpec,
    pub(super) ledger: BTreeMap<String, (Resources, Option<String>)>,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) workers: BTreeMap<String, MWorker>,
    /// Last version seen for each worker id, kept after removal (versions never repeat).
    pub(super) versions: HashMap<String, u64>,
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
            for (r, _) in m.ledger.values() {
                sum = Resources::new(
                    sum.cpu_millicores + r.cpu_millicores,
                    sum.memory_mib + r.memory_mib,
                    sum.gpu_count + r.gpu_count,
                );
            }
        }
        sum
    }

    fn free(&self, w: &str) -> Resources {
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

    pub(super) fn part(&self, b: &CapacityReservation, mode: CommitMode) -> PartExpect {
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

    pub(super) fn expected_worker(&self, id: &str) -> Option<Worker> {
        self.workers.get(id).map(|m| {
            let mut w = Worker::from_spec(&m.spec, self.versions[id]);
            w.free = self.free(id);
            w
        })
    }

    pub(super) fn records(&self, id: &str) -> Vec<ReservationRecord> {
        self.workers.get(id).map_or_else(Vec::new, |m| {
            m.ledger
                .iter()
                .map(|(c, (r, t))| ReservationRecord {
                    worker_id: id.to_owned(),
                    container_id: c.clone(),
                    resources: *r,
                    gpu_type: t.clone(),
                    lease_expires_at_ms: None,
                })
                .collect()
        })
    }
}
