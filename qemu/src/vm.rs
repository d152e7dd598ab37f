//! A running QEMU: start it, watch its console, talk QMP to it, stop it.

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::args::{qemu_args, RunFiles};
use crate::console::{spawn_reader, Console, Cursor, Wait};
use crate::disk::{self, DiskFormat};
use crate::error::TAIL_LINES;
use crate::{find_qemu, find_qemu_img, sys, Arch, Boot, Error, Firmware, Line, Result, VmConfig};

/// The line Linux prints when the guest powers off (`reboot(LINUX_REBOOT_CMD_POWER_OFF)`), at
/// emergency level so `quiet` does not hide it (`loglevel=0` would).
pub const POWER_DOWN_LINE: &str = "reboot: Power down";

/// How long to wait for QMP replies and for QEMU to create its QMP socket.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// After QEMU exits, how long the console reader may take to drain the pipe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type QmpSession = crate::qmp::Qmp<BufReader<UnixStream>, UnixStream>;

/// A running (or finished) QEMU process with its console capture.
///
/// Dropping a `Vm` kills QEMU (SIGKILL), reaps it and deletes its temporary files (overlay,
/// firmware variables, QMP socket). QEMU is also killed by the kernel if the thread that started
/// it exits first (see [`Vm::start`]).
pub struct Vm {
    child: Child,
    status: Option<ExitStatus>,
    console: Arc<Console>,
    stderr: Arc<Console>,
    readers: Vec<JoinHandle<()>>,
    cursor: Cursor,
    qmp: Option<QmpSession>,
    qmp_socket: PathBuf,
    started: Instant,
    command: Vec<OsString>,
    /// Holds the overlay, the firmware variables and the QMP socket; removed on drop.
    _dir: TempDir,
}

impl Vm {
    /// Prepares the per-VM files and starts QEMU.
    ///
    /// For a disk, with `disk_snapshot` a qcow2 overlay is created with `qemu-img` in a private
    /// temporary directory; disk boots get a private copy of the firmware's variable store there.
    /// QEMU runs with stdin on /dev/null, the serial console on its stdout and its stderr
    /// captured. The kernel kills QEMU if the thread calling this exits before the `Vm` is dropped,
    /// so call it from a thread that outlives the `Vm`.
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        cfg.validate()?;
        let qemu = match &cfg.qemu {
            Some(path) => path.clone(),
            None => find_qemu(cfg.arch)?,
        };
        let dir = temp_dir()?;
        let files = prepare_files(cfg, dir.path())?;
        let args = qemu_args(cfg, &files);

