//! The operations of a model sequence and their generators: the base operations, and with
//! `lifecycle` also leases, liveness (heartbeat timeouts, stale policies, heartbeats), renewals,
//! sweeps, status changes, bulk release and the passing of time.

use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::{CommitMode, Resources, StalePolicy, WorkerStatus};

pub(super) const MODEL_WORKERS: usize = 4;
pub(super) const MODEL_CONTAINERS: usize = 10;
pub(super) const MODEL_POOLS: usize = 2;

/// How a generated reservation part sets `expected_version`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    No,
    Current,
    Off(i8),
}

/// A generated reservation: container index, amounts, GPU type index, lease in ms.
pub(super) type ModelRes = (usize, Resources, Option<usize>, Option<u64>);

/// A generated model part: worker index, version expectation, reservations.
pub(super) type ModelPart = (usize, Expect, Vec<ModelRes>);

/// A heartbeat timeout (ms) and what the sweep does while the worker is stale.
pub(super) type Liveness = Option<(u64, StalePolicy)>;

/// One generated operation.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Register {
        w: usize,
        total: Resources,
        gpu: Option<usize>,
        status: WorkerStatus,
        pool: usize,
        liveness: Liveness,
    },
    Reserve {
        mode: CommitMode,
        parts: Vec<ModelPart>,
    },
    /// Re-registers an existing worker with its total shrunk by `shrink` steps per kind (which
    /// may go below what is reserved) and a new status; registers a default worker if absent.
    Reregister {
        w: usize,
        shrink: (u64, u64, u64),
        status: WorkerStatus,
    },
    Release(Vec<usize>),
    Remove(usize),
    Reconcile(usize),
    /// `renew_leases` of some containers on a worker (one past the end: unknown; `None`: every
    /// container of the worker holding the most, and these).
    Renew {
        w: Option<usize>,
        cs: Vec<usize>,
        lease_ms: u64,
    },
    /// `expire_leases` on a worker (`None`: on every worker of the sequence, in order).
    Sweep(Option<usize>),
    /// `heartbeat` of a worker.
    Heartbeat(usize),
    /// `set_worker_status`.
    SetStatus(usize, WorkerStatus),
    /// `release_worker`.
    ReleaseWorker(usize),
    /// Time passes: the manual clock moves by this many ms, or the test sleeps as long.
    Advance(u64),
}

/// Drops repeated workers and containers from generated parts (and parts left empty).
fn distinct(parts: &mut Vec<ModelPart>) {
    let mut ws = std::collections::HashSet::new();
    let mut cs = std::collections::HashSet::new();
    parts.retain_mut(|(w, _, rs)| {
        rs.retain(|r| cs.insert(r.0));
        ws.insert(*w) && !rs.is_empty()
    });
}

/// Leases and heartbeat timeouts are short (milliseconds) so that, with a real clock too, a
/// sequence sees leases run out and workers go stale.
fn gen_lease() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 30 => 1u64..=60, 6 => 200u64..=2_000]
}

fn gen_liveness(lifecycle: bool) -> BoxedStrategy<Liveness> {
    if !lifecycle {
        return Just(None).boxed();
    }
    proptest::option::weighted(
        0.4,
        (
            prop_oneof![3 => 20u64..=150, 1 => 500u64..=5_000],
            prop_oneof![Just(StalePolicy::Keep), Just(StalePolicy::Release)],
        ),
    )
    .boxed()
}

fn gen_status() -> impl Strategy<Value = WorkerStatus> {
    prop_oneof![
        8 => Just(WorkerStatus::Available),
        1 => Just(WorkerStatus::Draining),
        1 => Just(WorkerStatus::Disabled),
    ]
}

fn gen_register(lifecycle: bool) -> impl Strategy<Value = Op> {
    // With the lifecycle, no worker is empty in a kind (fewer capacity rejections).
    let least = u64::from(lifecycle);
    (
        0..MODEL_WORKERS,
        (least..=8, least..=8, 0u64..=3),
        proptest::option::weighted(0.4, 0usize..2),
        gen_status(),
        0..MODEL_POOLS,
        gen_liveness(lifecycle),
    )
        .prop_map(|(w, (c, m, g), gpu, status, pool, liveness)| Op::Register {
            w,
            total: Resources::new(c * 500, m * 512, g),
            gpu,
            status,
            pool,
            liveness,
        })
}

