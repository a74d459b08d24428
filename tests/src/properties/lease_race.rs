//! [`renewals_race_sweeps`]: holders renew short leases while sweepers expire them, on the same
//! workers, by the store's real clock.

use super::support::{assert_invariants, remove_all};
use super::{run, PropConfig};
use crate::ns::Ns;
use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::{
    CapacityReservation, CommitMode, ExpiryReason, LeaseRenewal, LeaseSweep, RenewOutcome,
    ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// One generated container: amounts, its lease (ms), and how many renewals it gets before its
/// holder stops renewing it (it "dies").
type GenLeased = (Resources, u64, usize);

/// One generated worker: its containers, the lease its holder renews to, and the pauses (ms)
/// before each round of renewals.
#[derive(Debug, Clone)]
struct GenRaceWorker {
    containers: Vec<GenLeased>,
    renew_lease_ms: u64,
    gaps: Vec<u64>,
}

fn gen_race_worker() -> impl Strategy<Value = GenRaceWorker> {
    (
        vec(((1u64..=4), 10u64..=50, 0usize..=4), 1..=6),
        10u64..=50,
        vec(1u64..=25, 4),
    )
        .prop_map(|(cs, renew_lease_ms, gaps)| GenRaceWorker {
            containers: cs
                .into_iter()
                .map(|(n, l, k)| (Resources::cpu_mem(n * 100, n * 64), l, k))
                .collect(),
            renew_lease_ms,
            gaps,
        })
}

async fn renewer(
    repo: Arc<dyn WorkerRepository>,
    worker: String,
    ids: Vec<(String, usize)>,
    g: GenRaceWorker,
) -> Vec<LeaseRenewal> {
    let mut log = Vec::new();
    for (round, gap) in g.gaps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*gap)).await;
        let due: Vec<String> = ids
            .iter()
            .filter(|(_, k)| *k > round)
            .map(|(c, _)| c.clone())
            .collect();
        if due.is_empty() {
            break;
        }
        let got = repo
            .renew_leases(&worker, &due, g.renew_lease_ms)
            .await
            .expect("renew_leases");
        let got_ids: Vec<&String> = got.iter().map(|r| &r.container_id).collect();
        assert_eq!(got_ids, due.iter().collect::<Vec<_>>(), "input order");
        log.extend(got);
    }
    log
}

async fn sweeper(
    repo: Arc<dyn WorkerRepository>,
    workers: Vec<String>,
    stop: Arc<AtomicBool>,
    gap_ms: u64,
) -> Vec<LeaseSweep> {
    let mut log = Vec::new();
    loop {
        let last = stop.load(Ordering::SeqCst);
        for w in &workers {
            let s = repo.expire_leases(w).await.expect("expire_leases");
            assert_eq!(&s.worker_id, w);
            log.push(s);
        }
        if last {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("task failed: {e}"),
        },
    }
}

/// What one container went through.
#[derive(Debug, Default)]
struct Story {
    worker: String,
    resources: Resources,
    first_deadline: u64,
    renew_lease_ms: u64,
    renewals: Vec<RenewOutcome>,
    swept: Vec<(u64, sched_core::ExpiredReservation)>,
}

/// Short leases (10–50 ms) on one to three workers: each worker's holder renews its containers
/// in a few rounds (each container for a random number of them, then it "dies"), while two
/// sweepers expire leases on every worker. Afterwards every container is either held with its
/// last renewed deadline or was expired exactly once with that deadline — never both, never
/// neither; no renewal succeeded at or after a deadline, or after an `Expired`/`NotHeld`; each
/// worker's free capacity is what it had after the reservations plus what the sweeps reported
/// returning (so each expired container's capacity came back once), its version is the last a
/// non-empty sweep reported, and the ledger rule, the one-holder rule and zero drift hold.
pub fn renewals_race_sweeps(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (vec(gen_race_worker(), 1..=3), 1u64..=8, 0u64..=40);
    run(
        "renewals_race_sweeps",
        cfg,
        strategy,
        |(gws, sweep_gap, tail)| {
            handle.block_on(async {
                let ns = Ns::awkward("prop-leases");
                let mut workers = Vec::new();
                let mut stories: HashMap<String, Story> = HashMap::new();
                let mut tasks = Vec::new();
                let mut before = HashMap::new();
                for (i, g) in gws.iter().enumerate() {
                    let w = ns.worker(&i.to_string());
                    let ids: Vec<(String, usize)> = (0..g.containers.len())
                        .map(|k| (ns.container(&format!("{i}-{k}")), g.containers[k].2))
                        .collect();
                    let total =
                        Resources::checked_sum(g.containers.iter().map(|c| &c.0)).expect("total");
                    let spec = WorkerSpec::new(w.clone(), total).with_pool(ns.pool("p"));
                    repo.register_worker(&spec).await.expect("register_worker");
                    let part = CapacityReservation::new(
                        w.clone(),
                        ids.iter()
                            .zip(&g.containers)
                            .map(|((c, _), (r, l, _))| {
                                ResourceReservation::new(c.clone(), *r)
                                    .with_lease(Duration::from_millis(*l))
                            })
                            .collect(),
                    );
                    let out = repo
                        .reserve_batch(&[part], CommitMode::AllOrNothing)
                        .await
                        .expect("reserve_batch");
                    let c = out[0].outcome.clone().expect("everything fits");
                    before.insert(w.clone(), (c.free, c.new_version, total));
                    for r in repo.list_reservations(&w).await.expect("list_reservations") {
                        stories.insert(
                            r.container_id.clone(),
                            Story {
                                worker: w.clone(),
                                resources: r.resources,
                                first_deadline: r.lease_expires_at_ms.expect("leased"),
                                renew_lease_ms: g.renew_lease_ms,
                                ..Story::default()
                            },
                        );
                    }
                    tasks.push(tokio::spawn(renewer(
                        Arc::clone(&repo),
                        w.clone(),
                        ids,
                        g.clone(),
                    )));
                    workers.push(w);
                }
                let stop = Arc::new(AtomicBool::new(false));
                let sweepers: Vec<_> = (0..2)
                    .map(|k| {
                        tokio::spawn(sweeper(
                            Arc::clone(&repo),
                            workers.clone(),
                            Arc::clone(&stop),
                            sweep_gap + k,
                        ))
                    })
                    .collect();
                for t in tasks {
                    for r in joined(t.await) {
                        let s = stories.get_mut(&r.container_id).expect("our container");
                        s.renewals.push(r.outcome);
                    }
                }
                tokio::time::sleep(Duration::from_millis(tail)).await;
                stop.store(true, Ordering::SeqCst);
                let mut sweeps = Vec::new();
                for s in sweepers {
                    sweeps.extend(joined(s.await));
                }
                for s in &sweeps {
                    for e in &s.expired {
                        let story = stories
                            .get_mut(&e.record.container_id)
                            .expect("our container");
                        assert_eq!(story.worker, s.worker_id, "swept where it was held");
                        story.swept.push((s.swept_at_ms, e.clone()));
                    }
                }
                check_stories(&*repo, &stories, &sweeps, &before).await;
                let containers: Vec<String> = stories.keys().cloned().collect();
                assert_invariants(&*repo, &workers, &containers).await;
                remove_all(&*repo, &workers).await;
            });
        },
    );
}

