//! schedctl over TLS (`--tls-ca-file`, `--tls-client-cert`, `--tls-client-key`) against the
//! TLS servers `.ci/tls/start.sh` starts (`REDIS_TLS_URL`, `REDIS_TLS_MTLS_URL`,
//! `DATABASE_TLS_URL`, certificates in `SCHED_TLS_DIR`); and no secret in anything it prints,
//! logs at `trace` included. Skips with a printed reason when they are unset (fails under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::stores::{catch, Lib};
use common::{fresh_name, Run};

fn tls_dir(test: &str) -> Option<String> {
    sched_tests::env::require_url("SCHED_TLS_DIR", test)
}

fn pem(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

/// Runs schedctl with `RUST_LOG=trace`, so every log line is in the output too.
fn traced(args: &[&str]) -> Run {
    common::schedctl_logging(args, Some("trace"))
}

/// `schedctl <base> <url_flag> <url> workers`: with `--tls-ca-file <ca>` (traced) the empty
/// deployment lists no workers; without it the server's certificate is refused and schedctl
/// says so. Returns the refused run.
fn trusted_only_with_the_ca(base: &[&str], url_flag: &str, url: &str, ca: &str) -> Run {
    let mut args = base.to_vec();
    args.extend([url_flag, url, "--tls-ca-file", ca, "workers", "--json"]);
    let run = traced(&args).expect(0);
    assert_eq!(
        run.json()["workers"].as_array().map(Vec::len),
        Some(0),
        "{run:?}"
    );
    let mut args = base.to_vec();
    args.extend([url_flag, url, "workers"]);
    let run = common::schedctl(&args);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("certificate"), "{run:?}");
    run
}

#[test]
fn redis_with_the_private_ca_and_a_client_certificate() {
    let Some(dir) = tls_dir("redis_with_the_private_ca_and_a_client_certificate") else {
        return;
    };
    let url = std::env::var("REDIS_TLS_URL").expect("REDIS_TLS_URL with SCHED_TLS_DIR");
    let mtls = std::env::var("REDIS_TLS_MTLS_URL").expect("REDIS_TLS_MTLS_URL");
    let (ca, cert, key) = (
        pem(&dir, "ca.pem"),
        pem(&dir, "client.pem"),
        pem(&dir, "client.key"),
    );
    let prefix = fresh_name("tls");
    for backend in ["redis", "redis-fred"] {
        let base = ["--backend", backend, "--prefix", &prefix];
        // The private CA: trusted with it, refused (naming the server) without it.
        let run = trusted_only_with_the_ca(&base, "--redis-url", &url, &ca);
        assert!(run.stderr.contains("127.0.0.1:6390"), "{backend}: {run:?}");
        // The port that requires a client certificate: with one it works, without it it is
        // refused.
        let mut args = base.to_vec();
        args.extend(["--redis-url", &mtls, "--tls-ca-file", &ca]);
        let mut with_cert = args.clone();
        with_cert.extend([
            "--tls-client-cert",
            &cert,
            "--tls-client-key",
            &key,
            "workers",
        ]);
        common::schedctl(&with_cert).expect(0);
        args.push("workers");
        let run = common::schedctl(&args);
        assert_ne!(run.code, 0, "{backend}: {run:?}");
        assert!(run.stderr.contains("certificate"), "{backend}: {run:?}");
    }
    // A certificate without its key is a usage error (clap), before anything is sent.
    let run = common::schedctl(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--tls-client-cert",
        &cert,
        "workers",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--tls-client-key"), "{run:?}");
}

#[tokio::test]
async fn postgres_verify_full_with_the_ca_flag() {
    let Some(dir) = tls_dir("postgres_verify_full_with_the_ca_flag") else {
        return;
    };
    let url = std::env::var("DATABASE_TLS_URL").expect("DATABASE_TLS_URL with SCHED_TLS_DIR");
    let ca = pem(&dir, "ca.pem");
    // The library side (set-up and clean-up) names the CA in the URL; schedctl gets the flag.
    let lib = Lib::postgres(&format!("{url}?sslmode=verify-full&sslrootcert={ca}"), true).await;
    let schema = lib.namespace().to_owned();
    let result = catch(async {
        let verify = format!("{url}?sslmode=verify-full");
        let base = ["--backend", "postgres", "--schema", &schema];
        trusted_only_with_the_ca(&base, "--database-url", &verify, &ca);
    })
    .await;
    lib.finish(result).await;
}

/// Wrong credentials over TLS: refused, and the secret appears nowhere in what schedctl prints,
/// its `trace` logs included.
#[test]
fn secrets_never_reach_the_output_or_the_logs() {
    let Some(dir) = tls_dir("secrets_never_reach_the_output_or_the_logs") else {
        return;
    };
    let ca = pem(&dir, "ca.pem");
    let secret = format!("S3cret-{}", sched_tests::ns::random_hex());
    let redis = std::env::var("REDIS_TLS_URL").expect("REDIS_TLS_URL");
    let pg = std::env::var("DATABASE_TLS_URL").expect("DATABASE_TLS_URL");
    let redis_url = redis.replacen("rediss://", &format!("rediss://nobody:{secret}@"), 1);
    let pg_url = pg
        .replacen("postgres@", &format!("sched_pw:{secret}@"), 1)
        .replacen("/test", "/test?sslmode=verify-full", 1);
    assert!(pg_url.contains(&secret) && redis_url.contains(&secret));
    let runs = [
        ("redis", "--redis-url", &redis_url),
        ("redis-fred", "--redis-url", &redis_url),
        ("postgres", "--database-url", &pg_url),
    ]
    .map(|(backend, url_flag, url)| {
        traced(&[
            "--backend",
            backend,
            url_flag,
            url,
            "--tls-ca-file",
            &ca,
            "workers",
        ])
    });
    for run in runs {
        assert_ne!(run.code, 0, "wrong credentials are refused: {run:?}");
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "the secret leaked: {run:?}"
        );
        assert!(
            run.stderr.contains("nobody") || run.stderr.contains("sched_pw"),
            "the error names the user: {run:?}"
        );
    }
}
