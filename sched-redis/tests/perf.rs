//! The performance hooks and paths of issue 12 on a single node (`REDIS_URL`), both clients:
//! `reserve_wire` is what `reserve_batch` sends, `list_workers` is one round trip, and
//! `command_usec` sees a burst's scripts and the Redis calls they make.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{fresh, kinds, rr, Topology};
use sched_core::{CapacityReservation, CommitMode, Resources, WorkerRepository, WorkerSpec};

fn burst(workers: usize, per: usize, tag: &str) -> Vec<CapacityReservation> {
    (0..workers)
        .map(|w| {
            let rs = (0..per)
                .map(|c| rr(&format!("{tag}{w}-{c}"), 100))
                .collect();
            CapacityReservation::new(format!("w{w}"), rs)
        })
        .collect()
}

async fn register(repo: &sched_redis::RedisRepository, n: usize) {
    for w in 0..n {
        let spec = WorkerSpec::new(format!("w{w}"), Resources::cpu_mem(10_000, 10_000));
        repo.register_worker(&spec).await.unwrap();
    }
}

/// The words of `reserve_wire`, sent from a bare redis-rs pipeline, reserve exactly what
/// `reserve_batch` would: every container then held on its worker, ledgers consistent.
#[tokio::test]
async fn reserve_wire_reserves_when_sent_raw() {
    for kind in kinds() {
        let Some(repo) = fresh(kind, Topology::Single, "reserve_wire").await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Single).await;
        register(&repo, 4).await;
        // Loads reserve.lua (NOSCRIPT -> EVAL) if the server did not have it.
        let warm = burst(4, 1, "warm");
        repo.reserve_batch(&warm, CommitMode::AllOrNothing)
            .await
            .unwrap();
        let batch = burst(4, 3, "c");
        let wire = repo.reserve_wire(&batch, CommitMode::AllOrNothing).unwrap();
        assert_eq!(wire.len(), 1, "one script call for the burst on one node");
        assert!(wire.iter().all(|w| w[0] == "EVALSHA"), "{wire:?}");
        let mut node = common::raw_nodes(Topology::Single).await.remove(0);
        let mut p = redis::pipe();
        for words in &wire {
            p.cmd(&words[0]).arg(&words[1..]);
        }
        let replies: Vec<redis::Value> = p.query_async(&mut node).await.unwrap();
        assert_eq!(replies.len(), 1, "{replies:?}");
        let ids: Vec<String> = (batch.iter())
            .flat_map(|cr| cr.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        let found = repo.find_reservations(&ids).await.unwrap();
        for (cr, chunk) in batch.iter().zip(found.chunks(3)) {
            for rec in chunk {
                let rec = rec.as_ref().expect("held after the raw pipeline");
                assert_eq!(rec.worker_id, cr.worker_id);
            }
        }
        for w in 0..4 {
            let a = repo.audit(&format!("w{w}")).await.unwrap();
            assert!(a.is_consistent(), "{a:?}");
            assert_eq!(a.reservations, 4);
        }
        // Sent again: every part is refused (held), nothing charged twice.
        let again: Vec<redis::Value> = p.query_async(&mut node).await.unwrap();
        assert!(format!("{again:?}").contains("already"), "{again:?}");
        assert_eq!(repo.audit("w0").await.unwrap().reservations, 4);
    }
}

/// `list_workers` on one node: one round trip once the repository knows the worker set
/// (it registered them, or read the set before); a set that grew behind its back costs one more.
#[tokio::test]
async fn list_workers_is_one_round_trip() {
    for kind in kinds() {
        let Some(repo) = fresh(kind, Topology::Single, "list_workers_rt").await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Single).await;
        register(&repo, 5).await;
        repo.list_workers(None).await.unwrap(); // workers.lua into the script cache
        let rt = |r: &sched_redis::RedisRepository| r.counters().snapshot();
        let before = rt(&repo);
        let ws = repo.list_workers(None).await.unwrap();
        assert_eq!(ws.len(), 5);
        assert_eq!(rt(&repo).since(&before).round_trips, 1, "{kind:?}");

        // Another process: the set is unknown to it, so its first read is answered `retry`.
        let other = common::connect(kind, repo.config()).await.unwrap();
        let before = rt(&other);
        assert_eq!(other.list_workers(None).await.unwrap().len(), 5);
        assert_eq!(rt(&other).since(&before).round_trips, 2, "{kind:?}");
        let before = rt(&other);
        assert_eq!(other.list_workers(None).await.unwrap().len(), 5);
        assert_eq!(rt(&other).since(&before).round_trips, 1, "{kind:?}");

        // Grown behind its back: seen, in one more round trip; removed: skipped, and dropped
        // from the worker set in one more (once: the next listing is one round trip again).
        register(&repo, 7).await;
        assert!(repo.remove_worker("w1").await.unwrap());
        let before = rt(&other);
        let ws = other.list_workers(None).await.unwrap();
        let ids: Vec<&str> = ws.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["w0", "w2", "w3", "w4", "w5", "w6"]);
        assert_eq!(rt(&other).since(&before).round_trips, 3, "{kind:?}");
        let before = rt(&repo);
        assert_eq!(repo.list_workers(None).await.unwrap().len(), 6);
        assert_eq!(rt(&repo).since(&before).round_trips, 1, "{kind:?}");
        assert_eq!(other.list_workers(Some("nope")).await.unwrap().len(), 0);
    }
}