async fn check_stories(
    repo: &dyn WorkerRepository,
    stories: &HashMap<String, Story>,
    sweeps: &[LeaseSweep],
    before: &HashMap<String, (Resources, u64, Resources)>,
) {
    let mut held = HashMap::new();
    for w in before.keys() {
        for r in repo.list_reservations(w).await.expect("list_reservations") {
            held.insert(r.container_id.clone(), r);
        }
    }
    for (c, s) in stories {
        // The deadlines the renewals set, in order; no success after a failure or a deadline.
        let mut deadline = s.first_deadline;
        let mut lost = None;
        for o in &s.renewals {
            match (o, lost) {
                (RenewOutcome::Renewed { expires_at_ms }, None) => {
                    // It ran at `expires_at_ms - lease`, before the deadline it replaced.
                    let at = expires_at_ms.saturating_sub(s.renew_lease_ms);
                    assert!(
                        at < deadline,
                        "{c}: renewed at {at}, at or after its deadline {deadline}: {:?}",
                        s.renewals
                    );
                    deadline = *expires_at_ms;
                }
                (RenewOutcome::Renewed { .. }, Some(first)) => {
                    panic!("{c}: renewed after {first:?}: {:?}", s.renewals)
                }
                (RenewOutcome::NoLease, _) => panic!("{c} has a lease: {:?}", s.renewals),
                (RenewOutcome::Expired { reason }, _) => {
                    assert_eq!(*reason, ExpiryReason::LeaseExpired, "{c}");
                    lost.get_or_insert(*o);
                }
                (RenewOutcome::NotHeld, _) => {
                    assert!(!s.swept.is_empty(), "{c}: NotHeld but never swept");
                    lost.get_or_insert(*o);
                }
            }
        }
        match (held.get(c), s.swept.as_slice()) {
            (Some(r), []) => {
                assert_eq!(r.worker_id, s.worker, "{c}: held where reserved");
                assert_eq!(
                    r.lease_expires_at_ms,
                    Some(deadline),
                    "{c}: held with the last renewed deadline ({:?})",
                    s.renewals
                );
            }
            (None, [(at, e)]) => {
                assert_eq!(e.reason, ExpiryReason::LeaseExpired, "{c}");
                assert_eq!(
                    (e.record.lease_expires_at_ms, e.record.resources),
                    (Some(deadline), s.resources),
                    "{c}: expired with its last renewed deadline ({:?})",
                    s.renewals
                );
                assert!(deadline <= *at, "{c}: swept at {at}, before its deadline {deadline}");
            }
            (h, swept) => panic!(
                "{c}: must end held or expired once, not both or neither: held {h:?}, swept {swept:?}"
            ),
        }
    }
    for (w, (free0, v0, total)) in before {
        let got = repo
            .get_worker(w)
            .await
            .expect("get_worker")
            .expect("registered");
        let mine: Vec<&LeaseSweep> = sweeps.iter().filter(|s| &s.worker_id == w).collect();
        let returned = Resources::checked_sum(
            mine.iter()
                .flat_map(|s| s.expired.iter().map(|e| &e.record.resources)),
        )
        .expect("sum");
        assert_eq!(
            free0.checked_add(&returned).ok(),
            Some(got.free),
            "{w}: free after the reservations + what the sweeps returned = free now"
        );
        assert!(got.free.le(total), "{w}: free {} above total", got.free);
        let mut bumps: Vec<u64> = mine
            .iter()
            .filter(|s| !s.expired.is_empty())
            .map(|s| s.resource_version)
            .collect();
        let n = bumps.len();
        bumps.sort_unstable();
        bumps.dedup();
        assert_eq!(
            bumps.len(),
            n,
            "{w}: two sweeps reported the same new version"
        );
        assert!(
            bumps.iter().all(|v| v > v0),
            "{w}: a sweep's version below {v0}"
        );
        assert_eq!(
            got.resource_version,
            bumps.last().copied().unwrap_or(*v0),
            "{w}: renewals do not bump; the last non-empty sweep did"
        );
        for s in &mine {
            assert!(s.free.le(total), "{w}: a sweep reported free above total");
        }
    }
}
