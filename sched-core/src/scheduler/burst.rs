//! [`Burst`]: one `schedule_batch` run. It owns the burst's state (the requests, one result slot
//! each, what this attempt places, what the next retries, each container's last error, the
//! attempt number, which containers are in doubt) and drives it: plan against one snapshot,
//! commit, settle every worker's outcome, re-plan only what was rejected, and before answering a
//! container with an error, look it up once more.
//!
//! Answers agree with the store: an `Ok` is held there with the requested resources; an error
//! other than [`ScheduleError::Ambiguous`] is not held by this call. A commit whose outcome is
//! unknown puts its containers in doubt; a lookup settles the doubt (held → placed, not held →
//! re-planned), so does a later commit of the container (the store accepts only containers held
//! nowhere). A doubt still open when the container would be answered with an error becomes
//! `Ambiguous`.

use super::calls::{chunk_calls, worker_parts, Part};
use super::config::SchedulerConfig;
use super::outcome::{AttemptError, Placement, ScheduleError};
use super::plan::plan_with_tiers;
use super::stats::Counters;
use crate::cache::{Snapshot, WorkerStateCache};
use crate::validate::validate_request;
use crate::{
    CapacityReservation, ContainerRequest, InvalidInput, Rejection, RepoError, WorkerRepository,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

mod settle;

use settle::HeldCheck;

/// What a burst works with: everything a scheduler holds but its group-commit queue.
pub(super) struct Core<R> {
    /// Every call the scheduler makes is traced (one span per call).
    pub(super) repo: crate::layers::Traced<R>,
    pub(super) config: SchedulerConfig,
    pub(super) cache: WorkerStateCache,
    pub(super) counters: Counters,
}

/// One burst in flight. Indices (`i`) are positions in the request list.
pub(super) struct Burst<'a, R> {
    core: &'a Core<R>,
    started: Instant,
    requests: Vec<ContainerRequest>,
    results: Vec<Option<Result<Placement, ScheduleError>>>,
    /// An identical repeat of an earlier request of this burst: answered as that one.
    same_as: Vec<Option<usize>>,
    /// To place in this attempt.
    pending: Vec<usize>,
    /// To place again in the next attempt.
    next: Vec<usize>,
    last_error: Vec<Option<AttemptError>>,
    /// A commit carrying the container had an unknown outcome and no lookup or commit has
    /// settled it since (or a lookup after `AlreadyReserved` failed): the last lookup's error.
    doubt: Vec<Option<Arc<RepoError>>>,
    /// A commit carrying the container had an unknown outcome: found held, it may be this
    /// call's own commit, so it is not reported `already_held`.
    maybe_ours: Vec<bool>,
    attempt: u32,
    /// The plan already found no room once in a cached (possibly stale) view.
    rechecked_capacity: bool,
    /// Extra attempts granted, past `max_attempts`, to containers last refused for capacity
    /// (each on a fresh view; see [`Self::capacity_round`]).
    capacity_rounds: u32,
    /// Extra attempts granted for attempts in which a lookup after `AlreadyReserved` settled a
    /// container (found it held): another caller's progress is not this burst's failure. Each
    /// such attempt settles at least one container, so there are at most as many as requests.
    progress_rounds: u32,
    /// This attempt's lookup after `AlreadyReserved` settled a container.
    settled_held: bool,
}

