//! The config file: parse strictly, validate every key, and resolve it into [`Config`].
//!
//! Every problem becomes a [`Diagnostic`] naming `file:line:column` and the key. Validation
//! reports all problems it finds, not just the first.

pub mod api;
mod diag;
pub mod isolation;
pub mod logs;
pub mod network;
mod schema;
pub mod signing;
pub mod supervision;
pub mod units;
pub mod volumes;

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::{Arch, OnExit, OnFailure, Restart};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use diag::{Diagnostic, Locator};
use schema::{RawConfig, RawContainer, RawFile, RawKernel};

/// The config schema version this keel reads.
pub const CONFIG_VERSION: i64 = 1;

/// Default size of the keel-data partition.
pub const DEFAULT_DATA_SIZE: u64 = 64 << 20;

/// Default bound on waiting for the disk at boot.
pub const DEFAULT_DISK_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time containers get between SIGTERM and SIGKILL on a graceful stop.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The command-line parameter the builder appends for dm-verity; `[kernel] cmdline` may not set it.
pub const VERITY_PARAM: &str = "keel.verity=";

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub path: PathBuf,
    /// Its text (kept so later stages can locate problems).
    pub source: String,
    /// Image name; artifact names are `NAME-ARCH.*`.
    pub name: String,
    /// Default architecture.
    pub arch: Arch,
    /// `[kernel]`.
    pub kernel: KernelConfig,
    /// `[host]`.
    pub host: HostConfig,
    /// keel-data partition size in bytes.
    pub data_size: u64,
    /// `[disk] verity`: keel-images under dm-verity, its root hash on the UKI's command line.
    pub verity: bool,
    /// `[[container]]`, in file order.
    pub containers: Vec<ContainerConfig>,
    /// `[[volume]]`, in file order.
    pub volumes: Vec<volumes::VolumeConfig>,
    /// `[[network]]`, in file order.
    pub networks: Vec<network::NetworkConfig>,
    /// `[[link]]`, in file order.
    pub links: Vec<network::LinkConfig>,
    /// `[api]`, with its TLS files read.
    pub api: Option<api::ApiConfig>,
    /// `[signing]`, with its key and certificate read and checked.
    pub signing: Option<signing::SigningConfig>,
}

/// The pinned input files for one arch, read and verified.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The linux-image package.
    pub package: Vec<u8>,
    /// The stub, as configured (a systemd-boot-efi package or a stub file).
    pub stub: Vec<u8>,
}

/// A pinned input file, its path resolved against the config's directory.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// Resolved path.
    pub path: PathBuf,
    /// Expected sha256, lower-case hex.
    pub sha256: String,
    /// Key of this entry, e.g. `kernel.package.x86_64`.
    pub key: String,
    /// Span of the `path` value.
    pub path_span: Range<usize>,
    /// Span of the `sha256` value.
    pub sha256_span: Range<usize>,
}

/// `[kernel]`.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// linux-image .deb per arch.
    pub packages: BTreeMap<Arch, FileRef>,
    /// systemd-stub (deb or stub file) per arch.
    pub stubs: BTreeMap<Arch, FileRef>,
    /// Appended to the command line keel needs.
    pub cmdline: String,
    /// Extra modules, with their spans.
    pub modules: Vec<(String, Range<usize>)>,
    /// Span of the `[kernel]` table.
    pub span: Range<usize>,
}

/// `[host]`.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Host name of the machine.
    pub hostname: String,
    /// What to do when every container has exited.
    pub on_exit: OnExit,
    /// What to do on a fatal boot error.
    pub on_failure: OnFailure,
    /// How long init waits for the disk.
    pub disk_timeout: Duration,
    /// On a graceful stop, how long containers get between SIGTERM and SIGKILL.
    pub shutdown_grace: Duration,
    /// Bounds of each container's log files on keel-data.
    pub logs: keel_plan::Logs,
    /// `[host.network]`: the uplink.
    pub network: keel_plan::net::Uplink,
}

