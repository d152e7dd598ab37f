//! The event loop: container output to the console, every child reaped, exited containers
//! restarted per their policy, shutdown signals obeyed.
//!
//! One `poll` over a signalfd (SIGCHLD and the shutdown signals, blocked), the power buttons'
//! input devices and each container's stdout and stderr pipes, waking for the next deadline (a
//! stop's, a restart's). Decisions are [`Lifecycle`]'s and [`restart`]'s; this module does the I/O.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use keel_plan::OnExit;
use keel_runtime::{signal_name, ExitStatus, Host, Running};

use crate::console;
use crate::lifecycle::{Command, Lifecycle};
use crate::oom::{self, OomWatch};
use crate::output::{self, Lines};
use crate::power::Button;
use crate::restart::{self, Backoff};
use crate::shutdown::Action;
use crate::sys::{self, Reaped};
use crate::timeline::{self, Event};

/// Read at most this many chunks from one pipe per wakeup, so a chatty container cannot starve
/// the others or the signals.
const CHUNKS_PER_WAKEUP: usize = 16;
const CHUNK: usize = 4096;

/// Where container output goes: the console in init, a recorder in tests.
trait Sink {
    /// One finished line of container `name`.
    fn line(&mut self, name: &str, line: &[u8]);
    /// Container `name` wrote its first bytes.
    fn first_output(&mut self, name: &str);
}

/// The console, with the timeline.
struct ConsoleSink;

impl Sink for ConsoleSink {
    fn line(&mut self, name: &str, line: &[u8]) {
        console::write(&output::prefixed(name, line));
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
}

impl Tracked {
    /// Copy output from stream `index` to `sink`: at most `limit` chunks, or until the pipe is
    /// empty. Closes the stream at EOF, flushing its last unfinished line.
    fn pump(&mut self, index: usize, limit: usize, sink: &mut dyn Sink) {
        let Tracked { name, streams, spoke, .. } = self;
        let Some(slot) = streams.get_mut(index) else { return };
        let mut buf = [0u8; CHUNK];
        for _ in 0..limit {
            let Some(stream) = slot.as_mut() else { return };
            match stream.file.read(&mut buf) {
                Ok(0) => {
                    stream.lines.finish(|l| sink.line(name, l));
                    *slot = None;
                    return;
                }
                Ok(n) => {
                    if !*spoke {
                        *spoke = true;
                        sink.first_output(name);
                    }
                    let data = buf.get(..n).unwrap_or_default();
                    stream.lines.push(data, |l| sink.line(name, l));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    console::say(format_args!("read the output of container {name}: {e}"));
                    *slot = None;
                    return;
                }
            }
        }
    }

    /// After its first process ended: copy what is left in the pipes (its pid namespace is gone,
    /// so the writers are too and the pipes end).
    fn drain(&mut self, sink: &mut dyn Sink) {
        for index in 0..self.streams.len() {
            self.pump(index, usize::MAX, sink);
        }
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
}

impl<'a> Supervisor<'a> {
    /// `signals` is the signalfd for SIGCHLD and the shutdown signals; a press on one of
    /// `buttons` stops gracefully and powers off; containers get `grace` between SIGTERM and
    /// SIGKILL; restarts are started on `host`.
    pub fn new(
        host: Host<'a>,
        signals: OwnedFd,
        buttons: Vec<Button>,
        on_exit: OnExit,
        grace: Duration,
    ) -> Supervisor<'a> {
        Supervisor {
            host,
            containers: Vec::new(),
            signals,
            buttons,
            life: Lifecycle::new(on_exit, grace),
            said_idle: false,
        }
    }

    /// Take over a started container.
    pub fn add(&mut self, container: &keel_plan::Container, running: Running) {
        let name = container.name.as_str();
        let oom = OomWatch::new(running.cgroup.clone(), container.limits.memory_max);
        self.containers.push(Tracked {
            name: name.to_string(),
            pid: Some(running.pid),
            streams: streams(name, running),
            spoke: false,
            oom,
            plan: container.clone(),
            started: Instant::now(),
            backoff: Backoff::default(),
            restart_at: None,
        });
        self.life.started();
    }

