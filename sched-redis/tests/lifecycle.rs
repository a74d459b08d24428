//! The lifecycle on Redis (issue 11): leases renewed and expired by the server's clock, the
//! renewal racing the sweep, heartbeats and the stale policy, status changes, bulk release,
//! the round trips of each call, and on a cluster the clean-up of the claims of what the sweep removed. Every test
//! runs on a single node with both clients, and on the cluster (feature `cluster-tests`).
//! Deadlines are the thing under test here, so some tests sleep, with wide margins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{Fresh, Kind, Topology};
use sched_core::{
    CapacityReservation as Cr, CommitMode, ExpiryReason, Rejection, RenewOutcome, RepoError,
    ResourceReservation, Resources, StalePolicy, WorkerRepository, WorkerSpec, WorkerStatus,
};
use std::sync::Arc;
use std::time::Duration;

const T: Resources = Resources::cpu_mem(1000, 1000);
const ONE: Resources = Resources::cpu_mem(100, 100);

fn targets() -> Vec<(Kind, Topology)> {
    let mut v = Vec::new();
    for k in common::kinds() {
        v.push((k, Topology::Single));
        #[cfg(feature = "cluster-tests")]
        v.push((k, Topology::Cluster));
    }
    v
}

async fn setup(kind: Kind, topo: Topology, test: &str, specs: Vec<WorkerSpec>) -> Option<Fresh> {
    let repo = common::fresh(kind, topo, test).await?;
    for s in specs {
        repo.register_worker(&s).await.unwrap();
    }
    Some(repo)
}

