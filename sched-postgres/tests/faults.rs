//! Network faults against real PostgreSQL: lost replies (in-process and through a TCP proxy that
//! swallows the server's answer), killed connections mid-burst, and a provoked deadlock that
//! must be retried. Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, Rejection, RepoError, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};
use sched_postgres::PostgresRepository;
use sched_tests::faults::{self, run_bursts_with_faults};
use sched_tests::proxy::FaultProxy;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

fn one(worker: &str, container: &str) -> Vec<CapacityReservation> {
    vec![CapacityReservation::new(
        worker,
        vec![ResourceReservation::new(
            container,
            Resources::cpu_mem(100, 100),
        )],
    )]
}

/// A repository on the test's schema whose connections go through a fault proxy.
async fn via_proxy(db: &common::TestDb, max_connections: u32) -> (FaultProxy, PostgresRepository) {
    let config = db.repo.config().clone();
    let upstream = tokio::net::lookup_host((config.host(), config.port()))
        .await
        .unwrap()
        .next()
        .expect("server address");
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let config = config
        .with_host("127.0.0.1")
        .with_port(proxy.addr().port())
        .with_max_connections(max_connections)
        .with_acquire_timeout(Duration::from_secs(3));
    let repo = PostgresRepository::connect(config).await.unwrap();
    (proxy, repo)
}

#[tokio::test]
async fn lost_reserve_reply_is_resolved() {
    let Some(db) = common::setup("lost_reserve_reply_is_resolved").await else {
        return;
    };
    faults::check_lost_reserve_reply_is_resolved(Arc::new(db)).await;
}

#[tokio::test]
async fn lost_release_reply_is_idempotent() {
    let Some(db) = common::setup("lost_release_reply_is_idempotent").await else {
        return;
    };
    faults::check_lost_release_reply_is_idempotent(Arc::new(db)).await;
}

