//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// keel: build a minimal container host image from one TOML file.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// keel's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the disk image, UKI and direct-boot files for a config.
    Build {
        /// The config file.
        config: PathBuf,
        /// Target architecture (default: the config's `arch`).
        #[arg(long)]
        arch: Option<String>,
        /// Output directory.
        #[arg(short = 'o', long = "out", default_value = "out")]
        out: PathBuf,
        /// keel-init binary for the target (default: next to this keel, in
        /// target/<arch>-unknown-linux-musl/release/).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Print nothing but errors.
        #[arg(short, long, conflicts_with = "json")]
        quiet: bool,
        /// Print the summary as one JSON object on stdout (files with size and sha256, the disk's
        /// partitions, the parts' sizes, the steps' times; sizes in bytes), and no step lines.
        #[arg(long)]
        json: bool,
    },
    /// Run every check `keel build` runs, without writing anything.
    ///
    /// The config, the files it pins, the kernel package (its arch, the modules and their
    /// closure), the stub, and every image: a config `keel check` accepts, `keel build` builds.
    Check {
        /// The config file.
        config: PathBuf,
        /// Target architecture (default: the config's `arch`).
        #[arg(long)]
        arch: Option<String>,
    },
    /// Draw the config's networks, containers, links, published ports and egress: Graphviz DOT
    /// when the output ends in .dot, a self-contained SVG when it ends in .svg.
    Graph {
        /// The config file.
        config: PathBuf,
        /// Where to write the graph (FILE.svg or FILE.dot).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a starter config NAME.toml that `keel check` and `keel build` accept as written.
    ///
    /// It pins the kernel and systemd-stub packages with their sha256s and has one example
    /// container. Packages come from --kernel/--stub, else from the `.cache/debs` that `make
    /// setup` fills (looked for above this keel binary, then above the current directory); the
    /// example image is `.cache/oci/busybox`. Never overwrites a file.
    New {
        /// The image name; the config is written to NAME.toml in the current directory.
        name: String,
        /// Target architecture (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// The Debian linux-image package to pin (default: the newest in the cache).
        #[arg(long, value_name = "FILE.deb")]
        kernel: Option<PathBuf>,
        /// The systemd-boot-efi package (or linux*.efi.stub file) to pin (default: the cache's).
        #[arg(long, value_name = "FILE.deb")]
        stub: Option<PathBuf>,
    },
    /// Boot a disk image under QEMU through UEFI, serial console on this terminal. Exits 0
    /// when the guest powered off cleanly.
    Run {
        /// The disk image (`NAME-ARCH.img`).
        image: PathBuf,
        /// Guest architecture (default: from the image name, else this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// Accelerator: tcg (default) or kvm. KVM is never picked on its own.
        #[arg(long)]
        accel: Option<String>,
        /// Give up (and kill the VM) after this long: a number and a unit (ms, s, m, h), e.g. 300s.
        #[arg(long, default_value = "600s")]
        timeout: String,
        /// Guest memory: a number and a unit, e.g. 768MiB or 1GiB (a bare number is refused, not
        /// taken as bytes or MiB); at least 128MiB. Default 512MiB on x86_64, 1GiB on aarch64.
        #[arg(long)]
        memory: Option<String>,
        /// Boot the image itself instead of a copy-on-write overlay (writes persist).
        #[arg(long)]
        persist: bool,
        /// Give the VM a NIC on QEMU's user network (cut off from the real network) and forward
        /// 127.0.0.1:HOST here to the guest's uplink port GUEST. Repeatable.
        #[arg(long, value_name = "HOST:GUEST[/udp]")]
        publish: Vec<String>,
        /// Boot through UEFI Secure Boot: the firmware starts the UKI only if a key in the
        /// varstore's db signed it. The varstore is Debian's snakeoil one (PK, KEK and db all
        /// /usr/share/ovmf/PkKek-1-snakeoil.pem) unless --varstore names another.
        #[arg(long)]
        secure_boot: bool,
        /// With --secure-boot: boot with a copy of this firmware variable store (keys enrolled,
        /// e.g. by virt-fw-vars); the file itself is never written.
        #[arg(long, value_name = "FILE", requires = "secure_boot")]
        varstore: Option<PathBuf>,
    },
    /// List a running host's containers (through its API).
    Ps {
        #[command(flatten)]
        api: Api,
    },
    /// Print a container's log (from its log files on keel-data).
    Logs {
        /// The container.
        #[arg(value_parser = container_name)]
        name: String,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        api: Api,
    },
    /// Restart a container (SIGTERM, then started again at once).
    Restart {
        /// The container.
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Stop a container; it stays stopped until `keel start`.
    Stop {
        /// The container.
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Start a stopped container.
    Start {
        /// The container.
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Print the host's events: starts, exits, restarts, OOM kills, health verdicts, API calls.
    Events {
        /// Keep printing new events as they come.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Stop the containers in dependency order and reboot the host.
    Reboot {
        #[command(flatten)]
        api: Api,
    },
    /// Stop the containers in dependency order and power the host off.
    Poweroff {
        #[command(flatten)]
        api: Api,
    },
    /// Print the host's Prometheus metrics.
    Metrics {
        #[command(flatten)]
        api: Api,
    },
}

/// Where the API is and who this client is.
#[derive(Debug, Clone, clap::Args)]
pub struct Api {
    /// The host's API: HOST:PORT (its [api] listen address, or a forwarded port).
    #[arg(long, env = "KEEL_ENDPOINT", value_name = "HOST:PORT")]
    pub endpoint: String,
    /// Directory with ca.pem (the server's CA), client.pem and client.key.
    #[arg(long, env = "KEEL_IDENTITY", value_name = "DIR")]
    pub identity: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A container name as keel check accepts it: anything else (`/`, `?`, spaces, CR/LF) would
/// change the request it is put into, so it is refused before anything is sent.
fn container_name(s: &str) -> Result<String, String> {
    if keel_plan::valid_container_name(s) {
        Ok(s.to_string())
    } else {
        Err("not a valid container name (lower-case letters, digits, `-`, `_`, starting with a letter or digit; at most 63)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_checked_before_sending() {
        let api = ["--endpoint", "h:1", "--identity", "/id"];
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().chain(&api));
        for ok in [&["keel", "stop", "web"][..], &["keel", "logs", "-f", "db-1"], &["keel", "start", "a_b"]] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a/b", "web?x=1", "a b", "web\r\nX-Injected: 1", "Web", "a.b", ""] {
            for cmd in ["logs", "restart", "stop", "start"] {
                let e = parse(&["keel", cmd, bad]).unwrap_err();
                assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{cmd} {bad:?}: {e}");
            }
        }
    }
}
