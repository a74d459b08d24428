//! A request the ACL refuses (`NOPERM`: the user may not run the command or touch the key) is
//! `Unauthorized`, naming host:port and the user, never the password, not transient, and changes
//! nothing (issue 13): with both clients, on a single node (and the cluster, feature
//! `cluster-tests`). Each test creates its own ACL user with a random name and deletes it again,
//! also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::{Kind, Topology};
use sched_core::{
    CapacityReservation, CommitMode, RepoError, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::RedisConfig;

const PASSWORD: &str = "pw-of-the-noperm-test-never-shown";

/// An ACL user on every node of a topology, deleted on drop (on a thread of its own: the
/// test's runtime may be the one being dropped, or panicking).
struct AclUser {
    name: String,
    topology: Topology,
}

impl AclUser {
    async fn create(topology: Topology, rules: &[&str]) -> Self {
        let name = format!("sched-noperm-{:016x}", rand::random::<u64>());
        let user = AclUser { name, topology };
        for mut node in common::raw_nodes(topology).await {
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER")
                .arg(&user.name)
                .arg("on")
                .arg(format!(">{PASSWORD}"));
            cmd.arg(rules);
            let () = cmd.query_async(&mut node).await.unwrap();
        }
        user
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let (name, topology) = (self.name.clone(), self.topology);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for mut node in common::raw_nodes(topology).await {
                    let deleted: i64 = redis::cmd("ACL")
                        .arg("DELUSER")
                        .arg(&name)
                        .query_async(&mut node)
                        .await
                        .unwrap();
                    assert_eq!(deleted, 1, "ACL user {name} was not there to delete");
                }
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("could not delete the ACL user {}", self.name);
        }
    }
}

/// `host:port` of every URL of `cfg`, as the error must name them.
fn endpoint(cfg: &RedisConfig) -> String {
    let one = |u: &String| {
        let u = url::Url::parse(u).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(6379))
    };
    cfg.urls.iter().map(one).collect::<Vec<_>>().join(",")
}

fn assert_refused(what: &str, e: &RepoError, cfg: &RedisConfig, user: &str) {
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains(PASSWORD), "{what}: password shown: {shown}");
    match e {
        RepoError::Unauthorized {
            endpoint: ep,
            user: u,
            ..
        } => {
            assert_eq!(ep, &endpoint(cfg), "{what}");
            assert_eq!(u, user, "{what}");
        }
        e => panic!("{what}: not Unauthorized: {e:?}"),
    }
    assert!(!e.is_transient() && e.needs_operator(), "{what}: {e:?}");
    assert!(e.to_string().contains(&endpoint(cfg)), "{what}: {e}");
    assert!(e.to_string().contains(user), "{what}: {e}");
    assert!(e.to_string().contains("NOPERM"), "{what}: {e}");
}

/// The scripts (`EVALSHA`, and the `EVAL` a `NOSCRIPT` falls back to) are denied: every call
/// is refused as `Unauthorized`, and what the test's full user sees is unchanged.
async fn scripts_denied(kind: Kind, topology: Topology, test: &str) {
    let Some(admin) = common::fresh(kind, topology, test).await else {
        return;
    };
    admin
        .register_worker(&WorkerSpec::new("w1", Resources::cpu_mem(4_000, 4_000)))
        .await
        .unwrap();
    let acl = AclUser::create(topology, &["~*", "&*", "+@all", "-evalsha", "-eval"]).await;
    let cfg = admin.config().clone().with_credentials(&acl.name, PASSWORD);
    let repo = common::connect(kind, &cfg).await.unwrap();

    let batch = [CapacityReservation::new(
        "w1",
        vec![common::rr("c1", 1_000)],
    )];
    let e = repo
        .reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert_refused("reserve_batch", &e, &cfg, &acl.name);
    let spec = WorkerSpec::new("w2", Resources::cpu_mem(1_000, 1_000));
    let e = repo.register_worker(&spec).await.unwrap_err();
    assert_refused("register_worker", &e, &cfg, &acl.name);
    let e = repo.get_worker("w1").await.unwrap_err();
    assert_refused("get_worker", &e, &cfg, &acl.name);

    // Nothing was applied.
    let w1 = admin.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w1.free, w1.total);
    assert!(admin.list_reservations("w1").await.unwrap().is_empty());
    assert!(admin.get_worker("w2").await.unwrap().is_none());
    let ids: Vec<String> = (admin.list_workers(None).await.unwrap())
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["w1"]);
    drop(acl);
}

/// The user may run everything but only on keys of another prefix: the key check refuses the
/// scripts before they run.
async fn keys_denied(kind: Kind, topology: Topology, test: &str) {
    let Some(admin) = common::fresh(kind, topology, test).await else {
        return;
    };
    let acl = AclUser::create(topology, &["~not-this-prefix:*", "+@all"]).await;
    let cfg = admin.config().clone().with_credentials(&acl.name, PASSWORD);
    let repo = common::connect(kind, &cfg).await.unwrap();
    let spec = WorkerSpec::new("w1", Resources::cpu_mem(1_000, 1_000));
    let e = repo.register_worker(&spec).await.unwrap_err();
    assert_refused("register_worker", &e, &cfg, &acl.name);
    admin.register_worker(&spec).await.unwrap();
    let batch = [CapacityReservation::new(
        "w1",
        vec![common::rr("c1", 1_000)],
    )];
    let e = repo
        .reserve_batch(&batch, CommitMode::Partial)
        .await
        .unwrap_err();
    assert_refused("reserve_batch", &e, &cfg, &acl.name);
    let w1 = admin.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w1.free, w1.total);
    assert!(admin.list_reservations("w1").await.unwrap().is_empty());
    drop(acl);
}

#[tokio::test]
async fn denied_scripts_are_unauthorized_on_one_node() {
    for kind in common::kinds() {
        scripts_denied(kind, Topology::Single, "denied_scripts_are_unauthorized").await;
    }
}

#[tokio::test]
async fn denied_keys_are_unauthorized_on_one_node() {
    for kind in common::kinds() {
        keys_denied(kind, Topology::Single, "denied_keys_are_unauthorized").await;
    }
}

#[cfg(feature = "cluster-tests")]
#[tokio::test]
async fn denied_scripts_are_unauthorized_on_the_cluster() {
    for kind in common::kinds() {
        scripts_denied(kind, Topology::Cluster, "denied_scripts_on_the_cluster").await;
    }
}

#[cfg(feature = "cluster-tests")]
#[tokio::test]
async fn denied_keys_are_unauthorized_on_the_cluster() {
    for kind in common::kinds() {
        keys_denied(kind, Topology::Cluster, "denied_keys_on_the_cluster").await;
    }
}
