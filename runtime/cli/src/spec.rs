//! The subset of the OCI runtime spec (`config.json`) keel-runtime runs, turned into a
//! [`keel_plan::Container`].
//!
//! keel's runtime always does the same isolation: its own user, pid, mount, network, IPC, UTS and
//! cgroup namespaces, no_new_privs, a fixed `/dev`, `/proc` with masked paths, `/sys` read-only.
//! A config is accepted only if keel can run it as written. Every field is modelled
//! (`deny_unknown_fields`): a field keel does not know or cannot honour (hooks, seccomp profiles,
//! device nodes, bind mounts, sysctls, ...) is an error, never silently dropped. What is accepted
//! and how it maps:
//!
//! - `process.args`, `env`, `cwd`, `user.uid`/`gid` as they are; `terminal` must be false.
//! - `process.capabilities.bounding`: the capabilities container root keeps. At exec the kernel
//!   gives root its bounding set whatever the other sets say (with any runtime), so they are only
//!   checked to name capabilities; a non-root user gets no capabilities from keel, so its
//!   `ambient` set must be empty.
//! - `process.rlimits`: only `RLIMIT_NOFILE` (default 1024 soft / 524288 hard, keel's default).
//! - `process.noNewPrivileges`: absent or true (keel always sets it).
//! - `root.path` (the tree), `root.readonly` (false: a throwaway overlay on a tmpfs).
//! - `hostname` (default: the container id).
//! - `linux.namespaces`: must list `user`, `pid` and `mount`; `network`, `ipc`, `uts` and `cgroup`
//!   may be listed or not: keel always creates them. A namespace `path` (joining one) is refused.
//! - `linux.uidMappings` / `gidMappings`: one mapping each, container id 0, size 65536, the same
//!   host id for both: that host id is container root ([`keel_plan::Container::id_base`]).
//! - `linux.resources`: `memory.limit`, `pids.limit`, `cpu.quota` + `cpu.period` become cgroup v2
//!   limits; `devices` may only deny (keel gives containers no device access beyond its fixed
//!   `/dev` nodes).
//! - `mounts`: keel makes its own `/proc`, `/dev`, `/dev/pts`, `/dev/shm`, `/sys` and (with a
//!   cgroup) `/sys/fs/cgroup` with its own options, so entries there are accepted as they are;
//!   `/dev/mqueue` is accepted and not mounted (mq_open works without it); `tmpfs` anywhere else
//!   is a tmpfs mount; anything else is refused.
//! - `linux.maskedPaths` / `readonlyPaths`: accepted when keel masks (or makes read-only) each
//!   path itself.
//! - `annotations`, `linux.cgroupsPath` are ignored (the cgroup is named after the id).

use std::collections::BTreeSet;

use keel_plan::{caps, Container, CpuMax, Limits, Rlimit, ID_RANGE};
use serde::Deserialize;
use serde_json::Value;

/// RLIMIT_NOFILE when the config has none (keel's and containerd's default).
pub const DEFAULT_NOFILE: Rlimit = Rlimit { soft: 1024, hard: 524_288 };

/// Destinations of the mounts keel makes itself.
const PROVIDED_MOUNTS: [&str; 6] = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/sys/fs/cgroup"];

/// A config keel-runtime cannot run as written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not valid JSON, or a field keel-runtime does not know.
    #[error("config.json: {0}")]
    Parse(#[from] serde_json::Error),
    /// A field whose value keel cannot honour.
    #[error("config.json: `{field}`: {message}")]
    Unsupported {
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what keel does instead.
        message: String,
    },
}

fn unsupported(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Unsupported { field: field.to_string(), message: message.into() }
}

/// The parts of `config.json` keel-runtime reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Spec version (not checked).
    #[serde(rename = "ociVersion")]
    _oci_version: String,
    /// The container's process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Host name inside the container.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Mounts (see the module docs).
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Ignored.
    #[serde(default, rename = "annotations")]
    _annotations: Option<Value>,
    /// Linux-specific settings.
    #[serde(default)]
    pub linux: Option<Linux>,
}

