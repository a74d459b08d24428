//! [`ShardedCounter`]: a counter spread over cache lines so that threads adding to it do not
//! write to one shared line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of shards: threads beyond it share shards (still correct, just contended).
const SHARDS: usize = 16;

/// One shard, alone on its cache line (128 bytes covers adjacent-line prefetching).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A monotonic counter: [`add`](Self::add) writes the calling thread's shard,
/// [`sum`](Self::sum) reads them all.
#[derive(Debug)]
pub(super) struct ShardedCounter {
    shards: [Shard; SHARDS],
}

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

/// The calling thread's shard: threads are numbered round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    // During thread teardown the thread-local is gone: any shard is correct.
    INDEX.try_with(|i| *i).unwrap_or(0)
}

impl ShardedCounter {
    /// Adds `n` to the calling thread's shard.
    pub(super) fn add(&self, n: u64) {
        if let Some(s) = self.shards.get(shard_index()) {
            s.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The total over all shards (each read once: exact when no add runs concurrently).
    pub(super) fn sum(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}
