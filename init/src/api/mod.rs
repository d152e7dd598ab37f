//! The mTLS HTTPS API (`[api]`): what the supervisor shares with it, and how it asks the
//! supervisor to act.
//!
//! The server ([`server`]) runs in threads of its own: one accepts, one per connection (at most
//! [`server::MAX_CONNECTIONS`]). PID 1's poll loop never waits for them:
//! - **State out**: after each wakeup the supervisor publishes an [`Arc<Snapshot>`] with
//!   `try_lock` (a reader holds the lock only to clone the `Arc`); if the lock is busy it tries
//!   again 10 ms later. Events go the same way into a bounded ring ([`EVENTS`] entries).
//! - **Commands in**: a bounded channel ([`QUEUE`] commands; a full queue answers 503) plus a
//!   wake socket in the poll set. The supervisor takes at most [`PER_WAKEUP`] commands per wakeup
//!   (waking again 10 ms later for more), drops those past their deadline (the client got 504),
//!   and answers each on a one-slot channel with `try_send`, so it never blocks on a client
//!   either. Container names are checked by the server thread against the last snapshot first:
//!   an unknown one is answered there (404), never queued.
//! - Mutating calls are recorded in the audit log (`audit/api.log` on keel-data, rotated like the
//!   container logs) by the supervisor as it carries them out, one JSON object per record, synced
//!   once per wakeup.

pub mod der;
pub mod server;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

/// Commands waiting for the supervisor, at most.
pub const QUEUE: usize = 16;
/// Commands the supervisor carries out per wakeup, at most (the rest wait 10 ms for the next).
pub const PER_WAKEUP: usize = 4;
/// The audit log's directory on keel-data: `audit/api.log`, rotated like the container logs.
pub const AUDIT_DIR: &str = "audit";
/// Events kept for `GET /v1/events`.
pub const EVENTS: usize = 256;

/// The TLS files of `[api]`, read from the initramfs.
#[derive(Debug)]
pub struct Tls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Read the TLS files from `dir` (before the initramfs is left); `None` without `[api]`.
pub fn read_tls(dir: &Path) -> anyhow::Result<Tls> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).with_context(|| format!("read {}", p.display()))
    };
    let [ca, cert, key] = keel_plan::API_FILES;
    Ok(Tls { ca: read(ca)?, cert: read(cert)?, key: read(key)? })
}

/// One container as the API shows it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub name: String,
    /// running, restarting, stopping, stopped, exited, waiting.
    pub state: &'static str,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// healthy, unhealthy, starting; `None` without a health check.
    pub health: Option<&'static str>,
    /// Seconds since the epoch of the current (or last) run's start.
    pub started_at: Option<f64>,
    /// `(network, address)`.
    pub addresses: Vec<(String, String)>,
    pub host_if: Option<String>,
    pub memory_max: Option<u64>,
}

/// What the supervisor last published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub containers: Vec<ContainerView>,
    /// The machine is shutting down.
    pub stopping: bool,
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub time: String,
    pub kind: &'static str,
    pub container: Option<String>,
    pub message: String,
}

/// The client behind a call, from its certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The client's IP address.
    pub peer: String,
    pub subject: String,
    pub sha256: String,
}

/// A mutating call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Restart(String),
    Stop(String),
    Start(String),
    Reboot,
    Poweroff,
}

impl Call {
    /// `POST /v1/...` as the audit log and the events name it.
    pub fn describe(&self) -> String {
        match self {
            Call::Restart(n) => format!("POST /v1/containers/{n}/restart"),
            Call::Stop(n) => format!("POST /v1/containers/{n}/stop"),
            Call::Start(n) => format!("POST /v1/containers/{n}/start"),
            Call::Reboot => "POST /v1/host/reboot".into(),
            Call::Poweroff => "POST /v1/host/poweroff".into(),
        }
    }
}

/// The supervisor's answer: an HTTP status and a sentence.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub message: String,
}

/// A call on its way to the supervisor.
#[derive(Debug)]
pub struct Command {
    pub call: Call,
    pub who: Identity,
    pub reply: SyncSender<Answer>,
    /// Past this the client has been told 504: the supervisor drops the call, not carrying it out.
    pub deadline: Instant,
}

/// What the server threads share; counters are for `/metrics`.
#[derive(Debug, Default)]
pub struct Shared {
    snapshot: Mutex<Arc<Snapshot>>,
    events: Mutex<VecDeque<Event>>,
    pub counters: server::Counters,
}

impl Shared {
    /// The last snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.lock() {
            Ok(s) => Arc::clone(&s),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The events after `seq`, oldest first.
    pub fn events_after(&self, seq: u64) -> Vec<Event> {
        let ring = match self.events.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        ring.iter().filter(|e| e.seq > seq).cloned().collect()
    }
}

/// The server's side of the command channel.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: SyncSender<Command>,
    wake: Arc<UnixStream>,
}

