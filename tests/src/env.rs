//! Selecting a backend server for tests from the environment.

/// Reads the server URL from `var`.
///
/// * Set: returns it.
/// * Unset and `CI` is `true` or `1`: panics, because under CI a skipped backend test is a test
///   that cannot fail.
/// * Unset otherwise: prints why the test skips and returns `None`.
pub fn require_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{test}: {var} is not set, and CI={} forbids skipping backend tests",
                std::env::var("CI").unwrap_or_default()
            );
            eprintln!("SKIPPED {test}: set {var} to run it against a real server");
            None
        }
    }
}
