//! The default seccomp profile, compiled for this host's architecture and installed for real
//! (no_new_privs, then each program with seccomp(SECCOMP_SET_MODE_FILTER)) in forked children.
//!
//! Every check runs twice, each time in a fresh child: once without the filter (the control) and
//! once with it. A denied call must fail with EPERM under the filter, and must NOT fail with
//! EPERM in the control: this test runs as root, so the control proves that the EPERM comes from
//! the filter and not from a missing capability. Arguments are chosen so that the control's call
//! is harmless (missing paths, bad descriptors, bad magic numbers, children that exit at once).
//! Then ordinary programs (a dynamic glibc shell, ls, cat, python3 with threads and a
//! subprocess) run under the filter.
//!
//! Needs root: it fails, not skips, without it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use keel_builder::seccomp::{compile, Profile};
use keel_plan::Arch;
use libc::{c_int, c_long};

fn host_arch() -> Arch {
    if cfg!(target_arch = "x86_64") {
        Arch::X86_64
    } else {
        Arch::Aarch64
    }
}

/// The compiled default profile, as the kernel wants it.
struct Filter {
    programs: Vec<Vec<libc::sock_filter>>,
}

impl Filter {
    fn default_for_host() -> Filter {
        let bytes = compile(&Profile::Default, host_arch()).expect("the default profile compiles");
        let programs = keel_plan::seccomp::decode(&bytes)
            .expect("compiled bytes decode")
            .into_iter()
            .map(|p| p.into_iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect())
            .collect();
        Filter { programs }
    }

    /// no_new_privs, then every program in order. Makes syscalls only (safe after fork).
    fn install(&self) -> Result<(), i32> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(errno());
        }
        for p in &self.programs {
            let prog = libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr().cast_mut() };
            // SAFETY: `prog` points at `p`, which outlives the call; the kernel copies the program.
            let r = unsafe {
                libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog)
            };
            if r != 0 {
                return Err(errno());
            }
        }
        Ok(())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 for success, else the errno.
fn res(r: c_long) -> i32 {
    if r < 0 {
        errno()
    } else {
        0
    }
}

/// Like [`res`] for calls that return a descriptor, which is closed.
fn fd_res(r: c_long) -> i32 {
    if r < 0 {
        return errno();
    }
    // SAFETY: closing a descriptor this child just opened.
    unsafe { libc::close(r as c_int) };
    0
}

/// Paths prepared before forking (the children allocate nothing).
struct Ctx {
    dir: tempfile::TempDir,
    node: CString,
    missing: CString,
    dev_null: CString,
    root: CString,
    empty: CString,
}

impl Ctx {
    fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let node = CString::new(dir.path().join("node").as_os_str().as_bytes()).unwrap();
        Ctx {
            dir,
            node,
            missing: CString::new("/nonexistent/keel-seccomp-test").unwrap(),
            dev_null: CString::new("/dev/null").unwrap(),
            root: CString::new("/").unwrap(),
            empty: CString::new("").unwrap(),
        }
    }
}

/// mknodat(AT_FDCWD, ctx.node, mode, dev); the node is removed again when it was made.
fn make_node(ctx: &Ctx, mode: u32, dev: u64) -> i32 {
    // SAFETY: a NUL-terminated path that lives in `ctx`.
    let r = unsafe { libc::mknodat(libc::AT_FDCWD, ctx.node.as_ptr(), mode, dev) };
    if r < 0 {
        return errno();
    }
    // SAFETY: as above.
    unsafe { libc::unlink(ctx.node.as_ptr()) };
    0
}

/// A raw clone(2) without a new stack (fork-like): the child exits at once; 0 if it ran.
fn raw_clone(flags: c_long) -> i32 {
    // SAFETY: without CLONE_VM the child gets a copy of the address space, like fork; it calls
    // only _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    if pid < 0 {
        return errno();
    }
    if pid == 0 {
        // SAFETY: leaving the cloned child without running any destructor.
        unsafe { libc::_exit(0) };
    }
    wait_ok(pid as libc::pid_t)
}

