//! [`Sweeper`]: the expiry sweep as a background task.

use super::sweep_all;
use crate::WorkerRepository;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs [`sweep_all`] every `period` in a spawned task until stopped or dropped. Each expired
/// reservation is logged (`tracing`, target `sched::lifecycle`) and counted in the metric
/// `sched_leases_expired_total` (label `reason`); a failed round is logged, counted in
/// `sched_lease_sweep_errors_total` and retried at the next tick (the sweep is idempotent).
///
/// Run one per store or many: two sweepers racing on a worker each expire a reservation at most
/// once between them (the sweep is atomic per worker in the store).
#[derive(Debug)]
pub struct Sweeper {
    task: JoinHandle<()>,
}

impl Sweeper {
    /// Starts sweeping every worker (or those of `pool`) every `period`. Needs a Tokio runtime.
    pub fn spawn<R>(repo: Arc<R>, pool: Option<String>, period: Duration) -> Self
    where
        R: WorkerRepository + ?Sized + 'static,
    {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match sweep_all(&*repo, pool.as_deref()).await {
                    Ok(sweeps) => {
                        for s in sweeps {
                            for e in &s.expired {
                                metrics::counter!(
                                    "sched_leases_expired_total",
                                    "reason" => e.reason.as_str()
                                )
                                .increment(1);
                                tracing::info!(
                                    target: "sched::lifecycle",
                                    worker = %e.record.worker_id,
                                    container = %e.record.container_id,
                                    reason = e.reason.as_str(),
                                    deadline_ms = ?e.record.lease_expires_at_ms,
                                    swept_at_ms = s.swept_at_ms,
                                    resources = %e.record.resources,
                                    "reservation expired"
                                );
                            }
                        }
                    }
                    Err(e) => {
                        metrics::counter!("sched_lease_sweep_errors_total").increment(1);
                        tracing::warn!(target: "sched::lifecycle", error = %e, "lease sweep failed");
                    }
                }
            }
        });
        Sweeper { task }
    }

    /// Stops the task (a sweep in flight is cancelled between calls or mid-call; either way each
    /// worker's sweep is atomic in the store).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
