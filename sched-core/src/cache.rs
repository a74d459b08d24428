//! [`WorkerStateCache`]: lock-free snapshots of all workers, refreshed at most once at a time.
//!
//! Readers load an `Arc<Snapshot>` through [`arc_swap::ArcSwapOption`] and never block on each
//! other. When the snapshot is older than the TTL, or was invalidated, one reader refreshes it
//! (single flight); the others keep using the current snapshot if it is merely old, or wait for
//! that one refresh if it was invalidated. The scheduler writes its own committed results
//! through, so its own writes never make the cache stale.
//!
//! Hits touch no shared writable cache line beyond the snapshot's reference count: the hit
//! counter is sharded per thread. A [`CacheReader`] (from [`WorkerStateCache::reader`]) avoids
//! the reference count too, for a task or thread that reads repeatedly.
//!
//! A write-through carries capacity only (free and version). A refresh always takes the spec
//! (pool, selector, preemption, GPU type, priority, status, total) from what it read, and keeps a
//! written-through capacity only when its version is newer: after a re-registration, a refresh
//! never brings an older spec back.

use crate::tiers::Tiers;
use crate::{ReleaseOutcome, RepoError, ResourceKind, Resources, Worker, WorkerRepository};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod counter;
mod reader;
mod stats;

use counter::ShardedCounter;
pub use reader::CacheReader;
pub use stats::CacheStats;

/// Cache settings: [`default`](Self::default) or [`with_ttl`](Self::with_ttl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long a snapshot is served without refresh. Zero disables the cache (read-through).
    pub ttl: Duration,
}

impl CacheConfig {
    /// The default settings with this TTL.
    pub fn with_ttl(ttl: Duration) -> Self {
        CacheConfig { ttl }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_millis(500),
        }
    }
}

/// An immutable view of all workers at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    workers: Vec<Arc<Worker>>,
    index: HashMap<String, usize>,
    taken_at: Instant,
    generation: u64,
    tiers: std::sync::OnceLock<Arc<Tiers>>,
}

impl Snapshot {
    fn new(workers: Vec<Worker>, generation: u64) -> Self {
        let workers: Vec<Arc<Worker>> = workers.into_iter().map(Arc::new).collect();
        let index = workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        Snapshot {
            workers,
            index,
            taken_at: Instant::now(),
            generation,
            tiers: std::sync::OnceLock::new(),
        }
    }

    /// All workers, ordered as the repository listed them (by id).
    pub fn workers(&self) -> &[Arc<Worker>] {
        &self.workers
    }

    /// One worker by id.
    pub fn get(&self, worker_id: &str) -> Option<&Arc<Worker>> {
        self.index.get(worker_id).map(|&i| &self.workers[i])
    }

    /// The workers' priority tiers, computed once per snapshot (write-through keeps them: it
    /// changes only free capacity and versions).
    pub(crate) fn tiers(&self) -> Arc<Tiers> {
        Arc::clone(
            self.tiers
                .get_or_init(|| Arc::new(Tiers::new(&self.workers))),
        )
    }

    /// When the underlying read was taken (write-through does not change it).
    pub(crate) fn taken_at(&self) -> Instant {
        self.taken_at
    }

    /// Age of the read.
    pub fn age(&self) -> Duration {
        self.taken_at.elapsed()
    }
}

#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    workers: HashSet<String>,
}

/// Lock-free cache of worker state. See the [module docs](self).
#[derive(Debug)]
pub struct WorkerStateCache {
    config: CacheConfig,
    current: ArcSwapOption<Snapshot>,
    refresh: tokio::sync::Mutex<()>,
    dirty: Mutex<Dirty>,
    /// Whether `dirty` holds anything: written only under its lock, read without it, so the
    /// hit path takes no lock. A refresh clears it only after storing its snapshot, so a reader
    /// that reads it false (before loading `current`) sees that snapshot or a newer one.
    any_dirty: AtomicBool,
    generation: AtomicU64,
    /// Sharded per thread: every hit adds to it, so one shared line would bounce between cores.
    hits: ShardedCounter,
    misses: AtomicU64,
    refreshes: AtomicU64,
    write_throughs: AtomicU64,
}

