//! Capacity rejections: not enough CPU, memory or GPUs, GPU types, and GPU counts that never wrap.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, assert_insufficient, committed, cr, find, get, rejected, release, res,
    reserve1, rr, BOTH_MODES,
};
use sched_core::{CommitMode, Rejection, ResourceKind, Resources, WorkerRepository};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_capacity {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_insufficient_cpu
            check_insufficient_memory
            check_insufficient_gpu
            check_gpu_type_mismatch
            check_gpu_count_never_wraps
        }
    };
}

async fn insufficient(repo: &dyn WorkerRepository, kind: ResourceKind) {
    let fx = Fixture::new(repo, &format!("short-{kind}"));
    let ns = fx.ns();
    let id = ns.worker("a");
    fx.register(&fx.spec("a", res(1000, 1000, 3)).with_gpu_type("a100"))
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
    fx.finish().await;
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
    let fx = Fixture::new(repo, "gpu-type");
    let ns = fx.ns();
    let gw = ns.worker("gpu");
    let cw = ns.worker("cpu");
    fx.register(&fx.spec("gpu", res(4000, 4096, 2)).with_gpu_type("a100"))
        .await;
    fx.worker("cpu", res(4000, 4096, 0)).await;
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
    fx.finish().await;
}

/// GPU counts never wrap: asking for more GPUs than are free is rejected with available 0,
/// free stays 0 (not `u64::MAX`), and releases never lift free above total.
pub async fn check_gpu_count_never_wraps(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "gpu-wrap");
    let ns = fx.ns();
    let gw = ns.worker("gpu");
    let cw = ns.worker("cpu");
    let gtotal = res(4000, 4096, 2);
    fx.register(&fx.spec("gpu", gtotal).with_gpu_type("a100"))
        .await;
    fx.worker("cpu", res(4000, 4096, 0)).await;
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
    fx.finish().await;
}
