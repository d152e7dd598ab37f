//! keel-init: PID 1 of a keel machine.
//!
//! Boot: console, timeline, plan, modules opened, off the initramfs onto a tmpfs root, /proc /sys
//! /dev /run /sys/fs/cgroup, modules loaded, clock and entropy reported, keel partitions found,
//! keel-data grown to fill a larger disk, partitions mounted, host name,
//! containers started through keel-runtime; then supervision (restarting exited containers per
//! their policy) until the machine is done, and shutdown. A fatal boot error prints `keel: fatal: <reason>` and shuts down per the plan's
//! `on_failure`. PID 1 never exits and never panics: a panic is caught and powers off.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod api;
mod carry;
mod clock;
mod console;
mod disks;
mod entropy;
mod gpt;
mod grow;
mod health;
mod lifecycle;
mod logs;
mod modules;
mod mounts;
mod namespaces;
mod network;
mod oom;
mod output;
mod power;
mod restart;
mod secureboot;
mod shutdown;
mod supervisor;
mod sys;
mod timeline;
mod usage;
mod verity;
mod volumes;

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use keel_plan::{Plan, CGROUP_ROOT, DATA_LABEL, DATA_MOUNT, IMAGES_MOUNT, PLAN_PATH};

use crate::shutdown::Action;
use crate::supervisor::Supervisor;
use crate::timeline::Event;

/// Signals PID 1 blocks and reads from a signalfd.
const SIGNALS: [libc::c_int; 6] =
    [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGUSR1, libc::SIGUSR2];

fn main() {
    let pid = std::process::id();
    if pid != 1 {
        eprintln!("keel-init is PID 1 of a keel machine: it mounts over /, kills every process and powers off, so it refuses to run as pid {pid}");
        std::process::exit(2);
    }
    let action = std::panic::catch_unwind(boot).unwrap_or_else(|_| {
        console::say("fatal: keel-init panicked");
        Action::Poweroff
    });
    if std::panic::catch_unwind(|| shutdown::run(action)).is_err() {
        // The orderly path panicked: sync and end the machine anyway.
        sys::sync();
        let _ = sys::reboot(action.command());
    }
    shutdown::halt_forever()
}

/// Boot and supervise; returns how to shut down.
fn boot() -> Action {
    console::setup();
    // Block the signals first, so none is lost (or kills us) during boot.
    let signals = sys::signalfd(&SIGNALS);
    timeline::mark(Event::InitStart);
    if let Err(e) = sys::ctrl_alt_del_to_sigint() {
        console::say(format_args!("route Ctrl-Alt-Del to SIGINT: {e}"));
    }
    let (plan, plan_sha256) = match read_plan(Path::new(PLAN_PATH)) {
        Ok(plan) => plan,
        Err(e) => {
            console::say(format_args!("fatal: {e:#}"));
            return Action::Poweroff;
        }
    };
    match start(&plan, &plan_sha256, signals) {
        Ok(action) => action,
        Err(e) => {
            console::say(format_args!("fatal: {e:#}"));
            plan.on_failure.into()
        }
    }
}

/// The plan and the sha256 of its bytes (the API shows it as the image's digest).
fn read_plan(path: &Path) -> anyhow::Result<(Plan, String)> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("read the plan {}", path.display()))?;
    let digest = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok((Plan::from_bytes(&bytes).with_context(|| format!("read the plan {}", path.display()))?, digest))
}

