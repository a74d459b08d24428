//! Bad input: `InvalidInput` from every method, and nothing changed.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, assert_invalid, committed, cr, find, get, res, reserve1, rr, snapshot,
    Snapshot, BOTH_MODES,
};
use crate::ns::Ns;
use sched_core::validate::{MAX_AMOUNT, MAX_BATCH, MAX_ID_BYTES};
use sched_core::{
    CapacityReservation, CommitMode, ResourceKind, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_bad_input {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
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
        }
    };
}

/// The setting of the bad-input checks: two workers, one held container, and ids of valid
/// containers that bad batches also mention (so a half-applied batch would show).
struct BadInput<'r> {
    fx: Fixture<'r>,
    w: String,
    w2: String,
    held: String,
    fresh: Vec<String>,
}

impl<'r> BadInput<'r> {
    async fn new(repo: &'r dyn WorkerRepository, tag: &str) -> Self {
        let fx = Fixture::new(repo, tag);
        for name in ["a", "b"] {
            fx.register(&fx.spec(name, res(4000, 4096, 2)).with_gpu_type("a100"))
                .await;
        }
        let (w, w2) = (fx.ns().worker("a"), fx.ns().worker("b"));
        let held = fx.ns().container("held");
        committed(
            reserve1(
                repo,
                cr(&w, vec![rr(&held, res(100, 100, 0))]),
                CommitMode::AllOrNothing,
            )
            .await,
            "fixture reserve",
        );
        let fresh = (0..4)
            .map(|i| fx.ns().container(&format!("fresh{i}")))
            .collect();
        BadInput {
            fx,
            w,
            w2,
            held,
            fresh,
        }
    }

    fn ns(&self) -> &Ns {
        self.fx.ns()
    }

    fn ok(&self, i: usize) -> ResourceReservation {
        rr(&self.fresh[i], res(10, 10, 0))
    }

    async fn snapshot(&self) -> Snapshot {
        let repo = self.fx.repo();
        let mut cs = self.fresh.clone();
        cs.push(self.held.clone());
        snapshot(repo, &[self.w.clone(), self.w2.clone()], &cs).await
    }

    /// Sends each bad batch in both modes and asserts InvalidInput with nothing changed.
    async fn assert_batches_rejected(&self, batches: &[(&str, Vec<CapacityReservation>)]) {
        let repo = self.fx.repo();
        let before = self.snapshot().await;
        for (what, b) in batches {
            for mode in BOTH_MODES {
                assert_invalid(
                    repo.reserve_batch(b, mode).await,
                    &format!("{what} ({mode:?})"),
                );
                assert_eq!(
                    self.snapshot().await,
                    before,
                    "{what} ({mode:?}): a rejected batch must change nothing"
                );
            }
        }
    }

    /// Asserts both workers are consistent, then removes them.
    async fn finish(self) {
        let repo = self.fx.repo();
        assert_consistent(repo, &self.w, "after bad input").await;
        assert_consistent(repo, &self.w2, "after bad input").await;
        self.fx.finish().await;
    }

    /// Calls every id-taking method with `bad` in each id position and asserts InvalidInput with
    /// nothing changed.
    async fn assert_bad_id_rejected(&self, bad: &str, label: &str) {
        let repo = self.fx.repo();
        let before = self.snapshot().await;
        let total = res(1000, 1000, 1);
        let specs = [
            (
                "worker id",
                WorkerSpec::new(bad, total)
                    .with_pool(self.ns().pool("p"))
                    .requiring_pool_selector(),
            ),
            (
                "pool",
                WorkerSpec::new(self.ns().worker("new"), total).with_pool(bad),
            ),
            (
                "gpu type",
                WorkerSpec::new(self.ns().worker("new"), total)
                    .with_pool(self.ns().pool("p"))
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
            self.snapshot().await,
            before,
            "calls with {label} ids must change nothing"
        );
        assert!(
            repo.get_worker(&self.ns().worker("new"))
                .await
                .ok()
                .flatten()
                .is_none(),
            "a worker with {label} pool or gpu type must not be registered"
        );
    }
}

/// A reservation of zero resources is `InvalidInput`, and the whole batch changes nothing.
pub async fn check_invalid_zero_resources(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "zero").await;
    let zero = rr(&f.fresh[2], Resources::ZERO);
    f.assert_batches_rejected(&[
        ("zero resources alone", vec![cr(&f.w, vec![zero.clone()])]),
        (
            "zero resources after valid parts",
            vec![cr(&f.w, vec![f.ok(0)]), cr(&f.w2, vec![f.ok(1), zero])],
        ),
    ])
    .await;
    f.finish().await;
}

/// Amounts above `MAX_AMOUNT` (and `u64::MAX`) in any resource are `InvalidInput`, in
/// reservations and in registrations, and change nothing.
pub async fn check_invalid_amounts_too_large(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "too-large").await;
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
                WorkerSpec::new(f.ns().worker("new"), r)
                    .with_pool(f.ns().pool("p"))
                    .requiring_pool_selector(),
            ));
            specs.push((
                format!("{label} on re-registration"),
                WorkerSpec::new(f.w.clone(), r)
                    .with_pool(f.ns().pool("p"))
                    .requiring_pool_selector(),
            ));
        }
    }
    let before = f.snapshot().await;
    for (what, spec) in &specs {
        assert_invalid(
            repo.register_worker(spec).await,
            &format!("register_worker with {what}"),
        );
    }
    assert_eq!(
        repo.get_worker(&f.ns().worker("new")).await.ok(),
        Some(None),
        "no worker may be created"
    );
    assert_eq!(
        f.snapshot().await,
        before,
        "oversized registrations must change nothing"
    );
    let batches: Vec<(&str, Vec<CapacityReservation>)> = batches
        .iter()
        .map(|(l, b)| (l.as_str(), b.clone()))
        .collect();
    f.assert_batches_rejected(&batches).await;
    f.finish().await;
}

