//! keel: build a minimal container host image from one TOML file.

mod cli;
mod client;
mod new;
mod run;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use clap::Parser;
use keel_plan::Arch;

use keel_builder::build::{self, BuildError};
use keel_builder::config::{units, Config};
use keel_builder::output::{FileInfo, Summary};
use keel_builder::progress::Progress;
use keel_builder::{graph, netplan};

use crate::cli::{Cli, Command};

/// Exit status for bad input (config, files and images it names, flags).
const EXIT_INPUT: u8 = 2;

/// The smallest guest `keel run --memory` accepts.
const MIN_MEMORY_MIB: u64 = 128;

/// What `keel build` prints besides errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Step lines and the summary table.
    Text,
    /// Only errors.
    Quiet,
    /// The summary as one JSON object on stdout.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { config, arch, out, init, quiet, json } => {
            let report_as = if json {
                Report::Json
            } else if quiet {
                Report::Quiet
            } else {
                Report::Text
            };
            match arch_flag("build", arch.as_deref()) {
                Ok(arch) => report(cmd_build(&config, arch, &out, init, report_as)),
                Err(code) => code,
            }
        }
        Command::Check { config, arch } => match arch_flag("check", arch.as_deref()) {
            Ok(arch) => report(cmd_check(&config, arch)),
            Err(code) => code,
        },
        Command::Graph { config, output } => cmd_graph(&config, &output),
        Command::New { name, arch, kernel, stub } => new::run(&name, arch.as_deref(), kernel, stub),
        Command::Ps { api } => api_call("ps", &api, "GET", "/v1/containers", Show::Ps),
        Command::Logs { name, follow, tail, api } => {
            let path = format!("/v1/containers/{name}/logs?tail={tail}{}", if follow { "&follow=1" } else { "" });
            api_call("logs", &api, "GET", &path, Show::Raw)
        }
        Command::Restart { name, api } => {
            api_call("restart", &api, "POST", &format!("/v1/containers/{name}/restart"), Show::Message)
        }
        Command::Stop { name, api } => {
            api_call("stop", &api, "POST", &format!("/v1/containers/{name}/stop"), Show::Message)
        }
        Command::Start { name, api } => {
            api_call("start", &api, "POST", &format!("/v1/containers/{name}/start"), Show::Message)
        }
        Command::Events { follow, api } => {
            if follow {
                api_call("events", &api, "GET", "/v1/events?follow=1", Show::EventLines)
            } else {
                api_call("events", &api, "GET", "/v1/events", Show::Events)
            }
        }
        Command::Reboot { api } => api_call("reboot", &api, "POST", "/v1/host/reboot", Show::Message),
        Command::Poweroff { api } => api_call("poweroff", &api, "POST", "/v1/host/poweroff", Show::Message),
        Command::Metrics { api } => api_call("metrics", &api, "GET", "/metrics", Show::Raw),
        Command::Run { image, arch, accel, timeout, memory, persist, publish, secure_boot, varstore } => {
            let checked = run_flags(
                arch.as_deref(),
                accel.as_deref(),
                &timeout,
                memory.as_deref(),
                &publish,
                varstore.as_deref(),
            );
            if let Err(e) = checked {
                eprintln!("keel run: {e}");
                return ExitCode::from(EXIT_INPUT);
            }
            let secure_boot = secure_boot.then_some(run::SecureBoot { varstore });
            let flags = run::Flags {
                arch: arch.as_deref(),
                accel: accel.as_deref(),
                timeout: &timeout,
                memory: memory.as_deref(),
                persist,
                publish: &publish,
                secure_boot,
            };
            match run::run(&image, &flags) {
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

/// How an API answer is printed for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    /// The body as it comes (logs, metrics).
    Raw,
    /// The containers as a table.
    Ps,
    /// The answer's message.
    Message,
    /// A JSON array of events, a line each.
    Events,
    /// Events as JSON lines, as they come, a line each.
    EventLines,
}

/// Call the API and print its answer; exit 1 on any failure, saying what went wrong.
fn api_call(command: &str, api: &cli::Api, method: &str, path: &str, show: Show) -> ExitCode {
    let target = client::Target { endpoint: api.endpoint.clone(), identity: api.identity.clone() };
    let streaming = show == Show::Raw || (show == Show::EventLines && !api.json);
    let mut body = Vec::new();
    let mut pending = Vec::new();
    let result = client::call(&target, method, path, |status, chunk| {
        if status >= 400 || !streaming {
            body.extend_from_slice(chunk);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        pending.extend_from_slice(chunk);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if show == Show::Raw {
                // Log lines are the containers' own bytes: nothing in them may drive the terminal.
                let mut safe = Vec::with_capacity(line.len());
                keel_plan::text::escape(&line[..line.len() - 1], &mut safe);
                safe.push(b'\n');
                std::io::Write::write_all(&mut out, &safe)?;
            } else {
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                writeln!(out, "{}", client::event_line(&v))?;
            }
        }
        std::io::Write::flush(&mut out)
    });
    if streaming && show == Show::Raw && !pending.is_empty() {
        let mut safe = Vec::new();
        keel_plan::text::escape(&pending, &mut safe);
        println!("{}", String::from_utf8_lossy(&safe));
    }
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel {command}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if status >= 400 {
        eprintln!("keel {command}: {} (HTTP {status})", client::message(&body));
        return ExitCode::FAILURE;
    }
    if streaming {
        return ExitCode::SUCCESS;
    }
    if api.json {
        print!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match show {
        Show::Ps => print!("{}", client::ps_table(&v)),
        Show::Events => {
            for e in v.as_array().into_iter().flatten() {
                println!("{}", client::event_line(e));
            }
        }
        _ => println!("{}", client::message(&body)),
    }
    ExitCode::SUCCESS
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

/// The `--arch` flag of `keel COMMAND`, checked before anything else: a bad value is the flag's
/// fault, not the config's.
fn arch_flag(command: &str, arch: Option<&str>) -> Result<Option<Arch>, ExitCode> {
    match arch {
        None => Ok(None),
        Some(a) => Arch::parse(a).map(Some).ok_or_else(|| {
            eprintln!("keel {command}: --arch: unknown arch `{a}` (expected x86_64 or aarch64)");
            ExitCode::from(EXIT_INPUT)
        }),
    }
}

/// Every flag of `keel run`, checked before anything starts.
fn run_flags(
    arch: Option<&str>,
    accel: Option<&str>,
    timeout: &str,
    memory: Option<&str>,
    publish: &[String],
    varstore: Option<&Path>,
) -> Result<(), String> {
    if let Some(a) = arch {
        keel_qemu::Arch::from_str(a).map_err(|e| format!("--arch: {e}"))?;
    }
    if let Some(a) = accel {
        keel_qemu::Accel::from_str(a).map_err(|e| format!("--accel: {e}"))?;
    }
    match units::parse_duration(timeout) {
        Ok(d) if d.is_zero() => return Err(format!("--timeout: `{timeout}` is no time at all")),
        Ok(_) => {}
        Err(e) => return Err(format!("--timeout: {e}")),
    }
    if let Some(m) = memory {
        memory_flag(m).map_err(|e| format!("--memory: {e}"))?;
    }
    for p in publish {
        p.parse::<keel_qemu::Publish>().map_err(|e| format!("--publish: {e}"))?;
    }
    if let Some(v) = varstore.filter(|v| !v.is_file()) {
        return Err(format!("--varstore: {}: no such file", v.display()));
    }
    Ok(())
}

/// `--memory`: a size with a unit, at least [`MIN_MEMORY_MIB`]; in MiB.
fn memory_flag(m: &str) -> Result<u64, String> {
    let t = m.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{m}` has no unit: write it with one, e.g. {t}MiB"));
    }
    let mib = units::parse_size(t)? >> 20;
    if mib < MIN_MEMORY_MIB {
        return Err(format!("`{m}` is too little: the firmware and the kernel need at least {MIN_MEMORY_MIB}MiB"));
    }
    if mib > u64::from(u32::MAX) {
        return Err(format!("`{m}` is too large"));
    }
    Ok(mib)
}

fn cmd_check(path: &Path, arch: Option<Arch>) -> Result<(), BuildError> {
    let config = Config::load(path)?;
    let arch = arch.unwrap_or(config.arch);
    let p = build::prepare(&config, arch, &Progress::new(false, true))?;
    println!(
        "{}: ok ({arch}, kernel {} with {} modules, {} container(s), {} image(s), {} layer(s) verified)",
        path.display(),
        p.kernel.release,
        p.modules.len(),
        p.images.containers.len(),
        p.images.images,
        p.images.stats.layers
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

fn cmd_build(
    path: &Path,
    arch: Option<Arch>,
    out: &Path,
    init: Option<PathBuf>,
    report_as: Report,
) -> Result<(), BuildError> {
    let started = std::time::Instant::now();
    let config = Config::load(path)?;
    let arch = arch.unwrap_or(config.arch);
    let progress = Progress::new(report_as == Report::Text, report_as != Report::Quiet);
    let prepared = build::prepare(&config, arch, &progress)?;
    let init = match init {
        Some(p) => p,
        None => default_init(arch).map_err(BuildError::Other)?,
    };
    let artifacts = build::write(&config, arch, prepared, out, &build::Inputs { init }, &progress)?;
    let files = artifacts
        .files
        .iter()
        .map(|f| FileInfo::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let steps = progress.times();
    let summary = Summary {
        name: &config.name,
        config: path,
        arch,
        artifacts: &artifacts,
        files: &files,
        steps: &steps,
        seconds: started.elapsed().as_secs_f64(),
    };
    match report_as {
        Report::Text => print!("{}", summary.text()),
        Report::Json => println!("{}", summary.json()),
        Report::Quiet => {}
    }
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
