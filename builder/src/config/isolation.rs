//! The isolation keys of a `[[container]]`: cgroup limits, capabilities, seccomp, the root
//! filesystem and rlimits. Everything defaults to the safe choice; loosening is explicit.

use std::ops::Range;
use std::path::PathBuf;

use keel_plan::{caps, CpuMax, Limits, Rlimit};
use toml::Spanned;

use super::schema::{Number, RawContainer};
use super::{units, Validator};

/// memory.max when the config is silent.
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// pids.max when the config is silent.
pub const DEFAULT_PIDS: u64 = 1024;
/// RLIMIT_NOFILE when the config is silent (containerd's and Docker's values).
pub const DEFAULT_NOFILE: Rlimit = Rlimit { soft: 1024, hard: 524_288 };
/// Writable tmpfs mounts when the config is silent.
pub const DEFAULT_TMPFS: [&str; 2] = ["/tmp", "/run"];
/// cpu.max period, in microseconds (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest memory.max keel accepts: below this a container cannot even start.
pub const MIN_MEMORY: u64 = 4 << 20;
/// The kernel's default `fs.nr_open`: the highest RLIMIT_NOFILE a process can get.
pub const MAX_NOFILE: u64 = 1 << 20;
/// Paths the runtime manages itself: no tmpfs may be put there.
pub(super) const RESERVED: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// keel's default profile.
    Default,
    /// No filter (explicit opt-out).
    Unconfined,
    /// A profile file in keel's format.
    Profile {
        /// The file, resolved against the config's directory.
        path: PathBuf,
        /// Where the config names it.
        span: Range<usize>,
    },
}

/// A container's isolation settings, validated.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// cgroup v2 limits.
    pub limits: Limits,
    /// Capabilities kept (numbers).
    pub capabilities: Vec<u32>,
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// tmpfs mount points, absolute and normalised.
    pub tmpfs: Vec<String>,
    /// RLIMIT_NOFILE.
    pub nofile: Rlimit,
}

