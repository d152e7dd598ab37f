//! `keel-probe filter-only`: calls that only the seccomp filter can deny.
//!
//! The `deny-*` checks of `check` run with no capabilities, so most of their EPERMs would come
//! from the missing capability alone. This mode runs as container root with CAP_SYS_ADMIN and
//! CAP_SYS_PTRACE granted (in the container's user namespace), where each call below is allowed
//! by the kernel: keyctl, ptrace of its own child, perf_event_open, unshare(CLONE_NEWUSER),
//! io_uring_setup, userfaultfd and a tmpfs mount in its own mount namespace. Under keel's default
//! profile each must fail with EPERM; with `seccomp = "unconfined"` each must fail the check
//! (it succeeds, or fails with another errno), which shows that the filter is what denies it.

use crate::checks::scratch::Scratch;
use crate::checks::syscalls::{denied, exit_code};
use crate::errno::Errno;
use crate::report::{say, verdict, Outcome, Report};
use crate::{child, parse, sys};

/// CAP_SYS_PTRACE and CAP_SYS_ADMIN, which the config must grant.
const GRANTED: [(&str, u32); 2] = [("SYS_PTRACE", 19), ("SYS_ADMIN", 21)];

/// Runs the checks and returns the exit code (0 only if every one passed).
pub fn run() -> i32 {
    say(&format!("filter-only on {} as pid {}", std::env::consts::ARCH, sys::getpid()));
    let mut report = Report::default();
    report.record("caps-granted", caps_granted());
    let scratch = Scratch::create();
    let target = scratch.c_path("mnt");
    let mount = move || {
        let r = sys::mount_tmpfs(&target);
        if r.is_ok() {
            let _ = sys::umount_detach(&target);
        }
        exit_code(r)
    };
    report.record("filter-mount", denied(child::run(mount)));
    report.record("filter-keyctl", denied(child::run(|| exit_code(sys::keyctl_session_id()))));
    report.record("filter-ptrace", denied(child::run(|| exit_code(ptrace_own_child()))));
    report.record("filter-perf-event-open", denied(child::run(|| exit_code(sys::perf_event_open_zeroed()))));
    report.record("filter-unshare-user", denied(child::run(|| exit_code(sys::unshare(libc::CLONE_NEWUSER)))));
    report.record("filter-io-uring-setup", denied(child::run(|| exit_code(sys::io_uring_setup_one()))));
    report.record("filter-userfaultfd", denied(child::run(|| exit_code(sys::userfaultfd_user_mode()))));
    drop(scratch);
    report.finish()
}

fn ptrace_own_child() -> Result<libc::c_long, Errno> {
    let pid = child::spawn_sleeper()?;
    let r = sys::ptrace_attach(pid);
    child::kill_all(&[pid]);
    r
}

/// The effective set holds the granted capabilities, so that an EPERM is not theirs.
fn caps_granted() -> Outcome {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    granted_in(&status)
}

fn granted_in(status: &str) -> Outcome {
    let raw = parse::status_field(status, "CapEff").unwrap_or("?");
    let mask = parse::hex_mask(raw).unwrap_or(0);
    let missing: Vec<&str> =
        GRANTED.iter().filter(|(_, bit)| mask & (1u64 << bit) == 0).map(|(name, _)| *name).collect();
    let detail = if missing.is_empty() { format!("CapEff={raw}") } else { format!("CapEff={raw} lacks {missing:?}") };
    verdict(missing.is_empty(), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_granted_capabilities_are_read_from_cap_eff() {
        assert!(granted_in("CapEff:\t0000000000280000\n").is_ok());
        assert!(granted_in("CapEff:\t0000000000200000\n").is_err_and(|d| d.contains("SYS_PTRACE")));
        assert!(granted_in("CapEff:\t0000000000000000\n").is_err());
        assert!(granted_in("Name:\tprobe\n").is_err());
    }
}
