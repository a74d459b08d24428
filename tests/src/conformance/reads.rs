//! Reads: finding reservations, ledgers, listing workers, audit and reconcile.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, committed, cr, find, get, held_on, ledger, release, res, reserve, reserve1,
    rr,
};
use crate::ns::DROP_TABLE;
use sched_core::{
    CommitMode, RepoError, ReservationRecord, Resources, Worker, WorkerRepository, WorkerSpec,
};
use std::collections::BTreeMap;

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_reads {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_find_reservation
            check_find_reservations_batch
            check_list_reservations_ordered
            check_list_workers
            check_audit_and_reconcile
        }
    };
}

/// `find_reservation` returns the full record while held, `None` before and after.
pub async fn check_find_reservation(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "find");
    let ns = fx.ns();
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    fx.register(&fx.spec("a", res(1000, 1000, 2)).with_gpu_type("l4"))
        .await;
    fx.worker("b", res(1000, 1000, 0)).await;
    let (ca, cb) = (ns.container("ca"), ns.container("cb"));
    assert_eq!(find(repo, &ca).await, None, "nothing held yet");
    let batch = vec![
        cr(&a, vec![rr(&ca, res(10, 20, 2)).with_gpu_type("l4")]),
        cr(&b, vec![rr(&cb, res(30, 40, 0))]),
    ];
    for r in reserve(repo, &batch, CommitMode::AllOrNothing).await {
        committed(r.outcome, "reserve");
    }
    assert_eq!(
        find(repo, &ca).await,
        Some(ReservationRecord {
            worker_id: a.clone(),
            container_id: ca.clone(),
            resources: res(10, 20, 2),
            gpu_type: Some("l4".into()),
            lease_expires_at_ms: None,
        })
    );
    assert_eq!(
        find(repo, &cb).await,
        Some(ReservationRecord {
            worker_id: b.clone(),
            container_id: cb.clone(),
            resources: res(30, 40, 0),
            gpu_type: None,
            lease_expires_at_ms: None,
        })
    );
    release(repo, std::slice::from_ref(&ca)).await;
    // Ids that are LIKE / glob patterns matching held ids must not find them, nor release them.
    let patterns: Vec<String> = ["c_", "c%", "c*", "c?", "[c]b", "C"]
        .iter()
        .map(|p| ns.container(p))
        .collect();
    for p in &patterns {
        assert_eq!(
            find(repo, p).await,
            None,
            "{p:?} is not held (pattern ids match nothing)"
        );
    }
    let out = release(repo, &patterns).await;
    assert!(
        out.iter().all(|o| o.released.is_none()),
        "pattern ids release nothing: {out:?}"
    );
    assert_eq!(
        held_on(repo, &cb).await,
        Some(b.clone()),
        "cb is still held"
    );
    assert_eq!(find(repo, &ca).await, None, "released: not found");
    fx.finish().await;
    assert_eq!(find(repo, &cb).await, None, "removed worker: not found");
}

/// `find_reservations` answers in input order, `None` for what is not held, agrees with
/// `find_reservation`, and rejects bad input (duplicates, empty ids) like `release_batch`.
pub async fn check_find_reservations_batch(repo: &dyn WorkerRepository) {
    let fx = Fixture::awkward(repo, "finds");
    let ns = fx.ns();
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for name in ["a", "b"] {
        fx.worker(name, res(1000, 1000, 0)).await;
    }
    let held: Vec<String> = (0..6).map(|i| ns.container(&format!("h{i}"))).collect();
    let batch = vec![
        cr(
            &a,
            held[..3].iter().map(|c| rr(c, res(10, 10, 0))).collect(),
        ),
        cr(
            &b,
            held[3..].iter().map(|c| rr(c, res(20, 20, 0))).collect(),
        ),
    ];
    for r in reserve(repo, &batch, CommitMode::AllOrNothing).await {
        committed(r.outcome, "reserve");
    }
    let query: Vec<String> = vec![
        held[4].clone(),
        ns.container("missing"),
        held[0].clone(),
        ns.container(DROP_TABLE),
        held[5].clone(),
    ];
    let found = repo
        .find_reservations(&query)
        .await
        .expect("find_reservations");
    assert_eq!(found.len(), query.len(), "one answer per id");
    for (q, f) in query.iter().zip(&found) {
        assert_eq!(
            *f,
            find(repo, q).await,
            "batch agrees with find_reservation for {q:?}"
        );
    }
    assert_eq!(
        found[0].as_ref().map(|r| r.worker_id.clone()),
        Some(b.clone())
    );
    assert_eq!(found[1], None);
    assert_eq!(
        found[2].as_ref().map(|r| r.worker_id.clone()),
        Some(a.clone())
    );
    assert_eq!(found[3], None);
    assert!(
        repo.find_reservations(&[]).await.expect("empty").is_empty(),
        "empty query, empty answer"
    );
    let dup = vec![held[0].clone(), held[0].clone()];
    assert!(matches!(
        repo.find_reservations(&dup).await,
        Err(RepoError::InvalidInput(_))
    ));
    assert!(matches!(
        repo.find_reservations(&[String::new()]).await,
        Err(RepoError::InvalidInput(_))
    ));
    fx.finish().await;
}

