//! The crate's only unsafe code: tying QEMU's life to ours.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the kernel SIGKILL the child when the thread that spawned it exits, so QEMU never
/// outlives a test process that is killed (cargo's timeout, Ctrl-C) before `Drop` could run.
///
/// Linux ties `PR_SET_PDEATHSIG` to the spawning *thread*: start each VM on a thread that lives at
/// least as long as the VM (as a test's own thread, or `main`, does).
pub(crate) fn kill_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. It allocates nothing, takes no
    // locks, and calls only prctl(2) and getppid(2), both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would kill us later.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
