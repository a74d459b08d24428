//! Fault injection for [`MemoryRepository`](crate::MemoryRepository).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// One injected fault, consumed by the next mutating call (`reserve_batch` or `release_batch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail before applying anything, with [`RepoError::Unavailable`](sched_core::RepoError).
    Fail,
    /// Reject every worker in the call with a version conflict, applying nothing. On
    /// `release_batch` (which has no versions) it fails like [`Fault::Fail`].
    Conflict,
    /// Apply the call, then lose the reply: the caller gets
    /// [`RepoError::Ambiguous`](sched_core::RepoError) although the change is committed.
    LoseReply,
}

/// Faults and latency to inject. Shared by the repository; change it at any time.
#[derive(Debug, Default)]
pub struct FaultPlan {
    queue: Mutex<VecDeque<Fault>>,
    latency: Mutex<Duration>,
}

impl FaultPlan {
    /// Queues `fault` for the next `n` mutating calls.
    pub fn push(&self, fault: Fault, n: usize) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..n {
            q.push_back(fault.clone());
        }
    }

    /// Sets latency added to every call (zero to stop).
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// Removes queued faults and latency.
    pub fn clear(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.set_latency(Duration::ZERO);
    }

    /// Number of faults still queued.
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn next(&self) -> Option<Fault> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    pub(crate) fn latency(&self) -> Duration {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }
}
