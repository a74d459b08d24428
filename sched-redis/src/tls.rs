//! [`RedisTls`]: trust roots, client certificate and the development-only insecure mode of a
//! `rediss://` connection (feature `tls`), and how both clients' TLS failures are told apart.

use crate::client::ConnectFault;
use sched_core::RepoError;
use std::fmt;
use std::path::PathBuf;

/// PEM text from a file (read when connecting) or held in memory.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Pem {
    /// What `Debug` and errors show: the path, never the contents.
    fn describe(&self) -> String {
        match self {
            Pem::File(p) => p.display().to_string(),
            Pem::Bytes(_) => "<PEM in memory>".to_owned(),
        }
    }
}

/// TLS settings of a `rediss://` connection, for both clients and both topologies; set with
/// [`RedisConfig::with_tls`](crate::RedisConfig::with_tls).
///
/// Trust: without a CA bundle the server must present a certificate from the public web roots
/// (the default). A CA bundle ([`with_ca_file`](Self::with_ca_file),
/// [`with_ca_pem`](Self::with_ca_pem), one or more certificates each) or
/// [`with_system_roots`](Self::with_system_roots) *replace* the web roots (redis-rs cannot
/// combine them); bundles and system roots add up. Files are read when connecting: a file that
/// cannot be read or holds no PEM certificate (key) is [`RepoError::Misconfigured`] naming it,
/// before anything is sent.
///
/// `Debug` shows file paths and flags, never certificate or key contents.
///
/// ```
/// use sched_redis::{RedisConfig, RedisTls};
/// let cfg = RedisConfig::from_url("rediss://redis.internal:6380").with_tls(
///     RedisTls::new()
///         .with_ca_file("/etc/sched/ca.pem")
///         .with_client_cert_files("/etc/sched/client.pem", "/etc/sched/client.key"),
/// );
/// assert!(format!("{cfg:?}").contains("/etc/sched/ca.pem"));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RedisTls {
    ca: Vec<Pem>,
    system_roots: bool,
    client: Option<(Pem, Pem)>,
    insecure: bool,
}

impl RedisTls {
    /// Verify against the public web roots, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the certificates of this PEM file (a private CA), instead of the web roots.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca.push(Pem::File(path.into()));
        self
    }

    /// Trusts these PEM certificates (a private CA), instead of the web roots.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca.push(Pem::Bytes(pem.into()));
        self
    }

    /// Trusts the platform's certificate store (`rustls-native-certs`), instead of the web
    /// roots; adds up with a CA bundle.
    pub fn with_system_roots(mut self) -> Self {
        self.system_roots = true;
        self
    }

    /// Presents this client certificate (chain) and key, PEM files (mutual TLS).
    pub fn with_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Presents this client certificate (chain) and key, PEM in memory (mutual TLS). The key
    /// is never printed.
    pub fn with_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((Pem::Bytes(cert.into()), Pem::Bytes(key.into())));
        self
    }

    /// **Development only: accepts any server certificate** (unknown issuer, wrong host name,
    /// expired), so anyone on the path can read and change the traffic. Never the default;
    /// every connection made with it logs a warning.
    pub fn danger_accept_invalid_certificates(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Whether [`danger_accept_invalid_certificates`](Self::danger_accept_invalid_certificates)
    /// is set.
    pub fn accepts_invalid_certificates(&self) -> bool {
        self.insecure
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = self.client.as_ref().map(|(c, k)| {
            let key = match k {
                Pem::File(p) => p.display().to_string(),
                Pem::Bytes(_) => "<redacted>".to_owned(),
            };
            (c.describe(), key)
        });
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.iter().map(Pem::describe).collect::<Vec<_>>())
            .field("system_roots", &self.system_roots)
            .field("client_cert_and_key", &client)
            .field("danger_accept_invalid_certificates", &self.insecure)
            .finish()
    }
}

/// [`RedisTls`] with every file read and checked.
pub(crate) struct Loaded {
    /// The CA bundle and system roots as PEM (`None`: the web roots).
    pub(crate) roots_pem: Option<Vec<u8>>,
    /// Client certificate chain and key, PEM.
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) insecure: bool,
}