        let mut command = Command::new(&qemu);
        command.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        sys::kill_with_parent(&mut command);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| Error::Spawn { program: qemu.clone(), source })?;

        let (out, err) = (child.stdout.take(), child.stderr.take());
        let mut command_line = vec![qemu.into_os_string()];
        command_line.extend(args);
        let mut vm = Vm {
            child,
            status: None,
            console: Arc::new(Console::new(started)),
            stderr: Arc::new(Console::new(started)),
            readers: Vec::new(),
            cursor: Cursor::default(),
            qmp: None,
            qmp_socket: files.qmp_socket,
            started,
            command: command_line,
            _dir: dir,
        };
        // From here on, returning an error drops `vm`, which kills QEMU.
        let context = "starting console capture threads";
        let (Some(out), Some(err)) = (out, err) else {
            return Err(Error::io(context, std::io::Error::other("QEMU's stdout or stderr is not piped")));
        };
        let echo = |sink: Box<dyn Write + Send>| cfg.serial_echo.then_some(sink);
        let serial =
            spawn_reader("qemu-serial", out, vm.console.clone(), echo(Box::new(std::io::stdout())), cfg.serial_rate);
        vm.readers.push(serial.map_err(|e| Error::io(context, e))?);
        let stderr = spawn_reader("qemu-stderr", err, vm.stderr.clone(), echo(Box::new(std::io::stderr())), None);
        vm.readers.push(stderr.map_err(|e| Error::io(context, e))?);
        Ok(vm)
    }

    /// Waits until a complete console line at or after the previous match contains `pattern`
    /// (plain substring) and returns it.
    ///
    /// The console is consumed in order like `expect`: each match moves a cursor just past it, so
    /// successive calls find successive lines (or later text on the same line). Only complete
    /// lines are searched. On timeout the VM is killed and [`Error::Timeout`] returned; if QEMU
    /// exits first, [`Error::VmExited`]. Both carry the console's last lines.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<Line> {
        let deadline = Instant::now() + timeout;
        match self.console.wait_for(pattern, &mut self.cursor, deadline) {
            Wait::Found(line) => Ok(line),
            Wait::Closed => {
                let status = self.reap_after_close(Instant::now() + DRAIN_TIMEOUT)?;
                Err(Error::VmExited {
                    waiting_for: format!("`{pattern}`"),
                    status,
                    console_tail: self.console.tail(TAIL_LINES),
                    stderr: self.stderr.tail(TAIL_LINES),
                })
            }
            Wait::TimedOut => {
                self.kill();
                Err(self.timeout_error(format!("`{pattern}`"), timeout))
            }
        }
    }

    /// Everything the console printed so far (complete lines and the unfinished one), invalid
    /// UTF-8 replaced, `\r` removed, ANSI escapes kept.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// All complete console lines so far, with their arrival times.
    pub fn lines(&self) -> Vec<Line> {
        self.console.lines()
    }

    /// What QEMU itself wrote to stderr so far (warnings, errors).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// When QEMU was started; [`Line::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The full command line QEMU was started with, program first.
    pub fn command(&self) -> &[OsString] {
        &self.command
    }

    /// Presses the virtual power button (QMP `system_powerdown`: ACPI on x86_64, a GPIO key on
    /// aarch64). Returns once QEMU accepted the command; the guest decides whether to power off,
    /// so follow with [`Vm::wait_exit`].
    pub fn powerdown(&mut self) -> Result<()> {
        self.qmp("system_powerdown", None).map(drop)
    }

    /// Runs a QMP command and returns its `return` value. Connects (and does the capabilities
    /// handshake) on first use.
    pub fn qmp(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let fail = |detail: String| Error::Qmp { command: command.to_owned(), detail };
        if self.try_status()?.is_some() {
            return Err(fail("the VM has exited".into()));
        }
        if self.qmp.is_none() {
            self.qmp =
                Some(self.qmp_connect().map_err(|detail| Error::Qmp { command: "qmp_capabilities".into(), detail })?);
        }
        let session = self.qmp.as_mut().expect("connected above");
        let result = session.execute(command, arguments);
        if result.is_err() {
            // Do not reuse a session whose stream may be out of step.
            self.qmp = None;
        }
        result.map_err(fail)
    }

    /// Waits up to `timeout` for QEMU to exit and returns its status, also waiting for the console
    /// capture to drain. Status 0 means the guest powered off or, because of `-no-reboot`,
    /// rebooted (see [`RunOutcome::clean_poweroff`]). On timeout the VM is killed and
    /// [`Error::Timeout`] returned.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        // QEMU closes the serial pipe when it exits: wait for that without polling.
        if self.console.wait_closed(deadline) {
            return self.reap_after_close(deadline.max(Instant::now() + DRAIN_TIMEOUT));
        }
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.kill();
        Err(self.timeout_error("the VM to exit".into(), timeout))
    }

    /// Kills QEMU at once (SIGKILL, no guest shutdown: a power cut) and reaps it. Does nothing if
    /// it has already exited.
    pub fn kill(&mut self) {
        self.qmp = None;
        if self.status.is_some() {
            return;
        }
        // Fails only if the process was already reaped, which `status` rules out.
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }

    /// QEMU's exit status if it has exited, without waiting.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|e| Error::io("checking on QEMU", e))?;
        }
        Ok(self.status)
    }

    /// After the serial stream closed (QEMU is exiting): wait for the process until `deadline`,
    /// killing it if it lingers, and let the stderr reader drain.
    fn reap_after_close(&mut self, deadline: Instant) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_status()? {
                self.stderr.wait_closed(Instant::now() + DRAIN_TIMEOUT);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return self.status.ok_or_else(|| Error::io("reaping QEMU", std::io::Error::other("wait failed")));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn timeout_error(&self, waiting_for: String, after: Duration) -> Error {
        Error::Timeout {
            waiting_for,
            after,
            console_tail: self.console.tail(TAIL_LINES),
            stderr: self.stderr.tail(TAIL_LINES),
        }
    }

    /// Connects to the QMP socket, retrying while QEMU is still creating it.
    fn qmp_connect(&mut self) -> std::result::Result<QmpSession, String> {
        let deadline = Instant::now() + QMP_TIMEOUT;
        let stream = loop {
            match UnixStream::connect(&self.qmp_socket) {
                Ok(stream) => break stream,
                Err(e) => {
                    if Instant::now() >= deadline || matches!(self.try_status(), Ok(Some(_))) {
                        return Err(format!("connecting to {}: {e}", self.qmp_socket.display()));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        stream.set_read_timeout(Some(QMP_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(QMP_TIMEOUT)).map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        crate::qmp::Qmp::handshake(reader, stream)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        // QEMU is dead, so its pipes are closed and the readers finish promptly (joining them means
        // echoed output is complete). Should something else hold a pipe open, leave them running
        // rather than hang.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for reader in self.readers.drain(..).filter(|r| r.is_finished()) {
            let _ = reader.join();
        }
    }
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("pid", &self.child.id()).field("status", &self.status).finish_non_exhaustive()
    }
}

/// What a VM run to its end left behind.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunOutcome {
    /// QEMU's exit status.
    pub status: ExitStatus,
    /// The guest powered off by itself: QEMU exited with status 0 *and* the console shows the
    /// kernel's [`POWER_DOWN_LINE`]. Status 0 alone is not enough, because with `-no-reboot` a
    /// guest reboot (or a panic with `panic=-1`) also ends QEMU with status 0.
    pub clean_poweroff: bool,
    /// The whole console (see [`Vm::console`]).
    pub console: String,
    /// Every complete console line with its arrival time.
    pub lines: Vec<Line>,
    /// What QEMU wrote to stderr.
    pub stderr: String,
    /// From starting QEMU to noticing its exit.
    pub wall: Duration,
}

/// Boots `cfg`, waits up to `timeout` for QEMU to exit, and reports what happened. On timeout the
/// VM is killed and [`Error::Timeout`] (with the console tail) returned.
pub fn run_to_exit(cfg: &VmConfig, timeout: Duration) -> Result<RunOutcome> {
    let mut vm = Vm::start(cfg)?;
    let status = vm.wait_exit(timeout)?;
    let wall = vm.started.elapsed();
    let lines = vm.lines();
    let clean_poweroff = status.success() && powered_off_cleanly(&lines);
    Ok(RunOutcome { status, clean_poweroff, console: vm.console(), lines, stderr: vm.stderr(), wall })
}

/// keel-init's last line (`keel_plan::FINAL_POWER_OFF`, written once every other process is
/// dead), then the kernel's [`POWER_DOWN_LINE`] as a line of its own (after its optional
/// `[ seconds]` stamp), and no line of keel-init's after it. A container's lines all begin
/// `NAME| ` with their control characters escaped, so none of them counts.
pub fn powered_off_cleanly(lines: &[Line]) -> bool {
    let Some(last) = lines.iter().rposition(|l| l.text.starts_with("keel: ")) else { return false };
    let kernel_says = |l: &Line| {
        let t = l.text.trim_end();
        let t = match t.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(t, |(_, after)| after),
            None => t,
        };
        t == POWER_DOWN_LINE
    };
    lines[last].text.trim_end() == keel_plan::FINAL_POWER_OFF && lines[last..].iter().any(kernel_says)
}

/// A private temporary directory, short enough for a unix socket path (108 bytes) inside it.
fn temp_dir() -> Result<TempDir> {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("keel-qemu-");
        b
    };
    let dir = builder().tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
    if dir.path().as_os_str().len() <= 90 {
        return Ok(dir);
    }
    builder().tempdir_in("/tmp").map_err(|e| Error::io("creating a temporary directory in /tmp", e))
}

