//! The HTTPS server: TLS 1.3 only (rustls with ring), a client certificate required and verified
//! against `ca.pem`, one request per connection, everything bounded:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once, [`MAX_HANDSHAKING`] of them in the
//!   handshake, and from one source address [`MAX_PER_PEER`] ([`MAX_HANDSHAKING_PER_PEER`] in
//!   the handshake); more are accepted and closed at once, counted. At most [`MAX_FOLLOWS`]
//!   follow a stream;
//! - deadlines are absolute ([`Bounded`]): each socket read and write waits at most
//!   [`IO_TIMEOUT`] and never past the current deadline; the handshake must end within
//!   [`HANDSHAKE_WITHIN`] and the request head arrive within [`REQUEST_WITHIN`] of the accept;
//! - a head is at most [`keel_net::http::MAX_HEAD`] bytes, a body at most [`MAX_BODY`];
//! - an answer must be written within [`WRITE_WITHIN`]; a follow stream ends after [`FOLLOW_FOR`].
//!
//! Failed handshakes (no certificate, another CA, plaintext, garbage, too slow) are counted for
//! `/metrics`, not logged one by one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_net::http::{self, HttpError, Request};
use rustls::{ServerConfig, ServerConnection};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Call, Command, Identity, Sender, Shared, Tls, ANSWER_GRACE, ANSWER_WITHIN};
use crate::console;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Of those, still in the TLS handshake (so authenticated clients keep the others).
pub const MAX_HANDSHAKING: usize = 8;
/// Connections from one source address at once.
pub const MAX_PER_PEER: usize = 4;
/// Of those, still in the TLS handshake.
pub const MAX_HANDSHAKING_PER_PEER: usize = 2;
/// Of all connections, follow streams.
pub const MAX_FOLLOWS: usize = 4;
/// One socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// From accept to the end of the TLS handshake.
pub const HANDSHAKE_WITHIN: Duration = Duration::from_secs(5);
/// From accept to the end of the request head (and body).
pub const REQUEST_WITHIN: Duration = Duration::from_secs(10);
/// Writing one answer.
pub const WRITE_WITHIN: Duration = Duration::from_secs(30);
/// Sending a last alert or close_notify.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// A follow stream's longest life.
pub const FOLLOW_FOR: Duration = Duration::from_secs(3600);
/// Largest request body read (and ignored).
pub const MAX_BODY: u64 = 1024;
/// Most log lines one `tail` returns.
pub const MAX_TAIL: usize = 10_000;
/// Most bytes of a log file read for a tail.
const TAIL_BYTES: u64 = 1 << 20;
/// After refusing a request: how long, and how much, of the rest is read and dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;
/// How often a follow stream looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// A connection thread's stack.
const STACK: usize = 256 * 1024;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicUsize,
    pub follows: AtomicUsize,
    pub refused_busy: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub handshake_no_cert: AtomicU64,
    pub handshake_bad_cert: AtomicU64,
    pub handshake_timeout: AtomicU64,
    pub handshake_other: AtomicU64,
}

/// What the request handlers need.
struct Ctx {
    shared: Arc<Shared>,
    sender: Sender,
    host: HostInfo,
    slots: Arc<Slots>,
}

/// The host's fixed facts.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub hostname: String,
    pub image: String,
    pub arch: String,
    pub plan_sha256: String,
    pub listen: SocketAddrV4,
}

/// The TLS configuration: [`keel_net::tls::server_config`].
pub fn tls_config(tls: &Tls) -> Result<ServerConfig, String> {
    keel_net::tls::server_config(&tls.ca, &tls.cert, &tls.key)
}

/// Bind `host.listen` and serve in threads of their own. Errors are said, never fatal. With
/// `device` (the uplink) and a listen address that is not loopback, the socket only takes
/// connections that came in on that interface (SO_BINDTODEVICE): container veths cannot reach
/// it whatever the firewall says.
pub fn start(tls: &Tls, host: HostInfo, device: Option<&str>, shared: Arc<Shared>, sender: Sender) {
    let config = match tls_config(tls) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            console::say(format_args!("api: {e}; not serving"));
            return;
        }
    };
    let listener = match TcpListener::bind(host.listen) {
        Ok(l) => l,
        Err(e) => {
            console::say(format_args!("api: listen on {}: {e}; not serving", host.listen));
            return;
        }
    };
    let mut on = String::new();
    if let Some(dev) = device.filter(|_| !host.listen.ip().is_loopback()) {
        if let Err(e) = crate::sys::bind_to_device(std::os::fd::AsFd::as_fd(&listener), dev) {
            console::say(format_args!("api: bind to {dev}: {e}; not serving"));
            return;
        }
        on = format!(" on {dev} only");
    }
    console::say(format_args!("api: listening on {}{on} (TLS 1.3, client certificates required)", host.listen));
    if let Err(e) = run(listener, config, host, shared, sender) {
        console::say(format_args!("api: start the server thread: {e}; not serving"));
    }
}

