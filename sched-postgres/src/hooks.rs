//! Test hooks for measurements (`testing` feature): what the server tracked about this
//! repository's SQL functions.

use crate::repo::PostgresRepository;
use sched_core::RepoError;
use std::collections::BTreeMap;

impl PostgresRepository {
    /// Test hook: the server's statistics of this repository's schema's functions, from
    /// `pg_stat_user_functions`: function name → (calls, total time in ms, callees included).
    /// Overloads of one name are summed.
    ///
    /// It reports only what the server tracked: function calls are counted only in sessions
    /// where `track_functions` is `pl` (or `all`), e.g. a URL with
    /// `?options=-c%20track_functions%3Dpl` or a session `SET track_functions = 'pl'` (a
    /// superuser setting); with the default `none` the map is empty. A backend publishes its
    /// counts when it goes idle, at most about once a second (PostgreSQL 15:
    /// `pg_stat_force_next_flush()` makes the next one immediate), so a read right after a
    /// call may not include it yet. Counters add up until `pg_stat_reset*`: compare deltas.
    pub async fn function_usec(&self) -> Result<BTreeMap<String, (u64, f64)>, RepoError> {
        let sql = "SELECT coalesce(jsonb_object_agg(s.name, jsonb_build_array(s.calls, s.ms)), \
                   '{}') FROM (SELECT funcname AS name, sum(calls) AS calls, \
                   sum(total_time) AS ms FROM pg_stat_user_functions \
                   WHERE schemaname = current_schema() GROUP BY funcname) s";
        self.call(true, sql, |q| q).await
    }
}
