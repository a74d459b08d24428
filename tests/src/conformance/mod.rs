//! The conformance suite: one `pub async fn check_*` per rule of the
//! [`WorkerRepository`] contract, and [`run_all`] / [`run_all_concurrently`].
//!
//! Every check works in its own random [`Ns`](crate::ns::Ns), never assumes the store is empty,
//! and removes its workers at the end, so checks can share one store with each other and with
//! other tests. Checks panic with a message naming the rule when the backend breaks it.
//!
//! Every worker a check registers requires a pool selector naming its namespaced pool, so a
//! [`Scheduler`](sched_core::Scheduler) running elsewhere on the same store never places
//! containers on it (and never disturbs the exact amounts the check asserts).
//!
//! # Layout
//!
//! One file per topic, each holding its checks and the list of their names (a
//! `__conformance_checks_<topic>!` macro), in run order:
//!
//! | file | checks |
//! |------|--------|
//! | `registration.rs` | a new worker's fields, reads and removal |
//! | `reserve.rs` | commits over one and many workers, in input order |
//! | `release.rs` | capacity coming back, once, across workers, idempotently |
//! | `capacity.rs` | insufficient CPU, memory and GPUs, GPU types and counts |
//! | `rejections.rs` | empty batches, unknown workers, versions, availability, rejection order |
//! | `modes.rs` | all-or-nothing, partial prefixes, re-reserves held here or elsewhere |
//! | `reregistration.rs` | re-registering over reservations, and after a removal |
//! | `reads.rs` | finding reservations, ledgers, listing workers, audit and reconcile |
//! | `limits.rs` | awkward ids, amounts and ids at the limits, the largest batch |
//! | `bad_input.rs` | `InvalidInput` everywhere, with nothing changed |
//! | `concurrency.rs` | concurrent callers, one holder, lists during writes |
//! | `leases.rs` | lease deadlines, renewal, the expiry sweep, renewal racing the sweep |
//! | `liveness.rs` | heartbeats, staleness and its policy, status changes |
//! | `decommission.rs` | releasing every reservation of a worker |
//! | `handoff.rs` | wake-ups on commit, and the ledger-driven watch |
//!
//! `support.rs` holds the helpers the checks share, and `fixture.rs` the `Fixture` through which
//! every check registers its workers and which removes them when the check calls `finish`.
//!
//! To add a check, write its `pub async fn check_*` in its topic's file and add its name to that
//! file's list; [`CHECKS`], [`run_all`], [`run_all_concurrently`] and
//! [`conformance_tests!`](crate::conformance_tests) all follow. To add a topic, add its file
//! below (`mod` and `pub use`) and its list's macro to `__for_each_check!`.
//!
//! The run order is the order [`run_all`] reports failures in, so it matters to the tests of the
//! suite itself (`tests/tests/mutants.rs` checks which assertion catches each deliberate bug):
//! for example, `reserve.rs` and `release.rs` run before the rejection topics, and re-registration
//! after them.

use sched_core::WorkerRepository;

mod fixture;
mod support;

mod bad_input;
mod capacity;
mod concurrency;
mod decommission;
mod handoff;
mod leases;
mod limits;
mod liveness;
mod modes;
mod reads;
mod registration;
mod rejections;
mod release;
mod reregistration;
mod reserve;

pub use bad_input::*;
pub use capacity::*;
pub use concurrency::*;
pub use decommission::*;
pub use handoff::*;
pub use leases::*;
pub use limits::*;
pub use liveness::*;
pub use modes::*;
pub use reads::*;
pub use registration::*;
pub use rejections::*;
pub use release::*;
pub use reregistration::*;
pub use reserve::*;

/// Calls `$cb!` with `($args)` followed by the name of every check, topic by topic. Keeps
/// [`run_all`], [`CHECKS`] and [`conformance_tests!`](crate::conformance_tests) in step.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($cb:ident ! $args:tt) => {
        $crate::__conformance_chain! {
            ($cb ! $args)
            [
                __conformance_checks_registration
                __conformance_checks_reserve
                __conformance_checks_release
                __conformance_checks_capacity
                __conformance_checks_rejections
                __conformance_checks_modes
                __conformance_checks_reregistration
                __conformance_checks_reads
                __conformance_checks_limits
                __conformance_checks_bad_input
                __conformance_checks_concurrency
                __conformance_checks_leases
                __conformance_checks_liveness
                __conformance_checks_decommission
                __conformance_checks_handoff
            ]
        }
    };
}

/// One step of `__for_each_check!`: `(callback) [topics left] names so far`. Expands the next
/// topic's list macro, which appends its names and comes back here; with no topic left, calls
/// the callback with every name.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_chain {
    (($cb:ident ! $args:tt) [] $($name:ident)*) => {
        $crate::$cb! { $args $($name)* }
    };
    ($call:tt [$topic:ident $($rest:ident)*] $($name:ident)*) => {
        $crate::$topic! { $call [$($rest)*] $($name)* }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_names {
    (() $($name:ident)*) => {
        /// The name of every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),*];
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_run {
    (($repo:ident) $($name:ident)*) => {
        $(
            eprintln!("conformance[{}]: {}", $repo.backend_name(), stringify!($name));
            $crate::conformance::$name($repo).await;
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_join {
    (($repo:ident) $($name:ident)*) => {
        futures::future::join_all(vec![
            $(::std::boxed::Box::pin($crate::conformance::$name($repo))
                as ::std::pin::Pin<::std::boxed::Box<dyn ::std::future::Future<Output = ()> + ::std::marker::Send + '_>>),*
        ])
        .await
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    (($make:expr) $($name:ident)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(repo) = ($make).await {
                    $crate::conformance::$name(&repo).await;
                }
            }
        )*
    };
}

/// Generates one `#[tokio::test]` per conformance check, each named after its check.
///
/// The argument is an expression evaluated in each test to an `async` block that yields
/// `Option<R>` with `R: WorkerRepository`; `None` skips the test (see
/// [`env::require_url`](crate::env::require_url)). Invoke it inside a module:
///
/// ```no_run
/// mod conformance {
///     sched_tests::conformance_tests!(async { Some(sched_memory::MemoryRepository::new()) });
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__for_each_check!(__conformance_test!($make));
    };
}

crate::__for_each_check!(__conformance_names!());

/// Runs every check, one after another, on `repo`.
pub async fn run_all(repo: &dyn WorkerRepository) {
    crate::__for_each_check!(__conformance_run!(repo));
}

/// Runs every check at the same time on `repo`: proves the checks' namespaces keep them apart
/// and exercises the backend under interleaved traffic.
pub async fn run_all_concurrently(repo: &dyn WorkerRepository) {
    crate::__for_each_check!(__conformance_join!(repo));
}
