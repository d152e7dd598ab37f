//! Shared by the host runtime tests: a busybox tree (Debian's busybox-static, which `make setup`
//! downloads into `.cache/debs`) on a `nosuid,nodev` tmpfs like keel's images partition, owned by
//! the container's id range like the builder stores it; a runner with a timeout; and a parent
//! cgroup on the host's cgroup2.
//!
//! They create namespaces and mounts, so they need root. Without root they fail and say so: they
//! never pass without running.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use keel_plan::Container;
use keel_runtime::{spawn, wait, ExitStatus, Host, Running, RuntimeError};

pub const ROOTFS: &str = "busybox";
/// Host id of container root in these tests (a multiple of 65536, like the builder's).
pub const ID_BASE: u32 = 3 * 65_536;
const APPLETS: &[&str] = &[
    "sh", "cat", "grep", "hostname", "id", "pwd", "ls", "sleep", "echo", "true", "touch", "mkdir", "rm", "stat", "wc",
    "head",
];
const TIMEOUT: Duration = Duration::from_secs(60);

pub fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(
        euid,
        Some("0"),
        "these tests create real containers (user, mount, pid, UTS, IPC and network namespaces, cgroups) \
         and need root: run them as root"
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

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// An images directory on its own `nosuid,nodev` tmpfs holding one tree, `busybox`, with the
/// runtime's mount points, owned by [`ID_BASE`]; and a scratch directory next to it.
pub struct Images {
    dir: tempfile::TempDir,
}

impl Images {
    pub fn new() -> Images {
        require_root();
        let dir = tempfile::Builder::new().prefix("keel-runtime-test").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        run_tool(
            Command::new("mount").args(["-t", "tmpfs", "-o", "nosuid,nodev,mode=755", "keel-test"]).arg(dir.path()),
        );
        let images = Images { dir };
        let root = images.root();
        run_tool(Command::new("dpkg-deb").arg("-x").arg(busybox_deb()).arg(&root));
        for d in ["proc", "dev", "sys", "tmp", "run"] {
            fs::create_dir_all(root.join(d)).expect("mount point");
        }
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).expect("applet symlink");
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        run_tool(Command::new("chown").arg("-hR").arg(format!("{ID_BASE}:{ID_BASE}")).arg(&root));
        fs::create_dir(images.scratch()).expect("scratch dir");
        images
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The tree on the host.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(ROOTFS)
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A container of the busybox tree with keel's defaults: read-only root, tmpfs /tmp and /run,
/// container root, no capabilities, no seccomp, no limits.
pub fn container(args: &[&str]) -> Container {
    Container {
        name: "test".into(),
        rootfs: ROOTFS.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        hostname: "keel-test-ct".into(),
        uid: 0,
        gid: 0,
        id_base: ID_BASE,
        limits: keel_plan::Limits::default(),
        capabilities: vec![],
        seccomp: None,
        read_only: true,
        tmpfs: vec!["/tmp".into(), "/run".into()],
        nofile: keel_plan::Rlimit { soft: 1024, hard: 4096 },
        restart: keel_plan::Restart::No,
        restart_delay: keel_plan::RestartDelay::default(),
        depends_on: vec![],
        health: None,
        volumes: vec![],
        net: None,
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Assert it exited 0, showing its output if not.
    pub fn ok(self) -> Outcome {
        assert_eq!(self.status, ExitStatus::Exited(0), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// The value of `key=` in a stdout of `key=value` lines.
    pub fn get(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in stdout: {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Run `f` on a thread; fail the test if it takes longer than [`TIMEOUT`] (a hang).
pub fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT).unwrap_or_else(|e| panic!("no result within {TIMEOUT:?} (hung or panicked): {e}"))
}

/// Read both pipes of a started container to the end and reap it.
pub fn collect(running: Running) -> Result<Outcome, RuntimeError> {
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
}

/// Start `c` on `images` with `cgroups`, read both pipes to the end, reap it.
pub fn run_on(images: &Images, cgroups: Option<&Path>, c: &Container) -> Result<Outcome, RuntimeError> {
    let host = Host { images: images.path(), cgroups, scratch: &images.scratch(), volumes: None };
    let running = spawn(c, &host)?;
    collect(running)
}

/// Start `c` on a fresh tree without a cgroup, read both pipes to the end, reap it.
pub fn run(c: Container) -> Result<Outcome, RuntimeError> {
    within_timeout(move || {
        let images = Images::new();
        run_on(&images, None, &c)
    })
}

/// A shell script run as the container's command.
pub fn sh(script: &str) -> Container {
    container(&["sh", "-c", script])
}

/// Where the host's cgroup2 is mounted (first cgroup2 in the mount table).
pub fn cgroup2() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("read mounts");
    let found = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    });
    found.expect("no cgroup2 mounted on this host: the cgroup tests need one (keel guests always have it)")
}

/// A fresh parent cgroup for one test, removed (with what is left under it) at the end.
pub struct Parent(pub PathBuf);

impl Parent {
    pub fn new() -> Parent {
        static N: AtomicU32 = AtomicU32::new(0);
        let p =
            cgroup2().join(format!("keel-runtime-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        Parent(p)
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        if let Ok(children) = fs::read_dir(&self.0) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = fs::remove_dir(c.path());
            }
        }
        let _ = fs::remove_dir(&self.0);
    }
}
