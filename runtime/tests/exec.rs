//! Health checks run inside a started container (see `common` for the tree and the root
//! requirement): `exec_in_background` joins its namespaces with its restrictions and returns
//! without waiting for the exec; `connect_in` connects in its network namespace only.

mod common;

use std::fs;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use common::{container, within_timeout, Images, Parent, ID_BASE};
use keel_plan::ID_RANGE;
use keel_runtime::{
    connect_failure, connect_in, exec_in_background, spawn, wait, ExitStatus, Host, Joined, Pending, RuntimeError,
};

/// Bound on how long starting a check may hold the caller: the clone and the release, never the
/// check's own progress (the old code waited up to 5 s for the exec).
const PROMPT: Duration = Duration::from_secs(1);

/// Read a joined process's output to the end and reap it.
fn finish(j: Joined) -> (ExitStatus, Vec<u8>) {
    let mut out = Vec::new();
    fs::File::from(j.output).read_to_end(&mut out).expect("read the output");
    (wait(j.pid).expect("wait"), out)
}

#[test]
fn a_command_runs_inside_the_container_with_its_restrictions() {
    let (first, check) = within_timeout(|| {
        let images = Images::new();
        let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
        let mut c = container(&["sh", "-c", "echo $$ > /tmp/first; echo ready; sleep 60"]);
        c.uid = 1000;
        c.gid = 1000;
        let running = spawn(&c, &host).expect("container starts");
        let mut ready = [0u8; 6];
        fs::File::from(running.stdout.try_clone().unwrap()).read_exact(&mut ready).expect("ready");
        let (j, pending) = exec_in_background(
            &c,
            running.pid,
            &["sh".into(), "-c".into(), "cat /tmp/first; echo pid=$$; hostname; id -u; cat /proc/self/uid_map; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; pwd; echo err >&2".into()],
            None,
        )
        .expect("the check starts");
        let check = finish(j);
        pending.outcome().expect("it exec'd");
        running.signal(libc::SIGKILL).expect("kill");
        let first = wait(running.pid).expect("wait");
        (first, check)
    });
    assert_eq!(first, ExitStatus::Signaled(libc::SIGKILL));
    let (status, out) = check;
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // The container's /tmp (its mount namespace) and pid namespace: its first process is 1 there.
    assert_eq!(lines.first(), Some(&"1"), "{out}");
    let pid: u32 = lines[1].strip_prefix("pid=").and_then(|p| p.parse().ok()).expect("pid=");
    assert!((2..100).contains(&pid), "the check's pid {pid} is not from the container's pid namespace");
    assert_eq!(lines[2], "keel-test-ct", "UTS namespace");
    assert_eq!(lines[3], "1000", "the container's user");
    assert_eq!(lines[4].split_whitespace().collect::<Vec<_>>(), ["0", &ID_BASE.to_string(), &ID_RANGE.to_string()]);
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(lines[lines.len() - 2], "/", "working directory");
    assert_eq!(lines.last(), Some(&"err"), "stderr goes to the same pipe");
}

/// Start `args` in the container `c` runs as `target`, timing the call.
fn start(
    c: &keel_plan::Container,
    target: libc::pid_t,
    args: &[&str],
    cgroup: Option<&keel_runtime::Cgroup>,
) -> (Joined, Pending, Duration) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let t = Instant::now();
    let (j, pending) = exec_in_background(c, target, &args, cgroup).expect("the check starts");
    (j, pending, t.elapsed())
}

