//! Host runtime tests: real containers on the build machine (see `common` for the tree and the
//! root requirement). The basics: namespaces, exec, identity, stdio, exit status, start failures.
//! Isolation is checked from inside in `isolation.rs`, cgroups in `cgroups.rs`.

mod common;

use std::fs;
use std::path::Path;

use common::{container, run, within_timeout, Images};
use keel_runtime::{kernfs, spawn, wait, ExitStatus, Host, RuntimeError};

#[test]
fn busybox_runs_as_pid_1_of_its_own_namespaces() {
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let o =
        run(container(&["/bin/busybox", "sh", "-c", "echo hi from $$; cat /proc/self/status | grep NSpid; hostname"]))
            .expect("container starts");
    assert_eq!(o.status, ExitStatus::Exited(0), "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hi from 1"), "the shell is not pid 1: {}", o.stdout);
    let nspid = lines.iter().find(|l| l.starts_with("NSpid:")).expect("an NSpid line");
    // /proc is the container's own: it shows one level of pids, numbered from 1 (cat is 2 or 3).
    let pids: Vec<u32> = nspid.split_whitespace().skip(1).filter_map(|p| p.parse().ok()).collect();
    assert!(matches!(pids.as_slice(), [2 | 3]), "cat's pids are not the container's: {nspid}");
    assert_eq!(lines.last(), Some(&"keel-test-ct"), "host name not set: {}", o.stdout);
    assert_eq!(o.stderr, "");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(), host_name, "host's name changed");
}

#[test]
fn a_missing_executable_is_a_start_failure_naming_the_step() {
    match run(container(&["/bin/nope"])) {
        Err(RuntimeError::Start { step, source }) => {
            assert_eq!(step, "exec /bin/nope");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{source}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(o) => panic!("started: {:?} {}", o.status, o.stdout),
    }
    match run(container(&["nope"])) {
        Err(RuntimeError::Start { step, .. }) => assert_eq!(step, "exec nope (PATH=/bin)"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(o) => panic!("started: {:?} {}", o.status, o.stdout),
    }
}

#[test]
fn a_missing_working_directory_is_a_start_failure() {
    let mut c = container(&["/bin/true"]);
    c.cwd = "/no/such/dir".into();
    match run(c) {
        Err(RuntimeError::Start { step, source }) => {
            assert_eq!(step, "chdir to the working directory /no/such/dir");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(o) => panic!("started: {:?}", o.status),
    }
}

#[test]
fn path_search_identity_cwd_env_and_stdin() {
    let mut c =
        container(&["sh", "-c", "id -u; id -g; id -G; pwd; echo $GREETING; cat; echo x > /dev/null && echo ok"]);
    c.env = vec!["PATH=/nonexistent:/bin".into(), "GREETING=hello".into()];
    c.cwd = "/tmp".into();
    c.uid = 1000;
    c.gid = 1001;
    let o = run(c).expect("container starts");
    assert_eq!(o.status, ExitStatus::Exited(0), "stderr: {}", o.stderr);
    // `cat` returned at once: stdin is /dev/null.
    assert_eq!(o.stdout, "1000\n1001\n1001\n/tmp\nhello\nok\n");
}

#[test]
fn exit_status_and_stderr_come_back() {
    let o = run(container(&["sh", "-c", "echo oops >&2; exit 3"])).expect("container starts");
    assert_eq!(o.status, ExitStatus::Exited(3));
    assert_eq!(o.stderr, "oops\n");
    assert_eq!(o.stdout, "");
}

#[test]
fn only_the_containers_mounts_are_visible() {
    let o = run(container(&["cat", "/proc/self/mounts"])).expect("container starts");
    assert_eq!(o.status, ExitStatus::Exited(0), "stderr: {}", o.stderr);
    let mut points: Vec<&str> = o.stdout.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    points.sort_unstable();
    // The masks exist only where the (shared) kernel has the path.
    let masks = kernfs::MASKED_FILES.iter().chain(&kernfs::MASKED_DIRS).chain(&kernfs::READ_ONLY);
    let mut expected: Vec<String> =
        masks.filter(|p| Path::new("/").join(p).exists()).map(|p| format!("/{p}")).collect();
    for p in [
        "/",
        "/dev",
        "/dev/full",
        "/dev/null",
        "/dev/pts",
        "/dev/random",
        "/dev/shm",
        "/dev/tty",
        "/dev/urandom",
        "/dev/zero",
        "/proc",
        "/run",
        "/sys",
        "/tmp",
    ] {
        expected.push(p.to_string());
    }
    expected.sort_unstable();
    assert_eq!(points, expected, "{}", o.stdout);
    let ls = run(container(&["ls", "/dev"])).expect("container starts");
    assert_eq!(
        ls.stdout.split_whitespace().collect::<Vec<_>>(),
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    );
}

#[test]
fn the_container_can_be_killed() {
    let status = within_timeout(|| {
        let images = Images::new();
        let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
        let running = spawn(&container(&["sleep", "100"]), &host).expect("container starts");
        // SIGTERM from outside is dropped: pid 1 of a namespace has no handler for it.
        running.signal(libc::SIGKILL).expect("kill");
        wait(running.pid).expect("wait")
    });
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn bad_trees_and_settings_are_refused_before_any_clone() {
    let images = Images::new();
    let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
    fs::remove_dir(images.root().join("sys")).expect("rmdir");
    match spawn(&container(&["/bin/true"]), &host) {
        Err(RuntimeError::MountPoint { path }) => assert!(path.ends_with("sys")),
        other => panic!("not refused: {other:?}"),
    }
    fs::create_dir(images.root().join("sys")).expect("mkdir");

    let mut c = container(&["/bin/true"]);
    c.tmpfs.push("/var/cache".into());
    match spawn(&c, &host) {
        Err(RuntimeError::MountPoint { path }) => assert_eq!(path, images.root().join("var")),
        other => panic!("missing tmpfs mount point not refused: {other:?}"),
    }

    let mut c = container(&["/bin/true"]);
    c.id_base = 0;
    assert!(matches!(spawn(&c, &host), Err(RuntimeError::IdBase(0))), "container root as host root");

    let mut c = container(&["/bin/true"]);
    c.name = "../x".into();
    assert!(matches!(spawn(&c, &host), Err(RuntimeError::InvalidName(_))));

    let mut c = container(&["/bin/true"]);
    c.capabilities = vec![99];
    assert!(matches!(spawn(&c, &host), Err(RuntimeError::Capability(99))));

    let mut c = container(&["/bin/true"]);
    let bad = images.path().join("bad.bpf");
    fs::write(&bad, b"not a filter").expect("write");
    c.seccomp = Some(bad.display().to_string());
    assert!(matches!(spawn(&c, &host), Err(RuntimeError::SeccompFormat { .. })));
    c.seccomp = Some(images.path().join("missing.bpf").display().to_string());
    assert!(matches!(spawn(&c, &host), Err(RuntimeError::SeccompRead { .. })));
}
