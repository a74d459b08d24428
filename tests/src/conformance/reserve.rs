//! Reserving: batches over one and many workers commit, in input order, each worker on its own.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, assert_insufficient, committed, cr, find, get, held_on, rejected, res,
    reserve, reserve1, rr, BOTH_MODES,
};
use sched_core::{
    CommitMode, Rejection, ReservationRecord, ResourceKind, WorkerRepository, WorkerStatus,
};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_reserve {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_reserve_one_worker
            check_reserve_many_workers_in_input_order
            check_rejection_does_not_block_other_workers
        }
    };
}

/// A batch of several reservations on one worker commits them all, charges their sum and bumps
/// the version.
pub async fn check_reserve_one_worker(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "one-worker");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(4000, 8192, 0);
    let before = fx.worker("a", total).await;
    let items = [
        ("c1", res(500, 1024, 0)),
        ("c2", res(1000, 512, 0)),
        ("c3", res(250, 256, 0)),
    ];
    let rs: Vec<_> = items
        .iter()
        .map(|(c, r)| rr(&ns.container(c), *r))
        .collect();
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::AllOrNothing).await,
        "three that fit",
    );
    let expect_free = res(4000 - 1750, 8192 - 1792, 0);
    assert_eq!(c.accepted, 3, "all three reservations must be accepted");
    assert_eq!(c.remainder, None, "nothing may remain");
    assert_eq!(
        c.free, expect_free,
        "Committed.free must be total minus the batch"
    );
    assert!(
        c.new_version > before.resource_version,
        "a commit must bump the version"
    );
    let w = get(repo, &id).await;
    assert_eq!(
        (w.free, w.resource_version),
        (c.free, c.new_version),
        "get_worker must show the commit"
    );
    for (name, r) in items {
        let rec = find(repo, &ns.container(name)).await;
        assert_eq!(
            rec,
            Some(ReservationRecord {
                worker_id: id.clone(),
                container_id: ns.container(name),
                resources: r,
                gpu_type: None,
                lease_expires_at_ms: None,
            }),
            "find_reservation must return the committed record"
        );
    }
    assert_consistent(repo, &id, "after reserve").await;
    fx.finish().await;
}

/// A batch over many workers commits each, and results come back in input order (not sorted).
pub async fn check_reserve_many_workers_in_input_order(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "many-workers");
    let ns = fx.ns();
    let names = ["w0", "w1", "w2", "w3"];
    let ids: Vec<String> = names.iter().map(|n| ns.worker(n)).collect();
    for n in names {
        fx.worker(n, res(2000, 2048, 0)).await;
    }
    let order = [2usize, 0, 3, 1];
    let batch: Vec<_> = order
        .iter()
        .map(|&i| {
            cr(
                &ids[i],
                vec![
                    rr(
                        &ns.container(&format!("{i}a")),
                        res(100 * (i as u64 + 1), 64, 0),
                    ),
                    rr(&ns.container(&format!("{i}b")), res(100, 64, 0)),
                ],
            )
        })
        .collect();
    for (k, r) in reserve(repo, &batch, CommitMode::AllOrNothing)
        .await
        .into_iter()
        .enumerate()
    {
        let i = order[k];
        let c = committed(r.outcome, "each worker's part fits");
        assert_eq!(c.accepted, 2);
        assert_eq!(
            c.free,
            res(2000 - 100 * (i as u64 + 2), 2048 - 128, 0),
            "free of {}",
            ids[i]
        );
        assert_eq!(
            held_on(repo, &ns.container(&format!("{i}a")))
                .await
                .as_deref(),
            Some(ids[i].as_str())
        );
    }
    for id in &ids {
        assert_consistent(repo, id, "after a many-worker batch").await;
    }
    fx.finish().await;
}

/// One worker's rejection (of any kind) does not block the others' commits in the same batch.
pub async fn check_rejection_does_not_block_other_workers(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "independent");
    let ns = fx.ns();
    let small = ns.worker("small");
    let ok1 = ns.worker("ok1");
    let ok2 = ns.worker("ok2");
    let drain = ns.worker("drain");
    let stale = ns.worker("stale");
    let ghost = ns.worker("ghost");
    fx.worker("small", res(100, 100, 0)).await;
    for name in ["ok1", "ok2"] {
        fx.worker(name, res(1000, 1000, 0)).await;
    }
    fx.register(
        &fx.spec("drain", res(1000, 1000, 0))
            .with_status(WorkerStatus::Draining),
    )
    .await;
    let st = fx.worker("stale", res(1000, 1000, 0)).await;
    let all = [
        small.clone(),
        ok1.clone(),
        ok2.clone(),
        drain.clone(),
        stale.clone(),
    ];
    let c = |n: &str| rr(&ns.container(n), res(200, 200, 0));
    for mode in BOTH_MODES {
        let tag = format!("{mode:?}");
        let batch = vec![
            cr(&small, vec![c(&format!("{tag}s"))]),
            cr(&ok1, vec![c(&format!("{tag}1"))]),
            cr(&ghost, vec![c(&format!("{tag}g"))]),
            cr(&drain, vec![c(&format!("{tag}d"))]),
            cr(&stale, vec![c(&format!("{tag}v"))]).expecting(st.resource_version + 100),
            cr(&ok2, vec![c(&format!("{tag}2"))]),
        ];
        let before_small = get(repo, &small).await;
        let out = reserve(repo, &batch, mode).await;
        let mut it = out.into_iter().map(|r| r.outcome);
        let mut next = || it.next().unwrap_or_else(|| panic!("missing result"));
        let r = rejected(next(), "too small");
        assert_insufficient(
            &r,
            &ns.container(&format!("{tag}s")),
            ResourceKind::Cpu,
            200,
            100,
            "too small",
        );
        committed(next(), "ok1 must commit despite the rejection before it");
        assert_eq!(rejected(next(), "ghost"), Rejection::UnknownWorker);
        assert_eq!(
            rejected(next(), "draining"),
            Rejection::WorkerUnavailable {
                status: WorkerStatus::Draining
            }
        );
        assert_eq!(
            rejected(next(), "stale"),
            Rejection::VersionConflict {
                expected: st.resource_version + 100,
                current: st.resource_version
            }
        );
        committed(next(), "ok2 must commit despite the rejections before it");
        assert_eq!(
            get(repo, &small).await,
            before_small,
            "a rejected worker must be unchanged"
        );
        assert_eq!(held_on(repo, &ns.container(&format!("{tag}s"))).await, None);
        assert_eq!(
            held_on(repo, &ns.container(&format!("{tag}1"))).await,
            Some(ok1.clone())
        );
        assert_eq!(
            held_on(repo, &ns.container(&format!("{tag}2"))).await,
            Some(ok2.clone())
        );
    }
    for id in &all {
        assert_consistent(repo, id, "after a mixed batch").await;
    }
    fx.finish().await;
}
