//! Valid input at the edges: awkward ids, amounts and ids at the limits, the largest batch.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, committed, cr, find, get, held_on, ledger, release, res, reserve, reserve1,
    rr,
};
use crate::ns::DROP_TABLE;
use sched_core::validate::{MAX_AMOUNT, MAX_BATCH, MAX_ID_BYTES};
use sched_core::{CommitMode, Resources, WorkerRepository, WorkerSpec};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_limits {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_awkward_ids
            check_boundary_amounts_and_ids
            check_max_batch_accepted
        }
    };
}

/// Ids with awkward characters (`{`, `}`, `:`, spaces, quotes, glob and LIKE wildcards, SQL,
/// non-ASCII, ids that extend other ids) work everywhere.
pub async fn check_awkward_ids(repo: &dyn WorkerRepository) {
    let fx = Fixture::awkward(repo, "awkward");
    let ns = fx.ns();
    let pool = ns.pool(DROP_TABLE);
    let gpu = "{gpu}: 'x\" é";
    let names = [
        DROP_TABLE,
        "a",
        "a:ledger",
        "a:free",
        "{a}",
        "a}",
        "*",
        "%",
        "日本 ✓",
        "a\\b",
    ];
    let ids: Vec<String> = names.iter().map(|n| ns.worker(n)).collect();
    for id in &ids {
        let w = fx
            .register(
                &WorkerSpec::new(id.clone(), res(1000, 1000, 2))
                    .with_pool(pool.clone())
                    .requiring_pool_selector()
                    .with_gpu_type(gpu),
            )
            .await;
        assert_eq!(&w.id, id, "the id must round-trip");
        assert_eq!(
            get(repo, id).await.gpu_type.as_deref(),
            Some(gpu),
            "the GPU type must round-trip"
        );
    }
    // Each worker holds containers named like other workers and like each other.
    let batch: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            cr(
                id,
                vec![
                    rr(&ns.container(names[i]), res(10, 10, 1)).with_gpu_type(gpu),
                    rr(
                        &format!("{}{}", ns.container(names[i]), DROP_TABLE),
                        res(20, 20, 0),
                    ),
                    rr(&format!("{id}/c"), res(30, 30, 0)),
                ],
            )
        })
        .collect();
    for r in reserve(repo, &batch, CommitMode::AllOrNothing).await {
        let c = committed(r.outcome, &format!("awkward worker {:?}", r.worker_id));
        assert_eq!(
            c.free,
            res(940, 940, 1),
            "each awkward worker is charged only its own containers"
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let l = ledger(repo, id).await;
        assert_eq!(
            l.len(),
            3,
            "{id:?} holds exactly its own three containers: {l:?}"
        );
        assert_eq!(
            held_on(repo, &ns.container(names[i])).await.as_ref(),
            Some(id),
            "find_reservation with awkward ids"
        );
        assert_eq!(
            find(repo, &ns.container(names[i]))
                .await
                .and_then(|r| r.gpu_type)
                .as_deref(),
            Some(gpu)
        );
        assert_consistent(repo, id, "awkward ids").await;
    }
    let listed = repo
        .list_workers(Some(&pool))
        .await
        .unwrap_or_else(|e| panic!("list_workers(awkward pool) failed: {e}"));
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        sorted,
        "list_workers with an awkward pool"
    );
    let to_release: Vec<String> = batch
        .iter()
        .flat_map(|b| b.reservations.iter().map(|r| r.container_id.clone()))
        .collect();
    let out = release(repo, &to_release).await;
    assert!(
        out.iter().all(|o| o.released.is_some()),
        "every awkward container must be released: {out:?}"
    );
    for id in &ids {
        assert_eq!(get(repo, id).await.free, res(1000, 1000, 2));
        assert_consistent(repo, id, "awkward ids released").await;
    }
    fx.finish().await;
    for id in &ids {
        assert_eq!(
            repo.get_worker(id).await.ok(),
            Some(None),
            "{id:?} must be removed"
        );
    }
}

