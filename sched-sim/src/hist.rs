//! Latency summaries on top of `hdrhistogram`.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Records durations in microseconds (1 µs .. 1 h, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// `None` only if the histogram could not be created (never for these fixed bounds).
    h: Option<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles of a [`Recorder`], in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // 1 µs .. 1 h with 3 significant figures is always a valid configuration.
        let h = Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
        Recorder { h }
    }

    /// Records one duration (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = &mut self.h {
            h.saturating_record(us);
        }
    }

    /// Adds all samples of `other`.
    pub fn merge(&mut self, other: &Recorder) {
        if let (Some(h), Some(o)) = (&mut self.h, &other.h) {
            let _ = h.add(o);
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.h.as_ref().map_or(0, Histogram::len)
    }

    /// True with no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The percentiles, in milliseconds (all zero with no samples).
    pub fn summary(&self) -> Summary {
        let Some(h) = self.h.as_ref().filter(|h| !h.is_empty()) else {
            return Summary::default();
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            min_ms: ms(h.min()),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}
