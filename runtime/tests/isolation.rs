//! Isolation, checked from inside real containers (see `common` for the tree and the root
//! requirement): user namespace and ids, capabilities, no_new_privs, read-only root and tmpfs,
//! the throwaway overlay, masked /proc, read-only /sys, loopback-only network, /dev, rlimits and
//! seccomp.

mod common;

use std::fs;
use std::path::Path;

use common::{container, run, sh, ID_BASE};
use keel_plan::seccomp::{encode, Insn};
use keel_plan::{caps, ID_RANGE};
use keel_runtime::{kernfs, ExitStatus, RuntimeError};

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn container_root_is_an_unprivileged_host_uid_without_capabilities() {
    let o = run(sh("cat /proc/self/uid_map /proc/self/gid_map; echo ---; cat /proc/self/status; echo ---; \
                    id -u; stat -c %u:%g /bin/busybox; touch /tmp/f; busybox chown 5 /tmp/f 2>&1; echo chown=$?"))
    .expect("container starts")
    .ok();
    let parts: Vec<&str> = o.stdout.split("---\n").collect();
    let [maps, status, rest] = parts.as_slice() else { panic!("{}", o.stdout) };
    let expected = format!("0 {ID_BASE} {ID_RANGE}");
    for map in maps.lines() {
        assert_eq!(map.split_whitespace().collect::<Vec<_>>().join(" "), expected, "{maps}");
    }
    assert_eq!(maps.lines().count(), 2);
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(status, key), "0000000000000000", "{key}");
    }
    assert_eq!(status_field(status, "NoNewPrivs"), "1");
    assert_eq!(status_field(status, "Seccomp"), "0", "no filter asked for");
    let rest: Vec<&str> = rest.lines().collect();
    // Container root; the tree, stored owned by ID_BASE, shows its image owners.
    assert_eq!(rest.first(), Some(&"0"));
    assert_eq!(rest.get(1), Some(&"0:0"));
    // Without CAP_CHOWN even container root cannot give a file away.
    assert!(rest.iter().any(|l| l.contains("Operation not permitted")), "{rest:?}");
    assert_eq!(rest.last(), Some(&"chown=1"));
}

#[test]
fn kept_capabilities_are_container_roots_only() {
    let net_bind = caps::by_name("NET_BIND_SERVICE").expect("cap");
    let script = "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status";
    let mut c = sh(script);
    c.capabilities = vec![net_bind];
    let o = run(c.clone()).expect("container starts").ok();
    assert_eq!(status_field(&o.stdout, "CapEff"), "0000000000000400");
    assert_eq!(status_field(&o.stdout, "CapPrm"), "0000000000000400");
    assert_eq!(status_field(&o.stdout, "CapBnd"), "0000000000000400");
    assert_eq!(status_field(&o.stdout, "CapAmb"), "0000000000000000");
    c.uid = 1000;
    let o = run(c).expect("container starts").ok();
    assert_eq!(status_field(&o.stdout, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&o.stdout, "CapBnd"), "0000000000000400");
}

#[test]
fn a_read_only_root_with_writable_tmpfs() {
    let o = run(sh("touch /x 2>&1; echo root=$?; touch /tmp/x && echo tmp=$?; touch /run/x && echo run=$?; \
                    echo \"rootmount=$(grep -E '^[^ ]+ / ' /proc/self/mounts)\"; stat -c tmpmode=%a /tmp"))
    .expect("container starts")
    .ok();
    assert!(o.stdout.contains("Read-only file system"), "{}", o.stdout);
    assert_eq!(o.get("root"), "1");
    assert_eq!(o.get("tmp"), "0");
    assert_eq!(o.get("run"), "0");
    assert_eq!(o.get("tmpmode"), "1777");
    let options: Vec<&str> = o.get("rootmount").split_whitespace().nth(3).unwrap_or("").split(',').collect();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(options.contains(&flag), "/ is not {flag}: {options:?}");
    }
}

