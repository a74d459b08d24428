//! Opening each backend for the chaos entry files: a fresh key prefix or schema per test,
//! removed again when the test ends (even when it fails), and the backend's real faults.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::WorkerRepository;
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use sched_tests::chaos::{
    authority, AllFaults, FnFaults, Injected, ProxyFaults, RedisNodeFaults, Target,
};
use sched_tests::proxy::FaultProxy;
use std::sync::Arc;
use std::time::Duration;

fn on_own_runtime<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    let done = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join();
    if done.is_err() {
        eprintln!("chaos: clean-up failed");
    }
}

/// Deletes every key under the test's prefix when dropped.
pub struct RedisKeys {
    cfg: RedisConfig,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let cfg = self.cfg.clone();
        on_own_runtime(async move {
            let repo = RedisRepository::connect(&cfg)
                .await
                .expect("connect for clean-up");
            repo.delete_all_keys().await.expect("delete test keys");
        });
    }
}

async fn connect(cfg: &RedisConfig, fred: bool) -> RedisRepository {
    let r = if fred {
        RedisRepository::connect_fred(cfg).await
    } else {
        RedisRepository::connect(cfg).await
    };
    r.unwrap_or_else(|e| panic!("connect to {:?}: {e}", cfg.urls))
}

fn prefix() -> String {
    format!("sched-chaos-{}", sched_tests::ns::random_hex())
}

/// Single-node Redis (`REDIS_URL`) through a [`FaultProxy`]: a reply dropped on the wire and
/// every connection cut. Never touches the server's configuration.
pub async fn redis_single(fred: bool, test: &str) -> Option<(Target, RedisKeys)> {
    let url = sched_tests::env::require_url("REDIS_URL", test)?;
    let upstream = tokio::net::lookup_host(authority(&url))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Arc::new(FaultProxy::start(upstream).await.unwrap());
    let prefix = prefix();
    let cfg = RedisConfig::from_url(format!("redis://{}", proxy.addr()))
        .with_prefix(&prefix)
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
    let repo: Arc<dyn WorkerRepository> = Arc::new(connect(&cfg, fred).await);
    let target = Target::new(repo, test).with_real(Arc::new(ProxyFaults::new(proxy)));
    let keys = RedisKeys {
        cfg: RedisConfig::from_url(url).with_prefix(prefix),
    };
    Some((target, keys))
}

/// The Redis Cluster of `REDIS_CLUSTER_URLS` (ours: CI starts it), one node at a time out of
/// memory, paused, asleep (`DEBUG SLEEP`, if enabled) or with our connections killed. The
/// client's response timeout (500 ms) is shorter than the pause and the sleep (800 ms).
pub async fn redis_cluster(fred: bool, test: &str) -> Option<(Target, RedisKeys)> {
    let urls: Vec<String> = sched_tests::env::require_url("REDIS_CLUSTER_URLS", test)?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let nodes = RedisNodeFaults::create(
        &urls,
        Duration::from_millis(800),
        Duration::from_millis(800),
    )
    .unwrap_or_else(|e| panic!("{test}: cannot prepare the cluster nodes: {e}"));
    let prefix = prefix();
    let base = RedisConfig::cluster(urls.clone()).with_prefix(&prefix);
    let (user, pw) = nodes.credentials();
    let cfg = base
        .clone()
        .with_credentials(user, pw)
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(500));
    let repo: Arc<dyn WorkerRepository> = Arc::new(connect(&cfg, fred).await);
    let target = Target::new(repo, test).with_real(Arc::new(nodes));
    Some((target, RedisKeys { cfg: base }))
}

/// Drops the test's schema when dropped.
pub struct PgSchema {
    config: PostgresConfig,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let config = self.config.clone();
        on_own_runtime(async move {
            let repo = PostgresRepository::connect(config)
                .await
                .expect("connect for clean-up");
            repo.drop_schema().await.expect("drop the test schema");
            repo.close().await;
        });
    }
}

const TERMINATE: &str = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok \
     FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()) t WHERE ok";

/// Postgres (`DATABASE_URL`) in a fresh schema, through a [`FaultProxy`] (a dropped reply, cut
/// connections), with `pg_terminate_backend` of our own connections (found by their unique
/// `application_name`). Never touches the server's configuration.
pub async fn postgres(test: &str) -> Option<(Target, PgSchema)> {
    let url = sched_tests::env::require_url("DATABASE_URL", test)?;
    let schema = format!("sched_chaos_{}", sched_tests::ns::random_hex());
    let app = format!("sched-chaos-{}", sched_tests::ns::random_hex());
    let direct = PostgresConfig::from_url(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap()
        .with_max_connections(4);
    let setup = PostgresRepository::connect(direct.clone()).await.unwrap();
    setup.migrate().await.unwrap();
    setup.close().await;
    let guard = PgSchema {
        config: direct.clone(),
    };
    let upstream = tokio::net::lookup_host((direct.host(), direct.port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Arc::new(FaultProxy::start(upstream).await.unwrap());
    let proxied = direct
        .with_host("127.0.0.1")
        .with_port(proxy.addr().port())
        .with_application_name(&app)
        .with_max_connections(8);
    let repo: Arc<dyn WorkerRepository> =
        Arc::new(PostgresRepository::connect(proxied).await.unwrap());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let terminate = FnFaults::new().with(
        "pg-terminate-backend",
        Arc::new(move || {
            let (admin, app) = (admin.clone(), app.clone());
            Box::pin(async move {
                match sqlx::query_scalar::<_, i64>(TERMINATE)
                    .bind(&app)
                    .fetch_one(&admin)
                    .await
                {
                    Ok(_) => Injected::Yes,
                    Err(e) => Injected::Refused(e.to_string()),
                }
            })
        }),
    );
    let real = AllFaults(vec![Arc::new(ProxyFaults::new(proxy)), Arc::new(terminate)]);
    Some((Target::new(repo, test).with_real(Arc::new(real)), guard))
}
