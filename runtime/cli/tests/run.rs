//! `keel-runtime run` on a real bundle: busybox from the OCI layout `make setup` builds
//! (.cache/oci/busybox), unpacked by umoci with its ids shifted into the container's range.
//! Creates containers, so it needs root: without it the tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_plan::seccomp::{encode, Insn};

const ID_BASE: u32 = 100_000;

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(euid, Some("0"), "these tests create containers: run them as root");
}

/// A bundle whose config runs `args`; `edit` may change the config further.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Bundle {
        require_root();
        let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/oci/busybox");
        assert!(image.join("index.json").is_file(), "{} is missing: run `make setup`", image.display());
        let tag = if cfg!(target_arch = "x86_64") { "busybox-amd64" } else { "busybox-arm64" };
        let dir = tempfile::Builder::new().prefix("keel-runtime-cli").tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let map = format!("0:{ID_BASE}:65536");
        let out = Command::new("umoci")
            .args(["unpack", "--uid-map", &map, "--gid-map", &map, "--image"])
            .arg(format!("{}:{tag}", image.display()))
            .arg(&bundle)
            .output()
            .expect("umoci (make setup installs it)");
        assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
        for d in ["proc", "sys", "dev", "tmp", "run"] {
            let p = bundle.join("rootfs").join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(ID_BASE), Some(ID_BASE)).unwrap();
        }
        for d in [dir.path(), bundle.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = bundle.join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = serde_json::json!(false);
        config["process"]["args"] = serde_json::json!(args);
        edit(&mut config);
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        Bundle { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn run(&self, extra: &[&str], id: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keel-runtime"))
            .args(["run", "--bundle"])
            .arg(self.path())
            .args(extra)
            .arg(id)
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn output_and_exit_status_come_back() {
    let b = Bundle::new(&["/bin/sh", "-c", "echo out; echo err >&2; echo $$; exit 7"], |_| {});
    let o = b.run(&[], "cli-status");
    assert_eq!(o.status.code(), Some(7), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n1\n");
    assert_eq!(text(&o.stderr), "err\n");
}

#[test]
fn a_container_killed_by_a_signal_exits_128_plus_the_signal() {
    // The container's pid 1 cannot be killed from inside its pid namespace: kill it from here.
    let b = Bundle::new(&["/bin/sh", "-c", "echo started; exec sleep 60"], |_| {});
    let mut cli = Command::new(env!("CARGO_BIN_EXE_keel-runtime"))
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("cli-signal")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(cli.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "started\n");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", cli.id())).unwrap();
    let pid = children.split_whitespace().next().expect("the container is keel-runtime's child");
    assert!(Command::new("kill").args(["-9", pid]).status().unwrap().success());
    assert_eq!(cli.wait().unwrap().code(), Some(128 + 9));
}

#[test]
fn the_config_decides_identity_and_host_name() {
    let b = Bundle::new(&["/bin/sh", "-c", "id -u; id -g; hostname"], |c| {
        c["process"]["user"] = serde_json::json!({ "uid": 1000, "gid": 1001 });
        // umoci gives the process ambient capabilities, which keel does not give a non-root user.
        c["process"]["capabilities"]["ambient"] = serde_json::json!([]);
        c["hostname"] = serde_json::json!("cli-test");
    });
    let o = b.run(&[], "cli-identity");
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1000\n1001\ncli-test\n");
}

#[test]
fn root_readonly_is_honoured() {
    let script = "touch /x 2>&1 && echo writable";
    for (readonly, expect) in [(false, "writable\n"), (true, "touch: /x: Read-only file system\n")] {
        let b = Bundle::new(&["/bin/sh", "-c", script], |c| c["root"]["readonly"] = serde_json::json!(readonly));
        let o = b.run(&[], "cli-readonly");
        assert_eq!(text(&o.stdout), expect, "readonly {readonly}; stderr: {}", text(&o.stderr));
    }
}

/// A filter that fails sethostname(2) with EPERM and allows the rest (checking the arch first).
fn sethostname_filter(dir: &Path) -> PathBuf {
    let (arch, nr) = if cfg!(target_arch = "x86_64") { (0xC000_003E, 170) } else { (0xC000_00B7, 161) };
    let program = vec![
        Insn { code: 0x20, jt: 0, jf: 0, k: 4 },           // ld arch
        Insn { code: 0x15, jt: 1, jf: 0, k: arch },        // jeq arch, +1
        Insn { code: 0x06, jt: 0, jf: 0, k: 0x8000_0000 }, // ret KILL_PROCESS
        Insn { code: 0x20, jt: 0, jf: 0, k: 0 },           // ld nr
        Insn { code: 0x15, jt: 0, jf: 1, k: nr },          // jeq sethostname
        Insn { code: 0x06, jt: 0, jf: 0, k: 0x0005_0001 }, // ret ERRNO(EPERM)
        Insn { code: 0x06, jt: 0, jf: 0, k: 0x7FFF_0000 }, // ret ALLOW
    ];
    let path = dir.join("filter");
    std::fs::write(&path, encode(&[program])).unwrap();
    path
}

#[test]
fn a_seccomp_filter_file_is_installed() {
    // Container root may set the host name of its own UTS namespace: only the filter stops it.
    let script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; hostname changed 2>/dev/null; echo $?";
    let b = Bundle::new(&["/bin/sh", "-c", script], |c| {
        c["process"]["capabilities"] = serde_json::json!({ "bounding": ["CAP_SYS_ADMIN"] });
    });
    let o = b.run(&[], "cli-unfiltered");
    assert_eq!(text(&o.stdout), "NoNewPrivs:\t1\nSeccomp:\t0\n0\n", "stderr: {}", text(&o.stderr));
    let filter = sethostname_filter(b.dir.path());
    let o = b.run(&["--seccomp", filter.to_str().unwrap()], "cli-filtered");
    assert_eq!(text(&o.stdout), "NoNewPrivs:\t1\nSeccomp:\t2\n1\n", "stderr: {}", text(&o.stderr));
}

#[test]
fn unsupported_configs_are_refused_before_anything_starts() {
    let b = Bundle::new(&["/bin/true"], |c| {
        c["linux"]["seccomp"] = serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW" });
    });
    let o = b.run(&[], "cli-refused");
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(err.contains("`linux.seccomp`") && err.contains("--seccomp FILE"), "{err}");
    let b = Bundle::new(&["/bin/true"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{ "type": "pid" }, { "type": "mount" }]);
    });
    let o = b.run(&[], "cli-refused");
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("add `user`"), "{}", text(&o.stderr));
}
