//! sched-redis over TLS (`REDIS_TLS_URL`, `REDIS_TLS_MTLS_URL`, `REDIS_TLS_CLUSTER_URLS`, the
//! certificates in `SCHED_TLS_DIR`; see `.ci/tls/start.sh`), with both clients: the conformance
//! suite with a private CA on one node and on a cluster, mutual TLS, and each refusal as its own
//! typed, non-transient error naming the host and never a secret.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::Kind;
use sched_core::{RepoError, WorkerRepository};
use sched_redis::{RedisConfig, RedisTls};
use std::path::PathBuf;
use std::time::Duration;

/// A certificate file of the TLS test servers.
fn file(name: &str) -> PathBuf {
    let dir = std::env::var("SCHED_TLS_DIR").unwrap_or_else(|_| "/tmp/sched-tls".to_owned());
    PathBuf::from(dir).join(name)
}

fn prefix() -> String {
    format!("sched-tls-{:016x}", rand::random::<u64>())
}

/// The private CA only.
fn ca() -> RedisTls {
    RedisTls::new().with_ca_file(file("ca.pem"))
}

/// Fails fast: every refusal below must come back at once, not after retries.
fn quick(cfg: RedisConfig) -> RedisConfig {
    cfg.with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
        .with_reconnect_retries(0)
}

fn single(var: &str, test: &str) -> Option<RedisConfig> {
    let url = sched_tests::env::require_url(var, test)?;
    Some(RedisConfig::from_url(url).with_prefix(prefix()))
}

fn cluster(test: &str) -> Option<RedisConfig> {
    let urls = sched_tests::env::require_url("REDIS_TLS_CLUSTER_URLS", test)?;
    let urls = urls.split(',').map(str::trim).filter(|s| !s.is_empty());
    let cfg = RedisConfig::cluster(urls.map(str::to_owned).collect::<Vec<_>>());
    Some(
        cfg.with_timeouts(Duration::from_secs(2), Duration::from_secs(30))
            .with_prefix(prefix()),
    )
}

/// A connection failure that must be non-transient and name `host`; returns its text.
async fn refused(kind: Kind, cfg: &RedisConfig, host: &str) -> (RepoError, String) {
    let err = common::connect(kind, cfg)
        .await
        .err()
        .unwrap_or_else(|| panic!("{kind:?}: connected with {cfg:?}"));
    let text = format!("{err} | {err:?}");
    eprintln!("{kind:?}: {text}");
    assert!(!err.is_transient(), "{kind:?}: {text}");
    assert!(text.contains(host), "{kind:?}: no {host} in {text}");
    (err, text)
}

#[tokio::test]
async fn conformance_over_tls_with_a_private_ca_on_one_node() {
    for kind in common::kinds() {
        let Some(cfg) = single("REDIS_TLS_URL", "tls single") else {
            return;
        };
        let repo = common::fresh_with(kind, cfg.with_tls(ca())).await;
        sched_tests::conformance::run_all(&repo).await;
    }
}

