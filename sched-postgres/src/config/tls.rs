//! The TLS inputs of [`PostgresConfig`]: CA bundle, client certificate and key. The builders
//! hand them to sqlx; [`TlsInputs`] records where each came from (a file path, or PEM given in
//! memory, whose content is never kept here), so that `Debug` can show the paths and
//! [`PostgresConfig::check_tls_files`] can find a missing file before connecting.

use super::PostgresConfig;
use sqlx::postgres::PgSslMode;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where one TLS input comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TlsSource {
    /// A file sqlx reads on every new connection.
    File(PathBuf),
    /// PEM given in memory (the content stays with sqlx only).
    Pem,
}

impl fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSource::File(p) => write!(f, "{:?}", p.display().to_string()),
            TlsSource::Pem => f.write_str("<PEM in memory>"),
        }
    }
}

impl TlsSource {
    /// sqlx's reading of a `PGSSL*` variable: PEM text when it looks like one, else a path.
    fn from_var(value: &str) -> Self {
        let t = value.trim();
        match t.starts_with("-----BEGIN") && t.ends_with("-----") {
            true => TlsSource::Pem,
            false => TlsSource::File(PathBuf::from(value)),
        }
    }
}

/// The TLS inputs sqlx will use, by origin.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct TlsInputs {
    /// `sslrootcert`: the CA bundle trusted besides the public web roots.
    pub(crate) root_cert: Option<TlsSource>,
    /// `sslcert`: the client certificate.
    pub(crate) client_cert: Option<TlsSource>,
    /// `sslkey`: the client certificate's key.
    pub(crate) client_key: Option<TlsSource>,
}

impl TlsInputs {
    /// What sqlx reads when it parses `url`: the `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`
    /// variables (looked up with `var`: a path, or PEM text), overridden by the URL's
    /// `sslrootcert` / `sslcert` / `sslkey` parameters and their aliases (always paths; the last
    /// one given wins).
    pub(crate) fn of_url(url: &url::Url, var: impl Fn(&str) -> Option<String>) -> Self {
        let mut inputs = TlsInputs {
            root_cert: var("PGSSLROOTCERT").map(|v| TlsSource::from_var(&v)),
            client_cert: var("PGSSLCERT").map(|v| TlsSource::from_var(&v)),
            client_key: var("PGSSLKEY").map(|v| TlsSource::from_var(&v)),
        };
        for (key, value) in url.query_pairs() {
            let slot = match &*key {
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => &mut inputs.root_cert,
                "sslcert" | "ssl-cert" => &mut inputs.client_cert,
                "sslkey" | "ssl-key" => &mut inputs.client_key,
                _ => continue,
            };
            *slot = Some(TlsSource::File(PathBuf::from(&*value)));
        }
        inputs
    }
}

/// The file behind `source`, if it is one.
fn file(source: &Option<TlsSource>) -> Option<&Path> {
    match source {
        Some(TlsSource::File(p)) => Some(p),
        _ => None,
    }
}

impl PostgresConfig {
    /// Trusts the CA certificates (PEM) in the file at `path`, besides the public web roots
    /// (overrides the URL's `sslrootcert`). Used by `sslmode=verify-ca` and `verify-full`, which
    /// check the server's certificate against them; read on every new connection.
    pub fn with_ssl_root_cert(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        self.connect = self.connect.ssl_root_cert(path);
        self.tls.root_cert = Some(TlsSource::File(path.to_owned()));
        self
    }

