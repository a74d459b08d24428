//! [`Clock`]: the memory store's clock — the process clock, or a [`ManualClock`] a test moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the memory store reads "now" (ms since the Unix epoch) for heartbeats and leases: the
/// in-process equivalent of Redis `TIME` or Postgres `now()`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The process's system clock.
    #[default]
    System,
    /// A clock that moves only when told to (deterministic tests of expiry and staleness).
    Manual(ManualClock),
}

impl Clock {
    /// The current time in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            Clock::Manual(m) => m.now_ms(),
        }
    }
}

/// A shared clock that stands still until [`advance`](Self::advance)d or [`set`](Self::set).
/// Clones share the same time.
///
/// ```
/// use sched_memory::ManualClock;
/// use std::time::Duration;
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms)))
    }

    /// The current time.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `d` (whole milliseconds, rounded down).
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the clock (it may go backwards: a test of a clock step).
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}