/// Creates the overlay and the firmware variables in `dir`, and names the QMP socket.
fn prepare_files(cfg: &VmConfig, dir: &Path) -> Result<RunFiles> {
    let disk = match cfg.boot.disk() {
        None => None,
        Some(image) => {
            let format = DiskFormat::detect(image)?;
            if cfg.disk_snapshot {
                let overlay = dir.join("overlay.qcow2");
                disk::create_overlay(&find_qemu_img()?, image, format, &overlay)?;
                Some((overlay, DiskFormat::Qcow2))
            } else {
                Some((image.clone(), format))
            }
        }
    };
    let firmware = match (&cfg.boot, &cfg.firmware) {
        (Boot::Kernel { .. }, None) => None,
        (_, Some(fw)) => Some(fw.clone()),
        (Boot::Disk(_), None) if cfg.secure_boot => Some(Firmware::find_secure_boot(cfg.arch)?),
        (Boot::Disk(_), None) => Some(Firmware::find(cfg.arch)?),
    };
    let firmware = match firmware {
        None => None,
        Some(fw) => {
            let vars = dir.join(vars_file_name(cfg.arch));
            fw.copy_vars(cfg.arch, &vars)?;
            Some((fw.code, vars))
        }
    };
    Ok(RunFiles { qmp_socket: dir.join("qmp.sock"), disk, firmware })
}

fn vars_file_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "OVMF_VARS.fd",
        Arch::Aarch64 => "AAVMF_VARS.fd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<Line> {
        text.iter().map(|t| Line { text: t.to_string(), at: Duration::ZERO }).collect()
    }

    /// Finding 7 of the hardening review: only keel-init's final line, then the kernel's, make
    /// a clean power-off; a container printing the kernel's words does not.
    #[test]
    fn a_clean_power_off_is_keels_final_line_then_the_kernels() {
        let fin = keel_plan::FINAL_POWER_OFF;
        assert!(powered_off_cleanly(&lines(&[
            "keel: timeline shutdown-end",
            fin,
            "[    3.141592] reboot: Power down"
        ])));
        assert!(powered_off_cleanly(&lines(&[fin, "reboot: Power down"])));
        // A container's imitation, and keel-init still talking after its "final" line.
        assert!(!powered_off_cleanly(&lines(&["web| reboot: Power down"])));
        assert!(!powered_off_cleanly(&lines(&["web| keel: powering off now", "web| reboot: Power down"])));
        assert!(!powered_off_cleanly(&lines(&[fin, "web| reboot: Power down"])));
        assert!(!powered_off_cleanly(&lines(&[fin, "reboot: Power down", "keel: fatal: something"])));
        assert!(!powered_off_cleanly(&lines(&["reboot: Power down"])), "the kernel alone (keel-init died)");
        assert!(!powered_off_cleanly(&lines(&[fin])), "no power-down from the kernel");
    }
}
