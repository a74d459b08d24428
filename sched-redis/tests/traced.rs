//! The `Traced` layer over Redis: each call's span carries the round trips this backend counted
//! for that call (a pipeline once), on one node and on a cluster, with both clients.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{fresh, kinds, rr, Topology};
use sched_core::layers::Traced;
use sched_core::{CapacityReservation, CommitMode, Resources, WorkerRepository, WorkerSpec};
use sched_tests::spans::{field, SpanRecorder};

async fn traced_round_trips(topology: Topology) {
    for kind in kinds() {
        let Some(repo) = fresh(kind, topology, "traced_round_trips").await else {
            return;
        };
        let _cache = common::scripts_loaded(topology).await;
        for w in 0..4 {
            let spec = WorkerSpec::new(format!("w{w}"), Resources::cpu_mem(10_000, 10_000));
            repo.register_worker(&spec).await.unwrap();
        }
        let traced = Traced::new(&*repo);
        let (spans, _guard) = SpanRecorder::install();
        let batch: Vec<_> = (0..4)
            .map(|w| {
                let rs = (0..5).map(|c| rr(&format!("c{w}-{c}"), 100)).collect();
                CapacityReservation::new(format!("w{w}"), rs)
            })
            .collect();
        let ids: Vec<String> = (0..4)
            .flat_map(|w| (0..5).map(move |c| format!("c{w}-{c}")))
            .collect();

        let before = repo.counters().snapshot();
        let out = traced
            .reserve_batch(&batch, CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
        let counted = repo.counters().snapshot().since(&before).round_trips;
        let reserve = spans.only("reserve_batch");
        assert_eq!(field(&reserve, "backend"), repo.backend_name());
        assert_eq!(field(&reserve, "workers"), "4");
        assert_eq!(field(&reserve, "containers"), "20");
        assert_eq!(
            field(&reserve, "round_trips"),
            counted.to_string(),
            "{kind:?}"
        );
        if topology == Topology::Single {
            assert_eq!(counted, 1, "{kind:?}: one script call for the burst");
        }

        let before = repo.counters().snapshot();
        traced.release_batch(&ids).await.unwrap();
        let counted = repo.counters().snapshot().since(&before).round_trips;
        let release = spans.only("release_batch");
        assert_eq!(field(&release, "workers"), "4");
        assert_eq!(
            field(&release, "round_trips"),
            counted.to_string(),
            "{kind:?}"
        );
        assert!(counted >= 1);

        let listed = traced.list_workers(None).await.unwrap();
        let list = spans.only("list_workers");
        assert_eq!(field(&list, "workers"), listed.len().to_string());
        assert_ne!(field(&list, "round_trips"), "0");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn traced_round_trips_single() {
    traced_round_trips(Topology::Single).await;
}

#[tokio::test(flavor = "current_thread")]
async fn traced_round_trips_cluster() {
    traced_round_trips(Topology::Cluster).await;
}
