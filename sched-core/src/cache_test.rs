//! Unit tests of the worker-state cache (kept apart from the library code).
use super::*;
use crate::*;
use async_trait::async_trait;
use std::sync::atomic::AtomicUsize;

/// A repository that only answers list/get and counts them.
#[derive(Default)]
struct Fake {
    workers: Mutex<Vec<Worker>>,
    lists: AtomicUsize,
    gets: AtomicUsize,
    delay: Duration,
    /// Runs once, right after the next `list_workers` has read the workers.
    after_list: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[async_trait]
impl WorkerRepository for Fake {
    fn backend_name(&self) -> &str {
        "fake"
    }
    async fn register_worker(&self, _: &WorkerSpec) -> Result<Worker, RepoError> {
        unimplemented!()
    }
    async fn remove_worker(&self, _: &str) -> Result<bool, RepoError> {
        unimplemented!()
    }
    async fn get_worker(&self, id: &str) -> Result<Option<Worker>, RepoError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .workers
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.id == id)
            .cloned())
    }
    async fn list_workers(&self, _: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let read = self.workers.lock().unwrap().clone();
        if let Some(hook) = self.after_list.lock().unwrap().take() {
            hook();
        }
        Ok(read)
    }
    async fn reserve_batch(
        &self,
        _: &[CapacityReservation],
        _: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        unimplemented!()
    }
    async fn release_batch(&self, _: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        unimplemented!()
    }
    async fn find_reservations(
        &self,
        _: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        unimplemented!()
    }
    async fn list_reservations(&self, _: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        unimplemented!()
    }
    async fn audit_worker(&self, _: &str, _: AuditMode) -> Result<AuditReport, RepoError> {
        unimplemented!()
    }
}

fn fake(n: usize) -> Fake {
    Fake {
        workers: Mutex::new(
            (0..n)
                .map(|i| {
                    Worker::from_spec(
                        &WorkerSpec::new(format!("w{i}"), Resources::cpu_mem(1000, 1000)),
                        1,
                    )
                })
                .collect(),
        ),
        ..Fake::default()
    }
}