fn leased(id: &str, ms: u64) -> ResourceReservation {
    ResourceReservation::new(id, ONE).with_lease(Duration::from_millis(ms))
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn reserve(repo: &Fresh, w: &str, rs: Vec<ResourceReservation>) -> Result<(), Rejection> {
    let out = repo
        .reserve_batch(&[Cr::new(w, rs)], CommitMode::AllOrNothing)
        .await
        .unwrap();
    out[0].outcome.clone().map(|_| ())
}

/// Reserves `c` on `w`, retrying while the cluster reports an abandoned claim as contended
/// (it is fenced at its second sighting).
async fn reserve_again(repo: &Fresh, w: &str, c: &str) {
    for _ in 0..5 {
        match reserve(repo, w, vec![ResourceReservation::new(c, ONE)]).await {
            Ok(()) => return,
            Err(Rejection::Contended { .. }) => {}
            Err(e) => panic!("{c} on {w}: {e:?}"),
        }
    }
    panic!("{c} never became reservable on {w}");
}

#[tokio::test]
async fn leases_renew_and_expire_by_the_server_clock() {
    for (kind, topo) in targets() {
        let specs = vec![WorkerSpec::new("w", T), WorkerSpec::new("w2", T)];
        let Some(repo) = setup(kind, topo, "leases_renew_and_expire", specs).await else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        let gpu = ResourceReservation::new("b", ONE);
        reserve(&repo, "w", vec![leased("a", 1_000), gpu])
            .await
            .unwrap();
        let a = repo.find_reservation("a").await.unwrap().unwrap();
        let d1 = a.lease_expires_at_ms.expect("leased");
        let listed = repo.list_reservations("w").await.unwrap();
        assert_eq!(listed[0].lease_expires_at_ms, Some(d1), "{ctx}");
        assert_eq!(listed[1].lease_expires_at_ms, None, "{ctx}");
        let w = repo.get_worker("w").await.unwrap().unwrap();
        let hb = w.last_heartbeat_ms.expect("registration is a heartbeat");
        assert!(
            d1 >= hb + 1_000,
            "{ctx}: deadline {d1} vs registration {hb}"
        );
        let v = w.resource_version;

        let r = repo
            .renew_leases("w", &ids(&["a", "b", "x"]), 1_000)
            .await
            .unwrap();
        let RenewOutcome::Renewed { expires_at_ms: d2 } = r[0].outcome else {
            panic!("{ctx}: {r:?}");
        };
        assert!(d2 >= d1, "{ctx}");
        assert_eq!(r[1].outcome, RenewOutcome::NoLease, "{ctx}");
        assert_eq!(r[2].outcome, RenewOutcome::NotHeld, "{ctx}");
        let a = repo.find_reservation("a").await.unwrap().unwrap();
        assert_eq!(a.lease_expires_at_ms, Some(d2), "{ctx}");
        assert!(repo.expire_leases("w").await.unwrap().expired.is_empty());
        let w = repo.get_worker("w").await.unwrap().unwrap();
        assert_eq!(
            w.resource_version, v,
            "{ctx}: renewal and an empty sweep bump nothing"
        );

        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // Due but not swept: still held (and still blocks the id), no longer renewable.
        assert!(repo.find_reservation("a").await.unwrap().is_some());
        let r = repo.renew_leases("w", &ids(&["a"]), 1_000).await.unwrap();
        let expired = RenewOutcome::Expired {
            reason: ExpiryReason::LeaseExpired,
        };
        assert_eq!(r[0].outcome, expired, "{ctx}");
        let sweep = repo.expire_leases("w").await.unwrap();
        assert_eq!(sweep.expired.len(), 1, "{ctx}: {sweep:?}");
        let e = &sweep.expired[0];
        assert_eq!(
            (
                e.record.container_id.as_str(),
                e.reason,
                e.record.lease_expires_at_ms
            ),
            ("a", ExpiryReason::LeaseExpired, Some(d2)),
            "{ctx}"
        );
        assert!(sweep.swept_at_ms >= d2, "{ctx}");
        assert_eq!(sweep.free, Resources::cpu_mem(900, 900), "{ctx}");
        assert_eq!(sweep.resource_version, v + 1, "{ctx}");
        assert_eq!(sweep.returned(), ONE);
        assert!(repo.find_reservation("a").await.unwrap().is_none());
        assert!(repo.find_reservation("b").await.unwrap().is_some());
        assert!(repo.audit("w").await.unwrap().is_consistent());
        let again = repo.expire_leases("w").await.unwrap();
        assert!(again.expired.is_empty() && again.resource_version == v + 1);
        // The swept container is free everywhere: its claim is gone on a cluster.
        reserve_again(&repo, "w2", "a").await;
        assert_eq!(repo.cleanup_failures(), 0, "{ctx}");
        assert!(matches!(
            repo.renew_leases("nope", &ids(&["a"]), 10).await,
            Err(RepoError::UnknownWorker(_))
        ));
        assert!(matches!(
            repo.renew_leases("w", &ids(&["a"]), 0).await,
            Err(RepoError::InvalidInput(_))
        ));
    }
}

/// Renewals race sweeps from other connections right at the deadline: each container ends
/// either renewed and held, or swept with its capacity back, never half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_racing_the_sweep_wins_or_loses_fully() {
    for (kind, topo) in targets() {
        let Some(repo) = setup(kind, topo, "renew_vs_sweep", vec![WorkerSpec::new("w", T)]).await
        else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        let other = Arc::new(common::connect(kind, repo.config()).await.unwrap());
        let (mut renewed, mut swept) = (0, 0);
        for round in 0..12u64 {
            let cs: Vec<String> = (0..5).map(|i| format!("r{round}-{i}")).collect();
            let rs = cs.iter().map(|c| leased(c, 200)).collect();
            reserve(&repo, "w", rs).await.unwrap();
            // Around the deadline: sometimes before, sometimes after.
            tokio::time::sleep(Duration::from_millis(150 + 10 * round)).await;
            let sweeper = Arc::clone(&other);
            let sweep = tokio::spawn(async move { sweeper.expire_leases("w").await.unwrap() });
            let renewal = repo.renew_leases("w", &cs, 60_000).await.unwrap();
            let sweep = sweep.await.unwrap();
            let last = repo.expire_leases("w").await.unwrap();
            let gone: Vec<&str> = (sweep.expired.iter().chain(&last.expired))
                .map(|e| e.record.container_id.as_str())
                .collect();
            for (c, r) in cs.iter().zip(&renewal) {
                let held = repo.find_reservation(c).await.unwrap().is_some();
                match r.outcome {
                    RenewOutcome::Renewed { .. } => {
                        renewed += 1;
                        assert!(held && !gone.contains(&c.as_str()), "{ctx}: {c} renewed");
                    }
                    RenewOutcome::Expired { .. } | RenewOutcome::NotHeld => {
                        swept += 1;
                        assert!(!held && gone.contains(&c.as_str()), "{ctx}: {c} lost");
                    }
                    RenewOutcome::NoLease => panic!("{ctx}: {c} had a lease"),
                }
            }
            let a = repo.audit("w").await.unwrap();
            assert!(a.is_consistent(), "{ctx}: {a:?}");
            let held = repo.list_reservations("w").await.unwrap();
            assert_eq!(T.saturating_sub(&a.reserved), a.free, "{ctx}");
            repo.release_batch(
                &held
                    .iter()
                    .map(|r| r.container_id.clone())
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        }
        assert!(renewed + swept == 60, "{ctx}");
        eprintln!("{ctx}: {renewed} renewed, {swept} swept");
    }
}

#[tokio::test]
async fn stale_workers_are_refused_and_swept_by_policy() {
    for (kind, topo) in targets() {
        let hb = Duration::from_millis(600);
        let specs = vec![
            WorkerSpec::new("keep", T).with_heartbeat_timeout(hb),
            WorkerSpec::new("rel", T)
                .with_heartbeat_timeout(hb)
                .with_stale_policy(StalePolicy::Release),
        ];
        let Some(repo) = setup(kind, topo, "stale_workers", specs).await else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        reserve(&repo, "keep", vec![ResourceReservation::new("k", ONE)])
            .await
            .unwrap();
        reserve(
            &repo,
            "rel",
            vec![ResourceReservation::new("r", ONE), leased("r2", 60_000)],
        )
        .await
        .unwrap();
        let w = repo.get_worker("rel").await.unwrap().unwrap();
        assert_eq!(
            (w.heartbeat_timeout_ms, w.on_stale, w.stale),
            (Some(600), StalePolicy::Release, false),
            "{ctx}"
        );
        assert!(w.is_available());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let all = repo.list_workers(None).await.unwrap();
        assert!(
            all.iter().all(|w| w.stale && !w.is_available()),
            "{ctx}: {all:?}"
        );
        let refused = reserve(&repo, "keep", vec![ResourceReservation::new("n", ONE)]).await;
        match refused {
            Err(Rejection::HeartbeatExpired {
                last_heartbeat_ms: Some(_),
                timeout_ms: 600,
            }) => {}
            other => panic!("{ctx}: {other:?}"),
        }
        assert!(repo.find_reservation("n").await.unwrap().is_none());
        assert!(repo.expire_leases("keep").await.unwrap().expired.is_empty());
        let r = repo
            .renew_leases("rel", &ids(&["r2"]), 1_000)
            .await
            .unwrap();
        let stale = ExpiryReason::WorkerStale;
        assert_eq!(
            r[0].outcome,
            RenewOutcome::Expired { reason: stale },
            "{ctx}"
        );
        let sweep = repo.expire_leases("rel").await.unwrap();
        let got: Vec<_> = (sweep.expired.iter())
            .map(|e| (e.record.container_id.as_str(), e.reason))
            .collect();
        assert_eq!(got, vec![("r", stale), ("r2", stale)], "{ctx}");
        assert_eq!(sweep.free, T, "{ctx}");
        let beat = repo.heartbeat("keep").await.unwrap();
        assert!(beat.was_stale, "{ctx}");
        let w = repo.get_worker("keep").await.unwrap().unwrap();
        assert_eq!(w.last_heartbeat_ms, Some(beat.at_ms), "{ctx}");
        assert!(!w.stale && w.is_available(), "{ctx}");
        assert!(!repo.heartbeat("keep").await.unwrap().was_stale);
        // Fresh again: reserves, including what the stale worker's sweep let go.
        reserve_again(&repo, "keep", "r").await;
        assert!(matches!(
            repo.heartbeat("nope").await,
            Err(RepoError::UnknownWorker(_))
        ));
        // Re-registration counts as a heartbeat too.
        repo.register_worker(&WorkerSpec::new("rel", T).with_heartbeat_timeout(hb))
            .await
            .unwrap();
        let w = repo.get_worker("rel").await.unwrap().unwrap();
        assert!(!w.stale && w.on_stale == StalePolicy::Keep, "{ctx}: {w:?}");
        assert_eq!(repo.cleanup_failures(), 0, "{ctx}");
    }
}

#[tokio::test]
async fn set_status_bumps_the_version_and_keeps_capacity() {
    for (kind, topo) in targets() {
        let Some(repo) = setup(kind, topo, "set_status", vec![WorkerSpec::new("w", T)]).await
        else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        reserve(&repo, "w", vec![leased("a", 60_000)])
            .await
            .unwrap();
        let before = repo.get_worker("w").await.unwrap().unwrap();
        let w = repo
            .set_worker_status("w", WorkerStatus::Draining)
            .await
            .unwrap();
        assert_eq!(
            (w.status, w.resource_version, w.free),
            (
                WorkerStatus::Draining,
                before.resource_version + 1,
                before.free
            ),
            "{ctx}"
        );
        assert_eq!(w.last_heartbeat_ms, before.last_heartbeat_ms);
        assert_eq!(repo.get_worker("w").await.unwrap().unwrap(), w, "{ctx}");
        assert!(matches!(
            reserve(&repo, "w", vec![ResourceReservation::new("b", ONE)]).await,
            Err(Rejection::WorkerUnavailable {
                status: WorkerStatus::Draining
            })
        ));
        let again = repo
            .set_worker_status("w", WorkerStatus::Draining)
            .await
            .unwrap();
        assert_eq!(
            again.resource_version,
            w.resource_version + 1,
            "always bumps"
        );
        repo.set_worker_status("w", WorkerStatus::Available)
            .await
            .unwrap();
        reserve(&repo, "w", vec![ResourceReservation::new("b", ONE)])
            .await
            .unwrap();
        assert_eq!(repo.list_reservations("w").await.unwrap().len(), 2);
        assert!(repo.audit("w").await.unwrap().is_consistent());
        assert!(matches!(
            repo.set_worker_status("nope", WorkerStatus::Disabled).await,
            Err(RepoError::UnknownWorker(_))
        ));
    }
}

#[tokio::test]
async fn release_worker_releases_everything_once() {
    for (kind, topo) in targets() {
        let specs = vec![WorkerSpec::new("w", T), WorkerSpec::new("w2", T)];
        let Some(repo) = setup(kind, topo, "release_worker", specs).await else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        let rs = vec![
            ResourceReservation::new("c", ONE),
            leased("a", 60_000),
            ResourceReservation::new("b", Resources::cpu_mem(1, 2)),
        ];
        reserve(&repo, "w", rs).await.unwrap();
        let v = repo
            .get_worker("w")
            .await
            .unwrap()
            .unwrap()
            .resource_version;
        let rel = repo.release_worker("w").await.unwrap();
        let got: Vec<&str> = rel
            .released
            .iter()
            .map(|r| r.container_id.as_str())
            .collect();
        assert_eq!(got, vec!["a", "b", "c"], "{ctx}");
        assert!(rel.released[0].lease_expires_at_ms.is_some());
        assert_eq!((rel.free, rel.resource_version), (T, v + 1), "{ctx}");
        let again = repo.release_worker("w").await.unwrap();
        assert!(again.released.is_empty() && again.resource_version == v + 1);
        assert!(
            repo.get_worker("w").await.unwrap().is_some(),
            "still registered"
        );
        for c in ["a", "b", "c"] {
            assert!(repo.find_reservation(c).await.unwrap().is_none(), "{ctx}");
            reserve_again(&repo, "w2", c).await;
        }
        assert!(matches!(
            repo.release_worker("nope").await,
            Err(RepoError::UnknownWorker(_))
        ));
        assert!(matches!(
            repo.expire_leases("nope").await,
            Err(RepoError::UnknownWorker(_))
        ));
        assert_eq!(repo.cleanup_failures(), 0, "{ctx}");
    }
}

/// On a cluster a sweep's claim clean-up that fails is counted, the sweep still applies, and the
/// abandoned claim is resolved by the next caller that needs the container.
#[cfg(feature = "cluster-tests")]
#[tokio::test]
async fn a_failed_claim_clean_up_after_a_sweep_is_counted() {
    use sched_redis::{Fault, Target};
    for kind in common::kinds() {
        let specs = vec![WorkerSpec::new("w", T), WorkerSpec::new("w2", T)];
        let Some(repo) = setup(kind, Topology::Cluster, "sweep_cleanup", specs).await else {
            return;
        };
        reserve(&repo, "w", vec![leased("a", 300)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        repo.inject(Target::op("fence"), Fault::Refuse);
        let sweep = repo.expire_leases("w").await.unwrap();
        assert_eq!(sweep.expired.len(), 1, "{kind:?}");
        assert_eq!(repo.cleanup_failures(), 1, "{kind:?}");
        let p = repo.config().key_prefix.clone();
        assert!(
            common::nodes::get(&common::nodes::claim_key(&p, "a")).is_some(),
            "the claim was left behind"
        );
        reserve_again(&repo, "w2", "a").await;
        assert_eq!(
            repo.find_reservation("a").await.unwrap().unwrap().worker_id,
            "w2"
        );
    }
}

/// Round trips (`BackendCounters::round_trips`) of each lifecycle call, steady state (the flow
/// runs twice so every script is cached on the nodes it reaches; the second run is measured).
#[tokio::test]
async fn round_trips_of_the_lifecycle_calls() {
    for (kind, topo) in targets() {
        let Some(repo) = setup(kind, topo, "rt_lifecycle", vec![WorkerSpec::new("w", T)]).await
        else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        let (cluster, mut seen) = (topo == Topology::Cluster, Vec::new());
        for _ in 0..2 {
            let trips = || repo.counters().snapshot();
            reserve(&repo, "w", vec![leased("a", 300)]).await.unwrap();
            let t0 = trips();
            repo.renew_leases("w", &ids(&["a"]), 300).await.unwrap();
            let t1 = trips();
            repo.heartbeat("w").await.unwrap();
            repo.set_worker_status("w", WorkerStatus::Available)
                .await
                .unwrap();
            let t2 = trips();
            assert!(repo.expire_leases("w").await.unwrap().expired.is_empty());
            let t3 = trips();
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert_eq!(repo.expire_leases("w").await.unwrap().expired.len(), 1);
            let t4 = trips();
            reserve(&repo, "w", vec![ResourceReservation::new("b", ONE)])
                .await
                .unwrap();
            let t5 = trips();
            assert_eq!(repo.release_worker("w").await.unwrap().released.len(), 1);
            let t6 = trips();
            seen = [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t5, t6)]
                .map(|(a, b)| b.since(&a).round_trips)
                .to_vec();
        }
        // renew, heartbeat + status, empty sweep, sweep that removed one, release_worker.
        let removed = if cluster { 4 } else { 2 };
        assert_eq!(seen, vec![1, 2, 1, removed, removed], "{ctx}");
        eprintln!("{ctx}: round trips {seen:?}");
    }
}
