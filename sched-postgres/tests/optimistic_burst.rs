//! The optimistic burst (migration `0007`): a burst is judged as if no container were held and
//! the primary key finds the holders. A held container that is the burst's only failure is found
//! by the `INSERT` (the attempt is rolled back and judged again), and one committed by another
//! transaction while the burst waits for it is judged against its real holder.
//! Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, Rejection, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};

fn rr(id: &str) -> ResourceReservation {
    ResourceReservation::new(id, Resources::cpu_mem(100, 100))
}

fn held_by(container: &str, worker: &str) -> Rejection {
    Rejection::AlreadyReserved {
        container_id: container.into(),
        worker_id: worker.into(),
    }
}

async fn register(db: &common::TestDb, ids: &[&str]) {
    for w in ids {
        db.register_worker(&WorkerSpec::new(*w, Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
    }
}

/// Nothing but a held container fails: the first judgement accepts everything, the `INSERT`
/// meets the holder, and the answer, the ledger and the worker are those of the rule.
#[tokio::test]
async fn a_held_container_alone_is_found_by_the_insert() {
    let Some(db) = common::setup("a_held_container_alone_is_found_by_the_insert").await else {
        return;
    };
    register(&db, &["w1", "w2"]).await;
    db.reserve_batch(
        &[CapacityReservation::new("w2", vec![rr("held")])],
        CommitMode::AllOrNothing,
    )
    .await
    .unwrap();
    let before = db.get_worker("w1").await.unwrap().unwrap();
    let burst = [CapacityReservation::new(
        "w1",
        vec![rr("c1"), rr("held"), rr("c3")],
    )];

    let out = db
        .reserve_batch(&burst, CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert_eq!(out[0].outcome, Err(held_by("held", "w2")));
    assert!(db.find_reservation("c1").await.unwrap().is_none());
    let w1 = db.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(
        (w1.free, w1.resource_version),
        (before.free, before.resource_version)
    );

    let out = db.reserve_batch(&burst, CommitMode::Partial).await.unwrap();
    let ok = out[0].outcome.as_ref().unwrap();
    assert_eq!(
        (ok.accepted, ok.remainder.clone(), ok.free),
        (1, Some(held_by("held", "w2")), Resources::cpu_mem(900, 900))
    );
    assert_eq!(
        db.find_reservation("c1").await.unwrap().unwrap().worker_id,
        "w1"
    );
    assert!(db.find_reservation("c3").await.unwrap().is_none());
    assert_eq!(
        db.find_reservation("held")
            .await
            .unwrap()
            .unwrap()
            .worker_id,
        "w2"
    );
    for w in ["w1", "w2"] {
        assert!(db.audit(w).await.unwrap().is_consistent(), "{w}");
    }
}

/// Another transaction inserts one of the burst's containers (for a worker the burst does not
/// lock) and commits while the burst's `INSERT` waits for it: the burst is judged again and
/// names the real holder; nothing of the first attempt stays.
#[tokio::test]
async fn a_container_committed_meanwhile_is_judged_against_its_holder() {
    let test = "a_container_committed_meanwhile_is_judged_against_its_holder";
    let app = format!("sched-optimistic-{}", sched_tests::ns::random_hex());
    let Some(db) = common::setup_with(test, |c| c.with_application_name(&app)).await else {
        return;
    };
    register(&db, &["w1", "w2"]).await;
    let mut other = db.raw().await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    let theirs = r#"[{"worker_id": "w2", "expected_version": null, "reservations": [
        {"container_id": "raced", "resources": {"cpu_millicores": 10, "memory_mib": 10, "gpu_count": 0}}]}]"#;
    sqlx::query("SELECT sched_reserve_batch($1::jsonb, false)")
        .bind(theirs)
        .execute(&mut other)
        .await
        .unwrap();

    let burst = vec![CapacityReservation::new("w1", vec![rr("a"), rr("raced")])];
    let call = {
        let repo = db.another().await;
        tokio::spawn(async move {
            repo.reserve_batch(&burst, CommitMode::Partial)
                .await
                .unwrap()
        })
    };
    let mut admin = db.raw().await;
    common::wait_for_lock_waiter(&mut admin, &app).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    let out = call.await.unwrap();
    let ok = out[0].outcome.as_ref().unwrap();
    assert_eq!(
        (ok.accepted, ok.remainder.clone(), ok.free),
        (
            1,
            Some(held_by("raced", "w2")),
            Resources::cpu_mem(900, 900)
        )
    );
    assert_eq!(
        db.find_reservation("raced")
            .await
            .unwrap()
            .unwrap()
            .worker_id,
        "w2"
    );
    assert_eq!(db.list_reservations("w1").await.unwrap().len(), 1);
    for w in ["w1", "w2"] {
        assert!(db.audit(w).await.unwrap().is_consistent(), "{w}");
    }
}
