//! The planner: filters, ranks and assigns a whole burst against one snapshot, in memory,
//! without overcommitting that snapshot. Pure and synchronous, so it is cheap to test and bench.
//!
//! Internal to the scheduler; [`crate::bench_support`] exposes [`plan`], [`eligible`] and
//! [`PlanConfig`] to the criterion bench and to `sched-sim`'s baseline strategies.

use crate::affinity::{
    hash_container_id, hash_worker_id, rendezvous_score, rotation_offset, AffinityMode,
};
use crate::tiers::Tiers;
use crate::{ContainerRequest, Resources, Worker};
use balanced::Balance;
use std::collections::HashMap;
use std::sync::Arc;

mod balanced;

/// Planner settings (a subset of [`SchedulerConfig`](crate::SchedulerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanConfig {
    /// How to spread CPU-only containers within a priority tier.
    pub affinity: AffinityMode,
    /// Prefer the worker that would have the least CPU left (within a tier) instead of affinity.
    pub best_fit: bool,
    /// Let CPU-only requests use GPU workers.
    pub cpu_on_gpu_workers: bool,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            affinity: AffinityMode::Balanced,
            best_fit: false,
            cpu_on_gpu_workers: false,
        }
    }
}

/// Why a container found no worker in a view of the workers (the cause of
/// [`ScheduleError::NoCapacity`](crate::ScheduleError::NoCapacity)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Unplaceable {
    /// No worker passes the filters (pool, GPU type, preemption, availability).
    #[error("no eligible worker")]
    NoEligibleWorker,
    /// Eligible workers exist but none has room left.
    #[error("no eligible worker has room")]
    NoCapacity,
}

/// The result of planning: per worker index (into the snapshot), the requests assigned to it.
#[derive(Debug, Default)]
pub struct Plan {
    /// worker index → request indices, in request order.
    pub assignments: HashMap<usize, Vec<usize>>,
    /// Request indices with no candidate, and why.
    pub unplaceable: Vec<(usize, Unplaceable)>,
}

/// True when `w` passes every filter for `r` except capacity.
pub fn eligible(w: &Worker, r: &ContainerRequest, cfg: &PlanConfig) -> bool {
    if !w.is_available() {
        return false;
    }
    if w.requires_pool_selector && r.pool_selector.as_deref() != Some(w.pool.as_str()) {
        return false;
    }
    if let Some(p) = &r.pool_selector {
        if *p != w.pool {
            return false;
        }
    }
    if !r.preemptable && w.preemptable {
        return false;
    }
    match w.gpu_type.as_deref() {
        None => r.resources.gpu_count == 0,
        Some(t) => {
            if r.is_cpu_only() {
                cfg.cpu_on_gpu_workers && r.resources.gpu_count == 0
            } else {
                r.accepts_gpu(Some(t))
            }
        }
    }
}

/// Plans `requests` onto `workers` (a snapshot, ordered by id). Ranking: worker priority first
/// (higher first); inside a tier, affinity for CPU-only requests (rotation, rendezvous, or the
/// balanced two choices judged against this plan), or best-fit if configured, else id order. Capacity is the snapshot's free minus what this plan
/// already assigned, so the plan never overcommits the snapshot.
pub fn plan(workers: &[Arc<Worker>], requests: &[&ContainerRequest], cfg: &PlanConfig) -> Plan {
    plan_with_tiers(workers, &Tiers::new(workers), requests, cfg)
}

