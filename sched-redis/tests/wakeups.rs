//! Wake-ups on Redis (issue 11): the events stream read on a connection of its own, closed when
//! the stream is dropped, and `watch_reservations` driven by it; single node with both clients,
//! and the cluster (feature `cluster-tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{Fresh, Kind, Topology};
use futures::StreamExt;
use sched_core::watch::{watch_reservations, ReservationEvent, WatchConfig};
use sched_core::{
    CapacityReservation as Cr, CommitMode, ResourceReservation, Resources, WorkerRepository,
    WorkerSpec,
};
use std::sync::Arc;
use std::time::Duration;

const T: Resources = Resources::cpu_mem(1000, 1000);
const ONE: Resources = Resources::cpu_mem(100, 100);

fn targets() -> Vec<(Kind, Topology)> {
    let mut v = Vec::new();
    for k in common::kinds() {
        v.push((k, Topology::Single));
        #[cfg(feature = "cluster-tests")]
        v.push((k, Topology::Cluster));
    }
    v
}

async fn setup(kind: Kind, topo: Topology, test: &str, specs: Vec<WorkerSpec>) -> Option<Fresh> {
    let repo = common::fresh(kind, topo, test).await?;
    for s in specs {
        repo.register_worker(&s).await.unwrap();
    }
    Some(repo)
}

fn leased(id: &str, ms: u64) -> ResourceReservation {
    ResourceReservation::new(id, ONE).with_lease(Duration::from_millis(ms))
}

async fn reserve(repo: &Fresh, w: &str, rs: Vec<ResourceReservation>) {
    let out = repo
        .reserve_batch(&[Cr::new(w, rs)], CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok(), "{out:?}");
}

/// Connections named `sched-wakeups:<prefix>` on every node.
async fn wakeup_connections(topo: Topology, prefix: &str) -> usize {
    let name = format!("name=sched-wakeups:{prefix} ");
    let mut n = 0;
    for mut node in common::raw_nodes(topo).await {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut node)
            .await
            .unwrap();
        n += list.lines().filter(|l| l.contains(&name)).count();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_follow_commits_and_feed_the_watch() {
    for (kind, topo) in targets() {
        let Some(repo) = setup(kind, topo, "wakeups", vec![WorkerSpec::new("w", T)]).await else {
            return;
        };
        let ctx = format!("{kind:?}/{topo:?}");
        let prefix = repo.config().key_prefix.clone();
        // Committed before the subscription: not a wake-up.
        reserve(&repo, "w", vec![ResourceReservation::new("old", ONE)]).await;
        let mut wake = repo.reservation_wakeups("w").await.unwrap();
        assert_eq!(wakeup_connections(topo, &prefix).await, 1, "{ctx}");
        let early = tokio::time::timeout(Duration::from_millis(1_500), wake.next()).await;
        assert!(early.is_err(), "{ctx}: woke without a commit: {early:?}");
        reserve(&repo, "w", vec![ResourceReservation::new("new", ONE)]).await;
        let got = tokio::time::timeout(Duration::from_secs(5), wake.next()).await;
        assert_eq!(got.ok().flatten(), Some(()), "{ctx}");
        drop(wake);
        let mut closed = false;
        for _ in 0..50 {
            if wakeup_connections(topo, &prefix).await == 0 {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            closed,
            "{ctx}: the dedicated connection outlived its stream"
        );

        // The generic watch on top: what is held first, then each new reservation.
        let shared = Arc::new(common::connect(kind, repo.config()).await.unwrap());
        let config = WatchConfig::new(Duration::from_secs(60), Duration::from_millis(200));
        let mut watch = watch_reservations(Arc::clone(&shared), "w", config);
        let mut first = Vec::new();
        for _ in 0..2 {
            match watch.next().await {
                Some(Ok(ReservationEvent::Added(r))) => first.push(r.container_id),
                other => panic!("{ctx}: {other:?}"),
            }
        }
        assert_eq!(first, vec!["new", "old"], "{ctx}");
        // The resync is a minute away: only a wake-up can deliver this within the timeout.
        reserve(&repo, "w", vec![leased("next", 60_000)]).await;
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(ReservationEvent::Added(r)))) => {
                assert_eq!(r.container_id, "next", "{ctx}");
                assert!(r.lease_expires_at_ms.is_some());
            }
            other => panic!("{ctx}: {other:?}"),
        }
        drop(watch);
    }
}