/// 0 if child `pid` exited with status 0, else 255.
fn wait_ok(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        0
    } else {
        255
    }
}

struct Check {
    name: &'static str,
    call: fn(&Ctx) -> i32,
    /// 0 (allowed) or the errno the filter must give.
    expect: i32,
}

macro_rules! check {
    ($name:expr, $expect:expr, |$ctx:ident| $body:expr) => {
        Check {
            name: $name,
            expect: $expect,
            call: {
                #[allow(unused_variables, unused_unsafe)]
                fn call($ctx: &Ctx) -> i32 {
                    // SAFETY: raw syscalls with valid C strings from `ctx`, null pointers the
                    // kernel rejects, or descriptors the child owns; nothing is dereferenced here.
                    unsafe { $body }
                }
                call
            },
        }
    };
}

fn checks() -> Vec<Check> {
    use libc::*;
    let mut v = vec![
        // ---- allowed
        check!("getpid", 0, |c| res(syscall(SYS_getpid))),
        check!("openat + write /dev/null", 0, |c| {
            let fd = openat(AT_FDCWD, c.dev_null.as_ptr(), O_WRONLY | O_CLOEXEC);
            if fd < 0 {
                return errno();
            }
            let w = write(fd, b"x".as_ptr().cast(), 1);
            close(fd);
            if w == 1 {
                0
            } else {
                errno()
            }
        }),
        check!("socket(AF_INET, SOCK_DGRAM)", 0, |c| fd_res(socket(AF_INET, SOCK_DGRAM, 0) as c_long)),
        check!("socket(AF_INET6, SOCK_STREAM)", 0, |c| fd_res(socket(AF_INET6, SOCK_STREAM, 0) as c_long)),
        check!("socket(AF_UNIX, SOCK_STREAM)", 0, |c| fd_res(socket(AF_UNIX, SOCK_STREAM, 0) as c_long)),
        check!("socket(AF_NETLINK, NETLINK_ROUTE)", 0, |c| fd_res(socket(AF_NETLINK, SOCK_RAW, 0) as c_long)),
        check!("mknodat(S_IFIFO)", 0, |c| make_node(c, S_IFIFO | 0o600, 0)),
        check!("mknodat(S_IFREG)", 0, |c| make_node(c, S_IFREG | 0o600, 0)),
        check!("mknodat(mode 0: regular)", 0, |c| make_node(c, 0o600, 0)),
        check!("mknodat(S_IFSOCK)", 0, |c| make_node(c, S_IFSOCK | 0o600, 0)),
        check!("fork() (glibc)", 0, |c| {
            let pid = fork();
            if pid == 0 {
                _exit(0);
            }
            if pid < 0 {
                return errno();
            }
            wait_ok(pid)
        }),
        check!("clone(SIGCHLD)", 0, |c| raw_clone(SIGCHLD as c_long)),
        check!("thread spawn + join (clone3 -> clone fallback)", 0, |c| {
            match std::thread::spawn(|| 7).join() {
                Ok(7) => 0,
                _ => 254,
            }
        }),
        check!("personality(0xffffffff) (query)", 0, |c| res(syscall(SYS_personality, 0xffff_ffffu32 as c_long))),
        check!("personality(PER_LINUX)", 0, |c| res(syscall(SYS_personality, 0 as c_long))),
        check!("uname", 0, |c| {
            let mut u: utsname = std::mem::zeroed();
            res(uname(&mut u) as c_long)
        }),
        // ---- denied with EPERM
        check!("mount", EPERM, |c| res(mount(
            c.empty.as_ptr(),
            c.missing.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null()
        ) as c_long)),
        check!("umount2", EPERM, |c| res(umount2(c.missing.as_ptr(), 0) as c_long)),
        check!("unshare(CLONE_NEWUSER)", EPERM, |c| res(unshare(CLONE_NEWUSER) as c_long)),
        check!("unshare(CLONE_NEWNS)", EPERM, |c| res(unshare(CLONE_NEWNS) as c_long)),
        check!("unshare(0)", EPERM, |c| res(unshare(0) as c_long)),
        check!("setns", EPERM, |c| res(setns(-1, 0) as c_long)),
        check!("clone(CLONE_NEWUSER|SIGCHLD)", EPERM, |c| raw_clone((CLONE_NEWUSER | SIGCHLD) as c_long)),
        check!("clone(CLONE_NEWNET|SIGCHLD)", EPERM, |c| raw_clone((CLONE_NEWNET | SIGCHLD) as c_long)),
        check!("clone(CLONE_NEWPID|SIGCHLD)", EPERM, |c| raw_clone((CLONE_NEWPID | SIGCHLD) as c_long)),
        check!("socket(AF_PACKET, SOCK_RAW)", EPERM, |c| fd_res(socket(AF_PACKET, SOCK_RAW, 0) as c_long)),
        check!("socket(AF_VSOCK, SOCK_STREAM)", EPERM, |c| fd_res(socket(AF_VSOCK, SOCK_STREAM, 0) as c_long)),
        check!("mknodat(S_IFBLK)", EPERM, |c| make_node(c, S_IFBLK | 0o600, makedev(7, 0))),
        check!("mknodat(S_IFCHR)", EPERM, |c| make_node(c, S_IFCHR | 0o600, makedev(1, 3))),
        check!("reboot (bad magic)", EPERM, |c| res(syscall(SYS_reboot, 0, 0, 0, 0))),
        check!("swapon", EPERM, |c| res(syscall(SYS_swapon, c.missing.as_ptr(), 0))),
        check!("swapoff", EPERM, |c| res(syscall(SYS_swapoff, c.missing.as_ptr()))),
        check!("init_module", EPERM, |c| res(syscall(SYS_init_module, 0, 0, c.empty.as_ptr()))),
        check!("finit_module", EPERM, |c| res(syscall(SYS_finit_module, -1, c.empty.as_ptr(), 0))),
        check!("delete_module", EPERM, |c| res(syscall(
            SYS_delete_module,
            c"keel_no_such_module".as_ptr(),
            O_NONBLOCK
        ))),
        check!("kexec_load", EPERM, |c| res(syscall(SYS_kexec_load, 0, 0, 0, 0xdead_0000u32 as c_long))),
        check!("kexec_file_load", EPERM, |c| res(syscall(SYS_kexec_file_load, -1, -1, 0, c.empty.as_ptr(), 0))),
        check!("bpf", EPERM, |c| res(syscall(SYS_bpf, 0, 0, 0))),
        check!("perf_event_open", EPERM, |c| res(syscall(SYS_perf_event_open, 0, 0, -1, -1, 0))),
        check!("keyctl", EPERM, |c| res(syscall(SYS_keyctl, 0, -3, 0))),
        check!("add_key", EPERM, |c| res(syscall(SYS_add_key, 0, 0, 0, 0, 0))),
        check!("request_key", EPERM, |c| res(syscall(SYS_request_key, 0, 0, 0, 0))),
        check!("ptrace(PTRACE_TRACEME)", EPERM, |c| res(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0))),
        check!("process_vm_readv", EPERM, |c| res(syscall(SYS_process_vm_readv, getppid(), 0, 0, 0, 0, 0))),
        check!("process_vm_writev", EPERM, |c| res(syscall(SYS_process_vm_writev, getppid(), 0, 0, 0, 0, 0))),
        check!("kcmp", EPERM, |c| res(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0))),
        check!("pidfd_getfd", EPERM, |c| res(syscall(SYS_pidfd_getfd, -1, 0, 0))),
        check!("userfaultfd", EPERM, |c| fd_res(syscall(SYS_userfaultfd, O_CLOEXEC))),
        check!("open_by_handle_at", EPERM, |c| res(syscall(SYS_open_by_handle_at, -1, 0, 0))),
        check!("name_to_handle_at", EPERM, |c| res(syscall(SYS_name_to_handle_at, AT_FDCWD, c.root.as_ptr(), 0, 0, 0))),
        check!("clock_settime", EPERM, |c| res(syscall(SYS_clock_settime, CLOCK_REALTIME, 0))),
        check!("clock_adjtime", EPERM, |c| res(syscall(SYS_clock_adjtime, CLOCK_REALTIME, 0))),
        check!("settimeofday(NULL, NULL)", EPERM, |c| res(syscall(SYS_settimeofday, 0, 0))),
        check!("adjtimex", EPERM, |c| res(syscall(SYS_adjtimex, 0))),
        check!("pivot_root", EPERM, |c| res(syscall(SYS_pivot_root, c.missing.as_ptr(), c.missing.as_ptr()))),
        check!("chroot", EPERM, |c| res(syscall(SYS_chroot, c.missing.as_ptr()))),
        check!("acct", EPERM, |c| res(syscall(SYS_acct, c.missing.as_ptr()))),
        check!("syslog", EPERM, |c| res(syscall(SYS_syslog, 10, 0, 0))),
        check!("quotactl", EPERM, |c| res(syscall(SYS_quotactl, 0, 0, 0, 0))),
        check!("sethostname (too long)", EPERM, |c| res(syscall(SYS_sethostname, 0, 1000))),
        check!("personality(PER_BSD)", EPERM, |c| res(syscall(SYS_personality, 6 as c_long))),
        check!("fsopen", EPERM, |c| fd_res(syscall(SYS_fsopen, c"keel-no-such-fs".as_ptr(), 0))),
        check!("fsconfig", EPERM, |c| res(syscall(SYS_fsconfig, -1, 0, 0, 0, 0))),
        check!("fsmount", EPERM, |c| res(syscall(SYS_fsmount, -1, 0, 0))),
        check!("fspick", EPERM, |c| res(syscall(SYS_fspick, -1, c.missing.as_ptr(), 0))),
        check!("open_tree", EPERM, |c| fd_res(syscall(SYS_open_tree, -1, c.missing.as_ptr(), 0))),
        check!("move_mount", EPERM, |c| res(syscall(
            SYS_move_mount,
            -1,
            c.missing.as_ptr(),
            -1,
            c.missing.as_ptr(),
            0
        ))),
        check!("mount_setattr", EPERM, |c| res(syscall(SYS_mount_setattr, -1, c.missing.as_ptr(), 0, 0, 0))),
        check!("io_uring_setup", EPERM, |c| res(syscall(SYS_io_uring_setup, 1, 0))),
        check!("get_mempolicy", EPERM, |c| res(syscall(SYS_get_mempolicy, 0, 0, 0, 0, 0))),
        // ---- ENOSYS, so that libc falls back to clone
        check!("clone3", ENOSYS, |c| res(syscall(SYS_clone3, 0, 0))),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        check!("open /dev/null (x86_64 legacy)", 0, |c| fd_res(syscall(SYS_open, c.dev_null.as_ptr(), O_RDONLY))),
        check!("mknod(S_IFIFO) (x86_64 legacy)", 0, |c| {
            let r = syscall(SYS_mknod, c.node.as_ptr(), S_IFIFO | 0o600, 0);
            if r < 0 {
                return errno();
            }
            unlink(c.node.as_ptr());
            0
        }),
        check!("mknod(S_IFCHR) (x86_64 legacy)", EPERM, |c| {
            let r = syscall(SYS_mknod, c.node.as_ptr(), S_IFCHR | 0o600, makedev(1, 3));
            if r < 0 {
                return errno();
            }
            unlink(c.node.as_ptr());
            0
        }),
        check!("iopl(0)", EPERM, |c| res(syscall(SYS_iopl, 0))),
    ]);
    v
}