impl Validator<'_> {
    pub(super) fn isolation(&mut self, index: usize, c: &RawContainer) -> Isolation {
        let key = |f: &str| format!("container[{index}].{f}");
        let memory = match &c.memory {
            None => Some(DEFAULT_MEMORY),
            Some(m) if m.get_ref() == "max" => None,
            Some(m) => match units::parse_size(m.get_ref()) {
                Ok(n) if n >= MIN_MEMORY => Some(n),
                Ok(_) => {
                    self.err(&m.span(), key("memory"), "memory must be at least 4MiB (or \"max\")");
                    Some(DEFAULT_MEMORY)
                }
                Err(e) => {
                    self.err(&m.span(), key("memory"), format!("{e} (or \"max\" for no limit)"));
                    Some(DEFAULT_MEMORY)
                }
            },
        };
        let cpu_max = c.cpus.as_ref().and_then(|v| self.cpus(v, key("cpus")));
        let pids = match &c.pids {
            None => Some(DEFAULT_PIDS),
            Some(v) => match v.get_ref() {
                Number::Text(t) if t == "max" => None,
                Number::Int(n) if *n >= 1 => Some(*n as u64),
                _ => {
                    self.err(&v.span(), key("pids"), "pids must be a whole number of at least 1 (or \"max\")");
                    Some(DEFAULT_PIDS)
                }
            },
        };
        let nofile = c.nofile.as_ref().map_or(DEFAULT_NOFILE, |v| self.nofile(v, key("nofile")));
        let mut capabilities = Vec::new();
        for cap in c.capabilities.iter().flatten() {
            match caps::by_name(cap.get_ref()) {
                Some(n) if !capabilities.contains(&n) => capabilities.push(n),
                Some(_) => {}
                None => self.err(
                    &cap.span(),
                    key("capabilities"),
                    format!("`{}` is not a capability (e.g. NET_BIND_SERVICE or CAP_CHOWN)", cap.get_ref()),
                ),
            }
        }
        capabilities.sort_unstable();
        let seccomp = match &c.seccomp {
            None => Seccomp::Default,
            Some(s) => match s.get_ref().as_str() {
                "default" => Seccomp::Default,
                "unconfined" => Seccomp::Unconfined,
                "" => {
                    self.err(&s.span(), key("seccomp"), "expected \"default\", \"unconfined\" or a profile path");
                    Seccomp::Default
                }
                p => {
                    let path = if PathBuf::from(p).is_absolute() { PathBuf::from(p) } else { self.base.join(p) };
                    if !path.is_file() {
                        self.err(&s.span(), key("seccomp"), format!("profile not found: {}", path.display()));
                    }
                    Seccomp::Profile { path, span: s.span() }
                }
            },
        };
        let read_only = c.read_only.as_ref().is_none_or(|r| *r.get_ref());
        let tmpfs = match &c.tmpfs {
            None => DEFAULT_TMPFS.iter().map(|s| s.to_string()).collect(),
            Some(list) => self.tmpfs(list, key("tmpfs")),
        };
        Isolation {
            limits: Limits { memory_max: memory, cpu_max, pids_max: pids },
            capabilities,
            seccomp,
            read_only,
            tmpfs,
            nofile,
        }
    }

    fn cpus(&mut self, v: &Spanned<Number>, key: String) -> Option<CpuMax> {
        let n = match v.get_ref() {
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Text(t) if t == "max" => return None,
            Number::Text(_) => f64::NAN,
        };
        let quota = (n * CPU_PERIOD_US as f64).round();
        if !(1000.0..=1024.0 * CPU_PERIOD_US as f64).contains(&quota) {
            self.err(&v.span(), key, "cpus must be a number from 0.01 to 1024 (or \"max\"), e.g. 0.5");
            return None;
        }
        Some(CpuMax { quota_us: quota as u64, period_us: CPU_PERIOD_US })
    }

    fn nofile(&mut self, v: &Spanned<Number>, key: String) -> Rlimit {
        let parse = |s: &str| s.trim().parse::<u64>().ok();
        let r = match v.get_ref() {
            Number::Int(n) if *n >= 0 => Some(Rlimit { soft: *n as u64, hard: *n as u64 }),
            Number::Text(t) => match t.split_once(':') {
                Some((s, h)) => parse(s).zip(parse(h)).map(|(soft, hard)| Rlimit { soft, hard }),
                None => parse(t).map(|n| Rlimit { soft: n, hard: n }),
            },
            _ => None,
        };
        match r {
            Some(r) if r.soft >= 16 && r.soft <= r.hard && r.hard <= MAX_NOFILE => r,
            _ => {
                self.err(
                    &v.span(),
                    key,
                    format!("nofile must be N or \"SOFT:HARD\" with 16 <= SOFT <= HARD <= {MAX_NOFILE}"),
                );
                DEFAULT_NOFILE
            }
        }
    }

    fn tmpfs(&mut self, list: &Spanned<Vec<Spanned<String>>>, key: String) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in list.get_ref() {
            let raw = p.get_ref();
            let parts: Vec<&str> = raw.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
            let norm = format!("/{}", parts.join("/"));
            let bad = if !raw.starts_with('/') {
                Some("must be an absolute path")
            } else if parts.contains(&"..") {
                Some("must not contain `..`")
            } else if parts.is_empty() {
                Some("cannot be `/` (use `read-only = false` for a writable root)")
            } else if RESERVED.iter().any(|r| norm == *r || norm.starts_with(&format!("{r}/"))) {
                Some("is managed by keel (/proc, /sys and /dev cannot take a tmpfs)")
            } else if out.contains(&norm) {
                Some("is listed twice")
            } else {
                None
            };
            match bad {
                Some(why) => self.err(&p.span(), key.clone(), format!("tmpfs `{raw}` {why}")),
                None => out.push(norm),
            }
        }
        out
    }
}
