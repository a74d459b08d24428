//! PostgreSQL-specific behaviour: round trips, SQL metacharacters, deadlock freedom under
//! concurrent bursts, the database's own constraints, schema isolation, configuration and
//! errors. Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, Rejection, RepoError, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_tests::ns::{Ns, DROP_TABLE};
use std::sync::Arc;
use std::time::Duration;

fn rr(id: &str, cpu: u64) -> ResourceReservation {
    ResourceReservation::new(id, Resources::cpu_mem(cpu, cpu))
}

/// 100 containers onto 20 workers is ONE statement; so is the release.
#[tokio::test]
async fn one_round_trip_per_burst() {
    let Some(db) = common::setup("one_round_trip_per_burst").await else {
        return;
    };
    let ns = Ns::new("rt");
    let workers: Vec<String> = (0..20).map(|i| ns.worker(&i.to_string())).collect();
    for w in &workers {
        db.register_worker(&WorkerSpec::new(
            w.clone(),
            Resources::cpu_mem(10_000, 10_000),
        ))
        .await
        .unwrap();
    }
    let batch: Vec<CapacityReservation> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            CapacityReservation::new(
                w.clone(),
                (0..5)
                    .map(|j| rr(&ns.container(&format!("{i}-{j}")), 100))
                    .collect(),
            )
        })
        .collect();
    let counters = db.repo.counters();
    // Calls and sections are counted by the layer, round trips by the backend.
    let db = sched_core::layers::Counted::with_counters(&db.repo, counters.clone());
    let before = counters.snapshot();
    let out = db
        .reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .unwrap();
    let d = counters.snapshot().since(&before);
    assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
    assert_eq!(d.round_trips, 1, "one statement for the whole burst: {d:?}");
    assert_eq!(d.reserve_calls, 1);
    assert_eq!(d.atomic_sections, 20, "one section per worker");

    let ids: Vec<String> = batch
        .iter()
        .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
        .collect();
    let before = counters.snapshot();
    let rel = db.release_batch(&ids).await.unwrap();
    let d = counters.snapshot().since(&before);
    assert!(rel.iter().all(|o| o.released.is_some()));
    assert_eq!(
        d.round_trips, 1,
        "one statement for the whole release: {d:?}"
    );
    assert_eq!(d.release_calls, 1);

    let before = counters.snapshot();
    db.get_worker(&workers[0]).await.unwrap();
    db.list_workers(None).await.unwrap();
    let d = counters.snapshot().since(&before);
    assert_eq!((d.round_trips, d.read_calls), (2, 2));
}

/// Per-container versions within one release go up one by one in input order, like memory.
#[tokio::test]
async fn release_versions_follow_input_order() {
    let Some(db) = common::setup("release_versions_follow_input_order").await else {
        return;
    };
    let ns = Ns::new("relv");
    let w = ns.worker("a");
    let v0 = db
        .register_worker(&WorkerSpec::new(w.clone(), Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap()
        .resource_version;
    let cs: Vec<String> = (0..3).map(|i| ns.container(&i.to_string())).collect();
    let batch = [CapacityReservation::new(
        w.clone(),
        cs.iter().map(|c| rr(c, 10)).collect(),
    )];
    db.reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .unwrap();
    let ids = vec![
        cs[2].clone(),
        ns.container("none"),
        cs[0].clone(),
        cs[1].clone(),
    ];
    let out = db.release_batch(&ids).await.unwrap();
    let versions: Vec<Option<u64>> = out
        .iter()
        .map(|o| o.released.as_ref().map(|r| r.new_version))
        .collect();
    assert_eq!(
        versions,
        vec![Some(v0 + 2), None, Some(v0 + 3), Some(v0 + 4)]
    );
    assert_eq!(
        db.get_worker(&w).await.unwrap().unwrap().resource_version,
        v0 + 4
    );
}

/// Ids that are SQL, quotes, backslashes and non-ASCII are plain data; the tables survive.
#[tokio::test]
async fn sql_metacharacters_are_data() {
    let Some(db) = common::setup("sql_metacharacters_are_data").await else {
        return;
    };
    let nasty = [
        DROP_TABLE.to_owned(),
        "x'); DELETE FROM reservations; --".to_owned(),
        "\"; DROP SCHEMA public CASCADE; --".to_owned(),
        "back\\slash\\'".to_owned(),
        "$1 $$ $fn$ %s %% _ *".to_owned(),
        "日本語 ✓ é".to_owned(),
        "'".repeat(100),
    ];
    for (i, id) in nasty.iter().enumerate() {
        let spec = WorkerSpec::new(id.clone(), Resources::new(1000, 1000, 1))
            .with_pool(format!("{id}-pool"))
            .with_gpu_type(id.clone());
        let w = db.register_worker(&spec).await.unwrap();
        assert_eq!(&w.id, id);
        let c = format!("{id}#{i}");
        let out = db
            .reserve_batch(
                &[CapacityReservation::new(
                    id.clone(),
                    vec![
                        ResourceReservation::new(c.clone(), Resources::new(10, 10, 1))
                            .with_gpu_type(id.clone()),
                    ],
                )],
                CommitMode::AllOrNothing,
            )
            .await
            .unwrap();
        assert!(out[0].outcome.is_ok(), "{out:?}");
        let rec = db.find_reservation(&c).await.unwrap().unwrap();
        assert_eq!(
            (&rec.worker_id, &rec.container_id, &rec.gpu_type),
            (id, &c, &Some(id.clone()))
        );
        let listed = db.list_workers(Some(&format!("{id}-pool"))).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].gpu_type.as_deref(), Some(id.as_str()));
    }
    let all = db.list_workers(None).await.unwrap();
    assert_eq!(all.len(), nasty.len(), "every worker is still there");
    // ordered by id, byte-wise (COLLATE "C"), like the reference backend
    let mut sorted: Vec<&String> = nasty.iter().collect();
    sorted.sort();
    assert_eq!(all.iter().map(|w| &w.id).collect::<Vec<_>>(), sorted);
    for id in &nasty {
        assert!(db.audit(id).await.unwrap().is_consistent());
        assert_eq!(db.list_reservations(id).await.unwrap().len(), 1);
    }
    // A NUL byte is rejected before it reaches the server (Postgres text cannot hold it).
    let err = db.get_worker("a\0b").await.unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err}");
}

