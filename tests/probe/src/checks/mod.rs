//! `keel-probe check`: one line per check, then a summary; exit 0 only if every check passed.

mod fs;
mod limits;
mod net;
mod ns;
mod process;
mod scratch;
mod syscalls;

use crate::report::{say, Report};
use crate::sys;

/// Runs every check and returns the exit code.
pub fn run() -> i32 {
    say(&format!("check on {} as pid {}", std::env::consts::ARCH, sys::getpid()));
    let mut report = Report::default();
    ns::run(&mut report);
    process::run(&mut report);
    let scratch = scratch::Scratch::create();
    syscalls::run(&mut report, &scratch);
    fs::run(&mut report, &scratch);
    drop(scratch);
    limits::run(&mut report);
    net::run(&mut report);
    report.finish()
}
