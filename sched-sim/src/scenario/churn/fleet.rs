//! The churn scenario's shared state: one [`Agent`] per worker (alive or crashed, and the
//! containers it runs and renews), the [`Book`] of every container's fate as the simulator
//! knows it, and the [`Tally`] of what happened.
//!
//! The simulator's timers only decide when a container ends and whether it dies; whether a
//! reservation is still held is always asked of the store.

use super::ChurnConfig;
use crate::hist::Recorder;
use sched_core::{Resources, Scheduler, WorkerRepository};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// A container an agent runs: it renews its lease every round until `ends_at`, then releases
/// it, or, when it `dies`, simply stops renewing it.
#[derive(Debug, Clone)]
pub(super) struct Running {
    /// What it holds.
    pub resources: Resources,
    /// When it ends (simulator time).
    pub ends_at: Instant,
    /// Ends without a release.
    pub dies: bool,
}

/// One worker's agent.
#[derive(Debug, Default)]
pub(super) struct Agent {
    /// False while crashed: no heartbeat, no renewal, no release.
    pub crashed: bool,
    /// The containers it runs, by id.
    pub containers: BTreeMap<String, Running>,
}

/// What the simulator knows of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fate {
    /// Running on `worker`, renewed by its agent.
    Live {
        /// Index of the worker.
        worker: usize,
    },
    /// Released by its agent at the end of its life.
    Released,
    /// Dead without a release: its agent stopped renewing it, or crashed, or the container was
    /// placed on a crashed agent's worker, or its placement was ambiguous. Only the sweep can
    /// give its capacity back.
    Dead {
        /// What it may still hold.
        resources: Resources,
    },
    /// Live, but the store no longer held it (a lease ran out while its agent renewed it).
    Evicted,
}

/// Every container's fate, and the live containers the store lost.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// By container id.
    pub fates: HashMap<String, Fate>,
    /// Live containers the store expired or no longer held (each counted once).
    pub live_lost: HashSet<String>,
}

/// Counters (relaxed atomics; read once everything has stopped).
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub requested: AtomicU64,
    pub placed: AtomicU64,
    pub unplaced: AtomicU64,
    pub ambiguous: AtomicU64,
    pub released: AtomicU64,
    pub died: AtomicU64,
    pub lost_in_crash: AtomicU64,
    pub placed_on_crashed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub renew_calls: AtomicU64,
    pub renewed: AtomicU64,
    pub renew_expired: AtomicU64,
    pub renew_not_held: AtomicU64,
    pub renew_no_lease: AtomicU64,
    pub drains: AtomicU64,
    pub sweep_rounds: AtomicU64,
    pub expired_lease: AtomicU64,
    pub expired_stale: AtomicU64,
    pub expired_dead: AtomicU64,
    pub expired_live: AtomicU64,
    pub expired_other: AtomicU64,
    pub returned_cpu: AtomicU64,
    pub returned_mem: AtomicU64,
    pub returned_gpu: AtomicU64,
}

/// Adds `n` to a counter.
pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub(super) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Latency recorders.
#[derive(Debug, Default)]
pub(super) struct Latencies {
    pub place_burst: Recorder,
    pub heartbeat: Recorder,
    pub renew: Recorder,
    pub sweep_round: Recorder,
    /// Store clock: how long after its deadline a lease was swept.
    pub swept_after_deadline: Recorder,
}

/// What the workload tasks share.
pub(super) struct Shared {
    /// The settings.
    pub cfg: ChurnConfig,
    /// Each container's request.
    pub container_size: Resources,
    /// The (metered) store.
    pub repo: Arc<dyn WorkerRepository>,
    /// The scheduler that places and releases.
    pub sched: Scheduler<Arc<dyn WorkerRepository>>,
    /// Worker ids, by index.
    pub workers: Vec<String>,
    /// Worker index by id.
    pub index: HashMap<String, usize>,
    /// One agent per worker (lock order: an agent, then the book; never the other way).
    pub agents: Vec<Mutex<Agent>>,
    /// Fates.
    pub book: Mutex<Book>,
    /// Counters.
    pub tally: Tally,
    /// Latencies.
    pub lat: Mutex<Latencies>,
    /// Lifetimes stop advancing: agents only renew.
    pub frozen: AtomicBool,
    /// The placer, the drainer and the crash stop.
    pub stop_workload: AtomicBool,
    /// The agents and the sweeper stop.
    pub stop_all: AtomicBool,
}

/// Locks `m`, recovering the data if a holder panicked (only the tally could be affected).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One agent round's work, taken under the agent's lock.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// Ended containers to release.
    pub release: Vec<String>,
    /// Live containers to renew.
    pub renew: Vec<String>,
}

