//! [`Backoff`]: exponential backoff with jitter, the one the scheduler and the backends share.

use rand::RngExt;
use std::time::Duration;

/// Exponential backoff with "equal jitter": the ceiling doubles per retry from `base` up to
/// `max`, and each pause is uniform in [ceiling / 2, ceiling], drawn from a real RNG (the
/// thread-local generator), so schedulers that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `base`, doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }

    /// The ceiling before retry `retry` (1 = the first retry): `base * 2^(retry - 1)`, at most
    /// `max`. Saturates; retry 0 counts as 1.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The pause before retry `retry`: uniform in [ceiling / 2, ceiling].
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, &mut rand::rng())
    }

    /// [`delay`](Self::delay) with the caller's RNG (a seeded one makes it repeatable).
    pub fn delay_with<R: rand::Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_then_caps() {
        let b = Backoff::new(2 * MS, 100 * MS);
        let ceilings: Vec<_> = (0..=8).map(|r| b.ceiling(r)).collect();
        assert_eq!(
            ceilings,
            [2, 2, 4, 8, 16, 32, 64, 100, 100].map(|m| m * MS).to_vec()
        );
        assert_eq!(b.ceiling(u32::MAX), 100 * MS);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn pauses_stay_within_half_to_the_whole_ceiling_and_vary() {
        let b = Backoff::new(2 * MS, 100 * MS);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 1..10 {
            let c = b.ceiling(retry);
            let pauses: Vec<_> = (0..200).map(|_| b.delay_with(retry, &mut rng)).collect();
            assert!(
                pauses.iter().all(|p| *p >= c / 2 && *p <= c),
                "retry {retry}"
            );
            let distinct: std::collections::HashSet<_> = pauses.iter().collect();
            assert!(
                distinct.len() > 100,
                "retry {retry}: {} distinct",
                distinct.len()
            );
        }
        assert!(b.delay(3) <= 8 * MS);
    }

    #[test]
    fn a_zero_base_never_waits() {
        assert_eq!(Backoff::new(Duration::ZERO, MS).delay(5), Duration::ZERO);
    }
}
