//! Real server faults on one node of the Redis Cluster (`REDIS_CLUSTER_URLS`), both clients:
//! afterwards every answer agrees with the store. Issue 10, cases 1 and 4.
#![cfg(feature = "cluster-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::nodes::{self, Oom};
use common::{Fresh, Kind, Topology};
use sched_core::{
    CapacityReservation as Cr, CommitMode, ContainerRequest, Rejection, Resources, Scheduler,
    SchedulerConfig, WorkerRepository, WorkerSpec,
};
use std::collections::HashMap;

/// One OOM test at a time (they share the nodes' maxmemory setting).
static OOM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fresh(kind: Kind, test: &str) -> Option<Fresh> {
    common::fresh(kind, Topology::Cluster, test).await
}

fn prefix(repo: &Fresh) -> String {
    repo.config().key_prefix.clone()
}

/// Where each container is held according to the ledgers (each at most once), checking audit
/// drift on the way.
async fn ledgers(repo: &Fresh, workers: &[String]) -> HashMap<String, String> {
    let mut held = HashMap::new();
    for w in workers {
        let a = repo.audit(w).await.unwrap();
        assert!(a.is_consistent(), "drift on {w}: {a:?}");
        for r in repo.list_reservations(w).await.unwrap() {
            let before = held.insert(r.container_id.clone(), w.clone());
            assert!(before.is_none(), "{} held twice", r.container_id);
        }
    }
    held
}

/// `find_reservation` agrees with the ledgers for every container.
async fn lookups_agree(repo: &Fresh, workers: &[String], containers: &[String]) {
    let held = ledgers(repo, workers).await;
    for c in containers {
        let found = repo.find_reservation(c).await.unwrap().map(|r| r.worker_id);
        assert_eq!(
            found.as_ref(),
            held.get(c),
            "find_reservation({c}) vs the ledgers"
        );
    }
}

/// Case 1: one worker's script fails with OOM after the other worker's committed. The committed
/// container keeps its claim (found, not placeable again), the other is not held.
#[tokio::test]
async fn oom_worker_script_after_others_committed() {
    // One at a time: no test of this file may write while another makes a node refuse writes.
    let _lock = OOM.lock().await;
    for kind in common::kinds() {
        let Some(repo) = fresh(kind, "oom_worker_script_after_others_committed").await else {
            return;
        };
        let p = prefix(&repo);
        let bad = "wbad".to_owned();
        let node = nodes::owner(&nodes::worker_key(&p, &bad));
        let good = nodes::pick("wok", 1, |w| nodes::worker_key(&p, w), &node, false).remove(0);
        let cs = nodes::pick("c", 2, |c| nodes::claim_key(&p, c), &node, false);
        let workers = vec![good.clone(), bad.clone()];
        for w in &workers {
            repo.register_worker(&WorkerSpec::new(w.clone(), Resources::cpu_mem(1000, 1000)))
                .await
                .unwrap();
        }
        let batch = [
            Cr::new(good.clone(), vec![common::rr(&cs[0], 100)]),
            Cr::new(bad.clone(), vec![common::rr(&cs[1], 100)]),
        ];
        let oom = Oom::on(&node);
        let out = repo.reserve_batch(&batch, CommitMode::Partial).await;
        oom.restore();
        drop(oom);
        let held = ledgers(&repo, &workers).await;
        assert_eq!(
            held.get(&cs[0]),
            Some(&good),
            "{kind:?}: the healthy worker committed: {out:?}"
        );
        assert_eq!(
            held.get(&cs[1]),
            None,
            "{kind:?}: the OOM worker charged nothing"
        );
        let err = out.expect_err("a worker script failed");
        assert!(err.is_ambiguous(), "{kind:?}: something committed: {err:?}");
        lookups_agree(&repo, &workers, &cs).await;
        // The committed container cannot be placed a second time, on either worker.
        for w in &workers {
            let again = repo
                .reserve_batch(
                    &[Cr::new(w.clone(), vec![common::rr(&cs[0], 100)])],
                    CommitMode::Partial,
                )
                .await
                .unwrap();
            assert!(
                matches!(&again[0].outcome, Err(Rejection::AlreadyReserved { worker_id, .. }) if *worker_id == good),
                "{kind:?}: {again:?}"
            );
        }
        lookups_agree(&repo, &workers, &cs).await;
    }
}

