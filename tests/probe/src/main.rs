//! keel-probe: the in-guest checker and the hostile workloads of keel's isolation boot tests.
//!
//! It runs as a container's pid 1 in a booted keel guest. `check` prints one line per isolation
//! check (`probe: ok NAME DETAIL` / `probe: FAIL NAME DETAIL`) and a summary; the other modes
//! are workloads (fork bomb, memory hog, CPU spinner, heartbeat, sleep, exit, fsynced records
//! for power-cut tests, and two containers colluding over a passed pipe). Every line goes out in one write(2), and nothing panics: a
//! problem becomes a line.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod cgroup;
mod checks;
mod child;
mod collude;
mod errno;
mod hostile;
mod parse;
mod records;
mod report;
mod sys;
mod workloads;

use report::say;

const USAGE: &str =
    "usage: keel-probe check [LIMIT=VALUE...] | filter-only | fork-bomb SECONDS | hog | spin SECONDS | \
    heartbeat INTERVAL_MS COUNT | sleep SECONDS | exit CODE | records DIR INTERVAL_MS | pass-stdout SOCKET | \
    write-passed SOCKET SECONDS";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match dispatch(&args) {
        Ok(code) => code,
        Err(why) => {
            say(&format!("{why}; {USAGE}"));
            2
        }
    };
    std::process::exit(code);
}

/// Runs the mode `args` names; `Err` for a bad command line.
fn dispatch(args: &[&str]) -> Result<i32, String> {
    match args {
        ["check", limits @ ..] => Ok(checks::run(limits)),
        ["filter-only"] => Ok(checks::filter_only()),
        ["fork-bomb", secs] => Ok(hostile::fork_bomb(number(secs)?)),
        ["hog"] => hostile::hog(),
        ["spin", secs] => Ok(hostile::spin(number(secs)?)),
        ["heartbeat", interval, count] => Ok(workloads::heartbeat(number(interval)?, number(count)?)),
        ["sleep", secs] => Ok(workloads::sleep(number(secs)?)),
        ["exit", code] => Ok(number(code)?),
        ["records", dir, interval] => Ok(records::run(dir, number(interval)?)),
        ["pass-stdout", socket] => Ok(collude::pass_stdout(socket)),
        ["write-passed", socket, secs] => Ok(collude::write_passed(socket, number(secs)?)),
        [] => Err("no mode given".to_string()),
        other => Err(format!("unknown arguments {other:?}")),
    }
}

/// A non-negative decimal argument.
fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(dispatch(&["exit", "3"]), Ok(3));
        assert!(dispatch(&["exit", "x"]).is_err());
        assert!(dispatch(&[]).is_err());
        assert!(dispatch(&["heartbeat", "10"]).is_err());
        assert!(dispatch(&["write-passed", "/s", "x"]).is_err());
        assert!(dispatch(&["pass-stdout"]).is_err());
        assert_eq!(number::<u64>("42"), Ok(42));
        assert!(number::<u64>("-1").is_err());
    }
}