/// [`plan`] with the tiers already computed (they must be [`Tiers::new`] of the same `workers`).
pub(crate) fn plan_with_tiers(
    workers: &[Arc<Worker>],
    tiers: &Tiers,
    requests: &[&ContainerRequest],
    cfg: &PlanConfig,
) -> Plan {
    let tiers: Vec<&[usize]> = tiers.iter().collect();
    let worker_hashes: Vec<u64> = if cfg.affinity == AffinityMode::Rendezvous {
        workers.iter().map(|w| hash_worker_id(&w.id)).collect()
    } else {
        Vec::new()
    };

    let mut remaining: Vec<Resources> = workers.iter().map(|w| w.free).collect();
    let mut balance = Balance::new(workers.len());
    let mut out = Plan::default();
    for (ri, r) in requests.iter().enumerate() {
        let h = hash_container_id(&r.id);
        let use_affinity = r.is_cpu_only() && cfg.affinity != AffinityMode::Off && !cfg.best_fit;
        let mut any_eligible = false;
        let mut chosen: Option<usize> = None;
        for tier in &tiers {
            if cfg.best_fit || (use_affinity && cfg.affinity == AffinityMode::Rendezvous) {
                // Score every fitting candidate in the tier.
                let mut best: Option<(u64, usize)> = None;
                for &wi in tier.iter() {
                    if !eligible(&workers[wi], r, cfg) {
                        continue;
                    }
                    any_eligible = true;
                    if !remaining[wi].fits(&r.resources) {
                        continue;
                    }
                    let score = if cfg.best_fit {
                        // Least CPU left after placement wins; ties by memory left.
                        let left = remaining[wi].saturating_sub(&r.resources);
                        u64::MAX - (left.cpu_millicores.saturating_add(left.memory_mib / 4))
                    } else {
                        rendezvous_score(h, worker_hashes[wi])
                    };
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, wi));
                    }
                }
                chosen = best.map(|(_, wi)| wi);
            } else if use_affinity && cfg.affinity == AffinityMode::Balanced {
                let fits = |wi: usize| {
                    if !eligible(&workers[wi], r, cfg) {
                        return None;
                    }
                    Some(remaining[wi].fits(&r.resources))
                };
                let (seen_eligible, pick) = balance.choose(tier, h, &remaining, fits);
                any_eligible |= seen_eligible;
                chosen = pick;
            } else {
                let n = tier.len();
                let off = if use_affinity {
                    rotation_offset(h, n)
                } else {
                    0
                };
                for k in 0..n {
                    let wi = tier[(off + k) % n];
                    if !eligible(&workers[wi], r, cfg) {
                        continue;
                    }
                    any_eligible = true;
                    if remaining[wi].fits(&r.resources) {
                        chosen = Some(wi);
                        break;
                    }
                }
            }
            if chosen.is_some() {
                break;
            }
        }
        match chosen {
            Some(wi) => {
                remaining[wi] = remaining[wi].saturating_sub(&r.resources);
                balance.placed(wi);
                out.assignments.entry(wi).or_default().push(ri);
            }
            None => out.unplaceable.push((
                ri,
                if any_eligible {
                    Unplaceable::NoCapacity
                } else {
                    Unplaceable::NoEligibleWorker
                },
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::WorkerSpec;

    fn ws(specs: Vec<WorkerSpec>) -> Vec<Arc<Worker>> {
        specs
            .iter()
            .map(|s| Arc::new(Worker::from_spec(s, 1)))
            .collect()
    }

    fn reqs(n: usize, cpu: u64) -> Vec<ContainerRequest> {
        (0..n)
            .map(|i| ContainerRequest::new(format!("c{i}"), Resources::cpu_mem(cpu, 64)))
            .collect()
    }

    #[test]
    fn never_overcommits_snapshot() {
        let workers = ws((0..3)
            .map(|i| WorkerSpec::new(format!("w{i}"), Resources::cpu_mem(1000, 10_000)))
            .collect());
        let rs = reqs(40, 100);
        let refs: Vec<&ContainerRequest> = rs.iter().collect();
        let p = plan(&workers, &refs, &PlanConfig::default());
        let placed: usize = p.assignments.values().map(Vec::len).sum();
        assert_eq!(placed, 30);
        assert_eq!(p.unplaceable.len(), 10);
        assert!(p
            .unplaceable
            .iter()
            .all(|(_, why)| *why == Unplaceable::NoCapacity));
        for (wi, v) in &p.assignments {
            let used: u64 = v.iter().map(|&ri| rs[ri].resources.cpu_millicores).sum();
            assert!(used <= workers[*wi].free.cpu_millicores);
        }
    }

    #[test]
    fn priority_tier_first_then_spread() {
        let mut specs: Vec<WorkerSpec> = (0..4)
            .map(|i| {
                WorkerSpec::new(format!("hi{i}"), Resources::cpu_mem(100_000, 100_000))
                    .with_priority(10)
            })
            .collect();
        specs.push(WorkerSpec::new("lo", Resources::cpu_mem(100_000, 100_000)));
        let workers = ws(specs);
        let rs = reqs(100, 10);
        let refs: Vec<&ContainerRequest> = rs.iter().collect();
        let p = plan(&workers, &refs, &PlanConfig::default());
        let lo = workers.iter().position(|w| w.id == "lo").unwrap();
        assert!(
            !p.assignments.contains_key(&lo),
            "low tier used while high tier had room"
        );
        assert_eq!(
            p.assignments.len(),
            4,
            "affinity spreads over the whole tier"
        );
    }

    #[test]
    fn affinity_off_piles_onto_first_worker() {
        let workers = ws((0..5)
            .map(|i| WorkerSpec::new(format!("w{i}"), Resources::cpu_mem(100_000, 100_000)))
            .collect());
        let rs = reqs(50, 10);
        let refs: Vec<&ContainerRequest> = rs.iter().collect();
        let cfg = PlanConfig {
            affinity: AffinityMode::Off,
            ..PlanConfig::default()
        };
        let p = plan(&workers, &refs, &cfg);
        assert_eq!(p.assignments.len(), 1);
    }

    #[test]
    fn filters() {
        let workers = ws(vec![
            WorkerSpec::new("gpu", Resources::new(1000, 1000, 2)).with_gpu_type("a100"),
            WorkerSpec::new("pool", Resources::cpu_mem(1000, 1000))
                .with_pool("p")
                .requiring_pool_selector(),
            WorkerSpec::new("pre", Resources::cpu_mem(1000, 1000)).preemptable(),
            WorkerSpec::new("off", Resources::cpu_mem(1000, 1000))
                .with_status(crate::WorkerStatus::Draining),
        ]);
        let cfg = PlanConfig::default();
        let cpu = ContainerRequest::new("c", Resources::cpu_mem(1, 1)).non_preemptable();
        assert!(
            !workers
                .iter()
                .any(|w| eligible(w, &cpu, &cfg) && w.id != "none"),
            "non-preemptable CPU request has nowhere to go"
        );
        let gpu = ContainerRequest::new("g", Resources::new(1, 1, 1)).with_gpu_types(["a100"]);
        assert!(eligible(&workers[0], &gpu, &cfg));
        let gpu_h = ContainerRequest::new("g", Resources::new(1, 1, 1)).with_gpu_types(["h100"]);
        assert!(!eligible(&workers[0], &gpu_h, &cfg));
        let any =
            ContainerRequest::new("g", Resources::new(1, 1, 1)).with_gpu_types([crate::ANY_GPU]);
        assert!(eligible(&workers[0], &any, &cfg));
        let pooled = ContainerRequest::new("p", Resources::cpu_mem(1, 1)).with_pool("p");
        assert!(eligible(&workers[1], &pooled, &cfg));
        assert!(!eligible(
            &workers[1],
            &ContainerRequest::new("x", Resources::cpu_mem(1, 1)),
            &cfg
        ));
        assert!(eligible(
            &workers[2],
            &ContainerRequest::new("x", Resources::cpu_mem(1, 1)),
            &cfg
        ));
        assert!(!eligible(
            &workers[3],
            &ContainerRequest::new("x", Resources::cpu_mem(1, 1)),
            &cfg
        ));
        let cfg2 = PlanConfig {
            cpu_on_gpu_workers: true,
            ..cfg
        };
        assert!(eligible(
            &workers[0],
            &ContainerRequest::new("x", Resources::cpu_mem(1, 1)),
            &cfg2
        ));
    }

    #[test]
    fn best_fit_packs() {
        let workers = ws(vec![
            WorkerSpec::new("big", Resources::cpu_mem(10_000, 10_000)),
            WorkerSpec::new("small", Resources::cpu_mem(600, 10_000)),
        ]);
        let rs = reqs(1, 500);
        let refs: Vec<&ContainerRequest> = rs.iter().collect();
        let cfg = PlanConfig {
            best_fit: true,
            ..PlanConfig::default()
        };
        let p = plan(&workers, &refs, &cfg);
        assert_eq!(p.assignments.keys().copied().collect::<Vec<_>>(), vec![1]);
    }
}
