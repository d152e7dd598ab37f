//! `keel-bench runtime`: container start latency on the build host. One command creates a
//! container, execs `/bin/true` in it, waits for the exit and cleans up, for keel-runtime, crun
//! and runc on the SAME bundle (busybox, unpacked by umoci with its ids shifted to 100000; pid,
//! network, IPC, UTS, mount and user namespaces; no cgroup namespace, no seccomp, no resources),
//! beside the kernel's floor for that work (`unshare` with the same namespaces and a fresh /proc)
//! and `/bin/true` alone. Rounds run every command once, in a rotating order, so machine noise
//! hits them alike; medians and 90th percentiles are reported.
//!
//! crun 1.8 refuses a host that mounts cgroups in hybrid mode, so it runs from a worker process
//! (this binary, `runtime-worker`) in a private mount namespace with a plain cgroup2 at
//! `/sys/fs/cgroup`, with `--cgroup-manager=disabled`. The worker times crun exactly as the
//! parent times the others (spawn to exit, from a Rust process). runc 1.1 runs as is (it makes
//! cgroup v1 groups). keel-runtime finds no cgroup v2 with controllers on a hybrid host, so it
//! makes no cgroup either.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use keel_tests::root;

/// Host id of container root in the bundle.
const ID_BASE: u32 = 100_000;
/// Rounds discarded before measuring.
const WARMUP: usize = 3;
/// What the worker prints before its timings: it is in place and crun runs.
const READY: &str = "ready";

/// One measured command.
struct Subject {
    name: &'static str,
    how: How,
    times: Vec<f64>,
}

enum How {
    /// Run this argv here.
    Local(Vec<String>),
    /// Ask the crun worker.
    Worker,
}

/// `keel-bench runtime`.
pub fn bench() -> Result<(), String> {
    require_root()?;
    let rounds: usize =
        std::env::var("KEEL_BENCH_RUNTIME_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100).max(5);
    let keel_runtime = root().join("target/release/keel-runtime");
    if !keel_runtime.is_file() {
        return Err(format!("{} is missing: run `cargo build --release -p keel-runtime-cli`", keel_runtime.display()));
    }
    let work = tempfile::Builder::new().prefix("keel-bench-runtime").tempdir().map_err(|e| e.to_string())?;
    // The compared bundle has a read-only root, keel's default; the writable one is measured for
    // keel alone (an overlay per container), as a separate row.
    let writable = make_bundle(work.path())?;
    let bundle = read_only_bundle(work.path(), &writable)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Leftovers of an interrupted run would make `run` refuse the id.
    let _ = Command::new("runc").args(["delete", "-f", "keel-bench-runc"]).stderr(Stdio::null()).status();
    let mut worker = Worker::start(&bundle)?;
    let mut subjects = vec![
        Subject {
            name: "keel-runtime",
            how: How::Local(vec![s(&keel_runtime), "run".into(), "--bundle".into(), s(&bundle), "keel-bench".into()]),
            times: Vec::new(),
        },
        Subject { name: "crun", how: How::Worker, times: Vec::new() },
        Subject {
            name: "runc",
            how: How::Local(argv(&["runc", "run", "--bundle", &s(&bundle), "keel-bench-runc"])),
            times: Vec::new(),
        },
        Subject {
            name: "floor: unshare",
            how: How::Local(argv(&[
                "unshare",
                "-m",
                "-p",
                "-n",
                "-u",
                "-i",
                "-U",
                "--map-root-user",
                "-f",
                "--mount-proc",
                "/bin/true",
            ])),
            times: Vec::new(),
        },
        Subject { name: "/bin/true", how: How::Local(argv(&["/bin/true"])), times: Vec::new() },
        Subject {
            name: "keel-runtime, writable root",
            how: How::Local(vec![s(&keel_runtime), "run".into(), "--bundle".into(), s(&writable), "keel-bench".into()]),
            times: Vec::new(),
        },
    ];
    eprintln!("runtime bench: {WARMUP} warm-up rounds, then {rounds} rounds of {} commands", subjects.len());
    for round in 0..WARMUP + rounds {
        let n = subjects.len();
        for k in 0..n {
            let subject = &mut subjects[(round + k) % n];
            let t = match &subject.how {
                How::Local(argv) => time(argv)?,
                How::Worker => worker.run()?,
            };
            if round >= WARMUP {
                subject.times.push(t);
            }
        }
    }
    worker.stop();
    report(&subjects, rounds, &bundle);
    Ok(())
}

pub(crate) fn require_root() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if euid == Some("0") {
        Ok(())
    } else {
        Err("the runtime benchmark creates containers: run it as root".into())
    }
}

/// Run `argv` with no stdio; its wall time in milliseconds. A failure is an error.
pub(crate) fn time(argv: &[String]) -> Result<f64, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let t = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run {program}: {e}"))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!("{} failed ({}): {}", argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(ms)
}

