//! The web example, as a user runs it: `keel build configs/web.toml`, then
//! `keel run IMAGE --publish PORT:8080`, and curl on this machine fetches the page that Debian's
//! nginx serves from inside the VM (and, through nginx, the api container's answer, which asks
//! db on the back network). Both arches.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_tests::scenario::Scenario;
use keel_tests::{both_arches, curl, free_port, keel_bin};

/// Stop `keel run` and its QEMU (one process group): TERM, then KILL after 30 s.
fn stop(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

fn web(arch: Arch) {
    let s = Scenario::from_repo("configs/web.toml", arch);
    let port = free_port();
    let log = s.img().with_extension("console");
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(keel_bin())
            .args(["run", &s.img().to_string_lossy(), "--timeout", "600s", "--publish", &format!("{port}:8080")])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start keel run")
    };
    let deadline = Instant::now() + Duration::from_secs(480);
    let (mut page, mut api) = (String::new(), String::new());
    while Instant::now() < deadline {
        page = String::from_utf8_lossy(&curl(port, "/").stdout).into_owned();
        api = String::from_utf8_lossy(&curl(port, "/api/").stdout).into_owned();
        if page.contains("Hello from nginx on keel") && api.contains("db is up") {
            break;
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop(&mut child);
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(page.contains("Hello from nginx on keel"), "{arch}: no nginx page through --publish: `{page}`\n{console}");
    assert!(api.contains("db is up"), "{arch}: nginx → api → db: `{api}`\n{console}");
    println!("{arch}: {}", api.trim());
}

both_arches!(web);
