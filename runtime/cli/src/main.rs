//! keel-runtime: run an OCI bundle with keel's container runtime on the build host, the way
//! `crun run` and `runc run` do (create, start, wait, delete in one command), so the three can be
//! compared on the same bundle.
//!
//! `keel-runtime run --bundle DIR [--seccomp FILE] [ID]` reads `DIR/config.json` (the subset in
//! [`spec`]), starts the container with [`keel_runtime::spawn`], copies its stdout and stderr to
//! its own, and exits with the container's status (128 + N when signal N killed it). The
//! container gets a cgroup under `/sys/fs/cgroup/keel-runtime` when `/sys/fs/cgroup` is a pure
//! cgroup v2 with the cpu, memory and pids controllers, and none otherwise. `--seccomp` takes a
//! filter file compiled by keel (`keel_plan::seccomp` format). IDs must be unique among running
//! containers (they name the cgroup and the scratch directory).
//!
//! With `KEEL_RUNTIME_TIMING=1` in its environment it prints, on stderr, how long each phase took
//! (for profiling the start latency).

mod host;
mod net;
mod spec;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use keel_runtime::{spawn, wait, ExitStatus, Host};

use crate::spec::Spec;

#[derive(Parser)]
#[command(name = "keel-runtime", version, about = "Run an OCI bundle with keel's container runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, start and wait for a container, then delete it; exit with its status.
    Run {
        /// The bundle: a directory holding config.json and the root filesystem.
        #[arg(long, short)]
        bundle: PathBuf,
        /// A seccomp filter file compiled by keel (default: no filter).
        #[arg(long)]
        seccomp: Option<PathBuf>,
        /// Give the container a veth with this IPv4 address (a /32, routed through keel's
        /// link-local gateway), as keel-init does for a container on a network. The host end,
        /// `k-ID`, is made in this process's network namespace: run it inside a throwaway one
        /// (`unshare -n`).
        #[arg(long, value_name = "ADDRESS")]
        network: Option<std::net::Ipv4Addr>,
        /// Container id (names its cgroup and scratch directory).
        #[arg(default_value = "keel-runtime")]
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { bundle, seccomp, network, id } => match run(&bundle, seccomp.as_deref(), network, &id) {
            Ok(status) => ExitCode::from(exit_code(status)),
            Err(e) => {
                eprintln!("keel-runtime: {e:#}");
                ExitCode::from(125)
            }
        },
    }
}

/// The exit code that reports `status`: its own, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    match status {
        ExitStatus::Exited(code) => code.clamp(0, 255) as u8,
        ExitStatus::Signaled(sig) => (128 + sig).clamp(0, 255) as u8,
    }
}

/// Phase timestamps, printed on stderr when `KEEL_RUNTIME_TIMING` is set.
struct Timing {
    start: Instant,
    last: Instant,
    enabled: bool,
}

impl Timing {
    fn new() -> Timing {
        let now = Instant::now();
        Timing { start: now, last: now, enabled: std::env::var_os("KEEL_RUNTIME_TIMING").is_some() }
    }

    fn mark(&mut self, phase: &str) {
        if self.enabled {
            let now = Instant::now();
            let us = |d: std::time::Duration| d.as_micros();
            eprintln!(
                "keel-runtime: timing: {phase:<28} {:>6} us (at {:>6} us)",
                us(now - self.last),
                us(now - self.start)
            );
            self.last = now;
        }
    }

    fn note(&self, what: &str) {
        if self.enabled {
            eprintln!("keel-runtime: timing: {what}");
        }
    }
}

fn run(bundle: &Path, seccomp: Option<&Path>, network: Option<std::net::Ipv4Addr>, id: &str) -> Result<ExitStatus> {
    let mut timing = Timing::new();
    let bundle = bundle.canonicalize().with_context(|| format!("bundle {}", bundle.display()))?;
    let config = bundle.join("config.json");
    let bytes = std::fs::read(&config).with_context(|| format!("read {}", config.display()))?;
    let spec = Spec::parse(&bytes)?;
    let seccomp = match seccomp {
        Some(p) => {
            let p = p.canonicalize().with_context(|| format!("seccomp filter {}", p.display()))?;
            Some(p.to_str().context("the seccomp filter's path is not UTF-8")?.to_string())
        }
        None => None,
    };
    let cgroups = host::cgroups().context("prepare the cgroup v2 subtree")?;
    let root = spec.root_location(&bundle)?;
    let container = spec.container(id, &root.name, seccomp, cgroups.is_some())?;
    let scratch = Path::new(host::SCRATCH);
    std::fs::create_dir_all(scratch).with_context(|| format!("create {}", scratch.display()))?;
    let host = Host { images: &root.parent, cgroups: cgroups.as_deref(), scratch, volumes: None };
    timing.mark("read config, check host");

    let running = match network {
        None => spawn(&container, &host),
        Some(address) => {
            let net = net::container_net(id, address);
            let requests = std::cell::Cell::new(0);
            let r = keel_runtime::spawn_with(&container, &host, &|pid| {
                net::prepare(&net, pid, container.id_base).map(|n| requests.set(n)).map_err(|e| format!("network: {e}"))
            });
            timing.note(&format!("network: {} rtnetlink requests", requests.get()));
            r
        }
    }
    .with_context(|| format!("start container {id}"))?;
    timing.mark("spawn (until exec)");
    let mut stderr = File::from(running.stderr);
    let copier = std::thread::spawn(move || io::copy(&mut stderr, &mut io::stderr().lock()));
    let copied = io::copy(&mut File::from(running.stdout), &mut io::stdout().lock());
    timing.mark("run (until stdout EOF)");
    let status = wait(running.pid).with_context(|| format!("wait for container {id}"))?;
    timing.mark("exit (until reaped)");
    let _ = io::stdout().flush();
    let copied_err = copier.join();
    if let Some(cgroup) = &running.cgroup {
        remove_cgroup(cgroup);
    }
    // The scratch directory of a writable root is empty on the host once the container is gone.
    let _ = std::fs::remove_dir(scratch.join(id));
    timing.mark("clean up");
    copied.context("copy the container's stdout")?;
    match copied_err {
        Ok(r) => {
            r.context("copy the container's stderr")?;
        }
        Err(_) => bail!("the stderr copier panicked"),
    }
    Ok(status)
}

/// Remove the container's cgroup; the kernel may need a moment after the last process is reaped.
fn remove_cgroup(cgroup: &keel_runtime::Cgroup) {
    for _ in 0..100 {
        match cgroup.remove() {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => {
                eprintln!("keel-runtime: remove cgroup {}: {e}", cgroup.path().display());
                return;
            }
        }
    }
    eprintln!("keel-runtime: cgroup {} still busy; left in place", cgroup.path().display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::Exited(0)), 0);
        assert_eq!(exit_code(ExitStatus::Exited(3)), 3);
        assert_eq!(exit_code(ExitStatus::Signaled(9)), 137);
    }
}
