//! [`CacheStats`]: the cache's counters.

use serde::Serialize;

/// Cache counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheStats {
    /// Reads served from a snapshot without going to the repository.
    pub hits: u64,
    /// Reads that went to the repository (including read-through with TTL 0).
    pub misses: u64,
    /// Full or partial refreshes performed.
    pub refreshes: u64,
    /// Results written through.
    pub write_throughs: u64,
    /// Age of the current snapshot, in seconds (0 when there is none).
    pub age_secs: f64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 with no reads.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}
