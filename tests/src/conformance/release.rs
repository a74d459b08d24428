//! Releasing: capacity comes back once, across workers, idempotently; unknown containers release
//! nothing.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, committed, cr, find, get, ledger, release, res, reserve, reserve1, rr,
};
use crate::ns::{Ns, DROP_TABLE};
use sched_core::{CommitMode, WorkerRepository, WorkerSpec};
use std::collections::BTreeMap;

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_release {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_reserve_then_release
            check_release_returns_capacity_once
            check_release_across_workers
            check_idempotent_release
            check_release_unknown_containers
        }
    };
}

/// Reserve then release: release reports the worker, the resources and a newer version, and
/// returns the capacity.
pub async fn check_reserve_then_release(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "release");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(2000, 2048, 2);
    fx.register(&fx.spec("a", total).with_gpu_type("a100"))
        .await;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let r1 = res(500, 512, 1);
    let r2 = res(300, 256, 0);
    let c = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, r1).with_gpu_type("a100"), rr(&c2, r2)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve two",
    );
    let out = release(repo, std::slice::from_ref(&c1)).await;
    let rel = out[0]
        .released
        .clone()
        .unwrap_or_else(|| panic!("release of a held container must return what came back"));
    assert_eq!(rel.worker_id, id, "Released.worker_id");
    assert_eq!(
        rel.resources, r1,
        "Released.resources must be what was charged"
    );
    assert!(
        rel.new_version > c.new_version,
        "a release must bump the version"
    );
    let w = get(repo, &id).await;
    assert_eq!(
        w.free,
        res(2000 - 300, 2048 - 256, 2),
        "release must return the capacity"
    );
    assert_eq!(
        w.resource_version, rel.new_version,
        "get_worker must show the released version"
    );
    assert_eq!(
        find(repo, &c1).await,
        None,
        "a released container is no longer held"
    );
    assert_consistent(repo, &id, "after releasing one").await;
    let out = release(repo, std::slice::from_ref(&c2)).await;
    assert!(out[0].released.is_some());
    assert_eq!(
        get(repo, &id).await.free,
        total,
        "releasing everything must free everything"
    );
    assert!(
        ledger(repo, &id).await.is_empty(),
        "the ledger must be empty"
    );
    assert_consistent(repo, &id, "after releasing all").await;
    fx.finish().await;
}

/// Capacity comes back exactly once, even when several callers release the same container at
/// the same time.
pub async fn check_release_returns_capacity_once(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "release-once");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(1000, 1000, 0);
    fx.worker("a", total).await;
    for round in 0..3 {
        let c = ns.container(&format!("c{round}"));
        let other = ns.container(&format!("other{round}"));
        committed(
            reserve1(
                repo,
                cr(
                    &id,
                    vec![rr(&c, res(400, 400, 0)), rr(&other, res(100, 100, 0))],
                ),
                CommitMode::AllOrNothing,
            )
            .await,
            "reserve",
        );
        let ids = vec![c.clone()];
        let outs = futures::future::join_all((0..6).map(|_| repo.release_batch(&ids))).await;
        let mut some = 0;
        for o in outs {
            let o = o.unwrap_or_else(|e| panic!("concurrent release failed: {e}"));
            if o[0].released.is_some() {
                some += 1;
            }
        }
        assert_eq!(
            some, 1,
            "exactly one of six concurrent releases must return the capacity"
        );
        assert_eq!(
            get(repo, &id).await.free,
            res(900, 900, 0),
            "capacity must come back once"
        );
        release(repo, &[other]).await;
        assert_eq!(get(repo, &id).await.free, total);
        assert_consistent(repo, &id, "after concurrent releases").await;
    }
    fx.finish().await;
}

