//! The event loop: container output to the console, every child reaped, exited containers
//! restarted per their policy, shutdown signals obeyed.
//!
//! One `poll` over a signalfd (SIGCHLD and the shutdown signals, blocked), the power buttons'
//! input devices and each container's stdout and stderr pipes, waking for the next deadline (a
//! stop's, a restart's, a health check's). Containers start once their `depends-on` run (and are
//! healthy, when they have a health check); a stop goes in reverse dependency order. Decisions are
//! [`Lifecycle`]'s, [`lifecycle::stop_step`]'s, [`restart`]'s and [`crate::health`]'s; this module does
//! the I/O.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use keel_plan::{HealthCheck, OnExit};
use keel_runtime::{signal_name, Cgroup, ExitStatus, Host, Pending, Running, RuntimeError};

use crate::api::{self, Call, Command, ContainerView, Snapshot};
use crate::console;
use crate::health::{Verdict, Watch};
use crate::lifecycle::{self, Lifecycle, Send, StopView};
use crate::logs::{self, Logs};
use crate::network::Network;
use crate::oom::{self, OomWatch};
use crate::output::{self, Lines};
use crate::power::Button;
use crate::restart::{self, Backoff};
use crate::shutdown::Action;
use crate::sys::{self, Reaped};
use crate::timeline::{self, Event};
use crate::usage::{self, Usage};
use crate::verity::Mapped;

/// How much of a health check's output is kept (its last line explains a failure).
const CHECK_TAIL: usize = 4096;

/// Read at most this many chunks from one pipe per wakeup, so a chatty container cannot starve
/// the others or the signals.
const CHUNKS_PER_WAKEUP: usize = 16;
const CHUNK: usize = 4096;
/// Chunks read from each pipe of a container after it exited: 1 MiB, the largest pipe an
/// unprivileged process may ask for (`/proc/sys/fs/pipe-max-size`).
const DRAIN_CHUNKS: usize = 256;
/// Time given to each pipe of a container after it exited.
const DRAIN_WITHIN: Duration = Duration::from_millis(200);

/// Where container output goes: the console and the log files in init, a recorder in tests.
trait Sink {
    /// One finished line of container `name`'s `stream`.
    fn line(&mut self, name: &str, stream: logs::Stream, line: &[u8]);
    /// Container `name` wrote its first bytes.
    fn first_output(&mut self, name: &str);
}

/// The console, with the timeline, and the log files.
struct ConsoleSink<'l> {
    logs: &'l mut Logs,
}

impl Sink for ConsoleSink<'_> {
    fn line(&mut self, name: &str, stream: logs::Stream, line: &[u8]) {
        console::write_from(&output::prefixed(name, line), console::Origin::Container);
        self.logs.line(name, stream, line);
    }

    fn first_output(&mut self, name: &str) {
        timeline::mark(Event::ContainerFirstOutput(name));
    }
}

#[derive(Debug)]
struct Stream {
    file: File,
    lines: Lines,
}

impl Stream {
    fn new(fd: OwnedFd) -> io::Result<Stream> {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(Stream { file: File::from(fd), lines: Lines::default() })
    }
}

#[derive(Debug)]
struct Tracked {
    name: String,
    /// `None` once its first process has been reaped.
    pid: Option<libc::pid_t>,
    /// stdout, stderr; `None` once at EOF.
    streams: [Option<Stream>; 2],
    spoke: bool,
    oom: OomWatch,
    /// What it was started from, to start it again.
    plan: keel_plan::Container,
    /// When its current (or last) run started.
    started: Instant,
    backoff: Backoff,
    /// When it is to be started again, after it exited.
    restart_at: Option<Instant>,
    /// Indices of the containers it depends on.
    deps: Vec<usize>,
    /// Not started yet: waiting for its dependencies.
    pending: bool,
    /// Said that it waits for its dependencies.
    said_waiting: bool,
    /// Its cgroup (health checks join it).
    cgroup: Option<Cgroup>,
    /// Its health checks, for the current run.
    health: Option<Watch>,
    /// The output of the health check in flight.
    check_output: Option<File>,
    /// Whether the `cmd` check in flight exec'd, to be asked once it is reaped.
    check_exec: Option<Pending>,
    /// The last [`CHECK_TAIL`] bytes it wrote.
    check_tail: Vec<u8>,
    /// When this run was sent SIGTERM, and SIGKILL.
    term_at: Option<Instant>,
    kill_at: Option<Instant>,
    /// This run was stopped for failing its health checks (a failure, whatever its exit status).
    unhealthy: bool,
    /// Times it was started again (by its policy or through the API).
    restarts: u32,
    /// Stopped through the API: not restarted until started through it.
    held: bool,
    /// Stopped through the API to be restarted at once.
    api_restart: bool,
    /// How its last run ended.
    last_exit: Option<String>,
    /// Wall-clock start of its current (or last) run, seconds since the epoch.
    started_wall: Option<f64>,
}

impl Tracked {
    /// Container `plan`, not started yet, depending on the containers at `deps`.
    fn new(plan: &keel_plan::Container, deps: Vec<usize>) -> Tracked {
        Tracked {
            name: plan.name.clone(),
            pid: None,
            streams: [None, None],
            spoke: false,
            oom: OomWatch::new(None),
            plan: plan.clone(),
            started: Instant::now(),
            backoff: Backoff::new(plan.restart_delay),
            restart_at: None,
            deps,
            pending: true,
            said_waiting: false,
            cgroup: None,
            health: None,
            check_output: None,
            check_exec: None,
            check_tail: Vec::new(),
            term_at: None,
            kill_at: None,
            unhealthy: false,
            restarts: 0,
            held: false,
            api_restart: false,
            last_exit: None,
            started_wall: None,
        }
    }

