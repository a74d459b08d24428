//! Progress bars that only appear on a terminal, without `--json`, once a run has lasted ~1 s.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar that stays hidden for its first second.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    enabled: bool,
}

impl Progress {
    /// A bar of `len` steps titled `msg`; never drawn when `quiet` or when stderr is not a TTY.
    pub fn new(len: u64, msg: impl Into<String>, quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed_precise}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(msg.into());
        Progress {
            bar,
            started: Instant::now(),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// A bar that is never drawn.
    pub fn hidden() -> Self {
        Self::new(0, "", true)
    }

    /// Advances by one step.
    pub fn inc(&self) {
        if self.enabled && self.bar.is_hidden() && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