/// Case 1 as the issue saw it: a default-config Scheduler burst of 5 while the node of one of
/// three workers refuses writes (OOM). Every `Ok` is held there with its resources, every `Err`
/// that does not say "may be held" is not held, lookups agree with the ledgers, drift stays 0.
#[tokio::test]
async fn oom_node_during_scheduler_burst() {
    // One at a time: no test of this file may write while another makes a node refuse writes.
    let _lock = OOM.lock().await;
    for kind in common::kinds() {
        let Some(repo) = fresh(kind, "oom_node_during_scheduler_burst").await else {
            return;
        };
        let p = prefix(&repo);
        let bad = "wbad".to_owned();
        let node = nodes::owner(&nodes::worker_key(&p, &bad));
        let mut workers = nodes::pick("wok", 2, |w| nodes::worker_key(&p, w), &node, false);
        workers.push(bad);
        let cs = nodes::pick("c", 5, |c| nodes::claim_key(&p, c), &node, false);
        for w in &workers {
            repo.register_worker(&WorkerSpec::new(w.clone(), Resources::cpu_mem(250, 250)))
                .await
                .unwrap();
        }
        let sched = Scheduler::new(repo.repo.clone(), SchedulerConfig::default());
        let requests: Vec<_> = (cs.iter())
            .map(|c| ContainerRequest::new(c.clone(), Resources::cpu_mem(100, 100)))
            .collect();
        let oom = Oom::on(&node);
        let out = sched.schedule_batch(requests).await;
        oom.restore();
        drop(oom);
        let held = ledgers(&repo, &workers).await;
        for (c, r) in cs.iter().zip(&out) {
            match r {
                Ok(pl) => {
                    assert_eq!(
                        held.get(c),
                        Some(&pl.worker_id),
                        "{kind:?}: {c} placed: {out:?}"
                    );
                    let rec = repo.find_reservation(c).await.unwrap().unwrap();
                    assert_eq!(rec.resources, Resources::cpu_mem(100, 100));
                }
                Err(e) if format!("{e:?}").starts_with("Ambiguous") => {}
                Err(e) => assert_eq!(
                    held.get(c),
                    None,
                    "{kind:?}: {c} failed ({e:?}) but is held"
                ),
            }
        }
        lookups_agree(&repo, &workers, &cs).await;
    }
}

/// Case 4: a claim abandoned by a dead call (planted behind the repository's back, naming a
/// worker whose script never ran) is resolved by the next schedule at once, and no key is left
/// once the container is released.
#[tokio::test]
async fn abandoned_claim_is_resolved_by_the_next_schedule() {
    // One at a time: no test of this file may write while another makes a node refuse writes.
    let _lock = OOM.lock().await;
    for kind in common::kinds() {
        let Some(repo) = fresh(kind, "abandoned_claim_is_resolved_by_the_next_schedule").await
        else {
            return;
        };
        let p = prefix(&repo);
        let workers = vec!["w1".to_owned(), "w2".to_owned()];
        for w in &workers {
            repo.register_worker(&WorkerSpec::new(w.clone(), Resources::cpu_mem(1000, 1000)))
                .await
                .unwrap();
        }
        let key = nodes::claim_key(&p, "c");
        // As a call that died a moment ago left it (the timer-based protocol also stored the
        // claim's time; the fenced one ignores anything after the token).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        nodes::set(
            &key,
            &format!("w1\n00000000000000000000000000abcdef\n{}", now.as_millis()),
        );
        let sched = Scheduler::new(repo.repo.clone(), SchedulerConfig::default());
        let placed = sched
            .schedule(ContainerRequest::new("c", Resources::cpu_mem(100, 100)))
            .await
            .unwrap_or_else(|e| {
                panic!("{kind:?}: the abandoned claim blocked the container: {e:?}")
            });
        let held = ledgers(&repo, &workers).await;
        assert_eq!(held.get("c"), Some(&placed.worker_id));
        let claim = nodes::get(&key).expect("the placement's claim");
        assert!(
            claim.starts_with(&format!("{}\n", placed.worker_id)),
            "{claim:?}"
        );
        let released = sched.release(&["c".to_owned()]).await.unwrap();
        assert!(released[0].released.is_some());
        assert_eq!(nodes::get(&key), None, "{kind:?}: claim left behind");
        lookups_agree(&repo, &workers, &["c".to_owned()]).await;
    }
}

/// A server-side fault on one node, started a few milliseconds into a burst.
#[derive(Debug, Clone, Copy)]
enum NodeFault {
    /// `CLIENT KILL USER` of this test's connections.
    Kill,
    /// The node busy for longer than the client's response timeout (a Lua busy loop: the
    /// CI cluster does not enable `DEBUG`, whose `DEBUG SLEEP` would do the same).
    Sleep,
    /// `CLIENT PAUSE ... WRITE`.
    Pause,
}

/// This test's ACL user on every node (ACLs are per node), deleted on drop.
struct AclUser {
    name: String,
}

impl AclUser {
    fn create(password: &str) -> AclUser {
        let name = format!("sched-nodefault-{:016x}", rand::random::<u64>());
        for url in nodes::urls() {
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&name)
                .arg("on")
                .arg(format!(">{password}"))
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .query(&mut c)
                .unwrap();
        }
        AclUser { name }
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        for url in nodes::urls() {
            if let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
                let _: Result<i64, _> = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&self.name)
                    .query(&mut c);
            }
        }
    }
}

