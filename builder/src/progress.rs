//! Progress for long steps: a bar on a terminal, and one line per finished step always.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One step of a build.
pub struct Step {
    bar: ProgressBar,
    name: &'static str,
    start: Instant,
}

impl Step {
    /// Start a step; `len` is the amount of work for a bar, or `None` for a spinner.
    pub fn start(name: &'static str, len: Option<u64>) -> Step {
        let bar = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>10} {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(name);
        bar.enable_steady_tick(Duration::from_millis(120));
        Step { bar, name, start: Instant::now() }
    }

    /// Set the bar's position.
    pub fn set_pos(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Show what is being worked on.
    pub fn message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Finish with a summary line (printed to stderr, terminal or not).
    pub fn done(self, summary: impl AsRef<str>) {
        self.bar.finish_and_clear();
        eprintln!("{:>10} {} ({:.1}s)", self.name, summary.as_ref(), self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
