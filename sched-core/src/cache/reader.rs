//! [`CacheReader`]: a per-task handle on a [`WorkerStateCache`] whose hits write nothing shared.

use super::{Snapshot, WorkerStateCache};
use crate::{RepoError, WorkerRepository};
use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// A reading handle for one task or thread, from [`WorkerStateCache::reader`].
///
/// It keeps its own reference to the cache's current snapshot (an [`arc_swap::Cache`]) and
/// hands out `&Arc<Snapshot>`: a hit reads the cache's pointer and its dirty flag and writes
/// only the calling thread's hit-counter shard, never the snapshot's shared reference count.
/// It sees invalidations, refreshes and write-throughs exactly as
/// [`WorkerStateCache::snapshot`] does; a miss goes through that method (single flight).
///
/// The handle holds on to the last snapshot it saw until its next read: keep it for a loop of
/// reads, not for the life of the process.
pub struct CacheReader<'a> {
    cache: &'a WorkerStateCache,
    local: arc_swap::Cache<&'a ArcSwapOption<Snapshot>, Option<Arc<Snapshot>>>,
    /// A snapshot from a miss that is newer than `local` (with TTL 0, never stored in the cache).
    held: Option<Arc<Snapshot>>,
}

impl std::fmt::Debug for CacheReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheReader")
            .field("held", &self.held.as_ref().map(|s| s.generation))
            .finish_non_exhaustive()
    }
}

impl<'a> CacheReader<'a> {
    pub(super) fn new(cache: &'a WorkerStateCache) -> Self {
        CacheReader {
            cache,
            local: arc_swap::Cache::new(&cache.current),
            held: None,
        }
    }

    /// The cache's current snapshot, if any, without refreshing or counting (like
    /// [`WorkerStateCache::peek`], without cloning the `Arc`).
    pub fn peek(&mut self) -> Option<&Arc<Snapshot>> {
        self.local.load().as_ref()
    }

    /// Like [`WorkerStateCache::snapshot`]: a snapshot no older than the TTL that reflects every
    /// invalidation made before the call, counted as a hit or a miss in the cache's stats.
    pub async fn snapshot<R: WorkerRepository + ?Sized>(
        &mut self,
        repo: &R,
    ) -> Result<&Arc<Snapshot>, RepoError> {
        let cache = self.cache;
        // `any_dirty` before the pointer: see `WorkerStateCache::any_dirty`.
        let hit = !cache.config.ttl.is_zero()
            && !cache.is_dirty()
            && self.local.load().as_ref().is_some_and(|s| cache.fresh(s));
        if hit {
            cache.count_hit();
            self.held = None;
        } else {
            let s = cache.snapshot(repo).await?;
            // The cache's current snapshot is `s`, a write-through on top of it or a newer
            // refresh, unless `s` was never stored (TTL 0).
            let covered = self
                .local
                .load()
                .as_ref()
                .is_some_and(|c| c.generation >= s.generation);
            self.held = (!covered).then_some(s);
        }
        let CacheReader { local, held, .. } = self;
        match held {
            Some(s) => Ok(s),
            // Not reached: a hit or `covered` saw a snapshot, and the cache never empties.
            None => local
                .load()
                .as_ref()
                .ok_or_else(|| RepoError::backend("worker-state cache emptied during a read")),
        }
    }
}