/// Registrations of every model worker, to start each sequence with a populated store.
pub(super) fn gen_prelude(lifecycle: bool) -> impl Strategy<Value = Vec<Op>> {
    vec(gen_register(lifecycle), MODEL_WORKERS).prop_map(|ops| {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| match op {
                Op::Register {
                    total,
                    gpu,
                    status,
                    pool,
                    liveness,
                    ..
                } => Op::Register {
                    w: i,
                    total,
                    gpu,
                    status,
                    pool,
                    liveness,
                },
                other => other,
            })
            .collect()
    })
}

/// One operation; with `lifecycle`, reservations sometimes carry a lease and the lifecycle
/// operations are drawn too.
pub(super) fn gen_op(lifecycle: bool) -> BoxedStrategy<Op> {
    let status2 = gen_status();
    let register = gen_register(lifecycle);
    // With the lifecycle, rejections for reasons it does not add are rarer, so that more
    // reservations are held long enough to be renewed and swept.
    let (off, typed, ghost) = if lifecycle { (1, 0.1, 1) } else { (2, 0.3, 4) };
    let expect = prop_oneof![
        6 => Just(Expect::No),
        4 => Just(Expect::Current),
        off => prop_oneof![Just(-2i8), Just(-1), Just(1), Just(2)].prop_map(Expect::Off),
    ];
    // Amounts may be zero in every kind (rarely): the model expects InvalidInput then.
    let demand = (
        (
            0u64..=4,
            0u64..=4,
            prop_oneof![4 => Just(0u64), 1 => 1u64..=2],
        ),
        proptest::option::weighted(typed, 0usize..2),
    )
        .prop_map(|((c, m, g), t)| (Resources::new(c * 250, m * 256, g), t));
    let lease = if lifecycle {
        proptest::option::weighted(0.5, gen_lease()).boxed()
    } else {
        Just(None).boxed()
    };
    let part = (
        prop_oneof![4 * MODEL_WORKERS as u32 => 0..MODEL_WORKERS, ghost => Just(MODEL_WORKERS)],
        expect,
        vec((0..MODEL_CONTAINERS, demand, lease), 1..4),
    )
        .prop_map(|(w, e, rs)| {
            let rs = rs.into_iter().map(|(c, (r, t), l)| (c, r, t, l)).collect();
            (w, e, rs)
        });
    // With the lifecycle, most batches are valid (no worker or container twice).
    let valid = if lifecycle { 0.85 } else { 0.0 };
    let reserve = (
        any::<bool>(),
        vec(part, 0..4),
        proptest::bool::weighted(valid),
    )
        .prop_map(|(p, mut parts, dedupe)| {
            if dedupe {
                distinct(&mut parts);
            }
            Op::Reserve {
                mode: if p {
                    CommitMode::Partial
                } else {
                    CommitMode::AllOrNothing
                },
                parts,
            }
        });
    let reregister = (0..MODEL_WORKERS, (0u64..=3, 0u64..=3, 0u64..=1), status2)
        .prop_map(|(w, shrink, status)| Op::Reregister { w, shrink, status });
    let release = vec(0..MODEL_CONTAINERS + 1, 0..5).prop_map(Op::Release);
    let worker = || 0..MODEL_WORKERS + 1;
    if !lifecycle {
        return prop_oneof![
            3 => register,
            2 => reregister,
            5 => reserve,
            3 => release,
            1 => worker().prop_map(Op::Remove),
            1 => worker().prop_map(Op::Reconcile),
        ]
        .boxed();
    }
    prop_oneof![
        2 => register,
        1 => reregister,
        8 => reserve,
        2 => release,
        1 => worker().prop_map(Op::Remove),
        1 => worker().prop_map(Op::Reconcile),
        5 => (
            proptest::option::weighted(0.3, worker()),
            vec(0..MODEL_CONTAINERS + 1, 1..3),
            gen_lease()
        )
            .prop_map(|(w, cs, lease_ms)| Op::Renew { w, cs, lease_ms }),
        3 => proptest::option::weighted(0.7, worker()).prop_map(Op::Sweep),
        2 => worker().prop_map(Op::Heartbeat),
        1 => (worker(), gen_status()).prop_map(|(w, s)| Op::SetStatus(w, s)),
        1 => worker().prop_map(Op::ReleaseWorker),
        3 => prop_oneof![3 => 1u64..=40, 1 => 60u64..=120].prop_map(Op::Advance),
    ]
    .boxed()
}
