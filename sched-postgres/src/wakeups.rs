//! Wake-ups for a worker's new reservations: `LISTEN` on the schema's channel.
//!
//! `sched_reserve_worker` runs `pg_notify(sched_wake_channel(), worker_id)` for every committed
//! worker part (NOTIFY is transactional: nothing is sent for a part that was undone). Each
//! subscription opens a dedicated connection (a private pool of one, never a connection of the
//! repository's pool), asks the server for the channel name (`sched_wake_channel()`: derived
//! from the schema, hashed when long, so schemas never hear each other) and `LISTEN`s on it.
//! The stream yields `()` for each notification naming the worker and ends when the connection
//! is lost or fails; sched-core's watch then subscribes again and re-reads the ledger, so
//! nothing is lost. Dropping the stream closes the connection (outside any tokio runtime, where
//! sqlx cannot close it, the connection is left to the operating system instead of panicking).

use crate::config::PostgresConfig;
use crate::error::{acquire_error, statement_error, Failure};
use crate::repo::{PostgresRepository, BACKEND};
use futures::StreamExt;
use sched_core::validate::validate_id;
use sched_core::watch::Wakeups;
use sched_core::RepoError;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::sync::Arc;

/// A listening connection and the private pool it came from. Dropped, it closes the pool first,
/// so the listener's connection is closed (not kept idle) once sqlx has taken it back.
struct Subscription {
    /// `Some` until the subscription is dropped.
    listener: Option<PgListener>,
    pool: PgPool,
}

impl Subscription {
    /// The next notification; `Ok(None)` when the connection is gone.
    async fn recv(&mut self) -> Result<Option<sqlx::postgres::PgNotification>, sqlx::Error> {
        match self.listener.as_mut() {
            Some(l) => l.try_recv().await,
            None => Ok(None),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // `close` marks the pool closed at once; the returned future only waits for the
        // connections to come back, which the listener's own drop (next) does.
        drop(self.pool.close());
        let Some(listener) = self.listener.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(listener);
        } else {
            // sqlx's `PgListener::drop` spawns its `UNLISTEN` on the current runtime and panics
            // without one (a stream dropped after its runtime shut down, or from a plain
            // thread). No task could run there anyway: the connection is left to the operating
            // system (closed at exit; the server ends the session when the socket closes).
            tracing::debug!(
                "wake-up stream dropped outside a tokio runtime: its connection is not closed"
            );
            std::mem::forget(listener);
        }
    }
}

/// A failed subscription statement: nothing was changed, so never `Ambiguous`.
fn read_error(e: sqlx::Error, config: &PostgresConfig) -> RepoError {
    match statement_error(e, config) {
        Failure::Retry(e) => RepoError::Unavailable(Box::new(e)),
        Failure::Fail(RepoError::Ambiguous(e)) => RepoError::Unavailable(e),
        Failure::Fail(e) => e,
    }
}

/// [`WorkerRepository::reservation_wakeups`](sched_core::WorkerRepository::reservation_wakeups):
/// listening before it returns, so a commit right after is heard.
pub(crate) async fn subscribe(
    repo: &PostgresRepository,
    worker_id: &str,
) -> Result<Wakeups, RepoError> {
    validate_id("worker", worker_id)?;
    let config = &repo.config;
    let listen = async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(config.connect_options());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| acquire_error(e, config))?;
        // A lost connection ends the stream (the watch re-subscribes and re-reads) instead of
        // reconnecting silently behind a gap in which notifications were lost.
        listener.eager_reconnect(false);
        repo.counters.round_trips(BACKEND, 2);
        let channel: String = sqlx::query_scalar("SELECT sched_wake_channel()")
            .fetch_one(&mut listener)
            .await
            .map_err(|e| read_error(e, config))?;
        listener
            .listen(&channel)
            .await
            .map_err(|e| read_error(e, config))?;
        Ok::<_, RepoError>(Subscription {
            listener: Some(listener),
            pool,
        })
    };
    let sub = match config.call_timeout {
        Some(limit) => tokio::time::timeout(limit, listen).await.map_err(|_| {
            RepoError::Unavailable(format!("no LISTEN within the call timeout ({limit:?})").into())
        })??,
        None => listen.await?,
    };
    let worker: Arc<str> = Arc::from(worker_id);
    let stream = futures::stream::unfold(sub, move |mut sub| {
        let worker = Arc::clone(&worker);
        async move {
            loop {
                match sub.recv().await {
                    Ok(Some(n)) if n.payload() == &*worker => return Some(((), sub)),
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::debug!(worker = &*worker, "wake-up connection lost");
                        return None;
                    }
                    Err(e) => {
                        tracing::debug!(worker = &*worker, error = %e, "wake-up listener failed");
                        return None;
                    }
                }
            }
        }
    });
    Ok(stream.boxed())
}
