//! [`BackendCounters`]: cheap shared counters a backend keeps about its traffic, so that the
//! simulator can report round trips per burst. Backends also emit the same figures through the
//! `metrics` facade.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Traffic counters of one backend instance. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct BackendCounters {
    round_trips: AtomicU64,
    reserve_calls: AtomicU64,
    atomic_sections: AtomicU64,
    release_calls: AtomicU64,
    read_calls: AtomicU64,
}

/// A copy of [`BackendCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Network round trips (a pipeline counts once).
    pub round_trips: u64,
    /// `reserve_batch` calls.
    pub reserve_calls: u64,
    /// Per-worker atomic sections executed (scripts, row updates, critical sections).
    pub atomic_sections: u64,
    /// `release_batch` calls.
    pub release_calls: u64,
    /// `get_worker` / `list_workers` calls.
    pub read_calls: u64,
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
        }
    }
}

impl BackendCounters {
    /// Counts `n` round trips (also `sched_backend_round_trips_total`).
    pub fn round_trips(&self, backend: &'static str, n: u64) {
        self.round_trips.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("sched_backend_round_trips_total", "backend" => backend).increment(n);
    }

    /// Counts one `reserve_batch` call with `sections` per-worker atomic sections.
    pub fn reserve_call(&self, backend: &'static str, sections: u64) {
        self.reserve_calls.fetch_add(1, Ordering::Relaxed);
        self.atomic_sections.fetch_add(sections, Ordering::Relaxed);
        metrics::counter!("sched_backend_reserve_calls_total", "backend" => backend).increment(1);
        metrics::counter!("sched_backend_atomic_sections_total", "backend" => backend)
            .increment(sections);
    }

    /// Counts one `release_batch` call with `sections` per-worker atomic sections.
    pub fn release_call(&self, backend: &'static str, sections: u64) {
        self.release_calls.fetch_add(1, Ordering::Relaxed);
        self.atomic_sections.fetch_add(sections, Ordering::Relaxed);
        metrics::counter!("sched_backend_release_calls_total", "backend" => backend).increment(1);
    }

    /// Counts one read call.
    pub fn read_call(&self, backend: &'static str) {
        self.read_calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_backend_read_calls_total", "backend" => backend).increment(1);
    }

    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            reserve_calls: self.reserve_calls.load(Ordering::Relaxed),
            atomic_sections: self.atomic_sections.load(Ordering::Relaxed),
            release_calls: self.release_calls.load(Ordering::Relaxed),
            read_calls: self.read_calls.load(Ordering::Relaxed),
        }
    }
}