/// Accept on `listener` in a thread of its own.
fn run(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    host: HostInfo,
    shared: Arc<Shared>,
    sender: Sender,
) -> io::Result<()> {
    let ctx = Arc::new(Ctx { shared, sender, host, slots: Arc::new(Slots::default()) });
    std::thread::Builder::new().name("api-accept".into()).stack_size(STACK).spawn(move || loop {
        match listener.accept() {
            Ok((sock, peer)) => admit(sock, peer, &config, &ctx),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    })?;
    Ok(())
}

/// The connections served, in all and per source address; updated under one lock by the accept
/// thread (taking) and the connection threads (giving back).
#[derive(Debug, Default)]
struct Slots {
    inner: Mutex<SlotCounts>,
}

#[derive(Debug, Default)]
struct SlotCounts {
    open: usize,
    shaking: usize,
    /// Per source address: (open, still handshaking).
    peers: HashMap<IpAddr, (usize, usize)>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotCounts> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, handshaking; `None` if a limit is reached.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let mut s = self.lock();
        let (open, shaking) = s.peers.get(&ip).copied().unwrap_or((0, 0));
        if s.open >= MAX_CONNECTIONS
            || s.shaking >= MAX_HANDSHAKING
            || open >= MAX_PER_PEER
            || shaking >= MAX_HANDSHAKING_PER_PEER
        {
            return None;
        }
        s.open += 1;
        s.shaking += 1;
        s.peers.insert(ip, (open + 1, shaking + 1));
        Some(Ticket { slots: Arc::clone(self), ip, shaking: true })
    }
}

/// One connection's slot, given back on drop.
#[derive(Debug)]
struct Ticket {
    slots: Arc<Slots>,
    ip: IpAddr,
    shaking: bool,
}

impl Ticket {
    /// The handshake is over (either way): the connection no longer counts as handshaking.
    fn shaken(&mut self) {
        if std::mem::take(&mut self.shaking) {
            let mut s = self.slots.lock();
            s.shaking = s.shaking.saturating_sub(1);
            if let Some(p) = s.peers.get_mut(&self.ip) {
                p.1 = p.1.saturating_sub(1);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shaken();
        let mut s = self.slots.lock();
        s.open = s.open.saturating_sub(1);
        if let Some(p) = s.peers.get_mut(&self.ip) {
            p.0 = p.0.saturating_sub(1);
            if p.0 == 0 {
                s.peers.remove(&self.ip);
            }
        }
    }
}

/// Serve `sock` in a thread of its own, or close it at once if a limit is reached
/// ([`MAX_CONNECTIONS`], [`MAX_HANDSHAKING`], [`MAX_PER_PEER`], [`MAX_HANDSHAKING_PER_PEER`]).
fn admit(sock: TcpStream, peer: SocketAddr, config: &Arc<ServerConfig>, ctx: &Arc<Ctx>) {
    let c = &ctx.shared.counters;
    let Some(ticket) = ctx.slots.take(peer.ip()) else {
        c.refused_busy.fetch_add(1, Ordering::Relaxed);
        return; // dropped: closed
    };
    c.connections.fetch_add(1, Ordering::SeqCst);
    let (config, ctx2) = (Arc::clone(config), Arc::clone(ctx));
    let spawned = std::thread::Builder::new().name("api-conn".into()).stack_size(STACK).spawn(move || {
        let accepted = Instant::now();
        let mut ticket = ticket;
        // A panic in one connection must not take the counters (or anything else) with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serve(sock, peer, &config, &ctx2, accepted, &mut ticket)
        }));
        drop(ticket);
        ctx2.shared.counters.connections.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        // The closure (and its ticket) is dropped: the slot is given back.
        c.connections.fetch_sub(1, Ordering::SeqCst);
        c.refused_busy.fetch_add(1, Ordering::Relaxed);
    }
}

/// The socket, with a deadline no read or write goes past: before each one the socket's timeout
/// is set to what is left of it (at most [`IO_TIMEOUT`]), and once it has passed every read and
/// write fails at once with `TimedOut`. rustls only ever reads and writes through this, so a peer
/// that trickles bytes cannot stretch a deadline (it is absolute, not per byte).
#[derive(Debug)]
struct Bounded {
    sock: TcpStream,
    deadline: Instant,
}

impl Bounded {
    /// How long the next read or write may wait.
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left.min(IO_TIMEOUT))
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `f` again after each socket timeout (or interruption) until `deadline`.
fn retry<T>(deadline: Instant, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
            }
            r => return r,
        }
    }
}

