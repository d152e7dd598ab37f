//! Host runtime tests: real containers on the build machine, from a busybox tree made in a tempdir
//! (Debian's busybox-static, which `make setup` downloads into `.cache/debs`).
//!
//! They create namespaces and mounts, so they need root. Without root they fail and say so: they
//! never pass without running.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use keel_plan::Container;
use keel_runtime::{spawn, wait, ExitStatus, RuntimeError};

const ROOTFS: &str = "busybox";
const APPLETS: &[&str] = &["sh", "cat", "grep", "hostname", "id", "pwd", "ls", "sleep", "echo", "true"];
const TIMEOUT: Duration = Duration::from_secs(60);

fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(
        euid,
        Some("0"),
        "these tests create real containers (mount, pid, UTS and IPC namespaces) and need root: run them as root"
    );
}

fn busybox_deb() -> PathBuf {
    let debs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/debs");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no busybox-static package for {other}"),
    };
    let found = fs::read_dir(&debs).ok().and_then(|d| {
        d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("busybox-static_") && name.ends_with(&format!("_{arch}.deb"))
        })
    });
    found.unwrap_or_else(|| panic!("no busybox-static_*_{arch}.deb in {}: run `make setup`", debs.display()))
}

/// An images root holding one tree, `busybox`, with the runtime's mount points.
fn images_root() -> tempfile::TempDir {
    let images = tempfile::Builder::new().prefix("keel-runtime-test").tempdir().expect("tempdir");
    let root = images.path().join(ROOTFS);
    let out = Command::new("dpkg-deb").arg("-x").arg(busybox_deb()).arg(&root).output().expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb -x failed: {}", String::from_utf8_lossy(&out.stderr));
    for d in ["proc", "dev", "sys", "tmp", "run"] {
        fs::create_dir_all(root.join(d)).expect("mount point");
    }
    for applet in APPLETS {
        symlink("busybox", root.join("bin").join(applet)).expect("applet symlink");
    }
    for d in [images.path(), &root] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    images
}

fn container(args: &[&str]) -> Container {
    Container {
        name: "test".into(),
        rootfs: ROOTFS.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        hostname: "keel-test-ct".into(),
        uid: 0,
        gid: 0,
        id_base: 0,
        limits: keel_plan::Limits::default(),
        capabilities: vec![],
        seccomp: None,
        read_only: false,
        tmpfs: vec![],
        nofile: keel_plan::Rlimit { soft: 1024, hard: 4096 },
    }
}

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run `f` on a thread; fail the test if it takes longer than [`TIMEOUT`] (a hang).
fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT).unwrap_or_else(|e| panic!("no result within {TIMEOUT:?} (hung or panicked): {e}"))
}

/// Start `c`, read both pipes to the end, reap it.
fn run(c: Container) -> Result<Outcome, RuntimeError> {
    require_root();
    within_timeout(move || {
        let images = images_root();
        let running = spawn(&c, images.path())?;
        let mut stderr = fs::File::from(running.stderr);
        let reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        fs::File::from(running.stdout).read_to_string(&mut stdout).expect("read stdout");
        let stderr = reader.join().expect("stderr reader");
        let status = wait(running.pid)?;
        Ok(Outcome { status, stdout, stderr })
    })
}

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
    assert_eq!(
        points,
        [
            "/",
            "/dev",
            "/dev/full",
            "/dev/null",
            "/dev/random",
            "/dev/tty",
            "/dev/urandom",
            "/dev/zero",
            "/proc",
            "/run",
            "/tmp"
        ],
        "{}",
        o.stdout
    );
    let ls = run(container(&["ls", "/dev"])).expect("container starts");
    assert_eq!(
        ls.stdout.split_whitespace().collect::<Vec<_>>(),
        ["fd", "full", "null", "random", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    );
}

#[test]
fn the_container_can_be_killed() {
    require_root();
    let status = within_timeout(|| {
        let images = images_root();
        let running = spawn(&container(&["sleep", "100"]), images.path()).expect("container starts");
        // SIGTERM from outside is dropped: pid 1 of a namespace has no handler for it.
        running.signal(libc::SIGKILL).expect("kill");
        wait(running.pid).expect("wait")
    });
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn a_tree_without_its_mount_points_is_refused() {
    let images = images_root();
    fs::remove_dir(images.path().join(ROOTFS).join("run")).expect("rmdir");
    match spawn(&container(&["/bin/true"]), images.path()) {
        Err(RuntimeError::MountPoint { path }) => assert!(path.ends_with("run")),
        other => panic!("not refused: {other:?}"),
    }
}