/// How a child ended: its exit code, or minus the signal that killed it.
fn run(filter: Option<&Filter>, ctx: &Ctx, call: fn(&Ctx) -> i32) -> i32 {
    // SAFETY: the child makes syscalls only (plus, in one check, a thread spawn, which glibc
    // supports after fork) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match filter.map(Filter::install) {
            Some(Err(_)) => 200,
            _ => call(ctx),
        };
        // SAFETY: leaving the forked child without running the test harness's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    }
}

fn describe(code: i32) -> String {
    match code {
        0 => "ok".into(),
        200 => "filter not installed".into(),
        c if c < 0 => format!("killed by signal {}", -c),
        c => std::io::Error::from_raw_os_error(c).to_string(),
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test must run as root: its control runs prove the filter, not a missing capability");
}

#[test]
fn default_profile_allows_and_denies_on_this_host() {
    require_root();
    let filter = Filter::default_for_host();
    assert_eq!(filter.programs.len(), 2, "allowlist + ENOSYS program");
    let ctx = Ctx::new();
    let mut failures = Vec::new();
    for check in checks() {
        let control = run(None, &ctx, check.call);
        let filtered = run(Some(&filter), &ctx, check.call);
        println!("{:<48} control: {:<40} filtered: {}", check.name, describe(control), describe(filtered));
        if filtered != check.expect {
            failures.push(format!("{}: filtered {}, want {}", check.name, describe(filtered), describe(check.expect)));
        }
        if check.expect == 0 && control != 0 {
            failures.push(format!("{}: fails even without the filter: {}", check.name, describe(control)));
        }
        if check.expect != 0 && control == check.expect {
            failures.push(format!(
                "{}: gives {} even without the filter, so this host cannot show the filter's effect",
                check.name,
                describe(control)
            ));
        }
    }
    drop(ctx.dir);
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
}

/// A command whose child installs the filter between fork and exec.
fn filtered(program: &str, args: &[&str], filter: &'static Filter) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the hook runs in the forked child before exec and makes two kinds of syscall
    // (prctl, seccomp) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || filter.install().map_err(std::io::Error::from_raw_os_error));
    }
    cmd
}