/// `command_usec` sees a burst: one `EVALSHA` for the whole burst on one node and, inside it,
/// one `MGET` and one `MSET` of the index, per worker part one `HMGET` of the state, two `HSET`s
/// (state, ledger) and one `XADD` (counters are server-wide, so other clients can only add to
/// the deltas). One round trip.
#[tokio::test]
async fn command_usec_sees_a_burst() {
    for kind in kinds() {
        let Some(repo) = fresh(kind, Topology::Single, "command_usec").await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Single).await;
        register(&repo, 20).await;
        // Loads reserve.lua (NOSCRIPT -> EVAL) if the server did not have it.
        let warm = burst(20, 1, "warm");
        repo.reserve_batch(&warm, CommitMode::AllOrNothing)
            .await
            .unwrap();
        let before = repo.command_usec().await.unwrap();
        let rt = repo.counters().snapshot();
        let out = (repo.reserve_batch(&burst(20, 5, "c"), CommitMode::AllOrNothing))
            .await
            .unwrap();
        assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
        assert_eq!(repo.counters().snapshot().since(&rt).round_trips, 1);
        let after = repo.command_usec().await.unwrap();
        let delta = |c: &str| {
            let (a, b) = (after.get(c).copied(), before.get(c).copied());
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            (a.0 - b.0, a.1 - b.1)
        };
        assert!(delta("evalsha").0 >= 1, "{kind:?} {after:?}");
        assert!(delta("evalsha").1 > 0, "{kind:?} {after:?}");
        assert!(delta("mget").0 >= 1, "{kind:?} {after:?}");
        assert!(delta("mset").0 >= 1, "{kind:?} {after:?}");
        assert!(delta("hmget").0 >= 20, "{kind:?} {after:?}");
        assert!(delta("hset").0 >= 40, "{kind:?} {after:?}");
        assert!(delta("xadd").0 >= 20, "{kind:?} {after:?}");
    }
}

/// One node: a worker part that fails inside the burst's script (here its ledger is not a
/// hash) fails the call, as its own script did before, while the other parts are still judged
/// and committed in full: ledger, capacity and index entries.
#[tokio::test]
async fn a_failing_part_leaves_the_others_committed() {
    for kind in kinds() {
        let Some(repo) = fresh(kind, Topology::Single, "failing_part").await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Single).await;
        register(&repo, 3).await;
        let pattern = repo.key_pattern();
        let prefix = &pattern[1..pattern.len() - 2];
        let mut node = common::raw_nodes(Topology::Single).await.remove(0);
        let ledger = format!("{{{prefix}:w:w1}}:ledger");
        let _: () = redis::cmd("SET")
            .arg(&ledger)
            .arg("not a hash")
            .query_async(&mut node)
            .await
            .unwrap();
        let batch = burst(3, 2, "f");
        let err = repo.reserve_batch(&batch, CommitMode::AllOrNothing).await;
        assert!(err.is_err(), "{err:?}");
        for w in [0, 2] {
            let ids: Vec<String> = (0..2).map(|c| format!("f{w}-{c}")).collect();
            let found = repo.find_reservations(&ids).await.unwrap();
            for rec in &found {
                let rec = rec.as_ref().expect("committed by its part");
                assert_eq!(rec.worker_id, format!("w{w}"));
            }
            let a = repo.audit(&format!("w{w}")).await.unwrap();
            assert!(a.is_consistent(), "{a:?}");
            assert_eq!(a.reservations, 2);
        }
        let ids: Vec<String> = (0..2).map(|c| format!("f1-{c}")).collect();
        let found = repo.find_reservations(&ids).await.unwrap();
        assert!(found.iter().all(Option::is_none), "{found:?}");
    }
}

/// A burst of more than ~1,000 reservations is cut between worker parts into several scripts
/// (Redis runs nothing else while a script runs), still one pipeline, and every part commits.
#[tokio::test]
async fn a_huge_burst_is_cut_between_worker_parts() {
    for kind in kinds() {
        let Some(repo) = fresh(kind, Topology::Single, "huge_burst").await else {
            return;
        };
        for w in 0..3 {
            let spec = WorkerSpec::new(format!("w{w}"), Resources::cpu_mem(100_000, 100_000));
            repo.register_worker(&spec).await.unwrap();
        }
        let batch = burst(3, 600, "h");
        let wire = repo.reserve_wire(&batch, CommitMode::AllOrNothing).unwrap();
        assert_eq!(
            wire.len(),
            3,
            "600 + 600 would pass 1,000: one script per part"
        );
        assert_eq!(
            repo.reserve_wire(&burst(20, 5, "s"), CommitMode::AllOrNothing)
                .unwrap()
                .len(),
            1,
            "a usual burst is one script"
        );
        let out = repo
            .reserve_batch(&batch, CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert_eq!(out.len(), 3);
        for (w, r) in out.iter().enumerate() {
            let c = r.outcome.as_ref().expect("committed");
            assert_eq!(c.accepted, 600, "w{w}");
            let a = repo.audit(&format!("w{w}")).await.unwrap();
            assert!(a.is_consistent(), "{a:?}");
            assert_eq!(a.reservations, 600);
        }
    }
}