/// Run `f` on `sock` with `deadline`, again after each socket timeout until the deadline.
fn before<T>(sock: &mut Bounded, deadline: Instant, mut f: impl FnMut(&mut Bounded) -> io::Result<T>) -> io::Result<T> {
    sock.deadline = deadline;
    retry(deadline, || f(sock))
}

/// One connection: handshake, one request, one answer, close.
fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
    ctx: &Ctx,
    accepted: Instant,
    ticket: &mut Ticket,
) {
    let counters = &ctx.shared.counters;
    let _ = sock.set_nodelay(true);
    let mut sock = Bounded { sock, deadline: accepted + HANDSHAKE_WITHIN };
    let Ok(mut conn) = ServerConnection::new(Arc::clone(config)) else { return };
    let shake = accepted + HANDSHAKE_WITHIN;
    while conn.is_handshaking() {
        if let Err(e) = before(&mut sock, shake, |s| conn.complete_io(s)) {
            let counter = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::NoCertificatesPresented) => &counters.handshake_no_cert,
                Some(rustls::Error::InvalidCertificate(_)) => &counters.handshake_bad_cert,
                _ if e.kind() == io::ErrorKind::TimedOut => &counters.handshake_timeout,
                _ => &counters.handshake_other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // Send the alert rustls queued, if the client still listens (briefly).
            sock.deadline = Instant::now() + CLOSE_WITHIN;
            let _ = conn.write_tls(&mut sock);
            return;
        }
    }
    ticket.shaken();
    let who = identity(&conn, peer);
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let request = match read_request(&mut tls, accepted + REQUEST_WITHIN) {
        Ok(r) => r,
        Err(Some((status, why))) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = respond(&mut tls, status, "application/json", &error_body(&why));
            // Read (and drop) a little of what the client still sends, so closing does not
            // reset the connection before it reads the answer: bounded in bytes and time.
            let (mut junk, mut left, until) = ([0u8; 4096], LINGER_BYTES, Instant::now() + LINGER);
            tls.sock.deadline = until;
            while left > 0 {
                match tls.read(&mut junk) {
                    Ok(n @ 1..) => left = left.saturating_sub(n),
                    _ => break,
                }
            }
            return;
        }
        Err(None) => return,
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    route(&mut tls, &request, &who, ctx);
    tls.conn.send_close_notify();
    let _ = until(&mut tls, Instant::now() + CLOSE_WITHIN, |t| t.conn.complete_io(t.sock).map(drop));
}