    /// How the API shows it.
    fn view(&self) -> ContainerView {
        let state = if self.pid.is_some() {
            if self.term_at.is_some() {
                "stopping"
            } else {
                "running"
            }
        } else if self.pending {
            "waiting"
        } else if self.restart_at.is_some() {
            "restarting"
        } else if self.held {
            "stopped"
        } else {
            "exited"
        };
        let health = match (&self.plan.health, &self.health, self.pid) {
            (None, _, _) | (_, _, None) => None,
            (Some(_), Some(w), Some(_)) if w.healthy() => Some("healthy"),
            (Some(_), _, Some(_)) if self.unhealthy => Some("unhealthy"),
            (Some(_), _, Some(_)) => Some("starting"),
        };
        ContainerView {
            name: self.name.clone(),
            state,
            pid: self.pid,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            health,
            started_at: self.started_wall,
            addresses: self
                .plan
                .net
                .iter()
                .flat_map(|n| &n.addresses)
                .map(|a| (a.network.clone(), a.address.to_string()))
                .collect(),
            host_if: self.plan.net.as_ref().map(|n| n.host_if.clone()),
            memory_max: self.plan.limits.memory_max,
        }
    }

    /// Copy output from stream `index` to `sink`: at most `limit` chunks, or until the pipe is
    /// empty. Closes the stream at EOF, flushing its last unfinished line. True when it stopped
    /// at `limit` (there may be more), false when the pipe was empty, ended or failed.
    fn pump(&mut self, index: usize, limit: usize, sink: &mut dyn Sink) -> bool {
        let Tracked { name, streams, spoke, .. } = self;
        let Some(slot) = streams.get_mut(index) else { return false };
        let kind = logs::Stream::of_pipe(index);
        let mut buf = [0u8; CHUNK];
        for _ in 0..limit {
            let Some(stream) = slot.as_mut() else { return false };
            match stream.file.read(&mut buf) {
                Ok(0) => {
                    stream.lines.finish(|l| sink.line(name, kind, l));
                    *slot = None;
                    return false;
                }
                Ok(n) => {
                    if !*spoke {
                        *spoke = true;
                        sink.first_output(name);
                    }
                    let data = buf.get(..n).unwrap_or_default();
                    stream.lines.push(data, |l| sink.line(name, kind, l));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    console::say(format_args!("read the output of container {name}: {e}"));
                    *slot = None;
                    return false;
                }
            }
        }
        true
    }

    /// After its first process ended: copy what is left in the pipes, at most [`DRAIN_CHUNKS`]
    /// chunks and [`DRAIN_WITHIN`] per stream, never waiting for more. Its pid namespace is
    /// gone, so its own writers are too, and a pipe ends within what it holds. A pipe that is
    /// empty but not ended, or still full at the bound, is held by a process outside the
    /// container (its end passed over a socket on a shared volume): it is closed here, its
    /// last line flushed. Returns whether any was.
    fn drain(&mut self, sink: &mut dyn Sink) -> bool {
        let mut cut = false;
        for index in 0..self.streams.len() {
            let deadline = Instant::now() + DRAIN_WITHIN;
            for _ in 0..DRAIN_CHUNKS {
                if Instant::now() >= deadline || !self.pump(index, 1, sink) {
                    break;
                }
            }
            let Tracked { name, streams, .. } = self;
            if let Some(mut stream) = streams.get_mut(index).and_then(Option::take) {
                let kind = logs::Stream::of_pipe(index);
                stream.lines.finish(|l| sink.line(name, kind, l));
                cut = true;
            }
        }
        cut
    }
}

/// Supervises the started containers until the machine is done.
#[derive(Debug)]
pub struct Supervisor<'a> {
    host: Host<'a>,
    containers: Vec<Tracked>,
    signals: OwnedFd,
    buttons: Vec<Button>,
    life: Lifecycle,
    said_idle: bool,
    /// The containers' log files on keel-data.
    logs: Logs,
    /// The uplink's DHCP client.
    net: Network,
    /// The API's channel, when `[api]` is on.
    api: Option<api::Link>,
    /// The audit log of mutating API calls (`audit/api.log` on keel-data).
    audit: Logs,
    /// keel-images through dm-verity, when the command line asks for it.
    verity: Option<Mapped>,
}

