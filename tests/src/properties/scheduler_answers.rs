//! [`scheduler_answers`]: one [`Scheduler`] answers random bursts (ids repeated within a burst,
//! across concurrent calls and across bursts, with the same or other resources) while commits
//! lose their replies and lookups fail; every answer must agree with the store.

use super::support::{assert_invariants, remove_all};
use super::{run, PropConfig};
use crate::ns::Ns;
use futures::future::join_all;
use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::layers::{Fault, Faulty, Op};
use sched_core::{
    ContainerRequest, InvalidInput, Placement, ReservationRecord, Resources, ScheduleError,
    Scheduler, SchedulerConfig, WorkerRepository, WorkerSpec,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

const IDS: usize = 6;

/// One generated step.
#[derive(Debug, Clone)]
enum Step {
    /// Faults for the next placement: reserve replies lost, reserves failed, lookups failed.
    Faults {
        lose: usize,
        fail: usize,
        finds: usize,
    },
    /// One `schedule_batch` of (id, size) requests, ids possibly repeated.
    Batch(Vec<(usize, u64)>),
    /// Concurrent `schedule` calls of (id, size).
    Calls(Vec<(usize, u64)>),
    /// `release` of these ids.
    Release(Vec<usize>),
}

fn gen_step() -> impl Strategy<Value = Step> {
    let reqs = vec((0..IDS, 1u64..=2), 1..6);
    prop_oneof![
        2 => (0usize..=2, 0usize..=1, 0usize..=4)
            .prop_map(|(lose, fail, finds)| Step::Faults { lose, fail, finds }),
        3 => reqs.clone().prop_map(Step::Batch),
        2 => reqs.prop_map(Step::Calls),
        1 => vec(0..IDS, 1..4).prop_map(Step::Release),
    ]
}

fn request(ns: &Ns, pool: &str, id: usize, size: u64) -> ContainerRequest {
    ContainerRequest::new(
        ns.container(&id.to_string()),
        Resources::cpu_mem(250 * size, 256 * size),
    )
    .with_pool(pool)
}

/// Where each of `ids` is held now.
async fn held(repo: &dyn WorkerRepository, ids: &[String]) -> HashMap<String, ReservationRecord> {
    let found = repo
        .find_reservations(ids)
        .await
        .expect("find_reservations");
    ids.iter()
        .cloned()
        .zip(found)
        .filter_map(|(c, r)| Some((c, r?)))
        .collect()
}

/// Checks one step's answers against the store before (`was`) and after (`now`) it.
/// `faulted`: reserve faults were active (an answer may then be this call's own commit, so
/// `already_held` is not checked). `coalesced`: the requests went through one burst or one
/// group commit, so identical requests must get identical answers; otherwise (concurrent calls
/// without batching, each its own burst) they must agree where both are placed.
fn check_answers(
    reqs: &[ContainerRequest],
    answers: &[Result<Placement, ScheduleError>],
    was: &HashMap<String, ReservationRecord>,
    now: &HashMap<String, ReservationRecord>,
    faulted: bool,
    coalesced: bool,
) {
    assert_eq!(answers.len(), reqs.len(), "one answer per request");
    let mut first: HashMap<&str, usize> = HashMap::new();
    // Ids asked for with two different requests in this step race each other.
    let mut raced: HashMap<&str, bool> = HashMap::new();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (k, r) in reqs.iter().enumerate() {
        let j = *first.entry(r.id.as_str()).or_insert(k);
        *raced.entry(r.id.as_str()).or_default() |= reqs[j] != *r;
        *count.entry(r.id.as_str()).or_default() += 1;
    }
    for (k, (r, a)) in reqs.iter().zip(answers).enumerate() {
        let id = r.id.as_str();
        let j = first[id];
        if j != k && reqs[j] == *r {
            let same = match (&answers[j], a) {
                (Ok(p), Ok(q)) => p.worker_id == q.worker_id,
                _ if !coalesced => true,
                (Err(e), Err(f)) => std::mem::discriminant(e) == std::mem::discriminant(f),
                _ => false,
            };
            assert!(
                same,
                "identical requests for {id} got {:?} and {a:?}",
                answers[j]
            );
        }
        let before = was.get(id);
        match a {
            Ok(p) => {
                let h = now
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} answered {p:?}, not held"));
                assert_eq!(
                    (&h.worker_id, h.resources),
                    (&p.worker_id, r.resources),
                    "{id}: Ok must be held there with the resources asked for"
                );
                if let Some(b) = before {
                    assert_eq!(b.worker_id, p.worker_id, "{id} was held elsewhere");
                    if !faulted {
                        assert!(p.already_held, "{id} was held already: {p:?}");
                    }
                } else if count[id] == 1 {
                    assert!(!p.already_held, "{id} was not held before: {p:?}");
                }
            }
            Err(e) if e.may_be_held() => {}
            Err(ScheduleError::HeldDifferently { held: h, .. }) => {
                assert_eq!(
                    now.get(id),
                    Some(&**h),
                    "{id}: HeldDifferently names the holder"
                );
                assert!(h.resources != r.resources, "{id}: held as asked, yet {a:?}");
            }
            Err(ScheduleError::InvalidRequest {
                cause: InvalidInput::DuplicateContainer { .. },
                ..
            }) => assert!(
                raced[id],
                "{id}: DuplicateContainer without a different repeat"
            ),
            Err(e) => {
                if !raced[id] {
                    assert!(
                        now.get(id).is_none(),
                        "{id} answered {e} but held: {:?}",
                        now.get(id)
                    );
                }
                if let Some(b) = before {
                    panic!("{id} was held ({b:?}), yet {e}");
                }
            }
        }
    }
}