/// One `[[container]]`.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Index in the file (for keys like `container[1].image`).
    pub index: usize,
    /// Unique name.
    pub name: String,
    /// Image reference as written.
    pub image: String,
    /// Span of the image value.
    pub image_span: Range<usize>,
    /// Explicit argv (replaces the image's entrypoint and cmd).
    pub command: Option<Vec<String>>,
    /// Extra environment (overrides the image's).
    pub env: BTreeMap<String, String>,
    /// `uid:gid`, `uid`, or a user name from the image's /etc/passwd.
    pub user: Option<(String, Range<usize>)>,
    /// Working directory (default: the image's, else `/`).
    pub workdir: Option<String>,
    /// Host name inside the container (default: the container name).
    pub hostname: String,
    /// Limits, capabilities, seccomp, root filesystem: see [`isolation`].
    pub isolation: isolation::Isolation,
    /// When keel-init starts it again after it exits.
    pub restart: Restart,
    /// The backoff of its restarts.
    pub restart_delay: keel_plan::RestartDelay,
    /// Containers started before it (with the spans of their names).
    pub depends_on: Vec<(String, Range<usize>)>,
    /// Its health check.
    pub health: Option<keel_plan::Health>,
    /// Volumes mounted into it, in config order.
    pub volumes: Vec<volumes::MountConfig>,
    /// `networks`: names of the networks it is on, in config order.
    pub networks: Vec<(String, Range<usize>)>,
    /// `ports`: published uplink ports.
    pub ports: Vec<(network::PortConfig, Range<usize>)>,
    /// Span of the whole table, for errors about it as a whole.
    pub span: Range<usize>,
}

impl ContainerConfig {
    /// The key of one of its fields, e.g. `container[0].image`.
    pub fn key(&self, field: &str) -> String {
        format!("container[{}].{field}", self.index)
    }
}

/// A config that cannot be used: every problem found.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

