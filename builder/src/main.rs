//! keel: build a minimal container host image from one TOML file.

mod cli;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use keel_plan::Arch;

use keel_builder::build::{self, BuildError};
use keel_builder::config::{self, Config, ConfigErrors};
use keel_builder::{graph, netplan, resolve};

use crate::cli::{Cli, Command};

/// Exit status for bad input (config, files and images it names).
const EXIT_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { config, arch, out, init } => report(cmd_build(&config, arch.as_deref(), &out, init)),
        Command::Check { config, arch } => report(cmd_check(&config, arch.as_deref())),
        Command::Graph { config, output } => cmd_graph(&config, &output),
        Command::Run { image, arch, accel, timeout, memory, persist, publish } => {
            match run::run(&image, arch.as_deref(), accel.as_deref(), &timeout, memory.as_deref(), persist, &publish) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("keel run: {e:#}");
                    ExitCode::from(EXIT_INPUT)
                }
            }
        }
    }
}

fn report(r: Result<(), BuildError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(BuildError::Config(e)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_INPUT)
        }
        Err(BuildError::Other(e)) => {
            eprintln!("keel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path, arch: Option<&str>) -> Result<(Config, Arch), BuildError> {
    let config = Config::load(path)?;
    let arch = match arch {
        None => config.arch,
        Some(a) => Arch::parse(a).ok_or_else(|| {
            ConfigErrors(vec![config::Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                key: "arch".into(),
                message: format!("unknown arch `{a}` given with --arch (expected x86_64 or aarch64)"),
            }])
        })?,
    };
    Ok((config, arch))
}

fn cmd_check(path: &Path, arch: Option<&str>) -> Result<(), BuildError> {
    let (config, arch) = load(path, arch)?;
    config.read_inputs(arch)?;
    let containers = resolve::containers(&config, arch)?;
    let m = resolve::materialize(&config, arch, &containers, |_, _| {})?;
    println!(
        "{}: ok ({arch}, {} container(s), {} image(s), {} layer(s) verified)",
        path.display(),
        m.containers.len(),
        m.images,
        m.stats.layers
    );
    Ok(())
}

/// `keel graph`: DOT or SVG by the output's extension, written whole or not at all.
fn cmd_graph(path: &Path, output: &Path) -> ExitCode {
    let ext = output.extension().map(|e| e.to_string_lossy().to_lowercase());
    let render = match ext.as_deref() {
        Some("dot") => graph::dot,
        Some("svg") => graph::svg,
        other => {
            let what = other.map_or("no extension".to_string(), |e| format!("extension `.{e}`"));
            eprintln!("keel graph: {}: {what} (expected .svg or .dot)", output.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report(Err(e.into())),
    };
    let plan = match netplan::plan(&config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keel graph: {}: {e}", path.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    if let Err(e) = write_atomic(output, render(&config, &plan).as_bytes()) {
        eprintln!("keel graph: cannot write {}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    println!("keel graph: wrote {} ({})", output.display(), graph::summary(&config));
    ExitCode::SUCCESS
}

/// Write `path` through a temporary file beside it, renamed over it once complete.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".keel-graph-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn cmd_build(path: &Path, arch: Option<&str>, out: &Path, init: Option<PathBuf>) -> Result<(), BuildError> {
    let (config, arch) = load(path, arch)?;
    let init = match init {
        Some(p) => p,
        None => default_init(arch).map_err(BuildError::Other)?,
    };
    let started = std::time::Instant::now();
    let artifacts = build::build(&config, arch, out, &build::Inputs { init })?;
    println!("built {} for {arch} in {:.1}s:", config.name, started.elapsed().as_secs_f64());
    for f in &artifacts.files {
        let md = std::fs::metadata(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let sha = config::sha256_file(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        use std::os::unix::fs::MetadataExt;
        println!(
            "  {:<28} {:>10} bytes  {:>6} KiB allocated  sha256 {sha}",
            f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            md.len(),
            md.blocks() * 512 / 1024,
        );
    }
    let parts: Vec<String> = artifacts.parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  parts (bytes): {}", parts.join(" "));
    Ok(())
}

/// keel-init for `arch`: `$KEEL_INIT_<ARCH>`, else the one built next to this binary.
fn default_init(arch: Arch) -> anyhow::Result<PathBuf> {
    let var = format!("KEEL_INIT_{}", arch.name().to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(4) {
        let p = dir.join(arch.musl_triple()).join("release").join("keel-init");
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
    }
    anyhow::bail!(
        "keel-init for {arch} not found (run `make build`, or pass --init or ${var}); looked at {}",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}
