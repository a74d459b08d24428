//! [`BackendCounters`]: cheap shared counters of one repository's traffic, so that tests and the
//! simulator can report round trips, calls and atomic sections per burst. The same figures go to
//! the `metrics` facade.
//!
//! Two writers, one meaning whatever the backend:
//! * a backend counts only what only it can know: physical [`round_trips`](BackendCounters::round_trips)
//!   (a pipeline counts once);
//! * the [`Counted`](crate::layers::Counted) layer counts calls, reads and per-worker atomic
//!   sections around any backend.
//!
//! Share one `Arc<BackendCounters>` between a backend and a `Counted` layer around it to read
//! all of them in one [`CounterSnapshot`].

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Traffic counters of one repository. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct BackendCounters {
    round_trips: AtomicU64,
    reserve_calls: AtomicU64,
    atomic_sections: AtomicU64,
    release_calls: AtomicU64,
    read_calls: AtomicU64,
    lookup_calls: AtomicU64,
}

/// A copy of [`BackendCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Network round trips (a pipeline counts once); counted by the backend.
    pub round_trips: u64,
    /// `reserve_batch` calls.
    pub reserve_calls: u64,
    /// Per-worker atomic sections: the worker parts of each `reserve_batch` call, plus the
    /// distinct workers that a `release_batch` call released from.
    pub atomic_sections: u64,
    /// `release_batch` calls.
    pub release_calls: u64,
    /// `get_worker` / `list_workers` calls.
    pub read_calls: u64,
    /// `find_reservations` calls (and so `find_reservation`).
    pub lookup_calls: u64,
}

impl CounterSnapshot {
    /// `self - earlier`, per field (saturating).
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            round_trips: self.round_trips.saturating_sub(earlier.round_trips),
            reserve_calls: self.reserve_calls.saturating_sub(earlier.reserve_calls),
            atomic_sections: self.atomic_sections.saturating_sub(earlier.atomic_sections),
            release_calls: self.release_calls.saturating_sub(earlier.release_calls),
            read_calls: self.read_calls.saturating_sub(earlier.read_calls),
            lookup_calls: self.lookup_calls.saturating_sub(earlier.lookup_calls),
        }
    }
}

fn bump(counter: &AtomicU64, name: &'static str, backend: &str, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
    metrics::counter!(name, "backend" => backend.to_owned()).increment(n);
}

impl BackendCounters {
    /// Counts `n` physical round trips (also `sched_backend_round_trips_total`). The one figure a
    /// backend counts itself.
    /// They also go to the call's span when it runs under the [`Traced`](crate::layers::Traced)
    /// layer.
    pub fn round_trips(&self, backend: &str, n: u64) {
        crate::layers::count_round_trips(n);
        bump(
            &self.round_trips,
            "sched_backend_round_trips_total",
            backend,
            n,
        );
    }

    /// Counts one `reserve_batch` call with `sections` per-worker atomic sections.
    pub(crate) fn reserve_call(&self, backend: &str, sections: u64) {
        bump(
            &self.reserve_calls,
            "sched_backend_reserve_calls_total",
            backend,
            1,
        );
        self.sections(backend, sections);
    }

    /// Counts one `release_batch` call (its sections are counted once its reply is known).
    pub(crate) fn release_call(&self, backend: &str) {
        bump(
            &self.release_calls,
            "sched_backend_release_calls_total",
            backend,
            1,
        );
    }

    /// Counts `n` per-worker atomic sections.
    pub(crate) fn sections(&self, backend: &str, n: u64) {
        bump(
            &self.atomic_sections,
            "sched_backend_atomic_sections_total",
            backend,
            n,
        );
    }

    /// Counts one read call (`get_worker`, `list_workers`).
    pub(crate) fn read_call(&self, backend: &str) {
        bump(
            &self.read_calls,
            "sched_backend_read_calls_total",
            backend,
            1,
        );
    }

    /// Counts one `find_reservations` call.
    pub(crate) fn lookup_call(&self, backend: &str) {
        bump(
            &self.lookup_calls,
            "sched_backend_lookup_calls_total",
            backend,
            1,
        );
    }

    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            reserve_calls: self.reserve_calls.load(Ordering::Relaxed),
            atomic_sections: self.atomic_sections.load(Ordering::Relaxed),
            release_calls: self.release_calls.load(Ordering::Relaxed),
            read_calls: self.read_calls.load(Ordering::Relaxed),
            lookup_calls: self.lookup_calls.load(Ordering::Relaxed),
        }
    }
}
