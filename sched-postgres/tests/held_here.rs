//! The contract's rule change (migration `0002`): a container already held on *this* worker is
//! rejected as `already_reserved` naming this worker, with nothing charged — like a container
//! held elsewhere. Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, Rejection, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};

fn rr(id: &str, cpu: u64) -> ResourceReservation {
    ResourceReservation::new(id, Resources::cpu_mem(cpu, cpu))
}

fn held(container: &str, worker: &str) -> Rejection {
    Rejection::AlreadyReserved {
        container_id: container.into(),
        worker_id: worker.into(),
    }
}

#[tokio::test]
async fn held_here_is_rejected_naming_this_worker() {
    let Some(db) = common::setup("held_here_is_rejected_naming_this_worker").await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let first = db
        .reserve_batch(
            &[CapacityReservation::new("w", vec![rr("c", 100)])],
            CommitMode::AllOrNothing,
        )
        .await
        .unwrap();
    let v = first[0].outcome.as_ref().unwrap().new_version;
    // The same request again, and the same id with other resources: both rejected, uncharged.
    for (mode, amount) in [(CommitMode::AllOrNothing, 100), (CommitMode::Partial, 300)] {
        let out = db
            .reserve_batch(
                &[CapacityReservation::new("w", vec![rr("c", amount)])],
                mode,
            )
            .await
            .unwrap();
        assert_eq!(out[0].outcome, Err(held("c", "w")), "{mode:?}");
    }
    // Partial keeps the prefix before the held one; the remainder names this worker.
    let out = db
        .reserve_batch(
            &[CapacityReservation::new(
                "w",
                vec![rr("a", 10), rr("c", 100), rr("b", 10)],
            )],
            CommitMode::Partial,
        )
        .await
        .unwrap();
    let ok = out[0].outcome.as_ref().unwrap();
    assert_eq!(
        (ok.accepted, ok.remainder.clone()),
        (1, Some(held("c", "w")))
    );
    assert_eq!(ok.new_version, v + 1);
    assert_eq!(ok.free, Resources::cpu_mem(890, 890));
    // All-or-nothing commits none of it.
    let out = db
        .reserve_batch(
            &[CapacityReservation::new(
                "w",
                vec![rr("d", 10), rr("c", 100)],
            )],
            CommitMode::AllOrNothing,
        )
        .await
        .unwrap();
    assert_eq!(out[0].outcome, Err(held("c", "w")));
    assert!(db.find_reservation("d").await.unwrap().is_none());
    let w = db.get_worker("w").await.unwrap().unwrap();
    assert_eq!(
        (w.free, w.resource_version),
        (Resources::cpu_mem(890, 890), v + 1)
    );
    let rec = db.find_reservation("c").await.unwrap().unwrap();
    assert_eq!(
        rec.resources,
        Resources::cpu_mem(100, 100),
        "the old charge"
    );
    assert!(db.audit("w").await.unwrap().is_consistent());
}
