//! The operations of a model sequence and their generators.

use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::{CommitMode, Resources, WorkerStatus};

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

/// A generated model part: worker index, version expectation, (container, amounts, GPU type).
pub(super) type ModelPart = (usize, Expect, Vec<(usize, Resources, Option<usize>)>);

/// One generated operation.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Register {
        w: usize,
        total: Resources,
        gpu: Option<usize>,
        status: WorkerStatus,
        pool: usize,
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
}

fn gen_status() -> impl Strategy<Value = WorkerStatus> {
    prop_oneof![
        8 => Just(WorkerStatus::Available),
        1 => Just(WorkerStatus::Draining),
        1 => Just(WorkerStatus::Disabled),
    ]
}

fn gen_register() -> impl Strategy<Value = Op> {
    (
        0..MODEL_WORKERS,
        (0u64..=8, 0u64..=8, 0u64..=3),
        proptest::option::weighted(0.4, 0usize..2),
        gen_status(),
        0..MODEL_POOLS,
    )
        .prop_map(|(w, (c, m, g), gpu, status, pool)| Op::Register {
            w,
            total: Resources::new(c * 500, m * 512, g),
            gpu,
            status,
            pool,
        })
}

/// Registrations of every model worker, to start each sequence with a populated store.
pub(super) fn gen_prelude() -> impl Strategy<Value = Vec<Op>> {
    vec(gen_register(), MODEL_WORKERS).prop_map(|ops| {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| match op {
                Op::Register {
                    total,
                    gpu,
                    status,
                    pool,
                    ..
                } => Op::Register {
                    w: i,
                    total,
                    gpu,
                    status,
                    pool,
                },
                other => other,
            })
            .collect()
    })
}

pub(super) fn gen_op() -> impl Strategy<Value = Op> {
    let status2 = gen_status();
    let register = gen_register();
    let expect = prop_oneof![
        3 => Just(Expect::No),
        2 => Just(Expect::Current),
        1 => prop_oneof![Just(-2i8), Just(-1), Just(1), Just(2)].prop_map(Expect::Off),
    ];
    // Amounts may be zero in every kind (rarely): the model expects InvalidInput then.
    let demand = (
        (
            0u64..=4,
            0u64..=4,
            prop_oneof![4 => Just(0u64), 1 => 1u64..=2],
        ),
        proptest::option::weighted(0.3, 0usize..2),
    )
        .prop_map(|((c, m, g), t)| (Resources::new(c * 250, m * 256, g), t));
    let part = (
        0..MODEL_WORKERS + 1,
        expect,
        vec((0..MODEL_CONTAINERS, demand), 1..4),
    )
        .prop_map(|(w, e, rs)| (w, e, rs.into_iter().map(|(c, (r, t))| (c, r, t)).collect()));
    let reserve = (any::<bool>(), vec(part, 0..4)).prop_map(|(p, parts)| Op::Reserve {
        mode: if p {
            CommitMode::Partial
        } else {
            CommitMode::AllOrNothing
        },
        parts,
    });
    let reregister = (0..MODEL_WORKERS, (0u64..=3, 0u64..=3, 0u64..=1), status2)
        .prop_map(|(w, shrink, status)| Op::Reregister { w, shrink, status });
    prop_oneof![
        3 => register,
        2 => reregister,
        5 => reserve,
        3 => vec(0..MODEL_CONTAINERS + 1, 0..5).prop_map(Op::Release),
        1 => (0..MODEL_WORKERS + 1).prop_map(Op::Remove),
        1 => (0..MODEL_WORKERS + 1).prop_map(Op::Reconcile),
    ]
}