/// `process`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Process {
    /// Must be false.
    #[serde(default)]
    pub terminal: bool,
    /// Identity.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// Resource limits (RLIMIT_NOFILE only).
    #[serde(default)]
    pub rlimits: Vec<RlimitSpec>,
    /// Must be absent or true.
    #[serde(default)]
    pub no_new_privileges: Option<bool>,
}

/// `process.user`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct User {
    /// uid inside the container.
    pub uid: u32,
    /// gid inside the container.
    pub gid: u32,
    /// Must be empty (keel clears supplementary groups).
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// The set container root keeps.
    #[serde(default)]
    pub bounding: Vec<String>,
    /// Absent or equal to `bounding`.
    pub effective: Option<Vec<String>>,
    /// Absent or equal to `bounding`.
    pub inheritable: Option<Vec<String>>,
    /// Absent or equal to `bounding`.
    pub permitted: Option<Vec<String>>,
    /// Absent or empty.
    pub ambient: Option<Vec<String>>,
}

/// One entry of `process.rlimits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitSpec {
    /// `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// The tree, relative to the bundle or absolute.
    pub path: String,
    /// Mount it read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Where, inside the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Source (keel's mounts have their own).
    #[serde(default, rename = "source")]
    _source: Option<String>,
    /// Options (keel uses its own for the mounts it makes).
    #[serde(default, rename = "options")]
    _options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// User id mapping (exactly one).
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    /// Group id mapping (exactly one).
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
    /// cgroup limits.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Paths hidden inside the container.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Paths made read-only inside the container.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// Ignored: the cgroup is named after the container id.
    #[serde(default, rename = "cgroupsPath")]
    _cgroups_path: Option<String>,
    /// Refused: keel's filters are compiled by the builder (`--seccomp FILE`).
    #[serde(default)]
    pub seccomp: Option<Value>,
    /// Refused when not empty: no device nodes beyond keel's fixed `/dev`.
    #[serde(default)]
    pub devices: Vec<Value>,
}

/// One entry of `linux.namespaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// `pid`, `network`, `ipc`, `uts`, `mount`, `user` or `cgroup`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Refused: keel never joins an existing namespace.
    #[serde(default)]
    pub path: Option<String>,
}

/// One entry of `linux.uidMappings` / `gidMappings`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdMapping {
    /// First id inside.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// First id outside.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// How many.
    pub size: u32,
}

/// `linux.resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Device cgroup rules: only denials.
    #[serde(default)]
    pub devices: Vec<DeviceRule>,
    /// Memory.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// pids.
    #[serde(default)]
    pub pids: Option<Pids>,
    /// CPU.
    #[serde(default)]
    pub cpu: Option<Cpu>,
}

/// One `linux.resources.devices` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRule {
    /// Must be false.
    pub allow: bool,
    /// Access (`rwm`); a denial of any access is accepted.
    #[serde(default, rename = "access")]
    _access: Option<String>,
    /// Device type.
    #[serde(default, rename = "type")]
    _kind: Option<String>,
    /// Major number.
    #[serde(default, rename = "major")]
    _major: Option<i64>,
    /// Minor number.
    #[serde(default, rename = "minor")]
    _minor: Option<i64>,
}

/// `linux.resources.memory`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// memory.max in bytes.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `linux.resources.pids`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pids {
    /// pids.max.
    pub limit: i64,
}

/// `linux.resources.cpu`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Microseconds per period.
    #[serde(default)]
    pub quota: Option<i64>,
    /// Period in microseconds.
    #[serde(default)]
    pub period: Option<u64>,
}

/// Where the container's tree is: the directory holding it and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLocation {
    /// Directory holding the tree (relative paths are relative to the bundle).
    pub parent: std::path::PathBuf,
    /// The tree's directory name.
    pub name: String,
}

