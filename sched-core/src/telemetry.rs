//! Every metric sched emits through the [`metrics`] facade, in one table ([`METRICS`], the source
//! of `METRICS.md`), and [`describe`], which gives an installed recorder their help texts and
//! units and starts every series at zero (so `rate()` has a first sample before anything happens).
//!
//! Names follow Prometheus conventions: `snake_case`, prefixed `sched_`, counters end in `_total`,
//! durations are in seconds and end in `_seconds`. Labels are bounded: `kind` takes one value per
//! [`Rejection`] kind, `reason` one per
//! [`ExpiryReason`], `backend` one per backend. The one unbounded
//! label, `worker` on `sched_placements_total`, is off unless
//! [`SchedulerConfig::per_worker_metrics`](crate::SchedulerConfig::per_worker_metrics) is set.
//!
//! ```
//! // With a recorder installed (metrics-exporter-prometheus, say), once at start-up:
//! sched_core::telemetry::describe();
//! sched_core::telemetry::describe_backend("redis");
//! ```

use crate::lifecycle::ExpiryReason;
use crate::Rejection;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations (the Prometheus exporter renders it as a summary by
    /// default).
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric: its name, kind, unit, labels and meaning.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MetricDoc {
    /// The series name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit: `seconds`, `containers`, `calls`, ...
    pub unit: &'static str,
    /// Label names (empty: none).
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric sched emits, in the order of `METRICS.md`.
#[rustfmt::skip]
pub const METRICS: &[MetricDoc] = &[
    // The scheduler.
    m("sched_requests_total", Counter, "containers", &[], "Containers asked of the scheduler (schedule and schedule_batch)."),
    m("sched_placements_total", Counter, "containers", &["worker (opt-in)"], "Containers placed: held in the store, answered Ok."),
    m("sched_no_capacity_total", Counter, "containers", &[], "Containers answered NoCapacity: no worker had room in a fresh view."),
    m("sched_conflicts_total", Counter, "rejections", &["kind"], "Worker parts the store rejected, by rejection kind (version_conflict, insufficient_capacity, ...)."),
    m("sched_retries_total", Counter, "containers", &[], "Containers re-planned after a rejection."),
    m("sched_ambiguous_commits_total", Counter, "commits", &[], "Commits whose outcome was unknown (a lost reply), resolved by a lookup."),
    m("sched_held_differently_total", Counter, "containers", &[], "Containers a lookup found held with other resources or on another worker than planned."),
    m("sched_unresolved_total", Counter, "containers", &[], "Containers answered Ambiguous: the lookup after a lost reply failed too."),
    m("sched_cancelled_skipped_total", Counter, "containers", &[], "Containers dropped before commit because their caller was gone."),
    m("sched_cancelled_released_total", Counter, "containers", &[], "Containers placed for a caller that was gone, then released."),
    m("sched_cancelled_unreleased_total", Counter, "containers", &[], "Containers placed for a caller that was gone whose release failed (held, nobody told)."),
    m("sched_reserve_batch_calls_total", Counter, "calls", &[], "reserve_batch calls the scheduler made (commits)."),
    m("sched_atomic_sections_total", Counter, "sections", &[], "Per-worker atomic sections of the scheduler's commits."),
    m("sched_group_commit_size", Histogram, "containers", &[], "Containers per group commit."),
    m("sched_schedule_duration_seconds", Histogram, "seconds", &[], "Time of one burst (a schedule_batch call or one group commit), from its start to its answers."),
    // The worker-state cache.
    m("sched_cache_hits_total", Counter, "reads", &[], "Plans served from the cached worker snapshot."),
    m("sched_cache_misses_total", Counter, "reads", &[], "Plans that had to read the store (cold, expired or invalidated)."),
    m("sched_cache_age_seconds", Gauge, "seconds", &[], "Age of the worker snapshot at its last use."),
    // Any backend (the Counted layer and the backends' own round-trip counts).
    m("sched_backend_round_trips_total", Counter, "round trips", &["backend"], "Network round trips to the store (a pipeline counts once)."),
    m("sched_backend_reserve_calls_total", Counter, "calls", &["backend"], "reserve_batch calls reaching the backend."),
    m("sched_backend_release_calls_total", Counter, "calls", &["backend"], "release_batch calls reaching the backend."),
    m("sched_backend_atomic_sections_total", Counter, "sections", &["backend"], "Per-worker atomic sections reaching the backend."),
    m("sched_backend_read_calls_total", Counter, "calls", &["backend"], "get_worker and list_workers calls reaching the backend."),
    m("sched_backend_lookup_calls_total", Counter, "calls", &["backend"], "find_reservations calls reaching the backend."),
    m("sched_redis_cleanup_failures_total", Counter, "steps", &["backend"], "Redis clean-up steps that failed after a change was applied (left for the resolver)."),
    // The lease sweeper.
    m("sched_leases_expired_total", Counter, "reservations", &["reason"], "Reservations the sweeper released: lease_expired or worker_stale."),
    m("sched_lease_sweep_errors_total", Counter, "sweeps", &[], "Sweeps that failed (retried at the next tick)."),
];

fn unit(u: &str) -> Unit {
    match u {
        "seconds" => Unit::Seconds,
        _ => Unit::Count,
    }
}

/// Describes every metric in [`METRICS`] to the installed recorder (help text, with the unit in
/// brackets) and registers at zero every counter and gauge whose labels are a closed set
/// (none, `kind`, `reason`). Call once after installing a recorder; without one it does nothing.
/// Backend-labelled series start at zero with [`describe_backend`].
pub fn describe() {
    for d in METRICS {
        let help = format!("{} [{}]", d.help, d.unit);
        let u = unit(d.unit);
        match d.kind {
            Counter => describe_counter!(d.name, u, help),
            Gauge => describe_gauge!(d.name, u, help),
            Histogram => describe_histogram!(d.name, u, help),
        }
        match (d.kind, d.labels) {
            (Counter, []) => metrics::counter!(d.name).increment(0),
            (Gauge, []) => metrics::gauge!(d.name).increment(0.0),
            (Counter, ["kind"]) => {
                for k in Rejection::KINDS {
                    metrics::counter!(d.name, "kind" => k).increment(0);
                }
            }
            (Counter, ["reason"]) => {
                for r in ExpiryReason::ALL {
                    metrics::counter!(d.name, "reason" => r.as_str()).increment(0);
                }
            }
            _ => {}
        }
    }
}

/// Registers at zero the `backend`-labelled counters for one backend `name` (`memory`, `redis`,
/// `redis-fred`, `postgres`, ...); the `sched_redis_*` ones only for a name starting `redis`.
pub fn describe_backend(name: &str) {
    for d in METRICS.iter().filter(|d| d.labels == ["backend"]) {
        if d.name.starts_with("sched_redis_") && !name.starts_with("redis") {
            continue;
        }
        metrics::counter!(d.name, "backend" => name.to_owned()).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_prometheus_style_and_units_match_suffixes() {
        let mut seen = HashSet::new();
        for d in METRICS {
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            assert!(d.name.starts_with("sched_"), "{}", d.name);
            assert!(
                d.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                d.name
            );
            assert_eq!(d.kind == Counter, d.name.ends_with("_total"), "{}", d.name);
            assert_eq!(
                d.unit == "seconds",
                d.name.ends_with("_seconds"),
                "{}",
                d.name
            );
            assert!(
                !d.labels.contains(&"worker"),
                "{}: unbounded label by default",
                d.name
            );
        }
    }

    /// METRICS.md is this table, row for row.
    #[test]
    fn metrics_md_lists_exactly_the_table() {
        let md = include_str!("../METRICS.md");
        let rows: Vec<Vec<&str>> = md
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), METRICS.len());
        for (row, d) in rows.iter().zip(METRICS) {
            assert_eq!(row[0], format!("`{}`", d.name));
            assert_eq!(row[1], d.kind.as_str(), "{}", d.name);
            assert_eq!(row[2], d.unit, "{}", d.name);
            let labels = if d.labels.is_empty() {
                "–".to_owned()
            } else {
                d.labels.join(", ")
            };
            assert_eq!(row[3], labels, "{}", d.name);
            assert_eq!(row[4], d.help, "{}", d.name);
        }
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every metric name written in the library sources of the workspace's crates (a string
    /// literal `"sched_..._total"`, `_seconds` or `_size`) is in the table.
    #[test]
    fn every_metric_in_the_sources_is_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for e in std::fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("sched-") {
                rust_files(&e.path().join("src"), &mut files);
            }
        }
        assert!(files.iter().any(|f| f.ends_with("stats.rs")), "{files:?}");
        let documented: HashSet<&str> = METRICS.iter().map(|d| d.name).collect();
        let mut found = 0;
        for f in files.iter().filter(|f| !f.ends_with("telemetry.rs")) {
            let text = std::fs::read_to_string(f).unwrap();
            for lit in text.split('"').skip(1).step_by(2) {
                let metric = lit.starts_with("sched_")
                    && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && ["_total", "_seconds", "_size"]
                        .iter()
                        .any(|x| lit.ends_with(x));
                if metric {
                    found += 1;
                    assert!(
                        documented.contains(lit),
                        "{lit} ({}) is not in METRICS",
                        f.display()
                    );
                }
            }
        }
        assert!(found >= METRICS.len(), "found only {found} metric literals");
    }
}
