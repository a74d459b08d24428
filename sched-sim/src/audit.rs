//! The audit after a burst: every worker's drift must be zero, no container may be held twice,
//! and every placement must be held where the strategy said.

use futures::StreamExt;
use sched_core::{Placement, RepoError, WorkerRepository};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// What the audit found. Everything but `workers_audited` and `ledger_entries` must be zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// Workers audited.
    pub workers_audited: u64,
    /// Reservations found in the ledgers.
    pub ledger_entries: u64,
    /// Workers whose free capacity does not match their ledger (or that are overcommitted).
    pub drift_workers: u64,
    /// Containers held by more than one worker, or placed twice by the strategy.
    pub double_bookings: u64,
    /// Placements held on another worker than the strategy reported.
    pub misplaced: u64,
    /// Placements not held anywhere.
    pub missing: u64,
    /// Ledger entries that no placement accounts for (leaked capacity).
    pub orphaned: u64,
}

impl AuditSummary {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.violations() == 0
    }

    /// Sum of every kind of violation.
    pub fn violations(&self) -> u64 {
        self.drift_workers + self.double_bookings + self.misplaced + self.missing + self.orphaned
    }

    /// Per-field sum.
    pub fn plus(&self, o: &AuditSummary) -> AuditSummary {
        AuditSummary {
            workers_audited: self.workers_audited + o.workers_audited,
            ledger_entries: self.ledger_entries + o.ledger_entries,
            drift_workers: self.drift_workers + o.drift_workers,
            double_bookings: self.double_bookings + o.double_bookings,
            misplaced: self.misplaced + o.misplaced,
            missing: self.missing + o.missing,
            orphaned: self.orphaned + o.orphaned,
        }
    }
}

/// Audits `worker_ids` against `placements` (everything currently placed on them).
pub async fn audit(
    repo: &dyn WorkerRepository,
    worker_ids: &[String],
    placements: &[Placement],
) -> Result<AuditSummary, RepoError> {
    let mut out = AuditSummary::default();
    let per_worker: Vec<_> = futures::stream::iter(worker_ids.iter())
        .map(|id| async move {
            let a = repo.audit(id).await?;
            let l = repo.list_reservations(id).await?;
            Ok::<_, RepoError>((a, l))
        })
        .buffered(32)
        .collect()
        .await;
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for r in per_worker {
        let (a, ledger) = r?;
        out.workers_audited += 1;
        if !a.is_consistent() {
            tracing::error!(worker = %a.worker_id, drift = ?a.drift, "drift found by audit");
            out.drift_workers += 1;
        }
        for rec in ledger {
            out.ledger_entries += 1;
            holders
                .entry(rec.container_id)
                .or_default()
                .push(rec.worker_id);
        }
    }
    let mut placed: HashSet<&str> = HashSet::new();
    for p in placements {
        if !placed.insert(p.container_id.as_str()) {
            out.double_bookings += 1;
        }
    }
    for (cid, ws) in &holders {
        if ws.len() > 1 {
            tracing::error!(container = %cid, workers = ?ws, "container held twice");
            out.double_bookings += 1;
        }
        if !placed.contains(cid.as_str()) {
            out.orphaned += 1;
        }
    }
    let found: Vec<_> = futures::stream::iter(placements.iter())
        .map(|p| async move { (p, repo.find_reservation(&p.container_id).await) })
        .buffered(64)
        .collect()
        .await;
    for (p, rec) in found {
        match rec? {
            None => out.missing += 1,
            Some(rec) => {
                let in_ledger = holders
                    .get(&p.container_id)
                    .is_some_and(|ws| ws.contains(&p.worker_id));
                if rec.worker_id != p.worker_id || !in_ledger {
                    out.misplaced += 1;
                }
            }
        }
    }
    Ok(out)
}