impl Spec {
    /// Parse `config.json`.
    pub fn parse(bytes: &[u8]) -> Result<Spec, SpecError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Where the tree is, given the bundle directory.
    pub fn root_location(&self, bundle: &std::path::Path) -> Result<RootLocation, SpecError> {
        let path = bundle.join(&self.root.path);
        let name = path.file_name().and_then(|n| n.to_str()).map(str::to_string);
        match (path.parent(), name) {
            (Some(parent), Some(name)) if name != ".." => Ok(RootLocation { parent: parent.to_path_buf(), name }),
            _ => Err(unsupported("root.path", "must name a directory")),
        }
    }

    /// The container `id` runs, with its tree `rootfs` (a name under the images directory),
    /// the seccomp filter file `seccomp`, and whether it gets a cgroup (`cgroup`).
    pub fn container(
        &self,
        id: &str,
        rootfs: &str,
        seccomp: Option<String>,
        cgroup: bool,
    ) -> Result<Container, SpecError> {
        let p = &self.process;
        if p.terminal {
            return Err(unsupported("process.terminal", "keel-runtime has no terminal support; set it to false"));
        }
        if p.no_new_privileges == Some(false) {
            return Err(unsupported("process.noNewPrivileges", "keel always sets no_new_privs; set it to true"));
        }
        if !p.user.additional_gids.is_empty() {
            return Err(unsupported("process.user.additionalGids", "keel clears supplementary groups"));
        }
        if p.args.is_empty() {
            return Err(unsupported("process.args", "must not be empty"));
        }
        let linux = self.linux.as_ref().ok_or_else(|| unsupported("linux", "missing: keel needs its namespaces"))?;
        check_linux(linux)?;
        let limits = limits(linux.resources.as_ref())?;
        if limits != Limits::default() && !cgroup {
            return Err(unsupported(
                "linux.resources",
                "limits need a cgroup v2 with the cpu, memory and pids controllers at /sys/fs/cgroup, which this \
                 host does not have",
            ));
        }
        let tmpfs = mounts(&self.mounts)?;
        Ok(Container {
            name: id.to_string(),
            rootfs: rootfs.to_string(),
            args: p.args.clone(),
            env: p.env.clone(),
            cwd: p.cwd.clone(),
            hostname: self.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| id.to_string()),
            uid: p.user.uid,
            gid: p.user.gid,
            id_base: id_base(linux)?,
            limits,
            capabilities: capabilities(p.capabilities.as_ref(), p.user.uid)?,
            seccomp,
            read_only: self.root.readonly,
            tmpfs,
            nofile: nofile(&p.rlimits)?,
            // The OCI caller (containerd, podman) owns restarts.
            restart: keel_plan::Restart::No,
            restart_delay: keel_plan::RestartDelay::default(),
            depends_on: vec![],
            health: None,
            volumes: vec![],
            net: None,
        })
    }
}

fn check_linux(linux: &Linux) -> Result<(), SpecError> {
    if linux.seccomp.is_some() {
        return Err(unsupported(
            "linux.seccomp",
            "OCI seccomp profiles are not supported; pass a filter compiled by keel with --seccomp FILE",
        ));
    }
    if !linux.devices.is_empty() {
        return Err(unsupported("linux.devices", "keel gives containers only its fixed /dev nodes"));
    }
    let mut seen = BTreeSet::new();
    for (i, ns) in linux.namespaces.iter().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        if ns.path.is_some() {
            return Err(unsupported(&format!("{field}.path"), "keel never joins an existing namespace"));
        }
        if !["pid", "network", "ipc", "uts", "mount", "user", "cgroup"].contains(&ns.kind.as_str()) {
            return Err(unsupported(&format!("{field}.type"), format!("`{}` namespaces are not supported", ns.kind)));
        }
        seen.insert(ns.kind.as_str());
    }
    for required in ["user", "pid", "mount"] {
        if !seen.contains(required) {
            return Err(unsupported(
                "linux.namespaces",
                format!(
                    "keel always runs containers in their own user, pid and mount namespaces (and network, ipc, uts, \
                     cgroup): add `{required}`"
                ),
            ));
        }
    }
    let provided = |list: &[&str], p: &str| {
        let rel = p.trim_start_matches('/');
        list.contains(&rel)
    };
    let masked: Vec<&str> =
        keel_runtime::kernfs::MASKED_FILES.iter().chain(&keel_runtime::kernfs::MASKED_DIRS).copied().collect();
    for p in &linux.masked_paths {
        if !provided(&masked, p) {
            return Err(unsupported("linux.maskedPaths", format!("keel does not mask {p} (it masks {masked:?})")));
        }
    }
    for p in &linux.readonly_paths {
        // A masked path is hidden, which is more than read-only.
        if !provided(&keel_runtime::kernfs::READ_ONLY, p) && !provided(&masked, p) {
            return Err(unsupported("linux.readonlyPaths", format!("keel does not make {p} read-only")));
        }
    }
    Ok(())
}