impl Shared {
    /// Starts a round of agent `idx`: containers past their end either die (recorded, no
    /// longer renewed) or go to `release`; the rest are renewed. `None` while crashed.
    pub fn begin_round(&self, idx: usize) -> Option<Round> {
        let agent = self.agents.get(idx)?;
        let mut a = lock(agent);
        if a.crashed {
            return None;
        }
        let mut round = Round::default();
        if !self.frozen.load(Ordering::Relaxed) {
            let now = Instant::now();
            let ended: Vec<String> = a
                .containers
                .iter()
                .filter(|(_, r)| r.ends_at <= now)
                .map(|(id, _)| id.clone())
                .collect();
            let mut book = lock(&self.book);
            for id in ended {
                let Some(r) = a.containers.remove(&id) else {
                    continue;
                };
                if r.dies {
                    add(&self.tally.died, 1);
                    book.fates.insert(
                        id,
                        Fate::Dead {
                            resources: r.resources,
                        },
                    );
                } else {
                    round.release.push(id);
                }
            }
        }
        round.renew = a.containers.keys().cloned().collect();
        Some(round)
    }

    /// A placement committed on worker `worker_id`: its agent runs it, or, when that agent is
    /// crashed, it is dead from the start.
    pub fn adopt(&self, container_id: String, worker_id: &str, running: Running) {
        add(&self.tally.placed, 1);
        let Some((idx, agent)) = self
            .index
            .get(worker_id)
            .and_then(|&i| self.agents.get(i).map(|a| (i, a)))
        else {
            // Not one of ours: never renewed, so it is dead.
            self.dead(container_id, running.resources);
            return;
        };
        let mut a = lock(agent);
        let mut book = lock(&self.book);
        if a.crashed {
            add(&self.tally.placed_on_crashed, 1);
            book.fates.insert(
                container_id,
                Fate::Dead {
                    resources: running.resources,
                },
            );
        } else {
            book.fates
                .insert(container_id.clone(), Fate::Live { worker: idx });
            a.containers.insert(container_id, running);
        }
    }

    /// Records a container as dead (nobody will release or renew it).
    pub fn dead(&self, container_id: String, resources: Resources) {
        lock(&self.book)
            .fates
            .insert(container_id, Fate::Dead { resources });
    }

    /// Records a release answer: released, or not held although live (evicted).
    pub fn released(&self, container_id: String, was_held: bool) {
        let mut book = lock(&self.book);
        if was_held {
            add(&self.tally.released, 1);
            book.fates.insert(container_id, Fate::Released);
        } else {
            book.live_lost.insert(container_id.clone());
            book.fates.insert(container_id, Fate::Evicted);
        }
    }

    /// The store no longer holds (or will not renew) a container agent `idx` runs: the agent
    /// drops it. Nothing happens when the agent no longer runs it (it crashed meanwhile).
    pub fn evict(&self, idx: usize, container_id: &str) {
        let Some(agent) = self.agents.get(idx) else {
            return;
        };
        let mut a = lock(agent);
        if a.containers.remove(container_id).is_some() {
            let mut book = lock(&self.book);
            book.live_lost.insert(container_id.to_owned());
            book.fates.insert(container_id.to_owned(), Fate::Evicted);
        }
    }

    /// Crashes agent `idx`: everything it runs is dead.
    pub fn crash(&self, idx: usize) {
        let Some(agent) = self.agents.get(idx) else {
            return;
        };
        let mut a = lock(agent);
        a.crashed = true;
        let gone = std::mem::take(&mut a.containers);
        let mut book = lock(&self.book);
        let n = gone.len() as u64;
        for (id, r) in gone {
            book.fates.insert(
                id,
                Fate::Dead {
                    resources: r.resources,
                },
            );
        }
        add(&self.tally.lost_in_crash, n);
    }

    /// Brings agent `idx` back (with no containers).
    pub fn revive(&self, idx: usize) {
        if let Some(agent) = self.agents.get(idx) {
            lock(agent).crashed = false;
        }
    }

    /// The fate of a container.
    pub fn fate(&self, container_id: &str) -> Option<Fate> {
        lock(&self.book).fates.get(container_id).cloned()
    }

    /// Dead containers and what each may hold.
    pub fn dead_containers(&self) -> Vec<(String, Resources)> {
        let book = lock(&self.book);
        let mut v: Vec<(String, Resources)> = book
            .fates
            .iter()
            .filter_map(|(id, f)| match f {
                Fate::Dead { resources } => Some((id.clone(), *resources)),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Live containers as `(container, worker)` pairs.
    pub fn live_containers(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (agent, worker) in self.agents.iter().zip(&self.workers) {
            for id in lock(agent).containers.keys() {
                v.push((id.clone(), worker.clone()));
            }
        }
        v
    }

    /// Asks every task to stop.
    pub fn stop(&self) {
        self.stop_workload.store(true, Ordering::Relaxed);
        self.stop_all.store(true, Ordering::Relaxed);
    }
}
