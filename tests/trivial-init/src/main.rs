//! The benchmark baseline: the least a PID 1 can do. It prints one line with its boot time
//! and powers the machine off, so `make bench` can compare keel's boot against the kernel's
//! own floor on the same kernel and machine.
#![allow(unsafe_code)]

use std::io::Write;

fn main() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into the timespec we pass, which lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let line = format!("trivial-init: up at {}.{:06}\n", ts.tv_sec, ts.tv_nsec / 1000);
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = c.write_all(line.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(line.as_bytes());
    }
    loop {
        // SAFETY: reboot(2) takes no pointers; as PID 1 with CAP_SYS_BOOT it powers off.
        unsafe { libc::reboot(libc::RB_POWER_OFF) };
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
