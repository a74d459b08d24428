//! Text formatting: plain tables, amounts, ages and timestamps.

use sched_core::Resources;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// A left-aligned plain-text table, columns separated by two spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as lines ending in `\n`, with no trailing spaces.
    pub fn render(&self) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; cols];
        for r in self.rows.iter().chain([&self.header]) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in [&self.header].into_iter().chain(&self.rows) {
            let mut line = String::new();
            for (c, w) in r.iter().zip(&widths) {
                let _ = write!(line, "{c:<w$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `8000m 16384Mi`, plus ` 4gpu` when there are GPUs.
pub fn res(r: &Resources) -> String {
    let mut s = format!("{}m {}Mi", r.cpu_millicores, r.memory_mib);
    if r.gpu_count > 0 {
        let _ = write!(s, " {}gpu", r.gpu_count);
    }
    s
}

/// The share of `total` in use, per resource (`None` where the total is zero).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct UsedPct {
    /// CPU.
    pub cpu: Option<f64>,
    /// Memory.
    pub memory: Option<f64>,
    /// GPUs.
    pub gpu: Option<f64>,
}

impl UsedPct {
    /// `(total − free) / total`, in percent, per resource.
    pub fn of(total: &Resources, free: &Resources) -> Self {
        let pct = |t: u64, f: u64| {
            (t > 0).then(|| {
                // Amounts are at most 2^40, exact in an f64.
                let used = t.saturating_sub(f) as f64;
                (used * 1000.0 / t as f64).round() / 10.0
            })
        };
        UsedPct {
            cpu: pct(total.cpu_millicores, free.cpu_millicores),
            memory: pct(total.memory_mib, free.memory_mib),
            gpu: pct(total.gpu_count, free.gpu_count),
        }
    }

    /// The highest of the three.
    pub fn max(&self) -> f64 {
        [self.cpu, self.memory, self.gpu]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max)
    }
}

/// An age or a span, to the second: `0s`, `45s`, `10m`, `10m 5s`, `2h 3m`, `3d 4h`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m, sec) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, sec) => format!("{m}m {sec}s"),
        (0, h, 0, _) => format!("{h}h"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, 0, _, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

/// `at` relative to `now`: `5s ago`, `in 20m`, `now`.
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms + 1000 <= now_ms {
        format!("{} ago", span(now_ms - at_ms))
    } else if at_ms >= now_ms + 1000 {
        format!("in {}", span(at_ms - now_ms))
    } else {
        "now".to_owned()
    }
}

/// RFC 3339 UTC to the second: `2026-01-01T12:00:00Z`.
pub fn timestamp(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `1 reservation`, `3 reservations`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `yes`/`no`.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(5_999), "5s");
        assert_eq!(span(600_000), "10m");
        assert_eq!(span(605_000), "10m 5s");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(7_380_000), "2h 3m");
        assert_eq!(span(86_400_000 * 3 + 3_600_000 * 4), "3d 4h");
        assert_eq!(relative(1_000, 6_000), "5s ago");
        assert_eq!(relative(1_200_000, 0), "in 20m");
        assert_eq!(relative(500, 1_000), "now");
    }

    #[test]
    fn tables_and_amounts() {
        let mut t = Table::new(["A", "LONGER"]);
        t.row(["xyz", "1"]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
        assert_eq!(res(&Resources::new(500, 512, 0)), "500m 512Mi");
        assert_eq!(res(&Resources::new(500, 512, 2)), "500m 512Mi 2gpu");
        let u = UsedPct::of(
            &Resources::new(8000, 1000, 0),
            &Resources::new(5000, 1000, 0),
        );
        assert_eq!(u.cpu, Some(37.5));
        assert_eq!(u.gpu, None);
        assert_eq!(u.max(), 37.5);
        assert_eq!(timestamp(1_767_268_800_000), "2026-01-01T12:00:00Z");
    }
}
