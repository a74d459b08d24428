//! Scrapes the Prometheus example once: every metric in METRICS.md is there, with its kind and,
//! in its help text, its unit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/prometheus.rs"]
#[allow(dead_code)]
mod example;

use sched_core::telemetry::{MetricKind, METRICS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn scrape(addr: std::net::SocketAddr) -> String {
    // The listener starts on the exporter's own task: retry the connection for a while.
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("nothing listens on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_every_documented_metric_with_its_unit() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(example::run(addr).await.unwrap(), 40);
    // The Redis-only series (`sched_redis_*`) start at zero for a Redis backend.
    let before = scrape(addr).await;
    assert!(!before.contains("sched_redis_"), "{before}");
    sched_core::telemetry::describe_backend("redis");
    let body = scrape(addr).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for d in METRICS {
        let kind = match d.kind {
            MetricKind::Histogram => "summary",
            k => k.as_str(),
        };
        assert!(
            body.contains(&format!("# TYPE {} {kind}\n", d.name)),
            "{} missing or not a {kind}:\n{body}",
            d.name
        );
        let help = body
            .lines()
            .find(|l| l.starts_with(&format!("# HELP {} ", d.name)))
            .unwrap_or_else(|| panic!("no help for {}", d.name));
        assert!(help.ends_with(&format!("[{}]", d.unit)), "{help}");
    }
    // What the burst did shows: 40 placements, unlabelled (no per-worker series by default).
    assert!(body.contains("\nsched_placements_total 40\n"), "{body}");
    assert!(
        !body.contains("worker=\""),
        "a per-worker label leaked:\n{body}"
    );
}
