//! Health checks run inside a started container (see `common` for the tree and the root
//! requirement): `exec_in` joins its namespaces with its restrictions; `connect_in` connects in
//! its network namespace only.

mod common;

use std::fs;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use common::{container, within_timeout, Images, ID_BASE};
use keel_plan::ID_RANGE;
use keel_runtime::{connect_failure, connect_in, exec_in, spawn, wait, ExitStatus, Host, Joined};

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
        let j = exec_in(
            &c,
            running.pid,
            &["sh".into(), "-c".into(), "cat /tmp/first; echo pid=$$; hostname; id -u; cat /proc/self/uid_map; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; pwd; echo err >&2".into()],
            None,
            Duration::from_secs(10),
        )
        .expect("the check starts");
        let check = finish(j);
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
