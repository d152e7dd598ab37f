//! keel-tests: shared helpers for the build-and-boot tests and the benchmark.
//!
//! Tests drive the real `keel` binary (built by `make build`) and check what it writes with
//! the standard tools. Nothing here skips: a missing tool or binary is a test failure that
//! says what to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use keel_plan::Arch;

pub mod scenario;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `keel` binary: `$KEEL_BIN`, else the one cargo built beside this test binary (same
/// profile: `make test` uses `ci`), else `target/release/keel` (from `make build`).
pub fn keel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_BIN") {
        return PathBuf::from(p);
    }
    // A test binary lives in target/PROFILE/deps/.
    let beside = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.join("keel")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return p;
    }
    let p = root().join("target/release/keel");
    assert!(p.is_file(), "{} is missing: run `make build` first (or `make test`, which does)", p.display());
    p
}

/// Run `keel` with `args` from the workspace root.
pub fn keel(args: &[&str]) -> Output {
    Command::new(keel_bin()).args(args).current_dir(root()).output().expect("run keel")
}

/// Run a tool, failing the test with its output if it cannot be started.
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}` ({e}): run `make setup` to install the test tools"))
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The artifacts of one build of a config.
#[derive(Debug, Clone)]
pub struct Built {
    /// Output directory.
    pub dir: PathBuf,
    /// `NAME-ARCH.img`.
    pub img: PathBuf,
    /// `NAME-ARCH.efi`.
    pub efi: PathBuf,
    /// `NAME-ARCH.initrd`.
    pub initrd: PathBuf,
}

/// Build `config` (relative to the root) for `arch` into `out` (relative to target/keel-tests).
pub fn build(config: &str, arch: Arch, out: &str) -> Built {
    let dir = root().join("target/keel-tests").join(out);
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_string_lossy().into_owned();
    let o = keel(&["build", config, "--arch", arch.name(), "-o", &dir_s]);
    let log = text(&o);
    assert!(o.status.success(), "keel build {config} --arch {arch} failed:\n{log}");
    let name = Path::new(config).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = format!("{name}-{arch}");
    Built {
        img: dir.join(format!("{stem}.img")),
        efi: dir.join(format!("{stem}.efi")),
        initrd: dir.join(format!("{stem}.initrd")),
        dir,
    }
}

/// One shared build of configs/hello.toml per arch (tests in one binary reuse it).
pub fn hello(arch: Arch) -> Built {
    static CACHE: OnceLock<Mutex<Vec<(Arch, Built)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, b)) = guard.iter().find(|(a, _)| *a == arch) {
        return b.clone();
    }
    let b = build("configs/hello.toml", arch, &format!("hello-{arch}-{}", std::process::id()));
    guard.push((arch, b.clone()));
    b
}

/// A GPT partition of a disk image, as `sgdisk -i` reports it.
#[derive(Debug, Clone)]
pub struct Partition {
    /// 1-based number.
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// First sector (512 bytes).
    pub first: u64,
    /// Last sector.
    pub last: u64,
}

/// The partitions of `img`, read with sgdisk (not keel's own reader).
pub fn partitions(img: &Path) -> Vec<Partition> {
    let img_s = img.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for n in 1..=8u32 {
        let o = tool("sgdisk", &["-i", &n.to_string(), &img_s]);
        let t = text(&o);
        let field = |k: &str| t.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        let (Some(first), Some(last)) = (field("First sector:"), field("Last sector:")) else { break };
        let num = |s: String| s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let name = field("Partition name:").unwrap_or_default().trim_matches('\'').to_string();
        out.push(Partition { number: n, name, first: num(first), last: num(last) });
    }
    out
}

/// Copy partition `p` of `img` into its own (sparse) file, for fsck tools that take no offset.
pub fn extract(img: &Path, p: &Partition, dest: &Path) {
    let o = tool(
        "dd",
        &[
            &format!("if={}", img.display()),
            &format!("of={}", dest.display()),
            "bs=512",
            &format!("skip={}", p.first),
            &format!("count={}", p.last + 1 - p.first),
            "conv=sparse",
            "status=none",
        ],
    );
    assert!(o.status.success(), "dd failed: {}", text(&o));
}

/// sha256 of a file.
pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The `[kernel]` section of configs/hello.toml (both arches' packages and stubs), with
/// absolute paths, for configs written outside `configs/`.
pub fn kernel_toml() -> String {
    let hello = std::fs::read_to_string(root().join("configs/hello.toml")).expect("read configs/hello.toml");
    let cache = format!("\"{}/.cache/", root().display());
    let mut out = String::from("[kernel]\n");
    for line in hello.lines().filter(|l| l.starts_with("package.") || l.starts_with("stub.")) {
        out.push_str(&line.replace("\"../.cache/", &cache));
        out.push('\n');
    }
    assert!(out.lines().count() == 5, "configs/hello.toml no longer pins two packages and two stubs:\n{out}");
    out
}

/// Copy the `keel-images` partition of `img` into `dir` and return the copy's path.
pub fn images_partition(img: &Path, dir: &Path) -> PathBuf {
    let parts = partitions(img);
    let p = parts
        .iter()
        .find(|p| p.name == keel_plan::IMAGES_LABEL)
        .unwrap_or_else(|| panic!("{}: no keel-images partition in {parts:?}", img.display()));
    let dest = dir.join("keel-images.ext4");
    extract(img, p, &dest);
    dest
}

/// Run one debugfs request on an ext4 image, read-only: its stdout and stderr.
pub fn debugfs(fs: &Path, request: &str) -> (String, String) {
    let o = tool("debugfs", &["-R", request, &fs.to_string_lossy()]);
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A QEMU config that boots `img` through UEFI under TCG (never KVM in tests).
pub fn tcg_disk(arch: Arch, img: &Path) -> keel_qemu::VmConfig {
    let qarch: keel_qemu::Arch = arch.name().parse().expect("keel-qemu knows every keel arch");
    let mut cfg = keel_qemu::VmConfig::new(qarch, keel_qemu::Boot::Disk(img.to_path_buf()));
    cfg.accel = keel_qemu::Accel::Tcg;
    cfg
}

/// The example busybox image (made by `make setup`), as an absolute `image` value.
pub fn busybox_image() -> String {
    format!("oci:{}/.cache/oci/busybox:hello", root().display())
}

/// Index of the first console line containing `pattern`; fails the test, showing `console`, if
/// there is none.
pub fn first_line(lines: &[keel_qemu::Line], pattern: &str, arch: Arch, console: &str) -> usize {
    lines
        .iter()
        .position(|l| l.text.contains(pattern))
        .unwrap_or_else(|| panic!("{arch}: no `{pattern}` on the console:\n{console}"))
}

/// Guest times (CLOCK_BOOTTIME) of the timeline events `EVENT NAME` (with any detail after), in
/// console order; an empty `name` matches events that carry none (`uplink-lease`).
pub fn timeline(lines: &[keel_qemu::Line], event: &str, name: &str) -> Vec<f64> {
    let want = if name.is_empty() { event.to_string() } else { format!("{event} {name}") };
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.split_once(keel_plan::TIMELINE_PREFIX)?.1.trim();
            let (at, ev) = rest.split_once(' ')?;
            let ev = ev.trim();
            (ev == want || ev.starts_with(&format!("{want} "))).then(|| at.parse().ok()).flatten()
        })
        .collect()
}

/// Wait until `done` holds for the console lines so far; kill QEMU and fail the test, naming
/// `what`, if it exits first or `timeout` passes.
pub fn wait_until(
    vm: &mut keel_qemu::Vm,
    what: &str,
    timeout: std::time::Duration,
    arch: Arch,
    done: impl Fn(&[keel_qemu::Line]) -> bool,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done(&vm.lines()) {
            return;
        }
        let exited = vm.try_status().expect("check on QEMU");
        if exited.is_some() || std::time::Instant::now() >= deadline {
            vm.kill();
            panic!("{arch}: no {what} (QEMU status {exited:?}):\n{}", vm.console());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1 (for QEMU's host forwards).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("its address").port()
}

/// `curl -sS -m 10 http://127.0.0.1:PORT{path}`, the real client, as a user would run it.
pub fn curl(port: u16, path: &str) -> Output {
    Command::new("curl")
        .args(["-sS", "-m", "10", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .expect("run curl")
}

/// Milliseconds since the epoch of a log record's `2025-01-31T12:00:00.123Z` time.
pub fn record_ms(line: &str) -> Option<i64> {
    let t = line.split(' ').next()?;
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_ms_reads_a_log_records_time() {
        assert_eq!(super::record_ms("2025-01-31T12:00:00.123Z out beat"), Some(1_738_324_800_123));
        assert_eq!(super::record_ms("2024-02-29T23:59:59.999Z keel x"), Some(1_709_251_199_999));
        assert_eq!(super::record_ms("beat"), None);
    }
}
