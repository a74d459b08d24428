//! Settling where a burst's containers are held: after `AlreadyReserved`, after a commit whose
//! outcome is unknown, and once more before answering a container with an error.

use super::Burst;
use crate::scheduler::outcome::{AttemptError, ScheduleError};
use crate::scheduler::resolve::{holds_request, lookup_retrying};
use crate::{RepoError, ReservationRecord, WorkerRepository};
use std::sync::Arc;

/// The containers of one commit call that a worker's `AlreadyReserved` concerns.
#[derive(Debug, Default)]
pub(super) struct HeldCheck {
    /// Named held by the rejection.
    pub(super) named: Vec<usize>,
    /// Rejected with them, in the same worker part (they may be held too).
    pub(super) others: Vec<usize>,
}

impl<R: WorkerRepository> Burst<'_, R> {
    /// The containers a commit call was told are held already, and the others of their
    /// rejected parts: one lookup (retried where it fails) says by whom and with what. Held as
    /// asked → placed there; held otherwise → `HeldDifferently`; not held → re-planned;
    /// unknown → re-planned, and a container named held is in doubt.
    pub(super) async fn resolve_held(&mut self, held: HeldCheck) {
        let core = self.core;
        let named = held.named.len();
        let all: Vec<usize> = held.named.into_iter().chain(held.others).collect();
        let found = lookup_retrying(&core.repo, &self.ids(&all), &core.config).await;
        for (k, (i, found)) in all.into_iter().zip(found).enumerate() {
            match found {
                Ok(Some(rec)) => {
                    self.settled_held = true;
                    self.settle_found(i, rec);
                }
                Ok(None) => {
                    self.doubt[i] = None;
                    self.retry(i, None);
                }
                Err(e) if k < named => {
                    self.doubt[i] = Some(Arc::clone(&e));
                    self.retry(i, Some(AttemptError::Resolve(e)));
                }
                Err(_) => self.retry(i, None),
            }
        }
    }

    /// A commit call whose outcome is unknown (`e`): its containers are in doubt until a lookup
    /// (retried with backoff where it fails) says where they are held.
    pub(super) async fn resolve_unknown(&mut self, idxs: Vec<Vec<usize>>, e: Arc<RepoError>) {
        let core = self.core;
        core.cache.invalidate();
        let all: Vec<usize> = idxs.into_iter().flatten().collect();
        for &i in &all {
            self.maybe_ours[i] = true;
            self.doubt[i] = Some(Arc::clone(&e));
            self.note(i, AttemptError::Commit(Arc::clone(&e)));
        }
        let found = lookup_retrying(&core.repo, &self.ids(&all), &core.config).await;
        for (i, found) in all.into_iter().zip(found) {
            match found {
                Ok(Some(rec)) => {
                    core.counters.resolved();
                    self.settle_found(i, rec);
                }
                Ok(None) => {
                    self.doubt[i] = None;
                    self.retry(i, None);
                }
                Err(e) => {
                    // Still unknown: re-planning is safe (a second placement is rejected as
                    // AlreadyReserved and looked up), and the doubt is settled before any error.
                    self.doubt[i] = Some(Arc::clone(&e));
                    self.retry(i, Some(AttemptError::Resolve(e)));
                }
            }
        }
    }

    /// Container `i` is held as `rec` says: placed there when that is what it asks for,
    /// otherwise `HeldDifferently`. Settles any doubt.
    pub(super) fn settle_found(&mut self, i: usize, rec: ReservationRecord) {
        self.doubt[i] = None;
        if holds_request(&rec, &self.requests[i]) {
            let already_held = !self.maybe_ours[i];
            self.place(i, &rec.worker_id, 0, already_held);
        } else {
            self.core.counters.held_differently();
            self.fail(
                i,
                ScheduleError::HeldDifferently {
                    container_id: self.requests[i].id.clone(),
                    held: Box::new(rec),
                },
            );
        }
    }

    /// Before answering: every container about to be answered `NoCapacity` or
    /// `RetriesExhausted` (or any error while in doubt) is looked up once more (retried where
    /// the lookup fails). Held → placed (or `HeldDifferently`); not held → the error stands;
    /// unknown → `Ambiguous`: it may be held (by a commit of this call whose outcome is
    /// unknown, or by an earlier request for the same id), and no other error would be true.
    pub(super) async fn settle_errors(&mut self) {
        let due: Vec<usize> = (0..self.requests.len())
            .filter(|&i| match &self.results[i] {
                Some(Err(
                    ScheduleError::NoCapacity { .. } | ScheduleError::RetriesExhausted { .. },
                )) => true,
                Some(Err(ScheduleError::InvalidRequest { .. })) => self.doubt[i].is_some(),
                _ => false,
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let core = self.core;
        let found = lookup_retrying(&core.repo, &self.ids(&due), &core.config).await;
        for (i, found) in due.into_iter().zip(found) {
            match found {
                Ok(Some(rec)) => self.settle_found(i, rec),
                Ok(None) => self.doubt[i] = None,
                Err(e) => {
                    let in_doubt = self.doubt[i].take().is_some();
                    core.counters.unresolved();
                    tracing::warn!(container = %self.requests[i].id, error = %e, in_doubt, "may be held: every lookup failed");
                    self.fail(
                        i,
                        ScheduleError::Ambiguous {
                            container_id: self.requests[i].id.clone(),
                            cause: e,
                        },
                    );
                }
            }
        }
    }
}
