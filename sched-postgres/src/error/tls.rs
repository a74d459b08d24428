//! TLS failures while connecting. sqlx reports a failed handshake as
//! `sqlx::Error::Io(io::Error { kind: InvalidData, inner: rustls::Error })`, which alone would
//! read as an unreachable server (transient). Told apart here: the server refused our client
//! certificate (`Unauthorized`), we refused the server's certificate (`Misconfigured`), or a TLS
//! file could not be read (`Misconfigured`, naming it).

use crate::config::PostgresConfig;
use rustls::{AlertDescription, CertificateError};
use sched_core::RepoError;
use std::io::ErrorKind;

/// The typed error for a TLS failure, or `None` when `e` is not one.
pub(super) fn classify(e: &sqlx::Error, config: &PostgresConfig) -> Option<RepoError> {
    let sqlx::Error::Io(io) = e else {
        return None;
    };
    let endpoint = config.endpoint();
    let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        // sqlx reads the TLS files while connecting and reports a failure without the path.
        let file = matches!(
            io.kind(),
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::IsADirectory
        );
        let reason = config.check_tls_files().err().filter(|_| file)?;
        return Some(RepoError::Misconfigured { endpoint, reason });
    };
    use AlertDescription as A;
    match tls {
        // The server's TLS layer refused the certificate we presented (or our lack of one).
        rustls::Error::AlertReceived(
            A::UnknownCA
            | A::BadCertificate
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => Some(RepoError::Unauthorized {
            endpoint,
            user: config.user().to_owned(),
            source: format!(
                "the server refused {} in the TLS handshake: {tls}",
                config.client_cert_shown()
            )
            .into(),
        }),
        // We refused the server's certificate.
        rustls::Error::InvalidCertificate(why) => {
            let hint = match why {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "it is not signed by a CA the client trusts, and the client trusts {}: \
                     point sslrootcert (with_ssl_root_cert, SCHED_PG_SSL_ROOT_CERT) at the CA \
                     that signed the server's certificate",
                    config.trusted_roots()
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "it does not cover the host name {:?} used to connect: connect by a name or \
                     address it lists, or use sslmode=verify-ca (checks the CA, not the name)",
                    config.host()
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => "it is outside its validity \
                     period: renew it on the server, or check this machine's clock"
                    .to_owned(),
                CertificateError::Revoked => "it has been revoked".to_owned(),
                _ => format!(
                    "check the server's certificate and what the client trusts ({})",
                    config.trusted_roots()
                ),
            };
            let mode = config.ssl_mode();
            let reason = format!(
                "the client refused the server's TLS certificate (sslmode={mode}): {tls}; {hint}"
            );
            Some(RepoError::Misconfigured { endpoint, reason })
        }
        rustls::Error::NoCertificatesPresented | rustls::Error::UnsupportedNameType => {
            let mode = config.ssl_mode();
            let reason =
                format!("the client refused the server's TLS certificate (sslmode={mode}): {tls}");
            Some(RepoError::Misconfigured { endpoint, reason })
        }
        _ => None,
    }
}
