//! The build → boot → wait → power down → check sequence of the VM tests, written once.
//!
//! A [`Scenario`] is one config built for one arch. Its config is a template: a keel TOML file
//! (under `tests/scenarios/`, in a case directory, or anywhere) in which `{{NAME}}` stands for
//! a value filled in at build time (see [`expand`]). The scenario boots its image under TCG
//! ([`Scenario::boot`] runs it to its own power-off, [`Scenario::start`] hands back the running
//! VM), [`power_off`] presses the power button and demands a clean power-off, and [`Run`] holds
//! the console with the lookups every test needs. [`Scenario::keel_data`] copies keel-data out
//! of the disk for e2fsck and debugfs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::{Line, Vm, VmConfig, POWER_DOWN_LINE};

use crate::{build, busybox_image, debugfs, extract, kernel_toml, partitions, root, tcg_disk, text, tool, Built};

/// How long the guest may take to power off after the power button.
pub const POWER_OFF_BOUND: Duration = Duration::from_secs(120);

/// The probe image (`make build` packs it), as an absolute `image` value.
pub fn probe_image() -> String {
    assert!(
        root().join("target/probe-oci/index.json").is_file(),
        "target/probe-oci is missing: build keel-probe for both musl targets, then run \
         `tests/fixtures/make-probe-oci target target/probe-oci` (or `make build`)"
    );
    format!("oci:{}/target/probe-oci:probe", root().display())
}

/// Fill the placeholders of a config template. Built in: `{{kernel}}` (the `[kernel]` table
/// pinning both arches' packages and stubs, as configs/hello.toml does), `{{busybox}}` (the
/// example busybox image), `{{probe}}` (keel-probe's image), `{{root}}` (the workspace root) and
/// `{{arch}}`; `vars` adds the test's own. An unknown or unclosed placeholder fails the test.
pub fn expand(template: &str, arch: Arch, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find("}}").unwrap_or_else(|| panic!("unclosed `{{{{` in:\n{template}"));
        let key = &rest[at + 2..at + end];
        let value = match key {
            "kernel" => kernel_toml().trim_end().to_string(),
            "busybox" => busybox_image(),
            "probe" => probe_image(),
            "root" => root().display().to_string(),
            "arch" => arch.name().to_string(),
            _ => vars
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| panic!("unknown placeholder `{{{{{key}}}}}` in:\n{template}")),
        };
        out.push_str(&value);
        rest = &rest[at + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The `name` of a keel config (the built files are named after it).
fn config_name(config: &str) -> String {
    config
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("the config has no `name`:\n{config}"))
}

/// One config built for one arch; its output directory goes when it is dropped.
#[derive(Debug)]
pub struct Scenario {
    /// The arch it was built for.
    pub arch: Arch,
    /// What `keel build` wrote.
    pub built: Built,
    /// Scratch space that lives as long as the scenario (the expanded config, copies).
    pub dir: tempfile::TempDir,
}

impl Scenario {
    /// Build `tests/scenarios/NAME.toml` for `arch`, with `vars` for its own placeholders.
    pub fn new(name: &str, arch: Arch, vars: &[(&str, &str)]) -> Scenario {
        Scenario::from_template(&root().join("tests/scenarios").join(format!("{name}.toml")), arch, vars)
    }

    /// Build the config template at `path` for `arch`.
    pub fn from_template(path: &Path, arch: Arch, vars: &[(&str, &str)]) -> Scenario {
        let template = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let config = expand(&template, arch, vars);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join(format!("{}.toml", config_name(&config)));
        std::fs::write(&file, config).expect("write the config");
        Scenario::build(&file.to_string_lossy(), arch, dir)
    }

    /// Build a config as it stands in the repo (`configs/web.toml`), with no placeholders.
    pub fn from_repo(config: &str, arch: Arch) -> Scenario {
        Scenario::build(config, arch, tempfile::tempdir().expect("a temporary directory"))
    }

    fn build(config: &str, arch: Arch, dir: tempfile::TempDir) -> Scenario {
        let stem = Path::new(config).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let built = build(config, arch, &format!("{stem}-{arch}-{}", std::process::id()));
        Scenario { arch, built, dir }
    }

    /// The image's disk image.
    pub fn img(&self) -> &Path {
        &self.built.img
    }

    /// A QEMU config for `disk` under TCG; `in_place` boots the file itself (writes persist)
    /// instead of an overlay.
    pub fn vm_config(&self, disk: &Path, in_place: bool) -> VmConfig {
        let mut cfg = tcg_disk(self.arch, disk);
        cfg.disk_snapshot = !in_place;
        cfg
    }

    /// Start the image (on an overlay, or `in_place`).
    pub fn start(&self, in_place: bool) -> Vm {
        Vm::start(&self.vm_config(self.img(), in_place)).expect("start QEMU")
    }

    /// Boot the image on an overlay until the guest powers off by itself, within `timeout`;
    /// fails unless it powered off cleanly.
    pub fn boot(&self, timeout: Duration) -> Run {
        boot_to_exit(&self.vm_config(self.img(), false), self.arch, timeout, "boot")
    }

    /// Boot `disk` (the built image when `None`) in place, so that what the guest writes
    /// persists, until the guest powers off by itself; fails, naming `what`, unless it powered
    /// off cleanly within `timeout`.
    pub fn boot_in_place(&self, disk: Option<&Path>, timeout: Duration, what: &str) -> Run {
        boot_to_exit(&self.vm_config(disk.unwrap_or(self.img()), true), self.arch, timeout, what)
    }

