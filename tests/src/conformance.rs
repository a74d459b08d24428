//! The conformance suite: one `pub async fn check_*` per rule of the
//! [`WorkerRepository`] contract, and [`run_all`] / [`run_all_concurrently`].
//!
//! Every check works in its own random [`Ns`], never assumes the store is empty, and removes its
//! workers at the end, so checks can share one store with each other and with other tests.
//! Checks panic with a message naming the rule when the backend breaks it.
//!
//! Every worker a check registers requires a pool selector naming its namespaced pool, so a
//! [`Scheduler`](sched_core::Scheduler) running elsewhere on the same store never places
//! containers on it (and never disturbs the exact amounts the check asserts).

use crate::ns::{Ns, DROP_TABLE};
use sched_core::validate::{MAX_AMOUNT, MAX_BATCH, MAX_ID_BYTES};
use sched_core::{
    CapacityReservation, CommitMode, Committed, Rejection, ReleaseOutcome, RepoError,
    ReservationRecord, ResourceKind, ResourceReservation, Resources, Worker, WorkerOutcome,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;

/// Calls `$cb!` with `($args)` followed by the name of every check. Keeps [`run_all`],
/// [`CHECKS`] and [`conformance_tests!`](crate::conformance_tests) in step.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($cb:ident ! $args:tt) => {
        $crate::$cb! { $args
            check_register_and_get
            check_reserve_one_worker
            check_reserve_many_workers_in_input_order
            check_rejection_does_not_block_other_workers
            check_reserve_then_release
            check_release_returns_capacity_once
            check_release_across_workers
            check_insufficient_cpu
            check_insufficient_memory
            check_insufficient_gpu
            check_gpu_type_mismatch
            check_gpu_count_never_wraps
            check_empty_batches
            check_unknown_worker
            check_version_conflict
            check_worker_unavailable
            check_rejection_order
            check_all_or_nothing
            check_partial_longest_prefix
            check_partial_first_rejected_rejects_worker
            check_idempotent_reserve
            check_idempotent_release
            check_already_reserved_elsewhere
            check_reregister_keeps_used_capacity
            check_reregister_below_reserved
            check_remove_then_reregister_late_release
            check_find_reservation
            check_find_reservations_batch
            check_list_reservations_ordered
            check_list_workers
            check_audit_and_reconcile
            check_awkward_ids
            check_boundary_amounts_and_ids
            check_max_batch_accepted
            check_invalid_zero_resources
            check_invalid_amounts_too_large
            check_invalid_empty_ids
            check_invalid_long_ids
            check_invalid_control_characters
            check_invalid_duplicate_container
            check_invalid_duplicate_worker
            check_invalid_empty_reservation_list
            check_invalid_oversized_batch
            check_invalid_duplicate_release_ids
            check_release_unknown_containers
            check_concurrent_capacity_no_overcommit
            check_concurrent_same_container_one_holder
            check_list_workers_during_writes
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_names {
    (() $($name:ident)*) => {
        /// The name of every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),*];
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_run {
    (($repo:ident) $($name:ident)*) => {
        $(
            eprintln!("conformance[{}]: {}", $repo.backend_name(), stringify!($name));
            $crate::conformance::$name($repo).await;
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_join {
    (($repo:ident) $($name:ident)*) => {
        futures::future::join_all(vec![
            $(::std::boxed::Box::pin($crate::conformance::$name($repo))
                as ::std::pin::Pin<::std::boxed::Box<dyn ::std::future::Future<Output = ()> + ::std::marker::Send + '_>>),*
        ])
        .await
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    (($make:expr) $($name:ident)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(repo) = ($make).await {
                    $crate::conformance::$name(&repo).await;
                }
            }
        )*
    };
}

/// Generates one `#[tokio::test]` per conformance check, each named after its check.
///
/// The argument is an expression evaluated in each test to an `async` block that yields
/// `Option<R>` with `R: WorkerRepository`; `None` skips the test (see
/// [`env::require_url`](crate::env::require_url)). Invoke it inside a module:
///
/// ```no_run
/// mod conformance {
///     sched_tests::conformance_tests!(async { Some(sched_memory::MemoryRepository::new()) });
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__for_each_check!(__conformance_test!($make));
    };
}

crate::__for_each_check!(__conformance_names!());

/// Runs every check, one after another, on `repo`.
pub async fn run_all(repo: &dyn WorkerRepository) {
    crate::__for_each_check!(__conformance_run!(repo));
}

/// Runs every check at the same time on `repo`: proves the checks' namespaces keep them apart
/// and exercises the backend under interleaved traffic.
pub async fn run_all_concurrently(repo: &dyn WorkerRepository) {
    crate::__for_each_check!(__conformance_join!(repo));
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn res(cpu: u64, mem: u64, gpu: u64) -> Resources {
    Resources::new(cpu, mem, gpu)
}

fn rr(id: &str, r: Resources) -> ResourceReservation {
    ResourceReservation::new(id, r)
}

fn cr(worker: &str, rs: Vec<ResourceReservation>) -> CapacityReservation {
    CapacityReservation::new(worker, rs)
}

const BOTH_MODES: [CommitMode; 2] = [CommitMode::AllOrNothing, CommitMode::Partial];

async fn register(repo: &dyn WorkerRepository, spec: &WorkerSpec) -> Worker {
    match repo.register_worker(spec).await {
        Ok(w) => w,
        Err(e) => panic!("register_worker({:?}) failed: {e}", spec.id),
    }
}

async fn get(repo: &dyn WorkerRepository, id: &str) -> Worker {
    match repo.get_worker(id).await {
        Ok(Some(w)) => w,
        Ok(None) => panic!("get_worker({id:?}) returned None for a registered worker"),
        Err(e) => panic!("get_worker({id:?}) failed: {e}"),
    }
}

/// `reserve_batch`, asserting the call succeeds and returns one result per worker, in order.
async fn reserve(
    repo: &dyn WorkerRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Vec<WorkerResult> {
    let out = match repo.reserve_batch(batch, mode).await {
        Ok(o) => o,
        Err(e) => panic!("reserve_batch ({mode:?}) failed as a whole: {e}"),
    };
    let sent: Vec<&str> = batch.iter().map(|c| c.worker_id.as_str()).collect();
    let got: Vec<&str> = out.iter().map(|r| r.worker_id.as_str()).collect();
    assert_eq!(
        got, sent,
        "reserve_batch must return one result per worker, in input order"
    );
    out
}

async fn reserve1(
    repo: &dyn WorkerRepository,
    c: CapacityReservation,
    mode: CommitMode,
) -> WorkerOutcome {
    let mut out = reserve(repo, std::slice::from_ref(&c), mode).await;
    out.remove(0).outcome
}

/// `release_batch`, asserting one outcome per id, in input order.
async fn release(repo: &dyn WorkerRepository, ids: &[String]) -> Vec<ReleaseOutcome> {
    let out = match repo.release_batch(ids).await {
        Ok(o) => o,
        Err(e) => panic!("release_batch({ids:?}) failed as a whole: {e}"),
    };
    let got: Vec<&String> = out.iter().map(|o| &o.container_id).collect();
    let sent: Vec<&String> = ids.iter().collect();
    assert_eq!(
        got, sent,
        "release_batch must return one outcome per id, in input order"
    );
    out
}

fn committed(o: WorkerOutcome, ctx: &str) -> Committed {
    match o {
        Ok(c) => c,
        Err(r) => panic!("{ctx}: expected a commit, got rejection {r:?}"),
    }
}

fn rejected(o: WorkerOutcome, ctx: &str) -> Rejection {
    match o {
        Err(r) => r,
        Ok(c) => panic!("{ctx}: expected a rejection, got commit {c:?}"),
    }
}

async fn ledger(repo: &dyn WorkerRepository, id: &str) -> Vec<ReservationRecord> {
    match repo.list_reservations(id).await {
        Ok(l) => l,
        Err(e) => panic!("list_reservations({id:?}) failed: {e}"),
    }
}

async fn find(repo: &dyn WorkerRepository, cid: &str) -> Option<ReservationRecord> {
    match repo.find_reservation(cid).await {
        Ok(r) => r,
        Err(e) => panic!("find_reservation({cid:?}) failed: {e}"),
    }
}

async fn held_on(repo: &dyn WorkerRepository, cid: &str) -> Option<String> {
    find(repo, cid).await.map(|r| r.worker_id)
}

/// The ledger rule and the audit: `free + Σ ledger = total`, drift zero, and the audit agrees
/// with `get_worker` and `list_reservations`.
async fn assert_consistent(repo: &dyn WorkerRepository, id: &str, ctx: &str) {
    let w = get(repo, id).await;
    let l = ledger(repo, id).await;
    let a = match repo.audit(id).await {
        Ok(a) => a,
        Err(e) => panic!("{ctx}: audit({id:?}) failed: {e}"),
    };
    assert!(
        a.drift.is_zero(),
        "{ctx}: audit drift must be zero, got {a:?}"
    );
    let sum = Resources::checked_sum(l.iter().map(|r| &r.resources))
        .unwrap_or_else(|e| panic!("{ctx}: ledger sum overflowed: {e}"));
    assert_eq!(
        w.free.checked_add(&sum).ok(),
        Some(w.total),
        "{ctx}: free {} + reserved {sum} must equal total {} on {id:?}",
        w.free,
        w.total
    );
    assert_eq!(
        a.reserved, sum,
        "{ctx}: audit.reserved must be the ledger sum"
    );
    assert_eq!(
        a.reservations,
        l.len(),
        "{ctx}: audit.reservations must count the ledger"
    );
    assert_eq!(
        (a.total, a.free),
        (w.total, w.free),
        "{ctx}: audit must agree with get_worker"
    );
    assert_eq!(a.worker_id, id, "{ctx}: audit names the wrong worker");
    for r in &l {
        assert_eq!(
            r.worker_id, id,
            "{ctx}: ledger record names the wrong worker"
        );
    }
}

async fn cleanup(repo: &dyn WorkerRepository, ids: &[String]) {
    for id in ids {
        if let Err(e) = repo.remove_worker(id).await {
            panic!("cleanup: remove_worker({id:?}) failed: {e}");
        }
    }
}

/// Everything observable about some workers and containers, to prove a call changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    workers: Vec<(Option<Worker>, Vec<ReservationRecord>)>,
    containers: Vec<Option<ReservationRecord>>,
}

async fn snapshot(
    repo: &dyn WorkerRepository,
    workers: &[String],
    containers: &[String],
) -> Snapshot {
    let mut s = Snapshot {
        workers: Vec::new(),
        containers: Vec::new(),
    };
    for w in workers {
        let got = match repo.get_worker(w).await {
            Ok(g) => g,
            Err(e) => panic!("get_worker({w:?}) failed: {e}"),
        };
        let l = if got.is_some() {
            ledger(repo, w).await
        } else {
            Vec::new()
        };
        s.workers.push((got, l));
    }
    for c in containers {
        s.containers.push(find(repo, c).await);
    }
    s
}

#[track_caller]
fn assert_invalid<T: Debug>(r: Result<T, RepoError>, what: &str) {
    match r {
        Err(RepoError::InvalidInput(_)) => {}
        other => panic!("{what}: expected RepoError::InvalidInput, got {other:?}"),
    }
}

fn assert_insufficient(
    rej: &Rejection,
    container: &str,
    kind: ResourceKind,
    requested: u64,
    available: u64,
    ctx: &str,
) {
    assert_eq!(
        rej,
        &Rejection::InsufficientCapacity {
            container_id: container.to_owned(),
            resource: kind,
            requested,
            available,
        },
        "{ctx}: the rejection must name the container, the short resource, the amount requested \
         and the amount available at that point of the batch"
    );
}

/// A fixture for the bad-input checks: two workers, one held container, and ids of valid
/// containers that bad batches also mention (so a half-applied batch would show).
struct Fixture {
    ns: Ns,
    w: String,
    w2: String,
    held: String,
    fresh: Vec<String>,
}

impl Fixture {
    async fn new(repo: &dyn WorkerRepository, tag: &str) -> Self {
        let ns = Ns::new(tag);
        let w = ns.worker("a");
        let w2 = ns.worker("b");
        for id in [&w, &w2] {
            register(
                repo,
                &WorkerSpec::new(id.clone(), res(4000, 4096, 2))
                    .with_pool(ns.pool("p"))
                    .requiring_pool_selector()
                    .with_gpu_type("a100"),
            )
            .await;
        }
        let held = ns.container("held");
        committed(
            reserve1(
                repo,
                cr(&w, vec![rr(&held, res(100, 100, 0))]),
                CommitMode::AllOrNothing,
            )
            .await,
            "fixture reserve",
        );
        let fresh = (0..4).map(|i| ns.container(&format!("fresh{i}"))).collect();
        Fixture {
            ns,
            w,
            w2,
            held,
            fresh,
        }
    }

    fn ok(&self, i: usize) -> ResourceReservation {
        rr(&self.fresh[i], res(10, 10, 0))
    }

    async fn snapshot(&self, repo: &dyn WorkerRepository) -> Snapshot {
        let mut cs = self.fresh.clone();
        cs.push(self.held.clone());
        snapshot(repo, &[self.w.clone(), self.w2.clone()], &cs).await
    }

    /// Sends each bad batch in both modes and asserts InvalidInput with nothing changed.
    async fn assert_batches_rejected(
        &self,
        repo: &dyn WorkerRepository,
        batches: &[(&str, Vec<CapacityReservation>)],
    ) {
        let before = self.snapshot(repo).await;
        for (what, b) in batches {
            for mode in BOTH_MODES {
                assert_invalid(
                    repo.reserve_batch(b, mode).await,
                    &format!("{what} ({mode:?})"),
                );
                assert_eq!(
                    self.snapshot(repo).await,
                    before,
                    "{what} ({mode:?}): a rejected batch must change nothing"
                );
            }
        }
        self.finish(repo).await;
    }

    async fn finish(&self, repo: &dyn WorkerRepository) {
        assert_consistent(repo, &self.w, "after bad input").await;
        assert_consistent(repo, &self.w2, "after bad input").await;
        cleanup(repo, &[self.w.clone(), self.w2.clone()]).await;
    }

    /// Calls every id-taking method with `bad` in each id position and asserts InvalidInput with
    /// nothing changed.
    async fn assert_bad_id_rejected(&self, repo: &dyn WorkerRepository, bad: &str, label: &str) {
        let before = self.snapshot(repo).await;
        let total = res(1000, 1000, 1);
        let specs = [
            (
                "worker id",
                WorkerSpec::new(bad, total)
                    .with_pool(self.ns.pool("p"))
                    .requiring_pool_selector(),
            ),
            (
                "pool",
                WorkerSpec::new(self.ns.worker("new"), total).with_pool(bad),
            ),
            (
                "gpu type",
                WorkerSpec::new(self.ns.worker("new"), total)
                    .with_pool(self.ns.pool("p"))
                    .requiring_pool_selector()
                    .with_gpu_type(bad),
            ),
            // re-registering an existing worker with a bad pool must not change it either
            (
                "pool on re-registration",
                WorkerSpec::new(self.w.clone(), total).with_pool(bad),
            ),
        ];
        for (what, spec) in &specs {
            assert_invalid(
                repo.register_worker(spec).await,
                &format!("register_worker with {label} {what}"),
            );
        }
        let batches = [
            (
                "worker id",
                vec![cr(&self.w, vec![self.ok(0)]), cr(bad, vec![self.ok(1)])],
            ),
            (
                "container id",
                vec![
                    cr(&self.w, vec![self.ok(0)]),
                    cr(&self.w2, vec![self.ok(1), rr(bad, res(1, 1, 0))]),
                ],
            ),
            (
                "gpu type",
                vec![
                    cr(&self.w, vec![self.ok(0)]),
                    cr(
                        &self.w2,
                        vec![rr(&self.fresh[1], res(1, 1, 1)).with_gpu_type(bad)],
                    ),
                ],
            ),
        ];
        for (what, b) in &batches {
            for mode in BOTH_MODES {
                assert_invalid(
                    repo.reserve_batch(b, mode).await,
                    &format!("reserve_batch with {label} {what} ({mode:?})"),
                );
            }
        }
        assert_invalid(
            repo.release_batch(&[self.held.clone(), bad.to_owned()])
                .await,
            &format!("release_batch with {label} container id"),
        );
        assert_invalid(repo.get_worker(bad).await, &format!("get_worker({label})"));
        assert_invalid(
            repo.remove_worker(bad).await,
            &format!("remove_worker({label})"),
        );
        assert_invalid(
            repo.list_reservations(bad).await,
            &format!("list_reservations({label})"),
        );
        assert_invalid(repo.audit(bad).await, &format!("audit({label})"));
        assert_invalid(repo.reconcile(bad).await, &format!("reconcile({label})"));
        assert_invalid(
            repo.find_reservation(bad).await,
            &format!("find_reservation({label})"),
        );
        assert_invalid(
            repo.list_workers(Some(bad)).await,
            &format!("list_workers({label} pool)"),
        );
        assert_eq!(
            self.snapshot(repo).await,
            before,
            "calls with {label} ids must change nothing"
        );
        assert!(
            repo.get_worker(&self.ns.worker("new"))
                .await
                .ok()
                .flatten()
                .is_none(),
            "a worker with {label} pool or gpu type must not be registered"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Registration and reads
// ---------------------------------------------------------------------------------------------

/// Registration stores every field; a new worker is entirely free; `get_worker` reads it back;
/// `remove_worker` reports whether it existed; removed workers read as `None`.
pub async fn check_register_and_get(repo: &dyn WorkerRepository) {
    let ns = Ns::new("register");
    let spec = WorkerSpec::new(ns.worker("a"), res(4000, 8192, 2))
        .with_pool(ns.pool("p"))
        .requiring_pool_selector()
        .with_priority(-7)
        .with_gpu_type("a100")
        .requiring_pool_selector()
        .preemptable();
    let w = register(repo, &spec).await;
    assert_eq!(
        w.spec(),
        spec,
        "register_worker must return the registered spec"
    );
    assert_eq!(w.free, spec.total, "a new worker must be entirely free");
    assert_eq!(
        get(repo, &spec.id).await,
        w,
        "get_worker must return what register_worker returned"
    );
    assert_consistent(repo, &spec.id, "after register").await;

    for status in [
        WorkerStatus::Draining,
        WorkerStatus::Disabled,
        WorkerStatus::Available,
    ] {
        let s = WorkerSpec::new(ns.worker(status.as_str()), res(1, 1, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_status(status)
            .with_priority(i32::MAX);
        let w = register(repo, &s).await;
        assert_eq!(w.spec(), s, "status {status} and priority must round-trip");
        assert_eq!(
            get(repo, &s.id).await.spec(),
            s,
            "status {status} must be stored"
        );
    }

    let ghost = ns.worker("ghost");
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "an unknown worker must read as None"
    );
    assert_eq!(
        repo.remove_worker(&spec.id).await.ok(),
        Some(true),
        "removing a worker must return true"
    );
    assert_eq!(
        repo.remove_worker(&spec.id).await.ok(),
        Some(false),
        "removing it again must return false"
    );
    assert_eq!(
        repo.get_worker(&spec.id).await.ok(),
        Some(None),
        "a removed worker must read as None"
    );
    let rest: Vec<String> = ["draining", "disabled", "available"]
        .iter()
        .map(|s| ns.worker(s))
        .collect();
    cleanup(repo, &rest).await;
}

// ---------------------------------------------------------------------------------------------
// Reserving
// ---------------------------------------------------------------------------------------------

/// A batch of several reservations on one worker commits them all, charges their sum and bumps
/// the version.
pub async fn check_reserve_one_worker(repo: &dyn WorkerRepository) {
    let ns = Ns::new("one-worker");
    let id = ns.worker("a");
    let total = res(4000, 8192, 0);
    let before = register(
        repo,
        &WorkerSpec::new(id.clone(), total)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
            }),
            "find_reservation must return the committed record"
        );
    }
    assert_consistent(repo, &id, "after reserve").await;
    cleanup(repo, &[id]).await;
}

/// A batch over many workers commits each, and results come back in input order (not sorted).
pub async fn check_reserve_many_workers_in_input_order(repo: &dyn WorkerRepository) {
    let ns = Ns::new("many-workers");
    let ids: Vec<String> = ["w0", "w1", "w2", "w3"]
        .iter()
        .map(|n| ns.worker(n))
        .collect();
    for id in &ids {
        register(
            repo,
            &WorkerSpec::new(id.clone(), res(2000, 2048, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
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
    cleanup(repo, &ids).await;
}

/// One worker's rejection (of any kind) does not block the others' commits in the same batch.
pub async fn check_rejection_does_not_block_other_workers(repo: &dyn WorkerRepository) {
    let ns = Ns::new("independent");
    let small = ns.worker("small");
    let ok1 = ns.worker("ok1");
    let ok2 = ns.worker("ok2");
    let drain = ns.worker("drain");
    let stale = ns.worker("stale");
    let ghost = ns.worker("ghost");
    let pool = ns.pool("p");
    register(
        repo,
        &WorkerSpec::new(small.clone(), res(100, 100, 0))
            .with_pool(pool.clone())
            .requiring_pool_selector(),
    )
    .await;
    for id in [&ok1, &ok2] {
        register(
            repo,
            &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
                .with_pool(pool.clone())
                .requiring_pool_selector(),
        )
        .await;
    }
    register(
        repo,
        &WorkerSpec::new(drain.clone(), res(1000, 1000, 0))
            .with_pool(pool.clone())
            .requiring_pool_selector()
            .with_status(WorkerStatus::Draining),
    )
    .await;
    let st = register(
        repo,
        &WorkerSpec::new(stale.clone(), res(1000, 1000, 0))
            .with_pool(pool.clone())
            .requiring_pool_selector(),
    )
    .await;
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
    cleanup(repo, &all).await;
}

/// Reserve then release: release reports the worker, the resources and a newer version, and
/// returns the capacity.
pub async fn check_reserve_then_release(repo: &dyn WorkerRepository) {
    let ns = Ns::new("release");
    let id = ns.worker("a");
    let total = res(2000, 2048, 2);
    register(
        repo,
        &WorkerSpec::new(id.clone(), total)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
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
    cleanup(repo, &[id]).await;
}

/// Capacity comes back exactly once, even when several callers release the same container at
/// the same time.
pub async fn check_release_returns_capacity_once(repo: &dyn WorkerRepository) {
    let ns = Ns::new("release-once");
    let id = ns.worker("a");
    let total = res(1000, 1000, 0);
    register(
        repo,
        &WorkerSpec::new(id.clone(), total)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
    cleanup(repo, &[id]).await;
}

/// One release batch spanning several workers, in interleaved order: every outcome names the
/// right worker and amount, each worker's reported versions exceed its version before, and its
/// final version is the newest one reported.
pub async fn check_release_across_workers(repo: &dyn WorkerRepository) {
    let ns = Ns::new("release-across");
    let ids: Vec<String> = (0..3).map(|i| ns.worker(&format!("{i}"))).collect();
    let total = res(1000, 1000, 0);
    for id in &ids {
        register(
            repo,
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
    cleanup(repo, &ids).await;
}

async fn insufficient(repo: &dyn WorkerRepository, kind: ResourceKind) {
    let ns = Ns::new(&format!("short-{kind}"));
    let id = ns.worker("a");
    register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 3))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
    .await;
    // Use part of the worker, so that "available" is neither the total nor zero.
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&ns.container("pre"), res(300, 300, 1)).with_gpu_type("a100")],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "pre-reservation",
    );
    let before = get(repo, &id).await;
    // In the batch, `fill` fits and lowers the running free capacity; `big` asks one more than
    // what is left of `kind` and fits in every other kind.
    let fill = res(100, 100, 1);
    let left = before
        .free
        .checked_sub(&fill)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut big = res(10, 10, 0);
    let want = left.get(kind) + 1;
    big = match kind {
        ResourceKind::Cpu => Resources {
            cpu_millicores: want,
            ..big
        },
        ResourceKind::Memory => Resources {
            memory_mib: want,
            ..big
        },
        ResourceKind::Gpu => Resources {
            gpu_count: want,
            ..big
        },
    };
    let (cf, cb) = (ns.container("fill"), ns.container("big"));
    let mut alone = big;
    alone = match kind {
        ResourceKind::Cpu => Resources {
            cpu_millicores: before.free.cpu_millicores + 1,
            ..alone
        },
        ResourceKind::Memory => Resources {
            memory_mib: before.free.memory_mib + 1,
            ..alone
        },
        ResourceKind::Gpu => Resources {
            gpu_count: before.free.gpu_count + 1,
            ..alone
        },
    };
    for mode in BOTH_MODES {
        let batch = cr(&id, vec![rr(&cb, alone).with_gpu_type("a100")]);
        let r = rejected(reserve1(repo, batch, mode).await, "alone too big");
        let ctx = format!("{kind} alone ({mode:?})");
        assert_insufficient(
            &r,
            &cb,
            kind,
            before.free.get(kind) + 1,
            before.free.get(kind),
            &ctx,
        );
    }
    let batch = cr(
        &id,
        vec![
            rr(&cf, fill).with_gpu_type("a100"),
            rr(&cb, big).with_gpu_type("a100"),
        ],
    );
    let r = rejected(
        reserve1(repo, batch, CommitMode::AllOrNothing).await,
        "after fill",
    );
    assert_insufficient(
        &r,
        &cb,
        kind,
        want,
        left.get(kind),
        &format!("{kind} after an earlier reservation in the same batch"),
    );
    assert_eq!(
        get(repo, &id).await,
        before,
        "a rejected worker must be unchanged"
    );
    assert_eq!(
        find(repo, &cf).await,
        None,
        "all-or-nothing: the fitting reservation must not commit"
    );
    assert_consistent(repo, &id, "after insufficient capacity").await;
    cleanup(repo, &[id]).await;
}

/// Not enough CPU: `InsufficientCapacity` names cpu, the amount requested and the amount
/// available at that point of the batch.
pub async fn check_insufficient_cpu(repo: &dyn WorkerRepository) {
    insufficient(repo, ResourceKind::Cpu).await;
}

/// Not enough memory: `InsufficientCapacity` names memory, requested and available.
pub async fn check_insufficient_memory(repo: &dyn WorkerRepository) {
    insufficient(repo, ResourceKind::Memory).await;
}

/// Not enough GPUs: `InsufficientCapacity` names gpu, requested and available.
pub async fn check_insufficient_gpu(repo: &dyn WorkerRepository) {
    insufficient(repo, ResourceKind::Gpu).await;
}

/// A reservation naming a GPU type the worker does not have is rejected with
/// `GpuTypeMismatch` (also on a worker without GPUs); a matching type commits and is recorded.
pub async fn check_gpu_type_mismatch(repo: &dyn WorkerRepository) {
    let ns = Ns::new("gpu-type");
    let gw = ns.worker("gpu");
    let cw = ns.worker("cpu");
    register(
        repo,
        &WorkerSpec::new(gw.clone(), res(4000, 4096, 2))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
    .await;
    register(
        repo,
        &WorkerSpec::new(cw.clone(), res(4000, 4096, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let c = ns.container("c");
    for mode in BOTH_MODES {
        let r = rejected(
            reserve1(
                repo,
                cr(&gw, vec![rr(&c, res(100, 100, 1)).with_gpu_type("h100")]),
                mode,
            )
            .await,
            "h100 on a100",
        );
        assert_eq!(
            r,
            Rejection::GpuTypeMismatch {
                container_id: c.clone(),
                requested: "h100".into(),
                actual: Some("a100".into())
            },
            "GpuTypeMismatch must name the container, the requested and the actual type ({mode:?})"
        );
        // The type check comes before the capacity check: this would not fit either.
        let r = rejected(
            reserve1(
                repo,
                cr(&cw, vec![rr(&c, res(100, 100, 1)).with_gpu_type("a100")]),
                mode,
            )
            .await,
            "a100 on cpu",
        );
        assert_eq!(
            r,
            Rejection::GpuTypeMismatch {
                container_id: c.clone(),
                requested: "a100".into(),
                actual: None
            },
            "a typed GPU reservation on a worker without GPUs is a type mismatch ({mode:?})"
        );
    }
    assert_eq!(find(repo, &c).await, None);
    committed(
        reserve1(
            repo,
            cr(&gw, vec![rr(&c, res(100, 100, 1)).with_gpu_type("a100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "a100 on a100",
    );
    let rec = find(repo, &c).await;
    assert_eq!(
        rec.and_then(|r| r.gpu_type),
        Some("a100".to_owned()),
        "the record must keep the GPU type"
    );
    for id in [&gw, &cw] {
        assert_consistent(repo, id, "after GPU type checks").await;
    }
    cleanup(repo, &[gw, cw]).await;
}

/// GPU counts never wrap: asking for more GPUs than are free is rejected with available 0,
/// free stays 0 (not `u64::MAX`), and releases never lift free above total.
pub async fn check_gpu_count_never_wraps(repo: &dyn WorkerRepository) {
    let ns = Ns::new("gpu-wrap");
    let gw = ns.worker("gpu");
    let cw = ns.worker("cpu");
    let gtotal = res(4000, 4096, 2);
    register(
        repo,
        &WorkerSpec::new(gw.clone(), gtotal)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
    .await;
    register(
        repo,
        &WorkerSpec::new(cw.clone(), res(4000, 4096, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let (g1, g2, g3) = (ns.container("g1"), ns.container("g2"), ns.container("g3"));
    committed(
        reserve1(
            repo,
            cr(&gw, vec![rr(&g1, res(1, 1, 2)).with_gpu_type("a100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "all GPUs",
    );
    let r = rejected(
        reserve1(
            repo,
            cr(&gw, vec![rr(&g2, res(1, 1, 1)).with_gpu_type("a100")]),
            CommitMode::Partial,
        )
        .await,
        "one more GPU",
    );
    assert_insufficient(&r, &g2, ResourceKind::Gpu, 1, 0, "no GPU left");
    assert_eq!(
        get(repo, &gw).await.free.gpu_count,
        0,
        "free GPUs must stay 0, never wrap"
    );
    // An untyped GPU request on a worker without GPUs: insufficient, never a wrap.
    let r = rejected(
        reserve1(
            repo,
            cr(&cw, vec![rr(&g3, res(1, 1, 1))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "GPU on cpu worker",
    );
    assert_insufficient(&r, &g3, ResourceKind::Gpu, 1, 0, "worker without GPUs");
    assert_eq!(
        get(repo, &cw).await.free.gpu_count,
        0,
        "a CPU worker's free GPUs must stay 0"
    );
    for _ in 0..2 {
        release(repo, std::slice::from_ref(&g1)).await;
        assert_eq!(
            get(repo, &gw).await.free,
            gtotal,
            "free must never exceed total"
        );
    }
    for id in [&gw, &cw] {
        assert_consistent(repo, id, "after GPU exhaustion").await;
    }
    cleanup(repo, &[gw, cw]).await;
}

/// Empty batches are fine: `reserve_batch(&[])` and `release_batch(&[])` return `Ok(vec![])`.
pub async fn check_empty_batches(repo: &dyn WorkerRepository) {
    for mode in BOTH_MODES {
        let out = repo.reserve_batch(&[], mode).await;
        assert!(
            matches!(out, Ok(ref v) if v.is_empty()),
            "empty reserve_batch ({mode:?}) must be Ok(empty), got {out:?}"
        );
    }
    let out = repo.release_batch(&[]).await;
    assert!(
        matches!(out, Ok(ref v) if v.is_empty()),
        "empty release_batch must be Ok(empty), got {out:?}"
    );
}

/// Unknown workers: reserving is rejected with `UnknownWorker` (even with an expected version),
/// ledger reads fail with `RepoError::UnknownWorker`, removing returns false.
pub async fn check_unknown_worker(repo: &dyn WorkerRepository) {
    let ns = Ns::new("unknown");
    let ghost = ns.worker("ghost");
    let c = ns.container("c");
    for mode in BOTH_MODES {
        for expect in [None, Some(1), Some(0)] {
            let mut b = cr(&ghost, vec![rr(&c, res(1, 1, 0))]);
            b.expected_version = expect;
            assert_eq!(
                rejected(reserve1(repo, b, mode).await, "ghost"),
                Rejection::UnknownWorker,
                "({mode:?}, {expect:?})"
            );
        }
    }
    assert_eq!(
        find(repo, &c).await,
        None,
        "nothing may be held after UnknownWorker"
    );
    assert!(
        matches!(
            repo.list_reservations(&ghost).await,
            Err(RepoError::UnknownWorker(_))
        ),
        "list_reservations of an unknown worker"
    );
    assert!(
        matches!(repo.audit(&ghost).await, Err(RepoError::UnknownWorker(_))),
        "audit of an unknown worker"
    );
    assert!(
        matches!(
            repo.reconcile(&ghost).await,
            Err(RepoError::UnknownWorker(_))
        ),
        "reconcile of an unknown worker"
    );
    assert_eq!(
        repo.remove_worker(&ghost).await.ok(),
        Some(false),
        "remove_worker of an unknown worker"
    );
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "get_worker of an unknown worker"
    );
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "reads must not create the worker"
    );
}

/// `expected_version`: a mismatch is rejected with `VersionConflict { expected, current }` and
/// changes nothing; a match commits and bumps the version.
pub async fn check_version_conflict(repo: &dyn WorkerRepository) {
    let ns = Ns::new("version");
    let id = ns.worker("a");
    let w0 = register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let v0 = w0.resource_version;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let mut wrong = vec![v0 + 1, v0 + 1000, u64::MAX];
    if v0 > 0 {
        wrong.push(v0 - 1);
    }
    for mode in BOTH_MODES {
        for &e in &wrong {
            let r = rejected(
                reserve1(
                    repo,
                    cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(e),
                    mode,
                )
                .await,
                "wrong version",
            );
            assert_eq!(
                r,
                Rejection::VersionConflict {
                    expected: e,
                    current: v0
                },
                "({mode:?})"
            );
        }
    }
    assert_eq!(
        get(repo, &id).await,
        w0,
        "a version conflict must change nothing"
    );
    let c = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(v0),
            CommitMode::AllOrNothing,
        )
        .await,
        "right version",
    );
    let v1 = c.new_version;
    assert!(v1 > v0, "a commit must bump the version");
    let r = rejected(
        reserve1(
            repo,
            cr(&id, vec![rr(&c2, res(1, 1, 0))]).expecting(v0),
            CommitMode::Partial,
        )
        .await,
        "old version",
    );
    assert_eq!(
        r,
        Rejection::VersionConflict {
            expected: v0,
            current: v1
        },
        "the old version is stale now"
    );
    // Idempotent re-reserve at the current version: accepted, version unchanged.
    let c = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(v1),
            CommitMode::AllOrNothing,
        )
        .await,
        "re-reserve",
    );
    assert_eq!(
        c.new_version, v1,
        "an idempotent re-reserve must not bump the version"
    );
    assert_consistent(repo, &id, "after version checks").await;
    cleanup(repo, &[id]).await;
}

/// Draining and disabled workers take no new reservations (`WorkerUnavailable`), keep their
/// reservations, and still release them.
pub async fn check_worker_unavailable(repo: &dyn WorkerRepository) {
    let ns = Ns::new("unavailable");
    let id = ns.worker("a");
    let spec = WorkerSpec::new(id.clone(), res(1000, 1000, 0))
        .with_pool(ns.pool("p"))
        .requiring_pool_selector();
    register(repo, &spec).await;
    let (c1, c2, c3) = (ns.container("c1"), ns.container("c2"), ns.container("c3"));
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&c1, res(100, 100, 0)), rr(&c3, res(100, 100, 0))],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve while available",
    );
    for status in [WorkerStatus::Draining, WorkerStatus::Disabled] {
        let w = register(repo, &spec.clone().with_status(status)).await;
        assert_eq!(
            w.free,
            res(800, 800, 0),
            "a status change keeps reservations"
        );
        for mode in BOTH_MODES {
            let r = rejected(
                reserve1(repo, cr(&id, vec![rr(&c2, res(1, 1, 0))]), mode).await,
                "new on unavailable",
            );
            assert_eq!(r, Rejection::WorkerUnavailable { status }, "({mode:?})");
            // The availability check precedes the per-reservation checks, even for a held one.
            let r = rejected(
                reserve1(repo, cr(&id, vec![rr(&c1, res(100, 100, 0))]), mode).await,
                "held on unavailable",
            );
            assert_eq!(
                r,
                Rejection::WorkerUnavailable { status },
                "re-reserve on {status} ({mode:?})"
            );
        }
        assert_eq!(
            get(repo, &id).await,
            w,
            "rejections on a {status} worker change nothing"
        );
        assert_eq!(
            held_on(repo, &c1).await,
            Some(id.clone()),
            "reservations stay on a {status} worker"
        );
    }
    let out = release(repo, std::slice::from_ref(&c1)).await;
    assert!(
        out[0].released.is_some(),
        "a disabled worker's reservation can be released"
    );
    assert_eq!(get(repo, &id).await.free, res(900, 900, 0));
    register(repo, &spec).await;
    committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c2, res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "available again",
    );
    assert_consistent(repo, &id, "after status changes").await;
    cleanup(repo, &[id]).await;
}

/// The documented order of checks: unknown worker, then version, then availability, then per
/// reservation: held elsewhere, GPU type, capacity.
pub async fn check_rejection_order(repo: &dyn WorkerRepository) {
    let ns = Ns::new("order");
    let a = ns.worker("a");
    let b = ns.worker("b");
    let wa = register(
        repo,
        &WorkerSpec::new(a.clone(), res(1000, 1000, 1))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
    .await;
    let c = ns.container("c");
    committed(
        reserve1(
            repo,
            cr(&a, vec![rr(&c, res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "hold c on a",
    );
    let wb = register(
        repo,
        &WorkerSpec::new(b.clone(), res(1000, 1000, 1))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100")
            .with_status(WorkerStatus::Draining),
    )
    .await;
    // version before availability
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&ns.container("x"), res(1, 1, 0))]).expecting(wb.resource_version + 1),
            CommitMode::AllOrNothing,
        )
        .await,
        "draining+stale",
    );
    assert!(
        matches!(r, Rejection::VersionConflict { .. }),
        "a version conflict is reported before unavailability, got {r:?}"
    );
    register(
        repo,
        &WorkerSpec::new(b.clone(), res(1000, 1000, 1))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
    .await;
    // held elsewhere before GPU type and capacity
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&c, res(5000, 1, 3)).with_gpu_type("h100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "held+mismatch+big",
    );
    assert_eq!(
        r,
        Rejection::AlreadyReserved {
            container_id: c.clone(),
            worker_id: a.clone()
        },
        "AlreadyReserved comes first"
    );
    // GPU type before capacity
    let x = ns.container("x");
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&x, res(5000, 1, 3)).with_gpu_type("h100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "mismatch+big",
    );
    assert!(
        matches!(r, Rejection::GpuTypeMismatch { .. }),
        "GpuTypeMismatch comes before capacity, got {r:?}"
    );
    let _ = wa;
    for id in [&a, &b] {
        assert_consistent(repo, id, "after order checks").await;
    }
    cleanup(repo, &[a, b]).await;
}

/// `AllOrNothing`: one reservation that does not fit rejects the worker's whole part.
pub async fn check_all_or_nothing(repo: &dyn WorkerRepository) {
    let ns = Ns::new("aon");
    let id = ns.worker("a");
    let w = register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let names = ["a", "b", "c", "d"];
    let amounts = [300, 300, 600, 100];
    let rs: Vec<_> = names
        .iter()
        .zip(amounts)
        .map(|(n, a)| rr(&ns.container(n), res(a, 10, 0)))
        .collect();
    let r = rejected(
        reserve1(repo, cr(&id, rs), CommitMode::AllOrNothing).await,
        "third does not fit",
    );
    assert_insufficient(
        &r,
        &ns.container("c"),
        ResourceKind::Cpu,
        600,
        400,
        "all-or-nothing",
    );
    assert_eq!(
        get(repo, &id).await,
        w,
        "all-or-nothing: nothing may change"
    );
    for n in names {
        assert_eq!(
            find(repo, &ns.container(n)).await,
            None,
            "all-or-nothing: {n} must not be held"
        );
    }
    assert_consistent(repo, &id, "after all-or-nothing").await;
    cleanup(repo, &[id]).await;
}

/// `Partial`: the longest fitting prefix commits; `accepted` counts it and `remainder` says why
/// the rest did not. Later reservations do not commit even if they would fit.
pub async fn check_partial_longest_prefix(repo: &dyn WorkerRepository) {
    let ns = Ns::new("partial");
    let id = ns.worker("a");
    let w = register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let names = ["a", "b", "c", "d"];
    let amounts = [300, 300, 600, 100];
    let rs: Vec<_> = names
        .iter()
        .zip(amounts)
        .map(|(n, a)| rr(&ns.container(n), res(a, 10, 0)))
        .collect();
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "prefix of two",
    );
    assert_eq!(
        c.accepted, 2,
        "accepted must be the length of the fitting prefix"
    );
    let rem = c
        .remainder
        .unwrap_or_else(|| panic!("remainder must say why c did not commit"));
    assert_insufficient(
        &rem,
        &ns.container("c"),
        ResourceKind::Cpu,
        600,
        400,
        "partial remainder",
    );
    assert_eq!(c.free, res(400, 980, 0), "Committed.free after the prefix");
    assert!(
        c.new_version > w.resource_version,
        "the prefix commit bumps the version"
    );
    for (n, held) in [("a", true), ("b", true), ("c", false), ("d", false)] {
        assert_eq!(
            held_on(repo, &ns.container(n)).await.is_some(),
            held,
            "partial: is {n} held?"
        );
    }
    // All fit: everything commits and nothing remains.
    let rs = vec![
        rr(&ns.container("e"), res(100, 10, 0)),
        rr(&ns.container("f"), res(100, 10, 0)),
    ];
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "all fit",
    );
    assert_eq!((c.accepted, c.remainder), (2, None));
    // A prefix of already-held containers: accepted, but nothing charged, version unchanged.
    let v = get(repo, &id).await.resource_version;
    let rs = vec![
        rr(&ns.container("a"), res(300, 10, 0)),
        rr(&ns.container("g"), res(5000, 10, 0)),
    ];
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "held prefix",
    );
    assert_eq!(
        c.accepted, 1,
        "an already-held container counts as accepted"
    );
    assert!(
        matches!(c.remainder, Some(Rejection::InsufficientCapacity { .. })),
        "remainder: {:?}",
        c.remainder
    );
    assert_eq!(c.new_version, v, "nothing new charged: version unchanged");
    assert_eq!(
        get(repo, &id).await.free,
        res(200, 960, 0),
        "nothing new charged: free unchanged"
    );
    assert_consistent(repo, &id, "after partial commits").await;
    cleanup(repo, &[id]).await;
}

/// `Partial`: when the very first reservation is rejected, the worker is rejected.
pub async fn check_partial_first_rejected_rejects_worker(repo: &dyn WorkerRepository) {
    let ns = Ns::new("partial-first");
    let id = ns.worker("a");
    let w = register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let (big, small) = (ns.container("big"), ns.container("small"));
    let r = rejected(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&big, res(2000, 1, 0)), rr(&small, res(1, 1, 0))],
            ),
            CommitMode::Partial,
        )
        .await,
        "empty prefix",
    );
    assert_insufficient(&r, &big, ResourceKind::Cpu, 2000, 1000, "empty prefix");
    assert_eq!(
        get(repo, &id).await,
        w,
        "an empty prefix must change nothing"
    );
    assert_eq!(
        find(repo, &small).await,
        None,
        "reservations after the rejected one never commit"
    );
    cleanup(repo, &[id]).await;
}

/// Re-reserving a container on the worker that holds it is accepted with no second charge and
/// no version bump; mixed with new ones, only the new ones are charged.
pub async fn check_idempotent_reserve(repo: &dyn WorkerRepository) {
    let ns = Ns::new("idem-reserve");
    let id = ns.worker("a");
    register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let first = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(300, 300, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "first",
    );
    for mode in BOTH_MODES {
        let again = committed(
            reserve1(repo, cr(&id, vec![rr(&c1, res(300, 300, 0))]), mode).await,
            "again",
        );
        assert_eq!(again.accepted, 1, "a re-reserve is accepted ({mode:?})");
        assert_eq!(again.remainder, None);
        assert_eq!(
            again.new_version, first.new_version,
            "a re-reserve must not bump the version ({mode:?})"
        );
        assert_eq!(
            again.free, first.free,
            "a re-reserve must not charge again ({mode:?})"
        );
    }
    let mixed = committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&c1, res(300, 300, 0)), rr(&c2, res(200, 200, 0))],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "mixed",
    );
    assert_eq!(mixed.accepted, 2);
    assert_eq!(
        mixed.free,
        res(500, 500, 0),
        "only the new reservation is charged"
    );
    assert!(mixed.new_version > first.new_version);
    assert_eq!(
        ledger(repo, &id).await.len(),
        2,
        "the ledger holds each container once"
    );
    assert_consistent(repo, &id, "after re-reserves").await;
    cleanup(repo, &[id]).await;
}

/// Releasing is idempotent: a second release returns `None`, unknown containers return `None`,
/// outcomes are in input order, and free never exceeds total.
pub async fn check_idempotent_release(repo: &dyn WorkerRepository) {
    let ns = Ns::new("idem-release");
    let id = ns.worker("a");
    let total = res(1000, 1000, 0);
    register(
        repo,
        &WorkerSpec::new(id.clone(), total)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
    cleanup(repo, &[id]).await;
}

/// A container held on worker A cannot be reserved on worker B: `AlreadyReserved` names A.
pub async fn check_already_reserved_elsewhere(repo: &dyn WorkerRepository) {
    let ns = Ns::new("elsewhere");
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for id in [&a, &b] {
        register(
            repo,
            &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
    }
    let c = ns.container("c");
    committed(
        reserve1(
            repo,
            cr(&a, vec![rr(&c, res(100, 100, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "on a",
    );
    let wb = get(repo, &b).await;
    let want = Rejection::AlreadyReserved {
        container_id: c.clone(),
        worker_id: a.clone(),
    };
    for mode in BOTH_MODES {
        let r = rejected(
            reserve1(repo, cr(&b, vec![rr(&c, res(100, 100, 0))]), mode).await,
            "on b",
        );
        assert_eq!(r, want, "AlreadyReserved must name the holder ({mode:?})");
    }
    assert_eq!(get(repo, &b).await, wb, "b must be unchanged");
    let (n1, n2) = (ns.container("n1"), ns.container("n2"));
    let p = committed(
        reserve1(
            repo,
            cr(
                &b,
                vec![
                    rr(&n1, res(1, 1, 0)),
                    rr(&c, res(100, 100, 0)),
                    rr(&n2, res(1, 1, 0)),
                ],
            ),
            CommitMode::Partial,
        )
        .await,
        "partial around c",
    );
    assert_eq!(
        (p.accepted, p.remainder),
        (1, Some(want)),
        "partial stops at the container held elsewhere"
    );
    assert_eq!(held_on(repo, &n1).await, Some(b.clone()));
    assert_eq!(held_on(repo, &n2).await, None);
    assert_eq!(held_on(repo, &c).await, Some(a.clone()), "c stays on a");
    assert!(
        ledger(repo, &b).await.iter().all(|r| r.container_id != c),
        "c must not be in b's ledger"
    );
    for id in [&a, &b] {
        assert_consistent(repo, id, "after cross-worker attempts").await;
    }
    cleanup(repo, &[a, b]).await;
}

/// Re-registration keeps the capacity in use (`free = new total − reserved`), keeps the ledger,
/// updates the other fields and bumps the version, every time.
pub async fn check_reregister_keeps_used_capacity(repo: &dyn WorkerRepository) {
    let ns = Ns::new("reregister");
    let id = ns.worker("a");
    let spec = WorkerSpec::new(id.clone(), res(4000, 8192, 2))
        .with_pool(ns.pool("p"))
        .requiring_pool_selector()
        .with_gpu_type("a100");
    register(repo, &spec).await;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let c = committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(1000, 1024, 1)).with_gpu_type("a100"),
                    rr(&c2, res(500, 512, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let led = ledger(repo, &id).await;
    let spec2 = WorkerSpec::new(id.clone(), res(8000, 4096, 1))
        .with_pool(ns.pool("q"))
        .requiring_pool_selector()
        .with_gpu_type("a100")
        .with_priority(3)
        .preemptable();
    let w2 = register(repo, &spec2).await;
    assert_eq!(w2.spec(), spec2, "re-registration must store the new spec");
    assert_eq!(
        w2.free,
        res(8000 - 1500, 4096 - 1536, 0),
        "free = new total − reserved"
    );
    assert!(
        w2.resource_version > c.new_version,
        "re-registration must bump the version"
    );
    assert_eq!(get(repo, &id).await, w2);
    assert_eq!(
        ledger(repo, &id).await,
        led,
        "re-registration must keep the ledger"
    );
    let w3 = register(repo, &spec2).await;
    assert!(
        w3.resource_version > w2.resource_version,
        "even an identical re-registration bumps the version"
    );
    assert_eq!(w3.free, w2.free);
    let exact = WorkerSpec {
        total: res(1500, 1536, 1),
        ..spec2.clone()
    };
    let w4 = register(repo, &exact).await;
    assert_eq!(
        w4.free,
        Resources::ZERO,
        "a total exactly equal to what is reserved is allowed"
    );
    let pools = repo
        .list_workers(Some(&ns.pool("q")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pools.iter().map(|w| &w.id).collect::<Vec<_>>(),
        vec![&id],
        "the worker moved to pool q"
    );
    let old = repo
        .list_workers(Some(&ns.pool("p")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(old.is_empty(), "the worker must have left pool p: {old:?}");
    assert_consistent(repo, &id, "after re-registration").await;
    cleanup(repo, &[id]).await;
}

/// Re-registration with a total below what is reserved fails with `TotalBelowReserved` naming
/// the resource, and changes nothing.
pub async fn check_reregister_below_reserved(repo: &dyn WorkerRepository) {
    let ns = Ns::new("below-reserved");
    let id = ns.worker("a");
    let spec = WorkerSpec::new(id.clone(), res(4000, 8192, 2))
        .with_pool(ns.pool("p"))
        .requiring_pool_selector()
        .with_gpu_type("a100");
    register(repo, &spec).await;
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&ns.container("c1"), res(1000, 1024, 1)).with_gpu_type("a100"),
                    rr(&ns.container("c2"), res(500, 512, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let before = snapshot(
        repo,
        std::slice::from_ref(&id),
        &[ns.container("c1"), ns.container("c2")],
    )
    .await;
    let cases = [
        (res(1000, 8192, 2), ResourceKind::Cpu, 1000, 1500),
        (res(4000, 1000, 2), ResourceKind::Memory, 1000, 1536),
        (res(4000, 8192, 0), ResourceKind::Gpu, 0, 1),
    ];
    for (total, kind, t, r) in cases {
        let bad = WorkerSpec {
            total,
            pool: ns.pool("elsewhere"),
            priority: 9,
            ..spec.clone()
        };
        match repo.register_worker(&bad).await {
            Err(RepoError::TotalBelowReserved {
                resource,
                total,
                reserved,
            }) => {
                assert_eq!(
                    (resource, total, reserved),
                    (kind, t, r),
                    "TotalBelowReserved must name the resource and amounts"
                );
            }
            other => panic!(
                "new total {total} below reserved: expected TotalBelowReserved, got {other:?}"
            ),
        }
        assert_eq!(
            snapshot(
                repo,
                std::slice::from_ref(&id),
                &[ns.container("c1"), ns.container("c2")]
            )
            .await,
            before,
            "a failed re-registration must change nothing"
        );
    }
    assert_consistent(repo, &id, "after failed re-registrations").await;
    cleanup(repo, &[id]).await;
}

/// Remove then re-register: the old containers are gone, a late release of one is a no-op that
/// does not over-credit the new worker, and the new version is greater than any before removal.
pub async fn check_remove_then_reregister_late_release(repo: &dyn WorkerRepository) {
    let ns = Ns::new("remove");
    let id = ns.worker("a");
    let total = res(1000, 1000, 1);
    let spec = WorkerSpec::new(id.clone(), total)
        .with_pool(ns.pool("p"))
        .requiring_pool_selector()
        .with_gpu_type("a100");
    register(repo, &spec).await;
    let (c1, c2, c3) = (ns.container("c1"), ns.container("c2"), ns.container("c3"));
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(400, 400, 1)).with_gpu_type("a100"),
                    rr(&c2, res(100, 100, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    release(repo, std::slice::from_ref(&c2)).await;
    let last = get(repo, &id).await.resource_version;
    assert_eq!(repo.remove_worker(&id).await.ok(), Some(true));
    assert_eq!(
        find(repo, &c1).await,
        None,
        "a removed worker's containers are held nowhere"
    );
    let w = register(repo, &spec).await;
    assert!(
        w.resource_version > last,
        "versions never repeat: {} after removal must exceed {last}",
        w.resource_version
    );
    assert_eq!(w.free, total, "a re-registered worker starts empty");
    assert!(ledger(repo, &id).await.is_empty(), "the old ledger is gone");
    let out = release(repo, std::slice::from_ref(&c1)).await;
    assert_eq!(
        out[0].released, None,
        "a late release of a removed worker's container is a no-op"
    );
    let w2 = get(repo, &id).await;
    assert_eq!(w2.free, total, "a late release must not over-credit");
    assert_eq!(
        w2.resource_version, w.resource_version,
        "a no-op release must not bump the version"
    );
    // The old container id is free to use again.
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(400, 400, 1)).with_gpu_type("a100"),
                    rr(&c3, res(1, 1, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reuse",
    );
    assert_consistent(repo, &id, "after remove and re-register").await;
    cleanup(repo, std::slice::from_ref(&id)).await;
    assert_eq!(find(repo, &c1).await, None);
}

/// `find_reservations` answers in input order, `None` for what is not held, agrees with
/// `find_reservation`, and rejects bad input (duplicates, empty ids) like `release_batch`.
pub async fn check_find_reservations_batch(repo: &dyn WorkerRepository) {
    let ns = Ns::awkward("finds");
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for w in [&a, &b] {
        register(
            repo,
            &WorkerSpec::new(w.clone(), res(1000, 1000, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
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
    cleanup(repo, &[a, b]).await;
}

/// `find_reservation` returns the full record while held, `None` before and after.
pub async fn check_find_reservation(repo: &dyn WorkerRepository) {
    let ns = Ns::new("find");
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    register(
        repo,
        &WorkerSpec::new(a.clone(), res(1000, 1000, 2))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("l4"),
    )
    .await;
    register(
        repo,
        &WorkerSpec::new(b.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
            gpu_type: Some("l4".into())
        })
    );
    assert_eq!(
        find(repo, &cb).await,
        Some(ReservationRecord {
            worker_id: b.clone(),
            container_id: cb.clone(),
            resources: res(30, 40, 0),
            gpu_type: None
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
    cleanup(repo, &[a, b]).await;
    assert_eq!(find(repo, &cb).await, None, "removed worker: not found");
}

/// `list_reservations` returns the ledger ordered by container id (byte order, like Rust's
/// `str` ordering), with full records; an empty worker has an empty ledger.
pub async fn check_list_reservations_ordered(repo: &dyn WorkerRepository) {
    let ns = Ns::new("ledger-order");
    let id = ns.worker("a");
    register(
        repo,
        &WorkerSpec::new(id.clone(), res(100_000, 100_000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
    cleanup(repo, &[id]).await;
}

/// `list_workers`: per pool, exactly that pool's workers ordered by id (byte order); without a
/// pool, every worker, still ordered and without duplicates.
pub async fn check_list_workers(repo: &dyn WorkerRepository) {
    let ns = Ns::new("list");
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
        let w = register(
            repo,
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
    let ids: Vec<String> = mine.keys().cloned().collect();
    cleanup(repo, &ids).await;
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
    let ns = Ns::new("audit");
    let id = ns.worker("a");
    let total = res(1000, 2000, 2);
    let w = register(
        repo,
        &WorkerSpec::new(id.clone(), total)
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_gpu_type("a100"),
    )
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
    cleanup(repo, &[id]).await;
}

/// Ids with awkward characters (`{`, `}`, `:`, spaces, quotes, glob and LIKE wildcards, SQL,
/// non-ASCII, ids that extend other ids) work everywhere.
pub async fn check_awkward_ids(repo: &dyn WorkerRepository) {
    let ns = Ns::awkward("awkward");
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
        let w = register(
            repo,
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
    cleanup(repo, &ids).await;
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
    let ns = Ns::new("boundary");
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
    let w = register(
        repo,
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
    cleanup(repo, &[id]).await;
}

/// A batch of exactly `MAX_BATCH` reservations is accepted, and so is a release of
/// `MAX_BATCH` ids.
pub async fn check_max_batch_accepted(repo: &dyn WorkerRepository) {
    let ns = Ns::new("max-batch");
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for id in [&a, &b] {
        register(
            repo,
            &WorkerSpec::new(id.clone(), res(MAX_AMOUNT, MAX_AMOUNT, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
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
    cleanup(repo, &[a, b]).await;
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// A reservation of zero resources is `InvalidInput`, and the whole batch changes nothing.
pub async fn check_invalid_zero_resources(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "zero").await;
    let zero = rr(&f.fresh[2], Resources::ZERO);
    f.assert_batches_rejected(
        repo,
        &[
            ("zero resources alone", vec![cr(&f.w, vec![zero.clone()])]),
            (
                "zero resources after valid parts",
                vec![cr(&f.w, vec![f.ok(0)]), cr(&f.w2, vec![f.ok(1), zero])],
            ),
        ],
    )
    .await;
}

/// Amounts above `MAX_AMOUNT` (and `u64::MAX`) in any resource are `InvalidInput`, in
/// reservations and in registrations, and change nothing.
pub async fn check_invalid_amounts_too_large(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "too-large").await;
    let mut batches = Vec::new();
    let mut specs = Vec::new();
    for v in [MAX_AMOUNT + 1, u64::MAX] {
        for k in ResourceKind::ALL {
            let mut r = res(1, 1, 0);
            match k {
                ResourceKind::Cpu => r.cpu_millicores = v,
                ResourceKind::Memory => r.memory_mib = v,
                ResourceKind::Gpu => r.gpu_count = v,
            }
            let label = format!("{k} = {v}");
            batches.push((
                label.clone(),
                vec![
                    cr(&f.w, vec![f.ok(0)]),
                    cr(&f.w2, vec![f.ok(1), rr(&f.fresh[2], r)]),
                ],
            ));
            specs.push((
                label.clone(),
                WorkerSpec::new(f.ns.worker("new"), r)
                    .with_pool(f.ns.pool("p"))
                    .requiring_pool_selector(),
            ));
            specs.push((
                format!("{label} on re-registration"),
                WorkerSpec::new(f.w.clone(), r)
                    .with_pool(f.ns.pool("p"))
                    .requiring_pool_selector(),
            ));
        }
    }
    let before = f.snapshot(repo).await;
    for (what, spec) in &specs {
        assert_invalid(
            repo.register_worker(spec).await,
            &format!("register_worker with {what}"),
        );
    }
    assert_eq!(
        repo.get_worker(&f.ns.worker("new")).await.ok(),
        Some(None),
        "no worker may be created"
    );
    assert_eq!(
        f.snapshot(repo).await,
        before,
        "oversized registrations must change nothing"
    );
    let batches: Vec<(&str, Vec<CapacityReservation>)> = batches
        .iter()
        .map(|(l, b)| (l.as_str(), b.clone()))
        .collect();
    f.assert_batches_rejected(repo, &batches).await;
}

/// Empty ids (worker, container, pool, GPU type) are `InvalidInput` in every method.
pub async fn check_invalid_empty_ids(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "empty-id").await;
    f.assert_bad_id_rejected(repo, "", "empty").await;
    f.finish(repo).await;
}

/// Ids longer than `MAX_ID_BYTES` (one byte over, and 10 KB) are `InvalidInput` everywhere.
pub async fn check_invalid_long_ids(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "long-id").await;
    let mut over = f.ns.worker("over");
    while over.len() <= MAX_ID_BYTES {
        over.push('x');
    }
    f.assert_bad_id_rejected(repo, &over, "MAX_ID_BYTES+1")
        .await;
    f.assert_bad_id_rejected(
        repo,
        &format!("{}{}", f.ns.prefix(), "k".repeat(10 * 1024)),
        "10 KB",
    )
    .await;
    f.finish(repo).await;
}

/// Ids with control characters (NUL, newline, tab, escape, DEL, C1) are `InvalidInput`.
pub async fn check_invalid_control_characters(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "control").await;
    for (label, ch) in [
        ("NUL", "\0"),
        ("newline", "\n"),
        ("CR", "\r"),
        ("tab", "\t"),
        ("ESC", "\u{1b}"),
        ("DEL", "\u{7f}"),
        ("C1", "\u{85}"),
    ] {
        let bad = format!("{}ctl{ch}x", f.ns.prefix());
        f.assert_bad_id_rejected(repo, &bad, label).await;
    }
    f.finish(repo).await;
}

/// The same container twice in one batch (on one worker, or on two) is `InvalidInput`, even
/// when it is already held.
pub async fn check_invalid_duplicate_container(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "dup-container").await;
    let dup = |c: &str| rr(c, res(5, 5, 0));
    f.assert_batches_rejected(
        repo,
        &[
            (
                "same container twice on one worker",
                vec![cr(&f.w, vec![f.ok(0), dup(&f.fresh[1]), dup(&f.fresh[1])])],
            ),
            (
                "same container on two workers",
                vec![
                    cr(&f.w, vec![f.ok(0), dup(&f.fresh[1])]),
                    cr(&f.w2, vec![dup(&f.fresh[1])]),
                ],
            ),
            (
                "held container twice",
                vec![cr(&f.w, vec![f.ok(0), dup(&f.held), dup(&f.held)])],
            ),
        ],
    )
    .await;
}

/// The same worker twice in one batch is `InvalidInput`.
pub async fn check_invalid_duplicate_worker(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "dup-worker").await;
    let v = get(repo, &f.w).await.resource_version;
    f.assert_batches_rejected(
        repo,
        &[
            (
                "same worker twice",
                vec![
                    cr(&f.w, vec![f.ok(0)]),
                    cr(&f.w2, vec![f.ok(2)]),
                    cr(&f.w, vec![f.ok(1)]),
                ],
            ),
            (
                "same worker twice with versions",
                vec![
                    cr(&f.w, vec![f.ok(0)]).expecting(v),
                    cr(&f.w, vec![f.ok(1)]).expecting(v),
                ],
            ),
        ],
    )
    .await;
}

/// A worker with no reservations in a batch is `InvalidInput`.
pub async fn check_invalid_empty_reservation_list(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "empty-list").await;
    f.assert_batches_rejected(
        repo,
        &[(
            "worker with no reservations",
            vec![cr(&f.w, vec![f.ok(0)]), cr(&f.w2, vec![])],
        )],
    )
    .await;
}

/// Batches above `MAX_BATCH` (100,000 reservations, or `MAX_BATCH + 1` over two workers, or
/// releases of that many ids) are `InvalidInput` and change nothing.
pub async fn check_invalid_oversized_batch(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "oversized").await;
    let mk = |n: usize| -> Vec<ResourceReservation> {
        (0..n)
            .map(|i| rr(&f.ns.container(&format!("big{i}")), res(1, 1, 0)))
            .collect()
    };
    let mut huge = vec![f.ok(0)];
    huge.extend(mk(100_000));
    let over = mk(MAX_BATCH + 1);
    let (x, y) = over.split_at(MAX_BATCH / 2);
    let before = f.snapshot(repo).await;
    let mut rel: Vec<String> = vec![f.held.clone()];
    rel.extend((0..100_000).map(|i| f.ns.container(&format!("big{i}"))));
    assert_invalid(repo.release_batch(&rel).await, "release of 100,000 ids");
    rel.truncate(MAX_BATCH + 1);
    assert_invalid(
        repo.release_batch(&rel).await,
        "release of MAX_BATCH + 1 ids",
    );
    assert_eq!(
        f.snapshot(repo).await,
        before,
        "oversized releases change nothing"
    );
    f.assert_batches_rejected(
        repo,
        &[
            ("100,000 reservations", vec![cr(&f.w, huge)]),
            (
                "MAX_BATCH + 1 over two workers",
                vec![cr(&f.w, x.to_vec()), cr(&f.w2, y.to_vec())],
            ),
        ],
    )
    .await;
    assert_eq!(find(repo, &f.ns.container("big0")).await, None);
}

/// Duplicate ids in one release batch are `InvalidInput`, and nothing is released.
pub async fn check_invalid_duplicate_release_ids(repo: &dyn WorkerRepository) {
    let f = Fixture::new(repo, "dup-release").await;
    let before = f.snapshot(repo).await;
    for ids in [
        vec![f.held.clone(), f.held.clone()],
        vec![f.held.clone(), f.fresh[0].clone(), f.held.clone()],
        vec![f.fresh[0].clone(), f.fresh[0].clone()],
    ] {
        assert_invalid(repo.release_batch(&ids).await, &format!("release {ids:?}"));
        assert_eq!(
            f.snapshot(repo).await,
            before,
            "a rejected release changes nothing"
        );
    }
    f.finish(repo).await;
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

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Many concurrent callers competing for one worker's capacity: exactly as many commit as fit.
pub async fn check_concurrent_capacity_no_overcommit(repo: &dyn WorkerRepository) {
    let ns = Ns::new("overcommit");
    let id = ns.worker("a");
    register(
        repo,
        &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector(),
    )
    .await;
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
    cleanup(repo, &[id]).await;
}

/// The same container reserved on six workers at once: exactly one wins, the others are told
/// `AlreadyReserved` with the winner's id.
pub async fn check_concurrent_same_container_one_holder(repo: &dyn WorkerRepository) {
    let ns = Ns::new("one-holder");
    let ids: Vec<String> = (0..6).map(|i| ns.worker(&format!("{i}"))).collect();
    for id in &ids {
        register(
            repo,
            &WorkerSpec::new(id.clone(), res(1000, 1000, 0))
                .with_pool(ns.pool("p"))
                .requiring_pool_selector(),
        )
        .await;
    }
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
        let holder = held_on(repo, &c)
            .await
            .unwrap_or_else(|| panic!("round {round}: somebody must hold {c:?}"));
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
    for id in &ids {
        assert_consistent(repo, id, "after contended reservations").await;
    }
    cleanup(repo, &ids).await;
}

/// While workers are being written, `list_workers` never leaves one out and audits stay
/// consistent.
pub async fn check_list_workers_during_writes(repo: &dyn WorkerRepository) {
    let ns = Ns::new("list-writes");
    let pool = ns.pool("p");
    let ids: Vec<String> = (0..8).map(|i| ns.worker(&format!("{i}"))).collect();
    for id in &ids {
        register(
            repo,
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
                register(repo, &spec).await;
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
    cleanup(repo, &ids).await;
}
