//! Scheduler counters, kept as atomics for reports and mirrored to the `metrics` facade.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Label `sched_placements_total` with the worker id (`SchedulerConfig::per_worker_metrics`).
    per_worker: bool,
    batches: AtomicU64,
    requests: AtomicU64,
    reserve_calls: AtomicU64,
    atomic_sections: AtomicU64,
    placements: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    ambiguous: AtomicU64,
    resolved: AtomicU64,
    no_capacity: AtomicU64,
    held_differently: AtomicU64,
    unresolved: AtomicU64,
    cancelled_skipped: AtomicU64,
    cancelled_released: AtomicU64,
    cancelled_unreleased: AtomicU64,
}

/// A copy of a scheduler's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerStats {
    /// Bursts run (a group commit counts once per round: a repeated id with another request
    /// waits for the next round).
    pub batches: u64,
    /// Requests received.
    pub requests: u64,
    /// `reserve_batch` calls made.
    pub reserve_calls: u64,
    /// Per-worker atomic sections requested (worker parts across all calls).
    pub atomic_sections: u64,
    /// Containers placed.
    pub placements: u64,
    /// Worker parts (or remainders) rejected.
    pub conflicts: u64,
    /// Container re-plans after a rejection or failure.
    pub retries: u64,
    /// Commits whose outcome was unknown (lost reply).
    pub ambiguous: u64,
    /// Containers found already placed when resolving a lost reply.
    pub resolved: u64,
    /// Containers that found no capacity.
    pub no_capacity: u64,
    /// Containers answered [`HeldDifferently`](crate::ScheduleError::HeldDifferently).
    pub held_differently: u64,
    /// Containers answered [`Ambiguous`](crate::ScheduleError::Ambiguous): may be held, the
    /// lookups failed.
    pub unresolved: u64,
    /// Requests skipped because their caller was gone (cancelled) before their batch started.
    pub cancelled_skipped: u64,
    /// Containers placed for a caller that was gone when the answer came, then released.
    pub cancelled_released: u64,
    /// Containers placed (or maybe placed) for a caller that was gone, whose release failed:
    /// held with nobody told (logged at error level; the resolver must find them).
    pub cancelled_unreleased: u64,
}

impl Counters {
    pub(super) fn new(per_worker: bool) -> Self {
        Counters {
            per_worker,
            ..Counters::default()
        }
    }
    pub(super) fn batch(&self, n: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("sched_requests_total").increment(n as u64);
    }
    pub(super) fn reserve_call(&self, sections: usize) {
        self.reserve_calls.fetch_add(1, Ordering::Relaxed);
        self.atomic_sections
            .fetch_add(sections as u64, Ordering::Relaxed);
        metrics::counter!("sched_reserve_batch_calls_total").increment(1);
        metrics::counter!("sched_atomic_sections_total").increment(sections as u64);
    }
    pub(super) fn placed(&self, worker_id: &str) {
        self.placements.fetch_add(1, Ordering::Relaxed);
        if self.per_worker {
            metrics::counter!("sched_placements_total", "worker" => worker_id.to_owned())
                .increment(1);
        } else {
            metrics::counter!("sched_placements_total").increment(1);
        }
    }
    pub(super) fn conflict(&self, kind: &'static str) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_conflicts_total", "kind" => kind).increment(1);
    }
    pub(super) fn retries(&self, n: usize) {
        self.retries.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("sched_retries_total").increment(n as u64);
    }
    pub(super) fn ambiguous(&self) {
        self.ambiguous.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_ambiguous_commits_total").increment(1);
    }
    pub(super) fn resolved(&self) {
        self.resolved.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn no_capacity(&self) {
        self.no_capacity.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_no_capacity_total").increment(1);
    }
    pub(super) fn held_differently(&self) {
        self.held_differently.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_held_differently_total").increment(1);
    }
    pub(super) fn unresolved(&self) {
        self.unresolved.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_unresolved_total").increment(1);
    }
    pub(super) fn cancelled_skipped(&self, n: usize) {
        self.cancelled_skipped
            .fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("sched_cancelled_skipped_total").increment(n as u64);
    }
    pub(super) fn cancelled_released(&self, n: usize) {
        self.cancelled_released
            .fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("sched_cancelled_released_total").increment(n as u64);
    }
    pub(super) fn cancelled_unreleased(&self, n: usize) {
        self.cancelled_unreleased
            .fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("sched_cancelled_unreleased_total").increment(n as u64);
    }
    pub(super) fn snapshot(&self) -> SchedulerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedulerStats {
            batches: l(&self.batches),
            requests: l(&self.requests),
            reserve_calls: l(&self.reserve_calls),
            atomic_sections: l(&self.atomic_sections),
            placements: l(&self.placements),
            conflicts: l(&self.conflicts),
            retries: l(&self.retries),
            ambiguous: l(&self.ambiguous),
            resolved: l(&self.resolved),
            no_capacity: l(&self.no_capacity),
            held_differently: l(&self.held_differently),
            unresolved: l(&self.unresolved),
            cancelled_skipped: l(&self.cancelled_skipped),
            cancelled_released: l(&self.cancelled_released),
            cancelled_unreleased: l(&self.cancelled_unreleased),
        }
    }
}