/// Many concurrent bursts over overlapping workers, listed in opposite orders, some sharing
/// container ids: no call fails (no deadlock surfaces), nothing is overcommitted, every ledger
/// matches its free capacity, and every container has at most one holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bursts_in_opposite_orders_never_deadlock_nor_overcommit() {
    let Some(db) = common::setup("concurrent_bursts_opposite_orders").await else {
        return;
    };
    let db = Arc::new(db);
    let ns = Ns::new("deadlock");
    let workers: Vec<String> = (0..8).map(|i| ns.worker(&i.to_string())).collect();
    for w in &workers {
        db.register_worker(&WorkerSpec::new(
            w.clone(),
            Resources::cpu_mem(2_000, 2_000),
        ))
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let db = Arc::clone(&db);
        let workers = workers.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut placed = 0usize;
            for round in 0..12usize {
                let mut order: Vec<&String> = workers.iter().collect();
                if t % 2 == 1 {
                    order.reverse();
                }
                order.rotate_left(round % workers.len());
                let batch: Vec<CapacityReservation> = order
                    .iter()
                    .enumerate()
                    .map(|(k, w)| {
                        // Containers shared between tasks t and t^1 (in opposite worker orders):
                        // the one-holder race under opposite lock orders.
                        let shared = ns.container(&format!("s-{}-{round}-{k}", t / 2));
                        let own = ns.container(&format!("o-{t}-{round}-{k}"));
                        CapacityReservation::new((*w).clone(), vec![rr(&own, 30), rr(&shared, 20)])
                    })
                    .collect();
                let mode = if (t + round) % 2 == 0 {
                    CommitMode::AllOrNothing
                } else {
                    CommitMode::Partial
                };
                let out = db
                    .reserve_batch(&batch, mode)
                    .await
                    .unwrap_or_else(|e| panic!("task {t} round {round}: {e}"));
                for r in &out {
                    match &r.outcome {
                        Ok(c) => placed += c.accepted,
                        Err(
                            Rejection::AlreadyReserved { .. }
                            | Rejection::InsufficientCapacity { .. },
                        ) => {}
                        Err(e) => panic!("unexpected rejection {e:?}"),
                    }
                }
                if round % 3 == 2 {
                    let ids: Vec<String> = batch
                        .iter()
                        .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
                        .collect();
                    db.release_batch(&ids)
                        .await
                        .unwrap_or_else(|e| panic!("release: {e}"));
                }
            }
            placed
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut holders = std::collections::HashMap::new();
    for w in &workers {
        let a = db.audit(w).await.unwrap();
        assert!(a.is_consistent(), "{a:?}");
        assert!(a.reserved.le(&a.total), "overcommitted: {a:?}");
        for r in db.list_reservations(w).await.unwrap() {
            assert!(
                holders.insert(r.container_id.clone(), w.clone()).is_none(),
                "two holders"
            );
        }
    }
}

