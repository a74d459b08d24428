//! [`TlsFiles`]: the `--tls-ca-file`, `--tls-client-cert` and `--tls-client-key` flags (the same
//! as schedctl's), applied to every connection the simulator opens: the backends it measures
//! (sched-redis's [`RedisTls`], sched-postgres's `sslrootcert` and client certificate) and its
//! own raw connections (the floor's raw commit, the peer, the baselines' Redis locks, the
//! chaos soak's direct PostgreSQL pool). The files are read and checked by
//! [`TlsFiles::check`] before anything connects: a missing or wrong file is a
//! [`SimError::Tls`] naming the flag and the path, never a panic and never a half-open run.

use crate::SimError;
use redis::IntoConnectionInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sched_postgres::PostgresConfig;
use sched_redis::{RedisConfig, RedisTls};
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};

/// The TLS files of one run. Empty (the default): the URLs alone decide (`rediss://` verifies
/// against the public web roots; PostgreSQL follows its `sslmode`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-ca-file`: the CA bundle (PEM) trusted for the server's certificate; for Redis it
    /// replaces the public web roots, for PostgreSQL it is the `sslrootcert` (with
    /// `sslmode=verify-ca` or `verify-full` in the URL).
    pub ca_file: Option<PathBuf>,
    /// `--tls-client-cert` and `--tls-client-key`: the client certificate (PEM, with any
    /// intermediates) and its private key (PEM), presented to a server that asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Reads `path` for `flag`.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|e| SimError::Tls {
        flag,
        path: path.to_owned(),
        reason: format!("cannot be read: {e}"),
    })
}

/// Reads `path` for `flag` and checks that it holds at least one PEM certificate.
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<u8>, SimError> {
    let pem = read(flag, path)?;
    let bad = |reason: String| SimError::Tls {
        flag,
        path: path.to_owned(),
        reason,
    };
    let n = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("bad PEM: {e}")))?
        .len();
    if n == 0 {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

/// Reads `path` for `flag` and checks that it holds a PEM private key. The error never quotes
/// the file.
fn private_key(flag: &'static str, path: &Path) -> Result<Vec<u8>, SimError> {
    let pem = read(flag, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return Err(SimError::Tls {
            flag,
            path: path.to_owned(),
            reason: "holds no PEM private key".to_owned(),
        });
    }
    Ok(pem)
}

impl TlsFiles {
    /// From the three flags (clap makes the certificate and the key come together; a lone one
    /// is ignored here).
    pub fn new(
        ca_file: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> Self {
        TlsFiles {
            ca_file,
            client_cert: client_cert.zip(client_key),
        }
    }

    /// True when no flag was given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none()
    }

    /// Reads every file and checks its content (a CA bundle and a client certificate hold PEM
    /// certificates, the key a PEM private key), before anything connects.
    pub fn check(&self) -> Result<(), SimError> {
        self.load().map(|_| ())
    }

    /// The files read and checked, in redis-rs's form.
    fn load(&self) -> Result<redis::TlsCertificates, SimError> {
        let root_cert = match &self.ca_file {
            Some(ca) => Some(certificates("--tls-ca-file", ca)?),
            None => None,
        };
        let client_tls = match &self.client_cert {
            Some((cert, key)) => Some(redis::ClientTlsConfig {
                client_cert: certificates("--tls-client-cert", cert)?,
                client_key: private_key("--tls-client-key", key)?,
            }),
            None => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }

    /// sched-redis's form, `None` when no flag was given.
    pub fn redis_tls(&self) -> Option<RedisTls> {
        if self.is_empty() {
            return None;
        }
        let mut tls = RedisTls::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.with_ca_file(ca);
        }
        if let Some((cert, key)) = &self.client_cert {
            tls = tls.with_client_cert_files(cert, key);
        }
        Some(tls)
    }

    /// `config` with these files (unchanged when no flag was given).
    pub fn redis_config(&self, config: RedisConfig) -> RedisConfig {
        match self.redis_tls() {
            Some(tls) => config.with_tls(tls),
            None => config,
        }
    }

    /// `config` with these files as `sslrootcert` and client certificate (unchanged when no
    /// flag was given).
    pub fn postgres_config(&self, config: PostgresConfig) -> PostgresConfig {
        let config = match &self.ca_file {
            Some(ca) => config.with_ssl_root_cert(ca),
            None => config,
        };
        match &self.client_cert {
            Some((cert, key)) => config.with_ssl_client_cert(cert, key),
            None => config,
        }
    }

    /// sqlx's connection options of `url` with these files, for a raw pool.
    pub fn pg_connect_options(&self, url: &str) -> Result<PgConnectOptions, SimError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| SimError::Config(format!("--database-url: {e}")))?;
        let options = match &self.ca_file {
            Some(ca) => options.ssl_root_cert(ca),
            None => options,
        };
        Ok(match &self.client_cert {
            Some((cert, key)) => options.ssl_client_cert(cert).ssl_client_key(key),
            None => options,
        })
    }

    /// A redis-rs client of one node (`info`: a URL or connection info) for the simulator's own
    /// connections, with these files (the URL must then be `rediss://`).
    pub fn redis_client(&self, info: impl IntoConnectionInfo) -> Result<redis::Client, SimError> {
        let unavailable =
            |e: redis::RedisError| SimError::BackendUnavailable("redis".into(), e.to_string());
        if self.is_empty() {
            return redis::Client::open(info).map_err(unavailable);
        }
        let certs = self.load()?;
        let info = info.into_connection_info().map_err(unavailable)?;
        if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            return Err(SimError::Config(
                "--tls-ca-file / --tls-client-cert need a rediss:// Redis URL".into(),
            ));
        }
        redis::Client::build_with_tls(info, certs).map_err(unavailable)
    }

    /// The flags again, for a child process (contention `--processes`).
    pub fn args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        let mut a = Vec::new();
        if let Some(ca) = &self.ca_file {
            a.extend(["--tls-ca-file".to_owned(), path(ca)]);
        }
        if let Some((cert, key)) = &self.client_cert {
            a.extend([
                "--tls-client-cert".to_owned(),
                path(cert),
                "--tls-client-key".to_owned(),
                path(key),
            ]);
        }
        a
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn no_flag_changes_nothing() {
        let t = TlsFiles::default();
        assert!(t.is_empty() && t.redis_tls().is_none() && t.args().is_empty());
        t.check().unwrap();
    }

    #[test]
    fn the_flags_go_to_a_child_as_given() {
        let t = TlsFiles::new(
            Some("/x/ca.pem".into()),
            Some("/x/c.pem".into()),
            Some("/x/c.key".into()),
        );
        assert_eq!(
            t.args(),
            [
                "--tls-ca-file",
                "/x/ca.pem",
                "--tls-client-cert",
                "/x/c.pem",
                "--tls-client-key",
                "/x/c.key"
            ]
        );
        assert!(format!("{:?}", t.redis_tls().unwrap()).contains("/x/ca.pem"));
    }

    #[test]
    fn a_bad_file_is_named_before_connecting() {
        let missing = TlsFiles::new(Some("/nonexistent/ca.pem".into()), None, None);
        let e = missing.check().unwrap_err();
        assert!(
            matches!(
                e,
                SimError::Tls {
                    flag: "--tls-ca-file",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        // Not PEM at all: this very source file.
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tls.rs");
        let e = TlsFiles::new(Some(here.clone()), None, None)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        // The raw client refuses before connecting too.
        let e = missing.redis_client("rediss://127.0.0.1:1").unwrap_err();
        assert!(matches!(e, SimError::Tls { .. }), "{e}");
    }
}