fn run_tool(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// umoci unpacks the busybox image with ids shifted to [`ID_BASE`]; config.json is set to run
/// `/bin/true` in pid, network, IPC, UTS, mount and user namespaces, with no cgroup namespace, no
/// seccomp and no resources. The mount points keel-runtime needs are made (crun and runc would
/// make them anyway); the bundle directory is opened to container root.
pub(crate) fn make_bundle(work: &Path) -> Result<PathBuf, String> {
    let image = root().join(".cache/oci/busybox");
    if !image.join("index.json").is_file() {
        return Err(format!("{} is missing: run `make setup`", image.display()));
    }
    let tag = match std::env::consts::ARCH {
        "x86_64" => "busybox-amd64",
        _ => "busybox-arm64",
    };
    let bundle = work.join("bundle");
    let map = format!("0:{ID_BASE}:65536");
    run_tool(
        Command::new("umoci")
            .args(["unpack", "--uid-map", &map, "--gid-map", &map, "--image"])
            .arg(format!("{}:{tag}", image.display()))
            .arg(&bundle),
    )?;
    let config_path = bundle.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| e.to_string())?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mapping = serde_json::json!([{ "containerID": 0, "hostID": ID_BASE, "size": 65536 }]);
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    let linux = config["linux"].as_object_mut().ok_or("config.json has no `linux`")?;
    linux.insert(
        "namespaces".into(),
        serde_json::json!([
            { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
            { "type": "uts" }, { "type": "mount" }, { "type": "user" }
        ]),
    );
    linux.insert("uidMappings".into(), mapping.clone());
    linux.insert("gidMappings".into(), mapping);
    linux.remove("resources");
    linux.remove("seccomp");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let rootfs = bundle.join("rootfs");
    for d in ["proc", "sys", "dev", "tmp", "run"] {
        let p = rootfs.join(d);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        std::os::unix::fs::chown(&p, Some(ID_BASE), Some(ID_BASE)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    for dir in [work, bundle.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    Ok(bundle)
}

/// The same tree and config with `root.readonly` (keel's default in images): the compared bundle.
pub(crate) fn read_only_bundle(work: &Path, bundle: &Path) -> Result<PathBuf, String> {
    let dir = work.join("bundle-ro");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(bundle.join("config.json")).map_err(|e| e.to_string())?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    config["root"] = serde_json::json!({ "path": bundle.join("rootfs"), "readonly": true });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The crun worker: this binary in a private mount namespace with a plain cgroup2.
struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Worker {
    fn start(bundle: &Path) -> Result<Worker, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let script = "mount --make-rprivate / && umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup \
                      && exec \"$0\" runtime-worker \"$1\"";
        let mut child = Command::new("unshare")
            .args(["-m", "--", "sh", "-c", script])
            .arg(me)
            .arg(bundle)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the crun worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("worker stdout")?);
        let mut w = Worker { child, stdin, stdout };
        let first = w.line()?;
        if first != READY {
            return Err(format!("the crun worker did not start: {first}"));
        }
        Ok(w)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("the crun worker exited".into());
        }
        Ok(line.trim_end().to_string())
    }

    /// One timed crun run, in milliseconds.
    fn run(&mut self) -> Result<f64, String> {
        self.stdin.write_all(b"go\n").and_then(|()| self.stdin.flush()).map_err(|e| e.to_string())?;
        let reply = self.line()?;
        reply.parse().map_err(|_| format!("crun worker: {reply}"))
    }

    fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// `keel-bench runtime-worker BUNDLE`: for each line on stdin, one `crun run` of the bundle;
/// prints its wall time in milliseconds, or the error.
pub fn worker(bundle: &str) -> Result<(), String> {
    let argv: Vec<String> = ["crun", "--cgroup-manager=disabled", "run", "--bundle", bundle, "keel-bench-crun"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let _ = Command::new("crun").args(["delete", "-f", "keel-bench-crun"]).stderr(Stdio::null()).status();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        line.map_err(|e| e.to_string())?;
        let reply = match time(&argv) {
            Ok(ms) => ms.to_string(),
            Err(e) => e.replace('\n', " "),
        };
        writeln!(out, "{reply}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn version(cmd: &str) -> String {
    Command::new(cmd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn report(subjects: &[Subject], rounds: usize, bundle: &Path) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!();
    println!(
        "container start latency on this host: create, exec /bin/true, exit, clean up ({rounds} interleaved rounds)"
    );
    println!(
        "  bundle: {} (busybox, read-only root; pid, net, ipc, uts, mount, user namespaces; ids 0 -> {ID_BASE})",
        bundle.display()
    );
    println!("  kernel {}; {}; {}", kernel.trim(), version("crun"), version("runc"));
    println!("  {:<30} {:>10} {:>10}", "command", "median ms", "p90 ms");
    let mut medians = std::collections::BTreeMap::new();
    for s in subjects {
        let mut v = s.times.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let (median, p90) = (percentile(&v, 0.5), percentile(&v, 0.9));
        medians.insert(s.name, median);
        println!("  {:<30} {:>10.2} {:>10.2}", s.name, median, p90);
    }
    let get = |k: &str| medians.get(k).copied().unwrap_or(f64::NAN);
    let keel = get("keel-runtime");
    println!();
    println!(
        "  keel/crun {:.2}x   keel/runc {:.2}x   keel/floor {:.2}x   (goal: keel/crun < 1, keel/floor <= 1.3)",
        keel / get("crun"),
        keel / get("runc"),
        keel / get("floor: unshare")
    );
    println!(
        "  keel with a writable root (overlay on tmpfs): {:.2} ms, {:.2}x the floor",
        get("keel-runtime, writable root"),
        get("keel-runtime, writable root") / get("floor: unshare")
    );
}
