//! A failed connection is a typed error that names the endpoint (and the user, for refused
//! credentials) and never the password; a schema that was never migrated says so (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::{RepoError, Resources, WorkerRepository, WorkerSpec};
use sched_postgres::{PostgresConfig, PostgresRepository};
use std::time::Duration;

const SECRET: &str = "s3cret-never-printed";

fn no_secret(e: &RepoError) {
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains(SECRET), "the password leaked: {shown}");
}

fn server(test: &str) -> Option<url::Url> {
    sched_tests::env::require_url("DATABASE_URL", test).map(|u| url::Url::parse(&u).unwrap())
}

fn endpoint(u: &url::Url) -> String {
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
}

/// A refused connection fails at once as `Unreachable` (not after the acquire timeout as
/// "pool timed out"), naming host and port.
#[tokio::test]
async fn a_refused_connection_is_unreachable_at_once() {
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:1/test");
    let cfg = PostgresConfig::from_url(&url)
        .unwrap()
        .with_acquire_timeout(Duration::from_secs(60));
    let e = PostgresRepository::connect(cfg).await.err().unwrap();
    assert!(matches!(e, RepoError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
    let msg = e.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    // The refusal itself, not a timeout standing in for it.
    assert!(!msg.contains("no connection within"), "{msg}");
    assert!(!msg.contains("timed out"), "{msg}");
    no_secret(&e);
}

#[tokio::test]
async fn an_unknown_database_is_misconfigured() {
    let Some(mut url) = server("an_unknown_database_is_misconfigured") else {
        return;
    };
    url.set_path("/sched_no_such_database");
    let e = PostgresRepository::connect(PostgresConfig::from_url(url.as_str()).unwrap())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RepoError::Misconfigured { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator());
    assert!(e.to_string().contains(&endpoint(&url)), "{e}");
}

#[tokio::test]
async fn an_unknown_role_is_unauthorized_and_names_host_and_user() {
    let Some(mut url) = server("an_unknown_role_is_unauthorized_and_names_host_and_user") else {
        return;
    };
    url.set_username("sched_no_such_role").unwrap();
    url.set_password(Some(SECRET)).unwrap();
    let e = PostgresRepository::connect(PostgresConfig::from_url(url.as_str()).unwrap())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RepoError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator());
    let msg = e.to_string();
    assert!(msg.contains(&endpoint(&url)), "{msg}");
    assert!(msg.contains("sched_no_such_role"), "{msg}");
    no_secret(&e);
}

/// Forgetting `migrate()`: the first call says so, instead of "function ... does not exist".
#[tokio::test]
async fn a_schema_never_migrated_is_not_migrated() {
    let Some(url) = server("a_schema_never_migrated_is_not_migrated") else {
        return;
    };
    let schema = format!("sched_never_{}", sched_tests::ns::random_hex());
    let cfg = PostgresConfig::from_url(url.as_str())
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    let repo = PostgresRepository::connect(cfg).await.unwrap();
    let e = repo
        .register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1024)))
        .await
        .unwrap_err();
    assert!(matches!(e, RepoError::NotMigrated { .. }), "{e:?}");
    assert!(!e.is_transient() && e.needs_operator());
    assert!(e.to_string().contains("migrate()"), "{e}");
    // Nothing was created: the schema does not exist.
    let e = repo.list_workers(None).await.unwrap_err();
    assert!(matches!(e, RepoError::NotMigrated { .. }), "{e:?}");
}