#[tokio::test]
async fn ttl_serves_hits_then_refreshes() {
    let repo = fake(3);
    let cache = WorkerStateCache::new(CacheConfig {
        ttl: Duration::from_millis(50),
    });
    cache.snapshot(&repo).await.unwrap();
    cache.snapshot(&repo).await.unwrap();
    assert_eq!(repo.lists.load(Ordering::SeqCst), 1);
    let st = cache.stats();
    assert_eq!((st.hits, st.misses), (1, 1));
    tokio::time::sleep(Duration::from_millis(60)).await;
    cache.snapshot(&repo).await.unwrap();
    assert_eq!(repo.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ttl_zero_reads_through() {
    let repo = fake(2);
    let cache = WorkerStateCache::new(CacheConfig {
        ttl: Duration::ZERO,
    });
    for _ in 0..3 {
        cache.snapshot(&repo).await.unwrap();
    }
    assert_eq!(repo.lists.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().hits, 0);
}

#[tokio::test]
async fn one_refresh_in_flight() {
    let mut repo = fake(2);
    repo.delay = Duration::from_millis(30);
    let repo = Arc::new(repo);
    let cache = Arc::new(WorkerStateCache::new(CacheConfig::default()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, r) = (Arc::clone(&cache), Arc::clone(&repo));
            tokio::spawn(async move { c.snapshot(&*r).await.map(|s| s.workers().len()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 2);
    }
    assert_eq!(
        repo.lists.load(Ordering::SeqCst),
        1,
        "readers must share one refresh"
    );
}

#[tokio::test]
async fn invalidate_worker_rereads_only_that_worker() {
    let repo = fake(4);
    let cache = WorkerStateCache::new(CacheConfig::default());
    cache.snapshot(&repo).await.unwrap();
    repo.workers.lock().unwrap()[1].free = Resources::cpu_mem(1, 1);
    repo.workers.lock().unwrap()[1].resource_version = 2;
    cache.invalidate_worker("w1");
    let s = cache.snapshot(&repo).await.unwrap();
    assert_eq!(s.get("w1").unwrap().free, Resources::cpu_mem(1, 1));
    assert_eq!(repo.lists.load(Ordering::SeqCst), 1);
    assert_eq!(repo.gets.load(Ordering::SeqCst), 1);
    cache.invalidate();
    cache.snapshot(&repo).await.unwrap();
    assert_eq!(repo.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn write_through_keeps_newest_version() {
    let repo = fake(2);
    let cache = WorkerStateCache::new(CacheConfig::default());
    cache.snapshot(&repo).await.unwrap();
    cache.write_through(&[("w0".into(), Resources::cpu_mem(10, 10), 5)]);
    cache.write_through(&[("w0".into(), Resources::cpu_mem(20, 20), 4)]); // older: ignored
    let s = cache.snapshot(&repo).await.unwrap();
    let w = s.get("w0").unwrap();
    assert_eq!(
        (w.free, w.resource_version),
        (Resources::cpu_mem(10, 10), 5)
    );
    // A later full refresh that read older data keeps the written-through version.
    cache.invalidate();
    let s = cache.snapshot(&repo).await.unwrap();
    assert_eq!(s.get("w0").unwrap().resource_version, 5);
}

/// Issue 10 case 10: a re-registration moved w0 to another pool; a commit made after it is
/// written through onto the cached entry (old spec) while a refresh is reading. The refresh's
/// spec must win, and the newer capacity too; the planner never uses the old pool.
#[tokio::test]
async fn refresh_keeps_the_stores_spec_over_a_newer_write_through() {
    let repo = Arc::new(fake(2));
    let cache = Arc::new(WorkerStateCache::new(CacheConfig::default()));
    cache.snapshot(&*repo).await.unwrap();
    let moved = WorkerSpec::new("w0", Resources::cpu_mem(1000, 1000))
        .with_pool("new")
        .requiring_pool_selector()
        .preemptable();
    repo.workers.lock().unwrap()[0] = Worker::from_spec(&moved, 2);
    let c = Arc::clone(&cache);
    *repo.after_list.lock().unwrap() = Some(Box::new(move || {
        c.write_through(&[("w0".into(), Resources::cpu_mem(900, 900), 3)]);
    }));
    cache.invalidate();
    let s = cache.snapshot(&*repo).await.unwrap();
    let w = s.get("w0").unwrap();
    assert_eq!(
        (w.pool.as_str(), w.requires_pool_selector, w.preemptable),
        ("new", true, true),
        "the refreshed spec wins over a written-through entry"
    );
    assert_eq!(
        (w.free, w.resource_version),
        (Resources::cpu_mem(900, 900), 3),
        "for capacity, the newer version wins"
    );
    let cfg = crate::scheduler::PlanConfig::default();
    for r in [
        ContainerRequest::new("old-pool", Resources::cpu_mem(1, 1)).with_pool("default"),
        ContainerRequest::new("no-pool", Resources::cpu_mem(1, 1)).non_preemptable(),
    ] {
        let p = crate::scheduler::plan(s.workers(), &[&r], &cfg);
        assert!(
            p.assignments.keys().all(|&wi| s.workers()[wi].id == "w1"),
            "{} planned onto the re-registered worker: {p:?}",
            r.id
        );
    }
    // A later write-through changes capacity only.
    cache.write_through(&[("w0".into(), Resources::cpu_mem(800, 800), 4)]);
    let w = Arc::clone(cache.peek().unwrap().get("w0").unwrap());
    assert_eq!(
        (w.pool.as_str(), w.free),
        ("new", Resources::cpu_mem(800, 800))
    );
}

/// The generation of what `reader.snapshot` returns, and how many lists the repo answered.
async fn reader_read(reader: &mut CacheReader<'_>, repo: &Fake) -> (u64, usize) {
    let g = reader.snapshot(repo).await.unwrap().generation;
    (g, repo.lists.load(Ordering::SeqCst))
}

#[tokio::test]
async fn reader_hits_are_counted_and_see_write_throughs_at_once() {
    let repo = fake(2);
    let cache = WorkerStateCache::new(CacheConfig::default());
    let mut reader = cache.reader();
    assert!(reader.peek().is_none());
    let (g1, lists) = reader_read(&mut reader, &repo).await;
    assert_eq!(lists, 1);
    assert_eq!(reader_read(&mut reader, &repo).await, (g1, 1));
    let st = cache.stats();
    assert_eq!((st.hits, st.misses), (1, 1));
    cache.write_through(&[("w0".into(), Resources::cpu_mem(7, 7), 9)]);
    let w = Arc::clone(reader.peek().unwrap().get("w0").unwrap());
    assert_eq!((w.free, w.resource_version), (Resources::cpu_mem(7, 7), 9));
    let s = reader.snapshot(&repo).await.unwrap();
    assert_eq!(s.get("w0").unwrap().resource_version, 9);
    assert_eq!(
        repo.lists.load(Ordering::SeqCst),
        1,
        "a write-through is a hit"
    );
}

#[tokio::test]
async fn reader_sees_invalidations_at_once() {
    let repo = fake(3);
    let cache = WorkerStateCache::new(CacheConfig::default());
    let mut reader = cache.reader();
    reader.snapshot(&repo).await.unwrap();
    repo.workers.lock().unwrap()[2].free = Resources::cpu_mem(3, 3);
    repo.workers.lock().unwrap()[2].resource_version = 2;
    cache.invalidate_worker("w2");
    let s = reader.snapshot(&repo).await.unwrap();
    assert_eq!(s.get("w2").unwrap().free, Resources::cpu_mem(3, 3));
    assert_eq!(repo.gets.load(Ordering::SeqCst), 1);
    repo.workers.lock().unwrap().pop();
    cache.invalidate();
    let s = reader.snapshot(&repo).await.unwrap();
    assert!(
        s.get("w2").is_none(),
        "a full refresh drops the removed worker"
    );
    assert_eq!(repo.lists.load(Ordering::SeqCst), 2);
}

/// Another reader (or the cache itself) refreshed after an invalidation: this reader serves the
/// refreshed snapshot from then on, never the one it held before.
#[tokio::test]
async fn reader_never_serves_older_than_the_current_snapshot() {
    let repo = fake(2);
    let cache = WorkerStateCache::new(CacheConfig::default());
    let (mut a, mut b) = (cache.reader(), cache.reader());
    let (g_a, _) = reader_read(&mut a, &repo).await;
    cache.invalidate();
    let (g_b, lists) = reader_read(&mut b, &repo).await;
    assert!(g_b > g_a);
    assert_eq!(lists, 2);
    assert_eq!(a.peek().unwrap().generation, g_b);
    assert_eq!(
        reader_read(&mut a, &repo).await,
        (g_b, 2),
        "a hit on the refresh"
    );
    cache.invalidate();
    let g_c = cache.snapshot(&repo).await.unwrap().generation;
    assert_eq!(reader_read(&mut a, &repo).await, (g_c, 3));
    assert_eq!(reader_read(&mut b, &repo).await, (g_c, 3));
}

#[tokio::test]
async fn reader_with_ttl_zero_reads_through() {
    let repo = fake(1);
    let cache = WorkerStateCache::new(CacheConfig {
        ttl: Duration::ZERO,
    });
    let mut reader = cache.reader();
    let (g1, _) = reader_read(&mut reader, &repo).await;
    let (g2, lists) = reader_read(&mut reader, &repo).await;
    assert!(g2 > g1);
    assert_eq!(lists, 2);
    assert_eq!(cache.stats().hits, 0);
}

/// While the refresh that follows an invalidation is reading, neither the cache nor a reader
/// serves the invalidated snapshot: they wait for the refresh.
#[tokio::test]
async fn no_hit_while_the_refresh_after_an_invalidation_reads() {
    use futures::FutureExt;
    let repo = Arc::new(fake(2));
    let cache = Arc::new(WorkerStateCache::new(CacheConfig::default()));
    cache.snapshot(&*repo).await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let (c, out) = (Arc::clone(&cache), Arc::clone(&served));
    *repo.after_list.lock().unwrap() = Some(Box::new(move || {
        let other = fake(0);
        let mut r = c.reader();
        let mut out = out.lock().unwrap();
        out.push(r.snapshot(&other).now_or_never().is_some());
        out.push(c.snapshot(&other).now_or_never().is_some());
    }));
    cache.invalidate();
    cache.snapshot(&*repo).await.unwrap();
    assert_eq!(*served.lock().unwrap(), vec![false, false]);
}

/// Hits counted on many threads add up exactly (the counter is sharded per thread).
#[tokio::test]
async fn hits_from_many_threads_add_up() {
    let repo = fake(1);
    let cache = WorkerStateCache::new(CacheConfig::default());
    cache.snapshot(&repo).await.unwrap();
    std::thread::scope(|s| {
        for t in 0..20 {
            let (cache, repo) = (&cache, &repo);
            s.spawn(move || {
                let mut reader = cache.reader();
                for _ in 0..100 {
                    if t % 2 == 0 {
                        futures::executor::block_on(reader.snapshot(repo)).unwrap();
                    } else {
                        futures::executor::block_on(cache.snapshot(repo)).unwrap();
                    }
                }
            });
        }
    });
    let st = cache.stats();
    assert_eq!((st.hits, st.misses), (2000, 1));
}
