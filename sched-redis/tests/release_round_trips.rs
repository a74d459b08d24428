//! `release_batch` round trips (issue 12) and its answers when the holder hints are missing or
//! wrong, on one node (`REDIS_URL`) and on a cluster (`REDIS_CLUSTER_URLS`), both clients:
//! one round trip on one node, two on a cluster (the scripts, then dropping the claims, which may
//! only go once the ledger entries are gone); a release by a process that did not place the
//! containers, or after they moved, still answers where they were held.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{fresh, kinds, rr, Fresh, Kind, Topology};
use sched_core::{
    CapacityReservation, CommitMode, ReleaseOutcome, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::RedisRepository;
use tokio::sync::RwLockReadGuard;

const TOTAL: Resources = Resources::cpu_mem(10_000, 10_000);

async fn register(repo: &RedisRepository, n: usize) {
    for w in 0..n {
        let spec = WorkerSpec::new(format!("w{w}"), TOTAL);
        repo.register_worker(&spec).await.unwrap();
    }
}

/// A repository on a fresh prefix with `workers` workers `w0`, `w1`, ..., and every script
/// loaded on every node (keep the guard while counting round trips); `None`: skip.
async fn setup(
    kind: Kind,
    topology: Topology,
    test: &str,
    workers: usize,
) -> Option<(Fresh, RwLockReadGuard<'static, ()>)> {
    let repo = fresh(kind, topology, test).await?;
    let cache = common::scripts_loaded(topology).await;
    register(&repo, workers).await;
    Some((repo, cache))
}

/// Places and releases one container on each of `workers` workers: every script has run.
async fn warm_up(repo: &RedisRepository, workers: usize) {
    let (warm, warm_ids) = burst(workers, 1, "warm");
    reserve(repo, &warm).await;
    repo.release_batch(&warm_ids).await.unwrap();
}

/// `per` containers of 100 on each of `workers` workers, named `<tag><w>-<c>`.
fn burst(workers: usize, per: usize, tag: &str) -> (Vec<CapacityReservation>, Vec<String>) {
    let batch: Vec<_> = (0..workers)
        .map(|w| {
            let rs = (0..per)
                .map(|c| rr(&format!("{tag}{w}-{c}"), 100))
                .collect();
            CapacityReservation::new(format!("w{w}"), rs)
        })
        .collect();
    let ids = (batch.iter())
        .flat_map(|cr| cr.reservations.iter().map(|r| r.container_id.clone()))
        .collect();
    (batch, ids)
}

async fn reserve(repo: &RedisRepository, batch: &[CapacityReservation]) {
    let out = repo
        .reserve_batch(batch, CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
}

/// Releases `ids` through `repo`, returning the outcomes and the round trips it took.
async fn release(repo: &RedisRepository, ids: &[String]) -> (Vec<ReleaseOutcome>, u64) {
    let before = repo.counters().snapshot();
    let out = repo.release_batch(ids).await.unwrap();
    (out, repo.counters().snapshot().since(&before).round_trips)
}

fn holders(out: &[ReleaseOutcome]) -> Vec<Option<String>> {
    (out.iter())
        .map(|o| o.released.as_ref().map(|r| r.worker_id.clone()))
        .collect()
}

/// [`holders`] when each of `ids` (`<tag><w>-<c>`, one-letter tag) is held where [`burst`] put it.
fn where_burst_put(ids: &[String]) -> Vec<Option<String>> {
    (ids.iter())
        .map(|c| Some(format!("w{}", &c[1..2])))
        .collect()
}

async fn all_free(repo: &RedisRepository, workers: usize) {
    for w in 0..workers {
        let a = repo.audit(&format!("w{w}")).await.unwrap();
        assert!(a.is_consistent(), "{a:?}");
        assert_eq!(a.reservations, 0, "{a:?}");
        assert_eq!(a.free, TOTAL, "{a:?}");
    }
}

/// What this repository placed is released in one round trip on one node, two on a cluster,
/// each container from its worker, with its resources and the worker's new version; sent again,
/// nothing is released twice (one round trip: the index, found empty).
async fn placed_here(topology: Topology) {
    for kind in kinds() {
        let Some((repo, _cache)) = setup(kind, topology, "release_placed_here", 4).await else {
            return;
        };
        warm_up(&repo, 4).await;

        let (batch, ids) = burst(4, 3, "c");
        reserve(&repo, &batch).await;
        let (out, rt) = release(&repo, &ids).await;
        let expected = if repo.is_cluster() { 2 } else { 1 };
        assert_eq!(rt, expected, "{kind:?} {topology:?}");
        for (o, id) in out.iter().zip(&ids) {
            assert_eq!(&o.container_id, id);
            let r = o.released.as_ref().expect("released");
            assert_eq!(r.worker_id, format!("w{}", &id[1..2]));
            assert_eq!(r.resources, Resources::cpu_mem(100, 100));
        }
        // Per worker, one version bump per container, in order.
        let versions: Vec<u64> = (out.iter().take(3))
            .map(|o| o.released.as_ref().unwrap().new_version)
            .collect();
        assert_eq!(versions[1], versions[0] + 1);
        assert_eq!(versions[2], versions[1] + 1);
        all_free(&repo, 4).await;

        let (again, rt) = release(&repo, &ids).await;
        assert!(holders(&again).iter().all(Option::is_none), "{again:?}");
        assert_eq!(rt, 1, "{kind:?} {topology:?}: the index only");
        all_free(&repo, 4).await;
    }
}

#[tokio::test]
async fn placed_here_single() {
    placed_here(Topology::Single).await;
}

#[tokio::test]
async fn placed_here_cluster() {
    placed_here(Topology::Cluster).await;
}

/// Another process (no hints) releases: one more round trip (one node: the script names the
/// holders it was not told about and changes nothing; cluster: the index first), same answers.
/// Then containers that moved: placed by `repo`, released and placed elsewhere by `other`; `repo`
/// releases them from where they are now.
async fn not_placed_here(topology: Topology) {
    for kind in kinds() {
        let Some((repo, _cache)) = setup(kind, topology, "release_not_placed_here", 4).await else {
            return;
        };
        warm_up(&repo, 4).await;
        let other = common::connect(kind, repo.config()).await.unwrap();

        let (batch, ids) = burst(4, 2, "c");
        reserve(&repo, &batch).await;
        let (out, rt) = release(&other, &ids).await;
        let expected = if repo.is_cluster() { 3 } else { 2 };
        assert_eq!(rt, expected, "{kind:?} {topology:?}");
        assert_eq!(holders(&out), where_burst_put(&ids));
        all_free(&repo, 4).await;

        // Moved: placed on w<k> by `repo`, then on w<k+1> by `other`.
        reserve(&repo, &batch).await;
        other.release_batch(&ids).await.unwrap();
        let moved: Vec<CapacityReservation> = (batch.iter().enumerate())
            .map(|(w, cr)| {
                CapacityReservation::new(format!("w{}", (w + 1) % 4), cr.reservations.clone())
            })
            .collect();
        reserve(&other, &moved).await;
        let (out, rt) = release(&repo, &ids).await;
        let want: Vec<Option<String>> = (ids.iter())
            .map(|c| Some(format!("w{}", (c[1..2].parse::<usize>().unwrap() + 1) % 4)))
            .collect();
        assert_eq!(holders(&out), want, "{kind:?} {topology:?}");
        // One node: the new holders are among the workers the hints name (each worker held
        // some of the batch), so one script. Cluster: the hinted workers hold nothing, so the
        // claims are read, the scripts sent to the holders they name, the claims dropped.
        let expected = if repo.is_cluster() { 4 } else { 1 };
        assert_eq!(rt, expected, "{kind:?} {topology:?}");
        all_free(&repo, 4).await;

        // Moved to a worker no hint names: the script names it, changes nothing, runs again.
        register(&repo, 5).await;
        reserve(&repo, &batch[..1]).await;
        other.release_batch(&ids[..2]).await.unwrap();
        let to_w4 = CapacityReservation::new("w4", batch[0].reservations.clone());
        reserve(&other, &[to_w4]).await;
        let (out, rt) = release(&repo, &ids[..2]).await;
        let want = vec![Some("w4".to_owned()); 2];
        assert_eq!(holders(&out), want, "{kind:?} {topology:?}");
        let expected = if repo.is_cluster() { 4 } else { 2 };
        assert_eq!(rt, expected, "{kind:?} {topology:?}");
        all_free(&repo, 5).await;
        // No claim is left behind: the containers can be placed again at once.
        reserve(&repo, &batch).await;
        let (out, _) = release(&repo, &ids).await;
        assert!(holders(&out).iter().all(Option::is_some), "{out:?}");
        all_free(&repo, 4).await;
    }
}

#[tokio::test]
async fn not_placed_here_single() {
    not_placed_here(Topology::Single).await;
}

#[tokio::test]
async fn not_placed_here_cluster() {
    not_placed_here(Topology::Cluster).await;
}

/// Cluster: the hint names the right worker but an old claim token (another process released
/// the containers and placed them on the same worker again). The release still releases them,
/// and the claim it could not delete by the hinted value is read, fenced and deleted: placing
/// them again succeeds at once, uncontested.
#[tokio::test]
async fn old_token_hint_leaves_no_claim_cluster() {
    for kind in kinds() {
        let Some((repo, _cache)) = setup(kind, Topology::Cluster, "release_old_token", 2).await
        else {
            return;
        };
        let other = common::connect(kind, repo.config()).await.unwrap();
        let (batch, ids) = burst(2, 2, "c");
        reserve(&repo, &batch).await;
        other.release_batch(&ids).await.unwrap();
        reserve(&other, &batch).await;
        let (out, rt) = release(&repo, &ids).await;
        assert_eq!(holders(&out), where_burst_put(&ids));
        assert_eq!(repo.cleanup_failures(), 0);
        // The scripts, the compare-and-delete by the hinted value (nothing deleted), then the
        // clean-up of a removed ledger's claims: read, fence, delete.
        assert_eq!(rt, 5, "{kind:?}");
        all_free(&repo, 2).await;
        // A claim left behind would make this `Contended` (first sighting) instead.
        reserve(&other, &batch).await;
        other.release_batch(&ids).await.unwrap();
        all_free(&repo, 2).await;
    }
}
