//! `Deserialize` for [`RedisConfig`] (feature `serde`).

use super::RedisConfig;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The serialized form: `urls` required, every other field defaulting as in
/// [`RedisConfig::from_url`], durations in whole milliseconds, unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    urls: Vec<String>,
    #[serde(default)]
    cluster: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    response_timeout_ms: Option<u64>,
    #[serde(default)]
    reconnect_retries: Option<usize>,
    #[cfg(feature = "tls")]
    #[serde(default)]
    tls: Option<RawTls>,
}

/// `tls`: PEM files (feature `tls`).
#[cfg(feature = "tls")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    client_cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    client_key_file: Option<std::path::PathBuf>,
}

/// A timeout of at least 1 ms.
fn timeout<E: serde::de::Error>(
    field: &str,
    ms: Option<u64>,
    default: Duration,
) -> Result<Duration, E> {
    match ms {
        None => Ok(default),
        Some(0) => Err(E::custom(format_args!("{field} must be at least 1"))),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// Deserializes from a map with the fields' names, durations as whole milliseconds:
///
/// ```json
/// { "urls": ["redis://127.0.0.1:6379"], "cluster": false, "username": "sched",
///   "password": "...", "key_prefix": "prod", "connect_timeout_ms": 2000,
///   "response_timeout_ms": 5000, "reconnect_retries": 2,
///   "tls": { "ca_file": "/etc/sched/ca.pem", "client_cert_file": "/etc/sched/client.pem",
///            "client_key_file": "/etc/sched/client.key" } }
/// ```
///
/// `tls` (feature `tls`; every field optional, the certificate and key together) reads its
/// files when connecting.
///
/// `urls` is required (not empty); a missing field takes its [`from_url`](RedisConfig::from_url)
/// default; an unknown field, or a timeout of 0, is an error. URLs are checked when connecting.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for RedisConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d)?;
        if raw.urls.is_empty() {
            return Err(D::Error::invalid_length(0, &"at least one URL"));
        }
        let mut cfg = RedisConfig::from_url(String::new());
        cfg.urls = raw.urls;
        cfg.cluster = raw.cluster;
        cfg.username = raw.username;
        cfg.password = raw.password;
        if let Some(p) = raw.key_prefix {
            cfg.key_prefix = p;
        }
        let connect = raw.connect_timeout_ms;
        cfg.connect_timeout = timeout("connect_timeout_ms", connect, cfg.connect_timeout)?;
        let response = raw.response_timeout_ms;
        cfg.response_timeout = timeout("response_timeout_ms", response, cfg.response_timeout)?;
        if let Some(n) = raw.reconnect_retries {
            cfg.reconnect_retries = n;
        }
        #[cfg(feature = "tls")]
        if let Some(t) = raw.tls {
            let mut tls = crate::RedisTls::new();
            if let Some(ca) = t.ca_file {
                tls = tls.with_ca_file(ca);
            }
            match (t.client_cert_file, t.client_key_file) {
                (Some(c), Some(k)) => tls = tls.with_client_cert_files(c, k),
                (None, None) => {}
                _ => {
                    return Err(D::Error::custom(
                        "tls: client_cert_file and client_key_file go together",
                    ))
                }
            }
            cfg.tls = Some(tls);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(json: &str) -> Result<RedisConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn missing_fields_take_the_from_url_defaults() {
        let cfg = parse(r#"{"urls": ["redis://h:6379"]}"#).unwrap();
        let d = RedisConfig::from_url("redis://h:6379");
        assert_eq!(cfg.urls, d.urls);
        assert_eq!(cfg.cluster, d.cluster);
        assert_eq!((cfg.username, cfg.password), (None, None));
        assert_eq!(cfg.key_prefix, d.key_prefix);
        assert_eq!(cfg.connect_timeout, d.connect_timeout);
        assert_eq!(cfg.response_timeout, d.response_timeout);
        assert_eq!(cfg.reconnect_retries, d.reconnect_retries);
    }

    #[test]
    fn every_field_is_read() {
        let cfg = parse(
            r#"{"urls": ["redis://a:7001", "redis://b:7002"], "cluster": true,
                "username": "sched", "password": "pw", "key_prefix": "prod",
                "connect_timeout_ms": 250, "response_timeout_ms": 9000, "reconnect_retries": 0}"#,
        )
        .unwrap();
        assert_eq!(cfg.urls, ["redis://a:7001", "redis://b:7002"]);
        assert!(cfg.cluster);
        assert_eq!(cfg.username.as_deref(), Some("sched"));
        assert_eq!(cfg.password.as_deref(), Some("pw"));
        assert_eq!(cfg.key_prefix, "prod");
        assert_eq!(cfg.connect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.response_timeout, Duration::from_millis(9000));
        assert_eq!(cfg.reconnect_retries, 0);
    }

    #[test]
    fn bad_documents_are_refused() {
        for (json, expect) in [
            (r#"{"cluster": true}"#, "missing field `urls`"),
            (r#"{"urls": []}"#, "at least one URL"),
            (
                r#"{"urls": ["redis://h"], "prefix": "p"}"#,
                "unknown field `prefix`",
            ),
            (
                r#"{"urls": ["redis://h"], "connect_timeout": 5}"#,
                "unknown field",
            ),
            (
                r#"{"urls": ["redis://h"], "response_timeout_ms": 0}"#,
                "at least 1",
            ),
            (
                r#"{"urls": ["redis://h"], "connect_timeout_ms": "2s"}"#,
                "invalid type",
            ),
        ] {
            let e = parse(json).err().unwrap().to_string();
            assert!(e.contains(expect), "{json}: {e}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_files() {
        let cfg = parse(r#"{"urls": ["rediss://h:6390"], "tls": {"ca_file": "/ca.pem"}}"#).unwrap();
        assert!(format!("{:?}", cfg.tls).contains("/ca.pem"));
        let e = parse(r#"{"urls": ["rediss://h"], "tls": {"client_cert_file": "/c.pem"}}"#);
        assert!(e.err().unwrap().to_string().contains("go together"));
        let e = parse(r#"{"urls": ["rediss://h"], "tls": {"ca": "/c.pem"}}"#);
        assert!(e.err().unwrap().to_string().contains("unknown field"));
    }
}
