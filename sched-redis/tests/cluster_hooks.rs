//! The fenced cluster protocol under faults injected in the pipeline (`RedisRepository::inject`,
//! feature `testing`), both clients: issue 10, cases 1-5.
#![cfg(feature = "cluster-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::nodes;
use common::{Fresh, Kind, Topology};
use sched_core::{
    CapacityReservation as Cr, CommitMode, Rejection, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::{Fault, Target};
use std::sync::Arc;
use tokio::sync::Notify;

async fn setup(kind: Kind, test: &str, workers: &[&str]) -> Option<Fresh> {
    let repo = common::fresh(kind, Topology::Cluster, test).await?;
    for w in workers {
        repo.register_worker(&WorkerSpec::new(*w, Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
    }
    Some(repo)
}

fn part(w: &str, cs: &[&str]) -> Cr {
    Cr::new(w, cs.iter().map(|c| common::rr(c, 100)).collect())
}

/// Held where, per the ledgers; asserts drift 0 and one holder per container.
async fn holder(repo: &Fresh, workers: &[&str], c: &str) -> Option<String> {
    let mut found = None;
    for w in workers {
        let a = repo.audit(w).await.unwrap();
        assert!(a.is_consistent(), "drift on {w}: {a:?}");
        if repo
            .list_reservations(w)
            .await
            .unwrap()
            .iter()
            .any(|r| r.container_id == c)
        {
            assert!(found.is_none(), "{c} held twice");
            found = Some(w.to_string());
        }
    }
    let looked_up = repo.find_reservation(c).await.unwrap().map(|r| r.worker_id);
    assert_eq!(looked_up, found, "find_reservation({c}) vs the ledgers");
    found
}

/// Case 1: a plain error reply from one worker's script after the other worker committed.
#[tokio::test]
async fn error_reply_after_others_committed() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "error_reply_after_others_committed", &["w1", "w2"]).await
        else {
            return;
        };
        repo.inject(Target::op("reserve").worker("w2"), Fault::ErrorReply);
        let err = repo
            .reserve_batch(
                &[part("w1", &["a"]), part("w2", &["b"])],
                CommitMode::Partial,
            )
            .await
            .unwrap_err();
        assert!(err.is_ambiguous(), "{kind:?}: {err:?}");
        assert_eq!(
            holder(&repo, &["w1", "w2"], "a").await.as_deref(),
            Some("w1")
        );
        assert_eq!(holder(&repo, &["w1", "w2"], "b").await, None);
        let p = repo.config().key_prefix.clone();
        assert!(
            nodes::get(&nodes::claim_key(&p, "a")).is_some(),
            "committed claim kept"
        );
        assert_eq!(
            nodes::get(&nodes::claim_key(&p, "b")),
            None,
            "revoked claim dropped"
        );
        let again = repo
            .reserve_batch(&[part("w2", &["a"])], CommitMode::Partial)
            .await
            .unwrap();
        assert!(
            matches!(&again[0].outcome, Err(Rejection::AlreadyReserved { worker_id, .. }) if worker_id == "w1"),
            "{kind:?}: {again:?}"
        );
        // Nothing charged anywhere: the revoked script can never run, so nothing applied.
        repo.inject(Target::op("reserve"), Fault::ErrorReply);
        let err = repo
            .reserve_batch(&[part("w2", &["d"])], CommitMode::Partial)
            .await
            .unwrap_err();
        assert!(
            matches!(err, sched_core::RepoError::Unavailable(_)),
            "{kind:?}: {err:?}"
        );
        assert_eq!(holder(&repo, &["w1", "w2"], "d").await, None);
    }
}

/// Case 2: a reserve script sent twice (a client re-send) charges once.
#[tokio::test]
async fn resent_reserve_script_charges_once() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "resent_reserve_script_charges_once", &["w"]).await else {
            return;
        };
        // Learn the epoch first, so the doubled round trip is the script's only run.
        repo.get_worker("w").await.unwrap();
        repo.inject(Target::op("reserve"), Fault::SendTwice);
        let out = repo
            .reserve_batch(&[part("w", &["a", "b"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        let c = out[0].outcome.as_ref().unwrap();
        assert_eq!(c.accepted, 2, "{kind:?}: {out:?}");
        let a = repo.audit("w").await.unwrap();
        assert!(a.is_consistent(), "{kind:?}: {a:?}");
        assert_eq!(
            (a.reservations, a.free),
            (2, Resources::cpu_mem(800, 800)),
            "{kind:?}"
        );
        assert_eq!(holder(&repo, &["w"], "a").await.as_deref(), Some("w"));
    }
}

/// Case 3: a claim whose reply was lost (or that was re-sent) is recognised as this call's own.
#[tokio::test]
async fn lost_or_resent_claim_reply_is_our_own() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "lost_or_resent_claim_reply_is_our_own", &["w"]).await else {
            return;
        };
        for (c, fault) in [("a", Fault::LoseReply), ("b", Fault::SendTwice)] {
            repo.inject(Target::op("claim").container(c), fault);
            let out = repo
                .reserve_batch(&[part("w", &[c])], CommitMode::AllOrNothing)
                .await
                .unwrap();
            assert_eq!(
                out[0].outcome.as_ref().map(|c| c.accepted),
                Ok(1),
                "{kind:?} {c}: {out:?}"
            );
            assert_eq!(holder(&repo, &["w"], c).await.as_deref(), Some("w"));
        }
    }
}

