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
    },
    /// Validate a config (and the files and images it names) without building.
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
        /// Give up (and kill the VM) after this long, e.g. 300s.
        #[arg(long, default_value = "600s")]
        timeout: String,
        /// Guest memory, e.g. 1GiB.
        #[arg(long)]
        memory: Option<String>,
        /// Boot the image itself instead of a copy-on-write overlay (writes persist).
        #[arg(long)]
        persist: bool,
        /// Give the VM a NIC on QEMU's user network (cut off from the real network) and forward
        /// 127.0.0.1:HOST here to the guest's uplink port GUEST. Repeatable.
        #[arg(long, value_name = "HOST:GUEST[/udp]")]
        publish: Vec<String>,
    },
}