    /// keel-data of `disk` (the built image when `None`), copied out to the scratch directory.
    pub fn keel_data(&self, disk: Option<&Path>) -> PathBuf {
        let disk = disk.unwrap_or(self.img());
        let parts = partitions(disk);
        let p = parts.iter().find(|p| p.name == keel_plan::DATA_LABEL).expect("a keel-data partition");
        let dest = self.dir.path().join("keel-data.ext4");
        extract(disk, p, &dest);
        dest
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.built.dir);
    }
}

/// Run `cfg` until the guest powers off by itself within `timeout`; fails, naming `what`, unless
/// it powered off cleanly.
pub fn boot_to_exit(cfg: &VmConfig, arch: Arch, timeout: Duration, what: &str) -> Run {
    let out = keel_qemu::run_to_exit(cfg, timeout).unwrap_or_else(|e| panic!("{arch} {what}: {e}"));
    assert!(
        out.clean_poweroff,
        "{arch} {what}: no clean power-off (QEMU exited with {}):\n{}",
        out.status, out.console
    );
    Run { arch, lines: out.lines, console: out.console, wall: out.wall }
}

/// Press the power button (QMP `system_powerdown`) and wait, at most [`POWER_OFF_BOUND`], for
/// the guest to power off; fails unless QEMU exited 0 after the kernel's power-down line.
pub fn power_off(mut vm: Vm, arch: Arch) -> Run {
    vm.powerdown().expect("QMP system_powerdown");
    let status = vm.wait_exit(POWER_OFF_BOUND);
    let run = Run { arch, lines: vm.lines(), console: vm.console(), wall: vm.started().elapsed() };
    let status = status.unwrap_or_else(|e| panic!("{arch}: the guest did not power off: {e}\n{}", run.console));
    assert!(status.success(), "{arch}: QEMU exited with {status}:\n{}", run.console);
    assert!(run.has(POWER_DOWN_LINE), "{arch}: no clean power-off:\n{}", run.console);
    run
}

/// Wait until every one of `patterns` is on some console line (in any order).
pub fn wait_all(vm: &mut Vm, patterns: &[&str], timeout: Duration, arch: Arch) {
    let what = format!("all of {patterns:?}");
    crate::wait_until(vm, &what, timeout, arch, |lines| {
        patterns.iter().all(|p| lines.iter().any(|l| l.text.contains(p)))
    });
}

/// The console of a finished boot.
#[derive(Debug, Clone)]
pub struct Run {
    /// The arch that booted.
    pub arch: Arch,
    /// Every console line with its arrival time.
    pub lines: Vec<Line>,
    /// The whole console.
    pub console: String,
    /// From starting QEMU to its exit.
    pub wall: Duration,
}

impl Run {
    /// Some console line contains `pattern`.
    pub fn has(&self, pattern: &str) -> bool {
        self.lines.iter().any(|l| l.text.contains(pattern))
    }

    /// Fail the test, showing the console, unless some line contains `pattern`.
    pub fn expect(&self, pattern: &str) {
        assert!(self.has(pattern), "{}: no `{pattern}` on the console:\n{}", self.arch, self.console);
    }

    /// Fail the test, showing the console, if some line contains `pattern`.
    pub fn refute(&self, pattern: &str, why: &str) {
        assert!(!self.has(pattern), "{}: {why} (`{pattern}` on the console):\n{}", self.arch, self.console);
    }

    /// Index of the first line containing `pattern` (fails the test if there is none).
    pub fn first(&self, pattern: &str) -> usize {
        crate::first_line(&self.lines, pattern, self.arch, &self.console)
    }

    /// The first line containing `pattern` (fails the test if there is none).
    pub fn line(&self, pattern: &str) -> &Line {
        &self.lines[self.first(pattern)]
    }

    /// How many lines contain `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        self.lines.iter().filter(|l| l.text.contains(pattern)).count()
    }

    /// The text after `NAME| ` of every line from container `name`.
    pub fn output(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}| ");
        self.lines.iter().filter_map(|l| l.text.split_once(&prefix).map(|(_, rest)| rest)).collect()
    }

    /// Guest times of the timeline events `EVENT NAME` (see [`crate::timeline`]).
    pub fn timeline(&self, event: &str, name: &str) -> Vec<f64> {
        crate::timeline(&self.lines, event, name)
    }
}

/// `e2fsck -fn` on `fs` must report a clean filesystem (exit 0); its summary line.
pub fn fsck_clean(fs: &Path, arch: Arch) -> String {
    let o = tool("e2fsck", &["-fn", &fs.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(0), "{arch}: e2fsck -fn on {}:\n{}", fs.display(), text(&o));
    String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().trim().to_string()
}

/// The contents of `path` on the ext4 image `fs` (debugfs `cat`), and debugfs's stderr.
pub fn cat(fs: &Path, path: &str) -> (String, String) {
    debugfs(fs, &format!("cat {path}"))
}

/// Generate one `#[test]` per arch for each `fn NAME(arch: Arch)`: `NAME::x86_64` and
/// `NAME::aarch64`, filterable as `cargo test -- NAME::x86_64`.
#[macro_export]
macro_rules! both_arches {
    ($($f:ident),* $(,)?) => {$(
        mod $f {
            #[test]
            fn x86_64() {
                super::$f(keel_plan::Arch::X86_64);
            }
            #[test]
            fn aarch64() {
                super::$f(keel_plan::Arch::Aarch64);
            }
        }
    )*};
}
