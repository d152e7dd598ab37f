//! keel's builder: one TOML config in, a bootable container host image out.
//!
//! The binary `keel` (src/main.rs) is a thin CLI over this library; tests and benchmarks use
//! the library directly for the pieces they need (the initramfs writer, config parsing).

pub mod build;
pub mod config;
pub mod disk;
pub mod esp;
pub mod ext4;
pub mod graph;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod netplan;
pub mod output;
pub mod progress;
pub mod provenance;
pub mod resolve;
pub mod sbom;
pub mod seccomp;
pub mod sign;
pub mod sink;
pub mod uki;
pub mod verity;