fn host_filter() -> &'static Filter {
    static FILTER: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();
    FILTER.get_or_init(Filter::default_for_host)
}

/// The stdout of a command that must have exited 0 (else fail, showing its output).
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn glibc_shell_ls_and_cat_run_under_the_filter() {
    require_root();
    let script =
        "ls / > /dev/null && cat /etc/os-release && grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status";
    let out = filtered("/bin/sh", &["-c", script], host_filter()).output().unwrap();
    let stdout = succeeded(&out);
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
    assert!(stdout.starts_with(&os_release), "cat printed something else:\n{stdout}");
    let status = &stdout[os_release.len()..];
    // Seccomp 2 = SECCOMP_MODE_FILTER; two programs: the allowlist and the ENOSYS filter.
    assert_eq!(status, "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n");
}

#[test]
fn python_threads_and_subprocess_run_under_the_filter() {
    require_root();
    let python = "/usr/bin/python3";
    assert!(std::path::Path::new(python).exists(), "{python} is missing: .ci/setup installs python3");
    let script = "import threading, subprocess\n\
                  out = []\n\
                  ts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n\
                  [t.start() for t in ts]\n\
                  [t.join() for t in ts]\n\
                  print(sorted(out))\n\
                  print(subprocess.run(['/bin/true']).returncode)\n";
    let out = filtered(python, &["-c", script], host_filter()).output().unwrap();
    let stdout = succeeded(&out);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("[0, 1, 2, 3]"), "{stdout}");
    assert_eq!(lines.next(), Some("0"), "{stdout}");
}
