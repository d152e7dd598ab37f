//! `keel-probe check`: one line per check, then a summary; exit 0 only if every check passed.

mod filter_only;
mod fs;
mod limits;
mod masks;
mod net;
mod ns;
mod process;
mod scratch;
mod syscalls;

pub use filter_only::run as filter_only;

use crate::report::{say, Report};
use crate::sys;

/// Runs every check and returns the exit code; `limits` are the cgroup limit values expected
/// (`memory.max=536870912`, see `limits`).
pub fn run(limits: &[&str]) -> i32 {
    say(&format!("check on {} as pid {}", std::env::consts::ARCH, sys::getpid()));
    let mut report = Report::default();
    ns::run(&mut report);
    process::run(&mut report);
    let scratch = scratch::Scratch::create();
    syscalls::run(&mut report, &scratch);
    fs::run(&mut report, &scratch);
    masks::run(&mut report);
    drop(scratch);
    limits::run(&mut report, limits);
    net::run(&mut report);
    report.finish()
}