impl<'a, R: WorkerRepository> Burst<'a, R> {
    /// A burst of `requests`: counts them and validates each (malformed ones are answered at
    /// once, nothing sent). An id repeated with an identical request is answered as its first
    /// occurrence; repeated with a different request, it is `DuplicateContainer`.
    pub(super) fn new(core: &'a Core<R>, requests: Vec<ContainerRequest>) -> Self {
        let started = Instant::now();
        let n = requests.len();
        core.counters.batch(n);
        let mut results: Vec<Option<Result<Placement, ScheduleError>>> =
            (0..n).map(|_| None).collect();
        let mut same_as = vec![None; n];
        let mut seen: foldhash::HashMap<&str, usize> = foldhash::HashMapExt::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        for (i, r) in requests.iter().enumerate() {
            let verdict = validate_request(r).and_then(|()| match seen.get(r.id.as_str()) {
                None => {
                    seen.insert(r.id.as_str(), i);
                    Ok(None)
                }
                Some(&first) if requests[first] == *r => Ok(Some(first)),
                Some(_) => Err(InvalidInput::DuplicateContainer {
                    container_id: r.id.clone(),
                }),
            });
            match verdict {
                Ok(None) => pending.push(i),
                Ok(Some(first)) => same_as[i] = Some(first),
                Err(cause) => {
                    results[i] = Some(Err(ScheduleError::InvalidRequest {
                        container_id: r.id.clone(),
                        cause,
                    }))
                }
            }
        }
        drop(seen);
        Burst {
            core,
            started,
            last_error: (0..n).map(|_| None).collect(),
            doubt: vec![None; n],
            maybe_ours: vec![false; n],
            requests,
            results,
            same_as,
            pending,
            next: Vec::new(),
            attempt: 0,
            rechecked_capacity: false,
            capacity_rounds: 0,
            progress_rounds: 0,
            settled_held: false,
        }
    }