impl RedisTls {
    /// Reads and checks every file and PEM: `Misconfigured` naming the one at fault.
    pub(crate) fn load(&self, endpoint: &str) -> Result<Loaded, RepoError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &str, pem: &Pem, why: String| RepoError::Misconfigured {
            endpoint: endpoint.to_owned(),
            reason: format!("TLS {what} {}: {why}", pem.describe()),
        };
        let read = |what: &str, pem: &Pem| -> Result<Vec<u8>, RepoError> {
            match pem {
                Pem::File(p) => {
                    std::fs::read(p).map_err(|e| bad(what, pem, format!("cannot read: {e}")))
                }
                Pem::Bytes(b) => Ok(b.clone()),
            }
        };
        let certs = |what: &str, pem: &Pem| -> Result<Vec<u8>, RepoError> {
            let bytes = read(what, pem)?;
            let n = CertificateDer::pem_slice_iter(&bytes)
                .map(|c| c.map_err(|e| bad(what, pem, format!("bad PEM: {e}"))))
                .collect::<Result<Vec<_>, _>>()?
                .len();
            if n == 0 {
                return Err(bad(what, pem, "holds no PEM certificate".to_owned()));
            }
            Ok(bytes)
        };
        let mut roots: Option<Vec<u8>> = None;
        for ca in &self.ca {
            let pem = certs("CA file", ca)?;
            let all = roots.get_or_insert_with(Vec::new);
            all.extend_from_slice(&pem);
            all.push(b'\n');
        }
        if self.system_roots {
            let native = rustls_native_certs::load_native_certs();
            let all = roots.get_or_insert_with(Vec::new);
            for cert in native.certs {
                all.extend_from_slice(pem_of(cert.as_ref()).as_bytes());
            }
        }
        let client = match &self.client {
            None => None,
            Some((cert, key)) => {
                let cert = certs("client certificate", cert)?;
                let key_pem = read("client key", key)?;
                if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                    // The error's text may quote the key: say only that none was found.
                    return Err(bad(
                        "client key",
                        key,
                        "holds no PEM private key".to_owned(),
                    ));
                }
                Some((cert, key_pem))
            }
        };
        Ok(Loaded {
            roots_pem: roots,
            client,
            insecure: self.insecure,
        })
    }
}

/// One DER certificate as PEM (the system roots, for redis-rs, which takes PEM only).
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Logs the insecure mode, once per connection.
pub(crate) fn warn_insecure(endpoint: &str) {
    tracing::warn!(
        endpoint,
        "TLS certificate verification is OFF (RedisTls::danger_accept_invalid_certificates): \
         development only, anyone on the path can read and change this traffic"
    );
}

/// The rustls configuration fred connects with: the same roots and client certificate.
#[cfg(feature = "fred")]
pub(crate) fn rustls_config(l: &Loaded) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &l.roots_pem {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem).flatten() {
                roots
                    .add(c)
                    .map_err(|e| format!("TLS CA certificate: {e}"))?;
            }
        }
    }
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &l.client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert).flatten().collect();
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| "TLS client key: holds no PEM private key".to_owned())?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| format!("TLS client certificate and key: {e}"))?
        }
    };
    if l.insecure {
        config
            .dangerous()
            .set_certificate_verifier(std::sync::Arc::new(AcceptAnything(provider)));
    }
    Ok(config)
}

/// The insecure mode's verifier: accepts any certificate, still checks the handshake
/// signatures (so the peer holds the key of the certificate it sent).
#[cfg(feature = "fred")]
#[derive(Debug)]
struct AcceptAnything(std::sync::Arc<rustls::crypto::CryptoProvider>);

#[cfg(feature = "fred")]
impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure inside a connection error, and what it means: our check of the server's
/// certificate failed (`Misconfigured`: the trust roots or the host name are wrong), or the
/// server refused our certificate (`Unauthorized`). Looks for a `rustls::Error` in the source
/// chain (directly or inside an `io::Error`), else matches rustls's texts (fred keeps only the
/// text).
pub(crate) fn tls_fault(e: &(dyn std::error::Error + 'static)) -> Option<(ConnectFault, String)> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let typed = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = typed {
            return fault_of(r).map(|f| (f, describe(f, &r.to_string())));
        }
        let text = err.to_string();
        if let Some(f) = fault_of_text(&text) {
            return Some((f, describe(f, &text)));
        }
        cur = err.source();
    }
    None
}

fn fault_of(e: &rustls::Error) -> Option<ConnectFault> {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => Some(ConnectFault::Misconfigured),
        rustls::Error::AlertReceived(
            A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown,
        ) => Some(ConnectFault::Unauthorized),
        _ => None,
    }
}

/// rustls's texts: its `Display` (`invalid peer certificate: UnknownIssuer`, `received fatal
/// alert: CertificateRequired`) or its `Debug` inside an `io::Error`'s (fred:
/// `Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }`).
fn fault_of_text(t: &str) -> Option<ConnectFault> {
    const REFUSED_US: [&str; 4] = [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
    ];
    if t.contains("invalid peer certificate") || t.contains("InvalidCertificate(") {
        Some(ConnectFault::Misconfigured)
    } else if REFUSED_US.iter().any(|a| {
        t.contains(&format!("received fatal alert: {a}"))
            || t.contains(&format!("AlertReceived({a})"))
    }) {
        Some(ConnectFault::Unauthorized)
    } else {
        None
    }
}

fn describe(f: ConnectFault, text: &str) -> String {
    match f {
        ConnectFault::Unauthorized => {
            format!("TLS: the server refused our client certificate (none configured, or not trusted by it): {text}")
        }
        _ => format!("TLS: the server's certificate was refused (check the CA bundle and the host name): {text}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// A DER certificate written as PEM by `pem_of` reads back as the same bytes, whatever the
    /// length modulo 3 (padding) and across the 64-column line breaks.
    #[test]
    fn pem_of_round_trips() {
        for len in [1usize, 2, 3, 47, 48, 49, 200, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let pem = super::pem_of(&der);
            assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), &der[..], "length {len}");
        }
    }
}
