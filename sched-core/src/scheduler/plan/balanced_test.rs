use super::super::{plan, Plan, PlanConfig, Unplaceable};
use crate::{AffinityMode, ContainerRequest, Resources, Worker, WorkerSpec};
use std::sync::Arc;

fn ws(specs: Vec<WorkerSpec>) -> Vec<Arc<Worker>> {
    specs
        .iter()
        .map(|s| Arc::new(Worker::from_spec(s, 1)))
        .collect()
}

fn equal(n: usize, cpu: u64) -> Vec<Arc<Worker>> {
    ws((0..n)
        .map(|i| WorkerSpec::new(format!("w{i:02}"), Resources::cpu_mem(cpu, 1_000_000)))
        .collect())
}

fn reqs(prefix: &str, n: usize, cpu: u64) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| ContainerRequest::new(format!("{prefix}{i}"), Resources::cpu_mem(cpu, 64)))
        .collect()
}

fn cfg(affinity: AffinityMode) -> PlanConfig {
    PlanConfig {
        affinity,
        ..PlanConfig::default()
    }
}

fn run(workers: &[Arc<Worker>], rs: &[ContainerRequest], affinity: AffinityMode) -> Plan {
    let refs: Vec<&ContainerRequest> = rs.iter().collect();
    plan(workers, &refs, &cfg(affinity))
}

/// Most containers on one worker, over the mean per worker.
fn max_over_mean(p: &Plan, workers: usize) -> f64 {
    let placed: usize = p.assignments.values().map(Vec::len).sum();
    let max = p.assignments.values().map(Vec::len).max().unwrap_or(0);
    max as f64 / (placed as f64 / workers as f64)
}

/// Per-worker capacity used by the plan never exceeds the snapshot's free capacity.
fn assert_no_overcommit(workers: &[Arc<Worker>], rs: &[ContainerRequest], p: &Plan) {
    for (wi, v) in &p.assignments {
        let used = Resources::checked_sum(v.iter().map(|&ri| &rs[ri].resources)).unwrap();
        assert!(used.le(&workers[*wi].free), "worker {wi} overcommitted");
    }
}

const SEEDS: [&str; 8] = ["c", "c-", "burst-", "s1-", "s2-", "s3-", "g", "seed7-"];

#[test]
fn balanced_is_the_default() {
    assert_eq!(PlanConfig::default().affinity, AffinityMode::Balanced);
    assert_eq!(AffinityMode::default(), AffinityMode::Balanced);
    assert_eq!(
        crate::SchedulerConfig::default().affinity,
        AffinityMode::Balanced
    );
}

#[test]
fn hundred_onto_twenty_is_balanced_on_every_seed() {
    let workers = equal(20, 100_000);
    for seed in SEEDS {
        let rs = reqs(seed, 100, 250);
        let rotate = max_over_mean(&run(&workers, &rs, AffinityMode::Rotate), 20);
        let p = run(&workers, &rs, AffinityMode::Balanced);
        let balanced = max_over_mean(&p, 20);
        eprintln!("seed {seed:8} max/mean: rotate {rotate:.2}, balanced {balanced:.2}");
        assert_eq!(p.assignments.values().map(Vec::len).sum::<usize>(), 100);
        assert!(balanced <= 1.2, "seed {seed}: {balanced}");
        // ceil(100 / 20) on every worker: the choice is always one of the least loaded.
        assert!(p.assignments.values().all(|v| v.len() == 5), "seed {seed}");
        assert_no_overcommit(&workers, &rs, &p);
    }
}

#[test]
fn uneven_counts_stay_within_one() {
    for (m, n) in [(7, 3), (33, 20), (250, 20), (101, 7)] {
        let workers = equal(n, 1_000_000);
        let rs = reqs("u", m, 10);
        let p = run(&workers, &rs, AffinityMode::Balanced);
        let max = p.assignments.values().map(Vec::len).max().unwrap();
        assert_eq!(max, m.div_ceil(n), "{m} onto {n}");
    }
}

