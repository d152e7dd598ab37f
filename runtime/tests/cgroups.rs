//! cgroup v2, on the build host (see `common` for the tree and the root requirement).
//!
//! keel guests have a pure cgroup v2 hierarchy with every controller. Build hosts may not: this one
//! mounts cgroups in hybrid mode, with the memory, cpu and pids controllers on v1 hierarchies and an
//! empty cgroup2 at /sys/fs/cgroup/unified. So every test here uses the host's cgroup2 mount for
//! what needs no controller (the container's own cgroup, its placement, its namespace, the
//! read-only cgroup2 mount, removal), and checks the limits only where the controllers are
//! available; where they are not, it checks that asking for a limit is refused rather than ignored.

mod common;

use std::fs;
use std::path::Path;

use common::{cgroup2, collect, sh, within_timeout, Images, Parent};
use keel_runtime::{prepare_cgroups, spawn, wait, ExitStatus, Host, RuntimeError};

fn has_controllers(dir: &Path, wanted: &[&str]) -> bool {
    let list = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    wanted.iter().all(|w| list.split_whitespace().any(|c| c == *w))
}

#[test]
fn a_container_runs_in_its_own_cgroup_and_cgroup_namespace() {
    within_timeout(|| {
        let images = Images::new();
        let parent = Parent::new();
        let host = Host { images: images.path(), cgroups: Some(&parent.0), scratch: &images.scratch(), volumes: None };

        // Placed before it runs anything: the host sees its pid in <parent>/test.
        let running = spawn(&common::container(&["sleep", "100"]), &host).expect("container starts");
        let cgroup = running.cgroup.clone().expect("a cgroup");
        assert_eq!(cgroup.path(), parent.0.join("test"));
        let procs = fs::read_to_string(cgroup.path().join("cgroup.procs")).expect("cgroup.procs");
        assert_eq!(procs.split_whitespace().collect::<Vec<_>>(), [running.pid.to_string()]);
        running.signal(libc::SIGKILL).expect("kill");
        assert_eq!(wait(running.pid).expect("wait"), ExitStatus::Signaled(libc::SIGKILL));
        cgroup.remove().expect("rmdir the empty cgroup");
        assert!(!cgroup.path().exists());

        // Inside, that cgroup is the root, mounted read-only.
        let c = sh("echo cg=$(cat /proc/self/cgroup); echo procs=$(cat /sys/fs/cgroup/cgroup.procs | busybox xargs); \
                    echo \"mount=$(grep ' /sys/fs/cgroup ' /proc/self/mounts)\"; mkdir /sys/fs/cgroup/x 2>/dev/null; \
                    echo mkdir=$?");
        let running = spawn(&c, &host).expect("container starts");
        let cgroup = running.cgroup.clone().expect("a cgroup");
        let o = collect(running).expect("collect").ok();
        // (On a hybrid host the v1 hierarchies are listed too; the namespace roots them all.)
        let cg: Vec<&str> = o.get("cg").split_whitespace().collect();
        assert!(cg.contains(&"0::/") && cg.iter().all(|l| l.ends_with(":/")), "{cg:?}");
        // The shell (pid 1) and the cat (pid 2 or 3) at the time.
        assert!(o.get("procs").split_whitespace().any(|p| p == "1"), "{}", o.get("procs"));
        let mount = o.get("mount");
        assert!(mount.starts_with("cgroup2 /sys/fs/cgroup cgroup2 ro,"), "{mount}");
        assert_eq!(o.get("mkdir"), "1", "the cgroup tree is writable inside");
        cgroup.remove().expect("rmdir");
    });
}

#[test]
fn limits_are_enforced_or_refused() {
    within_timeout(|| {
        let images = Images::new();
        let parent = Parent::new();
        let host = Host { images: images.path(), cgroups: Some(&parent.0), scratch: &images.scratch(), volumes: None };
        let mut c = sh("echo mem=$(cat /sys/fs/cgroup/memory.max); echo pids=$(cat /sys/fs/cgroup/pids.max); \
                        echo swap=$(cat /sys/fs/cgroup/memory.swap.max); \
                        for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; echo forked");
        c.limits = keel_plan::Limits { memory_max: Some(32 << 20), cpu_max: None, pids_max: Some(4) };
        if has_controllers(&cgroup2(), &["memory", "pids"]) {
            prepare_cgroups(&parent.0).expect("enable the controllers");
            let running = spawn(&c, &host).expect("container starts");
            let o = collect(running).expect("collect").ok();
            assert_eq!(o.get("mem"), (32u64 << 20).to_string());
            assert_eq!(o.get("pids"), "4");
            assert!(
                o.stdout.contains("can't fork") || o.stdout.contains("Resource temporarily unavailable"),
                "{}",
                o.stdout
            );
        } else {
            // This host: no memory controller in cgroup2. A memory limit cannot be enforced, so
            // the container is not started, and the error names the file.
            match spawn(&c, &host) {
                Err(RuntimeError::Cgroup { path, source }) => {
                    assert_eq!(path, parent.0.join("test/memory.max"));
                    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                }
                other => panic!("a memory limit without a memory controller was not refused: {other:?}"),
            }
            let e = prepare_cgroups(&parent.0).expect_err("controllers enabled where there are none");
            assert!(e.to_string().contains("cgroup.subtree_control"), "{e}");
        }
    });
}

#[test]
fn without_a_cgroup_there_is_no_cgroup_mount() {
    let o = common::run(sh(
        "echo \"mount=$(grep -c ' /sys/fs/cgroup ' /proc/self/mounts)\"; echo cg=$(cat /proc/self/cgroup)",
    ))
    .expect("container starts")
    .ok();
    assert_eq!(o.get("mount"), "0");
    // The cgroup namespace is still its own: every hierarchy shows its root, no host path.
    let cg: Vec<&str> = o.get("cg").split_whitespace().collect();
    assert!(cg.contains(&"0::/"), "{cg:?}");
    assert!(cg.iter().all(|l| l.ends_with(":/")), "a host cgroup path shows: {cg:?}");
}
