//! [`Tiers`]: workers grouped by priority, computed once per snapshot and used by the planner.

use crate::Worker;
use std::sync::Arc;

/// Workers grouped into priority tiers: indices sorted by (priority desc, id asc), split into runs
/// of equal priority. Depends only on ids and priorities, so a snapshot computes it once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tiers {
    order: Vec<usize>,
    bounds: Vec<(usize, usize)>,
}

impl Tiers {
    /// Tiers of `workers`.
    pub(crate) fn new(workers: &[Arc<Worker>]) -> Self {
        let mut order: Vec<usize> = (0..workers.len()).collect();
        order.sort_by(|&a, &b| {
            workers[b]
                .priority
                .cmp(&workers[a].priority)
                .then_with(|| workers[a].id.cmp(&workers[b].id))
        });
        let mut bounds = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let p = workers[order[start]].priority;
            let mut end = start + 1;
            while end < order.len() && workers[order[end]].priority == p {
                end += 1;
            }
            bounds.push((start, end));
            start = end;
        }
        Tiers { order, bounds }
    }

    /// The tiers, highest priority first; each a run of worker indices in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[usize]> {
        self.bounds.iter().map(|&(a, b)| &self.order[a..b])
    }
}