/// The server applies the burst but its reply never arrives (the proxy swallows it and closes
/// the connection): the call is Ambiguous (not Unavailable), and `find_reservation` shows it was
/// applied.
#[tokio::test]
async fn lost_reply_on_the_wire_is_ambiguous() {
    let Some(db) = common::setup("lost_reply_on_the_wire_is_ambiguous").await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let (proxy, repo) = via_proxy(&db, 1).await;
    // Warm the one connection up so the statement is prepared: the next call is one exchange.
    let out = repo
        .reserve_batch(&one("w", "warm"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok());
    // sqlx hands released connections back asynchronously: let the pool settle on its single
    // connection, so the next exchange on the wire is the burst's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(repo.pool().size(), 1);
    proxy.lose_next_replies(1);
    let err = repo
        .reserve_batch(&one("w", "lost"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    assert_eq!(proxy.lost(), 1);
    let rec = repo
        .find_reservation("lost")
        .await
        .unwrap()
        .expect("the lost call was applied");
    assert_eq!(rec.worker_id, "w");
    // Retrying the same burst is rejected as held (on this very worker), with no second charge.
    let again = repo
        .reserve_batch(&one("w", "lost"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert_eq!(
        again[0].outcome,
        Err(Rejection::AlreadyReserved {
            container_id: "lost".into(),
            worker_id: "w".into()
        })
    );
    assert!(repo.audit("w").await.unwrap().is_consistent());
    assert_eq!(
        repo.get_worker("w").await.unwrap().unwrap().free,
        Resources::cpu_mem(800, 800)
    );
}

/// Bursts through the scheduler while every connection is killed between (and during) bursts:
/// every container is placed once, no capacity is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_survive_killed_connections() {
    let Some(db) = common::setup("bursts_survive_killed_connections").await else {
        return;
    };
    let (proxy, repo) = via_proxy(&db, 4).await;
    let proxy = Arc::new(proxy);
    let killer = Arc::clone(&proxy);
    let run = run_bursts_with_faults(Arc::new(repo), "pg-kill", 12, 50, move |b| {
        let p = Arc::clone(&killer);
        async move {
            if b % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                p.kill_all().min(1) as u64
            } else {
                p.lose_next_replies(1);
                1
            }
        }
    })
    .await;
    assert_eq!(run.placements, 12 * 50, "{run:?}");
    assert!(run.invariants.clean(), "{run:?}");
    assert!(proxy.killed() + proxy.lost() > 0, "faults fired");
}

/// A deadlock between a burst and another transaction (the burst waits on the other's
/// uncommitted insert of the same container while holding a worker the other wants) is
/// detected by the server and retried by the repository: the caller never sees it.
#[tokio::test]
async fn deadlock_is_retried() {
    let Some(db) = common::setup("deadlock_is_retried").await else {
        return;
    };
    for w in ["w1", "w9"] {
        db.register_worker(&WorkerSpec::new(w, Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
    }
    let mut other = db.raw().await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) VALUES ('x', 'w9', 1, 1, 0)")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE workers SET free_cpu = free_cpu - 1, free_mem = free_mem - 1 WHERE id = 'w9'",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let counters = db.repo.counters();
    let before = counters.snapshot();
    let repo = db.repo.clone();
    // Locks w1, then waits for `other` on container x.
    let burst = tokio::spawn(async move {
        repo.reserve_batch(&one("w1", "x"), CommitMode::AllOrNothing)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // `other` now wants w1: a cycle. The server aborts one side after deadlock_timeout.
    let locked = sqlx::query("SELECT 1 FROM workers WHERE id = 'w1' FOR UPDATE")
        .execute(&mut other)
        .await;
    let out = match locked {
        Ok(_) => {
            // The burst was the victim; it retries and waits for w1, then sees x held on w9.
            sqlx::query("COMMIT").execute(&mut other).await.unwrap();
            let out = burst
                .await
                .unwrap()
                .expect("the deadlock never reaches the caller");
            assert_eq!(
                out[0].outcome,
                Err(Rejection::AlreadyReserved {
                    container_id: "x".into(),
                    worker_id: "w9".into()
                })
            );
            assert!(
                counters.snapshot().since(&before).round_trips >= 2,
                "it was retried"
            );
            out
        }
        Err(e) => {
            // `other` was the victim: the burst goes through.
            assert!(e.to_string().contains("deadlock"), "{e}");
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            let out = burst.await.unwrap().expect("burst succeeds");
            assert!(out[0].outcome.is_ok());
            out
        }
    };
    assert_eq!(out.len(), 1);
    other.close().await.unwrap();
    for w in ["w1", "w9"] {
        assert!(db.audit(w).await.unwrap().is_consistent());
    }
}

/// A statement that outlives `statement_timeout` is rolled back and reported as Unavailable
/// (transient, certainly not applied).
#[tokio::test]
async fn statement_timeout_is_unavailable_and_not_applied() {
    let Some(db) = common::setup_with("statement_timeout_is_unavailable", |c| {
        c.with_statement_timeout(Some(Duration::from_millis(300)))
    })
    .await
    else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    // Hold w's row so the burst waits past its timeout.
    let mut other = db.hold_worker_row("w").await;
    let err = db
        .reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert!(
        db.find_reservation("c").await.unwrap().is_none(),
        "nothing was applied"
    );
}

/// A container inserted by a concurrent transaction between the burst's holder lookup and its
/// bulk insert: the worker's part is undone and run again with a fresh look-up, with exact
/// semantics (Partial commits the prefix, the remainder names the real holder).
#[tokio::test]
async fn lost_container_race_falls_back_exactly() {
    let Some(db) = common::setup("lost_container_race_falls_back_exactly").await else {
        return;
    };
    for w in ["w1", "w9"] {
        db.register_worker(&WorkerSpec::new(w, Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
    }
    let mut other = db.hold_worker_row("w9").await;
    sqlx::query("INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu) VALUES ('x', 'w9', 100, 100, 0)")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE workers SET free_cpu = free_cpu - 100, free_mem = free_mem - 100 WHERE id = 'w9'",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let repo = db.repo.clone();
    let batch = vec![CapacityReservation::new(
        "w1",
        vec![
            ResourceReservation::new("a", Resources::cpu_mem(10, 10)),
            ResourceReservation::new("x", Resources::cpu_mem(10, 10)),
            ResourceReservation::new("b", Resources::cpu_mem(10, 10)),
        ],
    )];
    let burst = tokio::spawn(async move { repo.reserve_batch(&batch, CommitMode::Partial).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !burst.is_finished(),
        "the burst waits for the other insert of x"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let out = burst.await.unwrap().unwrap();
    let c = out[0].outcome.as_ref().expect("prefix commits");
    assert_eq!(c.accepted, 1);
    assert_eq!(
        c.remainder,
        Some(Rejection::AlreadyReserved {
            container_id: "x".into(),
            worker_id: "w9".into()
        })
    );
    assert_eq!(c.free, Resources::cpu_mem(990, 990));
    assert_eq!(
        db.find_reservation("a").await.unwrap().unwrap().worker_id,
        "w1"
    );
    assert_eq!(
        db.find_reservation("x").await.unwrap().unwrap().worker_id,
        "w9"
    );
    assert!(db.find_reservation("b").await.unwrap().is_none());
    for w in ["w1", "w9"] {
        assert!(db.audit(w).await.unwrap().is_consistent());
    }
}

/// The connection is cut (by the proxy) while a reserve waits on a row lock: the caller gets
/// `Ambiguous`, and only once the server has had time to notice the closed connection and abort
/// the statement, so a lookup made right away — with the lock released at once — is final.
#[tokio::test]
async fn connection_cut_mid_statement_is_ambiguous_and_a_lookup_right_after_is_final() {
    let test = "connection_cut_mid_statement";
    let app = format!("sched-cut-{}", sched_tests::ns::random_hex());
    let Some(db) = common::setup_with(test, |c| c.with_application_name(&app)).await else {
        return;
    };
    db.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
        .await
        .unwrap();
    let (proxy, repo) = via_proxy(&db, 1).await;
    let mut holder = db.hold_worker_row("w").await;
    let call = tokio::spawn(async move {
        repo.reserve_batch(&one("w", "c"), CommitMode::AllOrNothing)
            .await
    });
    let mut admin = db.raw().await;
    common::wait_for_lock_waiter(&mut admin, &app).await;
    assert!(proxy.kill_all() > 0);
    let err = call.await.unwrap().expect_err("its connection was cut");
    assert!(err.is_ambiguous(), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(db.find_reservation("c").await.unwrap(), None);
    assert!(common::wait_until_idle(&mut admin, &app, Duration::from_secs(10)).await);
    assert_eq!(
        db.find_reservation("c").await.unwrap(),
        None,
        "the lookup's answer is final: the cut statement did not commit later"
    );
    assert!(db.audit("w").await.unwrap().is_consistent());
}