/// The limits themselves are accepted: amounts of exactly `MAX_AMOUNT` and ids of exactly
/// `MAX_ID_BYTES` bytes (multi-byte characters included).
pub async fn check_boundary_amounts_and_ids(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "boundary");
    let ns = fx.ns();
    let pad = |s: String| {
        let mut s = s;
        while s.len() + "é".len() <= MAX_ID_BYTES {
            s.push('é');
        }
        while s.len() < MAX_ID_BYTES {
            s.push('x');
        }
        s
    };
    let id = pad(ns.worker("long"));
    let cid = pad(ns.container("long"));
    assert_eq!((id.len(), cid.len()), (MAX_ID_BYTES, MAX_ID_BYTES));
    let max = res(MAX_AMOUNT, MAX_AMOUNT, MAX_AMOUNT);
    let w = fx
        .register(
            &WorkerSpec::new(id.clone(), max)
                .with_pool(ns.pool("p"))
                .requiring_pool_selector()
                .with_gpu_type("g"),
        )
        .await;
    assert_eq!(w.free, max, "MAX_AMOUNT totals are accepted exactly");
    let half = res(MAX_AMOUNT / 2, MAX_AMOUNT / 2, MAX_AMOUNT / 2);
    let c2 = ns.container("half");
    let c = committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&cid, half).with_gpu_type("g"),
                    rr(&c2, half).with_gpu_type("g"),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "two halves of MAX_AMOUNT",
    );
    assert_eq!(c.free, Resources::ZERO);
    assert_eq!(
        find(repo, &cid).await.map(|r| r.container_id),
        Some(cid.clone()),
        "a MAX_ID_BYTES container id round-trips"
    );
    assert_consistent(repo, &id, "at MAX_AMOUNT").await;
    release(repo, &[cid.clone(), c2]).await;
    let c3 = ns.container("max");
    let c = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c3, max).with_gpu_type("g")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "MAX_AMOUNT at once",
    );
    assert_eq!(c.free, Resources::ZERO);
    let out = release(repo, &[c3]).await;
    assert_eq!(
        out[0].released.as_ref().map(|r| r.resources),
        Some(max),
        "MAX_AMOUNT comes back exactly"
    );
    assert_eq!(get(repo, &id).await.free, max);
    assert_consistent(repo, &id, "after MAX_AMOUNT").await;
    fx.finish().await;
}

/// A batch of exactly `MAX_BATCH` reservations is accepted, and so is a release of
/// `MAX_BATCH` ids.
pub async fn check_max_batch_accepted(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "max-batch");
    let ns = fx.ns();
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for name in ["a", "b"] {
        fx.worker(name, res(MAX_AMOUNT, MAX_AMOUNT, 0)).await;
    }
    let half = MAX_BATCH / 2;
    let ids: Vec<String> = (0..MAX_BATCH)
        .map(|i| ns.container(&format!("{i:05}")))
        .collect();
    let batch = vec![
        cr(
            &a,
            ids[..half].iter().map(|c| rr(c, res(1, 1, 0))).collect(),
        ),
        cr(
            &b,
            ids[half..].iter().map(|c| rr(c, res(1, 1, 0))).collect(),
        ),
    ];
    for r in reserve(repo, &batch, CommitMode::AllOrNothing).await {
        let c = committed(r.outcome, "MAX_BATCH reservations");
        assert_eq!(c.accepted, half);
    }
    assert_eq!(ledger(repo, &a).await.len(), half);
    let out = release(repo, &ids).await;
    assert!(
        out.iter().all(|o| o.released.is_some()),
        "all MAX_BATCH must be released"
    );
    for id in [&a, &b] {
        assert_eq!(get(repo, id).await.free, res(MAX_AMOUNT, MAX_AMOUNT, 0));
        assert_consistent(repo, id, "after MAX_BATCH").await;
    }
    fx.finish().await;
}