/// Case 4: a call's script delayed until after another call resolved its claim and placed the
/// container elsewhere is refused; the container is held exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_script_is_fenced() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "delayed_script_is_fenced", &["w1", "w2"]).await else {
            return;
        };
        let other = common::connect(kind, repo.config()).await.unwrap();
        let (reached, resume) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let stall = Fault::Stall {
            reached: reached.clone(),
            resume: resume.clone(),
        };
        repo.inject(Target::op("reserve").worker("w1"), stall);
        let slow = {
            let r = repo.repo.clone();
            tokio::spawn(async move {
                r.reserve_batch(&[part("w1", &["c"])], CommitMode::AllOrNothing)
                    .await
            })
        };
        reached.notified().await;
        // The other caller finds an uncommitted claim: resolves it (Contended), then places it.
        let first = other
            .reserve_batch(&[part("w2", &["c"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert!(
            matches!(first[0].outcome, Err(Rejection::Contended { .. })),
            "{kind:?}: {first:?}"
        );
        // Seen again unchanged, the claim is fenced (Contended once more), then placed.
        let mut placed = None;
        for _ in 0..2 {
            let out = other
                .reserve_batch(&[part("w2", &["c"])], CommitMode::AllOrNothing)
                .await
                .unwrap();
            if out[0].outcome.is_ok() {
                placed = Some(out);
                break;
            }
        }
        assert!(placed.is_some(), "{kind:?}: never placed on w2");
        resume.notify_one();
        let late = slow.await.unwrap().unwrap();
        assert!(
            matches!(late[0].outcome, Err(Rejection::Contended { .. })),
            "{kind:?}: {late:?}"
        );
        assert_eq!(
            holder(&repo, &["w1", "w2"], "c").await.as_deref(),
            Some("w2")
        );
        let p = repo.config().key_prefix.clone();
        let claim = nodes::get(&nodes::claim_key(&p, "c")).unwrap();
        assert!(claim.starts_with("w2\n"), "{claim:?}");
    }
}

/// Case 4: the clean-up after `remove_worker`, delayed past a re-registration whose call claimed
/// and committed the same container, never deletes that live claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_cleanup_never_deletes_a_later_registrations_claim() {
    for kind in common::kinds() {
        let Some(repo) = setup(
            kind,
            "remove_cleanup_never_deletes_a_later_registrations_claim",
            &["w"],
        )
        .await
        else {
            return;
        };
        repo.reserve_batch(&[part("w", &["c"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        let other = common::connect(kind, repo.config()).await.unwrap();
        let (reached, resume) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let stall = Fault::Stall {
            reached: reached.clone(),
            resume: resume.clone(),
        };
        repo.inject(Target::op("unclaim"), stall);
        let removing = {
            let r = repo.repo.clone();
            tokio::spawn(async move { r.remove_worker("w").await })
        };
        reached.notified().await;
        other
            .register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
        let mut placed = false;
        for _ in 0..3 {
            let out = other
                .reserve_batch(&[part("w", &["c"])], CommitMode::AllOrNothing)
                .await
                .unwrap();
            if out[0].outcome.is_ok() {
                placed = true;
                break;
            }
            assert!(
                matches!(out[0].outcome, Err(Rejection::Contended { .. })),
                "{kind:?}: {out:?}"
            );
        }
        assert!(
            placed,
            "{kind:?}: the re-registered worker could not take the container"
        );
        resume.notify_one();
        assert!(removing.await.unwrap().unwrap());
        assert_eq!(holder(&repo, &["w"], "c").await.as_deref(), Some("w"));
        let p = repo.config().key_prefix.clone();
        assert!(
            nodes::get(&nodes::claim_key(&p, "c")).is_some(),
            "{kind:?}: live claim deleted"
        );
        // And it is not placeable elsewhere.
        other
            .register_worker(&WorkerSpec::new("w2", Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
        let again = other
            .reserve_batch(&[part("w2", &["c"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert!(
            matches!(again[0].outcome, Err(Rejection::AlreadyReserved { .. })),
            "{kind:?}: {again:?}"
        );
    }
}

/// Case 5: a failed clean-up after `release_batch` / `remove_worker` applied is not an error;
/// the claim it left is resolved by the next call that needs the container.
#[tokio::test]
async fn failed_cleanup_after_release_or_remove_is_ok() {
    for kind in common::kinds() {
        let Some(repo) = setup(
            kind,
            "failed_cleanup_after_release_or_remove_is_ok",
            &["w1", "w2"],
        )
        .await
        else {
            return;
        };
        repo.reserve_batch(&[part("w1", &["a", "b"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        repo.inject(Target::op("unclaim"), Fault::Refuse);
        let out = repo.release_batch(&["a".to_owned()]).await.unwrap();
        assert_eq!(
            out[0].released.as_ref().map(|r| r.worker_id.as_str()),
            Some("w1"),
            "{kind:?}"
        );
        assert_eq!(repo.cleanup_failures(), 1, "{kind:?}");
        // The leftover claim does not block the container.
        let mut placed = false;
        for _ in 0..3 {
            let out = repo
                .reserve_batch(&[part("w2", &["a"])], CommitMode::AllOrNothing)
                .await
                .unwrap();
            placed |= out[0].outcome.is_ok();
        }
        assert!(placed, "{kind:?}");
        assert_eq!(
            holder(&repo, &["w1", "w2"], "a").await.as_deref(),
            Some("w2")
        );
        // remove_worker whose claim clean-up fails: still Ok(true), counted.
        repo.inject(Target::op("fence"), Fault::Refuse);
        assert!(repo.remove_worker("w1").await.unwrap(), "{kind:?}");
        assert_eq!(repo.cleanup_failures(), 2, "{kind:?}");
        assert_eq!(
            holder(&repo, &["w2"], "b").await,
            None,
            "{kind:?}: b's claim is resolved by the lookup"
        );
        let p = repo.config().key_prefix.clone();
        assert_eq!(
            nodes::get(&nodes::claim_key(&p, "b")),
            None,
            "{kind:?}: the lookup dropped it"
        );
    }
}

/// Round trips of a cluster `reserve_batch` (`BackendCounters`): 2 in the steady state (claims,
/// scripts), 3 for a repository that never saw the workers' fence epochs (one `HGET` first).
#[tokio::test]
async fn round_trips_cold_and_warm() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "round_trips_cold_and_warm", &["w1", "w2"]).await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Cluster).await;
        let cold = common::connect(kind, repo.config()).await.unwrap();
        let batch = |c: &str| {
            [
                part("w1", &[&format!("{c}1")]),
                part("w2", &[&format!("{c}2")]),
            ]
        };
        let before = cold.counters().snapshot();
        cold.reserve_batch(&batch("a"), CommitMode::AllOrNothing)
            .await
            .unwrap();
        let d = cold.counters().snapshot().since(&before);
        assert_eq!(d.round_trips, 3, "{kind:?} cold: {d:?}");
        let before = cold.counters().snapshot();
        cold.reserve_batch(&batch("b"), CommitMode::AllOrNothing)
            .await
            .unwrap();
        let d = cold.counters().snapshot().since(&before);
        assert_eq!(d.round_trips, 2, "{kind:?} warm: {d:?}");
    }
}

/// A script carrying an epoch older than the worker's fence (after a re-registration, or after
/// the fence set filled up and the epoch moved on) is refused; the call moves its claims to a
/// new token and runs again with the new epoch: placed once, nothing left behind.
#[tokio::test]
async fn stale_epoch_is_refused_then_run_again() {
    for kind in common::kinds() {
        let Some(repo) = setup(kind, "stale_epoch_is_refused_then_run_again", &["w"]).await else {
            return;
        };
        let _cache = common::scripts_loaded(Topology::Cluster).await;
        let stale = common::connect(kind, repo.config()).await.unwrap();
        stale.get_worker("w").await.unwrap(); // learns the epoch
        assert!(repo.remove_worker("w").await.unwrap());
        repo.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)))
            .await
            .unwrap();
        let before = stale.counters().snapshot();
        let out = stale
            .reserve_batch(&[part("w", &["a"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert_eq!(
            out[0].outcome.as_ref().map(|c| c.accepted),
            Ok(1),
            "{kind:?}: {out:?}"
        );
        let d = stale.counters().snapshot().since(&before);
        assert_eq!(
            d.round_trips, 4,
            "{kind:?}: claim, fenced, move, again: {d:?}"
        );
        assert_eq!(holder(&repo, &["w"], "a").await.as_deref(), Some("w"));
        // A full fence set moves the epoch on: the call that fills it still commits, the next one
        // from a repository with the old epoch is refused once, then placed.
        stale.get_worker("w").await.unwrap();
        let p = repo.config().key_prefix.clone();
        nodes::sadd_random(&format!("{{{p}:w:w}}:fence"), 1024);
        repo.reserve_batch(&[part("w", &["b"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        let before = stale.counters().snapshot();
        let out = stale
            .reserve_batch(&[part("w", &["c"])], CommitMode::AllOrNothing)
            .await
            .unwrap();
        assert_eq!(
            out[0].outcome.as_ref().map(|c| c.accepted),
            Ok(1),
            "{kind:?}: {out:?}"
        );
        assert_eq!(
            stale.counters().snapshot().since(&before).round_trips,
            4,
            "{kind:?}"
        );
        for c in ["a", "b", "c"] {
            assert_eq!(holder(&repo, &["w"], c).await.as_deref(), Some("w"));
        }
        let a = repo.audit("w").await.unwrap();
        assert_eq!(a.free, Resources::cpu_mem(700, 700), "{kind:?}: {a:?}");
    }
}
