//! [`concurrent_callers`]: several tasks call `reserve_batch` and `release_batch` directly.

use super::support::{assert_invariants, gen_demand, gen_worker, remove_all};
use super::{run, PropConfig};
use crate::ns::Ns;
use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::{
    CapacityReservation, CommitMode, Rejection, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::runtime::Handle;

/// A generated reservation: container index, amounts, GPU type.
type GenRes = (usize, Resources, Option<&'static str>);
/// A generated worker part: worker index (one past the end = unknown) and its reservations.
type GenPart = (usize, Vec<GenRes>);

/// One generated call of a direct caller.
#[derive(Debug, Clone)]
enum DirectOp {
    Reserve {
        partial: bool,
        /// (worker index, possibly one past the end = unknown worker; reservations)
        parts: Vec<GenPart>,
    },
    Release(Vec<usize>),
}

const DIRECT_CONTAINERS: usize = 16;

fn gen_direct_op() -> impl Strategy<Value = DirectOp> {
    prop_oneof![
        3 => (any::<bool>(), vec((0usize..6, vec((0..DIRECT_CONTAINERS, gen_demand()), 1..4)), 1..4))
            .prop_map(|(partial, parts)| DirectOp::Reserve {
                partial,
                parts: parts
                    .into_iter()
                    .map(|(w, rs)| (w, rs.into_iter().map(|(c, (r, t))| (c, r, t)).collect()))
                    .collect(),
            }),
        2 => vec(0..DIRECT_CONTAINERS, 1..6).prop_map(DirectOp::Release),
    ]
}

/// Builds a valid batch: drops repeated workers and containers.
fn direct_batch(
    parts: &[GenPart],
    workers: &[String],
    ghost: &str,
    containers: &[String],
) -> Vec<CapacityReservation> {
    let mut seen_w = HashSet::new();
    let mut seen_c = HashSet::new();
    let mut batch = Vec::new();
    for (w, rs) in parts {
        let wid = workers.get(*w).map_or(ghost, String::as_str);
        if !seen_w.insert(wid) {
            continue;
        }
        let rs: Vec<ResourceReservation> = rs
            .iter()
            .filter(|(c, _, _)| seen_c.insert(*c))
            .map(|(c, r, t)| {
                let rr = ResourceReservation::new(containers[*c].clone(), *r);
                match t {
                    Some(t) => rr.with_gpu_type(*t),
                    None => rr,
                }
            })
            .collect();
        if !rs.is_empty() {
            batch.push(CapacityReservation::new(wid, rs));
        }
    }
    batch
}

/// Several tasks call `reserve_batch` / `release_batch` concurrently on overlapping workers and
/// container ids; afterwards the ledger rule, the one-holder rule and zero drift hold, and every
/// `Committed.free` reported along the way was within the worker's total.
pub fn concurrent_callers(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (
        vec(gen_worker(), 2..=5),
        vec(vec(gen_direct_op(), 1..8), 2..=4),
    );
    run("concurrent_callers", cfg, strategy, |(gws, tasks)| {
        handle.block_on(async {
            let ns = Ns::awkward("prop-direct");
            let workers: Vec<String> = (0..gws.len()).map(|i| ns.worker(&i.to_string())).collect();
            let ghost = ns.worker("ghost");
            let containers: Vec<String> = (0..DIRECT_CONTAINERS)
                .map(|i| ns.container(&i.to_string()))
                .collect();
            let mut totals = HashMap::new();
            for (id, g) in workers.iter().zip(&gws) {
                let mut spec = WorkerSpec::new(id.clone(), g.total)
                    .with_pool(ns.pool("p"))
                    .requiring_pool_selector();
                spec.gpu_type = g.gpu_type.map(str::to_owned);
                repo.register_worker(&spec).await.expect("register_worker");
                totals.insert(id.clone(), g.total);
            }
            let totals = Arc::new(totals);
            let mut handles = Vec::new();
            for ops in tasks {
                let repo = Arc::clone(&repo);
                let (workers, ghost, containers) =
                    (workers.clone(), ghost.clone(), containers.clone());
                let totals = Arc::clone(&totals);
                handles.push(tokio::spawn(async move {
                    for op in ops {
                        match op {
                            DirectOp::Reserve { partial, parts } => {
                                let batch = direct_batch(&parts, &workers, &ghost, &containers);
                                let mode = if partial {
                                    CommitMode::Partial
                                } else {
                                    CommitMode::AllOrNothing
                                };
                                let out = repo
                                    .reserve_batch(&batch, mode)
                                    .await
                                    .expect("reserve_batch");
                                assert_eq!(out.len(), batch.len(), "one result per worker");
                                for (r, b) in out.iter().zip(&batch) {
                                    assert_eq!(r.worker_id, b.worker_id, "results in input order");
                                    if let Ok(c) = &r.outcome {
                                        assert!(
                                            c.free.le(&totals[&r.worker_id]),
                                            "Committed.free above total: {c:?}"
                                        );
                                        assert!(
                                            c.accepted >= 1 && c.accepted <= b.reservations.len()
                                        );
                                        if mode == CommitMode::AllOrNothing {
                                            assert_eq!(
                                                c.accepted,
                                                b.reservations.len(),
                                                "all-or-nothing commits all"
                                            );
                                        }
                                    }
                                    if r.worker_id == ghost {
                                        assert_eq!(r.outcome, Err(Rejection::UnknownWorker));
                                    }
                                }
                            }
                            DirectOp::Release(cs) => {
                                let ids: Vec<String> = cs
                                    .into_iter()
                                    .collect::<BTreeSet<_>>()
                                    .into_iter()
                                    .map(|c| containers[c].clone())
                                    .collect();
                                let out = repo.release_batch(&ids).await.expect("release_batch");
                                assert_eq!(out.len(), ids.len());
                                for (o, id) in out.iter().zip(&ids) {
                                    assert_eq!(&o.container_id, id, "outcomes in input order");
                                }
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for h in handles {
                if let Err(e) = h.await {
                    match e.try_into_panic() {
                        Ok(p) => std::panic::resume_unwind(p),
                        Err(e) => panic!("task failed: {e}"),
                    }
                }
            }
            assert_invariants(&*repo, &workers, &containers).await;
            remove_all(&*repo, &workers).await;
        });
    });
}
