//! Calls the default seccomp filter (and the missing capabilities) must deny with EPERM, each
//! made in a throwaway child with harmless arguments (see `sys`), and ordinary calls that must
//! still work.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::checks::scratch::Scratch;
use crate::child;
use crate::errno::{signal_name, Errno};
use crate::report::{verdict, Outcome, Report};
use crate::sys::{self, WaitStatus};

/// What the denied calls get to work on.
struct Targets {
    /// An empty directory of our own to mount on.
    mount: std::ffi::CString,
    /// Where to try making block-device nodes (in a private directory).
    node: std::ffi::CString,
    /// `major:minor` pairs to try as block-device nodes: sd 8:0 and the host's real disks.
    devices: Vec<(u32, u32)>,
}

type Call = fn(&Targets) -> Result<libc::c_long, Errno>;

/// The denied calls, by check name.
const DENIED: [(&str, Call); 15] = [
    ("deny-mount", mount),
    ("deny-reboot", |_| sys::reboot_bad_magic()),
    ("deny-init-module", |_| sys::init_module_empty()),
    ("deny-finit-module", |_| sys::finit_module_bad_fd()),
    ("deny-kexec-load", |_| sys::kexec_load_invalid()),
    ("deny-bpf", |_| sys::bpf_prog_load_zeroed()),
    ("deny-perf-event-open", |_| sys::perf_event_open_zeroed()),
    ("deny-keyctl", |_| sys::keyctl_session_id()),
    ("deny-ptrace", ptrace),
    ("deny-unshare-user", |_| sys::unshare(libc::CLONE_NEWUSER)),
    ("deny-open-by-handle-at", |_| sys::open_by_handle_at_bad_fd()),
    ("deny-mknod-block", mknod_block),
    ("deny-swapon", |_| sys::swapon(c"/nonexistent/keel-probe-swap")),
    ("deny-clock-settime", |_| sys::clock_settime_now()),
    ("deny-af-packet", af_packet),
];

/// Records every `deny-*` check, then `allowed-syscalls`.
pub fn run(report: &mut Report, scratch: &Scratch) {
    let host_devices = sys_dev_block();
    let mut devices = vec![(8, 0)];
    devices.extend(host_devices.iter().copied().filter(|d| *d != (8, 0)));
    let targets = Targets { mount: scratch.c_path("mnt"), node: scratch.c_path("blk"), devices };
    for (name, call) in DENIED {
        let mut outcome = denied(child::run(|| exit_code(call(&targets))));
        if name == "deny-mknod-block" {
            let listed: Vec<String> = host_devices.iter().take(8).map(|(a, b)| format!("{a}:{b}")).collect();
            let more = if host_devices.len() > 8 { " …" } else { "" };
            let note = format!(
                "for 8:0 and the {} block device(s) in /sys/dev/block ({}{more})",
                host_devices.len(),
                listed.join(" ")
            );
            outcome = outcome.map(|d| format!("{d} {note}")).map_err(|d| format!("{d} {note}"));
        }
        report.record(name, outcome);
    }
    report.record("allowed-syscalls", allowed());
}

/// A child's exit code for a call's result: 0 if it succeeded, else its errno (1-255).
pub(super) fn exit_code(r: Result<libc::c_long, Errno>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(Errno(e)) if (1..=255).contains(&e) => e,
        Err(_) => 255,
    }
}

/// The verdict on a denied call from how its child ended.
pub(super) fn denied(end: Result<WaitStatus, Errno>) -> Outcome {
    match end {
        Ok(WaitStatus::Exited(libc::EPERM)) => Ok("EPERM".to_string()),
        Ok(WaitStatus::Exited(0)) => Err("allowed: the call succeeded".to_string()),
        Ok(WaitStatus::Exited(255)) => Err("failed with an unknown errno, not EPERM".to_string()),
        Ok(WaitStatus::Exited(e)) => Err(format!("{} (want EPERM)", Errno(e))),
        Ok(WaitStatus::Signaled(s)) => Err(format!("the call's process was killed by {}", signal_name(s))),
        Ok(WaitStatus::Other(s)) => Err(format!("the call's process ended oddly (status {s:#x})")),
        Err(e) => Err(format!("cannot fork to make the call: {e}")),
    }
}

