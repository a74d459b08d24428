//! schedctl as a process against PostgreSQL, in a fresh schema per test, seeded through the
//! library. Skips with a printed reason when `DATABASE_URL` is unset (fails under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::scenarios;
use common::stores::{catch, Lib};

fn url(test: &str) -> Option<String> {
    sched_tests::env::require_url("DATABASE_URL", test)
}

macro_rules! pg_test {
    ($name:ident, $scenario:path) => {
        #[tokio::test]
        async fn $name() {
            let Some(url) = url(stringify!($name)) else {
                return;
            };
            let lib = Lib::postgres(&url, true).await;
            let result = catch($scenario(&lib)).await;
            lib.finish(result).await;
        }
    };
}

pg_test!(reads, scenarios::reads);
pg_test!(release, scenarios::release);
pg_test!(audit, scenarios::audit);
pg_test!(lifecycle, scenarios::lifecycle);
pg_test!(audit_many_workers, scenarios::audit_many);

/// A schema never migrated: a clear message with the hint, exit 1; `schedctl migrate` fixes it.
#[tokio::test]
async fn unmigrated_schema_then_migrate() {
    let Some(url) = url("unmigrated_schema_then_migrate") else {
        return;
    };
    let lib = Lib::postgres(&url, false).await;
    let result = catch(async {
        let schema = lib.namespace().to_owned();
        for cmd in [&["workers"][..], &["audit"], &["find", "c-1"], &["sweep"]] {
            let r = lib.run(cmd).expect(1);
            assert!(r.stdout.is_empty());
            assert!(
                r.stderr.starts_with(&format!(
                    "schedctl: error: PostgreSQL schema {schema:?} is not migrated"
                )),
                "{cmd:?}: {}",
                r.stderr
            );
            assert!(
                r.stderr.ends_with(&format!(
                    "hint: run `schedctl --backend postgres --schema {schema} migrate`\n"
                )),
                "{cmd:?}: {}",
                r.stderr
            );
        }
        let r = lib.run(&["migrate"]).expect(0);
        assert_eq!(r.stdout, format!("schema {schema:?} is up to date\n"));
        assert_eq!(lib.run(&["workers"]).expect(0).stdout, "no workers\n");
        let j = lib.run(&["migrate", "--json"]).expect(0).json();
        assert_eq!(j["schema"], schema.as_str());
    })
    .await;
    lib.finish(result).await;
}