/// The database itself refuses free outside [0, total], a second holder, and orphan ledgers.
#[tokio::test]
async fn check_constraints_hold() {
    let Some(db) = common::setup("check_constraints_hold").await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    db.reserve_batch(
        &[CapacityReservation::new("w", vec![rr("c", 100)])],
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
        "UPDATE workers SET free_cpu = total_cpu + 1 WHERE id = 'w'",
        "UPDATE workers SET free_mem = -1 WHERE id = 'w'",
        "UPDATE workers SET version = 0 WHERE id = 'w'",
        "UPDATE workers SET status = 'gone' WHERE id = 'w'",
        "INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) VALUES ('z', 'w', 0, 0, 0)",
    ] {
        let e = sqlx::query(sql).execute(&mut raw).await.expect_err(sql);
        assert_eq!(code(e), "23514", "check_violation for {sql}");
    }
    let e = sqlx::query("INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) VALUES ('c', 'w', 1, 1, 0)")
        .execute(&mut raw)
        .await
        .unwrap_err();
    assert_eq!(code(e), "23505", "the primary key allows one holder");
    let e = sqlx::query("INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) VALUES ('d', 'nobody', 1, 1, 0)")
        .execute(&mut raw)
        .await
        .unwrap_err();
    assert_eq!(code(e), "23503", "a ledger entry needs its worker");
    // remove cascades the ledger
    assert!(db.remove_worker("w").await.unwrap());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// Versions never repeat for an id across remove and re-register, even from another process.
#[tokio::test]
async fn versions_never_repeat_across_remove() {
    let Some(db) = common::setup("versions_never_repeat_across_remove").await else {
        return;
    };
    let other = db.another().await;
    let spec = WorkerSpec::new("w", Resources::cpu_mem(1000, 1000));
    let mut seen = std::collections::HashSet::new();
    for i in 0..5 {
        let repo: &dyn WorkerRepository = if i % 2 == 0 { &db.repo } else { &other };
        let w = repo.register_worker(&spec).await.unwrap();
        assert!(
            seen.insert(w.resource_version),
            "version {} repeated",
            w.resource_version
        );
        let out = repo
            .reserve_batch(
                &[CapacityReservation::new("w", vec![rr(&format!("c{i}"), 1)])],
                CommitMode::Partial,
            )
            .await
            .unwrap();
        let v = out[0].outcome.as_ref().unwrap().new_version;
        assert!(seen.insert(v));
        assert!(repo.remove_worker("w").await.unwrap());
        assert!(!repo.remove_worker("w").await.unwrap());
    }
}

/// Drift injected behind the repository's back is found by audit and repaired by reconcile.
#[tokio::test]
async fn reconcile_repairs_drift() {
    let Some(db) = common::setup("reconcile_repairs_drift").await else {
        return;
    };
    let w = db
        .register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    db.reserve_batch(
        &[CapacityReservation::new("w", vec![rr("c", 100)])],
        CommitMode::AllOrNothing,
    )
    .await
    .unwrap();
    assert!(db
        .repo
        .corrupt_free("w", Resources::cpu_mem(1000, 900))
        .await
        .unwrap());
    assert!(!db
        .repo
        .corrupt_free("nobody", Resources::ZERO)
        .await
        .unwrap());
    let a = db.audit("w").await.unwrap();
    assert!(!a.is_consistent());
    assert_eq!(a.drift.cpu_millicores, 100);
    let r = db.reconcile("w").await.unwrap();
    assert_eq!(r, a, "reconcile reports the state before repair");
    let after = db.get_worker("w").await.unwrap().unwrap();
    assert_eq!(after.free, Resources::cpu_mem(900, 900));
    assert_eq!(after.resource_version, w.resource_version + 2);
    assert!(db.audit("w").await.unwrap().is_consistent());
    assert!(matches!(
        db.audit("nobody").await,
        Err(RepoError::UnknownWorker(_))
    ));
    assert!(matches!(
        db.reconcile("nobody").await,
        Err(RepoError::UnknownWorker(_))
    ));
    assert!(matches!(
        db.list_reservations("nobody").await,
        Err(RepoError::UnknownWorker(_))
    ));
}

/// Two schemas on one database do not see each other; migrate is idempotent.
#[tokio::test]
async fn schemas_keep_runs_apart() {
    let Some(a) = common::setup("schemas_keep_runs_apart_a").await else {
        return;
    };
    let Some(b) = common::setup("schemas_keep_runs_apart_b").await else {
        return;
    };
    a.register_worker(&WorkerSpec::new("same-id", Resources::cpu_mem(1, 1)))
        .await
        .unwrap();
    assert!(b.get_worker("same-id").await.unwrap().is_none());
    a.repo.migrate().await.unwrap();
    a.repo.migrate().await.unwrap();
    assert!(
        a.get_worker("same-id").await.unwrap().is_some(),
        "re-running migrate keeps data"
    );
    let mut raw = a.raw().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        n,
        sched_postgres::MIGRATOR.iter().count() as i64,
        "history lives in the schema"
    );
}

