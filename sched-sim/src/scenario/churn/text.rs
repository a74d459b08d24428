//! The churn report as readable text.

use super::ChurnReport;
use std::fmt::Write as _;

fn ok(good: bool) -> &'static str {
    if good {
        "OK"
    } else {
        "FAILED"
    }
}

/// Renders `r`.
pub(super) fn render(r: &ChurnReport) -> String {
    let mut s = String::new();
    let st = &r.settings;
    let _ = writeln!(
        s,
        "== churn on {}: {} workers, {:.1} s, leases {} ms, heartbeat timeout {} ms (on stale: {}), agents every {} ms, sweep every {} ms, rtt {} ms ==",
        r.backend,
        r.workers,
        r.seconds,
        st.lease_ms,
        st.heartbeat_timeout_ms,
        st.on_stale,
        st.agent_period_ms,
        st.sweep_period_ms,
        r.rtt_ms
    );
    let p = &r.placements;
    let _ = writeln!(
        s,
        "placements      placed {}/{}   unplaced {}   ambiguous {}   burst of {} p50 {:.3} ms p99 {:.3} ms",
        p.placed,
        p.requested,
        p.unplaced,
        p.ambiguous,
        st.burst_size,
        r.burst_latency.p50_ms,
        r.burst_latency.p99_ms
    );
    let e = &r.ends;
    let _ = writeln!(
        s,
        "lifetimes       {}..{} ms: released {}   died without release {} (share {:.2})   lost in the crash {} (+{} placed on the crashed worker)   live at the end {}",
        st.lifetime_ms.0,
        st.lifetime_ms.1,
        e.released,
        e.died,
        st.die_share,
        e.lost_in_crash,
        e.placed_on_crashed,
        e.live_at_end
    );
    let n = &r.renewals;
    let _ = writeln!(
        s,
        "renewals        calls {} (p50 {:.3} ms p99 {:.3} ms)   renewed {}   expired {}   not held {}   no lease {}",
        n.calls, n.latency.p50_ms, n.latency.p99_ms, n.renewed, n.expired, n.not_held, n.no_lease
    );
    let _ = writeln!(
        s,
        "heartbeats      {} (p50 {:.3} ms p99 {:.3} ms)   drains {} (each brought back)",
        r.heartbeats, r.heartbeat_latency.p50_ms, r.heartbeat_latency.p99_ms, r.drains
    );
    let c = &r.crash;
    match (&c.worker, c.crashed_at_s, c.back_at_s) {
        (Some(w), Some(at), back) => {
            let _ = writeln!(
                s,
                "crash           agent of {w} down at {at:.2} s, back at {} (stale when it came back: {})",
                back.map(|b| format!("{b:.2} s")).unwrap_or_else(|| "never".into()),
                c.came_back_stale
                    .map(|b| if b { "yes" } else { "no" })
                    .unwrap_or("-")
            );
        }
        _ => {
            let _ = writeln!(s, "crash           none");
        }
    }
    let x = &r.expiries;
    let _ = writeln!(
        s,
        "expiries        {} = lease expired {} + worker stale {}   of dead containers {}   of live {}   unknown {}   returned {}",
        x.total, x.lease_expired, x.worker_stale, x.of_dead, x.of_live, x.of_unknown, x.returned
    );
    let _ = writeln!(
        s,
        "sweeps          {} rounds (p50 {:.3} ms p99 {:.3} ms)   swept after the deadline (store clock) p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
        x.sweep_rounds,
        x.sweep_latency.p50_ms,
        x.sweep_latency.p99_ms,
        x.swept_after_deadline.p50_ms,
        x.swept_after_deadline.p99_ms,
        x.swept_after_deadline.max_ms
    );
    let _ = writeln!(
        s,
        "leaked          {} dead containers still held, {} {}",
        r.leaked.containers,
        r.leaked.capacity,
        ok(r.leaked.containers == 0)
    );
    let _ = writeln!(
        s,
        "live            lost by the store {}   held where placed {}/{} (missing {}, misplaced {}) {}",
        e.live_lost,
        e.live_at_end
            .saturating_sub(r.audit.missing + r.audit.misplaced),
        e.live_at_end,
        r.audit.missing,
        r.audit.misplaced,
        ok(e.live_lost == 0 && r.audit.missing + r.audit.misplaced == 0)
    );
    let a = &r.audit;
    let _ = writeln!(
        s,
        "audit           drifting workers {}   double-bookings {}   orphaned {}   ({} workers, {} ledger entries) {}",
        a.drift_workers,
        a.double_bookings,
        a.orphaned,
        a.workers_audited,
        a.ledger_entries,
        ok(a.is_clean())
    );
    let b = &r.after_release;
    let _ = writeln!(
        s,
        "after release   ledger entries {} (want 0)   drifting workers {} {}",
        b.ledger_entries,
        b.drift_workers,
        ok(b.is_clean() && b.ledger_entries == 0)
    );
    s
}
