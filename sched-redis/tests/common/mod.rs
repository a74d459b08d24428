//! Shared helpers of the sched-redis integration tests: a fresh random key prefix per test,
//! deleted again when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod nodes;

use sched_core::RepoError;
use sched_redis::{RedisConfig, RedisRepository};
use std::ops::Deref;

/// Which client library to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// redis-rs
    RedisRs,
    /// fred
    #[cfg(feature = "fred")]
    Fred,
}

/// Every client compiled in.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind::RedisRs,
        #[cfg(feature = "fred")]
        Kind::Fred,
    ]
}

/// Where: a single node (`REDIS_URL`) or a cluster (`REDIS_CLUSTER_URLS`, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

pub fn config(topology: Topology, test: &str) -> Option<RedisConfig> {
    let prefix = format!("sched-test-{:016x}", rand::random::<u64>());
    match topology {
        Topology::Single => sched_tests::env::require_url("REDIS_URL", test)
            .map(|u| RedisConfig::from_url(u).with_prefix(prefix)),
        Topology::Cluster => sched_tests::env::require_url("REDIS_CLUSTER_URLS", test).map(|u| {
            RedisConfig::cluster(u.split(',').map(str::trim).filter(|s| !s.is_empty()))
                .with_timeouts(
                    std::time::Duration::from_secs(2),
                    std::time::Duration::from_secs(30),
                )
                .with_prefix(prefix)
        }),
    }
}

pub async fn connect(kind: Kind, cfg: &RedisConfig) -> Result<RedisRepository, RepoError> {
    match kind {
        Kind::RedisRs => RedisRepository::connect(cfg).await,
        #[cfg(feature = "fred")]
        Kind::Fred => RedisRepository::connect_fred(cfg).await,
    }
}

/// A repository on a fresh prefix whose keys are deleted on drop.
pub struct Fresh {
    pub repo: RedisRepository,
    cfg: RedisConfig,
    kind: Kind,
}

pub async fn fresh(kind: Kind, topology: Topology, test: &str) -> Option<Fresh> {
    let cfg = config(topology, test)?;
    let repo = connect(kind, &cfg).await.expect("connect to redis");
    Some(Fresh { repo, cfg, kind })
}

/// A repository on `cfg` (give it a fresh prefix) whose keys are deleted on drop.
pub async fn fresh_with(kind: Kind, cfg: RedisConfig) -> Fresh {
    let repo = connect(kind, &cfg).await.expect("connect to redis");
    Fresh { repo, cfg, kind }
}

impl Fresh {
    /// The configuration (with its fresh prefix), to open more connections to the same keys.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }
}

impl Deref for Fresh {
    type Target = RedisRepository;
    fn deref(&self) -> &RedisRepository {
        &self.repo
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // The test's runtime is busy dropping us: clean up on a thread with its own runtime
        // and its own connection.
        let cfg = self.cfg.clone();
        let kind = self.kind;
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let repo = connect(kind, &cfg).await.expect("connect for clean-up");
                repo.delete_all_keys().await.expect("delete test keys");
                let left = repo.delete_all_keys().await.expect("count test keys");
                assert_eq!(left, 0, "keys left behind under {}", repo.key_pattern());
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("clean-up of {:?} failed", self.cfg.key_prefix);
        }
    }
}

/// Forwards everything to the repository; the wrapper only adds the clean-up on drop.
impl sched_core::RepositoryLayer for Fresh {
    type Inner = RedisRepository;
    fn inner(&self) -> &RedisRepository {
        &self.repo
    }
}

