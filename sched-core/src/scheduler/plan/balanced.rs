//! [`AffinityMode::Balanced`](crate::AffinityMode::Balanced): two choices per container,
//! judged against the burst's running plan.
//!
//! The first choice is the rotation's first candidate with room (what
//! [`AffinityMode::Rotate`](crate::AffinityMode::Rotate) would pick). The second is the
//! least-loaded candidate with room met by scanning the tier from
//! [`second_offset`](crate::affinity::second_offset) (the first one met wins a tie). The first
//! choice is kept unless the second is strictly less loaded. Load is the number of containers
//! this plan already assigned to the worker, ties broken by more free CPU left. Because the
//! chosen worker is always one of the least loaded with room, `m` containers onto `n` equal
//! workers put at most `ceil(m / n)` on any one; because the scan starts at a per-container hash,
//! schedulers planning from the same view do not all pick the same least-loaded worker.

use crate::affinity::{rotation_offset, second_offset};
use crate::Resources;
use std::cmp::Reverse;

/// The running plan's load per worker, and a scratch buffer reused across containers.
#[derive(Debug, Default)]
pub(super) struct Balance {
    in_plan: Vec<u32>,
    fit: Vec<bool>,
}

impl Balance {
    /// No container assigned yet to any of `workers` workers.
    pub(super) fn new(workers: usize) -> Self {
        Balance {
            in_plan: vec![0; workers],
            fit: Vec::new(),
        }
    }

    /// The plan assigned one more container to worker `wi`.
    pub(super) fn placed(&mut self, wi: usize) {
        if let Some(c) = self.in_plan.get_mut(wi) {
            *c = c.saturating_add(1);
        }
    }

    /// Lower is less loaded: containers in this plan, then more free CPU left.
    fn load(&self, wi: usize, remaining: &[Resources]) -> (u32, Reverse<u64>) {
        (
            self.in_plan.get(wi).copied().unwrap_or(u32::MAX),
            Reverse(remaining.get(wi).map_or(0, |r| r.cpu_millicores)),
        )
    }

    /// Picks a worker of `tier` for the container hashed `h`. `fits(wi)` is `None` when the
    /// worker is not eligible, else whether the container fits its remaining capacity. Returns
    /// whether any worker of the tier was eligible, and the choice (`None`: no room).
    pub(super) fn choose(
        &mut self,
        tier: &[usize],
        h: u64,
        remaining: &[Resources],
        mut fits: impl FnMut(usize) -> Option<bool>,
    ) -> (bool, Option<usize>) {
        let n = tier.len();
        let mut fit = std::mem::take(&mut self.fit);
        fit.clear();
        let mut any_eligible = false;
        for &wi in tier {
            let f = fits(wi);
            any_eligible |= f.is_some();
            fit.push(f == Some(true));
        }
        let off = rotation_offset(h, n);
        let first = (0..n)
            .map(|k| (off + k) % n)
            .find(|&p| fit[p])
            .map(|p| tier[p]);
        let chosen = first.map(|first| {
            let off2 = second_offset(h, n);
            let mut best = (self.load(first, remaining), first);
            for p in (0..n).map(|k| (off2 + k) % n).filter(|&p| fit[p]) {
                let load = self.load(tier[p], remaining);
                if load < best.0 {
                    best = (load, tier[p]);
                }
            }
            best.1
        });
        self.fit = fit;
        (any_eligible, chosen)
    }
}

#[cfg(test)]
#[path = "balanced_test.rs"]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
