//! The set-based burst (migration `0004`): a burst that repeats a container (possible only in a
//! direct SQL call; `validate_batch` refuses it) keeps the worker-by-worker semantics, one
//! burst mixes every kind of outcome, and `function_usec` reports what the server tracked.
//! Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, Rejection, ResourceKind, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};
use sqlx::types::JsonValue;

fn rr(id: &str, cpu: u64) -> ResourceReservation {
    ResourceReservation::new(id, Resources::cpu_mem(cpu, cpu))
}

async fn register(db: &common::TestDb, ids: &[&str], cpu: u64) {
    for w in ids {
        db.register_worker(&WorkerSpec::new(*w, Resources::cpu_mem(cpu, cpu)))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_repeated_container_falls_back_to_worker_by_worker() {
    let Some(db) = common::setup("a_repeated_container_falls_back").await else {
        return;
    };
    register(&db, &["w1", "w2"], 1000).await;
    let burst = r#"[
        {"worker_id": "w2", "expected_version": null, "reservations": [
            {"container_id": "c", "resources": {"cpu_millicores": 10, "memory_mib": 10, "gpu_count": 0}}]},
        {"worker_id": "w1", "expected_version": null, "reservations": [
            {"container_id": "c", "resources": {"cpu_millicores": 10, "memory_mib": 10, "gpu_count": 0}}]}
    ]"#;
    let out: JsonValue = sqlx::query_scalar("SELECT sched_reserve_batch($1::jsonb, false)")
        .bind(burst)
        .fetch_one(db.repo.pool())
        .await
        .unwrap();
    // w1 comes first in id order and takes c; w2 then finds it held by w1.
    assert!(out[1]["outcome"]["Ok"].is_object(), "{out}");
    let err = &out[0]["outcome"]["Err"];
    assert_eq!(
        (&err["kind"], &err["container_id"], &err["worker_id"]),
        (&"already_reserved".into(), &"c".into(), &"w1".into()),
        "{out}"
    );
    assert_eq!(
        db.find_reservation("c").await.unwrap().unwrap().worker_id,
        "w1"
    );
}

#[tokio::test]
async fn one_burst_mixes_every_outcome() {
    let Some(db) = common::setup("one_burst_mixes_every_outcome").await else {
        return;
    };
    register(&db, &["a", "b", "c", "d"], 100).await;
    db.reserve_batch(
        &[CapacityReservation::new("d", vec![rr("held", 10)])],
        CommitMode::AllOrNothing,
    )
    .await
    .unwrap();
    let batch = vec![
        // prefix of two, then capacity: 40 + 50 leave 10 < 20
        CapacityReservation::new(
            "a",
            vec![rr("a1", 40), rr("a2", 50), rr("a3", 20), rr("a4", 1)],
        ),
        // held elsewhere in second place
        CapacityReservation::new("b", vec![rr("b1", 10), rr("held", 10)]),
        // all fit
        CapacityReservation::new("c", vec![rr("c1", 60), rr("c2", 40)]),
        CapacityReservation::new("nobody", vec![rr("n1", 1)]),
    ];
    let out = db.reserve_batch(&batch, CommitMode::Partial).await.unwrap();
    let a = out[0].outcome.as_ref().unwrap();
    assert_eq!(a.accepted, 2);
    assert_eq!(a.free, Resources::cpu_mem(10, 10));
    assert_eq!(
        a.remainder,
        Some(Rejection::InsufficientCapacity {
            container_id: "a3".into(),
            resource: ResourceKind::Cpu,
            requested: 20,
            available: 10,
        })
    );
    let b = out[1].outcome.as_ref().unwrap();
    assert_eq!(b.accepted, 1);
    assert_eq!(
        b.remainder,
        Some(Rejection::AlreadyReserved {
            container_id: "held".into(),
            worker_id: "d".into()
        })
    );
    let c = out[2].outcome.as_ref().unwrap();
    assert_eq!(
        (c.accepted, c.free, c.remainder.clone()),
        (2, Resources::cpu_mem(0, 0), None)
    );
    assert_eq!(out[3].outcome, Err(Rejection::UnknownWorker));
    for (w, n) in [("a", 2), ("b", 1), ("c", 2), ("d", 1)] {
        assert_eq!(db.list_reservations(w).await.unwrap().len(), n, "{w}");
        assert!(db.audit(w).await.unwrap().is_consistent(), "{w}");
    }
    // All or nothing: the same kind of burst commits only the parts that fit whole.
    let out = db
        .reserve_batch(
            &[
                CapacityReservation::new("a", vec![rr("a5", 5), rr("a6", 6)]),
                CapacityReservation::new("b", vec![rr("b2", 5)]),
            ],
            CommitMode::AllOrNothing,
        )
        .await
        .unwrap();
    assert!(matches!(
        out[0].outcome,
        Err(Rejection::InsufficientCapacity { available: 5, .. })
    ));
    assert_eq!(out[1].outcome.as_ref().unwrap().accepted, 1);
    assert!(db.find_reservation("a5").await.unwrap().is_none());
}

#[tokio::test]
async fn function_usec_reports_tracked_calls() {
    let Some(db) = common::setup("function_usec_reports_tracked_calls").await else {
        return;
    };
    register(&db, &["w"], 1000).await;
    let before = db.repo.function_usec().await.unwrap();
    assert!(!before.contains_key("sched_reserve_batch"), "{before:?}");
    let mut conn = db.repo.pool().acquire().await.unwrap();
    sqlx::query("SET track_functions = 'pl'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let burst = r#"[{"worker_id": "w", "expected_version": null, "reservations": [
        {"container_id": "c", "resources": {"cpu_millicores": 1, "memory_mib": 1, "gpu_count": 0}}]}]"#;
    sqlx::query("SELECT sched_reserve_batch($1::jsonb, false)")
        .bind(burst)
        .execute(&mut *conn)
        .await
        .unwrap();
    // Published when this backend goes idle after the next statement.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("RESET track_functions")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let after = db.repo.function_usec().await.unwrap();
    let (calls, ms) = after["sched_reserve_batch"];
    assert_eq!(calls, 1, "{after:?}");
    assert!(ms > 0.0, "{after:?}");
}

/// `sched_reserve_burst` (0005), what `reserve_batch` sends: a repeated container in a direct call
/// keeps the worker-by-worker semantics too, and arrays of different lengths are refused.
#[tokio::test]
async fn the_array_burst_falls_back_and_checks_lengths() {
    let Some(db) = common::setup("the_array_burst_falls_back_and_checks_lengths").await else {
        return;
    };
    register(&db, &["w1", "w2"], 1000).await;
    let sql = "SELECT sched_reserve_burst($1, $2::text[]::numeric[], $3, $4, $5, $6, $7, $8, \
               $9, $10, false)";
    let call = |rw: Vec<i32>| {
        sqlx::query_scalar::<_, JsonValue>(sql)
            .bind(vec!["w2", "w1"])
            .bind(vec![None::<String>, None])
            .bind(rw)
            .bind(vec![1i32, 1])
            .bind(vec!["c", "c"])
            .bind(vec![10i64, 10])
            .bind(vec![10i64, 10])
            .bind(vec![0i64, 0])
            .bind(vec![None::<String>, None])
            .bind(vec![None::<i64>, None])
    };
    let out = call(vec![1, 2]).fetch_one(db.repo.pool()).await.unwrap();
    // As sched_reserve_batch: w1 comes first in id order and takes c.
    assert!(out[1]["outcome"]["Ok"].is_object(), "{out}");
    assert_eq!(out[0]["outcome"]["Err"]["worker_id"], "w1", "{out}");
    let e = call(vec![1]).fetch_one(db.repo.pool()).await.unwrap_err();
    match e {
        sqlx::Error::Database(d) => assert_eq!(d.code().as_deref(), Some("22023")),
        other => panic!("{other}"),
    }
}

/// 0006: the ledger still needs its worker (checked once per statement instead of by a foreign
/// key): moving an entry to an unknown worker and renaming a referenced worker are refused with
/// 23503, removing a worker takes its ledger with it, and a worker with no ledger can be renamed.
#[tokio::test]
async fn the_ledger_keeps_needing_its_worker() {
    let Some(db) = common::setup("the_ledger_keeps_needing_its_worker").await else {
        return;
    };
    register(&db, &["a", "b"], 100).await;
    db.reserve_batch(
        &[CapacityReservation::new(
            "a",
            vec![rr("x", 10), rr("y", 10)],
        )],
        CommitMode::AllOrNothing,
    )
    .await
    .unwrap();
    let mut raw = db.raw().await;
    let code = |e: sqlx::Error| match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()).unwrap_or_default(),
        other => panic!("not a database error: {other}"),
    };
    for sql in [
        "UPDATE reservations SET worker_id = 'nobody' WHERE container_id = 'x'",
        "UPDATE workers SET id = 'renamed' WHERE id = 'a'",
        "INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) \
         VALUES ('p', 'b', 1, 1, 0), ('q', 'nobody', 1, 1, 0)",
    ] {
        let e = sqlx::query(sql).execute(&mut raw).await.expect_err(sql);
        assert_eq!(code(e), "23503", "{sql}");
    }
    assert!(db.find_reservation("p").await.unwrap().is_none());
    sqlx::query("UPDATE workers SET id = 'b2' WHERE id = 'b'")
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(db.remove_worker("a").await.unwrap());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
