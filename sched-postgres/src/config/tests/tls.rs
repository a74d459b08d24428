//! Unit tests of the TLS settings of [`PostgresConfig`](crate::PostgresConfig).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use crate::config::tls::{TlsInputs, TlsSource};
use crate::config::*;
use sqlx::ConnectOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nQ0VSVC1TRUNSRVQ=\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nS0VZLVNFQ1JFVA==\n-----END PRIVATE KEY-----\n";

fn file(p: &str) -> Option<TlsSource> {
    Some(TlsSource::File(PathBuf::from(p)))
}

/// The query pairs sqlx itself would put back into a URL (its record of the TLS inputs).
fn sqlx_view(c: &PostgresConfig) -> Vec<(String, String)> {
    let url = c.connect.to_url_lossy();
    url.query_pairs()
        .filter(|(k, _)| k.starts_with("ssl") && k != "sslmode")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn url_parameters_are_recorded_as_sqlx_reads_them() {
    // Aliases, and the last one given wins, as in sqlx's parser.
    let c = PostgresConfig::from_url(
        "postgres://u@h/db?sslmode=verify-full&sslrootcert=/a/ca.pem&ssl-ca=/b/ca.pem\
         &ssl-cert=/c/client.pem&sslkey=/c/client.key",
    )
    .unwrap();
    assert_eq!(c.ssl_root_cert(), Some(Path::new("/b/ca.pem")));
    assert_eq!(c.ssl_client_cert(), Some(Path::new("/c/client.pem")));
    assert_eq!(c.ssl_client_key(), Some(Path::new("/c/client.key")));
    assert_eq!(
        sqlx_view(&c),
        [
            ("sslrootcert".into(), "file: /b/ca.pem".into()),
            ("sslcert".into(), "file: /c/client.pem".into()),
            ("sslkey".into(), "file: /c/client.key".into()),
        ]
    );
}

#[test]
fn pgssl_variables_are_read_like_sqlx_and_the_url_wins() {
    let env: HashMap<&str, &str> = [
        ("PGSSLROOTCERT", CERT_PEM),
        ("PGSSLCERT", "/env/client.pem"),
        ("PGSSLKEY", "/env/client.key"),
    ]
    .into();
    let lookup = |v: &str| env.get(v).map(|s| s.to_string());
    let url = url::Url::parse("postgres://u@h/db?sslkey=/url/client.key").unwrap();
    let t = TlsInputs::of_url(&url, lookup);
    assert_eq!(t.root_cert, Some(TlsSource::Pem));
    assert_eq!(t.client_cert, file("/env/client.pem"));
    assert_eq!(t.client_key, file("/url/client.key"));
}

#[test]
fn builders_set_the_inputs_and_debug_shows_paths_but_never_pem() {
    let c = PostgresConfig::from_url("postgres://u@h/db?sslrootcert=/url/ca.pem")
        .unwrap()
        .with_ssl_root_cert("/etc/sched/ca.pem")
        .with_ssl_client_cert("/etc/sched/client.pem", "/etc/sched/client.key");
    assert_eq!(c.ssl_root_cert(), Some(Path::new("/etc/sched/ca.pem")));
    assert_eq!(
        sqlx_view(&c),
        [
            ("sslrootcert".into(), "file: /etc/sched/ca.pem".into()),
            ("sslcert".into(), "file: /etc/sched/client.pem".into()),
            ("sslkey".into(), "file: /etc/sched/client.key".into()),
        ]
    );
    let d = format!("{c:?}");
    for p in [
        "/etc/sched/ca.pem",
        "/etc/sched/client.pem",
        "/etc/sched/client.key",
    ] {
        assert!(d.contains(p), "{d}");
    }

    let c = c
        .with_ssl_root_cert_from_pem(CERT_PEM)
        .with_ssl_client_cert_from_pem(CERT_PEM, KEY_PEM);
    assert_eq!(c.ssl_root_cert(), None);
    assert_eq!(c.ssl_client_key(), None);
    // sqlx holds the PEM itself.
    assert!(sqlx_view(&c)
        .iter()
        .any(|(_, v)| v.contains("S0VZLVNFQ1JFVA")));
    let d = format!("{c:?}");
    assert!(d.contains("<PEM in memory>"), "{d}");
    for secret in ["BEGIN", "Q0VSVC1TRUNSRVQ", "S0VZLVNFQ1JFVA", "/etc/sched"] {
        assert!(!d.contains(secret), "{secret} shown: {d}");
    }
}

#[test]
fn missing_or_unpaired_files_are_found_before_connecting() {
    let dir = std::env::temp_dir().join(format!("sched-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("client.pem");
    std::fs::write(&cert, CERT_PEM).unwrap();
    let missing = dir.join("no-such.key");
    let base = || PostgresConfig::from_url("postgres://u@h/db?sslmode=verify-full").unwrap();

    assert_eq!(base().check_tls_files(), Ok(()));
    let e = base()
        .with_ssl_client_cert(&cert, &missing)
        .check_tls_files()
        .unwrap_err();
    assert!(
        e.contains("sslkey") && e.contains(&*missing.to_string_lossy()),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
    // A directory is not a certificate.
    let e = base()
        .with_ssl_root_cert(&dir)
        .check_tls_files()
        .unwrap_err();
    assert!(
        e.contains("sslrootcert") && e.contains("not a regular file"),
        "{e}"
    );
    // sqlx reads the CA only to verify; never when TLS is off.
    let require = base().with_ssl_mode("require").unwrap();
    assert_eq!(
        require.with_ssl_root_cert(&missing).check_tls_files(),
        Ok(())
    );
    let off = base().with_ssl_mode("disable").unwrap();
    assert_eq!(
        off.with_ssl_client_cert(&missing, &missing)
            .check_tls_files(),
        Ok(())
    );
    // One without the other.
    let c = PostgresConfig::from_url(&format!("postgres://u@h/db?sslcert={}", cert.display()));
    let e = c.unwrap().check_tls_files().unwrap_err();
    assert!(e.contains("sslkey"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn environment_variables_set_tls() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |var: &str| {
            (var == "DATABASE_URL")
                .then(|| "postgres://u@h/db".to_owned())
                .or_else(|| {
                    pairs
                        .iter()
                        .find(|(k, _)| *k == var)
                        .map(|(_, v)| v.to_string())
                })
        }
    };
    let c = PostgresConfig::from_env_vars(env(&[
        ("SCHED_PG_SSL_MODE", "verify-full"),
        ("SCHED_PG_SSL_ROOT_CERT", "/etc/ca.pem"),
        ("SCHED_PG_SSL_CERT", "/etc/c.pem"),
        ("SCHED_PG_SSL_KEY", "/etc/c.key"),
    ]))
    .unwrap();
    assert_eq!(c.ssl_mode(), "verify-full");
    assert_eq!(c.ssl_root_cert(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(c.ssl_client_key(), Some(Path::new("/etc/c.key")));

    let c = PostgresConfig::from_env_vars(env(&[
        ("SCHED_PG_SSL_ROOT_CERT", CERT_PEM),
        ("SCHED_PG_SSL_CERT", CERT_PEM),
        ("SCHED_PG_SSL_KEY", KEY_PEM),
    ]))
    .unwrap();
    assert_eq!((c.ssl_root_cert(), c.ssl_client_key()), (None, None));
    assert!(!format!("{c:?}").contains("S0VZLVNFQ1JFVA"));

    for (pairs, var) in [
        (
            &[("SCHED_PG_SSL_CERT", "/etc/c.pem")][..],
            "SCHED_PG_SSL_CERT",
        ),
        (&[("SCHED_PG_SSL_KEY", KEY_PEM)][..], "SCHED_PG_SSL_KEY"),
        (
            &[
                ("SCHED_PG_SSL_CERT", "/etc/c.pem"),
                ("SCHED_PG_SSL_KEY", KEY_PEM),
            ][..],
            "SCHED_PG_SSL_KEY",
        ),
        (&[("SCHED_PG_SSL_MODE", "strict")][..], "SCHED_PG_SSL_MODE"),
    ] {
        let leaked: &'static [(&'static str, &'static str)] = Box::leak(pairs.to_vec().into());
        let e = PostgresConfig::from_env_vars(env(leaked)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidSetting { name, .. } if name == var),
            "{e:?}"
        );
        assert!(!e.to_string().contains("S0VZLVNFQ1JFVA"), "{e}");
    }
}

#[cfg(feature = "serde")]
#[test]
fn deserialised_tls_settings() {
    let c: PostgresConfig = serde_json::from_str(
        r#"{"url": "postgres://u@h/db", "ssl_mode": "verify-ca",
            "ssl_root_cert": "/etc/ca.pem", "ssl_cert": "/etc/c.pem", "ssl_key": "/etc/c.key"}"#,
    )
    .unwrap();
    assert_eq!(c.ssl_mode(), "verify-ca");
    assert_eq!(c.ssl_client_cert(), Some(Path::new("/etc/c.pem")));
    let e =
        serde_json::from_str::<PostgresConfig>(r#"{"url": "postgres://u@h/db", "ssl_key": "/k"}"#)
            .unwrap_err();
    assert!(e.to_string().contains("ssl_key"), "{e}");
}