/// One release batch spanning several workers, in interleaved order: every outcome names the
/// right worker and amount, each worker's reported versions exceed its version before, and its
/// final version is the newest one reported.
pub async fn check_release_across_workers(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "release-across");
    let ns = fx.ns();
    let ids: Vec<String> = (0..3).map(|i| ns.worker(&format!("{i}"))).collect();
    let total = res(1000, 1000, 0);
    for id in &ids {
        fx.register(
            &WorkerSpec::new(id.clone(), total)
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
    }
    let cid = |w: usize, k: usize| ns.container(&format!("{w}-{k}"));
    let amount = |w: usize, k: usize| res(10 * (w as u64 + 1) + k as u64, 5, 0);
    let batch: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(w, id)| cr(id, (0..3).map(|k| rr(&cid(w, k), amount(w, k))).collect()))
        .collect();
    for r in reserve(repo, &batch, CommitMode::AllOrNothing).await {
        committed(r.outcome, "reserve three per worker");
    }
    let mut before = BTreeMap::new();
    for id in &ids {
        before.insert(id.clone(), get(repo, id).await.resource_version);
    }
    // Interleaved: 0-0, 1-0, 2-0, 0-1, ... plus one unknown container in the middle.
    let mut order: Vec<(Option<usize>, String)> = Vec::new();
    for k in 0..3 {
        for w in 0..3 {
            order.push((Some(w), cid(w, k)));
        }
        if k == 1 {
            order.push((None, ns.container("ghost")));
        }
    }
    let to_release: Vec<String> = order.iter().map(|(_, c)| c.clone()).collect();
    let out = release(repo, &to_release).await;
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for ((w, c), o) in order.iter().zip(&out) {
        match (w, &o.released) {
            (None, None) => {}
            (Some(w), Some(rel)) => {
                let k: usize = c
                    .rsplit('-')
                    .next()
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(0);
                assert_eq!(rel.worker_id, ids[*w], "Released.worker_id for {c:?}");
                assert_eq!(rel.resources, amount(*w, k), "Released.resources for {c:?}");
                assert!(
                    rel.new_version > before[&ids[*w]],
                    "a release must report a version newer than before the call"
                );
                let e = newest.entry(rel.worker_id.clone()).or_insert(0);
                *e = (*e).max(rel.new_version);
            }
            (w, got) => panic!("release of {c:?} (worker {w:?}): unexpected outcome {got:?}"),
        }
    }
    for id in &ids {
        let w = get(repo, id).await;
        assert_eq!(w.free, total, "every container of {id:?} came back");
        assert_eq!(
            Some(w.resource_version),
            newest.get(id).copied(),
            "the worker's version must be the newest one the release reported"
        );
        assert_consistent(repo, id, "after a release across workers").await;
    }
    fx.finish().await;
}

/// Releasing is idempotent: a second release returns `None`, unknown containers return `None`,
/// outcomes are in input order, and free never exceeds total.
pub async fn check_idempotent_release(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "idem-release");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(1000, 1000, 0);
    fx.worker("a", total).await;
    let (c1, c2, ghost) = (
        ns.container("c1"),
        ns.container("c2"),
        ns.container("ghost"),
    );
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&c1, res(100, 100, 0)), rr(&c2, res(200, 200, 0))],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let out = release(repo, &[c2.clone(), ghost.clone(), c1.clone()]).await;
    assert_eq!(
        out[0].released.as_ref().map(|r| r.resources),
        Some(res(200, 200, 0)),
        "c2 comes back first"
    );
    assert_eq!(
        out[1].released, None,
        "an unknown container releases nothing"
    );
    assert_eq!(
        out[2].released.as_ref().map(|r| r.resources),
        Some(res(100, 100, 0))
    );
    let v = get(repo, &id).await.resource_version;
    for _ in 0..2 {
        let out = release(repo, &[c1.clone(), c2.clone(), ghost.clone()]).await;
        assert!(
            out.iter().all(|o| o.released.is_none()),
            "a second release must return None: {out:?}"
        );
        let w = get(repo, &id).await;
        assert_eq!(w.free, total, "free must never exceed total");
        assert_eq!(
            w.resource_version, v,
            "releasing nothing must not bump the version"
        );
    }
    assert_consistent(repo, &id, "after double releases").await;
    fx.finish().await;
}

/// Releasing containers that are not held is `Ok` with `None` outcomes, in order.
pub async fn check_release_unknown_containers(repo: &dyn WorkerRepository) {
    let ns = Ns::awkward("release-unknown");
    let ids: Vec<String> = ["x", "y", DROP_TABLE, "*", "日本"]
        .iter()
        .map(|n| ns.container(n))
        .collect();
    let out = release(repo, &ids).await;
    assert!(
        out.iter().all(|o| o.released.is_none()),
        "unknown containers release nothing: {out:?}"
    );
}
