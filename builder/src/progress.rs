//! Progress for long steps: a bar on a terminal, one line per finished step (unless quiet), and
//! the time of every step for the summary.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The progress of one `keel check` or `keel build`.
pub struct Progress {
    /// Print a line per finished step (to stderr).
    lines: bool,
    /// Show bars and spinners (on a terminal only).
    bars: bool,
    /// Finished-step lines held back by [`Progress::hold`].
    held: RefCell<Option<Vec<String>>>,
    /// Every finished step and its time.
    steps: RefCell<Vec<StepTime>>,
}

/// How long one step took.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// The step, e.g. `kernel`.
    pub name: &'static str,
    /// Its wall time in seconds.
    pub seconds: f64,
}

impl Progress {
    /// `lines`: print a line per finished step; `bars`: draw bars on a terminal.
    pub fn new(lines: bool, bars: bool) -> Progress {
        Progress { lines, bars, held: RefCell::new(None), steps: RefCell::new(Vec::new()) }
    }

    /// Nothing on the terminal at all (library use, tests).
    pub fn silent() -> Progress {
        Progress::new(false, false)
    }

    /// Start a step; `len` is the amount of work for a bar, or `None` for a spinner.
    pub fn step(&self, name: &'static str, len: Option<u64>) -> Step<'_> {
        let bar = if !self.bars {
            ProgressBar::hidden()
        } else {
            match len {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix:>10} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            }
        };
        bar.set_prefix(name);
        if self.bars {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Step { progress: self, bar, name, start: Instant::now() }
    }

    /// Hold finished-step lines back until [`Progress::release`], so that the steps that only
    /// validate print nothing when validation fails: errors then come alone.
    pub fn hold(&self) {
        self.held.borrow_mut().get_or_insert_with(Vec::new);
    }

    /// Print the lines held back, and print further lines as their steps finish.
    pub fn release(&self) {
        for line in self.held.borrow_mut().take().unwrap_or_default() {
            eprintln!("{line}");
        }
    }

    /// Every step finished so far, in order.
    pub fn times(&self) -> Vec<StepTime> {
        self.steps.borrow().clone()
    }

    fn finished(&self, name: &'static str, summary: &str, seconds: f64) {
        self.steps.borrow_mut().push(StepTime { name, seconds });
        if !self.lines {
            return;
        }
        let line = format!("{name:>10} {summary} ({seconds:.1}s)");
        match self.held.borrow_mut().as_mut() {
            Some(held) => held.push(line),
            None => eprintln!("{line}"),
        }
    }
}

/// One step of a build.
pub struct Step<'a> {
    progress: &'a Progress,
    bar: ProgressBar,
    name: &'static str,
    start: Instant,
}

impl Step<'_> {
    /// Set the bar's position.
    pub fn set_pos(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Show what is being worked on.
    pub fn message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Finish with a summary line.
    pub fn done(self, summary: impl AsRef<str>) {
        self.bar.finish_and_clear();
        self.progress.finished(self.name, summary.as_ref(), self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A size for people, in KiB or MiB only: `0.35 KiB`, `4.5 KiB`, `848 KiB`, `8.8 MiB`, `115 MiB`.
/// One decimal below 100 of the unit, two below 1 KiB.
pub fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{:.2} KiB", b / KIB)
    } else if b < 100.0 * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < MIB {
        format!("{:.0} KiB", b / KIB)
    } else if b < 100.0 * MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_kib_or_mib() {
        assert_eq!(size(0), "0.00 KiB");
        assert_eq!(size(360), "0.35 KiB");
        assert_eq!(size(4608), "4.5 KiB");
        assert_eq!(size(848 << 10), "848 KiB");
        assert_eq!(size(9_188_352), "8.8 MiB");
        assert_eq!(size(115 << 20), "115 MiB");
    }

    #[test]
    fn held_lines_are_timed_but_not_lost() {
        let p = Progress::silent();
        p.hold();
        p.step("a", None).done("x");
        p.release();
        p.step("b", Some(3)).done("y");
        let names: Vec<_> = p.times().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