#[test]
fn a_writable_root_is_a_throwaway_overlay() {
    common::within_timeout(|| {
        let images = common::Images::new();
        // New files, a removed file, a new directory, and an image directory removed and made
        // again (which needs the overlay's whiteout and opaque-directory metadata).
        let mut c = sh("echo hello > /new && cat /new; rm /bin/true && echo removed; mkdir /etc2 && echo made; \
                        rm -r /usr/share && mkdir /usr/share && echo recreated; ls -A /usr/share | busybox wc -l; \
                        echo \"rootmount=$(grep -E '^[^ ]+ / ' /proc/self/mounts)\"");
        c.read_only = false;
        let o = common::run_on(&images, None, &c).expect("container starts").ok();
        assert_eq!(o.stdout.lines().take(5).collect::<Vec<_>>(), ["hello", "removed", "made", "recreated", "0"]);
        assert!(o.get("rootmount").starts_with("overlay / overlay "), "{}", o.get("rootmount"));
        assert_eq!(o.stderr, "");
        // The tree on the host is untouched, nothing stays mounted, the scratch directory is empty.
        let root = images.root();
        assert!(!root.join("new").exists());
        assert!(!root.join("etc2").exists());
        assert!(fs::symlink_metadata(root.join("bin/true")).is_ok());
        assert!(root.join("usr/share/doc").is_dir());
        let scratch = images.scratch();
        let mounts = fs::read_to_string("/proc/self/mounts").expect("mounts");
        assert!(!mounts.contains(scratch.to_str().expect("utf-8")), "left mounted on the host: {mounts}");
        let left: Vec<_> = fs::read_dir(scratch.join("test")).expect("scratch dir").collect();
        assert!(left.is_empty(), "the overlay's layers leaked to the host: {left:?}");
        // A second run starts from the image again.
        let o = common::run_on(&images, None, &sh("cat /new 2>&1; ls /bin/true")).expect("container starts");
        assert!(o.stdout.contains("No such file"), "{}", o.stdout);
        assert!(o.stdout.contains("/bin/true"), "{}", o.stdout);
    });
}

/// The paths of `list` this kernel has (the host's and the container's kernel are the same one).
fn present(list: &[&'static str]) -> Vec<&'static str> {
    list.iter().copied().filter(|p| Path::new("/").join(p).exists()).collect()
}

#[test]
fn proc_is_masked_and_sys_is_read_only() {
    // Which masks apply depends on the kernel's config: this build host's has no /proc/kcore and
    // no /proc/sysrq-trigger (Debian's 6.1, in keel guests, has both; the boot tests check them).
    let files = present(&kernfs::MASKED_FILES);
    let dirs = present(&kernfs::MASKED_DIRS);
    let read_only = present(&kernfs::READ_ONLY);
    assert!(!files.is_empty() && !dirs.is_empty() && !read_only.is_empty(), "nothing to check on this kernel");
    let mut script = String::from(
        "echo x > /proc/sys/kernel/domainname 2>/dev/null; echo procsys=$?; \
         touch /sys/x 2>/dev/null; echo sys=$?; echo \"sysmount=$(grep ' /sys sysfs ' /proc/self/mounts)\"; ",
    );
    for f in &files {
        script.push_str(&format!("echo \"/{f}=$(stat -c %F:%t:%T /{f}):$(wc -c < /{f})\"; "));
    }
    for d in &dirs {
        script.push_str(&format!("echo \"/{d}=$(ls -A /{d} | busybox wc -l)\"; "));
    }
    for p in &read_only {
        script.push_str(&format!("echo \"ro /{p}=$(grep ' /{p} ' /proc/self/mounts)\"; "));
    }
    let o = run(sh(&script)).expect("container starts").ok();
    for f in &files {
        assert_eq!(o.get(&format!("/{f}")), "character special file:1:3:0", "/{f} is not /dev/null");
    }
    for d in &dirs {
        assert_eq!(o.get(&format!("/{d}")), "0", "/{d} is not masked");
    }
    let ro = |line: &str| line.split_whitespace().nth(3).is_some_and(|o| o.split(',').any(|f| f == "ro"));
    for p in &read_only {
        let line = o.get(&format!("ro /{p}"));
        assert!(ro(line), "/{p} is not read-only: {line}");
    }
    assert_eq!(o.get("procsys"), "1", "/proc/sys is writable");
    assert_eq!(o.get("sys"), "1", "/sys is writable");
    assert!(ro(o.get("sysmount")), "sysfs: {}", o.get("sysmount"));
}

#[test]
fn the_network_is_loopback_only_and_up() {
    let o = run(sh("echo \"netdev=$(busybox awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev)\"; \
                    echo \"sysnet=$(ls /sys/class/net)\"; echo flags=$(cat /sys/class/net/lo/flags)"))
    .expect("container starts")
    .ok();
    assert_eq!(o.get("netdev"), "lo");
    assert_eq!(o.get("sysnet"), "lo");
    let flags = u32::from_str_radix(o.get("flags").trim_start_matches("0x"), 16).expect("hex flags");
    assert_eq!(flags & libc::IFF_UP as u32, 1, "lo is down: {flags:#x}");
}

#[test]
fn dev_has_its_own_pts_and_a_shm() {
    let o = run(sh("echo \"pts=$(grep ' /dev/pts ' /proc/self/mounts)\"; echo hi > /dev/shm/x && echo shm=$?; \
                    echo ptmx=$(busybox readlink /dev/ptmx); ls /dev/pts"))
    .expect("container starts")
    .ok();
    let pts = o.get("pts");
    assert!(pts.starts_with("devpts /dev/pts devpts "), "{pts}");
    // The kernel shows ids as the host sees them: the container's group 5 (tty).
    assert!(pts.contains(&format!("gid={}", ID_BASE + 5)) && pts.contains("ptmxmode=666"), "{pts}");
    assert_eq!(o.get("shm"), "0");
    assert_eq!(o.get("ptmx"), "pts/ptmx");
    // A new devpts instance: only its ptmx, none of the host's terminals.
    assert_eq!(o.stdout.lines().last(), Some("ptmx"));
}

/// Whether this process has CAP_SYS_RESOURCE (needed to raise a hard limit).
fn has_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let eff = u64::from_str_radix(status_field(&status, "CapEff"), 16).expect("hex");
    eff & (1 << caps::by_name("SYS_RESOURCE").expect("cap")) != 0
}

fn own_nofile_hard() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    line.split_whitespace().nth(4).expect("hard").parse().expect("number")
}

