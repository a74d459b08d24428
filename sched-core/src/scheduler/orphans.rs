//! Answers that find nobody. A caller may be gone (its future dropped, a timeout) before its
//! burst starts, or while it runs. Nothing it asked for may stay held silently: a request whose
//! caller is gone before its burst starts is skipped; a container placed (or maybe placed) for a
//! caller that is gone when the answer comes is released, counted
//! (`sched_cancelled_released_total`) and logged; if that release fails, it is counted
//! (`sched_cancelled_unreleased_total`) and logged at error level as held with nobody told.
//!
//! Bursts run in spawned tasks (see [`Scheduler`](crate::Scheduler)), so a cancelled caller
//! never strands a half-done burst: the task finishes it and applies this rule.

use super::burst::{Burst, Core};
use super::group_commit::Queued;
use super::outcome::{Placement, ScheduleError};
use crate::validate::MAX_BATCH;
use crate::{ContainerRequest, WorkerRepository};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

/// One container's answer.
pub(super) type Answer = Result<Placement, ScheduleError>;

/// Release attempts for the containers of callers that are gone.
const RELEASE_ATTEMPTS: u32 = 3;

/// The containers among undelivered `answers` that this call may hold: placed by it (not found
/// held already), or in doubt.
pub(super) fn orphaned<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> Vec<String> {
    let mut ids: Vec<String> = answers
        .into_iter()
        .filter_map(|a| match a {
            Ok(p) if !p.already_held => Some(p.container_id.clone()),
            Err(e @ ScheduleError::Ambiguous { .. }) => Some(e.container_id().to_owned()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Releases what was placed for callers that are gone (retried with backoff), counting and
/// logging each outcome.
pub(super) async fn release_orphans<R: WorkerRepository>(core: &Core<R>, ids: Vec<String>) {
    for chunk in ids.chunks(MAX_BATCH) {
        let mut attempt = 1;
        loop {
            match core.repo.release_batch(chunk).await {
                Ok(out) => {
                    core.cache.write_through_releases(&out);
                    let n = out.iter().filter(|o| o.released.is_some()).count();
                    core.counters.cancelled_released(n);
                    tracing::warn!(
                        containers = chunk.len(),
                        first = ?chunk.first(),
                        released = n,
                        "caller gone before its answer: released what was placed for it"
                    );
                    break;
                }
                Err(e) if attempt < RELEASE_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, "releasing for a gone caller failed; retrying");
                    tokio::time::sleep(core.config.backoff(attempt)).await;
                }
                Err(e) => {
                    core.cache.invalidate();
                    core.counters.cancelled_unreleased(chunk.len());
                    tracing::error!(
                        containers = chunk.len(),
                        first = ?chunk.first(),
                        error = %e,
                        "caller gone and releasing what was placed for it failed: may be held with nobody told"
                    );
                    break;
                }
            }
        }
    }
}

/// Runs a burst for a caller waiting on `reply`, in the current (spawned) task: skipped when
/// the caller is gone before it starts; released when it is gone when the answer comes.
pub(super) async fn run_for<R: WorkerRepository>(
    core: &Core<R>,
    requests: Vec<ContainerRequest>,
    reply: oneshot::Sender<Vec<Answer>>,
) {
    if reply.is_closed() {
        core.counters.cancelled_skipped(requests.len());
        return;
    }
    let answers = Burst::new(core, requests).run().await;
    if let Err(answers) = reply.send(answers) {
        release_orphans(core, orphaned(&answers)).await;
    }
}

/// Runs one group-commit batch: skips items whose caller is gone, places the rest in rounds
/// (identical repeats of an id share a round and its answer; a repeat with another request waits
/// for the next round, where it meets the first one's outcome in the store), answers each caller,
/// and releases what was placed for callers that are gone.
pub(super) async fn run_group<R: WorkerRepository>(
    core: &Core<R>,
    items: Vec<Queued<ContainerRequest, Answer>>,
) {
    let (gone, live): (Vec<_>, Vec<_>) = items.into_iter().partition(|(_, tx)| tx.is_closed());
    if !gone.is_empty() {
        core.counters.cancelled_skipped(gone.len());
        tracing::debug!(
            skipped = gone.len(),
            "callers gone before their batch started"
        );
    }
    type Round = (
        HashMap<String, usize>,
        Vec<Queued<ContainerRequest, Answer>>,
    );
    let mut rounds: Vec<Round> = Vec::new();
    for (req, tx) in live {
        let k = rounds
            .iter()
            .position(|(ids, items)| ids.get(&req.id).is_none_or(|&j| items[j].0 == req))
            .unwrap_or(rounds.len());
        if k == rounds.len() {
            rounds.push((HashMap::new(), Vec::new()));
        }
        let (ids, items) = &mut rounds[k];
        ids.entry(req.id.clone()).or_insert(items.len());
        items.push((req, tx));
    }
    for (_, items) in rounds {
        let (requests, replies): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let answers = Burst::new(core, requests).run().await;
        let mut delivered = HashSet::new();
        let mut undelivered = Vec::new();
        for (reply, answer) in replies.into_iter().zip(answers) {
            let id = match &answer {
                Ok(p) => p.container_id.clone(),
                Err(e) => e.container_id().to_owned(),
            };
            match reply.send(answer) {
                Ok(()) => {
                    delivered.insert(id);
                }
                Err(answer) => undelivered.push(answer),
            }
        }
        let ids = orphaned(&undelivered)
            .into_iter()
            .filter(|id| !delivered.contains(id))
            .collect();
        release_orphans(core, ids).await;
    }
}