    /// Trusts the CA certificates in `pem` (PEM text held in memory), like
    /// [`with_ssl_root_cert`](Self::with_ssl_root_cert). `Debug` shows `<PEM in memory>`.
    pub fn with_ssl_root_cert_from_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.connect = self.connect.ssl_root_cert_from_pem(pem.as_ref().to_vec());
        self.tls.root_cert = Some(TlsSource::Pem);
        self
    }

    /// Presents the client certificate in the file `cert` (PEM, with any intermediates), whose
    /// private key is in the file `key` (PEM), to a server that asks for one (mutual TLS, or
    /// PostgreSQL's `cert` authentication: the certificate's CN is the user). Overrides the URL's
    /// `sslcert` and `sslkey`. The files are read on every new connection.
    pub fn with_ssl_client_cert(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        self.connect = self.connect.ssl_client_cert(cert).ssl_client_key(key);
        self.tls.client_cert = Some(TlsSource::File(cert.to_owned()));
        self.tls.client_key = Some(TlsSource::File(key.to_owned()));
        self
    }

    /// Presents the client certificate `cert_pem` with its private key `key_pem` (PEM text held
    /// in memory), like [`with_ssl_client_cert`](Self::with_ssl_client_cert). Neither is ever
    /// shown: `Debug` prints `<PEM in memory>`.
    pub fn with_ssl_client_cert_from_pem(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
        self.connect = self
            .connect
            .ssl_client_cert_from_pem(cert_pem)
            .ssl_client_key_from_pem(key_pem);
        self.tls.client_cert = Some(TlsSource::Pem);
        self.tls.client_key = Some(TlsSource::Pem);
        self
    }

    /// The CA file trusted for the server's certificate (`sslrootcert`, the builder or
    /// `PGSSLROOTCERT`), if one is set as a file (not PEM in memory).
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        file(&self.tls.root_cert)
    }

    /// The client certificate file (`sslcert`, the builder or `PGSSLCERT`), if set as a file.
    pub fn ssl_client_cert(&self) -> Option<&Path> {
        file(&self.tls.client_cert)
    }

    /// The client key file (`sslkey`, the builder or `PGSSLKEY`), if set as a file.
    pub fn ssl_client_key(&self) -> Option<&Path> {
        file(&self.tls.client_key)
    }

    /// Checks, before connecting, what sqlx would only find mid-connect (and then report without
    /// naming the file): each TLS file it will read can be opened and is a file, and a client
    /// certificate comes with its key. The CA file is read only by `verify-ca` / `verify-full`,
    /// the client certificate and key whenever TLS may be used. The error names the setting and
    /// the path, never file content.
    pub(crate) fn check_tls_files(&self) -> Result<(), String> {
        let mode = self.connect.get_ssl_mode();
        if matches!(mode, PgSslMode::Disable | PgSslMode::Allow) {
            return Ok(());
        }
        match (&self.tls.client_cert, &self.tls.client_key) {
            (Some(_), None) => {
                return Err("sslcert is set but sslkey (its private key) is not".into())
            }
            (None, Some(_)) => {
                return Err("sslkey is set but sslcert (the certificate) is not".into())
            }
            _ => {}
        }
        let verifies = matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
        let files = [
            ("sslrootcert", self.ssl_root_cert().filter(|_| verifies)),
            ("sslcert", self.ssl_client_cert()),
            ("sslkey", self.ssl_client_key()),
        ];
        for (setting, path) in files {
            let Some(path) = path else { continue };
            let opened = std::fs::File::open(path).and_then(|f| f.metadata());
            let problem = match opened {
                Ok(m) if m.is_file() => continue,
                Ok(_) => "is not a regular file".to_owned(),
                Err(e) => format!("cannot be read: {e}"),
            };
            return Err(format!("the {setting} file {} {problem}", path.display()));
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// What the client trusts for the server's certificate, for error messages.
    pub(crate) fn trusted_roots(&self) -> String {
        match &self.tls.root_cert {
            Some(TlsSource::File(p)) => format!("the CA file {} (sslrootcert)", p.display()),
            Some(TlsSource::Pem) => "the CA PEM given in memory".to_owned(),
            None => "only the public web roots (no sslrootcert is set)".to_owned(),
        }
    }

    /// The client certificate presented, for error messages.
    pub(crate) fn client_cert_shown(&self) -> String {
        match &self.tls.client_cert {
            Some(TlsSource::File(p)) => format!("the client certificate {} (sslcert)", p.display()),
            Some(TlsSource::Pem) => "the client certificate PEM given in memory".to_owned(),
            None => "no client certificate (sslcert/sslkey are not set)".to_owned(),
        }
    }
}
