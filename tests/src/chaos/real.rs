//! [`RealFaults`]: faults injected into the real server or network (not through the `Faulty`
//! layer), and the injectors every backend can use: [`ProxyFaults`] (a reply dropped on the wire,
//! every connection cut) and [`FnFaults`] (any async closure, e.g. `pg_terminate_backend`).
//! The Redis Cluster node faults are in [`redis_nodes`](super::redis_nodes).

use crate::proxy::FaultProxy;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::sync::Arc;

/// What one injection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// The fault is in place (until [`RealFaults::restore`], or it wears off by itself).
    Yes,
    /// The server refused it (e.g. `DEBUG` disabled): counted apart, not a failure.
    Refused(String),
}

/// Real faults a chaos target can inject. Every change to a server must be undone by
/// [`restore`](Self::restore) and by the injector's `Drop` (a failed test must not leave a
/// node out of memory or paused).
#[async_trait]
pub trait RealFaults: Send + Sync {
    /// The kinds it can inject (`oom`, `client-pause`, ...), indexed by [`inject`](Self::inject).
    fn kinds(&self) -> Vec<&'static str>;
    /// How many nodes a fault may target (1 for a single server).
    fn nodes(&self) -> usize {
        1
    }
    /// Injects kind `kind` (an index into [`kinds`](Self::kinds)) on node `node`.
    async fn inject(&self, kind: usize, node: usize) -> Injected;
    /// Undoes every fault still in place (idempotent).
    async fn restore(&self);
}

/// Faults through a [`FaultProxy`] the repository connects through: `lost-reply` (the next
/// reply is swallowed and its connection closed) and `cut-connections` (every open connection
/// dropped at once).
#[derive(Debug)]
pub struct ProxyFaults {
    proxy: Arc<FaultProxy>,
}

impl ProxyFaults {
    /// Injects through `proxy`.
    pub fn new(proxy: Arc<FaultProxy>) -> Self {
        ProxyFaults { proxy }
    }
}

#[async_trait]
impl RealFaults for ProxyFaults {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["proxy-lost-reply", "proxy-cut-connections"]
    }

    async fn inject(&self, kind: usize, _node: usize) -> Injected {
        if kind == 0 {
            self.proxy.lose_next_replies(1);
        } else {
            self.proxy.kill_all();
        }
        Injected::Yes
    }

    async fn restore(&self) {}
}

/// The injection closure of [`FnFaults`].
pub type InjectFn = Arc<dyn Fn() -> BoxFuture<'static, Injected> + Send + Sync>;

/// Faults given as closures, one per kind, with nothing to restore (e.g. terminating our own
/// Postgres backends).
pub struct FnFaults {
    kinds: Vec<(&'static str, InjectFn)>,
}

impl FnFaults {
    /// No kinds yet.
    pub fn new() -> Self {
        FnFaults { kinds: Vec::new() }
    }

    /// Adds kind `name`, injected by `f`.
    pub fn with(mut self, name: &'static str, f: InjectFn) -> Self {
        self.kinds.push((name, f));
        self
    }
}

impl Default for FnFaults {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl RealFaults for FnFaults {
    fn kinds(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.0).collect()
    }

    async fn inject(&self, kind: usize, _node: usize) -> Injected {
        match self.kinds.get(kind) {
            Some((_, f)) => f().await,
            None => Injected::Refused(format!("no kind {kind}")),
        }
    }

    async fn restore(&self) {}
}

/// Several injectors as one: their kinds one after the other.
pub struct AllFaults(pub Vec<Arc<dyn RealFaults>>);

impl AllFaults {
    fn find(&self, mut kind: usize) -> Option<(&Arc<dyn RealFaults>, usize)> {
        for f in &self.0 {
            let n = f.kinds().len();
            if kind < n {
                return Some((f, kind));
            }
            kind -= n;
        }
        None
    }
}

#[async_trait]
impl RealFaults for AllFaults {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.iter().flat_map(|f| f.kinds()).collect()
    }

    fn nodes(&self) -> usize {
        self.0.iter().map(|f| f.nodes()).max().unwrap_or(1)
    }

    async fn inject(&self, kind: usize, node: usize) -> Injected {
        match self.find(kind) {
            Some((f, k)) => f.inject(k, node % f.nodes().max(1)).await,
            None => Injected::Refused(format!("no kind {kind}")),
        }
    }

    async fn restore(&self) {
        for f in &self.0 {
            f.restore().await;
        }
    }
}