/// At most this many problems are shown, then a count of the rest.
pub const MAX_SHOWN_ERRORS: usize = 20;

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().take(MAX_SHOWN_ERRORS).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > MAX_SHOWN_ERRORS {
            write!(f, "\n... and {} more", self.0.len() - MAX_SHOWN_ERRORS)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Read, parse and validate a config file (the files it pins are checked by
    /// [`Config::read_inputs`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!("cannot read config: {e}"),
            }])
        })?;
        Config::parse(path, source)
    }

    /// Parse and validate config text that came from `path`.
    pub fn parse(path: &Path, source: String) -> Result<Config, ConfigErrors> {
        let mut config = {
            let loc = Locator::new(path, &source);
            // Unknown keys are collected (all of them, with a hint each) and skipped, so the
            // validator still runs and reports the other problems of the same file.
            let (raw, unknown) = diag::deserialize_collecting::<RawConfig>(&source);
            let mut errors: Vec<Diagnostic> = unknown.iter().map(|u| loc.at(&u.span, u.path(), u.message())).collect();
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) => {
                    let d = loc.from_toml(&e);
                    // `imagee = …` also leaves `image` missing: the hint already says so.
                    let missing = e.message().strip_prefix("missing field `").and_then(|m| m.split('`').next());
                    if !missing.is_some_and(|m| unknown.iter().any(|u| u.suggestion() == Some(m))) {
                        errors.push(d);
                    }
                    return Err(ConfigErrors(errors));
                }
            };
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut v = Validator { loc: &loc, base: &base, errors };
            let config = v.config(raw);
            if !v.errors.is_empty() {
                return Err(ConfigErrors(v.errors));
            }
            config
        };
        config.path = path.to_path_buf();
        config.source = source;
        Ok(config)
    }

    /// A locator over this config's text.
    pub fn locator(&self) -> Locator<'_> {
        Locator::new(&self.path, &self.source)
    }

    /// Read the files pinned for `arch` (kernel package, stub), each checked against its
    /// sha256 as read, so the bytes used are the bytes verified. Every problem is reported.
    pub fn read_inputs(&self, arch: Arch) -> Result<Inputs, ConfigErrors> {
        let loc = self.locator();
        let mut errors = Vec::new();
        let mut read = |what: &str, map: &BTreeMap<Arch, FileRef>| match map.get(&arch) {
            Some(f) => read_verified(&loc, f).map_err(|d| errors.push(d)).ok(),
            None => {
                errors.push(loc.at(
                    &self.kernel.span,
                    format!("kernel.{what}.{arch}"),
                    format!("no kernel {what} for {arch}: add `{what}.{arch} = {{ path = \"…\", sha256 = \"…\" }}`"),
                ));
                None
            }
        };
        let package = read("package", &self.kernel.packages);
        let stub = read("stub", &self.kernel.stubs);
        match (package, stub) {
            (Some(package), Some(stub)) if errors.is_empty() => Ok(Inputs { package, stub }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn read_verified(loc: &Locator<'_>, f: &FileRef) -> Result<Vec<u8>, Diagnostic> {
    if !f.path.is_file() {
        return Err(loc.at(&f.path_span, format!("{}.path", f.key), format!("file not found: {}", f.path.display())));
    }
    let bytes = std::fs::read(&f.path).map_err(|e| {
        loc.at(&f.path_span, format!("{}.path", f.key), format!("cannot read {}: {e}", f.path.display()))
    })?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != f.sha256 {
        return Err(loc.at(
            &f.sha256_span,
            format!("{}.sha256", f.key),
            format!("sha256 mismatch for {}: expected {}, got {got}", f.path.display(), f.sha256),
        ));
    }
    Ok(bytes)
}

/// Is `s` a valid name for an image or container: lower-case letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit, at most 63 characters.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.')
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

struct Validator<'a> {
    loc: &'a Locator<'a>,
    base: &'a Path,
    errors: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn err(&mut self, span: &Range<usize>, key: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(self.loc.at(span, key, msg));
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        if *raw.version.get_ref() != CONFIG_VERSION {
            self.err(
                &raw.version.span(),
                "version",
                format!(
                    "unsupported config version {} (this keel reads version {CONFIG_VERSION})",
                    raw.version.get_ref()
                ),
            );
        }
        let name = raw.name.get_ref().clone();
        if !valid_name(&name) {
            self.err(
                &raw.name.span(),
                "name",
                format!("`{name}` is not a valid name (lower-case letters, digits, `-`, `_`, `.`; at most 63)"),
            );
        }
        let arch = match &raw.arch {
            None => Arch::X86_64,
            Some(a) => match Arch::parse(a.get_ref()) {
                Some(arch) => arch,
                None => {
                    self.err(&a.span(), "arch", format!("unknown arch `{}` (expected x86_64 or aarch64)", a.get_ref()));
                    Arch::X86_64
                }
            },
        };
        let kernel = self.kernel(raw.kernel);
        // Where a log budget that does not fit in keel-data is reported.
        let log_span = [
            (raw.host.log_files.as_ref().map(Spanned::span), "host.log-files"),
            (raw.host.log_size.as_ref().map(Spanned::span), "host.log-size"),
            (raw.disk.data_size.as_ref().map(Spanned::span), "disk.data-size"),
        ]
        .into_iter()
        .find_map(|(span, key)| span.map(|s| (s, key)))
        .unwrap_or((0..0, "host.log-size"));
        let host = self.host(raw.host, &name);
        let data_size = match &raw.disk.data_size {
            None => DEFAULT_DATA_SIZE,
            Some(s) => match units::parse_size(s.get_ref()) {
                Ok(n) if n >= 16 << 20 => n,
                Ok(_) => {
                    self.err(&s.span(), "disk.data-size", "keel-data must be at least 16MiB");
                    DEFAULT_DATA_SIZE
                }
                Err(e) => {
                    self.err(&s.span(), "disk.data-size", e);
                    DEFAULT_DATA_SIZE
                }
            },
        };
        let volumes = self.volumes(raw.volumes);
        let networks = self.networks(raw.networks);
        let mut containers = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, c) in raw.containers.into_iter().enumerate() {
            let span = c.span();
            let c = c.into_inner();
            let cname = c.name.get_ref().clone();
            if let Some(first) = seen.get(&cname) {
                self.err(
                    &c.name.span(),
                    format!("container[{index}].name"),
                    format!("duplicate container name `{cname}` (first used by container[{first}])"),
                );
            } else {
                seen.insert(cname.clone(), index);
            }
            containers.push(self.container(index, c, span));
        }
        if containers.is_empty() {
            self.err(&(0..0), "container", "no [[container]]: an image needs at least one container");
        }
        self.order(&containers);
        self.log_budget(host.logs, containers.len(), data_size, (&log_span.0, log_span.1));
        self.volume_names(&volumes, &containers);
        let links = self.links(raw.links);
        self.network_refs(&host.network, &networks, &containers, &links);
        let api = raw.api.and_then(|a| self.api(a, &host.network, &containers));
        let signing = raw.signing.and_then(|s| self.signing(s));
        Config {
            path: PathBuf::new(),
            source: String::new(),
            name,
            arch,
            kernel,
            host,
            data_size,
            verity: raw.disk.verity.unwrap_or(true),
            containers,
            volumes,
            networks,
            links,
            api,
            signing,
        }
    }

    fn file(&mut self, key: String, f: Spanned<RawFile>) -> FileRef {
        let f = f.into_inner();
        let sha = f.sha256.get_ref().to_ascii_lowercase();
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            self.err(&f.sha256.span(), format!("{key}.sha256"), "sha256 must be 64 hex digits");
        }
        let p = Path::new(f.path.get_ref());
        FileRef {
            path: if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) },
            sha256: sha,
            key,
            path_span: f.path.span(),
            sha256_span: f.sha256.span(),
        }
    }

    fn per_arch(&mut self, what: &str, map: BTreeMap<String, Spanned<RawFile>>) -> BTreeMap<Arch, FileRef> {
        let mut out = BTreeMap::new();
        for (a, f) in map {
            let key = format!("kernel.{what}.{a}");
            match Arch::parse(&a) {
                Some(arch) => {
                    let r = self.file(key, f);
                    out.insert(arch, r);
                }
                None => self.err(&f.span(), key, format!("unknown arch `{a}` (expected x86_64 or aarch64)")),
            }
        }
        out
    }

    fn kernel(&mut self, k: Spanned<RawKernel>) -> KernelConfig {
        let span = k.span();
        let k = k.into_inner();
        let packages = self.per_arch("package", k.package);
        let stubs = self.per_arch("stub", k.stub);
        if packages.is_empty() {
            self.err(
                &span,
                "kernel.package",
                "no kernel package: add `package.x86_64 = { path = \"…\", sha256 = \"…\" }`",
            );
        }
        let mut modules = Vec::new();
        for (i, m) in k.modules.into_iter().enumerate() {
            let name = m.get_ref().trim_end_matches(".ko").replace('-', "_");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.err(&m.span(), format!("kernel.modules[{i}]"), format!("`{}` is not a module name", m.get_ref()));
            }
            modules.push((name, m.span()));
        }
        if let Some(c) = &k.cmdline {
            if c.get_ref().split_whitespace().any(|w| w.starts_with(VERITY_PARAM)) {
                self.err(
                    &c.span(),
                    "kernel.cmdline",
                    format!(
                        "`{VERITY_PARAM}` is keel's to set: it carries keel-images' root hash (`[disk] verity = false` \
                         turns dm-verity off)"
                    ),
                );
            }
        }
        let cmdline = k.cmdline.map(|c| c.into_inner()).unwrap_or_default();
        KernelConfig { packages, stubs, cmdline, modules, span }
    }

    fn host(&mut self, h: schema::RawHost, name: &str) -> HostConfig {
        let hostname = match h.hostname {
            None => name.to_string(),
            Some(s) => {
                if !valid_hostname(s.get_ref()) {
                    self.err(&s.span(), "host.hostname", format!("`{}` is not a valid host name", s.get_ref()));
                }
                s.into_inner()
            }
        };
        let on_exit = match &h.on_exit {
            None => OnExit::Poweroff,
            Some(s) => match s.get_ref().as_str() {
                "poweroff" => OnExit::Poweroff,
                "reboot" => OnExit::Reboot,
                "wait" => OnExit::Wait,
                other => {
                    self.err(
                        &s.span(),
                        "host.on-exit",
                        format!("unknown value `{other}` (expected poweroff, reboot or wait)"),
                    );
                    OnExit::Poweroff
                }
            },
        };
        let on_failure = match &h.on_failure {
            None => OnFailure::Poweroff,
            Some(s) => match s.get_ref().as_str() {
                "poweroff" => OnFailure::Poweroff,
                "reboot" => OnFailure::Reboot,
                other => {
                    self.err(
                        &s.span(),
                        "host.on-failure",
                        format!("unknown value `{other}` (expected poweroff or reboot)"),
                    );
                    OnFailure::Poweroff
                }
            },
        };
        let disk_timeout = match &h.disk_timeout {
            None => DEFAULT_DISK_TIMEOUT,
            Some(s) => units::parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.err(&s.span(), "host.disk-timeout", e);
                DEFAULT_DISK_TIMEOUT
            }),
        };
        let shutdown_grace = match &h.shutdown_grace {
            None => DEFAULT_SHUTDOWN_GRACE,
            Some(s) => units::parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.err(&s.span(), "host.shutdown-grace", e);
                DEFAULT_SHUTDOWN_GRACE
            }),
        };
        let logs = self.logs(h.log_size.as_ref(), h.log_files.as_ref());
        let network = self.uplink(h.network);
        HostConfig { hostname, on_exit, on_failure, disk_timeout, shutdown_grace, logs, network }
    }

    fn container(&mut self, index: usize, c: RawContainer, span: Range<usize>) -> ContainerConfig {
        let key = |f: &str| format!("container[{index}].{f}");
        let isolation = self.isolation(index, &c);
        let name = c.name.get_ref().clone();
        // No `.`: the name is also a cgroup directory next to interface files such as `cgroup.procs`.
        if !keel_plan::valid_container_name(&name) {
            self.err(
                &c.name.span(),
                key("name"),
                format!("`{name}` is not a valid container name (lower-case letters, digits, `-`, `_`; at most 63)"),
            );
        }
        if c.image.get_ref().trim().is_empty() {
            self.err(&c.image.span(), key("image"), "image is empty");
        }
        let command = c.command.map(|cmd| {
            if cmd.get_ref().is_empty() || cmd.get_ref()[0].is_empty() {
                self.err(&cmd.span(), key("command"), "command is empty");
            }
            cmd.into_inner()
        });
        let mut env = BTreeMap::new();
        for (k, v) in c.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(&v.span(), format!("{}.{k}", key("env")), format!("`{k}` is not a valid variable name"));
            }
            env.insert(k, v.into_inner());
        }
        let user = c.user.map(|u| {
            let s = u.span();
            (u.into_inner(), s)
        });
        let workdir = c.workdir.map(|w| {
            if let Some(why) = keel_plan::workdir_problem(w.get_ref()) {
                self.err(&w.span(), key("workdir"), why);
            }
            w.into_inner()
        });
        let hostname = match c.hostname {
            None => name.clone(),
            Some(h) => {
                if !valid_hostname(h.get_ref()) {
                    self.err(&h.span(), key("hostname"), format!("`{}` is not a valid host name", h.get_ref()));
                }
                h.into_inner()
            }
        };
        let restart = match &c.restart {
            None => Restart::OnFailure,
            Some(s) => match s.get_ref().as_str() {
                "no" => Restart::No,
                "on-failure" => Restart::OnFailure,
                "always" => Restart::Always,
                other => {
                    self.err(
                        &s.span(),
                        key("restart"),
                        format!("unknown value `{other}` (expected no, on-failure or always)"),
                    );
                    Restart::OnFailure
                }
            },
        };
        let restart_delay = self.restart_delay(index, c.restart_delay.as_ref(), c.restart_max_delay.as_ref());
        let depends_on = self.depends_on(index, c.depends_on);
        let health = self.health(index, c.health);
        let volumes = self.container_volumes(index, c.volumes, &isolation.tmpfs);
        let (networks, ports) = self.container_net(index, c.networks, c.ports);
        ContainerConfig {
            networks,
            ports,
            index,
            isolation,
            restart,
            restart_delay,
            depends_on,
            health,
            volumes,
            name,
            image: c.image.get_ref().clone(),
            image_span: c.image.span(),
            command,
            env,
            user,
            workdir,
            hostname,
            span,
        }
    }
}

#[cfg(test)]
mod tests;