#[test]
fn nofile_is_set_by_the_parent() {
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open").expect("nr_open").trim().parse().expect("number");
    let mut c = sh("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn)");
    // keel-init has CAP_SYS_RESOURCE and raises the hard limit (the default is 1024:524288). This
    // build host's root lacks it: there the hard limit can only stay or go down, and raising it
    // must fail the start rather than be ignored.
    let hard = if has_sys_resource() { nr_open } else { own_nofile_hard() };
    c.nofile = keel_plan::Rlimit { soft: 1234, hard };
    let o = run(c.clone()).expect("container starts").ok();
    assert_eq!(o.get("soft"), "1234");
    assert_eq!(o.get("hard"), hard.to_string());
    if !has_sys_resource() {
        c.nofile.hard = own_nofile_hard() + 1;
        match run(c) {
            Err(RuntimeError::Rlimit(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
            other => panic!("{other:?}"),
        }
    }
}

/// A filter returning EPERM for mkdir and mkdirat, allowing everything else.
fn deny_mkdir() -> Vec<Insn> {
    const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS, k = offsetof(seccomp_data, nr)
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000;
    let errno = 0x0005_0000 | libc::EPERM as u32;
    let mut p = vec![Insn { code: LD_NR, jt: 0, jf: 0, k: 0 }];
    let mut nrs = vec![libc::SYS_mkdirat as u32];
    #[cfg(target_arch = "x86_64")]
    nrs.push(libc::SYS_mkdir as u32);
    let n = nrs.len() as u8;
    for (i, nr) in nrs.iter().enumerate() {
        // Jump over the remaining checks and the allow to the errno return.
        p.push(Insn { code: JEQ, jt: n - i as u8, jf: 0, k: *nr });
    }
    p.push(Insn { code: RET, jt: 0, jf: 0, k: ALLOW });
    p.push(Insn { code: RET, jt: 0, jf: 0, k: errno });
    p
}

#[test]
fn seccomp_filters_are_installed_last_and_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filter = dir.path().join("deny-mkdir");
    // Two programs, like keel's own files may hold: both are installed.
    let allow_all = vec![Insn { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }];
    fs::write(&filter, encode(&[allow_all, deny_mkdir()])).expect("write filter");
    let mut c = sh("mkdir /tmp/d 2>&1; echo mkdir=$?; touch /tmp/f && echo touch=$?; \
                    grep -E '^Seccomp(_filters)?:' /proc/self/status");
    c.seccomp = Some(filter.display().to_string());
    let o = run(c).expect("container starts (the filter allows execve)").ok();
    assert!(o.stdout.contains("Operation not permitted"), "{}", o.stdout);
    assert_eq!(o.get("mkdir"), "1");
    assert_eq!(o.get("touch"), "0");
    assert_eq!(status_field(&o.stdout, "Seccomp"), "2");
    assert_eq!(status_field(&o.stdout, "Seccomp_filters"), "2");
}

#[test]
fn a_filter_that_denies_execve_fails_the_start_at_the_exec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filter = dir.path().join("deny-execve");
    let p = vec![
        Insn { code: 0x20, jt: 0, jf: 0, k: 0 },
        Insn { code: 0x15, jt: 0, jf: 1, k: libc::SYS_execve as u32 },
        Insn { code: 0x06, jt: 0, jf: 0, k: 0x0005_0000 | libc::EACCES as u32 },
        Insn { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 },
    ];
    fs::write(&filter, encode(&[p])).expect("write filter");
    let mut c = container(&["/bin/true"]);
    c.seccomp = Some(filter.display().to_string());
    match run(c) {
        Err(RuntimeError::Start { step, source }) => {
            assert_eq!(step, "exec /bin/true");
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
        }
        other => panic!("{other:?}"),
    }
    // And the container's status is unaffected otherwise.
    assert_eq!(run(container(&["/bin/true"])).expect("starts").status, ExitStatus::Exited(0));
}