impl WorkerStateCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        WorkerStateCache {
            config,
            current: ArcSwapOption::const_empty(),
            refresh: tokio::sync::Mutex::new(()),
            dirty: Mutex::new(Dirty::default()),
            any_dirty: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            hits: ShardedCounter::default(),
            misses: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            write_throughs: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    fn dirty(&self) -> std::sync::MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `any_dirty` from `d` (call with its lock held).
    fn store_any_dirty(&self, d: &Dirty) {
        self.any_dirty
            .store(d.all || !d.workers.is_empty(), Ordering::Release);
    }

    fn is_dirty(&self) -> bool {
        self.any_dirty.load(Ordering::Acquire)
    }

    fn fresh(&self, s: &Snapshot) -> bool {
        s.age() < self.config.ttl
    }

    /// A snapshot no older than the TTL that reflects every invalidation made before the call.
    /// With TTL 0, always reads the repository.
    pub async fn snapshot<R: WorkerRepository + ?Sized>(
        &self,
        repo: &R,
    ) -> Result<Arc<Snapshot>, RepoError> {
        if self.config.ttl.is_zero() {
            self.count_miss();
            let workers = repo.list_workers(None).await?;
            let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            return Ok(Arc::new(Snapshot::new(workers, g)));
        }
        // `any_dirty` before `current`: see the field's docs.
        let dirty = self.is_dirty();
        let seen = match self.current.load_full() {
            Some(s) if !dirty && self.fresh(&s) => {
                self.count_hit();
                return Ok(s);
            }
            seen => seen,
        };
        // Needs a refresh. Only one at a time.
        let guard = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Someone is refreshing. If we only have an old (not invalidated) snapshot, use it.
                if let Some(s) = &seen {
                    if !dirty && !self.is_dirty() {
                        self.count_hit();
                        return Ok(Arc::clone(s));
                    }
                }
                let g = self.refresh.lock().await;
                // Did that refresh produce what we need?
                let dirty = self.is_dirty();
                if let Some(s) = self.current.load_full() {
                    let newer = seen
                        .as_ref()
                        .is_none_or(|old| s.generation > old.generation);
                    if newer && self.fresh(&s) && !dirty {
                        self.count_hit();
                        return Ok(s);
                    }
                }
                g
            }
        };
        let out = self.refresh_locked(repo).await;
        drop(guard);
        out
    }

    async fn refresh_locked<R: WorkerRepository + ?Sized>(
        &self,
        repo: &R,
    ) -> Result<Arc<Snapshot>, RepoError> {
        // Another refresher may have finished between our check and taking the lock.
        let dirty = self.is_dirty();
        if let Some(s) = self.current.load_full() {
            if self.fresh(&s) && !dirty {
                self.count_hit();
                return Ok(s);
            }
        }
        self.count_miss();
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let (all, workers) = {
            let mut d = self.dirty();
            let all = d.all;
            d.all = false;
            // `any_dirty` stays set until the new snapshot is stored (below).
            (all, std::mem::take(&mut d.workers))
        };
        let current = self.current.load_full();
        let partial = match &current {
            Some(s) if !all && self.fresh(s) && !workers.is_empty() && workers.len() <= 8 => {
                Some(s)
            }
            _ => None,
        };
        let result = match partial {
            Some(s) => {
                let reads = futures::future::join_all(
                    workers.iter().map(|id| repo.get_worker(id.as_str())),
                )
                .await;
                let mut list: Vec<Worker> = s.workers.iter().map(|w| (**w).clone()).collect();
                let mut fetched = HashMap::new();
                for (id, r) in workers.iter().zip(reads) {
                    fetched.insert(id.clone(), r?);
                }
                list.retain(|w| !matches!(fetched.get(&w.id), Some(None)));
                for w in &mut list {
                    if let Some(Some(new)) = fetched.get(&w.id) {
                        *w = new.clone();
                    }
                }
                for (id, w) in &fetched {
                    if let Some(w) = w {
                        if !s.index.contains_key(id) {
                            list.push(w.clone());
                        }
                    }
                }
                list.sort_by(|a, b| a.id.cmp(&b.id));
                let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                let mut snap = Snapshot::new(list, g);
                snap.taken_at = s.taken_at; // the rest of the data is as old as before
                Ok(snap)
            }
            None => repo.list_workers(None).await.map(|list| {
                let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                Snapshot::new(list, g)
            }),
        };
        match result {
            Ok(snap) => {
                // Keep capacity written through while we were reading when its version is newer;
                // the spec always comes from this read.
                let snap = Arc::new(snap);
                self.current
                    .rcu(|cur| Some(Arc::new(merge_newer(&snap, cur.as_deref()))));
                let snap = self.current.load_full().unwrap_or(snap);
                // Only now: an invalidation made while reading is still pending in `dirty`.
                self.store_any_dirty(&self.dirty());
                metrics::gauge!("sched_cache_age_seconds").set(0.0);
                Ok(snap)
            }
            Err(e) => {
                // Put the invalidations back so the next reader retries them.
                let mut d = self.dirty();
                d.all |= all;
                d.workers.extend(workers);
                self.store_any_dirty(&d);
                Err(e)
            }
        }
    }

    /// The current snapshot, if any, without refreshing or counting.
    pub fn peek(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// A reading handle for one task or thread: its hits do not touch the snapshot's reference
    /// count. See [`CacheReader`].
    pub fn reader(&self) -> CacheReader<'_> {
        CacheReader::new(self)
    }

    /// Forces the next read to refresh everything.
    pub fn invalidate(&self) {
        let mut d = self.dirty();
        d.all = true;
        self.any_dirty.store(true, Ordering::Release);
    }

    /// Forces the next read to re-read this worker.
    pub fn invalidate_worker(&self, worker_id: &str) {
        let mut d = self.dirty();
        d.workers.insert(worker_id.to_owned());
        self.any_dirty.store(true, Ordering::Release);
    }

    /// Writes committed results through: for each `(worker_id, free, version)`, updates the
    /// cached worker's capacity (free and version only, never its spec) if `version` is newer
    /// than the cached one. Unknown workers are ignored.
    pub(crate) fn write_through(&self, updates: &[(String, Resources, u64)]) {
        if updates.is_empty() || self.config.ttl.is_zero() {
            return;
        }
        self.current.rcu(|cur| {
            let s = cur.as_ref()?;
            let mut next = Snapshot::clone(s);
            for (id, free, version) in updates {
                if let Some(&i) = next.index.get(id) {
                    let w = &next.workers[i];
                    if *version > w.resource_version {
                        let mut nw = Worker::clone(w);
                        nw.free = *free;
                        nw.resource_version = *version;
                        next.workers[i] = Arc::new(nw);
                    }
                }
            }
            Some(Arc::new(next))
        });
        self.write_throughs
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
    }

    /// Writes a capacity rejection through: the store reported only `available` of `kind` free
    /// on `worker_id`, so the cached free amount of that resource is lowered to it (never raised,
    /// and the version is left alone: the rejection carries none, so the next read of the worker
    /// replaces this conservative guess). Plans made from the cache until then do not send
    /// containers that need more of `kind` to that worker.
    pub(crate) fn lower_free(&self, worker_id: &str, kind: ResourceKind, available: u64) {
        if self.config.ttl.is_zero() {
            return;
        }
        let lowered = |w: &Worker| {
            let mut free = w.free;
            if free.get(kind) <= available {
                return None;
            }
            match kind {
                ResourceKind::Cpu => free.cpu_millicores = available,
                ResourceKind::Memory => free.memory_mib = available,
                ResourceKind::Gpu => free.gpu_count = available,
            }
            Some(free)
        };
        let needed = self
            .peek()
            .and_then(|s| s.get(worker_id).and_then(|w| lowered(w)))
            .is_some();
        if !needed {
            return;
        }
        self.current.rcu(|cur| {
            let s = cur.as_ref()?;
            let mut next = Snapshot::clone(s);
            if let Some(&i) = next.index.get(worker_id) {
                if let Some(free) = lowered(&next.workers[i]) {
                    let mut nw = Worker::clone(&next.workers[i]);
                    nw.free = free;
                    next.workers[i] = Arc::new(nw);
                }
            }
            Some(Arc::new(next))
        });
        self.write_throughs.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes released capacity through. Per worker, when the releases' versions continue the
    /// cached version without a gap, nobody else wrote in between and the new free capacity is
    /// known exactly: it is written through. Otherwise the worker is invalidated.
    pub(crate) fn write_through_releases(&self, outcomes: &[ReleaseOutcome]) {
        let snap = self.peek();
        let mut per_worker: BTreeMap<&str, Vec<(u64, Resources)>> = BTreeMap::new();
        for rel in outcomes.iter().filter_map(|o| o.released.as_ref()) {
            per_worker
                .entry(rel.worker_id.as_str())
                .or_default()
                .push((rel.new_version, rel.resources));
        }
        let mut through = Vec::new();
        for (worker_id, mut rels) in per_worker {
            rels.sort_by_key(|(v, _)| *v);
            let exact = snap.as_ref().and_then(|s| s.get(worker_id)).and_then(|w| {
                let contiguous = rels
                    .iter()
                    .enumerate()
                    .all(|(k, (v, _))| *v == w.resource_version + 1 + k as u64);
                if !contiguous {
                    return None;
                }
                let returned = Resources::checked_sum(rels.iter().map(|(_, r)| r)).ok()?;
                let free = w.free.checked_add(&returned).ok()?;
                free.le(&w.total).then_some((free, rels.last()?.0))
            });
            match exact {
                Some((free, version)) => through.push((worker_id.to_owned(), free, version)),
                None => self.invalidate_worker(worker_id),
            }
        }
        self.write_through(&through);
    }

    /// Counters and the current snapshot's age.
    pub fn stats(&self) -> CacheStats {
        let age = self
            .current
            .load()
            .as_ref()
            .map(|s| s.age().as_secs_f64())
            .unwrap_or(0.0);
        metrics::gauge!("sched_cache_age_seconds").set(age);
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            write_throughs: self.write_throughs.load(Ordering::Relaxed),
            age_secs: age,
        }
    }

    fn count_hit(&self) {
        self.hits.add(1);
        metrics::counter!("sched_cache_hits_total").increment(1);
    }

    fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sched_cache_misses_total").increment(1);
    }
}

/// `fresh` with, per worker, the capacity (free and version) of `cur` where its version is
/// newer. The spec (pool, selector, preemption, GPU type, priority, status, total) is always
/// `fresh`'s: a written-through entry carries capacity only, on top of whatever spec was cached
/// when it was written, so it must never bring an older spec back after a re-registration.
fn merge_newer(fresh: &Snapshot, cur: Option<&Snapshot>) -> Snapshot {
    let mut out = fresh.clone();
    if let Some(cur) = cur {
        for w in &mut out.workers {
            if let Some(c) = cur.get(&w.id) {
                if c.resource_version > w.resource_version && c.free.le(&w.total) {
                    let mut nw = Worker::clone(w);
                    nw.free = c.free;
                    nw.resource_version = c.resource_version;
                    *w = Arc::new(nw);
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "cache_test.rs"]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
