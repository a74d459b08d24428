//! A role the server refuses at request time (no privileges on the tables, or credentials the
//! pool's new connection is refused with) is `Unauthorized`, naming host:port and the user,
//! not transient, and a refused write applied nothing (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use sched_core::{
    CapacityReservation, CommitMode, RepoError, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sqlx::{Connection, PgConnection};

/// A login role with a random name and no privileges; dropped (with its grants) when the
/// guard goes, even if the test panicked.
struct Role {
    name: String,
    url: String,
}

impl Role {
    async fn create(url: &str) -> Role {
        let name = format!("sched_noperm_{}", sched_tests::ns::random_hex());
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{name}\" LOGIN")))
            .execute(&mut c)
            .await
            .unwrap();
        let url = url.to_owned();
        Role { name, url }
    }

    async fn run(&self, sql: String) {
        let mut c = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let name = &self.name;
        // DROP OWNED revokes its grants in this database, so the role can go.
        let sql = vec![
            format!("DROP OWNED BY \"{name}\""),
            format!("DROP ROLE IF EXISTS \"{name}\""),
        ];
        common::cleanup::run_on_drop(&self.url, sql, &format!("role {name}"));
    }
}

#[track_caller]
fn assert_unauthorized(e: &RepoError, endpoint: &str, user: &str) {
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(endpoint) && msg.contains(user), "{msg}");
}

#[tokio::test]
async fn a_role_without_table_privileges_is_unauthorized_and_changes_nothing() {
    let test = "a_role_without_table_privileges_is_unauthorized_and_changes_nothing";
    let Some(db) = common::setup(test).await else {
        return;
    };
    let role = Role::create(db.url()).await;
    // It may look into the schema (so the functions are found) but not use the tables.
    role.run(format!(
        "GRANT USAGE ON SCHEMA \"{}\" TO \"{}\"",
        db.schema(),
        role.name
    ))
    .await;
    let cap = Resources::cpu_mem(4_000, 8_192);
    db.repo
        .register_worker(&WorkerSpec::new("w1", cap))
        .await
        .unwrap();
    let config = db.repo.config().clone().with_user(&role.name);
    let endpoint = format!("{}:{}", config.host(), config.port());
    let weak = PostgresRepository::connect(config).await.unwrap();

    let e = weak
        .register_worker(&WorkerSpec::new("w2", cap))
        .await
        .unwrap_err();
    assert_unauthorized(&e, &endpoint, &role.name);
    let e = weak.get_worker("w1").await.unwrap_err();
    assert_unauthorized(&e, &endpoint, &role.name);
    let burst = [CapacityReservation::new(
        "w1",
        vec![ResourceReservation::new(
            "c1",
            Resources::cpu_mem(1_000, 1_024),
        )],
    )];
    let e = weak
        .reserve_batch(&burst, CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert_unauthorized(&e, &endpoint, &role.name);
    weak.close().await;

    // The refused writes applied nothing.
    assert_eq!(db.repo.get_worker("w2").await.unwrap(), None);
    let w1 = db.repo.get_worker("w1").await.unwrap().unwrap();
    assert_eq!((w1.free, w1.resource_version), (cap, 1));
    assert_eq!(db.repo.find_reservation("c1").await.unwrap(), None);
    drop(role);
}

/// A role the server does not know, met when the pool opens a connection for a call (a lazy
/// pool; the same as a role dropped while the service runs).
#[tokio::test]
async fn refused_credentials_at_request_time_are_unauthorized() {
    let test = "refused_credentials_at_request_time_are_unauthorized";
    let Some(url) = sched_tests::env::require_url(common::VAR, test) else {
        return;
    };
    let user = format!("sched_gone_{}", sched_tests::ns::random_hex());
    let config = PostgresConfig::from_url(&url)
        .unwrap()
        .with_user(&user)
        .with_password("s3cret-never-printed");
    let endpoint = format!("{}:{}", config.host(), config.port());
    let repo = PostgresRepository::connect_lazy(config);
    let e = repo.list_workers(None).await.unwrap_err();
    assert_unauthorized(&e, &endpoint, &user);
    assert!(
        !format!("{e} {e:?}").contains("s3cret-never-printed"),
        "{e:?}"
    );
}