const BUSY_600MS: &str = "local s = redis.call('TIME') local t repeat t = redis.call('TIME') \
    until (t[1] - s[1]) * 1000000 + (t[2] - s[2]) > 600000 return 1";

fn inflict(fault: NodeFault, url: &str, user: &str) {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let r: redis::RedisResult<redis::Value> = match fault {
        NodeFault::Kill => redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(user)
            .query(&mut c),
        NodeFault::Sleep => redis::cmd("EVAL").arg(BUSY_600MS).arg(0).query(&mut c),
        NodeFault::Pause => redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(400)
            .arg("WRITE")
            .query(&mut c),
    };
    r.unwrap();
}

/// Real faults on one node during bursts of direct `reserve_batch` calls (connections killed,
/// the node asleep past the response timeout, writes paused): every answer agrees with the store
/// (an `Ok` part's accepted containers are held there, its rejected ones and every container of an
/// `Unavailable` call are not), lookups agree with the ledgers, drift stays 0, and afterwards no
/// container is blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_faults_on_one_node_during_bursts() {
    let _lock = OOM.lock().await;
    for kind in common::kinds() {
        let Some(base) = fresh(kind, "real_faults_on_one_node_during_bursts").await else {
            return;
        };
        let password = format!("{:016x}", rand::random::<u64>());
        let user = AclUser::create(&password);
        let cfg = base
            .config()
            .clone()
            .with_credentials(&user.name, &password)
            .with_timeouts(
                std::time::Duration::from_secs(2),
                std::time::Duration::from_millis(300),
            );
        let repo = common::connect(kind, &cfg).await.unwrap();
        let workers: Vec<String> = (0..4).map(|i| format!("w{i}")).collect();
        for w in &workers {
            repo.register_worker(&WorkerSpec::new(
                w.clone(),
                Resources::cpu_mem(100_000, 100_000),
            ))
            .await
            .unwrap();
        }
        let node = nodes::owner(&nodes::worker_key(&prefix(&base), "w0"));
        let mut all = Vec::new();
        for (round, fault) in [
            NodeFault::Kill,
            NodeFault::Sleep,
            NodeFault::Pause,
            NodeFault::Kill,
        ]
        .into_iter()
        .enumerate()
        {
            let batch: Vec<Cr> = (workers.iter().enumerate())
                .map(|(i, w)| {
                    let cs = (0..5).map(|k| common::rr(&format!("r{round}-{i}-{k}"), 10));
                    Cr::new(w.clone(), cs.collect())
                })
                .collect();
            let (url, name) = (node.clone(), user.name.clone());
            let hit = tokio::task::spawn_blocking(move || {
                // The first kill as the burst starts, the other faults a little into it.
                let delay = if round == 0 { 0 } else { 2 };
                std::thread::sleep(std::time::Duration::from_millis(delay));
                inflict(fault, &url, &name);
            });
            let out = repo.reserve_batch(&batch, CommitMode::Partial).await;
            hit.await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(700)).await; // the fault is over
            let held = ledgers(&base, &workers).await;
            let ids = batch
                .iter()
                .flat_map(|cr| cr.reservations.iter().map(|r| r.container_id.clone()));
            let ids: Vec<String> = ids.collect();
            match &out {
                Ok(results) => {
                    for (cr, r) in batch.iter().zip(results) {
                        let accepted = r.outcome.as_ref().map_or(0, |c| c.accepted);
                        for (k, res) in cr.reservations.iter().enumerate() {
                            let want = (k < accepted).then_some(&cr.worker_id);
                            assert_eq!(
                                held.get(&res.container_id),
                                want,
                                "{kind:?} {fault:?}: {r:?}"
                            );
                        }
                    }
                }
                Err(e) if e.is_ambiguous() => {}
                Err(e) => {
                    for c in &ids {
                        assert_eq!(
                            held.get(c),
                            None,
                            "{kind:?} {fault:?}: {e:?} yet {c} is held"
                        );
                    }
                }
            }
            eprintln!(
                "{kind:?} {fault:?}: {}",
                out.as_ref()
                    .map_or_else(|e| format!("{e}"), |_| "ok".into())
            );
            all.extend(ids);
        }
        lookups_agree(&base, &workers, &all).await;
        // Nothing stays blocked: every container not held can be placed now.
        let held = ledgers(&base, &workers).await;
        for c in all.iter().filter(|c| !held.contains_key(*c)) {
            let mut placed = false;
            for _ in 0..3 {
                let part = [Cr::new("w1", vec![common::rr(c, 10)])];
                let r = repo
                    .reserve_batch(&part, CommitMode::Partial)
                    .await
                    .unwrap();
                placed |= r[0].outcome.is_ok();
                if placed {
                    break;
                }
            }
            assert!(placed, "{kind:?}: {c} stays blocked");
        }
        lookups_agree(&base, &workers, &all).await;
        drop(repo);
        drop(user);
    }
}
