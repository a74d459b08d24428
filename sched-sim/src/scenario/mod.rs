//! Scenarios: [`burst`] (default), [`sustained`], [`scale`], [`contention`] and [`churn`].

pub mod burst;
pub mod churn;
pub mod contention;
pub mod scale;
pub mod sustained;

use crate::backend::{BackendOptions, WorkerSetup};
use crate::strategy::StrategyOptions;
use sched_core::{ContainerRequest, Resources};

/// Settings shared by every scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The store.
    pub backend: BackendOptions,
    /// Workers per run.
    pub workers: usize,
    /// Each worker's total.
    pub worker_capacity: Resources,
    /// Containers per burst.
    pub containers: usize,
    /// Each container's request.
    pub container_size: Resources,
    /// Concurrent callers per burst (0: one task per container, all at once).
    pub concurrency: usize,
    /// Bursts per strategy.
    pub repeat: u32,
    /// Seed of container ids (affinity depends on ids) and of random choices.
    pub seed: u64,
    /// Strategy settings.
    pub strategy: StrategyOptions,
    /// No progress bars.
    pub quiet: bool,
    /// Measure the raw commit and the peer beside each burst report (single-node Redis).
    pub yardsticks: bool,
}

impl RunConfig {
    /// The workers of one run: `workers` of `worker_capacity` each.
    pub fn worker_setup(&self) -> WorkerSetup {
        WorkerSetup {
            count: self.workers,
            capacity: self.worker_capacity,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            backend: BackendOptions::default(),
            workers: 20,
            worker_capacity: Resources::cpu_mem(4000, 8192),
            containers: 100,
            container_size: Resources::cpu_mem(250, 256),
            concurrency: 0,
            repeat: 20,
            seed: 42,
            strategy: StrategyOptions::default(),
            quiet: true,
            yardsticks: true,
        }
    }
}

impl RunConfig {
    /// Concurrent callers actually used.
    pub fn effective_concurrency(&self) -> usize {
        if self.concurrency == 0 {
            self.containers.max(1)
        } else {
            self.concurrency
        }
    }
}

/// `n` CPU-only requests `{tag}-b{burst}-c{i}`.
pub fn requests(tag: &str, burst: u32, n: usize, size: Resources) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| ContainerRequest::new(format!("{tag}-b{burst}-c{i}"), size))
        .collect()
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
