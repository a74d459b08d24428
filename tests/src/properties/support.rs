//! Shared by the properties: generators of workers and demands, the invariants checked after
//! every case, and the cleanup.

use proptest::prelude::*;
use sched_core::{Resources, WorkerRepository};
use std::collections::HashMap;

pub(super) const GPU_TYPES: [&str; 2] = ["a100", "h100"];

/// A generated worker.
#[derive(Debug, Clone)]
pub(super) struct GenWorker {
    pub(super) total: Resources,
    pub(super) gpu_type: Option<&'static str>,
}

pub(super) fn gen_worker() -> impl Strategy<Value = GenWorker> {
    (
        0u64..=8,
        0u64..=8,
        prop_oneof![3 => Just(None), 1 => Just(Some(GPU_TYPES[0])), 1 => Just(Some(GPU_TYPES[1]))],
        1u64..=4,
    )
        .prop_map(|(c, m, g, n)| GenWorker {
            total: Resources::new(c * 500, m * 512, if g.is_some() { n } else { 0 }),
            gpu_type: g,
        })
}

/// Non-zero resources, sometimes with GPUs and a GPU type.
pub(super) fn gen_demand() -> impl Strategy<Value = (Resources, Option<&'static str>)> {
    (
        1u64..=4,
        0u64..=4,
        prop_oneof![4 => Just(0u64), 1 => 1u64..=2],
        0usize..2,
    )
        .prop_map(|(c, m, g, t)| {
            let ty = (g > 0).then_some(GPU_TYPES[t]);
            (Resources::new(c * 250, m * 256, g), ty)
        })
}

/// After a case: every worker consistent (ledger rule, audit), no container held twice, and
/// `find_reservation` agrees with the ledgers for `containers`.
pub(super) async fn assert_invariants(
    repo: &dyn WorkerRepository,
    workers: &[String],
    containers: &[String],
) {
    let mut holder: HashMap<String, String> = HashMap::new();
    for w in workers {
        let Some(got) = repo.get_worker(w).await.expect("get_worker") else {
            continue;
        };
        let ledger = repo.list_reservations(w).await.expect("list_reservations");
        let sum = Resources::checked_sum(ledger.iter().map(|r| &r.resources)).expect("ledger sum");
        assert_eq!(
            got.free.checked_add(&sum).ok(),
            Some(got.total),
            "free {} + reserved {sum} must equal total {} on {w:?}",
            got.free,
            got.total
        );
        let audit = repo.audit(w).await.expect("audit");
        assert!(audit.is_consistent(), "audit drift must be zero: {audit:?}");
        for r in ledger {
            if let Some(other) = holder.insert(r.container_id.clone(), w.clone()) {
                panic!(
                    "container {:?} is held on {other:?} and {w:?}",
                    r.container_id
                );
            }
        }
    }
    for c in containers {
        let found = repo.find_reservation(c).await.expect("find_reservation");
        assert_eq!(
            found.map(|r| r.worker_id),
            holder.get(c).cloned(),
            "find_reservation({c:?}) must agree with the ledgers"
        );
    }
}

pub(super) async fn remove_all(repo: &dyn WorkerRepository, workers: &[String]) {
    for w in workers {
        repo.remove_worker(w).await.expect("cleanup: remove_worker");
    }
}