/// Empty ids (worker, container, pool, GPU type) are `InvalidInput` in every method.
pub async fn check_invalid_empty_ids(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "empty-id").await;
    f.assert_bad_id_rejected("", "empty").await;
    f.finish().await;
}

/// Ids longer than `MAX_ID_BYTES` (one byte over, and 10 KB) are `InvalidInput` everywhere.
pub async fn check_invalid_long_ids(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "long-id").await;
    let mut over = f.ns().worker("over");
    while over.len() <= MAX_ID_BYTES {
        over.push('x');
    }
    f.assert_bad_id_rejected(&over, "MAX_ID_BYTES+1").await;
    f.assert_bad_id_rejected(
        &format!("{}{}", f.ns().prefix(), "k".repeat(10 * 1024)),
        "10 KB",
    )
    .await;
    f.finish().await;
}

/// Ids with control characters (NUL, newline, tab, escape, DEL, C1) are `InvalidInput`.
pub async fn check_invalid_control_characters(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "control").await;
    for (label, ch) in [
        ("NUL", "\0"),
        ("newline", "\n"),
        ("CR", "\r"),
        ("tab", "\t"),
        ("ESC", "\u{1b}"),
        ("DEL", "\u{7f}"),
        ("C1", "\u{85}"),
    ] {
        let bad = format!("{}ctl{ch}x", f.ns().prefix());
        f.assert_bad_id_rejected(&bad, label).await;
    }
    f.finish().await;
}

/// The same container twice in one batch (on one worker, or on two) is `InvalidInput`, even
/// when it is already held.
pub async fn check_invalid_duplicate_container(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "dup-container").await;
    let dup = |c: &str| rr(c, res(5, 5, 0));
    f.assert_batches_rejected(&[
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
    ])
    .await;
    f.finish().await;
}

/// The same worker twice in one batch is `InvalidInput`.
pub async fn check_invalid_duplicate_worker(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "dup-worker").await;
    let v = get(repo, &f.w).await.resource_version;
    f.assert_batches_rejected(&[
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
    ])
    .await;
    f.finish().await;
}

/// A worker with no reservations in a batch is `InvalidInput`.
pub async fn check_invalid_empty_reservation_list(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "empty-list").await;
    f.assert_batches_rejected(&[(
        "worker with no reservations",
        vec![cr(&f.w, vec![f.ok(0)]), cr(&f.w2, vec![])],
    )])
    .await;
    f.finish().await;
}

/// Batches above `MAX_BATCH` (100,000 reservations, or `MAX_BATCH + 1` over two workers, or
/// releases of that many ids) are `InvalidInput` and change nothing.
pub async fn check_invalid_oversized_batch(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "oversized").await;
    let mk = |n: usize| -> Vec<ResourceReservation> {
        (0..n)
            .map(|i| rr(&f.ns().container(&format!("big{i}")), res(1, 1, 0)))
            .collect()
    };
    let mut huge = vec![f.ok(0)];
    huge.extend(mk(100_000));
    let over = mk(MAX_BATCH + 1);
    let (x, y) = over.split_at(MAX_BATCH / 2);
    let before = f.snapshot().await;
    let mut rel: Vec<String> = vec![f.held.clone()];
    rel.extend((0..100_000).map(|i| f.ns().container(&format!("big{i}"))));
    assert_invalid(repo.release_batch(&rel).await, "release of 100,000 ids");
    rel.truncate(MAX_BATCH + 1);
    assert_invalid(
        repo.release_batch(&rel).await,
        "release of MAX_BATCH + 1 ids",
    );
    assert_eq!(
        f.snapshot().await,
        before,
        "oversized releases change nothing"
    );
    f.assert_batches_rejected(&[
        ("100,000 reservations", vec![cr(&f.w, huge)]),
        (
            "MAX_BATCH + 1 over two workers",
            vec![cr(&f.w, x.to_vec()), cr(&f.w2, y.to_vec())],
        ),
    ])
    .await;
    let big0 = f.ns().container("big0");
    f.finish().await;
    assert_eq!(find(repo, &big0).await, None);
}

/// Duplicate ids in one release batch are `InvalidInput`, and nothing is released.
pub async fn check_invalid_duplicate_release_ids(repo: &dyn WorkerRepository) {
    let f = BadInput::new(repo, "dup-release").await;
    let before = f.snapshot().await;
    for ids in [
        vec![f.held.clone(), f.held.clone()],
        vec![f.held.clone(), f.fresh[0].clone(), f.held.clone()],
        vec![f.fresh[0].clone(), f.fresh[0].clone()],
    ] {
        assert_invalid(repo.release_batch(&ids).await, &format!("release {ids:?}"));
        assert_eq!(
            f.snapshot().await,
            before,
            "a rejected release changes nothing"
        );
    }
    f.finish().await;
}
