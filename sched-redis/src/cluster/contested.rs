//! Contested claims of a cluster `reserve_batch`: another call's claim with nothing committed
//! behind it is re-read a few times; if a call of this repository already saw exactly that claim
//! uncommitted, it is fenced, otherwise it is remembered and the container reported `Contended`
//! (ARCHITECTURE.md, "The fenced claim protocol"). Fencing is always safe; waiting for a second
//! sighting only keeps concurrent callers of one container from revoking each other's live claims,
//! so that one of them wins.

use super::{found, Call, State};
use crate::client::Op;
use crate::codec::decode;
use crate::fence::holder_of;
use sched_core::{Rejection, WorkerResult};
use std::time::Duration;

/// How often a contested, not yet committed claim is re-read before it is fenced (a performance
/// heuristic: a live call usually commits within a millisecond or two).
const POLLS: u64 = 2;

/// At most this many suspect claims are remembered; past it the memory starts afresh (a claim
/// forgotten this way is fenced one sighting later).
const MAX_SUSPECTS: usize = 4096;

impl Call<'_> {
    /// The item whose claim made `r`'s `AlreadyReserved`, if that claim is another call's.
    fn contested_item(&self, part: usize, r: &WorkerResult) -> Option<usize> {
        let Some(Rejection::AlreadyReserved { container_id, .. }) = rejection_of(r) else {
            return None;
        };
        (0..self.items.len()).find(|&i| {
            let it = &self.items[i];
            it.part == part && !it.own && it.container == container_id
        })
    }

    /// Re-reads the contested claims with nothing committed behind them a few times. Returns
    /// those still uncommitted and unchanged (to fence); updates `committed`.
    pub(super) async fn await_contested(&mut self) -> Vec<usize> {
        let mut pending: Vec<usize> = Vec::new();
        for p in 0..self.parts.len() {
            if let State::Done(r, _) = &self.parts[p].state {
                if let Some(i) = self.contested_item(p, r) {
                    if !self.items[i].committed {
                        pending.push(i);
                    }
                }
            }
        }
        let k = &self.repo.keys;
        for attempt in 0..POLLS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
            let ops = pending.iter().flat_map(|&i| {
                let it = &self.items[i];
                [
                    Op::cmd("GET", vec![k.index(it.container)]),
                    Op::cmd(
                        "HGET",
                        vec![k.ledger(holder_of(&it.value)), it.container.to_owned()],
                    ),
                ]
            });
            let Ok(replies) = self.repo.run(ops.collect(), false).await else {
                return Vec::new(); // reported as Contended; the claims are resolved later
            };
            let mut still = Vec::new();
            for (&i, pair) in pending.iter().zip(replies.chunks(2)) {
                if found(&pair[1]) {
                    self.items[i].committed = true;
                } else if decode::<Option<String>>(&pair[0]).ok().flatten().as_deref()
                    == Some(self.items[i].value.as_str())
                {
                    still.push(i);
                } // else the claim went away or changed hands: Contended (retry)
            }
            pending = still;
        }
        self.second_sightings(pending)
    }

    /// Of the claims still uncommitted, those this repository saw unchanged in an earlier call
    /// (to fence now); the others are remembered for the next call.
    fn second_sightings(&self, pending: Vec<usize>) -> Vec<usize> {
        let mut seen = self.repo.suspects.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > MAX_SUSPECTS {
            seen.clear();
        }
        let mut fence = Vec::new();
        for i in pending {
            let it = &self.items[i];
            if seen.get(it.container).is_some_and(|v| *v == it.value) {
                seen.remove(it.container);
                fence.push(i);
            } else {
                seen.insert(it.container.to_owned(), it.value.clone());
            }
        }
        fence
    }

    /// An `AlreadyReserved` with nothing committed behind its claim must not say "held there"
    /// (callers treat that as placed): it becomes `Contended`, unless the fence found it held.
    pub(super) fn settle_contested(&self, part: usize, r: &mut WorkerResult, held: &[usize]) {
        let Some(i) = self.contested_item(part, r) else {
            return;
        };
        if self.items[i].committed || held.contains(&i) {
            return;
        }
        if let Some(rej) = rejection_mut(r) {
            *rej = Rejection::Contended {
                container_id: self.items[i].container.to_owned(),
            };
        }
    }
}

/// The rejection of a worker's result: the whole result's, or its partial remainder's.
fn rejection_of(r: &WorkerResult) -> Option<&Rejection> {
    match &r.outcome {
        Err(rej) => Some(rej),
        Ok(c) => c.remainder.as_ref(),
    }
}

fn rejection_mut(r: &mut WorkerResult) -> Option<&mut Rejection> {
    match &mut r.outcome {
        Err(rej) => Some(rej),
        Ok(c) => c.remainder.as_mut(),
    }
}
