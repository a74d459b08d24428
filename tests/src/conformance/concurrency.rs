//! Concurrency: concurrent callers never overcommit, one container has one holder, lists stay whole
//! during writes.

use super::fixture::Fixture;
use super::support::{assert_consistent, cr, get, held_on, ledger, release, res, reserve, rr};
use sched_core::{
    CapacityReservation, CommitMode, Rejection, ResourceKind, WorkerRepository, WorkerSpec,
};
use std::collections::HashSet;

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_concurrency {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_concurrent_capacity_no_overcommit
            check_concurrent_same_container_one_holder
            check_list_workers_during_writes
        }
    };
}

/// Many concurrent callers competing for one worker's capacity: exactly as many commit as fit.
pub async fn check_concurrent_capacity_no_overcommit(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "overcommit");
    let ns = fx.ns();
    let id = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let batches: Vec<Vec<CapacityReservation>> = (0..40)
        .map(|i| {
            vec![cr(
                &id,
                vec![rr(&ns.container(&format!("{i}")), res(100, 10, 0))],
            )]
        })
        .collect();
    let outs = futures::future::join_all(batches.iter().enumerate().map(|(i, b)| {
        let mode = if i % 2 == 0 {
            CommitMode::AllOrNothing
        } else {
            CommitMode::Partial
        };
        repo.reserve_batch(b, mode)
    }))
    .await;
    let mut ok = 0;
    for o in outs {
        let o = o.unwrap_or_else(|e| panic!("concurrent reserve_batch failed: {e}"));
        match &o[0].outcome {
            Ok(_) => ok += 1,
            Err(Rejection::InsufficientCapacity {
                resource: ResourceKind::Cpu,
                requested: 100,
                available,
                ..
            }) => {
                assert!(*available < 100, "rejected with {available} available");
            }
            Err(r) => panic!("unexpected rejection {r:?}"),
        }
    }
    assert_eq!(
        ok, 10,
        "exactly 10 of 40 concurrent 100m reservations fit in 1000m"
    );
    assert_eq!(ledger(repo, &id).await.len(), 10);
    assert_eq!(get(repo, &id).await.free.cpu_millicores, 0);
    assert_consistent(repo, &id, "after concurrent reservations").await;
    fx.finish().await;
}

