//! Random id namespaces, so that many checks (and many test processes) can share one store.
//!
//! Every check builds its own [`Ns`] and derives every worker id, container id and pool name
//! from it. Two namespaces never produce the same id, so checks never see each other's data,
//! except through `list_workers(None)`, which they only ever filter by [`Ns::owns`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Characters that break naive key building, globbing, quoting or SQL (`{`, `}`, `:`, space,
/// quotes, glob and `LIKE` wildcards, a backslash, non-ASCII), used by [`Ns::awkward`].
pub const AWKWARD: &str = "{x}:y 'q\"*?[%_\\é✓日本";

/// A SQL-injection attempt, used as part of some ids.
pub const DROP_TABLE: &str = "'; DROP TABLE workers; --";

/// 64 random bits as 16 hex digits: different in every call, every process and every run.
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// A random id namespace: a prefix shared by every id a check creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ns {
    prefix: String,
}

impl Ns {
    /// A plain namespace, `t-<tag>-<random>/`.
    pub fn new(tag: &str) -> Self {
        Ns {
            prefix: format!("t-{tag}-{}/", random_hex()),
        }
    }

    /// A namespace whose prefix itself holds [`AWKWARD`] characters, so that every id derived
    /// from it does too.
    pub fn awkward(tag: &str) -> Self {
        Ns {
            prefix: format!("{AWKWARD} t-{tag}-{}/", random_hex()),
        }
    }

    /// The prefix of every id in this namespace.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A worker id.
    pub fn worker(&self, name: &str) -> String {
        format!("{}w:{name}", self.prefix)
    }

    /// A container id.
    pub fn container(&self, name: &str) -> String {
        format!("{}c:{name}", self.prefix)
    }

    /// A pool name.
    pub fn pool(&self, name: &str) -> String {
        format!("{}p:{name}", self.prefix)
    }

    /// True when `id` was made by this namespace.
    pub fn owns(&self, id: &str) -> bool {
        id.starts_with(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_differ_and_ids_are_valid() {
        let a = Ns::new("x");
        let b = Ns::new("x");
        assert_ne!(a, b);
        assert!(a.owns(&a.worker("1")) && !b.owns(&a.worker("1")));
        let w = Ns::awkward("y");
        for id in [w.worker(DROP_TABLE), w.container("c"), w.pool("p")] {
            assert!(
                sched_core::validate::validate_id("worker", &id).is_ok(),
                "{id:?}"
            );
        }
    }
}