/// The boot sequence proper; an error is fatal.
fn start(plan: &Plan, plan_sha256: &str, signals: io::Result<OwnedFd>) -> anyhow::Result<Action> {
    let signals = signals.context("block signals")?;
    let modules = modules::open(&plan.modules)?;
    let filters = carry::read(Path::new(keel_plan::SECCOMP_DIR))?;
    // The API's key stays in memory: it never reaches the root tmpfs.
    let tls = match &plan.api {
        Some(_) => match api::read_tls(Path::new(keel_plan::API_TLS_DIR)) {
            Ok(t) => Some(t),
            Err(e) => {
                console::say(format_args!("api: {e:#}; not serving"));
                None
            }
        },
        None => None,
    };
    mounts::leave_initramfs(Path::new(mounts::NEW_ROOT))?;
    carry::write(&filters)?;
    mounts::mount_all(&mounts::BASE)?;
    console::say(format_args!("init namespaces: {}", namespaces::describe()));
    let loaded = modules::load(&modules)?;
    drop(modules);
    timeline::mark(Event::ModulesLoaded(loaded));
    clock::set();
    entropy::report();
    secureboot::report();
    let absent = keel_runtime::kernfs::absent_masks();
    if !absent.is_empty() {
        console::say(format_args!("masks skipped (not in this kernel): {}", absent.join(" ")));
    }
    let mut nodes = disks::find(Duration::from_millis(plan.disk_timeout_ms))?;
    let verity = verity::setup(&mut nodes)?;
    let data = disks::node(&nodes, DATA_LABEL);
    // keel-data fills a disk larger than the image: the partition before mounting, ext4 after.
    let grown = data.and_then(grow::partition);
    disks::mount(&nodes)?;
    if let Some(data) = data {
        grow::filesystem(data, Path::new(DATA_MOUNT), grown);
    }
    timeline::mark(Event::DisksMounted);
    prepare_volumes(plan)?;
    if let Err(e) = sys::sethostname(&plan.hostname) {
        console::say(format_args!("set the host name to {}: {e}", plan.hostname));
    }
    let cgroups = Path::new(CGROUP_ROOT);
    if let Err(e) = keel_runtime::prepare_cgroups(cgroups) {
        // Not fatal here: each container then fails to start, naming its cgroup file.
        console::say(format_args!("prepare the cgroup {CGROUP_ROOT}: {e}"));
    }
    let host = keel_runtime::Host {
        images: Path::new(IMAGES_MOUNT),
        cgroups: Some(cgroups),
        scratch: Path::new(keel_runtime::SCRATCH),
        volumes: Some(Path::new(keel_plan::VOLUMES_DIR)),
    };
    let (buttons, problems) = power::open_buttons(Path::new(power::SYS_INPUT), Path::new(power::DEV_INPUT));
    for p in problems {
        console::say(format_args!("power button: {p}"));
    }
    if buttons.is_empty() {
        console::say("no power button found: only signals to PID 1 stop the machine gracefully");
    } else {
        let names: Vec<String> = buttons.iter().map(|b| format!("{} ({})", b.node, b.name)).collect();
        console::say(format_args!("power button: {}", names.join(", ")));
    }
    let net = network::Network::boot(&plan.net, &plan.containers);
    let grace = Duration::from_millis(plan.shutdown_grace_ms);
    // With containers on networks, only the firewall's input chain keeps them off the API port:
    // without it (nft failed), fail closed and leave the API off.
    let networked = plan.containers.iter().any(|c| c.net.is_some());
    let api_safe = !networked || network::firewall_loaded();
    if plan.api.is_some() && !api_safe {
        console::say("api: the firewall is not loaded, so containers could reach the API port; not serving");
    }
    let link = match (&plan.api, tls) {
        (Some(a), Some(tls)) if api_safe => match api::channel() {
            Ok((link, sender, shared)) => {
                let info = api::server::HostInfo {
                    hostname: plan.hostname.clone(),
                    image: plan.name.clone(),
                    arch: plan.arch.to_string(),
                    plan_sha256: plan_sha256.to_string(),
                    listen: a.listen,
                };
                api::server::start(&tls, info, net.uplink(), shared, sender);
                Some(link)
            }
            Err(e) => {
                console::say(format_args!("api: {e}; not serving"));
                None
            }
        },
        _ => None,
    };
    let supervisor = Supervisor::new(host, signals, buttons, plan.on_exit, grace, &plan.containers, plan.logs)
        .with_network(net)
        .with_api(link)
        .with_verity(verity);
    Ok(supervisor.run())
}

/// The plan's volumes on keel-data (see `volumes`), each reported. Fatal only if the volumes
/// directory itself cannot be made (keel-data is then unusable).
fn prepare_volumes(plan: &Plan) -> anyhow::Result<()> {
    let dir = Path::new(keel_plan::VOLUMES_DIR);
    let outcomes = volumes::prepare(dir, &plan.volumes).with_context(|| format!("create {}", dir.display()))?;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(volumes::Outcome::Created { uid, gid }) => {
                console::say(format_args!("volume {name}: created, owner {uid}:{gid}"))
            }
            Ok(volumes::Outcome::Existing { uid, gid }) => {
                console::say(format_args!("volume {name}: found, owner {uid}:{gid}"))
            }
            Err(e) => console::say(format_args!("volume {name}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_plan_is_explained() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("plan");
        let e = read_plan(&missing).map(drop).unwrap_err();
        assert!(format!("{e:#}").starts_with(&format!("read the plan {}: ", missing.display())), "{e:#}");
        std::fs::write(&missing, b"{\"version\": 99}").unwrap();
        let e = read_plan(&missing).map(drop).unwrap_err();
        assert!(format!("{e:#}").contains("plan is not valid"), "{e:#}");
    }

    #[test]
    fn the_shutdown_signals_are_blocked() {
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR] {
            assert!(SIGNALS.contains(&sig));
        }
    }
}