/// One [`Scheduler`] (batching on or off) over a [`Faulty`] layer around `repo`: random steps of
/// bursts, concurrent calls, releases and faults (lost reserve replies, failed reserves, failed
/// lookups). After every step, every answer agrees with the store (see the crate's issue 10,
/// cases 6, 8 and 9), and the invariants hold.
pub fn scheduler_answers(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (1usize..=3, 1u64..=4, any::<bool>(), vec(gen_step(), 1..10));
    run(
        "scheduler_answers",
        cfg,
        strategy,
        |(n, cap, batching, steps)| {
            handle.block_on(async {
                let ns = Ns::new("prop-answers");
                let pool = ns.pool("p");
                let workers: Vec<String> = (0..n).map(|i| ns.worker(&i.to_string())).collect();
                for id in &workers {
                    let spec =
                        WorkerSpec::new(id.clone(), Resources::cpu_mem(250 * cap, 256 * cap))
                            .with_pool(pool.clone())
                            .requiring_pool_selector();
                    repo.register_worker(&spec).await.expect("register_worker");
                }
                let ids: Vec<String> = (0..IDS).map(|i| ns.container(&i.to_string())).collect();
                let faulty = Faulty::new(Arc::clone(&repo));
                let plan = faulty.plan();
                let sched = Scheduler::new(
                    faulty,
                    SchedulerConfig::default()
                        .with_batching(batching)
                        .with_backoff_base(Duration::from_millis(1))
                        .with_backoff_max(Duration::from_millis(4)),
                );
                let mut faulted = false;
                for step in steps {
                    let reqs: Vec<ContainerRequest> = match &step {
                        Step::Faults { lose, fail, finds } => {
                            plan.on(Op::Reserve, Fault::LoseReply, *lose);
                            plan.on(Op::Reserve, Fault::Fail, *fail);
                            plan.on(Op::Find, Fault::Fail, *finds);
                            faulted |= lose + fail > 0;
                            continue;
                        }
                        Step::Release(r) => {
                            let mut rel: Vec<String> = r.iter().map(|&i| ids[i].clone()).collect();
                            rel.sort();
                            rel.dedup();
                            repo.release_batch(&rel).await.expect("release_batch");
                            sched.cache().invalidate();
                            continue;
                        }
                        Step::Batch(r) | Step::Calls(r) => {
                            r.iter().map(|&(i, s)| request(&ns, &pool, i, s)).collect()
                        }
                    };
                    let was = held(&*repo, &ids).await;
                    let answers = match &step {
                        Step::Batch(_) => sched.schedule_batch(reqs.clone()).await,
                        _ => join_all(reqs.iter().map(|r| sched.schedule(r.clone()))).await,
                    };
                    plan.clear();
                    let now = held(&*repo, &ids).await;
                    let coalesced = batching || matches!(step, Step::Batch(_));
                    check_answers(&reqs, &answers, &was, &now, faulted, coalesced);
                    faulted = false;
                    assert_invariants(&*repo, &workers, &ids).await;
                }
                remove_all(&*repo, &workers).await;
            });
        },
    );
}
