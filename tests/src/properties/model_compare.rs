//! Comparisons of a model sequence: one reserve part's answer with the model's, and after every
//! step the repository's whole state (workers, ledgers with their lease deadlines, holders,
//! pools) with the model's, every audit clean.

use super::model::PartExpect;
use super::model_sequences::ModelRun;
use sched_core::{CapacityReservation, CommitMode, ResourceReservation, Worker, WorkerResult};
use std::collections::BTreeSet;

impl ModelRun<'_> {
    /// The repo's state equals the model's. A read's `stale` flag is judged by
    /// [`Model::observe`](super::model::Model::observe).
    pub(super) async fn compare(&mut self, after: &str) {
        if let Some(c) = &self.clock {
            self.model.now = c.now_ms();
        }
        for id in self.workers.clone() {
            let got = self.repo.get_worker(&id).await.expect("get_worker");
            let want = match &got {
                Some(g) => self.model.observe(g),
                None => self.model.expected_worker(&id),
            };
            assert_eq!(got, want, "after {after}: get_worker({id:?})");
            if got.is_some() {
                let l = self
                    .repo
                    .list_reservations(&id)
                    .await
                    .expect("list_reservations");
                assert_eq!(
                    l,
                    self.model.records(&id),
                    "after {after}: list_reservations({id:?})"
                );
                let a = self.repo.audit(&id).await.expect("audit");
                assert!(a.is_consistent(), "after {after}: audit {a:?}");
            }
        }
        for c in &self.containers {
            let got = self
                .repo
                .find_reservation(c)
                .await
                .expect("find_reservation");
            let want = self.model.holder(c).map(|w| w.to_owned());
            assert_eq!(
                got.map(|r| r.worker_id),
                want,
                "after {after}: find_reservation({c:?})"
            );
        }
        for p in self.pools.clone() {
            let got = self
                .repo
                .list_workers(Some(&p))
                .await
                .expect("list_workers");
            let mut want: Vec<Worker> = Vec::new();
            for id in self.workers.iter().collect::<BTreeSet<_>>() {
                let w = match got.iter().find(|g| &g.id == id) {
                    Some(g) => self.model.observe(g),
                    None => self.model.expected_worker(id),
                };
                want.extend(w.filter(|w| w.pool == p));
            }
            assert_eq!(got, want, "after {after}: list_workers({p:?})");
        }
    }

    /// Whether one part's answer is the model's at instant `t`; the reservations it charged.
    pub(super) fn check_part(
        &mut self,
        b: &CapacityReservation,
        mode: CommitMode,
        t: u64,
        r: &WorkerResult,
    ) -> Result<Vec<ResourceReservation>, String> {
        match (self.model.part(b, mode, t), &r.outcome) {
            (PartExpect::Rejected(alts), Err(rej)) if alts.contains(rej) => Ok(Vec::new()),
            (
                PartExpect::Committed {
                    accepted,
                    free,
                    remainder,
                    new,
                },
                Ok(c),
            ) => {
                if (c.accepted, c.free) != (accepted, free) {
                    return Err(format!("accepted / free: want {accepted} / {free}"));
                }
                match (&remainder, &c.remainder) {
                    (None, None) => {}
                    (Some(alts), Some(rej)) if alts.contains(rej) => {}
                    (want, _) => return Err(format!("remainder: want one of {want:?}")),
                }
                let old = self.model.versions[&b.worker_id];
                assert!(
                    if new.is_empty() {
                        c.new_version == old
                    } else {
                        c.new_version > old
                    },
                    "{}: version {old} -> {}: a charge must bump it, nothing charged must not",
                    b.worker_id,
                    c.new_version
                );
                self.model
                    .versions
                    .insert(b.worker_id.clone(), c.new_version);
                Ok(new)
            }
            (want, _) => Err(format!("want {want:?}")),
        }
    }
}