#[tokio::test]
async fn conformance_over_tls_on_the_cluster_follows_redirections_to_tls_ports() {
    for kind in common::kinds() {
        let Some(cfg) = cluster("tls cluster") else {
            return;
        };
        // Only one seed: every other node (and each MOVED) is learnt from the cluster, which
        // announces its TLS ports (`tls-cluster yes`).
        let mut cfg = cfg.with_tls(ca());
        cfg.urls.truncate(1);
        let repo = common::fresh_with(kind, cfg).await;
        sched_tests::conformance::run_all(&repo).await;
        // Scripts ran on every primary (their slots are only reachable by TLS redirections).
        let mut nodes = 0;
        for port in [7101, 7102, 7103] {
            let mut c = raw(&format!("rediss://127.0.0.1:{port}")).await;
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut c)
                .await
                .unwrap();
            nodes += usize::from(info.contains("cmdstat_evalsha"));
        }
        assert!(nodes >= 2, "{kind:?}: scripts ran on {nodes} nodes");
    }
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    for kind in common::kinds() {
        let Some(cfg) = single("REDIS_TLS_MTLS_URL", "mtls") else {
            return;
        };
        let tls = ca().with_client_cert_files(file("client.pem"), file("client.key"));
        let repo = common::fresh_with(kind, quick(cfg.with_tls(tls))).await;
        assert!(repo.list_workers(None).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_unauthorized() {
    for kind in common::kinds() {
        let Some(cfg) = single("REDIS_TLS_MTLS_URL", "mtls refused") else {
            return;
        };
        let (err, text) = refused(kind, &quick(cfg.with_tls(ca())), "127.0.0.1:6391").await;
        assert!(
            matches!(err, RepoError::Unauthorized { .. }),
            "{kind:?}: {text}"
        );
        assert!(text.contains("client certificate"), "{kind:?}: {text}");
    }
}

#[tokio::test]
async fn an_unknown_ca_is_misconfigured() {
    for kind in common::kinds() {
        let Some(cfg) = single("REDIS_TLS_URL", "unknown ca") else {
            return;
        };
        let tls = RedisTls::new().with_ca_file(file("other-ca.pem"));
        let (err, text) = refused(kind, &quick(cfg.with_tls(tls)), "127.0.0.1:6390").await;
        assert!(
            matches!(err, RepoError::Misconfigured { .. }),
            "{kind:?}: {text}"
        );
        assert!(text.contains("UnknownIssuer"), "{kind:?}: {text}");
        // Without any settings: the public web roots do not know the private CA either.
        let cfg = single("REDIS_TLS_URL", "web roots").unwrap();
        let (err, text) = refused(kind, &quick(cfg), "127.0.0.1:6390").await;
        assert!(
            matches!(err, RepoError::Misconfigured { .. }),
            "{kind:?}: {text}"
        );
    }
}

#[tokio::test]
async fn a_wrong_host_name_is_misconfigured() {
    for kind in common::kinds() {
        if sched_tests::env::require_url("REDIS_TLS_URL", "wrong host").is_none() {
            return;
        }
        // The servers listen on 127.0.0.2 too, which their certificate does not name.
        let cfg = RedisConfig::from_url("rediss://127.0.0.2:6390").with_tls(ca());
        let (err, text) = refused(kind, &quick(cfg), "127.0.0.2:6390").await;
        assert!(
            matches!(err, RepoError::Misconfigured { .. }),
            "{kind:?}: {text}"
        );
        // redis-rs: rustls's text; fred: its debug form.
        let named = text.contains("not valid for name") || text.contains("NotValidForName");
        assert!(named, "{kind:?}: {text}");
    }
}

#[tokio::test]
async fn the_insecure_mode_accepts_an_unknown_ca_and_a_wrong_host_name() {
    for kind in common::kinds() {
        if sched_tests::env::require_url("REDIS_TLS_URL", "insecure").is_none() {
            return;
        }
        let tls = RedisTls::new().danger_accept_invalid_certificates();
        let cfg = RedisConfig::from_url("rediss://127.0.0.2:6390")
            .with_prefix(prefix())
            .with_tls(tls);
        let repo = common::fresh_with(kind, quick(cfg)).await;
        assert!(repo.list_workers(None).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn missing_or_empty_tls_files_are_misconfigured_before_connecting() {
    let empty = std::env::temp_dir().join(format!("{}.pem", prefix()));
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let missing = file("no-such-ca.pem");
    for kind in common::kinds() {
        // Port 9 (discard): nothing is ever contacted, the files are read first.
        for (tls, named, why) in [
            (
                RedisTls::new().with_ca_file(&missing),
                &missing,
                "cannot read",
            ),
            (
                RedisTls::new().with_ca_file(&empty),
                &empty,
                "no PEM certificate",
            ),
            (
                ca().with_client_cert_files(file("client.pem"), &empty),
                &empty,
                "no PEM private key",
            ),
        ] {
            let cfg = RedisConfig::from_url("rediss://127.0.0.1:9").with_tls(tls);
            let (err, text) = refused(kind, &cfg, "127.0.0.1:9").await;
            assert!(matches!(err, RepoError::Misconfigured { .. }), "{text}");
            assert!(text.contains(&named.display().to_string()), "{text}");
            assert!(text.contains(why), "{text}");
        }
        let plain = RedisConfig::from_url("redis://127.0.0.1:9").with_tls(ca());
        let (err, text) = refused(kind, &plain, "127.0.0.1:9").await;
        assert!(matches!(err, RepoError::Misconfigured { .. }), "{text}");
    }
    std::fs::remove_file(&empty).unwrap();
}

/// An ACL user of its own on the TLS node, deleted on drop.
struct AclUser {
    url: String,
    name: String,
}

impl AclUser {
    async fn create(url: &str, password: &str) -> Self {
        let name = format!("sched-tls-{:08x}", rand::random::<u32>());
        let mut c = raw(url).await;
        let _: () = redis::cmd("ACL")
            .arg(&[
                "SETUSER",
                &name,
                "on",
                &format!(">{password}"),
                "~*",
                "+@all",
            ])
            .query_async(&mut c)
            .await
            .unwrap();
        AclUser {
            url: url.to_owned(),
            name,
        }
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut c = raw(&url).await;
                let n: i64 = redis::cmd("ACL")
                    .arg(&["DELUSER", &name])
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!(n, 1, "ACL user {name} was not deleted");
            });
        })
        .join();
    }
}

/// A plain redis-rs connection over TLS, trusting the private CA.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(file("ca.pem")).unwrap()),
    };
    let client = redis::Client::build_with_tls(url, certs).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn wrong_credentials_over_tls_are_unauthorized_naming_host_and_user() {
    let Some(url) = sched_tests::env::require_url("REDIS_TLS_URL", "tls acl") else {
        return;
    };
    let secret = format!("pw-{:016x}", rand::random::<u64>());
    let user = AclUser::create(&url, &secret).await;
    for kind in common::kinds() {
        // The right password works over TLS...
        let cfg = quick(
            RedisConfig::from_url(&url)
                .with_prefix(prefix())
                .with_tls(ca()),
        );
        let ok = cfg.clone().with_credentials(&user.name, &secret);
        let repo = common::fresh_with(kind, ok).await;
        assert!(repo.list_workers(None).await.unwrap().is_empty());
        drop(repo);
        // ... a wrong one, or an unknown user, is refused.
        let wrong = format!("{secret}-wrong");
        for (name, pw) in [
            (user.name.as_str(), wrong.as_str()),
            ("sched-nobody", &secret),
        ] {
            let bad = cfg.clone().with_credentials(name, pw);
            let (err, text) = refused(kind, &bad, "127.0.0.1:6390").await;
            assert!(
                matches!(err, RepoError::Unauthorized { .. }),
                "{kind:?}: {text}"
            );
            assert!(text.contains(name), "{kind:?}: {text}");
            assert!(!text.contains(pw), "{kind:?}: secret in {text}");
        }
    }
}

#[test]
fn debug_never_shows_a_key_held_in_memory() {
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKEYMATERIAL\n-----END PRIVATE KEY-----\n";
    let tls = RedisTls::new()
        .with_ca_pem("-----BEGIN CERTIFICATE-----\nCAPEM\n-----END CERTIFICATE-----\n")
        .with_client_cert_pem("CERTPEM", key);
    let cfg = RedisConfig::from_url("rediss://h:6390").with_tls(tls);
    let s = format!("{cfg:?}");
    assert!(
        !s.contains("KEYMATERIAL") && !s.contains("PRIVATE KEY"),
        "{s}"
    );
    assert!(!s.contains("CAPEM") && !s.contains("CERTPEM"), "{s}");
    assert!(s.contains("<redacted>"), "{s}");
    let s = format!("{:?}", RedisTls::new().danger_accept_invalid_certificates());
    assert!(
        s.contains("danger_accept_invalid_certificates: true"),
        "{s}"
    );
}
