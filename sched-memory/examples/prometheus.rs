//! sched's metrics on a Prometheus endpoint (METRICS.md lists them):
//!
//! ```text
//! cargo run -p sched-memory --example prometheus        # then: curl http://127.0.0.1:9000/metrics
//! METRICS_ADDR=127.0.0.1:9100 cargo run -p sched-memory --example prometheus
//! ```
//!
//! It installs `metrics-exporter-prometheus`, describes sched's metrics, places a burst on the
//! in-memory backend (one `schedule_batch` and 20 concurrent `schedule` calls), and serves until
//! Ctrl-C. `tests/prometheus_exporter.rs` runs [`run`] and scrapes it once.

use metrics_exporter_prometheus::PrometheusBuilder;
use sched_core::{ContainerRequest, Resources, Scheduler, SchedulerConfig};
use sched_memory::MemoryRepository;
use std::net::SocketAddr;

/// Installs the exporter on `addr` (the process's global recorder), describes every metric and
/// places a burst of 40 containers. Returns the number placed.
pub async fn run(addr: SocketAddr) -> Result<usize, Box<dyn std::error::Error>> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    sched_core::telemetry::describe();
    sched_core::telemetry::describe_backend("memory");

    let repo = MemoryRepository::builder()
        .cpu_workers(4, Resources::cpu_mem(8_000, 32_768))
        .build()
        .await;
    let sched = Scheduler::new(repo, SchedulerConfig::default());
    let request = |i: usize| ContainerRequest::new(format!("c-{i}"), Resources::cpu_mem(500, 512));
    let mut placed = sched
        .schedule_batch((0..20).map(request).collect())
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    let calls = (20..40).map(|i| {
        let sched = sched.clone();
        tokio::spawn(async move { sched.schedule(request(i)).await })
    });
    for call in calls.collect::<Vec<_>>() {
        if matches!(call.await, Ok(Ok(_))) {
            placed += 1;
        }
    }
    Ok(placed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9000".to_owned())
        .parse()?;
    let placed = run(addr).await?;
    println!("placed {placed}; metrics on http://{addr}/metrics (Ctrl-C stops)");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
