//! The boot plan: the fully resolved description of what keel-init must do.
//!
//! The builder writes it (as JSON) to `/etc/keel/plan` in the initramfs; keel-init reads it.
//! This crate is the single schema both sides share. It holds data only: no syscalls, no I/O
//! beyond (de)serialising, so the builder stays portable and the plan is easy to test.

use serde::{Deserialize, Serialize};

/// Where the plan lives inside the initramfs.
pub const PLAN_PATH: &str = "/etc/keel/plan";
/// Version of the plan schema. keel-init refuses a plan of another version.
pub const PLAN_VERSION: u32 = 1;
/// GPT partition name of the read-only partition holding the flattened image trees.
pub const IMAGES_LABEL: &str = "keel-images";
/// GPT partition name of the read-write ext4 data partition.
pub const DATA_LABEL: &str = "keel-data";
/// Where keel-init mounts the images partition (read-only).
pub const IMAGES_MOUNT: &str = "/run/keel/images";
/// Where keel-init mounts the data partition (read-write).
pub const DATA_MOUNT: &str = "/run/keel/data";
/// Where the volumes are: `VOLUMES_DIR/<name>`, a directory on keel-data ([`DATA_MOUNT`]).
pub const VOLUMES_DIR: &str = "/run/keel/data/volumes";
/// Prefix of every boot-timeline line on the console: `keel-timeline: <seconds> <event> [detail]`.
pub const TIMELINE_PREFIX: &str = "keel-timeline:";
/// How many ids each container's user namespace maps: container ids `0..ID_RANGE` are host ids
/// `id_base..id_base + ID_RANGE`.
pub const ID_RANGE: u32 = 65_536;
/// keel's cgroup v2 subtree; each container gets `CGROUP_ROOT/<name>`.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/keel";
/// Directory in the initramfs holding compiled seccomp filters ([`seccomp`] format).
pub const SECCOMP_DIR: &str = "/etc/keel/seccomp";
/// Directory in the initramfs holding the API's TLS material ([`API_FILES`]); keel-init reads it
/// into memory before it leaves the initramfs, so it never reaches the root tmpfs.
pub const API_TLS_DIR: &str = "/etc/keel/api";
/// The files of `[api] tls`: the CA that client certificates must chain to, the server's
/// certificate chain and its private key (PEM).
pub const API_FILES: [&str; 3] = ["ca.pem", "server.pem", "server.key"];

/// keel-init's last console line before it asks the kernel to power off, printed once every
/// other process is dead: `keel run` takes a power-off as clean only after this line, which no
/// container can print (their lines all begin `NAME| `).
pub const FINAL_POWER_OFF: &str = "keel: powering off now";
/// The same, before a reboot.
pub const FINAL_REBOOT: &str = "keel: rebooting now";

/// Is `s` a valid container name: lower-case letters, digits, `-`, `_`, starting with a letter
/// or digit, at most 63 bytes (no `.`: the name is also a cgroup directory next to interface
/// files such as `cgroup.procs`, and a log file name). `keel check` enforces it on the config;
/// the API and its client refuse any other name before acting on it.
pub fn valid_container_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Why `cwd` cannot be a container's working directory, if it cannot: it must be absolute,
/// without `.` or `..` components, and not /proc or under it (CVE-2024-21626 pattern: a working
/// directory of `/proc/self/fd/N` resolves through a descriptor the runtime still holds, to a
/// directory outside the container's root). `keel check` applies it to the config's and the
/// image's working directory; keel-runtime again before it starts a process.
pub fn workdir_problem(cwd: &str) -> Option<&'static str> {
    if !cwd.starts_with('/') {
        return Some("a working directory must be an absolute path");
    }
    let mut parts = cwd.split('/').filter(|p| !p.is_empty());
    if cwd.split('/').any(|p| p == "." || p == "..") {
        return Some("a working directory may not have `.` or `..` components");
    }
    if parts.next() == Some("proc") {
        return Some("a working directory may not be /proc or under it");
    }
    None
}

pub mod caps;
pub mod crc32;
pub mod net;
pub mod seccomp;
pub mod text;
pub mod time;

/// Target architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit x86 (amd64).
    X86_64,
    /// 64-bit ARM (arm64).
    Aarch64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// keel's name for the arch, as in configs and artifact names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for the arch (package architecture).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The OCI `architecture` value.
    pub fn oci(self) -> &'static str {
        self.debian()
    }

    /// The Rust musl target triple keel-init is built for.
    pub fn musl_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The removable-media boot path on the ESP (UEFI spec 3.5.1.1).
    pub fn efi_boot_file(self) -> &'static str {
        match self {
            Arch::X86_64 => "BOOTX64.EFI",
            Arch::Aarch64 => "BOOTAA64.EFI",
        }
    }

    /// The serial console device the kernel writes to.
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// Parse keel's arch name (also accepts Debian's).
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the host does when every container has exited for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnExit {
    /// Sync, unmount, power off.
    Poweroff,
    /// Sync, unmount, reboot.
    Reboot,
    /// Keep running (idle) until a power-off request.
    Wait,
}