fn mount(t: &Targets) -> Result<libc::c_long, Errno> {
    let r = sys::mount_tmpfs(&t.mount);
    if r.is_ok() {
        let _ = sys::umount_detach(&t.mount);
    }
    r
}

fn ptrace(_: &Targets) -> Result<libc::c_long, Errno> {
    let pid = child::spawn_sleeper()?;
    let r = sys::ptrace_attach(pid);
    child::kill_all(&[pid]);
    r
}

/// Tries every device in turn: the first success (node removed at once) or non-EPERM error
/// wins; EPERM only if every one was EPERM.
fn mknod_block(t: &Targets) -> Result<libc::c_long, Errno> {
    let node = Path::new(std::ffi::OsStr::from_bytes(t.node.to_bytes()));
    let mut result = Err(Errno(libc::EPERM));
    for &(major, minor) in &t.devices {
        match sys::mknod_block(&t.node, major, minor) {
            Ok(r) => {
                let _ = std::fs::remove_file(node);
                return Ok(r);
            }
            Err(Errno(libc::EPERM)) => {}
            Err(e) => result = Err(e),
        }
    }
    result
}

fn af_packet(_: &Targets) -> Result<libc::c_long, Errno> {
    let eth_p_all = i32::from((libc::ETH_P_ALL as u16).to_be());
    sys::socket(libc::AF_PACKET, libc::SOCK_RAW, eth_p_all).map(|_fd| 0)
}

/// `major:minor` of every block device the kernel lists in /sys/dev/block.
fn sys_dev_block() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/sys/dev/block") else { return Vec::new() };
    let mut devs: Vec<(u32, u32)> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let (a, b) = name.to_str()?.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    devs.sort_unstable();
    devs
}

/// getpid, openat, an AF_INET socket and fork+wait all work, so the denials above are the
/// filter's doing and not a probe that cannot make system calls.
fn allowed() -> Outcome {
    let pid = sys::getpid();
    let open = std::fs::File::open("/proc/self/status").map(drop).map_err(|e| Errno::from_io(&e));
    let socket = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0).map(drop);
    let fork = child::run(|| 0);
    let show = |r: &Result<(), Errno>| r.map_or_else(|e| e.name(), |()| "ok".to_string());
    let detail = format!(
        "getpid={pid} openat={} socket(AF_INET,SOCK_DGRAM)={} fork+wait={}",
        show(&open),
        show(&socket),
        match fork {
            Ok(WaitStatus::Exited(c)) => format!("exit {c}"),
            Ok(other) => format!("{other:?}"),
            Err(e) => e.name(),
        }
    );
    verdict(pid > 0 && open.is_ok() && socket.is_ok() && fork == Ok(WaitStatus::Exited(0)), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_verdicts() {
        assert_eq!(denied(Ok(WaitStatus::Exited(libc::EPERM))), Ok("EPERM".to_string()));
        assert!(denied(Ok(WaitStatus::Exited(0))).is_err());
        assert_eq!(denied(Ok(WaitStatus::Exited(libc::EINVAL))), Err("EINVAL (want EPERM)".to_string()));
        assert!(denied(Ok(WaitStatus::Signaled(libc::SIGSYS))).is_err_and(|d| d.contains("SIGSYS")));
        assert!(denied(Err(Errno(libc::EAGAIN))).is_err());
        assert_eq!(exit_code(Ok(3)), 0);
        assert_eq!(exit_code(Err(Errno(libc::EPERM))), libc::EPERM);
        assert_eq!(exit_code(Err(Errno(0))), 255);
        assert_eq!(exit_code(Err(Errno(4000))), 255);
    }
}