impl<'a> Supervisor<'a> {
    /// `signals` is the signalfd for SIGCHLD and the shutdown signals; a press on one of
    /// `buttons` stops gracefully and powers off; containers get `grace` between SIGTERM and
    /// SIGKILL; `containers` are started on `host` by [`Supervisor::run`], each once its
    /// dependencies run; their output is also written to log files on keel-data, bounded by `logs`.
    pub fn new(
        host: Host<'a>,
        signals: OwnedFd,
        buttons: Vec<Button>,
        on_exit: OnExit,
        grace: Duration,
        containers: &[keel_plan::Container],
        logs: keel_plan::Logs,
    ) -> Supervisor<'a> {
        let index = |name: &str| containers.iter().position(|c| c.name == name);
        let containers = containers
            .iter()
            // The builder checked every name (and that there is no cycle).
            .map(|c| Tracked::new(c, c.depends_on.iter().filter_map(|d| index(d)).collect()))
            .collect();
        let audit = Logs::new(Path::new(keel_plan::DATA_MOUNT).join(api::AUDIT_DIR), logs);
        let logs = Logs::new(Path::new(keel_plan::DATA_MOUNT).join(logs::DIR), logs);
        Supervisor {
            host,
            containers,
            signals,
            buttons,
            life: Lifecycle::new(on_exit, grace),
            said_idle: false,
            logs,
            net: Network::none(),
            api: None,
            audit,
            verity: None,
        }
    }

    /// Say, when a container fails, whether dm-verity has found keel-images corrupted.
    pub fn with_verity(mut self, verity: Option<Mapped>) -> Supervisor<'a> {
        self.verity = verity;
        self
    }

    /// Serve API calls through `link`.
    pub fn with_api(mut self, link: Option<api::Link>) -> Supervisor<'a> {
        self.api = link;
        self
    }

    /// Record an event for the API.
    fn event(&mut self, kind: &'static str, container: Option<&str>, message: String) {
        if let Some(a) = self.api.as_mut() {
            a.event(kind, container, message);
        }
    }

    /// Publish the state for the API (never waits).
    fn publish(&mut self) {
        let Some(a) = self.api.as_mut() else { return };
        let snapshot = Snapshot {
            containers: self.containers.iter().map(Tracked::view).collect(),
            stopping: !self.life.may_restart(),
        };
        a.publish(Some(snapshot));
    }

    /// Drive the uplink's DHCP client from the poll loop too.
    pub fn with_network(mut self, net: Network) -> Supervisor<'a> {
        self.net = net;
        self
    }

    /// Run until the machine is done; returns how to shut down.
    pub fn run(mut self) -> Action {
        loop {
            if self.life.may_restart() {
                self.start_ready(Instant::now());
            }
            if let Some(action) = self.life.finished() {
                self.say_never_started();
                if self.life.gave_up() {
                    console::say("containers still running after SIGKILL; shutting down anyway");
                }
                self.publish();
                // Before keel-data is unmounted.
                self.logs.close();
                self.audit.close();
                return action;
            }
            if self.life.idle() && !self.said_idle {
                self.say_never_started();
                console::say("every container has exited; waiting for a shutdown signal");
                self.said_idle = true;
            }
            self.publish();
            self.wait_and_handle();
            self.check_oom();
            self.health_tick(Instant::now());
            self.stop_tick(Instant::now());
            self.restart_due(Instant::now());
        }
    }

    fn wait_and_handle(&mut self) {
        let mut fds = vec![libc::pollfd { fd: self.signals.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        fds.extend(self.buttons.iter().map(|b| libc::pollfd {
            fd: b.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let net_fd = self.net.fd().map(|fd| {
            fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            fds.len() - 1
        });
        let api_fd = self.api.as_ref().map(|a| {
            fds.push(libc::pollfd { fd: a.fd(), events: libc::POLLIN, revents: 0 });
            fds.len() - 1
        });
        let first_stream = fds.len();
        let mut owners = Vec::new();
        for (ci, c) in self.containers.iter().enumerate() {
            for (si, s) in c.streams.iter().enumerate() {
                if let Some(s) = s {
                    fds.push(libc::pollfd { fd: s.file.as_raw_fd(), events: libc::POLLIN, revents: 0 });
                    owners.push((ci, si));
                }
            }
        }
        // While containers run, wake at least once per oom::INTERVAL to read their OOM counters;
        // wake for the next restart.
        let now = Instant::now();
        let mut timeout: Option<Duration> = None;
        let mut wake = |t: Duration| timeout = Some(timeout.map_or(t, |old| old.min(t)));
        if self.signalled() {
            if let Some(at) = lifecycle::stop_wake(&self.stop_views(), self.life.grace(), now) {
                wake(at.saturating_duration_since(now));
            }
        }
        let stopping = self.life.stopping();
        for c in self.containers.iter().filter(|c| c.pid.is_some()) {
            let Some(h) = c.health.as_ref() else { continue };
            // A check in flight (its timeout), or one that may start (not while stopping).
            if h.running().is_some() || (!stopping && c.term_at.is_none()) {
                wake(h.wake().saturating_duration_since(now));
            }
        }
        if self.containers.iter().any(|c| c.pid.is_some()) {
            wake(oom::INTERVAL);
        }
        if let Some(next) = self.containers.iter().filter_map(|c| c.restart_at).min() {
            wake(next.saturating_duration_since(now));
        }
        if let Some(t) = self.net.wake(now) {
            wake(t);
        }
        if self.api.as_ref().is_some_and(api::Link::behind) {
            wake(Duration::from_millis(10));
        }
        match sys::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                console::say(format_args!("poll: {e}"));
                thread::sleep(Duration::from_millis(100));
                return;
            }
        }
        for (pfd, (ci, si)) in fds.iter().skip(first_stream).zip(owners) {
            if pfd.revents != 0 {
                if let Some(c) = self.containers.get_mut(ci) {
                    c.pump(si, CHUNKS_PER_WAKEUP, &mut ConsoleSink { logs: &mut self.logs });
                }
            }
        }
        self.net.tick(net_fd.and_then(|i| fds.get(i)).is_some_and(|p| p.revents != 0));
        let api_ready = api_fd.and_then(|i| fds.get(i)).is_some_and(|p| p.revents != 0);
        if api_ready || self.api.as_ref().is_some_and(api::Link::backlog) {
            // At most api::PER_WAKEUP, and one audit sync for all of them.
            let commands = self.api.as_mut().map(api::Link::commands).unwrap_or_default();
            for cmd in &commands {
                self.command(cmd, Instant::now());
            }
            if !commands.is_empty() {
                self.audit.flush("api");
            }
        }
        let ready: Vec<usize> =
            (0..self.buttons.len()).filter(|&i| fds.get(1 + i).is_some_and(|p| p.revents != 0)).collect();
        if !ready.is_empty() {
            self.handle_buttons(&ready);
        }
        if fds.first().is_some_and(|p| p.revents != 0) {
            self.handle_signals();
        }
    }

    /// Read the power buttons at `ready` (indices); a press stops gracefully and powers off.
    fn handle_buttons(&mut self, ready: &[usize]) {
        let mut pressed = false;
        let mut gone = Vec::new();
        for &i in ready {
            let Some(b) = self.buttons.get_mut(i) else { continue };
            match b.pressed() {
                Ok(p) => pressed |= p,
                Err(e) => {
                    console::say(format_args!("power button {} ({}): {e}; no longer watched", b.node, b.name));
                    gone.push(i);
                }
            }
        }
        for i in gone.into_iter().rev() {
            self.buttons.remove(i);
        }
        if pressed {
            if self.life.stop(Action::Poweroff) {
                console::say("power button pressed: stopping containers");
                self.begin_stop(Instant::now());
            } else {
                console::say("power button pressed: shutting down");
            }
        }
    }

    fn handle_signals(&mut self) {
        let signals = match sys::read_signals(self.signals.as_fd()) {
            Ok(s) => s,
            Err(e) => {
                console::say(format_args!("read signals: {e}"));
                return;
            }
        };
        for sig in signals {
            match sig {
                libc::SIGCHLD => self.reap(),
                libc::SIGTERM | libc::SIGINT | libc::SIGPWR => {
                    if self.life.signal(sig) {
                        console::say(format_args!("{} received: stopping containers", signal_name(sig)));
                        self.begin_stop(Instant::now());
                    } else {
                        console::say(format_args!("{} received: shutting down", signal_name(sig)));
                    }
                }
                other => console::say(format_args!("{} received: ignored", signal_name(other))),
            }
        }
    }

    /// Reap every ended child: containers' first processes and any orphan.
    fn reap(&mut self) {
        loop {
            match sys::reap_one() {
                Ok(Reaped::Child(pid, status)) => self.exited(pid, ExitStatus::from_wait_status(status)),
                Ok(Reaped::Running | Reaped::NoChildren) => return,
                Err(e) => {
                    console::say(format_args!("waitpid: {e}"));
                    return;
                }
            }
        }
    }

    fn exited(&mut self, pid: libc::pid_t, status: ExitStatus) {
        if let Some(i) = self.containers.iter().position(|c| c.health.as_ref().and_then(Watch::running) == Some(pid)) {
            self.check_done(i, status);
            return;
        }
        // Asked before `c` is borrowed; the device-mapper status is one bounded ioctl.
        let corrupted = !status.success() && self.images_corrupted();
        let Some(c) = self.containers.iter_mut().find(|c| c.pid == Some(pid)) else {
            return; // an orphan, now reaped
        };
        if c.drain(&mut ConsoleSink { logs: &mut self.logs }) {
            let m = format!("container {}: its output is still held open by another process; closed", c.name);
            console::say(&m);
            self.logs.note(&c.name, &m);
        }
        c.pid = None;
        if let Some(m) = c.oom.check(&c.name) {
            console::say(&m);
            self.logs.note(&c.name, &m);
        }
        if corrupted {
            let m = corruption_message(&c.name, &status.to_string());
            console::say(&m);
            self.logs.note(&c.name, &m);
        }
        console::say(format_args!("container {} {status}", c.name));
        self.logs.note(&c.name, &format!("container {} {status}", c.name));
        c.last_exit = Some(status.to_string());
        self.logs.flush(&c.name);
        timeline::mark(Event::ContainerExit(&c.name, status));
        self.life.exited();
        c.health = None;
        c.check_output = None;
        c.check_exec = None;
        let failed = c.unhealthy && c.plan.restart != keel_plan::Restart::No;
        let name = c.name.clone();
        if self.life.may_restart() && c.api_restart {
            // Restarted through the API: at once, not after its backoff.
            c.api_restart = false;
            c.restart_at = Some(Instant::now());
            self.life.restart_scheduled();
        } else if self.life.may_restart() && !c.held && (failed || restart::wanted(c.plan.restart, status)) {
            schedule(c, Instant::now());
            self.life.restart_scheduled();
        }
        self.event("exit", Some(&name), format!("container {name} {status}"));
    }

    /// Carry out an API call, record it in the audit log and the events, and answer it; a call
    /// past its deadline (its client was told 504) is recorded as expired and not carried out.
    /// The caller syncs the audit log.
    fn command(&mut self, cmd: &Command, now: Instant) {
        let expired = now >= cmd.deadline;
        let (status, message) = if expired {
            (504, "expired before the supervisor took it; not carried out".to_string())
        } else {
            self.call(&cmd.call, now)
        };
        let what = cmd.call.describe();
        // One JSON object: every value escaped, so none can forge another field.
        let record = serde_json::json!({
            "call": what,
            "peer": cmd.who.peer,
            "subject": cmd.who.subject,
            "sha256": cmd.who.sha256,
            "status": status,
            "result": message,
        });
        self.audit.note("api", &record.to_string());
        // Container names in calls are known ones (checked by the server thread); the subject
        // comes from a verified certificate, control characters stripped: capped all the same.
        let subject: String = cmd.who.subject.chars().take(80).collect();
        console::say(format_args!("api: {what} by {subject}: {status} {message}"));
        let container = match &cmd.call {
            Call::Restart(n) | Call::Stop(n) | Call::Start(n) => Some(n.clone()),
            _ => None,
        };
        self.event("api", container.as_deref(), format!("{what} by {subject}: {status} {message}"));
        if !expired {
            api::answer(cmd, status, message);
        }
    }

    fn call(&mut self, call: &Call, now: Instant) -> (u16, String) {
        let name = match call {
            Call::Reboot | Call::Poweroff => {
                let action = if *call == Call::Reboot { Action::Reboot } else { Action::Poweroff };
                if self.life.stop(action) {
                    console::say("api: stopping containers");
                    self.begin_stop(now);
                }
                return (
                    202,
                    format!(
                        "{}: stopping containers",
                        if *call == Call::Reboot { "rebooting" } else { "powering off" }
                    ),
                );
            }
            Call::Restart(n) | Call::Stop(n) | Call::Start(n) => n,
        };
        if !self.life.may_restart() {
            return (409, "the machine is shutting down".into());
        }
        let Some(c) = self.containers.iter_mut().find(|c| c.name == *name) else {
            return (404, format!("no such container: {name}"));
        };
        if c.pending {
            return (409, format!("container {name} waits for its dependencies"));
        }
        let running = c.pid.is_some();
        match call {
            Call::Stop(_) => {
                if !c.held {
                    // Stays stopped until started through the API; not "exited" for on_exit.
                    c.held = true;
                    self.life.hold();
                }
                if c.restart_at.take().is_some() {
                    self.life.restart_due();
                }
                if !running {
                    return (200, format!("container {name} is not running"));
                }
                if c.term_at.is_none() {
                    c.term_at = Some(now);
                    c.api_restart = false;
                    if let Some(pid) = c.pid {
                        let _ = sys::kill(pid, libc::SIGTERM);
                    }
                }
                (202, format!("stopping container {name}"))
            }
            Call::Restart(_) if running => {
                if std::mem::take(&mut c.held) {
                    self.life.release();
                }
                c.api_restart = true;
                if c.term_at.is_none() {
                    c.term_at = Some(now);
                    if let Some(pid) = c.pid {
                        let _ = sys::kill(pid, libc::SIGTERM);
                    }
                }
                (202, format!("restarting container {name}"))
            }
            Call::Start(_) if running => (409, format!("container {name} is already running")),
            _ => {
                // Not running: start it now (a restart counts as one).
                if std::mem::take(&mut c.held) {
                    self.life.release();
                }
                if c.restart_at.take().is_some() {
                    self.life.restart_due();
                }
                let what = if matches!(call, Call::Restart(_)) { "restart" } else { "start" };
                c.started = now;
                let started = launch(c, &self.host, &mut self.life, what);
                let name = c.name.clone();
                self.launched(&name, what, &started);
                match started {
                    Ok(()) => (200, format!("container {name} {what}ed")),
                    Err(e) => (500, format!("container {name} failed to {what}: {e}")),
                }
            }
        }
    }

    /// Record a launch's outcome as an event.
    fn launched(&mut self, name: &str, what: &'static str, outcome: &Result<(), String>) {
        match outcome {
            Ok(()) => self.event(what, Some(name), format!("container {name} {what}ed")),
            Err(e) => {
                // A corrupted entrypoint fails the exec with EIO, before the container runs.
                if self.images_corrupted() {
                    let m = corruption_message(name, &format!("failed to {what}"));
                    console::say(&m);
                    self.logs.note(name, &m);
                }
                self.event("failed", Some(name), format!("container {name} failed to {what}: {e}"))
            }
        }
    }

    /// Whether dm-verity has seen a block of keel-images that does not match the root hash.
    /// The kernel's flag stays set once raised, so a failure after it is reported with it.
    fn images_corrupted(&self) -> bool {
        self.verity.as_ref().is_some_and(Mapped::corrupted)
    }

    /// Start again the containers whose restart is due at `now`; drop pending restarts if the
    /// machine is stopping.
    fn restart_due(&mut self, now: Instant) {
        let may = self.life.may_restart();
        let mut done = Vec::new();
        for c in self.containers.iter_mut() {
            match c.restart_at {
                Some(at) if !may || at <= now => c.restart_at = None,
                _ => continue,
            }
            if !may {
                continue; // Lifecycle dropped its count when the stop began.
            }
            self.life.restart_due();
            let outcome = launch(c, &self.host, &mut self.life, "restart");
            done.push((c.name.clone(), outcome));
        }
        for (name, outcome) in done {
            self.launched(&name, "restart", &outcome);
        }
    }

    /// Report OOM kills in running containers (those of exited ones are read at exit).
    fn check_oom(&mut self) {
        let mut seen = Vec::new();
        for c in self.containers.iter_mut().filter(|c| c.pid.is_some()) {
            if let Some(m) = c.oom.check(&c.name) {
                console::say(&m);
                self.logs.note(&c.name, &m);
                seen.push((c.name.clone(), m));
            }
        }
        for (name, m) in seen {
            self.event("oom", Some(&name), m);
        }
    }

    /// Start the containers not started yet whose dependencies run (and are healthy, for those
    /// with a health check).
    fn start_ready(&mut self, now: Instant) {
        // Again after each start: a container may come before its dependency in the file.
        while self.start_ready_pass(now) {}
    }

    /// One pass of [`Supervisor::start_ready`]: whether it started (or tried to start) any.
    fn start_ready_pass(&mut self, now: Instant) -> bool {
        let mut launched = false;
        for i in 0..self.containers.len() {
            let Some(c) = self.containers.get(i) else { continue };
            if !c.pending {
                continue;
            }
            let waiting: Vec<&str> = c
                .deps
                .iter()
                .filter_map(|&d| self.containers.get(d))
                .filter(|d| !ready(d))
                .map(|d| d.name.as_str())
                .collect();
            if !waiting.is_empty() {
                if !c.said_waiting {
                    console::say(format_args!("container {} waits for {}", c.name, waiting.join(", ")));
                }
                if let Some(c) = self.containers.get_mut(i) {
                    c.said_waiting = true;
                }
                continue;
            }
            let Some(c) = self.containers.get_mut(i) else { continue };
            c.pending = false;
            c.started = now;
            let outcome = launch(c, &self.host, &mut self.life, "start");
            let name = c.name.clone();
            self.launched(&name, "start", &outcome);
            launched = true;
        }
        launched
    }

    /// Name the containers that never started, once the machine is done or idle: a dependency
    /// stopped for good before they could.
    fn say_never_started(&mut self) {
        for c in self.containers.iter_mut().filter(|c| c.pending) {
            c.pending = false;
            console::say(format_args!("container {} never started: its dependencies did not all run", c.name));
        }
    }

    /// A machine stop began at `now`: SIGKILL again what an earlier (health) stop killed, so its
    /// wait for them starts now, then the first SIGTERMs.
    fn begin_stop(&mut self, now: Instant) {
        for c in self.containers.iter_mut().filter(|c| c.pid.is_some() && c.kill_at.is_some()) {
            c.kill_at = Some(now);
            if let Some(pid) = c.pid {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
        }
        self.stop_tick(now);
    }

    /// Some container was sent SIGTERM (a health stop, or a machine stop).
    fn signalled(&self) -> bool {
        self.containers.iter().any(|c| c.term_at.is_some())
    }

    fn stop_views(&self) -> Vec<StopView> {
        self.containers
            .iter()
            .map(|c| StopView {
                running: c.pid.is_some(),
                deps: c.deps.clone(),
                term_at: c.term_at,
                kill_at: c.kill_at,
            })
            .collect()
    }

    /// Signal the containers a stop (of the machine, or of unhealthy ones) calls for now.
    fn stop_tick(&mut self, now: Instant) {
        if !self.life.stopping() && !self.signalled() {
            return; // the common case: nothing to stop
        }
        let mut views = self.stop_views();
        if !self.life.stopping() {
            // Outside a machine stop, only containers stopped for their health are followed up.
            for (v, c) in views.iter_mut().zip(&self.containers) {
                v.running &= c.term_at.is_some();
            }
        }
        let grace = self.life.grace();
        let (sends, give_up) = lifecycle::stop_step(&views, grace, now);
        let mut terms = Vec::new();
        for send in sends {
            let (i, sig) = match send {
                Send::Term(i) => (i, libc::SIGTERM),
                Send::Kill(i) => (i, libc::SIGKILL),
            };
            let Some(c) = self.containers.get_mut(i) else { continue };
            if sig == libc::SIGTERM {
                c.term_at = Some(now);
                terms.push(c.name.clone());
            } else {
                c.kill_at = Some(now);
                console::say(format_args!(
                    "container {} still running {} after SIGTERM: sending SIGKILL",
                    c.name,
                    seconds(grace)
                ));
            }
            if let Some(pid) = c.pid {
                if let Err(e) = sys::kill(pid, sig) {
                    console::say(format_args!("signal container {}: {e}", c.name));
                }
            }
        }
        if !terms.is_empty() {
            console::say(format_args!("sending SIGTERM to {}; SIGKILL in {}", terms.join(", "), seconds(grace)));
        }
        if give_up && self.life.stopping() {
            self.life.give_up();
        }
    }

    /// Start the health checks that are due; kill those past their timeout.
    fn health_tick(&mut self, now: Instant) {
        let stopping = self.life.stopping();
        for c in self.containers.iter_mut() {
            // Keep the pipe from filling: a check blocked on a full pipe would only time out.
            drain_check(c);
            let (Some(pid), Some(watch)) = (c.pid, c.health.as_mut()) else { continue };
            if let Some(check) = watch.overdue(now) {
                let _ = sys::kill(check, libc::SIGKILL);
                continue;
            }
            if stopping || c.term_at.is_some() || !watch.due(now) {
                continue;
            }
            // Neither waits for the check: its exec (or connect) is watched by this loop, within
            // the check's timeout, like the rest of its run.
            let started = match &watch.spec().check {
                HealthCheck::Cmd(args) => keel_runtime::exec_in_background(&c.plan, pid, args, c.cgroup.as_ref())
                    .map(|(joined, exec)| (joined, Some(exec))),
                HealthCheck::Tcp(port) => {
                    keel_runtime::connect_in(pid, *port, Duration::from_millis(watch.spec().timeout_ms))
                        .map(|joined| (joined, None))
                }
            };
            match started {
                Ok((joined, exec)) => {
                    watch.started_check(joined.pid, now);
                    c.check_tail.clear();
                    c.check_exec = exec;
                    c.check_output =
                        sys::set_nonblocking(joined.output.as_fd()).ok().map(|()| File::from(joined.output));
                }
                // It says nothing of the container's health (it may be exiting: its pid namespace
                // is going away): try again at the next interval.
                Err(e) => {
                    watch.discard(now);
                    console::say(format_args!(
                        "container {}: health check not started: {}",
                        c.name,
                        console::chain(&e)
                    ));
                }
            }
        }
    }

    /// The health check of container `i` ended with `status`.
    fn check_done(&mut self, i: usize, status: ExitStatus) {
        let now = Instant::now();
        let Some(c) = self.containers.get_mut(i) else { return };
        drain_check(c);
        c.check_output = None;
        let output = std::mem::take(&mut c.check_tail);
        // Reaped: whether a `cmd` check exec'd is known now, without waiting.
        let exec = c.check_exec.take().map_or(Ok(()), Pending::outcome);
        let Some(watch) = c.health.as_mut() else { return };
        let (passed, why) = match exec {
            // The check itself could not start (its exec failed): a failed check.
            Err(e @ RuntimeError::Start { .. }) => (false, format!("could not run: {}", console::chain(&e))),
            // Its start report could not be read: that says nothing of the container's health.
            Err(e) => {
                watch.discard(now);
                console::say(format_args!("container {}: health check: {}", c.name, console::chain(&e)));
                return;
            }
            // SIGKILL not from us: the container is ending (its pid namespace takes the check
            // with it), and its own exit is what counts. (One we sent for its timeout, before
            // or after its exec, is a timed-out check.)
            Ok(()) if status == ExitStatus::Signaled(libc::SIGKILL) && !watch.timed_out() => {
                watch.discard(now);
                return;
            }
            Ok(()) => (status.success(), judge(&watch.spec().check, status, &output)),
        };
        let verdict = watch.finished(passed, now);
        if let Some(m) = report_check(c, verdict, &why, now, &mut self.logs) {
            let name = c.name.clone();
            self.event("health", Some(&name), m);
        }
    }
}

/// Why a check that ran ended as it did: a TCP check's report, or a command's status and last
/// line of output.
fn judge(check: &HealthCheck, status: ExitStatus, output: &[u8]) -> String {
    match check {
        HealthCheck::Tcp(port) => {
            keel_runtime::connect_failure(*port, output).unwrap_or_else(|| format!("connect check {status}"))
        }
        HealthCheck::Cmd(_) => {
            let last = String::from_utf8_lossy(output)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                // Quoted and escaped: the container's text stays visibly inside keel's line.
                .map(|l| format!(": output {:?}", l.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            format!("{status}{last}")
        }
    }
}

/// keel-init's report of a container that failed (`what`) once keel-images was found corrupted.
fn corruption_message(name: &str, what: &str) -> String {
    format!(
        "images partition corrupted: dm-verity found a block of keel-images that does not match the signed root \
         hash (it reads as an I/O error); container {name} {what} after it"
    )
}

/// A dependency is ready: it runs, is not being stopped, and is healthy if it has a health check.
fn ready(c: &Tracked) -> bool {
    c.pid.is_some() && c.term_at.is_none() && c.health.as_ref().is_none_or(Watch::healthy)
}

/// Start (or restart: `what`) container `c`.
fn launch(c: &mut Tracked, host: &Host, life: &mut Lifecycle, what: &str) -> Result<(), String> {
    let now = Instant::now();
    let (net, id_base) = (c.plan.net.as_ref(), c.plan.id_base);
    let started = keel_runtime::spawn_with(&c.plan, host, &|pid| Network::prepare(net, pid, id_base));
    match started {
        Ok(running) => {
            timeline::mark(Event::ContainerStart(&c.name));
            c.pid = Some(running.pid);
            if c.cgroup.is_none() {
                c.oom = OomWatch::new(running.cgroup.clone());
            }
            c.cgroup = running.cgroup.clone();
            c.streams = streams(&c.name, running);
            c.started = now;
            c.health = c.plan.health.clone().map(|h| Watch::new(h, now));
            c.check_output = None;
            c.check_exec = None;
            c.term_at = None;
            c.kill_at = None;
            c.unhealthy = false;
            if what == "restart" {
                c.restarts += 1;
            }
            c.started_wall =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs_f64());
            life.started();
            Ok(())
        }
        Err(e) => {
            let why = console::chain(&e);
            console::say(format_args!("container {} failed to {what}: {why}", c.name));
            // Like a run that failed at once: try again later, if its policy says so.
            if c.plan.restart != keel_plan::Restart::No {
                c.started = now;
                schedule(c, now);
                life.restart_scheduled();
            }
            Err(why)
        }
    }
}

/// Say what a health check's verdict means; stop the container if it is unhealthy.
fn report_check(c: &mut Tracked, verdict: Verdict, why: &str, now: Instant, logs: &mut Logs) -> Option<String> {
    let message = match verdict {
        Verdict::Quiet => return None,
        Verdict::Healthy => format!("container {} is healthy", c.name),
        Verdict::Failed { failures, retries } => {
            format!("container {} failed its health check ({failures} of {retries}): {why}", c.name)
        }
        Verdict::Unhealthy { failures } => {
            format!("container {} is unhealthy: {failures} health checks failed in a row ({why}); stopping it", c.name)
        }
    };
    console::say(&message);
    logs.note(&c.name, &message);
    if let Verdict::Unhealthy { .. } = verdict {
        c.unhealthy = true;
        c.term_at = Some(now);
        if let Some(pid) = c.pid {
            if let Err(e) = sys::kill(pid, libc::SIGTERM) {
                console::say(format_args!("signal container {}: {e}", c.name));
            }
        }
    }
    Some(message)
}

/// Read what the health check in flight wrote so far (non-blocking), keeping the last
/// [`CHECK_TAIL`] bytes.
fn drain_check(c: &mut Tracked) {
    let Some(f) = c.check_output.as_mut() else { return };
    let mut buf = [0u8; CHUNK];
    for _ in 0..CHUNKS_PER_WAKEUP {
        match f.read(&mut buf) {
            Ok(n @ 1..) => c.check_tail.extend_from_slice(buf.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    let excess = c.check_tail.len().saturating_sub(CHECK_TAIL);
    c.check_tail.drain(..excess);
}

/// Set `c` to start again after its backoff delay, saying so (and if it is crash-looping).
fn schedule(c: &mut Tracked, now: Instant) {
    let s = c.backoff.schedule(c.started, now);
    if let Some((restarts, within)) = s.crash_loop {
        let whole = Duration::from_secs(within.as_secs_f64().round() as u64);
        console::say(format_args!("container {} is crash-looping: {restarts} restarts in {}", c.name, seconds(whole)));
    }
    console::say(format_args!("container {} restarting in {} (restart {})", c.name, seconds(s.delay), s.count));
    if usage::due(s.count) {
        // PID 1's own figures, flat across a crash loop unless something leaks.
        console::say(format_args!("init: {} (restart {} of {})", Usage::now(), s.count, c.name));
    }
    c.restart_at = Some(now + s.delay);
}

/// The output pipes of a started container, non-blocking.
fn streams(name: &str, running: Running) -> [Option<Stream>; 2] {
    let stream = |fd: OwnedFd| match Stream::new(fd) {
        Ok(s) => Some(s),
        Err(e) => {
            // A blocking pipe could hang PID 1: drop it (the container's writes then fail, EPIPE/SIGPIPE).
            console::say(format_args!("make the output pipe of {name} non-blocking: {e}; dropping its output"));
            None
        }
    };
    [stream(running.stdout), stream(running.stderr)]
}

/// `3 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", format!("{:.3}", d.as_secs_f64()).trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn grace_in_seconds() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
    }
    use std::os::unix::net::UnixStream;

    #[derive(Default)]
    struct Recorder {
        lines: Vec<String>,
        streams: Vec<logs::Stream>,
        first: Vec<String>,
    }

    impl Sink for Recorder {
        fn line(&mut self, name: &str, stream: logs::Stream, line: &[u8]) {
            self.lines.push(format!("{name}| {}", String::from_utf8_lossy(line)));
            self.streams.push(stream);
        }
        fn first_output(&mut self, name: &str) {
            self.first.push(name.to_string());
        }
    }

    /// A tracked container whose stdout and stderr are the read ends of two socket pairs.
    fn tracked() -> (Tracked, UnixStream, UnixStream) {
        let (out_r, out_w) = UnixStream::pair().unwrap();
        let (err_r, err_w) = UnixStream::pair().unwrap();
        let plan = keel_plan::Container {
            name: "web".into(),
            rootfs: "web".into(),
            args: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/".into(),
            hostname: "web".into(),
            uid: 0,
            gid: 0,
            id_base: 65_536,
            limits: keel_plan::Limits::default(),
            capabilities: vec![],
            seccomp: None,
            read_only: true,
            tmpfs: vec![],
            nofile: keel_plan::Rlimit { soft: 1024, hard: 4096 },
            restart: keel_plan::Restart::OnFailure,
            restart_delay: keel_plan::RestartDelay::default(),
            depends_on: vec![],
            health: None,
            volumes: vec![],
            net: None,
        };
        let mut t = Tracked::new(&plan, vec![]);
        t.pid = Some(42);
        t.streams = [Some(Stream::new(out_r.into()).unwrap()), Some(Stream::new(err_r.into()).unwrap())];
        t.pending = false;
        (t, out_w, err_w)
    }

    /// A supervisor with the container of [`tracked`] (started: its pid is `pid`), whose API link
    /// it serves.
    fn supervising(pid: libc::pid_t) -> (Supervisor<'static>, api::Sender) {
        let (t, _out, _err) = tracked();
        let host = Host {
            images: Path::new("/nonexistent"),
            cgroups: None,
            scratch: Path::new("/nonexistent"),
            volumes: None,
        };
        let (fd, _) = UnixStream::pair().unwrap();
        let mut sup = Supervisor::new(
            host,
            fd.into(),
            vec![],
            OnExit::Poweroff,
            Duration::from_secs(1),
            std::slice::from_ref(&t.plan),
            keel_plan::Logs::default(),
        );
        let (link, sender, _shared) = api::channel().unwrap();
        sup = sup.with_api(Some(link));
        let c = &mut sup.containers[0];
        c.pending = false;
        c.pid = Some(pid);
        sup.life.started();
        (sup, sender)
    }

    fn command(call: Call, deadline: Instant) -> (Command, std::sync::mpsc::Receiver<api::Answer>) {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        let who = api::Identity { peer: "192.0.2.1".into(), subject: "CN=op".into(), sha256: "00".into() };
        (Command { call, who, reply, deadline }, rx)
    }

    /// A pid no process has (above any `pid_max`): signals to it fail with ESRCH. The tests use
    /// it instead of a child, since forking while other tests run would keep their socket ends
    /// open in the child for a moment.
    const NO_PID: libc::pid_t = libc::pid_t::MAX;

    /// `keel stop` of the only container, under on-exit = poweroff: it stops, and the machine
    /// stays up (it waits for `keel start`); started again and exiting on its own, it ends it.
    #[test]
    fn stopping_the_last_container_does_not_power_off() {
        let (mut sup, _sender) = supervising(NO_PID);
        let (cmd, answer) = command(Call::Stop("web".into()), Instant::now() + Duration::from_secs(10));
        sup.command(&cmd, Instant::now());
        assert_eq!(answer.try_recv().map(|a| a.status).ok(), Some(202));
        assert!(sup.containers[0].term_at.is_some(), "no SIGTERM sent");
        // Its process ends on the SIGTERM; the supervisor reaps it.
        sup.exited(NO_PID, ExitStatus::from_wait_status(libc::SIGTERM));
        assert_eq!(sup.containers[0].view().state, "stopped");
        assert_eq!(sup.life.finished(), None, "keel stop powered the machine off");
        // Once released (as a start does) and exited, on_exit applies again.
        sup.containers[0].held = false;
        sup.life.release();
        assert_eq!(sup.life.finished(), Some(Action::Poweroff));
    }

    /// A call the supervisor takes after its deadline (its client got 504) is not carried out
    /// and not answered.
    #[test]
    fn an_expired_call_is_dropped() {
        let (mut sup, _sender) = supervising(NO_PID);
        let (cmd, answer) = command(Call::Stop("web".into()), Instant::now());
        sup.command(&cmd, Instant::now() + Duration::from_millis(1));
        assert!(answer.try_recv().is_err(), "an expired call was answered");
        let c = &sup.containers[0];
        assert!(!c.held && c.term_at.is_none() && c.pid == Some(NO_PID), "an expired call was carried out");
    }

    #[test]
    fn a_checks_output_is_drained_keeping_its_tail() {
        let (mut t, _out, _err) = tracked();
        let (r, mut w) = UnixStream::pair().unwrap();
        r.set_nonblocking(true).unwrap();
        t.check_output = Some(File::from(OwnedFd::from(r)));
        let mut data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        data.extend_from_slice(b"\nlast line\n");
        w.write_all(&data).unwrap();
        drain_check(&mut t);
        assert_eq!(t.check_tail.len(), CHECK_TAIL);
        assert!(data.ends_with(&t.check_tail));
        // Nothing more to read: it returns instead of blocking.
        drain_check(&mut t);
        assert_eq!(t.check_tail.len(), CHECK_TAIL);
    }

    #[test]
    fn output_becomes_prefixed_lines_and_eof_flushes() {
        let (mut t, mut out, mut err) = tracked();
        let mut sink = Recorder::default();
        out.write_all(b"one\ntw").unwrap();
        t.pump(0, CHUNKS_PER_WAKEUP, &mut sink);
        // Nothing more to read: the pump returns instead of blocking.
        t.pump(0, CHUNKS_PER_WAKEUP, &mut sink);
        err.write_all(b"oops\n").unwrap();
        t.pump(1, CHUNKS_PER_WAKEUP, &mut sink);
        out.write_all(b"o").unwrap();
        drop((out, err));
        t.drain(&mut sink);
        assert_eq!(sink.lines, ["web| one", "web| oops", "web| two"]);
        assert_eq!(sink.streams, [logs::Stream::Out, logs::Stream::Err, logs::Stream::Out]);
        assert_eq!(sink.first, ["web"], "first output is marked once");
        assert!(t.streams.iter().all(Option::is_none), "streams at EOF are closed");
    }

    /// Finding 1 of the hardening review: a pipe whose write end lives on in another process
    /// (passed over a socket) and keeps being written must not hold PID 1 after the container
    /// is reaped.
    #[test]
    fn a_pipe_held_open_elsewhere_is_cut_after_its_drain_budget() {
        let (mut t, mut out, _err) = tracked();
        out.write_all(b"first\n").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut out = out;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = out.write_all(b"still here\n");
                }
            })
        };
        // A sink as slow as a console: the writer always refills the pipe before it is empty.
        struct Slow(Recorder);
        impl Sink for Slow {
            fn line(&mut self, name: &str, stream: logs::Stream, line: &[u8]) {
                std::thread::sleep(Duration::from_micros(100));
                self.0.line(name, stream, line);
            }
            fn first_output(&mut self, name: &str) {
                self.0.first_output(name);
            }
        }
        let mut slow = Slow(Recorder::default());
        let started = Instant::now();
        let cut = t.drain(&mut slow);
        let sink = slow.0;
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(t);
        writer.join().unwrap();
        assert!(cut, "the held pipe was not reported");
        assert!(took < DRAIN_WITHIN * 3, "drain took {took:?}");
        assert!(
            !sink.lines.is_empty() && sink.lines.len() <= DRAIN_CHUNKS * CHUNK / 11 + 1,
            "{} lines",
            sink.lines.len()
        );
    }

    #[test]
    fn a_chatty_container_yields_after_its_chunk_budget() {
        let (mut t, mut out, _err) = tracked();
        let mut sink = Recorder::default();
        let line = [b'x'; 1023];
        let mut block = line.to_vec();
        block.push(b'\n');
        // 64 lines of 1 KiB waiting; a budget of 2 chunks reads at most 8 KiB of them.
        for _ in 0..64 {
            out.write_all(&block).unwrap();
        }
        t.pump(0, 2, &mut sink);
        assert!((1..=2 * CHUNK / 1024).contains(&sink.lines.len()), "{} lines", sink.lines.len());
        t.pump(0, usize::MAX, &mut sink);
        assert_eq!(sink.lines.len(), 64);
        assert!(t.streams[0].is_some(), "the writer is still open");
    }
}