fn id_base(linux: &Linux) -> Result<u32, SpecError> {
    let one = |list: &[IdMapping], field: &str| match list {
        [m] if m.container_id == 0 && m.size == ID_RANGE && m.host_id > 0 => Ok(m.host_id),
        _ => Err(unsupported(
            field,
            format!("keel maps exactly one range: containerID 0, size {ID_RANGE}, at a host id above 0"),
        )),
    };
    let uid = one(&linux.uid_mappings, "linux.uidMappings")?;
    let gid = one(&linux.gid_mappings, "linux.gidMappings")?;
    if uid != gid {
        return Err(unsupported("linux.gidMappings", "keel maps uids and gids to the same host ids"));
    }
    Ok(uid)
}

fn limits(resources: Option<&Resources>) -> Result<Limits, SpecError> {
    let Some(r) = resources else { return Ok(Limits::default()) };
    if r.devices.iter().any(|d| d.allow) {
        return Err(unsupported(
            "linux.resources.devices",
            "keel grants no device access beyond its fixed /dev nodes; only denying rules are accepted",
        ));
    }
    let positive = |v: i64, field: &str| {
        u64::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| unsupported(field, "must be a positive number"))
    };
    let memory_max = r.memory.as_ref().and_then(|m| m.limit).map(|v| positive(v, "linux.resources.memory.limit"));
    let pids_max = r.pids.as_ref().map(|p| positive(p.limit, "linux.resources.pids.limit"));
    let cpu_max = match r.cpu.as_ref().map(|c| (c.quota, c.period)) {
        None | Some((None, None)) => None,
        Some((Some(q), period)) if q > 0 => Some(CpuMax { quota_us: q as u64, period_us: period.unwrap_or(100_000) }),
        Some((Some(_), _)) => None,
        Some((None, Some(_))) => {
            return Err(unsupported("linux.resources.cpu.period", "a period needs a quota"));
        }
    };
    Ok(Limits { memory_max: memory_max.transpose()?, cpu_max, pids_max: pids_max.transpose()? })
}

fn capabilities(caps: Option<&Capabilities>, uid: u32) -> Result<Vec<u32>, SpecError> {
    let Some(c) = caps else { return Ok(Vec::new()) };
    let numbers = |names: &[String], field: &str| -> Result<BTreeSet<u32>, SpecError> {
        names
            .iter()
            .map(|n| caps::by_name(n).ok_or_else(|| unsupported(field, format!("`{n}` is not a capability"))))
            .collect()
    };
    let bounding = numbers(&c.bounding, "process.capabilities.bounding")?;
    // At exec the kernel gives root its bounding set (whatever these say, with any runtime), and a
    // non-root user the ambient set: only a non-root user's ambient set makes a difference.
    for (set, field) in [
        (&c.effective, "process.capabilities.effective"),
        (&c.inheritable, "process.capabilities.inheritable"),
        (&c.permitted, "process.capabilities.permitted"),
        (&c.ambient, "process.capabilities.ambient"),
    ] {
        numbers(set.as_deref().unwrap_or_default(), field)?;
    }
    if uid != 0 && c.ambient.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(unsupported(
            "process.capabilities.ambient",
            "keel gives a non-root user no capabilities (it clears the ambient set)",
        ));
    }
    Ok(bounding.into_iter().collect())
}