    /// Places what it can with bounded attempts and backoff; one result per request, in order.
    pub(super) async fn run(mut self) -> Vec<Result<Placement, ScheduleError>> {
        let core = self.core;
        let cfg = &core.config;
        while !self.pending.is_empty() {
            self.attempt += 1;
            let granted = cfg
                .max_attempts
                .saturating_add(self.capacity_rounds)
                .saturating_add(self.progress_rounds);
            if self.attempt > granted && !self.capacity_round() {
                self.exhaust();
                break;
            }
            if self.attempt > 1 {
                core.counters.retries(self.pending.len());
                tokio::time::sleep(cfg.backoff(self.attempt)).await;
            }
            let snap = match core.cache.snapshot(&core.repo).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, attempt = self.attempt, "reading workers failed");
                    let e = Arc::new(e);
                    for &i in &self.pending {
                        self.last_error[i] = Some(AttemptError::ReadWorkers(Arc::clone(&e)));
                    }
                    continue;
                }
            };
            self.attempt_on(&snap).await;
            if std::mem::take(&mut self.settled_held) {
                self.progress_rounds = self.progress_rounds.saturating_add(1);
            }
            self.pending = std::mem::take(&mut self.next);
        }
        self.settle_errors().await;
        self.finish()
    }

    /// One attempt against `snap`: plan the pending containers, settle the unplaceable ones,
    /// commit the rest.
    async fn attempt_on(&mut self, snap: &Snapshot) {
        let core = self.core;
        let fresh = snap.taken_at() >= self.started;
        let p = {
            let reqs: Vec<&ContainerRequest> =
                self.pending.iter().map(|&i| &self.requests[i]).collect();
            let _s = tracing::debug_span!("plan", containers = reqs.len()).entered();
            plan_with_tiers(
                snap.workers(),
                &snap.tiers(),
                &reqs,
                &core.config.plan_config(),
            )
        };
        if !p.unplaceable.is_empty() {
            if !fresh && !self.rechecked_capacity {
                // The cached view may be stale (others released capacity): look again once.
                self.rechecked_capacity = true;
                core.cache.invalidate();
                for &(k, _) in &p.unplaceable {
                    self.next.push(self.pending[k]);
                }
                self.attempt -= 1; // a stale view is not a failed attempt
            } else {
                for &(k, cause) in &p.unplaceable {
                    let i = self.pending[k];
                    core.counters.no_capacity();
                    self.fail(
                        i,
                        ScheduleError::NoCapacity {
                            container_id: self.requests[i].id.clone(),
                            cause,
                        },
                    );
                }
            }
        }
        let parts = worker_parts(
            snap.workers(),
            p.assignments,
            &self.pending,
            &self.requests,
            core.config.version_checks,
        );
        for call in chunk_calls(parts) {
            self.commit_call(call).await;
        }
    }

    /// One `reserve_batch` call, and what each worker's outcome means for its containers.
    async fn commit_call(&mut self, call: Vec<Part>) {
        let core = self.core;
        let (batch, idxs): (Vec<CapacityReservation>, Vec<Vec<usize>>) = call.into_iter().unzip();
        core.counters.reserve_call(batch.len());
        let res = core
            .repo
            .reserve_batch(&batch, core.config.commit_mode)
            .instrument(tracing::debug_span!("reserve_batch", workers = batch.len()))
            .await;
        match res {
            Ok(outcomes) if outcomes.len() == batch.len() => {
                let mut through = Vec::new();
                let mut held = HeldCheck::default();
                for ((cr, idxs), wr) in batch.iter().zip(&idxs).zip(outcomes) {
                    match wr.outcome {
                        Ok(c) => {
                            through.push((cr.worker_id.clone(), c.free, c.new_version));
                            let accepted = c.accepted.min(idxs.len());
                            for &i in &idxs[..accepted] {
                                self.place(i, &cr.worker_id, c.new_version, false);
                            }
                            if let Some(rej) = c.remainder {
                                self.settle_rejected(
                                    &cr.worker_id,
                                    &rej,
                                    &idxs[accepted..],
                                    &mut held,
                                );
                            }
                        }
                        Err(rej) => self.settle_rejected(&cr.worker_id, &rej, idxs, &mut held),
                    }
                }
                core.cache.write_through(&through);
                if !held.named.is_empty() {
                    self.resolve_held(held).await;
                }
            }
            Ok(outcomes) => {
                // A backend that breaks the one-result-per-worker contract: treat as ambiguous.
                tracing::error!(
                    expected = batch.len(),
                    got = outcomes.len(),
                    "reserve_batch returned the wrong number of results"
                );
                core.counters.ambiguous();
                let e = RepoError::backend("reserve_batch returned the wrong number of results");
                self.resolve_unknown(idxs, Arc::new(e)).await;
            }
            Err(RepoError::InvalidInput(e)) => {
                for i in idxs.into_iter().flatten() {
                    self.fail(
                        i,
                        ScheduleError::InvalidRequest {
                            container_id: self.requests[i].id.clone(),
                            cause: e.clone(),
                        },
                    );
                }
            }
            Err(e @ (RepoError::Ambiguous(_) | RepoError::Backend(_))) => {
                // May have applied: find out before placing anything elsewhere.
                tracing::warn!(error = %e, "commit outcome unknown; resolving with find_reservations");
                core.counters.ambiguous();
                self.resolve_unknown(idxs, Arc::new(e)).await;
            }
            Err(e) => {
                // Certainly not applied (Unavailable, or a definite refusal).
                tracing::warn!(error = %e, "commit failed");
                core.cache.invalidate();
                let e = Arc::new(e);
                for i in idxs.into_iter().flatten() {
                    self.retry(i, Some(AttemptError::Commit(Arc::clone(&e))));
                }
            }
        }
    }

    /// One worker's rejection for the containers `idxs` (its whole part, or the remainder after
    /// a partial commit). When the rejection shows a container held already, that container and
    /// the part's other rejected ones go to `held`, to be looked up together with the call's
    /// other held containers (the others may be held too: the worker stopped at the first).
    fn settle_rejected(
        &mut self,
        worker_id: &str,
        rej: &Rejection,
        idxs: &[usize],
        held: &mut HeldCheck,
    ) {
        self.core.counters.conflict(rej.kind());
        tracing::debug!(worker = worker_id, rejection = %rej, "worker part rejected");
        self.core.cache.invalidate_worker(worker_id);
        if let Rejection::InsufficientCapacity {
            resource,
            available,
            ..
        } = rej
        {
            // Never plan onto what the store just showed full, even before the next read.
            self.core.cache.lower_free(worker_id, *resource, *available);
        }
        for &i in idxs {
            match rej {
                Rejection::AlreadyReserved { container_id, .. } => {
                    self.note(i, AttemptError::Rejected(rej.clone()));
                    if *container_id == self.requests[i].id {
                        held.named.push(i);
                    } else {
                        held.others.push(i);
                    }
                }
                Rejection::InvalidInput { reason } => self.fail(
                    i,
                    ScheduleError::InvalidRequest {
                        container_id: self.requests[i].id.clone(),
                        cause: InvalidInput::Other(reason.clone()),
                    },
                ),
                _ => self.retry(i, Some(AttemptError::Rejected(rej.clone()))),
            }
        }
    }

    fn ids(&self, idxs: &[usize]) -> Vec<String> {
        idxs.iter().map(|&i| self.requests[i].id.clone()).collect()
    }

    /// Container `i` is held on `worker_id`: the one place a [`Placement`] is made. Settles
    /// any doubt (a commit that accepted it proves no earlier one had).
    fn place(&mut self, i: usize, worker_id: &str, resource_version: u64, already_held: bool) {
        self.doubt[i] = None;
        self.core.counters.placed(worker_id);
        self.results[i] = Some(Ok(Placement {
            container_id: self.requests[i].id.clone(),
            worker_id: worker_id.to_owned(),
            resource_version,
            attempts: self.attempt,
            already_held,
        }));
    }

    /// Container `i` is answered with `err`.
    fn fail(&mut self, i: usize, err: ScheduleError) {
        self.results[i] = Some(Err(err));
    }

    /// Records why container `i` was not placed in this attempt.
    fn note(&mut self, i: usize, cause: AttemptError) {
        self.last_error[i] = Some(cause);
    }

    /// Container `i` goes into the next attempt, with why (if known).
    fn retry(&mut self, i: usize, cause: Option<AttemptError>) {
        if let Some(cause) = cause {
            self.note(i, cause);
        }
        self.next.push(i);
    }

    /// Attempts are used up. Containers whose last attempt was refused for capacity are not
    /// answered yet: other schedulers filled the workers this burst's (cached) view showed free,
    /// which says nothing of the workers that still have room. While fewer than
    /// `capacity_rechecks` such rounds were granted, they get one more attempt on a fresh view
    /// (the whole cache is invalidated, so the next plan reads the store): there they are
    /// placed, or answered
    /// [`ScheduleError::NoCapacity`] if no worker has room. The other pending containers are
    /// answered now. True when a round was granted.
    fn capacity_round(&mut self) -> bool {
        let short = |e: &Option<AttemptError>| {
            matches!(
                e,
                Some(AttemptError::Rejected(
                    Rejection::InsufficientCapacity { .. }
                ))
            )
        };
        if self.capacity_rounds >= self.core.config.capacity_rechecks
            || !self.pending.iter().any(|&i| short(&self.last_error[i]))
        {
            return false;
        }
        let (keep, done): (Vec<usize>, Vec<usize>) = self
            .pending
            .iter()
            .partition(|&&i| short(&self.last_error[i]));
        self.pending = done;
        self.exhaust();
        self.pending = keep;
        self.capacity_rounds += 1;
        // Fresh views from here on: plans no longer trust capacity cached before this point,
        // and a plan that finds no room answers NoCapacity at once.
        self.rechecked_capacity = true;
        self.core.cache.invalidate();
        true
    }

    /// Attempts are used up: every pending container is answered with its last error.
    fn exhaust(&mut self) {
        let attempts = self.attempt - 1;
        for &i in &self.pending {
            let last = self.last_error[i].take().unwrap_or(AttemptError::Unknown);
            self.results[i] = Some(Err(ScheduleError::RetriesExhausted {
                container_id: self.requests[i].id.clone(),
                attempts,
                last,
            }));
        }
    }

    /// Records the burst's duration; one result per request, in order (identical repeats get
    /// their first occurrence's).
    fn finish(mut self) -> Vec<Result<Placement, ScheduleError>> {
        let elapsed = self.started.elapsed();
        metrics::histogram!("sched_schedule_duration_seconds").record(elapsed.as_secs_f64());
        for i in 0..self.same_as.len() {
            if let Some(first) = self.same_as[i] {
                self.results[i] = self.results[first].clone();
            }
        }
        let (requests, attempt) = (self.requests, self.attempt);
        self.results
            .into_iter()
            .zip(requests)
            .map(|(r, req)| {
                r.unwrap_or_else(|| {
                    // Unreachable: every container is answered or pending until exhausted.
                    Err(ScheduleError::RetriesExhausted {
                        container_id: req.id,
                        attempts: attempt,
                        last: AttemptError::Unknown,
                    })
                })
            })
            .collect()
    }
}