/// What the host does on a fatal boot error (after printing the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// Whether keel-init starts a container again after its first process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never: an exited container stays down.
    No,
    /// After a non-zero exit status or death by a signal.
    #[default]
    OnFailure,
    /// After any exit.
    Always,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Schema version, [`PLAN_VERSION`].
    pub version: u32,
    /// Image name from the config.
    pub name: String,
    /// Architecture the image was built for.
    pub arch: Arch,
    /// Host name of the machine.
    pub hostname: String,
    /// What to do once every container has exited for good.
    pub on_exit: OnExit,
    /// What to do on a fatal boot error.
    pub on_failure: OnFailure,
    /// Kernel modules to load, in this order (dependencies first).
    pub modules: Vec<Module>,
    /// How long to wait for the partitions to appear, in milliseconds.
    pub disk_timeout_ms: u64,
    /// On a graceful stop, how long containers get between SIGTERM and SIGKILL, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Persistent volumes on keel-data, created at boot when missing.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Container log files on keel-data.
    #[serde(default)]
    pub logs: Logs,
    /// The uplink and the firewall.
    #[serde(default)]
    pub net: net::Net,
    /// Containers, in start order.
    pub containers: Vec<Container>,
    /// The mTLS HTTPS API, when `[api]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
}

/// `[api]`: keel-init serves its HTTPS API (TLS 1.3, client certificates required) here; the
/// TLS files are at [`API_TLS_DIR`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// IPv4 address and TCP port to listen on, e.g. `0.0.0.0:9443`.
    pub listen: std::net::SocketAddrV4,
}

/// A kernel module to load with `finit_module`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Module name (as in `lsmod`), e.g. `virtio_blk`.
    pub name: String,
    /// Absolute path of the `.ko` inside the initramfs.
    pub path: String,
}

/// One container, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Unique name; prefixes its console lines.
    pub name: String,
    /// Directory of its root tree, relative to [`IMAGES_MOUNT`].
    pub rootfs: String,
    /// argv; `args[0]` is resolved against `PATH` from `env` if it has no `/`.
    pub args: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Host name inside the container's UTS namespace.
    pub hostname: String,
    /// uid the process runs as (inside the container).
    pub uid: u32,
    /// gid the process runs as (inside the container).
    pub gid: u32,
    /// Host uid and gid that container id 0 maps to; [`ID_RANGE`] ids are mapped. The builder
    /// stores the container's tree with every owner shifted by this much.
    pub id_base: u32,
    /// cgroup v2 limits.
    pub limits: Limits,
    /// Capabilities the process keeps (numbers, see [`caps`]); empty means none.
    pub capabilities: Vec<u32>,
    /// Absolute path (in the initramfs) of the compiled seccomp filters to install, in order;
    /// `None` means unconfined.
    pub seccomp: Option<String>,
    /// Mount the root filesystem read-only (else: an overlay with a tmpfs upper layer).
    pub read_only: bool,
    /// Absolute paths inside the container that get a fresh tmpfs.
    pub tmpfs: Vec<String>,
    /// RLIMIT_NOFILE.
    pub nofile: Rlimit,
    /// When to start it again after it exits (with a growing delay).
    pub restart: Restart,
    /// The backoff of restarts: first delay, doubled up to the max.
    #[serde(default)]
    pub restart_delay: RestartDelay,
    /// Containers that must be running (healthy, when they have a health check) before this
    /// one starts; stopped after it.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Its health check, run inside its namespaces.
    #[serde(default)]
    pub health: Option<Health>,
    /// Volumes mounted into it.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Its veth and addresses; `None`: loopback only.
    #[serde(default)]
    pub net: Option<net::ContainerNet>,
}

/// Backoff delays of a container's restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartDelay {
    /// The delay before the first restart of a streak.
    pub first_ms: u64,
    /// The delay never grows beyond this.
    pub max_ms: u64,
}

impl Default for RestartDelay {
    fn default() -> RestartDelay {
        RestartDelay { first_ms: 1_000, max_ms: 30_000 }
    }
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub check: HealthCheck,
    /// Between the end of one check and the start of the next.
    pub interval_ms: u64,
    /// A check running longer is killed and counts as failed.
    pub timeout_ms: u64,
    /// This many consecutive failures make the container unhealthy.
    pub retries: u32,
    /// Failures within this long after a start do not count.
    pub start_period_ms: u64,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HealthCheck {
    /// Run this command inside the container (as its user, with its env); exit 0 is healthy.
    Cmd(Vec<String>),
    /// Connect to this TCP port on 127.0.0.1 in the container's network namespace.
    Tcp(u16),
}

/// A persistent volume: a directory `volumes/NAME` on keel-data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    /// Owner of its top directory as the containers see it (container ids, unshifted).
    pub uid: u32,
    pub gid: u32,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name.
    pub volume: String,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// Container log files: `logs/NAME.log` on keel-data, rotated to `NAME.log.1` … when they reach
/// `max_bytes`, keeping `files` files in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub max_bytes: u64,
    pub files: u32,
}