impl Sender {
    /// Queue `cmd` and wake the supervisor; `false` if the queue is full or the supervisor gone.
    pub fn send(&self, cmd: Command) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                // Non-blocking: a full wake socket already has a wakeup pending.
                let _ = (&*self.wake).write(&[1]);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The supervisor's side.
#[derive(Debug)]
pub struct Link {
    rx: Receiver<Command>,
    wake: UnixStream,
    shared: Arc<Shared>,
    /// Events not yet moved into the shared ring (its lock was busy).
    pending: Vec<Event>,
    /// A snapshot not yet published (the lock was busy).
    unpublished: Option<Arc<Snapshot>>,
    /// A command taken from the channel past [`PER_WAKEUP`], first in line next time.
    carried: Option<Command>,
    seq: u64,
}

/// The channel, the wake socket, the shared state: the supervisor's [`Link`] and the server's
/// [`Sender`].
pub fn channel() -> io::Result<(Link, Sender, Arc<Shared>)> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    theirs.set_nonblocking(true)?;
    let shared = Arc::new(Shared::default());
    let link = Link {
        rx,
        wake: ours,
        shared: Arc::clone(&shared),
        pending: Vec::new(),
        unpublished: None,
        carried: None,
        seq: 0,
    };
    Ok((link, Sender { tx, wake: Arc::new(theirs) }, shared))
}

impl Link {
    /// The wake socket, to poll for reading.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Something is left to publish, or commands wait: wake again soon.
    pub fn behind(&self) -> bool {
        self.unpublished.is_some() || !self.pending.is_empty() || self.carried.is_some()
    }

    /// Commands wait beyond those of the last [`Link::commands`].
    pub fn backlog(&self) -> bool {
        self.carried.is_some()
    }

    /// The commands waiting, at most [`PER_WAKEUP`]; drains the wake socket. If more wait,
    /// [`Link::backlog`] says so (the wake socket no longer does).
    pub fn commands(&mut self) -> Vec<Command> {
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            match self.wake.read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                _ => break,
            }
        }
        let mut out: Vec<Command> = self.carried.take().into_iter().collect();
        while out.len() < PER_WAKEUP {
            match self.rx.try_recv() {
                Ok(c) => out.push(c),
                Err(_) => break,
            }
        }
        if out.len() == PER_WAKEUP {
            self.carried = self.rx.try_recv().ok();
        }
        out
    }

    /// Record an event (published with the next snapshot).
    pub fn event(&mut self, kind: &'static str, container: Option<&str>, message: String) {
        self.seq += 1;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.pending.push(Event {
            seq: self.seq,
            time: crate::logs::rfc3339(now),
            kind,
            container: container.map(str::to_string),
            message,
        });
        // Bounded even if the ring's lock stayed busy.
        let excess = self.pending.len().saturating_sub(EVENTS);
        self.pending.drain(..excess);
    }

    /// Publish `snapshot` and the pending events without waiting: what cannot be published now
    /// is kept for the next call.
    pub fn publish(&mut self, snapshot: Option<Snapshot>) {
        if let Some(s) = snapshot {
            self.unpublished = Some(Arc::new(s));
        }
        if let Some(s) = self.unpublished.take() {
            match self.shared.snapshot.try_lock() {
                Ok(mut slot) => *slot = s,
                Err(_) => self.unpublished = Some(s),
            }
        }
        if !self.pending.is_empty() {
            if let Ok(mut ring) = self.shared.events.try_lock() {
                ring.extend(self.pending.drain(..));
                let excess = ring.len().saturating_sub(EVENTS);
                ring.drain(..excess);
            }
        }
    }
}

/// Answer `cmd` without blocking (its slot holds one answer and nothing else writes it).
pub fn answer(cmd: &Command, status: u16, message: impl Into<String>) {
    let _ = cmd.reply.try_send(Answer { status, message: message.into() });
}

/// A call's deadline: the supervisor drops a call it takes later than this after it was queued.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How much longer than [`ANSWER_WITHIN`] a server thread waits, for a call the supervisor took
/// just before its deadline (then 504).
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(n: usize) -> (Command, Receiver<Answer>) {
        let (reply, rx) = mpsc::sync_channel(1);
        let who = Identity { peer: "192.0.2.1".into(), subject: "CN=op".into(), sha256: String::new() };
        let deadline = Instant::now() + ANSWER_WITHIN;
        (Command { call: Call::Start(format!("c{n}")), who, reply, deadline }, rx)
    }

    /// At most PER_WAKEUP commands per wakeup, in order; the rest wait for the next, and the
    /// supervisor knows to come back for them.
    #[test]
    fn a_few_commands_per_wakeup() {
        let (mut link, sender, _shared) = channel().unwrap();
        let mut replies = Vec::new();
        for n in 0..PER_WAKEUP + 2 {
            let (c, rx) = cmd(n);
            assert!(sender.send(c));
            replies.push(rx);
        }
        let first = link.commands();
        assert_eq!(first.len(), PER_WAKEUP);
        assert_eq!(first.first().map(|c| c.call.clone()), Some(Call::Start("c0".into())));
        assert!(link.backlog() && link.behind());
        let rest = link.commands();
        let names: Vec<Call> = rest.iter().map(|c| c.call.clone()).collect();
        assert_eq!(names, vec![Call::Start(format!("c{PER_WAKEUP}")), Call::Start(format!("c{}", PER_WAKEUP + 1))]);
        assert!(!link.backlog());
        assert!(link.commands().is_empty());
    }
}