/// The same container reserved on six workers at once: exactly one wins, the others are told
/// `AlreadyReserved` with the winner's id (or `Contended`). On Redis Cluster a round may have no
/// winner, only when every contender was told `Contended`; some round must have one.
pub async fn check_concurrent_same_container_one_holder(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "one-holder");
    let ns = fx.ns();
    let ids: Vec<String> = (0..6).map(|i| ns.worker(&format!("{i}"))).collect();
    for id in &ids {
        fx.register(
            &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
    }
    let mut fenced_rounds = 0;
    for round in 0..5 {
        let c = ns.container(&format!("c{round}"));
        let batches: Vec<Vec<CapacityReservation>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                vec![cr(
                    id,
                    vec![
                        rr(&ns.container(&format!("o{round}-{i}")), res(1, 1, 0)),
                        rr(&c, res(10, 10, 0)),
                    ],
                )]
            })
            .collect();
        let outs = futures::future::join_all(batches.iter().enumerate().map(|(i, b)| {
            let mode = if (i + round) % 2 == 0 {
                CommitMode::AllOrNothing
            } else {
                CommitMode::Partial
            };
            repo.reserve_batch(b, mode)
        }))
        .await;
        let Some(holder) = held_on(repo, &c).await else {
            // Nobody holds it: allowed only where one-holder spans several atomic sections
            // (Redis Cluster claims) and every contender was told `Contended` (its claim fenced
            // by a contender that saw it twice uncommitted, as on a loaded machine). Safe, and
            // every answer agrees with the store; at least one round must still have a winner.
            let contended = Rejection::Contended {
                container_id: c.clone(),
            };
            for o in outs {
                let o = o.unwrap_or_else(|e| panic!("concurrent reserve_batch failed: {e}"));
                let told = match &o[0].outcome {
                    Ok(cm) => cm.remainder.as_ref(),
                    Err(r) => Some(r),
                };
                assert_eq!(
                    told,
                    Some(&contended),
                    "round {round}: nobody holds {c:?}, so every contender must be told Contended"
                );
            }
            fenced_rounds += 1;
            continue;
        };
        let mut winners = 0;
        for (i, o) in outs.into_iter().enumerate() {
            let o = o.unwrap_or_else(|e| panic!("concurrent reserve_batch failed: {e}"));
            let already = Rejection::AlreadyReserved {
                container_id: c.clone(),
                worker_id: holder.clone(),
            };
            // Where one-holder spans several atomic sections (Redis Cluster claims), a loser that
            // raced the winner's still-uncommitted claim may be told `Contended` (retry) instead.
            let contended = Rejection::Contended {
                container_id: c.clone(),
            };
            let loser_ok = |r: Option<&Rejection>| r == Some(&already) || r == Some(&contended);
            match &o[0].outcome {
                Ok(cm) if cm.accepted == 2 => {
                    winners += 1;
                    assert_eq!(ids[i], holder, "the winner must be the holder");
                }
                Ok(cm) => assert!(
                    loser_ok(cm.remainder.as_ref()),
                    "a partial loser's remainder: {:?}, expected {already:?}",
                    cm.remainder
                ),
                Err(r) => assert!(
                    loser_ok(Some(r)),
                    "a loser must be told who holds the container: {r:?}, expected {already:?}"
                ),
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: exactly one worker may hold {c:?}"
        );
        let mut holders = 0;
        for id in &ids {
            holders += ledger(repo, id)
                .await
                .iter()
                .filter(|r| r.container_id == c)
                .count();
        }
        assert_eq!(
            holders, 1,
            "round {round}: {c:?} must be in exactly one ledger"
        );
    }
    assert!(
        fenced_rounds < 5,
        "some round must have a winner ({fenced_rounds} of 5 fenced)"
    );
    for id in &ids {
        assert_consistent(repo, id, "after contended reservations").await;
    }
    fx.finish().await;
}

/// While workers are being written, `list_workers` never leaves one out and audits stay
/// consistent.
pub async fn check_list_workers_during_writes(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "list-writes");
    let ns = fx.ns();
    let pool = ns.pool("p");
    let ids: Vec<String> = (0..8).map(|i| ns.worker(&format!("{i}"))).collect();
    for id in &ids {
        fx.register(
            &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
                .with_pool(pool.clone())
                .requiring_pool_selector(),
        )
        .await;
    }
    let writer = async {
        for round in 0..30 {
            let cs: Vec<String> = ids.iter().map(|id| format!("{id}/c{round}")).collect();
            let batch: Vec<_> = ids
                .iter()
                .zip(&cs)
                .map(|(id, c)| cr(id, vec![rr(c, res(10, 10, 0))]))
                .collect();
            reserve(repo, &batch, CommitMode::AllOrNothing).await;
            if round % 3 == 0 {
                let spec = WorkerSpec::new(
                    ids[round % ids.len()].clone(),
                    res(1000 + round as u64, 1000, 0),
                )
                .with_pool(pool.clone())
                .requiring_pool_selector();
                fx.register(&spec).await;
            }
            release(repo, &cs).await;
        }
    };
    let reader = async {
        let want: HashSet<&String> = ids.iter().collect();
        for _ in 0..30 {
            let got = repo
                .list_workers(Some(&pool))
                .await
                .unwrap_or_else(|e| panic!("list_workers failed: {e}"));
            let got_ids: HashSet<&String> = got.iter().map(|w| &w.id).collect();
            assert_eq!(
                got_ids, want,
                "list_workers must never leave out a worker being written"
            );
            for w in &got {
                assert!(
                    w.free.le(&w.total),
                    "a listed worker's free must not exceed its total: {w:?}"
                );
            }
            let a = repo
                .audit(&ids[0])
                .await
                .unwrap_or_else(|e| panic!("audit failed: {e}"));
            assert!(a.is_consistent(), "audit during writes: {a:?}");
            tokio::task::yield_now().await;
        }
    };
    futures::join!(writer, reader);
    for id in &ids {
        assert_consistent(repo, id, "after concurrent writes").await;
    }
    fx.finish().await;
}
