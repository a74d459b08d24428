//! Opening the store for `sched-sim chaos`: a fresh namespace (key prefix or schema) on the
//! chosen backend, the backend's real faults when asked for, and the clean-up.

use super::ChaosArgs;
use crate::backend::{fresh_namespace, BackendKind};
use crate::cli::Common;
use crate::SimError;
use sched_core::{RepoError, WorkerRepository};
use sched_memory::MemoryRepository;
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use sched_tests::chaos::{
    authority, AllFaults, FnFaults, Injected, ProxyFaults, RealFaults, RedisNodeFaults, Sizes,
    Target,
};
use sched_tests::proxy::FaultProxy;
use std::sync::Arc;
use std::time::Duration;

/// The repository, its real faults, its clean-up and its description.
type Parts = (
    Arc<dyn WorkerRepository>,
    Option<Arc<dyn RealFaults>>,
    Cleanup,
    String,
);

/// What to remove when the run ends.
enum Cleanup {
    Nothing,
    Redis(RedisRepository),
    Postgres(PostgresRepository),
}

/// The chaos target on the chosen backend, and its clean-up.
pub struct Opened {
    /// The target the histories run on.
    pub target: Target,
    /// A description of the store (backend, topology, real faults).
    pub description: String,
    cleanup: Cleanup,
}

impl Opened {
    /// Removes everything the run wrote (Redis keys under its prefix, its Postgres schema).
    pub async fn cleanup(self) -> Result<(), SimError> {
        drop(self.target);
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Redis(r) => {
                r.delete_all_keys().await?;
            }
            Cleanup::Postgres(p) => {
                p.drop_schema().await?;
                p.close().await;
            }
        }
        Ok(())
    }
}

fn need(url: &Option<String>, what: &str, kind: BackendKind) -> Result<String, SimError> {
    url.clone()
        .ok_or_else(|| SimError::Config(format!("--backend {} needs {what}", kind.as_str())))
}

fn unavailable(kind: BackendKind) -> impl Fn(RepoError) -> SimError {
    move |e| SimError::BackendUnavailable(kind.as_str().into(), e.to_string())
}

async fn redis(kind: BackendKind, cfg: &RedisConfig) -> Result<RedisRepository, SimError> {
    if kind.is_fred() {
        RedisRepository::connect_fred(cfg).await
    } else {
        RedisRepository::connect(cfg).await
    }
    .map_err(unavailable(kind))
}

async fn proxy_to(host_port: &str) -> Result<Arc<FaultProxy>, SimError> {
    let upstream = tokio::net::lookup_host(host_port)
        .await?
        .next()
        .ok_or_else(|| SimError::Config(format!("cannot resolve {host_port}")))?;
    Ok(Arc::new(FaultProxy::start(upstream).await?))
}

const TERMINATE: &str = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok \
     FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()) t WHERE ok";