#[test]
fn deterministic_and_keeps_the_rotation_choice_when_it_is_least_loaded() {
    let workers = equal(20, 100_000);
    let rs = reqs("d", 100, 250);
    let a = run(&workers, &rs, AffinityMode::Balanced);
    let b = run(&workers, &rs, AffinityMode::Balanced);
    assert_eq!(a.assignments, b.assignments);
    // A lone container takes the rotation's first choice, as Rotate does.
    for i in 0..50 {
        let one = reqs(&format!("lone{i}-"), 1, 250);
        assert_eq!(
            run(&workers, &one, AffinityMode::Balanced).assignments,
            run(&workers, &one, AffinityMode::Rotate).assignments
        );
    }
}

#[test]
fn never_overcommits_near_capacity() {
    // 20 workers with 3..=7 slots of 300m free each (plus slack that fits no container).
    let workers = ws((0..20)
        .map(|i| {
            let slots = 3 + (i % 5) as u64;
            WorkerSpec::new(
                format!("w{i:02}"),
                Resources::cpu_mem(slots * 300 + 299, 100_000),
            )
        })
        .collect());
    let slots: usize = (0..20).map(|i| 3 + i % 5).sum();
    for seed in SEEDS {
        let rs = reqs(seed, slots + 10, 300);
        let p = run(&workers, &rs, AffinityMode::Balanced);
        let placed: usize = p.assignments.values().map(Vec::len).sum();
        assert_eq!(placed, slots, "seed {seed}: every slot used, no more");
        assert_eq!(p.unplaceable.len(), 10);
        assert!(p
            .unplaceable
            .iter()
            .all(|(_, why)| *why == Unplaceable::NoCapacity));
        assert_no_overcommit(&workers, &rs, &p);
    }
}

#[test]
fn respects_tiers_and_filters() {
    let mut specs: Vec<WorkerSpec> = (0..4)
        .map(|i| {
            WorkerSpec::new(format!("hi{i}"), Resources::cpu_mem(1_000, 100_000)).with_priority(10)
        })
        .collect();
    specs.push(WorkerSpec::new("lo", Resources::cpu_mem(100_000, 100_000)));
    specs.push(
        WorkerSpec::new("pool", Resources::cpu_mem(100_000, 100_000))
            .with_pool("p")
            .requiring_pool_selector()
            .with_priority(10),
    );
    specs.push(
        WorkerSpec::new("gpu", Resources::new(100_000, 100_000, 8))
            .with_gpu_type("a100")
            .with_priority(10),
    );
    specs.push(
        WorkerSpec::new("drain", Resources::cpu_mem(100_000, 100_000))
            .with_status(crate::WorkerStatus::Draining)
            .with_priority(10),
    );
    let workers = ws(specs);
    let id = |name: &str| workers.iter().position(|w| w.id == name).unwrap();
    // 4 high-tier workers hold 4 x 4 = 16 containers of 250m; the rest go to "lo".
    let rs = reqs("t", 30, 250);
    let p = run(&workers, &rs, AffinityMode::Balanced);
    for name in ["hi0", "hi1", "hi2", "hi3"] {
        assert_eq!(p.assignments[&id(name)].len(), 4, "{name} filled first");
    }
    assert_eq!(p.assignments[&id("lo")].len(), 14);
    for name in ["pool", "gpu", "drain"] {
        assert!(
            !p.assignments.contains_key(&id(name)),
            "{name} filtered out"
        );
    }
    assert_no_overcommit(&workers, &rs, &p);
    // A request nothing accepts is NoEligibleWorker, not NoCapacity.
    let nowhere = [ContainerRequest::new("x", Resources::cpu_mem(1, 1)).with_pool("nope")];
    let p = run(&workers, &nowhere, AffinityMode::Balanced);
    assert_eq!(p.unplaceable, vec![(0, Unplaceable::NoEligibleWorker)]);
}