    /// Run until the machine is done; returns how to shut down.
    pub fn run(mut self) -> Action {
        loop {
            if let Some(action) = self.life.finished() {
                if self.life.gave_up() {
                    console::say("containers still running after SIGKILL; shutting down anyway");
                }
                return action;
            }
            if self.life.idle() && !self.said_idle {
                console::say("every container has exited; waiting for a shutdown signal");
                self.said_idle = true;
            }
            self.wait_and_handle();
            self.check_oom();
            if let Some(command) = self.life.tick(Instant::now()) {
                self.execute(command);
            }
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
        let mut timeout = self.life.timeout(now);
        let mut wake = |t: Duration| timeout = Some(timeout.map_or(t, |old| old.min(t)));
        if self.containers.iter().any(|c| c.pid.is_some()) {
            wake(oom::INTERVAL);
        }
        if let Some(next) = self.containers.iter().filter_map(|c| c.restart_at).min() {
            wake(next.saturating_duration_since(now));
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
                    c.pump(si, CHUNKS_PER_WAKEUP, &mut ConsoleSink);
                }
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
            if let Some(command) = self.life.stop(Action::Poweroff, Instant::now()) {
                console::say("power button pressed: stopping containers");
                self.execute(command);
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
                    if let Some(command) = self.life.signal(sig, Instant::now()) {
                        console::say(format_args!("{} received: stopping containers", signal_name(sig)));
                        self.execute(command);
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
        let Some(c) = self.containers.iter_mut().find(|c| c.pid == Some(pid)) else {
            return; // an orphan, now reaped
        };
        c.drain(&mut ConsoleSink);
        c.pid = None;
        if let Some(m) = c.oom.check(&c.name) {
            console::say(m);
        }
        console::say(format_args!("container {} {status}", c.name));
        timeline::mark(Event::ContainerExit(&c.name, status));
        self.life.exited();
        if self.life.may_restart() && restart::wanted(c.plan.restart, status) {
            schedule(c, Instant::now());
            self.life.restart_scheduled();
        }
    }

    /// Start again the containers whose restart is due at `now`; drop pending restarts if the
    /// machine is stopping.
    fn restart_due(&mut self, now: Instant) {
        let may = self.life.may_restart();
        for c in self.containers.iter_mut() {
            match c.restart_at {
                Some(at) if !may || at <= now => c.restart_at = None,
                _ => continue,
            }
            if !may {
                continue; // Lifecycle dropped its count when the stop began.
            }
            self.life.restart_due();
            match keel_runtime::spawn(&c.plan, &self.host) {
                Ok(running) => {
                    timeline::mark(Event::ContainerStart(&c.name));
                    c.pid = Some(running.pid);
                    c.streams = streams(&c.name, running);
                    c.started = Instant::now();
                    self.life.started();
                }
                Err(e) => {
                    console::say(format_args!("container {} failed to restart: {}", c.name, console::chain(&e)));
                    // Like a run that failed at once: try again, later.
                    c.started = now;
                    schedule(c, Instant::now());
                    self.life.restart_scheduled();
                }
            }
        }
    }

    /// Report OOM kills in running containers (those of exited ones are read at exit).
    fn check_oom(&mut self) {
        for c in self.containers.iter_mut().filter(|c| c.pid.is_some()) {
            if let Some(m) = c.oom.check(&c.name) {
                console::say(m);
            }
        }
    }

    fn execute(&mut self, command: Command) {
        let sig = match command {
            Command::Terminate => {
                let grace = self.life.grace();
                console::say(format_args!("sending SIGTERM to containers, SIGKILL in {}", seconds(grace)));
                libc::SIGTERM
            }
            Command::Kill => {
                console::say("containers still running: sending SIGKILL");
                libc::SIGKILL
            }
        };
        // Last started, first stopped.
        for c in self.containers.iter().rev() {
            if let Some(pid) = c.pid {
                if let Err(e) = sys::kill(pid, sig) {
                    console::say(format_args!("signal container {}: {e}", c.name));
                }
            }
        }
    }
}

/// Set `c` to start again after its backoff delay, saying so (and if it is crash-looping).
fn schedule(c: &mut Tracked, now: Instant) {
    let s = c.backoff.schedule(c.started, now);
    if let Some((restarts, within)) = s.crash_loop {
        let whole = Duration::from_secs(within.as_secs_f64().round() as u64);
        console::say(format_args!("container {} is crash-looping: {restarts} restarts in {}", c.name, seconds(whole)));
    }
    console::say(format_args!("container {} restarting in {} (restart {})", c.name, seconds(s.delay), s.count));
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
        first: Vec<String>,
    }

    impl Sink for Recorder {
        fn line(&mut self, name: &str, line: &[u8]) {
            self.lines.push(format!("{name}| {}", String::from_utf8_lossy(line)));
        }
        fn first_output(&mut self, name: &str) {
            self.first.push(name.to_string());
        }
    }

    /// A tracked container whose stdout and stderr are the read ends of two socket pairs.
    fn tracked() -> (Tracked, UnixStream, UnixStream) {
        let (out_r, out_w) = UnixStream::pair().unwrap();
        let (err_r, err_w) = UnixStream::pair().unwrap();
        let t = Tracked {
            name: "web".into(),
            pid: Some(42),
            streams: [Some(Stream::new(out_r.into()).unwrap()), Some(Stream::new(err_r.into()).unwrap())],
            spoke: false,
            oom: OomWatch::new(None, None),
            plan: keel_plan::Container {
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
            },
            started: Instant::now(),
            backoff: Backoff::default(),
            restart_at: None,
        };
        (t, out_w, err_w)
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
        assert_eq!(sink.first, ["web"], "first output is marked once");
        assert!(t.streams.iter().all(Option::is_none), "streams at EOF are closed");
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