/// `exec_in_background` returns at once; once the child is reaped, `Pending::outcome` says
/// whether it exec'd: `Ok` for a command that ran, the exec step's error for a missing program.
#[test]
fn a_checks_exec_is_judged_after_it_is_reaped() {
    let (ran, missing) = within_timeout(|| {
        let images = Images::new();
        let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
        let c = container(&["sleep", "60"]);
        let running = spawn(&c, &host).expect("container starts");
        let (j, pending, took) = start(&c, running.pid, &["sh", "-c", "echo ran"], None);
        let ran = (finish(j), pending.outcome(), took);
        let (j, pending, took) = start(&c, running.pid, &["/no/such/check", "arg"], None);
        let missing = (finish(j), pending.outcome(), took);
        running.signal(libc::SIGKILL).expect("kill");
        let _ = wait(running.pid);
        (ran, missing)
    });
    let ((status, out), outcome, took) = ran;
    assert!(took < PROMPT, "starting the check took {took:?}");
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(out, b"ran\n");
    assert!(outcome.is_ok(), "{outcome:?}");

    let ((status, out), outcome, took) = missing;
    assert!(took < PROMPT, "starting the check took {took:?}");
    assert_eq!(status, ExitStatus::Exited(127));
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    match outcome {
        Err(RuntimeError::Start { step, source }) => {
            assert_eq!(step, "exec /no/such/check");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("not a start error: {other:?}"),
    }
}

/// Issue 12, finding 3: a container can stop its check before the exec (here: its cgroup is
/// frozen, so the check freezes as it is placed in it). Starting the check must not wait for the
/// exec; the check is killed like one past its timeout, and did not run.
#[test]
fn a_check_stopped_before_its_exec_does_not_hold_the_caller() {
    let (started, check, first) = within_timeout(|| {
        let images = Images::new();
        let parent = Parent::new();
        let host = Host { images: images.path(), cgroups: Some(&parent.0), scratch: &images.scratch(), volumes: None };
        let c = container(&["sleep", "60"]);
        let running = spawn(&c, &host).expect("container starts");
        let cgroup = running.cgroup.clone().expect("a cgroup");
        let file = |name: &str| cgroup.path().join(name);
        fs::write(file("cgroup.freeze"), "1").expect("freeze the container");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fs::read_to_string(file("cgroup.events")).unwrap_or_default().contains("frozen 1") {
            assert!(Instant::now() < deadline, "the container's cgroup did not freeze");
            thread::sleep(Duration::from_millis(10));
        }
        let (j, pending, took) = start(&c, running.pid, &["sh", "-c", "echo ran"], Some(&cgroup));
        // Time it would have had to exec (it cannot: it is frozen).
        thread::sleep(Duration::from_millis(300));
        let frozen = fs::read_to_string(file("cgroup.procs")).unwrap_or_default();
        let placed = frozen.split_whitespace().any(|p| p == j.pid.to_string());
        fs::write(file("cgroup.kill"), "1").expect("kill the cgroup");
        let check = finish(j);
        let outcome = pending.outcome();
        let first = wait(running.pid).expect("wait");
        let _ = fs::write(file("cgroup.freeze"), "0");
        cgroup.remove().expect("rmdir the empty cgroup");
        ((took, placed), (check, outcome), first)
    });
    let (took, placed) = started;
    assert!(placed, "the check was not in the container's cgroup");
    assert!(took < PROMPT, "starting a check that cannot exec took {took:?}");
    let ((status, out), outcome) = check;
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(out.is_empty(), "the check ran: {}", String::from_utf8_lossy(&out));
    // Killed before it could exec or report: no failure of its own, just a killed check.
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(first, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn a_tcp_check_connects_in_the_containers_network_only() {
    let (open, closed) = within_timeout(|| {
        let images = Images::new();
        let host = Host { images: images.path(), cgroups: None, scratch: &images.scratch(), volumes: None };
        let c = container(&["busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/true"]);
        let running = spawn(&c, &host).expect("container starts");
        // Wait for nc to listen: connect until it does (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let open = loop {
            let got = finish(connect_in(running.pid, 8080, Duration::from_secs(2)).expect("connect child"));
            if got.0 == ExitStatus::Exited(0) || Instant::now() > deadline {
                break got;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let closed = finish(connect_in(running.pid, 8081, Duration::from_secs(2)).expect("connect child"));
        running.signal(libc::SIGKILL).expect("kill");
        let _ = wait(running.pid);
        (open, closed)
    });
    assert_eq!(open.0, ExitStatus::Exited(0), "{:?}", connect_failure(8080, &open.1));
    assert_eq!(closed.0, ExitStatus::Exited(127));
    let why = connect_failure(8081, &closed.1).expect("a report");
    assert!(why.starts_with("connect to 127.0.0.1:8081: Connection refused"), "{why}");
    // The host's 8080 is not the container's: nothing listens there on the host's loopback.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err(), "nc listened on the host");
}
