//! The TOML schema as written by users: strict (unknown keys are errors), kebab-case, with
//! spans kept on every value a later check may need to point at.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub version: Spanned<i64>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub arch: Option<Spanned<String>>,
    pub kernel: Spanned<RawKernel>,
    #[serde(default)]
    pub host: RawHost,
    #[serde(default)]
    pub disk: RawDisk,
    #[serde(default, rename = "container")]
    pub containers: Vec<Spanned<RawContainer>>,
    #[serde(default, rename = "volume")]
    pub volumes: Vec<Spanned<RawVolume>>,
    #[serde(default, rename = "network")]
    pub networks: Vec<Spanned<RawNetwork>>,
    #[serde(default, rename = "link")]
    pub links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    pub api: Option<Spanned<RawApi>>,
    #[serde(default)]
    pub signing: Option<Spanned<RawSigning>>,
}

/// `[signing]`: the key and certificate the UKI is signed with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSigning {
    pub key: Spanned<String>,
    pub cert: Spanned<String>,
}

/// `[api]`: the mTLS HTTPS API in keel-init.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawApi {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    pub tls: Spanned<String>,
}

/// `[host.network]`: the machine's uplink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUplink {
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub dns: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[network]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    pub name: Spanned<String>,
    #[serde(default)]
    pub subnet: Option<Spanned<String>>,
    #[serde(default)]
    pub egress: Option<Spanned<bool>>,
}

/// One `[[link]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLink {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub ports: Spanned<Vec<Spanned<String>>>,
}

/// One `[[volume]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVolume {
    pub name: Spanned<String>,
    #[serde(default)]
    pub owner: Option<Spanned<String>>,
    /// Read only to say that keel cannot enforce it yet.
    #[serde(default)]
    pub size: Option<Spanned<toml::Value>>,
}

/// `[kernel]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKernel {
    /// Debian linux-image package per arch.
    #[serde(default)]
    pub package: BTreeMap<String, Spanned<RawFile>>,
    /// systemd-stub per arch: a `systemd-boot-efi` .deb or a `linux*.efi.stub` file.
    #[serde(default)]
    pub stub: BTreeMap<String, Spanned<RawFile>>,
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
}

/// A pinned input file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFile {
    pub path: Spanned<String>,
    pub sha256: Spanned<String>,
}

/// `[host]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHost {
    #[serde(default)]
    pub hostname: Option<Spanned<String>>,
    #[serde(default)]
    pub on_exit: Option<Spanned<String>>,
    #[serde(default)]
    pub on_failure: Option<Spanned<String>>,
    #[serde(default)]
    pub disk_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub shutdown_grace: Option<Spanned<String>>,
    #[serde(default)]
    pub log_size: Option<Spanned<String>>,
    #[serde(default)]
    pub log_files: Option<Spanned<i64>>,
    #[serde(default)]
    pub network: Option<Spanned<RawUplink>>,
}

/// `[disk]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDisk {
    #[serde(default)]
    pub data_size: Option<Spanned<String>>,
    #[serde(default)]
    pub verity: Option<bool>,
}

/// One `[[container]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawContainer {
    pub name: Spanned<String>,
    pub image: Spanned<String>,
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub workdir: Option<Spanned<String>>,
    #[serde(default)]
    pub hostname: Option<Spanned<String>>,
    #[serde(default)]
    pub memory: Option<Spanned<String>>,
    #[serde(default)]
    pub cpus: Option<Spanned<Number>>,
    #[serde(default)]
    pub pids: Option<Spanned<Number>>,
    #[serde(default)]
    pub nofile: Option<Spanned<Number>>,
    #[serde(default)]
    pub capabilities: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub seccomp: Option<Spanned<String>>,
    #[serde(default)]
    pub read_only: Option<Spanned<bool>>,
    #[serde(default)]
    pub tmpfs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub restart: Option<Spanned<String>>,
    #[serde(default)]
    pub restart_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub restart_max_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub depends_on: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub volumes: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub networks: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub ports: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `health = { … }` of a container.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHealth {
    #[serde(default)]
    pub cmd: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub tcp: Option<Spanned<i64>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<Number>>,
    #[serde(default)]
    pub start_period: Option<Spanned<String>>,
}

/// A number that may be written as an integer, a float, or a string such as `"max"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
    Text(String),
}