/// The client's identity: its certificate's subject and sha256 fingerprint.
fn identity(conn: &ServerConnection, peer: SocketAddr) -> Identity {
    let cert = conn.peer_certificates().and_then(|c| c.first());
    Identity {
        peer: peer.ip().to_string(),
        subject: cert.and_then(|c| super::der::subject(c)).unwrap_or_else(|| "?".into()),
        sha256: cert.map(|c| hex(&Sha256::digest(c.as_ref()))).unwrap_or_default(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

type Conn<'a> = rustls::Stream<'a, ServerConnection, Bounded>;

/// Read one request head (and drop its small body) before `deadline`. `Err(None)`: the client
/// went away or was too slow; `Err(Some(..))`: answer with that status.
fn read_request(tls: &mut Conn<'_>, deadline: Instant) -> Result<Request, Option<(u16, String)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        match http::parse_request(&buf) {
            Ok(Some((req, len))) => {
                if req.content_length > MAX_BODY {
                    return Err(Some((413, format!("bodies are at most {MAX_BODY} bytes"))));
                }
                let want = len + req.content_length as usize;
                while buf.len() < want {
                    let n = until(tls, deadline, |t| t.read(&mut chunk)).map_err(|_| None)?;
                    if n == 0 {
                        return Err(None);
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
                return Ok(req);
            }
            Ok(None) => {}
            Err(e @ (HttpError::HeadTooLarge | HttpError::TooManyHeaders)) => return Err(Some((431, e.to_string()))),
            Err(e) => return Err(Some((400, e.to_string()))),
        }
        let n = until(tls, deadline, |t| t.read(&mut chunk)).map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

fn error_body(message: &str) -> Vec<u8> {
    let mut v = json!({ "error": message }).to_string().into_bytes();
    v.push(b'\n');
    v
}

/// Write all of `data` within `deadline`.
fn write_all(tls: &mut Conn<'_>, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        let n = until(tls, deadline, |t| t.write(data.get(..data.len().min(16 * 1024)).unwrap_or_default()))?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = data.get(n..).unwrap_or_default();
    }
    until(tls, deadline, |t| t.flush())
}

/// [`before`] for the TLS stream: each socket read and write `f` does ends by `deadline`.
fn until<T>(tls: &mut Conn<'_>, deadline: Instant, mut f: impl FnMut(&mut Conn<'_>) -> io::Result<T>) -> io::Result<T> {
    tls.sock.deadline = deadline;
    retry(deadline, || f(tls))
}

fn respond(tls: &mut Conn<'_>, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        http::reason(status),
        body.len()
    );
    let deadline = Instant::now() + WRITE_WITHIN;
    write_all(tls, head.as_bytes(), deadline)?;
    write_all(tls, body, deadline)
}

fn respond_json(tls: &mut Conn<'_>, status: u16, v: &Value) {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let _ = respond(tls, status, "application/json", &body);
}

fn route(tls: &mut Conn<'_>, req: &Request, who: &Identity, ctx: &Ctx) {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let get = req.method == "GET";
    let post = req.method == "POST";
    match parts.as_slice() {
        ["v1", "host"] if get => respond_json(tls, 200, &host(ctx)),
        ["v1", "containers"] if get => {
            let snap = ctx.shared.snapshot();
            let list: Vec<Value> = snap.containers.iter().map(container).collect();
            respond_json(tls, 200, &Value::Array(list));
        }
        ["v1", "containers", name, ..] if (get || post) && !known(ctx, name) => {
            let error = if keel_plan::valid_container_name(name) {
                format!("no such container: {name}")
            } else {
                "not a valid container name".into()
            };
            respond_json(tls, 404, &json!({ "error": error }))
        }
        ["v1", "containers", name] if get => match find(ctx, name) {
            Some(v) => respond_json(tls, 200, &v),
            None => respond_json(tls, 404, &json!({ "error": format!("no such container: {name}") })),
        },
        ["v1", "containers", name, "logs"] if get => logs(tls, req, name, ctx),
        // `name` is a container of the last snapshot: nothing else is ever queued.
        ["v1", "containers", name, action @ ("restart" | "stop" | "start")] if post => {
            let call = match *action {
                "restart" => Call::Restart(name.to_string()),
                "stop" => Call::Stop(name.to_string()),
                _ => Call::Start(name.to_string()),
            };
            mutate(tls, call, who, ctx);
        }
        ["v1", "host", action @ ("reboot" | "poweroff")] if post => {
            mutate(tls, if *action == "reboot" { Call::Reboot } else { Call::Poweroff }, who, ctx)
        }
        ["v1", "events"] if get => events(tls, req, ctx),
        ["metrics"] if get => {
            let _ = respond(tls, 200, "text/plain; version=0.0.4", metrics(ctx).as_bytes());
        }
        ["v1", ..] | ["metrics"] => {
            respond_json(tls, 405, &json!({ "error": format!("{} {} is not an API call", req.method, req.path) }))
        }
        _ => respond_json(tls, 404, &json!({ "error": format!("no such endpoint: {}", req.path) })),
    }
}

/// Hand `call` to the supervisor and wait (bounded) for its answer.
fn mutate(tls: &mut Conn<'_>, call: Call, who: &Identity, ctx: &Ctx) {
    let (tx, rx) = mpsc::sync_channel(1);
    let what = call.describe();
    let deadline = Instant::now() + ANSWER_WITHIN;
    if !ctx.sender.send(Command { call, who: who.clone(), reply: tx, deadline }) {
        return respond_json(tls, 503, &json!({ "error": "too many calls waiting; try again" }));
    }
    // The supervisor drops the call if it has not taken it by `deadline`.
    match rx.recv_timeout(ANSWER_WITHIN + ANSWER_GRACE) {
        Ok(a) => respond_json(tls, a.status, &json!({ "call": what, "status": a.status, "message": a.message })),
        Err(_) => respond_json(tls, 504, &json!({ "error": "the supervisor did not answer in time" })),
    }
}

/// `name` is a container of the last snapshot (so a valid name, too).
fn known(ctx: &Ctx, name: &str) -> bool {
    keel_plan::valid_container_name(name) && ctx.shared.snapshot().containers.iter().any(|c| c.name == name)
}

fn find(ctx: &Ctx, name: &str) -> Option<Value> {
    ctx.shared.snapshot().containers.iter().find(|c| c.name == name).map(container)
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Figures from a container's cgroup.
#[derive(Debug, Default)]
struct Usage {
    memory: Option<u64>,
    cpu_seconds: Option<f64>,
    pids: Option<u64>,
    oom_kills: Option<u64>,
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn usage(name: &str) -> Usage {
    let dir = Path::new(keel_plan::CGROUP_ROOT).join(name);
    let num = |f: &str| read_trim(&dir.join(f)).and_then(|s| s.parse().ok());
    Usage {
        memory: num("memory.current"),
        pids: num("pids.current"),
        cpu_seconds: read_trim(&dir.join("cpu.stat")).and_then(|s| field(&s, "usage_usec")).map(|u| u as f64 / 1e6),
        oom_kills: read_trim(&dir.join("memory.events")).and_then(|s| field(&s, "oom_kill")),
    }
}

fn net_bytes(dev: &str, what: &str) -> Option<u64> {
    read_trim(&Path::new("/sys/class/net").join(dev).join("statistics").join(what)).and_then(|s| s.parse().ok())
}

fn container(c: &super::ContainerView) -> Value {
    let u = usage(&c.name);
    let networks: Vec<Value> = c.addresses.iter().map(|(n, a)| json!({ "network": n, "address": a })).collect();
    json!({
        "name": c.name,
        "state": c.state,
        "pid": c.pid,
        "restarts": c.restarts,
        "last_exit": c.last_exit,
        "health": c.health,
        "started_at": c.started_at,
        "memory_bytes": u.memory,
        "memory_max": c.memory_max,
        "cpu_seconds": u.cpu_seconds,
        "pids": u.pids,
        "oom_kills": u.oom_kills,
        "networks": networks,
    })
}

fn uptime() -> f64 {
    crate::sys::boottime().as_secs_f64()
}

fn host(ctx: &Ctx) -> Value {
    let h = &ctx.host;
    let timeline: Vec<Value> = crate::timeline::recorded()
        .into_iter()
        .map(|(at, event)| json!({ "seconds": at.as_secs_f64(), "event": event }))
        .collect();
    json!({
        "hostname": h.hostname,
        "keel_version": env!("CARGO_PKG_VERSION"),
        "kernel": read_trim(Path::new("/proc/sys/kernel/osrelease")),
        "image": { "name": h.image, "arch": h.arch, "plan_sha256": h.plan_sha256 },
        "uptime_seconds": uptime(),
        "containers": ctx.shared.snapshot().containers.len(),
        "stopping": ctx.shared.snapshot().stopping,
        "timeline": timeline,
    })
}

/// The last `n` lines of `text`.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let mut end = text.len();
    if text.last() == Some(&b'\n') {
        end -= 1;
    }
    let mut seen = 0;
    for i in (0..end).rev() {
        if text.get(i) == Some(&b'\n') {
            seen += 1;
            if seen == n {
                return text.get(i + 1..).unwrap_or_default();
            }
        }
    }
    text
}

fn logs(tls: &mut Conn<'_>, req: &Request, name: &str, ctx: &Ctx) {
    if !ctx.shared.snapshot().containers.iter().any(|c| c.name == name) {
        return respond_json(tls, 404, &json!({ "error": format!("no such container: {name}") }));
    }
    let tail = match req.query("tail").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) => n.min(MAX_TAIL),
        Some(Err(_)) => return respond_json(tls, 400, &json!({ "error": "tail must be a number" })),
    };
    let path = crate::logs::path(&Path::new(keel_plan::DATA_MOUNT).join(crate::logs::DIR), name, 0);
    let (text, mut offset) = read_tail(&path);
    let body = last_lines(&text, tail);
    if req.query("follow") != Some("1") {
        let _ = respond(tls, 200, "text/plain; charset=utf-8", body);
        return;
    }
    let Some(_slot) = FollowSlot::take(&ctx.shared.counters) else {
        return respond_json(tls, 503, &json!({ "error": format!("at most {MAX_FOLLOWS} follow streams at once") }));
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n";
    if write_all(tls, head.as_bytes(), Instant::now() + WRITE_WITHIN).is_err()
        || write_all(tls, body, Instant::now() + WRITE_WITHIN).is_err()
    {
        return;
    }
    let end = Instant::now() + FOLLOW_FOR;
    while Instant::now() < end && !ctx.shared.snapshot().stopping {
        std::thread::sleep(FOLLOW_POLL);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // rotated
        }
        if len == offset {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let mut more = Vec::new();
        let want = (len - offset).min(TAIL_BYTES);
        if io::Seek::seek(&mut f, io::SeekFrom::Start(offset)).is_err()
            || (&mut f).take(want).read_to_end(&mut more).is_err()
        {
            continue;
        }
        offset += more.len() as u64;
        if write_all(tls, &more, Instant::now() + WRITE_WITHIN).is_err() {
            return;
        }
    }
}

/// The end of a log file (at most [`TAIL_BYTES`]) and its length.
fn read_tail(path: &Path) -> (Vec<u8>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else { return (Vec::new(), 0) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    let mut out = Vec::new();
    if io::Seek::seek(&mut f, io::SeekFrom::Start(start)).is_ok() {
        let _ = (&mut f).take(len - start).read_to_end(&mut out);
    }
    let end = start + out.len() as u64;
    (out, end)
}

/// One of the [`MAX_FOLLOWS`] follow streams, given back on drop.
struct FollowSlot<'a>(&'a Counters);

impl<'a> FollowSlot<'a> {
    fn take(c: &'a Counters) -> Option<FollowSlot<'a>> {
        if c.follows.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWS {
            c.follows.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(FollowSlot(c))
    }
}

impl Drop for FollowSlot<'_> {
    fn drop(&mut self) {
        self.0.follows.fetch_sub(1, Ordering::SeqCst);
    }
}

fn event_json(e: &super::Event) -> Value {
    json!({ "seq": e.seq, "time": e.time, "kind": e.kind, "container": e.container, "message": e.message })
}

fn events(tls: &mut Conn<'_>, req: &Request, ctx: &Ctx) {
    let all = ctx.shared.events_after(0);
    if req.query("follow") != Some("1") {
        return respond_json(tls, 200, &Value::Array(all.iter().map(event_json).collect()));
    }
    let Some(_slot) = FollowSlot::take(&ctx.shared.counters) else {
        return respond_json(tls, 503, &json!({ "error": format!("at most {MAX_FOLLOWS} follow streams at once") }));
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
    if write_all(tls, head.as_bytes(), Instant::now() + WRITE_WITHIN).is_err() {
        return;
    }
    let mut last = 0;
    let mut batch = all;
    let end = Instant::now() + FOLLOW_FOR;
    loop {
        let mut out = Vec::new();
        for e in &batch {
            last = last.max(e.seq);
            out.extend_from_slice(event_json(e).to_string().as_bytes());
            out.push(b'\n');
        }
        if !out.is_empty() && write_all(tls, &out, Instant::now() + WRITE_WITHIN).is_err() {
            return;
        }
        if Instant::now() >= end || ctx.shared.snapshot().stopping {
            return;
        }
        std::thread::sleep(FOLLOW_POLL);
        batch = ctx.shared.events_after(last);
    }
}

/// `name{labels} value` lines with their HELP and TYPE.
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

fn metrics(ctx: &Ctx) -> String {
    let mut m = Metrics(String::new());
    let snap = ctx.shared.snapshot();
    m.family("keel_host_uptime_seconds", "gauge", "Seconds since boot.");
    m.sample("keel_host_uptime_seconds", "", format!("{:.3}", uptime()));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
    };
    m.family("keel_host_memory_total_bytes", "gauge", "Total memory.");
    m.sample("keel_host_memory_total_bytes", "", kb("MemTotal:").unwrap_or(0) * 1024);
    m.family("keel_host_memory_available_bytes", "gauge", "Memory available for new work.");
    m.sample("keel_host_memory_available_bytes", "", kb("MemAvailable:").unwrap_or(0) * 1024);
    let load = read_trim(Path::new("/proc/loadavg")).unwrap_or_default();
    let mut loads = load.split_whitespace();
    for (name, help) in
        [("keel_host_load1", "1-minute"), ("keel_host_load5", "5-minute"), ("keel_host_load15", "15-minute")]
    {
        m.family(name, "gauge", &format!("{help} load average."));
        m.sample(name, "", loads.next().unwrap_or("0"));
    }
    let per = |m: &mut Metrics,
               name: &str,
               kind: &str,
               help: &str,
               value: &dyn Fn(&super::ContainerView) -> Option<String>| {
        m.family(name, kind, help);
        for c in snap.containers.iter() {
            if let Some(v) = value(c) {
                m.sample(name, &format!("{{container=\"{}\"}}", c.name), v);
            }
        }
    };
    let usages: Vec<(String, Usage)> = snap.containers.iter().map(|c| (c.name.clone(), usage(&c.name))).collect();
    let u = |c: &super::ContainerView| usages.iter().find(|(n, _)| *n == c.name).map(|(_, u)| u);
    per(&mut m, "keel_container_up", "gauge", "1 while the container runs.", &|c| {
        Some(if c.pid.is_some() { "1" } else { "0" }.into())
    });
    per(&mut m, "keel_container_restarts_total", "counter", "Restarts since boot.", &|c| Some(c.restarts.to_string()));
    per(&mut m, "keel_container_cpu_seconds_total", "counter", "CPU time used by the container's cgroup.", &|c| {
        u(c).and_then(|u| u.cpu_seconds).map(|s| format!("{s:.6}"))
    });
    per(&mut m, "keel_container_memory_bytes", "gauge", "memory.current of the container's cgroup.", &|c| {
        u(c).and_then(|u| u.memory).map(|v| v.to_string())
    });
    per(&mut m, "keel_container_pids", "gauge", "Processes in the container's cgroup.", &|c| {
        u(c).and_then(|u| u.pids).map(|v| v.to_string())
    });
    per(&mut m, "keel_container_oom_kills_total", "counter", "OOM kills in the container's cgroup.", &|c| {
        u(c).and_then(|u| u.oom_kills).map(|v| v.to_string())
    });
    per(&mut m, "keel_container_healthy", "gauge", "1 healthy, 0 not (containers with a health check).", &|c| {
        c.health.map(|h| if h == "healthy" { "1" } else { "0" }.to_string())
    });
    per(&mut m, "keel_container_network_receive_bytes_total", "counter", "Bytes the container received.", &|c| {
        // The host end's transmit is what the container received.
        c.host_if.as_deref().and_then(|d| net_bytes(d, "tx_bytes")).map(|v| v.to_string())
    });
    per(&mut m, "keel_container_network_transmit_bytes_total", "counter", "Bytes the container sent.", &|c| {
        c.host_if.as_deref().and_then(|d| net_bytes(d, "rx_bytes")).map(|v| v.to_string())
    });
    let c = &ctx.shared.counters;
    m.family("keel_api_connections", "gauge", "API connections being served.");
    m.sample("keel_api_connections", "", c.connections.load(Ordering::Relaxed));
    m.family(
        "keel_api_connections_refused_total",
        "counter",
        "Connections closed at once: too many at a time, in the handshake, or from one address.",
    );
    m.sample("keel_api_connections_refused_total", "", c.refused_busy.load(Ordering::Relaxed));
    m.family("keel_api_requests_total", "counter", "Requests read after a good handshake.");
    m.sample("keel_api_requests_total", "", c.requests.load(Ordering::Relaxed));
    m.family("keel_api_bad_requests_total", "counter", "Requests refused as malformed or too large.");
    m.sample("keel_api_bad_requests_total", "", c.bad_requests.load(Ordering::Relaxed));
    m.family("keel_api_handshake_failures_total", "counter", "TLS handshakes that failed, by reason.");
    for (reason, n) in [
        ("no_certificate", &c.handshake_no_cert),
        ("bad_certificate", &c.handshake_bad_cert),
        ("timeout", &c.handshake_timeout),
        ("other", &c.handshake_other),
    ] {
        m.sample("keel_api_handshake_failures_total", &format!("{{reason=\"{reason}\"}}"), n.load(Ordering::Relaxed));
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::RootCertStore;

    /// A server on 127.0.0.1 (test certificates from `testdata/`), in this process: its address,
    /// the supervisor's end and the shared state.
    fn serve_here() -> (SocketAddr, super::super::Link, Arc<Shared>) {
        let tls = Tls {
            ca: include_bytes!("testdata/ca.pem").to_vec(),
            cert: include_bytes!("testdata/server.pem").to_vec(),
            key: include_bytes!("testdata/server.key").to_vec(),
        };
        let config = Arc::new(tls_config(&tls).expect("test TLS config"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, sender, shared) = super::super::channel().unwrap();
        let host = HostInfo {
            hostname: "test".into(),
            image: "test".into(),
            arch: "x86_64".into(),
            plan_sha256: String::new(),
            listen: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, addr.port()),
        };
        run(listener, config, host, Arc::clone(&shared), sender).unwrap();
        (addr, link, shared)
    }

    /// A TLS connection to `addr` with the test client certificate.
    fn client(addr: SocketAddr) -> (rustls::ClientConnection, TcpStream) {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(include_bytes!("testdata/ca.pem")) {
            roots.add(c.unwrap()).unwrap();
        }
        let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/client.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/client.key")).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(keel_net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        (conn, TcpStream::connect(addr).unwrap())
    }

    /// `METHOD PATH` with the test client certificate: the status and the body.
    fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let (mut conn, mut sock) = client(addr);
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        write!(tls, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Unknown and invalid container names are answered by the server thread: never queued for
    /// the supervisor. A known one is, with the client's address and subject.
    #[test]
    fn names_are_checked_before_the_supervisor_sees_them() {
        let (addr, mut link, _shared) = serve_here();
        let web = super::super::ContainerView { name: "web".into(), state: "running", ..Default::default() };
        link.publish(Some(super::super::Snapshot { containers: vec![web], stopping: false }));
        let (status, body) = call(addr, "POST", "/v1/containers/nope/stop");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no such container: nope"), "{body}");
        let (status, body) = call(addr, "POST", "/v1/containers/x\"status=200/restart");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("not a valid container name") && !body.contains("status=200"), "{body}");
        let (status, _) = call(addr, "GET", "/v1/containers/..%2f..%2fetc/logs");
        assert_eq!(status, 404);
        assert!(link.commands().is_empty(), "an unknown name was queued");

        let client = std::thread::spawn(move || call(addr, "POST", "/v1/containers/web/stop"));
        let until = Instant::now() + Duration::from_secs(10);
        let cmd = loop {
            if let Some(c) = link.commands().pop() {
                break c;
            }
            assert!(Instant::now() < until, "the call was not queued");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(cmd.call, Call::Stop("web".into()));
        assert_eq!(cmd.who.peer, "127.0.0.1");
        assert!(cmd.who.subject.contains("keel test client"), "{}", cmd.who.subject);
        assert!(cmd.deadline > Instant::now());
        super::super::answer(&cmd, 202, "stopping container web");
        let (status, body) = client.join().unwrap();
        assert_eq!(status, 202, "{body}");
    }

    /// Whether the server closed `s` (waiting at most `wait`).
    fn closed(s: &mut TcpStream, wait: Duration) -> bool {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // an alert: read on to the end
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return false,
                Err(_) => return true, // reset
            }
        }
    }

    /// A client that never finishes its ClientHello but sends a byte every half second (well
    /// within IO_TIMEOUT) is cut at HANDSHAKE_WITHIN, not kept as long as bytes trickle in.
    #[test]
    fn a_trickling_handshake_is_cut_at_its_deadline() {
        let (addr, _link, shared) = serve_here();
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        // A handshake record header announcing 16 KiB, then the body a byte at a time.
        s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
        let limit = HANDSHAKE_WITHIN + Duration::from_secs(10);
        loop {
            if s.write_all(&[0x01]).is_err() || closed(&mut s, Duration::from_millis(500)) {
                break;
            }
            assert!(start.elapsed() < limit, "still open after {:?}", start.elapsed());
        }
        let took = start.elapsed();
        assert!(took >= HANDSHAKE_WITHIN - Duration::from_millis(100), "cut too early: {took:?}");
        assert!(took < HANDSHAKE_WITHIN + Duration::from_millis(1500), "cut late: {took:?}");
        let c = &shared.counters;
        let until = Instant::now() + Duration::from_secs(2);
        while c.connections.load(Ordering::SeqCst) != 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(c.connections.load(Ordering::SeqCst), 0);
        assert_eq!(c.handshake_timeout.load(Ordering::Relaxed), 1);
    }

    /// An authenticated client that sends its request head a byte every half second is cut at
    /// REQUEST_WITHIN after the accept.
    #[test]
    fn a_trickling_request_is_cut_at_its_deadline() {
        let (addr, _link, shared) = serve_here();
        let start = Instant::now();
        let (mut conn, mut sock) = client(addr);
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"GET /v1/host HTTP/1.1\r\nX-Slow: ").unwrap();
        tls.flush().unwrap();
        let limit = REQUEST_WITHIN + Duration::from_secs(10);
        loop {
            if tls.write_all(b"a").and_then(|()| tls.flush()).is_err() {
                break;
            }
            tls.sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = [0u8; 256];
            match tls.read(&mut buf) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                _ => break, // closed (with or without close_notify), or an unexpected answer
            }
            assert!(start.elapsed() < limit, "still open after {:?}", start.elapsed());
        }
        let took = start.elapsed();
        assert!(took >= REQUEST_WITHIN - Duration::from_millis(100), "cut too early: {took:?}");
        assert!(took < REQUEST_WITHIN + Duration::from_millis(1500), "cut late: {took:?}");
        assert_eq!(shared.counters.requests.load(Ordering::Relaxed), 0);
    }

    /// One source address gets at most MAX_HANDSHAKING_PER_PEER connections in the handshake:
    /// the next is closed at once, the first ones are not.
    #[test]
    fn one_address_cannot_take_every_slot() {
        let (addr, _link, shared) = serve_here();
        let mut first: Vec<TcpStream> =
            (0..MAX_HANDSHAKING_PER_PEER).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Let the accept thread take them first.
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = TcpStream::connect(addr).unwrap();
        assert!(closed(&mut extra, Duration::from_secs(2)), "a connection past the per-address limit stayed open");
        for s in &mut first {
            assert!(!closed(s, Duration::from_millis(100)), "a connection within the limit was closed");
        }
        assert_eq!(shared.counters.refused_busy.load(Ordering::Relaxed), 1);
        // Once those are cut (at the handshake deadline), the address may connect again.
        for s in &mut first {
            assert!(closed(s, HANDSHAKE_WITHIN + Duration::from_secs(2)));
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut again = TcpStream::connect(addr).unwrap();
        assert!(!closed(&mut again, Duration::from_millis(300)));
    }

    #[test]
    fn the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"", 3), b"");
    }

    #[test]
    fn cgroup_fields() {
        assert_eq!(field("usage_usec 1500\nuser_usec 1", "usage_usec"), Some(1500));
        assert_eq!(field("low 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(field("oom_kill_x 3", "oom_kill"), None);
    }
}