/// Opens `common.backend` in a fresh namespace (Redis Cluster with the cluster kinds and `--redis-cluster-urls`).
pub async fn open(common: &Common, args: &ChaosArgs, sizes: Sizes) -> Result<Opened, SimError> {
    let kind = common.backend;
    let tls = common.backend_options().tls;
    // A missing or wrong TLS file is named now, before anything connects.
    tls.check()?;
    let ns = fresh_namespace();
    let tag = format!("chaos-{}", kind.as_str());
    let (repo, real, cleanup, description): Parts = match kind {
        BackendKind::Memory => (
            Arc::new(MemoryRepository::new()),
            None,
            Cleanup::Nothing,
            "memory".into(),
        ),
        BackendKind::RedisCluster | BackendKind::RedisFredCluster => {
            let urls = &common.redis_cluster_urls;
            if urls.is_empty() {
                return Err(SimError::Config(format!(
                    "--backend {} needs --redis-cluster-urls (or REDIS_CLUSTER_URLS)",
                    kind.as_str()
                )));
            }
            let base = tls.redis_config(RedisConfig::cluster(urls.clone()).with_prefix(&ns));
            let admin = redis(kind, &base).await?;
            let (cfg, real): (RedisConfig, Option<Arc<dyn RealFaults>>) = if args.real_faults {
                if urls.iter().any(|u| u.starts_with("rediss:")) {
                    return Err(SimError::Config(
                        "--real-faults on a Redis Cluster talks plain RESP to every node \
                         (RedisNodeFaults): not available over TLS (rediss://)"
                            .into(),
                    ));
                }
                let nodes = tokio::task::block_in_place(|| {
                    RedisNodeFaults::create(
                        urls,
                        Duration::from_millis(800),
                        Duration::from_millis(800),
                    )
                })
                .map_err(SimError::Config)?;
                let (user, pw) = nodes.credentials();
                let cfg = base
                    .clone()
                    .with_credentials(user, pw)
                    .with_timeouts(Duration::from_secs(2), Duration::from_millis(500));
                (cfg, Some(Arc::new(nodes)))
            } else {
                (base.clone(), None)
            };
            let repo = redis(kind, &cfg).await?;
            let d = format!("{} on the Redis Cluster {}", kind.as_str(), urls.join(","));
            (Arc::new(repo), real, Cleanup::Redis(admin), d)
        }
        BackendKind::Redis | BackendKind::RedisFred => {
            let url = need(&common.redis_url, "--redis-url (or REDIS_URL)", kind)?;
            let direct = tls.redis_config(RedisConfig::from_url(&url).with_prefix(&ns));
            let admin = redis(kind, &direct).await?;
            let (cfg, real): (RedisConfig, Option<Arc<dyn RealFaults>>) = if args.real_faults {
                let proxy = proxy_to(&authority(&url)).await?;
                // The proxy forwards bytes: TLS goes through it end to end (the server's
                // certificate must then name the proxy's address, 127.0.0.1).
                let scheme = if url.starts_with("rediss:") {
                    "rediss"
                } else {
                    "redis"
                };
                let cfg = RedisConfig::from_url(format!("{scheme}://{}", proxy.addr()))
                    .with_prefix(&ns)
                    .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
                (
                    tls.redis_config(cfg),
                    Some(Arc::new(ProxyFaults::new(proxy))),
                )
            } else {
                (direct, None)
            };
            let repo = redis(kind, &cfg).await?;
            (
                Arc::new(repo),
                real,
                Cleanup::Redis(admin),
                kind.as_str().into(),
            )
        }
        BackendKind::Postgres => {
            let url = need(
                &common.database_url,
                "--database-url (or DATABASE_URL)",
                kind,
            )?;
            let direct = PostgresConfig::from_url(&url)
                .and_then(|c| c.with_schema(&ns))
                .map_err(|e| SimError::Config(e.to_string()))?
                .with_max_connections(16);
            let direct = tls.postgres_config(direct);
            let admin = PostgresRepository::connect(direct.clone())
                .await
                .map_err(unavailable(kind))?;
            admin.migrate().await?;
            let (repo, real): (PostgresRepository, Option<Arc<dyn RealFaults>>) = if args
                .real_faults
            {
                let proxy = proxy_to(&format!("{}:{}", direct.host(), direct.port())).await?;
                let app = format!("sched-sim-chaos-{ns}");
                let cfg = direct
                    .clone()
                    .with_host("127.0.0.1")
                    .with_port(proxy.addr().port())
                    .with_application_name(&app);
                let repo = PostgresRepository::connect(cfg)
                    .await
                    .map_err(unavailable(kind))?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(tls.pg_connect_options(&url)?)
                    .await
                    .map_err(|e| SimError::BackendUnavailable("postgres".into(), e.to_string()))?;
                let terminate = FnFaults::new().with(
                    "pg-terminate-backend",
                    Arc::new(move || {
                        let (pool, app) = (pool.clone(), app.clone());
                        Box::pin(async move {
                            match sqlx::query_scalar::<_, i64>(TERMINATE)
                                .bind(&app)
                                .fetch_one(&pool)
                                .await
                            {
                                Ok(_) => Injected::Yes,
                                Err(e) => Injected::Refused(e.to_string()),
                            }
                        })
                    }),
                );
                let real = AllFaults(vec![Arc::new(ProxyFaults::new(proxy)), Arc::new(terminate)]);
                (repo, Some(Arc::new(real)))
            } else {
                (admin.clone(), None)
            };
            (
                Arc::new(repo),
                real,
                Cleanup::Postgres(admin),
                "postgres".into(),
            )
        }
    };
    let description = match &real {
        Some(r) => format!("{description}, real faults: {}", r.kinds().join(", ")),
        None => format!("{description}, Faulty layer only"),
    };
    let mut target = Target::new(repo, &tag);
    target.real = real;
    target.sizes = sizes;
    Ok(Opened {
        target,
        description,
        cleanup,
    })
}