/// Direct connections to every node (for `SCRIPT FLUSH` and friends behind the repository's
/// back).
pub async fn raw_nodes(topology: Topology) -> Vec<redis::aio::MultiplexedConnection> {
    let urls: Vec<String> = match topology {
        Topology::Single => std::env::var("REDIS_URL").into_iter().collect(),
        Topology::Cluster => std::env::var("REDIS_CLUSTER_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let mut out = Vec::new();
    for u in urls {
        let c = redis::Client::open(u.as_str()).unwrap();
        out.push(c.get_multiplexed_async_connection().await.unwrap());
    }
    out
}

/// `SCRIPT FLUSH` is server-wide: tests that count round trips or need the scripts cached hold
/// this for reading, the test that flushes holds it for writing.
pub static SCRIPT_CACHE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Holds [`SCRIPT_CACHE`] for reading and loads every `lua/*.lua` script on every node of
/// `topology` first, so a round-trip count never includes a `NOSCRIPT` retry (on a fresh
/// cluster a node may not yet have seen a script, whatever ran before in this process).
pub async fn scripts_loaded(topology: Topology) -> tokio::sync::RwLockReadGuard<'static, ()> {
    let guard = SCRIPT_CACHE.read().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
    let bodies: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "lua"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(bodies.len() > 10, "lua scripts not found in {dir}");
    for mut node in raw_nodes(topology).await {
        for body in &bodies {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(body)
                .query_async(&mut node)
                .await
                .unwrap();
        }
    }
    guard
}

/// A repository (fresh prefix) that talks to `REDIS_URL` through a [`FaultProxy`].
pub async fn through_proxy(
    kind: Kind,
    test: &str,
) -> Option<(Fresh, sched_tests::proxy::FaultProxy)> {
    let url = sched_tests::env::require_url("REDIS_URL", test)?;
    let authority = url.split("://").nth(1).unwrap_or(&url);
    let authority = authority.split('/').next().unwrap();
    let authority = authority.rsplit('@').next().unwrap();
    let upstream = tokio::net::lookup_host(authority)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = sched_tests::proxy::FaultProxy::start(upstream)
        .await
        .unwrap();
    let cfg = config(Topology::Single, test)?;
    let mut proxied = cfg.clone();
    proxied.urls = vec![format!("redis://{}", proxy.addr())];
    let repo = connect(kind, &proxied).await.unwrap();
    // Clean-up goes straight to the server, not through the proxy.
    Some((Fresh { repo, cfg, kind }, proxy))
}

pub fn rr(id: &str, cpu: u64) -> sched_core::ResourceReservation {
    sched_core::ResourceReservation::new(id, sched_core::Resources::cpu_mem(cpu, cpu))
}

/// Every test of this crate for one client on one topology.
macro_rules! redis_suite {
    ($kind:expr, $topo:expr) => {
        use common::{fresh, raw_nodes, rr, Fresh, SCRIPT_CACHE};
        use sched_core::{
            CapacityReservation, CommitMode, RepoError, Resources, WorkerRepository, WorkerSpec,
        };
        use std::sync::Arc;
        use std::time::Duration;

        async fn make(test: &str) -> Option<Fresh> {
            fresh($kind, $topo, test).await
        }

        /// One `#[tokio::test]` per conformance check, each on a fresh key prefix.
        mod each_check {
            use super::*;
            sched_tests::conformance_tests!(make("conformance"));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_all_checks_concurrently() {
            let Some(repo) = make("conformance_all_checks_concurrently").await else {
                return;
            };
            sched_tests::conformance::run_all_concurrently(&repo).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn properties() {
            let Some(repo) = make("properties").await else {
                return;
            };
            let repo: Arc<dyn WorkerRepository> = Arc::new(repo);
            sched_tests::properties::run_all_async(
                repo,
                sched_tests::properties::PropConfig::from_env(),
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn properties_lifecycle() {
            let Some(repo) = make("properties_lifecycle").await else {
                return;
            };
            let repo: Arc<dyn WorkerRepository> = Arc::new(repo);
            sched_tests::properties::run_lifecycle_async(
                repo,
                sched_tests::properties::PropConfig::from_env(),
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lost_replies_are_resolved() {
            let Some(repo) = make("lost_replies_are_resolved").await else {
                return;
            };
            let repo: Arc<dyn WorkerRepository> = Arc::new(repo);
            sched_tests::faults::check_lost_reserve_reply_is_resolved(Arc::clone(&repo)).await;
            sched_tests::faults::check_lost_release_reply_is_idempotent(repo).await;
        }

        /// 100 containers on 20 workers: one pipelined round trip on a single node (claims
        /// first, then the scripts: two on a cluster), 20 atomic sections.
        #[tokio::test]
        async fn round_trips_per_burst() {
            let Some(repo) = make("round_trips_per_burst").await else {
                return;
            };
            // Calls and sections are counted by the layer, round trips by the backend.
            let counters = repo.counters();
            let repo = sched_core::layers::Counted::with_counters(repo, counters);
            for w in 0..20 {
                repo.register_worker(&WorkerSpec::new(
                    format!("w{w}"),
                    Resources::cpu_mem(10_000, 10_000),
                ))
                .await
                .unwrap();
            }
            let batch: Vec<_> = (0..20)
                .map(|w| {
                    CapacityReservation::new(
                        format!("w{w}"),
                        (0..5).map(|c| rr(&format!("c{w}-{c}"), 100)).collect(),
                    )
                })
                .collect();
            let ids: Vec<String> = (0..20)
                .flat_map(|w| (0..5).map(move |c| format!("c{w}-{c}")))
                .collect();
            let _cache = SCRIPT_CACHE.read().await;
            // Warm the script caches of every node so the count is the steady state.
            repo.reserve_batch(&batch, CommitMode::AllOrNothing)
                .await
                .unwrap();
            repo.release_batch(&ids).await.unwrap();
            let before = repo.counters().snapshot();
            let out = repo
                .reserve_batch(&batch, CommitMode::AllOrNothing)
                .await
                .unwrap();
            let d = repo.counters().snapshot().since(&before);
            assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
            let expected = if repo.get_ref().is_cluster() { 2 } else { 1 };
            assert_eq!(d.round_trips, expected, "{d:?}");
            assert_eq!(d.reserve_calls, 1);
            assert_eq!(d.atomic_sections, 20);

            let before = repo.counters().snapshot();
            let out = repo.release_batch(&ids).await.unwrap();
            assert!(out.iter().all(|o| o.released.is_some()));
            let d = repo.counters().snapshot().since(&before);
            // One node: one script reading the index itself; cluster: the scripts on the workers
            // this repository placed them on, then dropping the claims.
            assert_eq!(
                d.round_trips,
                if repo.get_ref().is_cluster() { 2 } else { 1 },
                "{d:?}"
            );
            assert_eq!(d.release_calls, 1);

            // Warm worker.lua on every node too.
            repo.list_workers(None).await.unwrap();
            let before = repo.counters().snapshot();
            assert_eq!(repo.list_workers(None).await.unwrap().len(), 20);
            assert!(repo.get_worker("w3").await.unwrap().is_some());
            let d = repo.counters().snapshot().since(&before);
            // One node: list = workers.lua (1); cluster: members + worker.lua pipeline (2).
            let list = if repo.get_ref().is_cluster() { 2 } else { 1 };
            assert_eq!(d.round_trips, list + 1, "list + get (1): {d:?}");
            assert_eq!(d.read_calls, 2);
        }

        /// Removed workers leave the worker set: the next `list_workers` prunes them, so a
        /// listing reads what is registered, not every id ever registered; an id registered
        /// again is listed again, also by another repository.
        #[tokio::test]
        async fn removed_workers_are_pruned_from_the_worker_set() {
            let Some(repo) = make("removed_workers_are_pruned").await else {
                return;
            };
            let spec = |w: usize| WorkerSpec::new(format!("w{w:02}"), Resources::cpu_mem(100, 100));
            for w in 0..12 {
                repo.register_worker(&spec(w)).await.unwrap();
            }
            for w in 0..10 {
                assert!(repo.remove_worker(&format!("w{w:02}")).await.unwrap());
            }
            assert_eq!(repo.worker_set().await.unwrap().0.len(), 12, "pruned by a listing");
            let listed = |ws: Vec<sched_core::Worker>| -> Vec<String> {
                ws.into_iter().map(|w| w.id).collect()
            };
            assert_eq!(listed(repo.list_workers(None).await.unwrap()), ["w10", "w11"]);
            let (set, gens) = repo.worker_set().await.unwrap();
            assert_eq!(set, ["w10", "w11"]);
            assert_eq!(gens.keys().collect::<Vec<_>>(), ["w10", "w11"]);

            let again = repo.register_worker(&spec(3)).await.unwrap();
            assert_eq!(again.resource_version, 2, "continues the removed worker's version");
            let other = common::connect($kind, repo.config()).await.unwrap();
            for r in [&repo.repo, &other] {
                let ws = listed(r.list_workers(None).await.unwrap());
                assert_eq!(ws, ["w03", "w10", "w11"]);
            }
            assert_eq!(repo.worker_set().await.unwrap().0, ["w03", "w10", "w11"]);
        }

        /// The prune is fenced by the id's generation: a listing that saw an id removed does not
        /// drop it once it was registered again (the race of a listing with a registration).
        #[tokio::test]
        async fn a_prune_keeps_an_id_registered_since_it_was_read() {
            let Some(repo) = make("a_prune_keeps_a_reregistered_id").await else {
                return;
            };
            let spec = WorkerSpec::new("w", Resources::cpu_mem(100, 100));
            repo.register_worker(&spec).await.unwrap();
            assert!(repo.remove_worker("w").await.unwrap());
            let seen = repo.worker_set().await.unwrap().1["w"].clone();
            // Registered again between the listing's read and its prune.
            repo.register_worker(&spec).await.unwrap();
            assert_eq!(repo.prune_worker_set(&[("w", &seen)]).await.unwrap(), 0);
            assert_eq!(repo.worker_set().await.unwrap().0, ["w"]);
            assert_eq!(repo.list_workers(None).await.unwrap().len(), 1);
            // Removed again: the generation as now read lets it go.
            assert!(repo.remove_worker("w").await.unwrap());
            let now = repo.worker_set().await.unwrap().1["w"].clone();
            assert_ne!(now, seen);
            assert_eq!(repo.prune_worker_set(&[("w", &now)]).await.unwrap(), 1);
            assert!(repo.worker_set().await.unwrap().0.is_empty());
            assert!(repo.list_workers(None).await.unwrap().is_empty());
            // An id never seen by the store: nothing to drop, no error.
            assert_eq!(repo.prune_worker_set(&[("nope", "")]).await.unwrap(), 0);
        }

        /// `SCRIPT FLUSH` behind the repository's back: the next call answers NOSCRIPT, loads the
        /// scripts and retries, once, and the result is right.
        #[tokio::test]
        async fn noscript_is_reloaded_after_script_flush() {
            let Some(repo) = make("noscript_is_reloaded_after_script_flush").await else {
                return;
            };
            repo.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
                .await
                .unwrap();
            let _cache = SCRIPT_CACHE.write().await;
            for mut node in raw_nodes($topo).await {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut node)
                    .await
                    .unwrap();
            }
            let before = repo.counters().snapshot();
            let out = repo
                .reserve_batch(
                    &[CapacityReservation::new(
                        "w",
                        vec![rr("c1", 300), rr("c2", 300)],
                    )],
                    CommitMode::AllOrNothing,
                )
                .await
                .unwrap();
            let c = out[0].outcome.as_ref().unwrap();
            assert_eq!(c.free, Resources::cpu_mem(400, 400));
            assert_eq!(c.accepted, 2);
            let d = repo.counters().snapshot().since(&before);
            let expected = if repo.is_cluster() { 4 } else { 2 };
            assert_eq!(
                d.round_trips, expected,
                "one retry round trip per pipeline that hit NOSCRIPT: {d:?}"
            );
            // And once loaded, back to the steady state.
            let before = repo.counters().snapshot();
            // (Same container: on a cluster its claim lives on a node that has the scripts now.)
            let again = repo
                .reserve_batch(
                    &[CapacityReservation::new("w", vec![rr("c1", 300)])],
                    CommitMode::AllOrNothing,
                )
                .await
                .unwrap();
            // Held on this very worker: rejected, naming it, nothing charged (the rule).
            assert!(
                matches!(&again[0].outcome,
                    Err(sched_core::Rejection::AlreadyReserved { worker_id, .. }) if worker_id == "w"),
                "{again:?}"
            );
            let d = repo.counters().snapshot().since(&before);
            assert_eq!(
                d.round_trips,
                if repo.is_cluster() { 2 } else { 1 },
                "{d:?}"
            );
            let audit = repo.audit("w").await.unwrap();
            assert!(audit.is_consistent());
            assert_eq!(audit.reservations, 2);
        }

        /// Ids full of hash-tag braces, colons, quotes, spaces and non-ASCII.
        #[tokio::test]
        async fn awkward_ids_round_trip() {
            let Some(repo) = make("awkward_ids_round_trip").await else {
                return;
            };
            let ids = [
                "{w}",
                "}{",
                "a:b:{c}",
                "sp ace 'q' \"dq\"",
                "é✓日本",
                "%7B",
                "{",
                "x}",
            ];
            for (i, w) in ids.iter().enumerate() {
                repo.register_worker(
                    &WorkerSpec::new(*w, Resources::cpu_mem(1000, 1000))
                        .with_pool(format!("{{p}}:{i}")),
                )
                .await
                .unwrap();
            }
            let batch: Vec<_> = ids
                .iter()
                .map(|w| {
                    CapacityReservation::new(
                        *w,
                        vec![
                            rr(&format!("{w}/{{c}}:1"), 100),
                            rr(&format!("{w}/é c"), 100),
                        ],
                    )
                })
                .collect();
            let out = repo
                .reserve_batch(&batch, CommitMode::AllOrNothing)
                .await
                .unwrap();
            for (r, w) in out.iter().zip(ids) {
                assert_eq!(r.worker_id, w);
                assert_eq!(r.outcome.as_ref().unwrap().accepted, 2, "{r:?}");
                let held = repo
                    .find_reservation(&format!("{w}/{{c}}:1"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(held.worker_id, w);
                assert_eq!(repo.list_reservations(w).await.unwrap().len(), 2);
            }
            let listed: Vec<String> = repo
                .list_workers(None)
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect();
            let mut sorted: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            sorted.sort();
            assert_eq!(listed, sorted);
            assert_eq!(
                repo.list_workers(Some("{p}:3")).await.unwrap()[0].id,
                ids[3]
            );
            let all: Vec<String> = ids
                .iter()
                .flat_map(|w| [format!("{w}/{{c}}:1"), format!("{w}/é c")])
                .collect();
            let out = repo.release_batch(&all).await.unwrap();
            assert!(out.iter().all(|o| o.released.is_some()));
            for w in ids {
                assert!(repo.audit(w).await.unwrap().is_consistent());
                assert!(repo.remove_worker(w).await.unwrap());
            }
        }

        /// Several independent clients (separate connections) hammer the same workers with
        /// overlapping containers: nothing is overcommitted and no container is held twice.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_clients_never_overcommit() {
            let Some(repo) = make("concurrent_clients_never_overcommit").await else {
                return;
            };
            let total = Resources::cpu_mem(1_000, 1_000);
            for w in 0..3 {
                repo.register_worker(&WorkerSpec::new(format!("w{w}"), total))
                    .await
                    .unwrap();
            }
            let cfg = repo.config().clone();
            let mut tasks = Vec::new();
            for t in 0..6u64 {
                let cfg = cfg.clone();
                tasks.push(tokio::spawn(async move {
                    let r = common::connect($kind, &cfg).await.unwrap();
                    for round in 0..15u64 {
                        // Containers overlap across tasks: c{round}-{k} is wanted by everyone.
                        let batch: Vec<_> = (0..3)
                            .map(|w| {
                                CapacityReservation::new(
                                    format!("w{}", (w + t) % 3),
                                    (0..3)
                                        .map(|k| rr(&format!("c{round}-{w}-{k}-{}", t % 2), 70))
                                        .collect(),
                                )
                            })
                            .collect();
                        let mode = if t % 2 == 0 {
                            CommitMode::AllOrNothing
                        } else {
                            CommitMode::Partial
                        };
                        r.reserve_batch(&batch, mode).await.unwrap();
                        if round % 4 == 3 {
                            let ids: Vec<String> = (0..3)
                                .flat_map(|w| {
                                    (0..3).map(move |k| format!("c{}-{w}-{k}-{}", round - 2, t % 2))
                                })
                                .collect();
                            r.release_batch(&ids).await.unwrap();
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let mut seen = std::collections::HashSet::new();
            for w in 0..3 {
                let id = format!("w{w}");
                let a = repo.audit(&id).await.unwrap();
                assert!(a.is_consistent(), "{a:?}");
                assert!(a.reserved.le(&total), "{a:?}");
                for r in repo.list_reservations(&id).await.unwrap() {
                    assert!(
                        seen.insert(r.container_id.clone()),
                        "{} held twice",
                        r.container_id
                    );
                    let f = repo
                        .find_reservation(&r.container_id)
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(f.worker_id, id);
                }
            }
        }

        /// A reply lost on the wire (the proxy closes the connection after the server applied
        /// the request) is `Ambiguous`; the write did happen, the client reconnects, and a retry
        /// is idempotent.
        #[tokio::test]
        async fn lost_reply_on_the_wire_is_ambiguous() {
            if $topo == common::Topology::Cluster {
                return; // the proxy fronts one node; cluster redirects would bypass it
            }
            let Some((repo, proxy)) =
                common::through_proxy($kind, "lost_reply_on_the_wire_is_ambiguous").await
            else {
                return;
            };
            repo.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
                .await
                .unwrap();
            let batch = [CapacityReservation::new(
                "w",
                vec![rr("c1", 100), rr("c2", 100)],
            )];
            // Make sure the scripts are cached, so the lost reply is the script's own (and keep
            // the NOSCRIPT test from flushing them until this test is done).
            let _cache = SCRIPT_CACHE.read().await;
            repo.reserve_batch(
                &[CapacityReservation::new("w", vec![rr("warm", 1)])],
                CommitMode::AllOrNothing,
            )
            .await
            .unwrap();
            proxy.lose_next_replies(1);
            let err = repo
                .reserve_batch(&batch, CommitMode::AllOrNothing)
                .await
                .unwrap_err();
            assert!(err.is_ambiguous(), "{err:?}");
            let mut found = None;
            for _ in 0..50 {
                match repo.find_reservation("c1").await {
                    Ok(f) => {
                        found = f;
                        break;
                    }
                    Err(e) => {
                        assert!(matches!(e, RepoError::Unavailable(_)), "{e:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            assert_eq!(found.expect("the lost write was applied").worker_id, "w");
            let again = repo
                .reserve_batch(&batch, CommitMode::AllOrNothing)
                .await
                .unwrap();
            // Held here already: rejected as such (the rule), and charged once.
            assert!(
                matches!(&again[0].outcome,
                    Err(sched_core::Rejection::AlreadyReserved { worker_id, .. }) if worker_id == "w"),
                "{again:?}"
            );
            let w = repo.get_worker("w").await.unwrap().unwrap();
            assert_eq!(w.free, Resources::cpu_mem(799, 799), "charged once: {w:?}");
            proxy.lose_next_replies(1);
            let ids = vec!["c1".to_owned(), "c2".to_owned()];
            // If the look-up (a read) lost its reply, the repository retries it itself and the
            // release succeeds; if the script's reply was lost, the caller sees a transient error.
            let first = repo.release_batch(&ids).await;
            if let Err(err) = &first {
                assert!(err.is_transient(), "{err:?}");
            }
            assert_eq!(proxy.lost(), 2, "the fault fired");
            // Whether the look-up or the script lost its reply, retrying is safe.
            let mut retried = None;
            for _ in 0..50 {
                if let Ok(r) = repo.release_batch(&ids).await {
                    retried = Some(r);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(retried.is_some(), "release retry succeeds once reconnected");
            let audit = repo.audit("w").await.unwrap();
            assert_eq!(
                audit.free,
                Resources::cpu_mem(999, 999),
                "capacity back exactly once"
            );
            assert!(audit.is_consistent(), "{audit:?}");
            assert_eq!(audit.reservations, 1, "{audit:?}");
        }

        #[tokio::test]
        async fn drift_is_reconciled() {
            let Some(repo) = make("drift_is_reconciled").await else {
                return;
            };
            repo.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
                .await
                .unwrap();
            repo.reserve_batch(
                &[CapacityReservation::new("w", vec![rr("a", 300)])],
                CommitMode::AllOrNothing,
            )
            .await
            .unwrap();
            assert!(repo
                .corrupt_free("w", Resources::cpu_mem(1000, 1000))
                .await
                .unwrap());
            let a = repo.audit("w").await.unwrap();
            assert!(!a.is_consistent());
            assert_eq!(a.drift.cpu_millicores, 300);
            let before = repo
                .get_worker("w")
                .await
                .unwrap()
                .unwrap()
                .resource_version;
            let r = repo.reconcile("w").await.unwrap();
            assert_eq!(r.drift, a.drift);
            let w = repo.get_worker("w").await.unwrap().unwrap();
            assert_eq!(w.free, Resources::cpu_mem(700, 700));
            assert_eq!(w.resource_version, before + 1);
            assert!(repo.reconcile("w").await.unwrap().is_consistent());
            assert!(matches!(
                repo.audit("nope").await,
                Err(RepoError::UnknownWorker(_))
            ));
        }
    };
}