impl Default for Logs {
    fn default() -> Logs {
        Logs { max_bytes: 1 << 20, files: 4 }
    }
}

/// A container's cgroup v2 limits. `None` leaves the controller's default (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// memory.max in bytes (memory.swap.max is always 0).
    pub memory_max: Option<u64>,
    /// cpu.max.
    pub cpu_max: Option<CpuMax>,
    /// pids.max.
    pub pids_max: Option<u64>,
}

/// cpu.max: at most `quota_us` of CPU time every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuMax {
    /// CPU time allowed per period, in microseconds.
    pub quota_us: u64,
    /// Period, in microseconds.
    pub period_us: u64,
}

/// A resource limit pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

impl Plan {
    /// Serialise to the bytes stored at [`PLAN_PATH`]. Deterministic for a given plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parse the bytes stored at [`PLAN_PATH`], refusing other schema versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_slice(bytes).map_err(PlanError::Parse)?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::Version(plan.version));
        }
        Ok(plan)
    }
}

/// A plan that cannot be read.
#[derive(Debug)]
pub enum PlanError {
    /// Not valid plan JSON.
    Parse(serde_json::Error),
    /// Written by a builder with another schema version.
    Version(u32),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Parse(e) => write!(f, "plan is not valid: {e}"),
            PlanError::Version(v) => {
                write!(f, "plan version {v} is not supported (expected {PLAN_VERSION})")
            }
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories_outside_the_root_are_refused() {
        for ok in ["/", "/srv/app", "/processes", "/srv/proc", "//srv"] {
            assert_eq!(workdir_problem(ok), None, "{ok}");
        }
        for bad in
            ["srv", "", "/proc", "/proc/", "//proc/self/fd/7", "/proc/self/cwd", "/srv/../proc/1/root", "/./proc"]
        {
            assert!(workdir_problem(bad).is_some(), "{bad}");
        }
    }

    fn sample() -> Plan {
        Plan {
            version: PLAN_VERSION,
            name: "hello".into(),
            arch: Arch::Aarch64,
            hostname: "hello".into(),
            on_exit: OnExit::Poweroff,
            on_failure: OnFailure::Poweroff,
            modules: vec![Module { name: "virtio_blk".into(), path: "/lib/modules/virtio_blk.ko".into() }],
            disk_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            volumes: vec![Volume { name: "db".into(), uid: 999, gid: 999 }],
            logs: Logs::default(),
            api: None,
            containers: vec![Container {
                name: "hello".into(),
                rootfs: "abc".into(),
                args: vec!["/bin/sh".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                hostname: "hello".into(),
                uid: 0,
                gid: 0,
                id_base: 65_536,
                limits: Limits { memory_max: Some(64 << 20), cpu_max: None, pids_max: Some(128) },
                capabilities: vec![caps::by_name("NET_BIND_SERVICE").unwrap()],
                seccomp: Some("/etc/keel/seccomp/default".into()),
                read_only: true,
                tmpfs: vec!["/tmp".into()],
                nofile: Rlimit { soft: 1024, hard: 524_288 },
                restart: Restart::OnFailure,
                restart_delay: RestartDelay::default(),
                depends_on: vec!["db".into()],
                health: Some(Health {
                    check: HealthCheck::Cmd(vec!["/bin/true".into()]),
                    interval_ms: 5_000,
                    timeout_ms: 1_000,
                    retries: 3,
                    start_period_ms: 0,
                }),
                volumes: vec![VolumeMount { volume: "db".into(), target: "/data".into(), read_only: false }],
                net: None,
            }],
            net: net::Net::default(),
        }
    }

    #[test]
    fn round_trips() {
        let p = sample();
        assert_eq!(Plan::from_bytes(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn restart_is_kebab_case() {
        let mut p = sample();
        p.containers[0].restart = Restart::No;
        let text = String::from_utf8(p.to_bytes()).unwrap();
        assert!(text.contains("\"restart\": \"no\""), "{text}");
        let text = text.replace("\"restart\": \"no\"", "\"restart\": \"on-failure\"");
        assert_eq!(Plan::from_bytes(text.as_bytes()).unwrap().containers[0].restart, Restart::OnFailure);
    }

    #[test]
    fn refuses_other_versions() {
        let mut p = sample();
        p.version = 99;
        assert!(matches!(Plan::from_bytes(&p.to_bytes()), Err(PlanError::Version(99))));
    }

    #[test]
    fn arch_names() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()), Some(a));
            assert_eq!(Arch::parse(a.debian()), Some(a));
        }
        assert_eq!(Arch::parse("riscv64"), None);
    }
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn container_names() {
        use super::valid_container_name as ok;
        assert!(ok("web") && ok("a") && ok("9-x_y") && ok(&"a".repeat(63)));
        for bad in ["", "Web", "-a", "_a", "a.b", "a/b", "a b", "a\"b", "a?x=1", "..", &"a".repeat(64)] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
