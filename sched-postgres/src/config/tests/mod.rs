//! Unit tests of [`PostgresConfig`](super::PostgresConfig); its TLS settings in [`tls`].
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

mod tls;

#[test]
fn debug_redacts_password() {
    let c = PostgresConfig::from_url("postgres://alice:hunter2@localhost:5433/db?sslmode=require")
        .unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains("hunter2"), "{d}");
    assert!(d.contains("<redacted>"), "{d}");
    assert!(
        d.contains("alice") && d.contains("5433") && d.contains("require"),
        "{d}"
    );
    let c = PostgresConfig::from_url("postgres://bob@localhost/db").unwrap();
    assert!(format!("{c:?}").contains("<none in url>"));
}

#[test]
fn bad_url_does_not_echo_it() {
    let e = PostgresConfig::from_url("postgres://alice:hunter2@localhost:notaport/db")
        .expect_err("invalid port");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn schema_names() {
    for ok in ["sched", "_x", "sched_test_0123", &"a".repeat(63)] {
        assert!(validate_schema(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "Sched",
        "1abc",
        "pg_catalog",
        "a-b",
        "a\"b",
        "x; DROP SCHEMA public",
        "é",
        &"a".repeat(64),
    ] {
        assert!(validate_schema(bad).is_err(), "{bad}");
    }
    assert_eq!(quote_ident("sched"), "\"sched\"");
}

#[test]
fn options_carry_schema_and_timeout() {
    let c = PostgresConfig::from_url("postgres://u@h/db")
        .unwrap()
        .with_schema("abc")
        .unwrap()
        .with_statement_timeout(Some(Duration::from_millis(1500)));
    let o = c.connect_options();
    let s = o.get_options().unwrap_or_default().to_owned();
    assert!(s.contains("search_path=abc"), "{s}");
    assert!(s.contains("statement_timeout=1500"), "{s}");
}

#[test]
fn session_settings_are_pinned_after_the_urls() {
    let url = "postgres://u@h/db?options=-c%20lock_timeout%3D5%20-c%20\
               default_transaction_isolation%3Dserializable";
    let c = PostgresConfig::from_url(url)
        .unwrap()
        .with_lock_timeout(Some(Duration::from_millis(250)))
        .with_idle_in_transaction_timeout(None)
        .with_client_connection_check_interval(Some(Duration::from_secs(2)))
        .with_statement_timeout(None);
    let o = c.connect_options();
    let s = o.get_options().unwrap_or_default().to_owned();
    let ours = s.find("lock_timeout=250").expect("pinned lock_timeout");
    assert!(
        s.find("lock_timeout=5").is_some_and(|url| url < ours),
        "{s}"
    );
    let ours = s
        .find("default_transaction_isolation=read\\ committed")
        .expect("pinned isolation");
    assert!(s.find("=serializable").is_some_and(|url| url < ours), "{s}");
    assert!(s.contains("idle_in_transaction_session_timeout=0"), "{s}");
    assert!(s.contains("client_connection_check_interval=2000"), "{s}");
    assert!(!s.contains("statement_timeout="), "{s}");
    let c = c.with_client_connection_check_interval(None);
    let s = c
        .connect_options()
        .get_options()
        .unwrap_or_default()
        .to_owned();
    assert!(!s.contains("client_connection_check_interval"), "{s}");
    assert_eq!(c.lock_timeout(), Some(Duration::from_millis(250)));
    assert_eq!(c.call_timeout(), Some(Duration::from_secs(40)));
}

#[test]
fn application_name_is_set() {
    let c = PostgresConfig::from_url("postgres://u@h/db?application_name=url").unwrap();
    assert_eq!(c.application_name(), Some("url"));
    let c = c.with_application_name("sched-x");
    assert_eq!(c.application_name(), Some("sched-x"));
    assert_eq!(c.connect_options().get_application_name(), Some("sched-x"));
}

#[test]
fn builders_set_what_the_url_would() {
    let c = PostgresConfig::from_url("postgres://u@h/db")
        .unwrap()
        .with_user("app")
        .with_database("sched")
        .with_ssl_mode("Verify-Full")
        .unwrap();
    assert_eq!((c.user(), c.database()), ("app", Some("sched")));
    assert_eq!(c.ssl_mode(), "verify-full");
    assert!(format!("{c:?}").contains("<none in url>"));
    let c = c.with_password("hunter2");
    let d = format!("{c:?}");
    assert!(!d.contains("hunter2") && d.contains("<redacted>"), "{d}");
    let e = c.with_ssl_mode("sometimes").unwrap_err();
    assert!(
        matches!(&e, ConfigError::InvalidSetting { name, .. } if name == "sslmode"),
        "{e:?}"
    );
}

/// A lookup over fixed pairs (never the process environment).
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

const URL: &str = "postgres://app:hunter2@db:5433/sched";

#[test]
fn env_defaults_are_the_urls() {
    let c = PostgresConfig::from_env_vars(vars(&[("DATABASE_URL", URL)])).unwrap();
    let d = PostgresConfig::from_url(URL).unwrap();
    assert_eq!(format!("{c:?}"), format!("{d:?}"));
    assert_eq!((c.host(), c.port(), c.user()), ("db", 5433, "app"));
}

#[test]
fn env_sets_every_variable() {
    let c = PostgresConfig::from_env_vars(vars(&[
        ("DATABASE_URL", URL),
        ("SCHED_PG_SCHEMA", "sched_env"),
        ("SCHED_PG_APPLICATION_NAME", "svc"),
        ("SCHED_PG_MAX_CONNECTIONS", "3"),
        ("SCHED_PG_ACQUIRE_TIMEOUT_MS", "1500"),
        ("SCHED_PG_STATEMENT_TIMEOUT_MS", "0"),
        ("SCHED_PG_LOCK_TIMEOUT_MS", "250"),
        ("SCHED_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS", "0"),
        ("SCHED_PG_CLIENT_CONNECTION_CHECK_INTERVAL_MS", "2000"),
        ("SCHED_PG_CALL_TIMEOUT_MS", " 9000 "),
        ("SCHED_PG_TEST_BEFORE_ACQUIRE", "TRUE"),
        ("SCHED_PG_MAX_RETRIES", "0"),
    ]))
    .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(c.schema(), "sched_env");
    assert_eq!(c.application_name(), Some("svc"));
    assert_eq!(c.max_connections(), 3);
    assert_eq!(c.acquire_timeout(), ms(1500));
    assert_eq!(c.statement_timeout(), None);
    assert_eq!(c.lock_timeout(), Some(ms(250)));
    assert_eq!(c.idle_in_transaction_timeout(), None);
    assert_eq!(c.client_connection_check_interval(), Some(ms(2000)));
    assert_eq!(c.call_timeout(), Some(ms(9000)));
    assert!(c.test_before_acquire);
    assert_eq!(c.max_retries(), 0);
    // An empty value is unset.
    let c = PostgresConfig::from_env_vars(vars(&[("DATABASE_URL", URL), ("SCHED_PG_SCHEMA", "")]))
        .unwrap();
    assert_eq!(c.schema(), DEFAULT_SCHEMA);
}

#[test]
fn env_errors_name_the_variable_never_the_password() {
    let e = PostgresConfig::from_env_vars(vars(&[])).unwrap_err();
    assert_eq!(
        e,
        ConfigError::MissingVar {
            var: "DATABASE_URL"
        }
    );
    assert_eq!(
        e.to_string(),
        "environment variable DATABASE_URL is not set"
    );
    let e = PostgresConfig::from_env_vars(vars(&[("DATABASE_URL", "")])).unwrap_err();
    assert_eq!(
        e,
        ConfigError::MissingVar {
            var: "DATABASE_URL"
        }
    );
    let bad = [
        ("SCHED_PG_SCHEMA", "Bad-Name"),
        ("SCHED_PG_MAX_CONNECTIONS", "0"),
        ("SCHED_PG_MAX_CONNECTIONS", "ten"),
        ("SCHED_PG_MAX_CONNECTIONS", "4294967296"),
        ("SCHED_PG_ACQUIRE_TIMEOUT_MS", "0"),
        ("SCHED_PG_STATEMENT_TIMEOUT_MS", "-1"),
        ("SCHED_PG_LOCK_TIMEOUT_MS", "1.5"),
        ("SCHED_PG_CALL_TIMEOUT_MS", "1s"),
        ("SCHED_PG_TEST_BEFORE_ACQUIRE", "yes"),
        ("SCHED_PG_MAX_RETRIES", "many"),
    ];
    for (var, value) in bad {
        let e = PostgresConfig::from_env_vars(vars(&[("DATABASE_URL", URL), (var, value)]))
            .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidSetting { name, .. } if name == var),
            "{var}={value}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("invalid {var}: ")), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    let url = "postgres://app:hunter2@db:notaport/sched";
    let e = PostgresConfig::from_env_vars(vars(&[("DATABASE_URL", url)])).unwrap_err();
    assert!(
        matches!(&e, ConfigError::InvalidSetting { name, .. } if name == "DATABASE_URL"),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

#[cfg(feature = "serde")]
mod serde {
    use super::*;

    fn parse(json: &str) -> Result<PostgresConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn deserialises_through_the_builders() {
        let c = parse(
            r#"{"url": "postgres://app:hunter2@db/sched", "schema": "s1",
                "application_name": "svc", "max_connections": 4, "acquire_timeout_ms": 800,
                "statement_timeout_ms": 0, "lock_timeout_ms": 100,
                "idle_in_transaction_timeout_ms": 5000,
                "client_connection_check_interval_ms": 0, "call_timeout_ms": 7000,
                "test_before_acquire": true, "max_retries": 2}"#,
        )
        .unwrap();
        let ms = Duration::from_millis;
        assert_eq!((c.schema(), c.application_name()), ("s1", Some("svc")));
        assert_eq!((c.max_connections(), c.acquire_timeout()), (4, ms(800)));
        assert_eq!(c.statement_timeout(), None);
        assert_eq!(c.lock_timeout(), Some(ms(100)));
        assert_eq!(c.idle_in_transaction_timeout(), Some(ms(5000)));
        assert_eq!(c.client_connection_check_interval(), None);
        assert_eq!(c.call_timeout(), Some(ms(7000)));
        assert!(c.test_before_acquire);
        assert_eq!(c.max_retries(), 2);
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = parse(r#"{"url": "postgres://u@h/db"}"#).unwrap();
        assert_eq!(c.schema(), DEFAULT_SCHEMA);
    }

    #[test]
    fn bad_fields_are_errors_naming_the_field() {
        let cases = [
            (r#"{"schema": "s"}"#, "missing field `url`"),
            (
                r#"{"url": "postgres://u@h/db", "passwrd": "x"}"#,
                "unknown field `passwrd`",
            ),
            (
                r#"{"url": "postgres://u@h/db", "schema": "Bad-Name"}"#,
                "invalid schema: ",
            ),
            (
                r#"{"url": "postgres://u@h/db", "max_connections": 0}"#,
                "invalid max_connections",
            ),
            (
                r#"{"url": "postgres://u@h/db", "lock_timeout_ms": -1}"#,
                "invalid value",
            ),
            (r#"{"url": "postgres://u:hunter2@h:x/db"}"#, "invalid url: "),
        ];
        for (json, expected) in cases {
            let e = parse(json).unwrap_err();
            assert!(e.contains(expected), "{json}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