/// Neither the config's nor the repository's Debug shows the password.
#[tokio::test]
async fn debug_never_shows_the_password() {
    let Some(url) = sched_tests::env::require_url(common::VAR, "debug_never_shows_the_password")
    else {
        return;
    };
    // trust auth ignores the password; if the URL has one already, that one must not show.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (with_pw, pw) = match rest.split_once('@') {
        Some((user, _)) if user.contains(':') => {
            (url.clone(), user.split_once(':').unwrap().1.to_owned())
        }
        Some((user, host)) => (
            format!("{scheme}://{user}:s3cr3t-pw@{host}"),
            "s3cr3t-pw".to_owned(),
        ),
        None => (
            format!("{scheme}://postgres:s3cr3t-pw@{rest}"),
            "s3cr3t-pw".to_owned(),
        ),
    };
    let config = PostgresConfig::from_url(&with_pw)
        .unwrap()
        .with_schema(&common::random_schema())
        .unwrap();
    assert!(!format!("{config:?}").contains(&pw));
    assert!(!format!("{config:#?}").contains(&pw));
    let repo = PostgresRepository::connect_lazy(config);
    assert!(!format!("{repo:?}").contains(&pw), "{repo:?}");
}

/// Nothing listens: connect fails fast with a typed Unreachable error naming host and port, and a
/// call on a lazy pool with Unavailable. No call is ever Ambiguous when nothing was sent.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = PostgresConfig::from_url(&format!("postgres://postgres:pw@127.0.0.1:{port}/test"))
        .unwrap()
        .with_acquire_timeout(Duration::from_millis(800));
    let start = std::time::Instant::now();
    let err = PostgresRepository::connect(config.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient() && !err.is_ambiguous());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(!err.to_string().contains("pw@"), "{err}");
    let lazy = PostgresRepository::connect_lazy(config);
    let err = lazy
        .reserve_batch(
            &[CapacityReservation::new("w", vec![rr("c", 1)])],
            CommitMode::AllOrNothing,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    let err = lazy.migrate().await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
}

/// Bad input changes nothing and is typed, before any round trip.
#[tokio::test]
async fn bad_input_is_rejected_without_a_round_trip() {
    let Some(db) = common::setup("bad_input_is_rejected_without_a_round_trip").await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let counters = db.repo.counters();
    let before = counters.snapshot();
    let bad = [
        vec![CapacityReservation::new("w", vec![rr("c", 1), rr("c", 1)])],
        vec![CapacityReservation::new(
            "w",
            vec![ResourceReservation::new("z", Resources::ZERO)],
        )],
        vec![CapacityReservation::new("", vec![rr("c", 1)])],
        vec![CapacityReservation::new("w", vec![rr("c\u{7}", 1)])],
        vec![CapacityReservation::new(
            "w",
            vec![ResourceReservation::new(
                "big",
                Resources::new(u64::MAX, 1, 0),
            )],
        )],
    ];
    for b in &bad {
        let e = db.reserve_batch(b, CommitMode::Partial).await.unwrap_err();
        assert!(matches!(e, RepoError::InvalidInput(_)), "{e:?}");
    }
    assert!(matches!(
        db.release_batch(&["x".into(), "x".into()]).await,
        Err(RepoError::InvalidInput(_))
    ));
    assert_eq!(counters.snapshot().since(&before).round_trips, 0);
    assert_eq!(
        db.get_worker("w").await.unwrap().unwrap().free,
        Resources::cpu_mem(1000, 1000)
    );
    assert!(PostgresConfig::from_url("postgres://u@h/db")
        .unwrap()
        .with_schema("x; DROP")
        .is_err());
}
