//! Worker affinity: spread containers across equally good workers, deterministically.
//!
//! * [`hash_container_id`]: the first 8 bytes of sha256(container id), big-endian.
//! * [`rotation_offset`]: rotate a tier of equal priority by `hash mod n` (the original design's
//!   spreading, kept inside each tier) — [`AffinityMode::Rotate`].
//! * rendezvous (highest-random-weight) hashing, stable when workers join or leave —
//!   [`AffinityMode::Rendezvous`].
//! * two choices, the less loaded in the burst's plan: the rotation's first candidate, or the
//!   least-loaded candidate met scanning from a second hash offset ([`second_offset`]) —
//!   [`AffinityMode::Balanced`], the default. Near capacity it cuts conflicts between
//!   schedulers several-fold against rotation (`sched-sim contention`, BENCHMARKS.md); the
//!   same id planned by two schedulers may land on different workers, which the store's
//!   one-holder rule settles (the loser finds the id held and answers it from there).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the scheduler spreads containers within a priority tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityMode {
    /// No spreading: candidates in id order, so a burst piles onto the first workers.
    Off,
    /// Rotate each tier by `hash_container_id(id) mod tier length`.
    Rotate,
    /// Rendezvous (highest-random-weight) hashing over the tier.
    Rendezvous,
    /// Two choices per container, judged against the burst's running plan: the rotation's
    /// first candidate ([`AffinityMode::Rotate`]), unless the least-loaded candidate met by
    /// scanning the tier from a second hash offset ([`second_offset`]) is less loaded. Load is
    /// the containers this plan already put on the worker, ties broken by more free CPU left.
    /// Deterministic (hash-based); a burst of `m` containers onto `n` equal workers puts at most
    /// `ceil(m / n)` on any worker. The default.
    #[default]
    Balanced,
}

/// The first 8 bytes of sha256(`container_id`), read as a big-endian `u64`.
///
/// ```
/// let h = sched_core::affinity::hash_container_id("container-1");
/// assert_eq!(h, sched_core::affinity::hash_container_id("container-1"));
/// ```
pub fn hash_container_id(container_id: &str) -> u64 {
    let digest = Sha256::digest(container_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Where a container starts in a tier of `len` candidates under [`AffinityMode::Rotate`]:
/// `container_hash mod len` (0 for an empty tier).
///
/// ```
/// use sched_core::affinity::{hash_container_id, rotation_offset};
/// let off = rotation_offset(hash_container_id("some-container"), 3);
/// assert!(off < 3);
/// ```
pub fn rotation_offset(container_hash: u64, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (container_hash % len as u64) as usize
    }
}

/// Where [`AffinityMode::Balanced`] starts scanning a tier of `len` candidates for its second
/// choice: a second hash of the container, independent of [`rotation_offset`]'s (0 for an
/// empty tier).
///
/// ```
/// use sched_core::affinity::{hash_container_id, second_offset};
/// assert!(second_offset(hash_container_id("some-container"), 7) < 7);
/// ```
pub fn second_offset(container_hash: u64, len: usize) -> usize {
    rotation_offset(rendezvous_score(container_hash, SECOND_CHOICE_SALT), len)
}

/// Salt mixed into the container hash for [`second_offset`].
const SECOND_CHOICE_SALT: u64 = 0x2545_F491_4F6C_DD1D;

/// A stable per-worker hash for [`rendezvous_score`] (first 8 bytes of sha256(worker id)).
pub(crate) fn hash_worker_id(worker_id: &str) -> u64 {
    hash_container_id(worker_id)
}

/// Rendezvous weight of a (container, worker) pair; the candidate with the highest weight wins.
/// Mixes the two sha256-derived hashes with splitmix64, so scoring n workers costs n cheap mixes.
pub(crate) fn rendezvous_score(container_hash: u64, worker_hash: u64) -> u64 {
    let mut z = container_hash ^ worker_hash.rotate_left(32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotates `candidates` left by `hash_container_id(container_id) mod len` inside each run of
    /// equal `tier(c)`, so that tier order (e.g. priority) is kept. Candidates must already be sorted
    /// by tier. (The tier-preserving rotation the planner performs with [`rotation_offset`].)
    fn apply_worker_affinity<T, K: PartialEq>(
        candidates: &mut [T],
        container_id: &str,
        tier: impl Fn(&T) -> K,
    ) {
        let h = hash_container_id(container_id);
        let mut start = 0;
        while start < candidates.len() {
            let key = tier(&candidates[start]);
            let mut end = start + 1;
            while end < candidates.len() && tier(&candidates[end]) == key {
                end += 1;
            }
            let run = &mut candidates[start..end];
            let n = run.len() as u64;
            // n >= 1 here, so the modulo is safe.
            run.rotate_left((h % n) as usize);
            start = end;
        }
    }

    /// Sorts `candidates` inside each tier by descending rendezvous score for `container_id`
    /// (the order the planner's rendezvous mode picks from).
    fn apply_rendezvous<T, K: PartialEq>(
        candidates: &mut [T],
        container_id: &str,
        tier: impl Fn(&T) -> K,
        worker_id: impl Fn(&T) -> &str,
    ) {
        let h = hash_container_id(container_id);
        let mut start = 0;
        while start < candidates.len() {
            let key = tier(&candidates[start]);
            let mut end = start + 1;
            while end < candidates.len() && tier(&candidates[end]) == key {
                end += 1;
            }
            candidates[start..end].sort_by_cached_key(|c| {
                std::cmp::Reverse(rendezvous_score(h, hash_worker_id(worker_id(c))))
            });
            start = end;
        }
    }

    #[test]
    fn hash_is_sha256_prefix_big_endian() {
        // sha256("") = e3b0c44298fc1c14...
        assert_eq!(hash_container_id(""), 0xe3b0_c442_98fc_1c14);
    }

    #[test]
    fn rotation_keeps_tiers() {
        let mut v: Vec<(i32, usize)> = (0..5)
            .map(|i| (9, i))
            .chain((5..8).map(|i| (1, i)))
            .collect();
        apply_worker_affinity(&mut v, "abc", |c| c.0);
        assert!(v[..5].iter().all(|c| c.0 == 9));
        assert!(v[5..].iter().all(|c| c.0 == 1));
        let off = rotation_offset(hash_container_id("abc"), 5);
        assert_eq!(v[0].1, off);
    }

    #[test]
    fn rotation_keeps_the_lower_tier_last() {
        let mut v = vec![(2, "a"), (2, "b"), (2, "c"), (1, "d")];
        apply_worker_affinity(&mut v, "some-container", |c| c.0);
        assert_eq!(v[3], (1, "d")); // the lower tier stays last
    }

    #[test]
    fn rotation_spreads_many_containers() {
        let mut counts = [0usize; 20];
        for i in 0..2000 {
            counts[rotation_offset(hash_container_id(&format!("c-{i}")), 20)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }

    #[test]
    fn rendezvous_is_stable_when_a_worker_leaves() {
        let workers: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
        let best = |ws: &[String], c: &str| {
            let mut v = ws.to_vec();
            apply_rendezvous(&mut v, c, |_| 0, |w| w.as_str());
            v[0].clone()
        };
        let fewer: Vec<String> = workers.iter().filter(|w| *w != "w3").cloned().collect();
        for i in 0..200 {
            let c = format!("c{i}");
            let before = best(&workers, &c);
            if before != "w3" {
                assert_eq!(before, best(&fewer, &c), "container {c} moved");
            }
        }
    }
}
