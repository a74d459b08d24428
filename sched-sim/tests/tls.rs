//! sched-sim over TLS (`--tls-ca-file`, `--tls-client-cert`, `--tls-client-key`, as schedctl
//! takes them) against the TLS servers `.ci/tls/start.sh` starts (`REDIS_TLS_URL`,
//! `REDIS_TLS_MTLS_URL`, `REDIS_TLS_CLUSTER_URLS`, `DATABASE_TLS_URL`, certificates in
//! `SCHED_TLS_DIR`): every backend, and the simulator's own connections (the floor's raw
//! commit, the peer, the baselines' locks, the `--processes` children). Skips with a printed
//! reason when they are unset (fails under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_tests::env::require_url;
use serde_json::Value;
use std::process::Command;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns the JSON report.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:#?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }

    /// Asserts a clean failure: non-zero, no panic, a message on stderr.
    fn refused(&self) -> &str {
        assert_ne!(self.code, 0, "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        &self.stderr
    }
}

fn sim(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sched-sim"))
        .args(args)
        .env("RUST_LOG", "error")
        .env("NO_COLOR", "1")
        .output()
        .expect("run sched-sim");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A short burst: 2 measured bursts of 20 containers on 5 workers.
const SHORT: [&str; 8] = [
    "--repeat",
    "2",
    "--containers",
    "20",
    "--workers",
    "5",
    "--json",
    "--seed",
];

fn short(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = SHORT.iter().map(|s| (*s).to_owned()).collect();
    a.push("7".into());
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

fn run(args: &[String]) -> Run {
    sim(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A short burst on `backend` at `url` (given with `url_flag`), with the TLS flags `tls` and
/// any `extra` flags.
fn on(backend: &str, url_flag: &str, url: &str, tls: &[&str], extra: &[&str]) -> Run {
    run(&short(
        &[&["--backend", backend, url_flag, url], tls, extra].concat(),
    ))
}

/// The TLS directory, or `None` (a printed skip) outside CI.
fn tls_dir(test: &str) -> Option<String> {
    require_url("SCHED_TLS_DIR", test)
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} with SCHED_TLS_DIR"))
}

/// One strategy's burst report: everything placed, a clean audit.
fn assert_clean(r: &Value, label: &str) {
    assert_eq!(r["placed"], r["requested"], "{label}: {r}");
    assert!(r["placed"].as_u64().unwrap() > 0, "{label}: {r}");
    for k in ["double_bookings", "missing", "orphaned", "drift_workers"] {
        assert_eq!(r["audit"][k], 0, "{label}: audit {k}: {}", r["audit"]);
    }
}

/// A single-node Redis burst report measured the floor's raw commit and the peer, both on the
/// simulator's own redis-rs connections.
fn assert_floors(r: &Value, label: &str) {
    for k in ["round_trip", "raw_commit", "peer"] {
        assert!(
            r[k]["p50_ms"].as_f64().is_some_and(|p| p > 0.0),
            "{label}: {k} not measured: {r}"
        );
    }
}

#[test]
fn redis_with_the_private_ca() {
    let Some(dir) = tls_dir("redis_with_the_private_ca") else {
        return;
    };
    let (url, ca) = (var("REDIS_TLS_URL"), format!("{dir}/ca.pem"));
    for backend in ["redis", "redis-fred"] {
        let report = on(backend, "--redis-url", &url, &["--tls-ca-file", &ca], &[]).json();
        let r = &report["report"];
        assert_clean(r, backend);
        assert_floors(r, backend);
    }
    // The baselines take the simulator's Redis locks, over TLS too.
    let ca_flag = ["--tls-ca-file", ca.as_str()];
    let report = on("redis", "--redis-url", &url, &ca_flag, &["--compare"]).json();
    let reports = report["compare"]["runs"].as_array().expect("reports");
    assert_eq!(reports.len(), 3, "{report}");
    for r in reports {
        let label = format!("compare {}", r["strategy"]);
        assert_clean(r, &label);
        if r["strategy"] != "sched" {
            assert!(
                r["per_burst"]["lock_calls"].as_f64().unwrap() > 0.0,
                "{label}: {r}"
            );
        }
    }
}

#[test]
fn redis_mutual_tls_with_a_client_certificate() {
    let Some(dir) = tls_dir("redis_mutual_tls_with_a_client_certificate") else {
        return;
    };
    let url = var("REDIS_TLS_MTLS_URL");
    let (ca, cert, key) = (
        format!("{dir}/ca.pem"),
        format!("{dir}/client.pem"),
        format!("{dir}/client.key"),
    );
    let with_cert = [
        "--tls-ca-file",
        &ca,
        "--tls-client-cert",
        &cert,
        "--tls-client-key",
        &key,
    ];
    for backend in ["redis", "redis-fred"] {
        let report = on(backend, "--redis-url", &url, &with_cert, &[]).json();
        assert_clean(&report["report"], backend);
        assert_floors(&report["report"], backend);
        // Without the certificate the server refuses us, and sched-sim says so.
        let run = on(backend, "--redis-url", &url, &with_cert[..2], &[]);
        let err = run.refused();
        assert!(err.contains("certificate"), "{backend}: {run:#?}");
    }
}

#[test]
fn redis_cluster_with_the_private_ca() {
    let Some(dir) = tls_dir("redis_cluster_with_the_private_ca") else {
        return;
    };
    let (urls, ca) = (var("REDIS_TLS_CLUSTER_URLS"), format!("{dir}/ca.pem"));
    for backend in ["redis-cluster", "redis-fred-cluster"] {
        let ca_flag = ["--tls-ca-file", ca.as_str()];
        let report = on(backend, "--redis-cluster-urls", &urls, &ca_flag, &[]).json();
        assert_clean(&report["report"], backend);
    }
}

#[test]
fn postgres_verify_full_with_the_ca() {
    let Some(dir) = tls_dir("postgres_verify_full_with_the_ca") else {
        return;
    };
    let url = format!("{}?sslmode=verify-full", var("DATABASE_TLS_URL"));
    let ca = format!("{dir}/ca.pem");
    // All three strategies: the baselines' lock pool connects like the repository.
    let ca_flag = ["--tls-ca-file", ca.as_str()];
    let report = on("postgres", "--database-url", &url, &ca_flag, &["--compare"]).json();
    let reports = report["compare"]["runs"].as_array().expect("reports");
    assert_eq!(reports.len(), 3, "{report}");
    for r in reports {
        assert_clean(r, &format!("postgres {}", r["strategy"]));
    }
    // Without the CA the server's certificate is not trusted.
    let refused = on("postgres", "--database-url", &url, &[], &[]);
    let err = refused.refused();
    assert!(err.contains("certificate"), "{refused:#?}");

    // The user that logs in by certificate (pg_hba `cert`, CN=sched_cert): with its client
    // certificate every pool (the repository's and the baselines' locks) gets in...
    let cert_url = url.replacen("postgres@", "sched_cert@", 1);
    assert_ne!(cert_url, url, "DATABASE_TLS_URL names the postgres user");
    let (cert, key) = (
        format!("{dir}/client-cert-user.pem"),
        format!("{dir}/client-cert-user.key"),
    );
    let with_cert = [
        "--tls-ca-file",
        &ca,
        "--tls-client-cert",
        &cert,
        "--tls-client-key",
        &key,
    ];
    let report = on(
        "postgres",
        "--database-url",
        &cert_url,
        &with_cert,
        &["--compare"],
    )
    .json();
    for r in report["compare"]["runs"].as_array().expect("reports") {
        assert_clean(r, &format!("postgres by certificate {}", r["strategy"]));
    }
    // ... and without it the server refuses the user.
    let refused = on(
        "postgres",
        "--database-url",
        &cert_url,
        &with_cert[..2],
        &[],
    );
    let err = refused.refused();
    assert!(
        err.contains("sched_cert") && err.contains("certificate"),
        "{refused:#?}"
    );
}

#[test]
fn contention_processes_pass_the_flags_to_their_children() {
    let Some(dir) = tls_dir("contention_processes_pass_the_flags_to_their_children") else {
        return;
    };
    let (url, ca) = (var("REDIS_TLS_MTLS_URL"), format!("{dir}/ca.pem"));
    let (cert, key) = (format!("{dir}/client.pem"), format!("{dir}/client.key"));
    // The port that requires a client certificate: a child without one would fail.
    let report = sim(&[
        "contention",
        "--processes",
        "--instances",
        "2",
        "--repeat",
        "1",
        "--containers",
        "20",
        "--workers",
        "5",
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--tls-ca-file",
        &ca,
        "--tls-client-cert",
        &cert,
        "--tls-client-key",
        &key,
        "--json",
    ])
    .json();
    let r = &report["reports"][0];
    assert_clean(r, "contention --processes");
}

#[test]
fn without_the_ca_the_server_certificate_is_refused() {
    let Some(_dir) = tls_dir("without_the_ca_the_server_certificate_is_refused") else {
        return;
    };
    let url = var("REDIS_TLS_URL");
    let authority = url.trim_start_matches("rediss://").to_owned();
    for backend in ["redis", "redis-fred"] {
        let run = on(backend, "--redis-url", &url, &[], &[]);
        let err = run.refused();
        assert!(err.contains(&authority), "{backend}: {run:#?}");
        assert!(
            err.contains("UnknownIssuer") || err.contains("unknown issuer"),
            "{backend}: {run:#?}"
        );
    }
}

/// A CA file that does not exist, or is not PEM: named (flag and path) before anything
/// connects, whatever the backend.
#[test]
fn a_bad_tls_file_is_named_before_connecting() {
    let missing = "/nonexistent/sched-sim/ca.pem";
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    // The memory backend connects to nothing: the check still runs, and the Redis URL below
    // (nothing listens on port 1) is never dialled.
    for (backend, url) in [("memory", ""), ("redis", "rediss://127.0.0.1:1")] {
        for (file, why) in [(missing, "cannot be read"), (not_pem, "no PEM certificate")] {
            let mut a = vec!["--backend", backend, "--tls-ca-file", file];
            if !url.is_empty() {
                a.extend(["--redis-url", url]);
            }
            let run = sim(&a);
            let err = run.refused();
            assert!(err.contains("--tls-ca-file"), "{run:#?}");
            assert!(err.contains(file) && err.contains(why), "{run:#?}");
        }
    }
    // A client certificate that is not one is named too.
    let ca = not_pem;
    let run = sim(&[
        "--tls-client-cert",
        ca,
        "--tls-client-key",
        ca,
        "--backend",
        "memory",
    ]);
    assert!(run.refused().contains("--tls-client-cert"), "{run:#?}");
}

#[test]
fn a_certificate_without_its_key_is_a_usage_error() {
    for (given, missing) in [
        ("--tls-client-cert", "--tls-client-key"),
        ("--tls-client-key", "--tls-client-cert"),
    ] {
        let run = sim(&["--backend", "memory", given, "/x/client.pem"]);
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(run.stderr.contains(missing), "{run:#?}");
    }
}