fn nofile(rlimits: &[RlimitSpec]) -> Result<Rlimit, SpecError> {
    let mut nofile = DEFAULT_NOFILE;
    for r in rlimits {
        if r.kind != "RLIMIT_NOFILE" {
            return Err(unsupported("process.rlimits", format!("only RLIMIT_NOFILE is supported, not {}", r.kind)));
        }
        if r.soft > r.hard {
            return Err(unsupported("process.rlimits", "RLIMIT_NOFILE soft limit above the hard limit"));
        }
        nofile = Rlimit { soft: r.soft, hard: r.hard };
    }
    Ok(nofile)
}

/// The tmpfs mount points among `mounts`; refuses what keel cannot mount.
fn mounts(mounts: &[Mount]) -> Result<Vec<String>, SpecError> {
    let mut tmpfs = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let dest = m.destination.trim_end_matches('/');
        if PROVIDED_MOUNTS.contains(&dest) || dest == "/dev/mqueue" {
            continue;
        }
        match m.kind.as_deref() {
            Some("tmpfs") => tmpfs.push(dest.to_string()),
            other => {
                return Err(unsupported(
                    &format!("mounts[{i}]"),
                    format!(
                        "{} mount at {} is not supported (keel mounts /proc, /dev, /sys itself; other mounts can \
                         only be tmpfs)",
                        other.unwrap_or("a bind"),
                        m.destination
                    ),
                ))
            }
        }
    }
    Ok(tmpfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// umoci's default config (busybox image), with a user namespace and one id range.
    fn umoci_like() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.0",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": ["/bin/sh", "-c", "echo hello"],
                "env": ["PATH=/bin", "HOME=/root"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "ambient": ["CAP_KILL"]
                },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024 }],
                "noNewPrivileges": true
            },
            "root": { "path": "rootfs" },
            "hostname": "umoci-default",
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"] },
                { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue" },
                { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup" },
                { "destination": "/var/cache/", "type": "tmpfs", "source": "tmpfs" }
            ],
            "annotations": { "org.opencontainers.image.os": "linux" },
            "linux": {
                "resources": { "devices": [{ "allow": false, "access": "rwm" }], "memory": { "limit": 67108864 } },
                "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "mount" }, { "type": "user" }],
                "uidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
                "gidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
                "maskedPaths": ["/proc/kcore", "/sys/firmware"],
                "readonlyPaths": ["/proc/sys", "/proc/asound"]
            }
        })
    }

    fn convert(v: &serde_json::Value, cgroup: bool) -> Result<Container, SpecError> {
        Spec::parse(v.to_string().as_bytes())?.container("web", "rootfs", None, cgroup)
    }

    fn error(v: &serde_json::Value) -> String {
        match convert(v, true) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted: {c:?}"),
        }
    }

    #[test]
    fn a_umoci_config_becomes_a_container() {
        let c = convert(&umoci_like(), true).unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "echo hello"]);
        assert_eq!(c.hostname, "umoci-default");
        assert_eq!(c.id_base, 100_000);
        assert_eq!(c.capabilities, [caps::by_name("KILL").unwrap(), caps::by_name("NET_BIND_SERVICE").unwrap()]);
        assert_eq!(c.nofile, Rlimit { soft: 1024, hard: 4096 });
        assert_eq!(c.limits.memory_max, Some(64 << 20));
        assert_eq!(c.tmpfs, ["/var/cache"]);
        assert!(!c.read_only);
        assert_eq!(c.seccomp, None);
    }

    #[test]
    fn what_keel_cannot_honour_is_an_error_naming_the_field() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/linux/seccomp", serde_json::json!({ "defaultAction": "SCMP_ACT_ERRNO" }), "`linux.seccomp`"),
            ("/linux/devices", serde_json::json!([{ "path": "/dev/sda", "type": "b" }]), "`linux.devices`"),
            ("/process/terminal", serde_json::json!(true), "`process.terminal`"),
            ("/process/noNewPrivileges", serde_json::json!(false), "`process.noNewPrivileges`"),
            ("/linux/namespaces", serde_json::json!([{ "type": "pid" }, { "type": "mount" }]), "add `user`"),
            (
                "/linux/namespaces/0",
                serde_json::json!({ "type": "pid", "path": "/proc/1/ns/pid" }),
                "`linux.namespaces[0].path`",
            ),
            (
                "/linux/uidMappings",
                serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 1000 }]),
                "`linux.uidMappings`",
            ),
            (
                "/linux/gidMappings",
                serde_json::json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]),
                "same host ids",
            ),
            ("/linux/resources/devices/0/allow", serde_json::json!(true), "`linux.resources.devices`"),
            ("/linux/maskedPaths/0", serde_json::json!("/etc/shadow"), "keel does not mask /etc/shadow"),
            ("/process/user/uid", serde_json::json!(1000), "`process.capabilities.ambient`"),
            ("/process/capabilities/effective", serde_json::json!(["CAP_SYS_NOPE"]), "`CAP_SYS_NOPE` is not"),
            ("/process/capabilities/bounding/0", serde_json::json!("CAP_NOPE"), "`CAP_NOPE` is not a capability"),
            ("/process/rlimits/0/type", serde_json::json!("RLIMIT_CORE"), "only RLIMIT_NOFILE"),
            ("/process/user/additionalGids", serde_json::json!([10]), "supplementary groups"),
            (
                "/mounts/0",
                serde_json::json!({ "destination": "/data", "type": "bind", "source": "/srv" }),
                "bind mount at /data is not supported",
            ),
            // Unknown fields are refused by name, not dropped.
            ("/hooks", serde_json::json!({ "prestart": [] }), "unknown field `hooks`"),
            ("/linux/sysctl", serde_json::json!({ "net.ipv4.ip_forward": "1" }), "unknown field `sysctl`"),
            ("/linux/resources/memory/swap", serde_json::json!(0), "unknown field `swap`"),
        ];
        for (pointer, value, needle) in cases {
            let mut v = umoci_like();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
            match target {
                serde_json::Value::Object(m) => {
                    m.insert(key.to_string(), value);
                }
                serde_json::Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                _ => panic!("{parent} is not a container"),
            }
            let e = error(&v);
            assert!(e.contains(needle), "{pointer}: `{e}` does not mention {needle}");
        }
    }

    #[test]
    fn limits_need_a_cgroup() {
        let e = convert(&umoci_like(), false).unwrap_err().to_string();
        assert!(e.contains("`linux.resources`") && e.contains("cgroup v2"), "{e}");
        let mut v = umoci_like();
        v["linux"]["resources"] = serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] });
        assert_eq!(convert(&v, false).unwrap().limits, Limits::default());
    }

    #[test]
    fn the_root_may_be_relative_or_absolute() {
        let spec = Spec::parse(umoci_like().to_string().as_bytes()).unwrap();
        let loc = spec.root_location(std::path::Path::new("/b")).unwrap();
        assert_eq!((loc.parent.as_path(), loc.name.as_str()), (std::path::Path::new("/b"), "rootfs"));
        let mut v = umoci_like();
        v["root"]["path"] = serde_json::json!("/srv/trees/web");
        let spec = Spec::parse(v.to_string().as_bytes()).unwrap();
        let loc = spec.root_location(std::path::Path::new("/b")).unwrap();
        assert_eq!((loc.parent.as_path(), loc.name.as_str()), (std::path::Path::new("/srv/trees"), "web"));
    }
}