/// `list_reservations` returns the ledger ordered by container id (byte order, like Rust's
/// `str` ordering), with full records; an empty worker has an empty ledger.
pub async fn check_list_reservations_ordered(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "ledger-order");
    let ns = fx.ns();
    let id = ns.worker("a");
    fx.worker("a", res(100_000, 100_000, 0)).await;
    assert!(
        ledger(repo, &id).await.is_empty(),
        "a new worker has an empty ledger"
    );
    let names = [
        "m", "a", "Z", "z", "B", "é", "0", "a b", "a-b", "aa", "_", "~", "日本",
    ];
    let mut expect = Vec::new();
    for (i, chunk) in names.chunks(4).enumerate() {
        let rs: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(j, n)| rr(&ns.container(n), res(1 + (i * 4 + j) as u64, 1, 0)))
            .collect();
        for r in &rs {
            expect.push(ReservationRecord {
                worker_id: id.clone(),
                container_id: r.container_id.clone(),
                resources: r.resources,
                gpu_type: None,
                lease_expires_at_ms: None,
            });
        }
        committed(
            reserve1(repo, cr(&id, rs), CommitMode::AllOrNothing).await,
            "reserve chunk",
        );
    }
    expect.sort_by(|x, y| x.container_id.cmp(&y.container_id));
    assert_eq!(
        ledger(repo, &id).await,
        expect,
        "list_reservations must be ordered by container id (byte order)"
    );
    assert_consistent(repo, &id, "after many reservations").await;
    fx.finish().await;
}

/// `list_workers`: per pool, exactly that pool's workers ordered by id (byte order); without a
/// pool, every worker, still ordered and without duplicates.
pub async fn check_list_workers(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "list");
    let ns = fx.ns();
    let (p1, p2) = (ns.pool("one"), ns.pool("two"));
    // Pool names that are LIKE / glob patterns matching other pools: "o_e", "o%" and "[o]ne"
    // match "one", "*" matches everything, "one " and "on" are near misses.
    let tricky: Vec<String> = ["o_e", "o%", "[o]ne", "*", "one ", "on"]
        .iter()
        .map(|p| ns.pool(p))
        .collect();
    let mut mine = BTreeMap::new();
    let mut placements = vec![
        ("b", &p1),
        ("A", &p1),
        ("a", &p2),
        ("é", &p1),
        ("0", &p2),
        ("a b", &p1),
    ];
    let names: Vec<String> = (0..tricky.len()).map(|i| format!("t{i}")).collect();
    for (n, p) in names.iter().zip(&tricky) {
        placements.push((n.as_str(), p));
    }
    for (n, pool) in placements {
        let w = fx
            .register(
                &WorkerSpec::new(ns.worker(n), res(100, 100, 0))
                    .with_pool(pool.clone())
                    .requiring_pool_selector(),
            )
            .await;
        mine.insert(w.id.clone(), w);
    }
    // A reservation so that at least one worker's free differs from its total.
    committed(
        reserve1(
            repo,
            cr(
                &ns.worker("b"),
                vec![rr(&ns.container("c"), res(10, 10, 0))],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let b = get(repo, &ns.worker("b")).await;
    mine.insert(b.id.clone(), b);
    for pool in [&p1, &p2].into_iter().chain(&tricky) {
        let got = repo
            .list_workers(Some(pool))
            .await
            .unwrap_or_else(|e| panic!("list_workers({pool:?}) failed: {e}"));
        let want: Vec<Worker> = mine.values().filter(|w| &w.pool == pool).cloned().collect();
        assert_eq!(
            got, want,
            "list_workers(Some(pool)) must be exactly that pool's workers, ordered by id"
        );
    }
    let all = repo
        .list_workers(None)
        .await
        .unwrap_or_else(|e| panic!("list_workers(None) failed: {e}"));
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "list_workers(None) must be ordered by id (byte order) without duplicates"
    );
    let got: Vec<Worker> = all.into_iter().filter(|w| ns.owns(&w.id)).collect();
    assert_eq!(
        got,
        mine.values().cloned().collect::<Vec<_>>(),
        "list_workers(None) must include every worker"
    );
    let empty = repo
        .list_workers(Some(&ns.pool("none")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty(), "an unused pool lists no workers");
    fx.finish().await;
    let gone = repo
        .list_workers(Some(&p1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gone.is_empty(),
        "removed workers are no longer listed: {gone:?}"
    );
}

/// `audit` reports total, free, reserved, count and zero drift; `reconcile` on a consistent
/// worker returns the same report and changes nothing.
pub async fn check_audit_and_reconcile(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "audit");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(1000, 2000, 2);
    let w = fx
        .register(&fx.spec("a", total).with_gpu_type("a100"))
        .await;
    let a = repo
        .audit(&id)
        .await
        .unwrap_or_else(|e| panic!("audit failed: {e}"));
    assert_eq!(
        (a.total, a.free, a.reserved, a.reservations),
        (total, total, Resources::ZERO, 0)
    );
    assert_eq!(a.resource_version, w.resource_version);
    assert!(a.is_consistent());
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&ns.container("x"), res(100, 200, 1)).with_gpu_type("a100"),
                    rr(&ns.container("y"), res(50, 50, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let a = repo
        .audit(&id)
        .await
        .unwrap_or_else(|e| panic!("audit failed: {e}"));
    assert_eq!(
        (a.reserved, a.reservations, a.free),
        (res(150, 250, 1), 2, res(850, 1750, 1))
    );
    assert!(a.is_consistent(), "audit after reserve: {a:?}");
    let before = get(repo, &id).await;
    let r = repo
        .reconcile(&id)
        .await
        .unwrap_or_else(|e| panic!("reconcile failed: {e}"));
    assert!(
        r.is_consistent(),
        "reconcile of a consistent worker reports zero drift: {r:?}"
    );
    assert_eq!(
        r, a,
        "reconcile returns the audit taken before (identical here)"
    );
    assert_eq!(
        get(repo, &id).await,
        before,
        "reconcile of a consistent worker changes nothing (not even the version)"
    );
    release(repo, &[ns.container("x")]).await;
    assert_consistent(repo, &id, "after release").await;
    fx.finish().await;
}
