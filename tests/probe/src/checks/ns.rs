//! Namespaces: one info line per kind with its inode (the boot test compares them with
//! keel-init's), and self-checks that each is not the kernel's initial one.

use crate::errno::Errno;
use crate::parse::{self, IdRange};
use crate::report::{say, verdict, Outcome, Report};
use crate::sys;

/// Namespace kinds with the fixed inode of the initial namespace (include/linux/proc_ns.h).
/// Linux 6.1 fixes ipc, uts, user, pid and cgroup; newer kernels also net (0xEFFFFFF9) and mnt
/// (0xEFFFFFF8). Dynamic inodes start at 0xF0000000, so no other namespace can have these.
const KINDS: [(&str, u64); 7] = [
    ("pid", 0xEFFF_FFFC),
    ("mnt", 0xEFFF_FFF8),
    ("uts", 0xEFFF_FFFE),
    ("ipc", 0xEFFF_FFFF),
    ("net", 0xEFFF_FFF9),
    ("cgroup", 0xEFFF_FFFB),
    ("user", 0xEFFF_FFFD),
];

/// What /proc/self/ns/KIND says.
struct Ns {
    kind: &'static str,
    initial: u64,
    link: Result<String, Errno>,
}

impl Ns {
    fn read(kind: &'static str, initial: u64) -> Self {
        let link = std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| Errno::from_io(&e));
        Ns { kind, initial, link }
    }

    /// `Ok("net:[4026532281]")` if the namespace is not the initial one, else why not.
    fn not_initial(&self) -> Outcome {
        let link = self.link.as_ref().map_err(|e| format!("readlink /proc/self/ns/{}: {e}", self.kind))?;
        match parse::ns_inode(link) {
            Some(ino) if ino == self.initial => Err(format!("{link} is the initial {} namespace", self.kind)),
            Some(_) => Ok(link.clone()),
            None => Err(format!("cannot read an inode from {link:?}")),
        }
    }
}

/// Prints the `probe: ns` lines and records ns-pid … ns-user and root-not-host-root.
pub fn run(report: &mut Report) {
    let all: Vec<Ns> = KINDS.iter().map(|&(kind, initial)| Ns::read(kind, initial)).collect();
    for ns in &all {
        match &ns.link {
            Ok(link) => {
                let ino = parse::ns_inode(link).map_or_else(|| "?".to_string(), |i| i.to_string());
                say(&format!("ns {} {ino} {link}", ns.kind));
            }
            Err(e) => say(&format!("ns {} ? ({e})", ns.kind)),
        }
    }
    let uid_map = read("/proc/self/uid_map");
    for ns in &all {
        let extra = match ns.kind {
            "pid" => pid_is_one(),
            "mnt" => Ok("(keel-init's mnt namespace is compared by the boot test)".to_string()),
            "uts" => Ok(format!("hostname={}", read("/proc/sys/kernel/hostname").unwrap_or_else(|e| e).trim())),
            "ipc" => Ok(String::new()),
            "net" => own_interfaces(),
            "cgroup" => cgroup_is_root(),
            "user" => uid_map.clone().and_then(|m| user_map_is_private(&m)),
            _ => Ok(String::new()),
        };
        let outcome = both(ns.not_initial(), extra);
        report.record(&format!("ns-{}", ns.kind), outcome);
    }
    report.record("root-not-host-root", uid_map.and_then(|m| root_is_not_host_root(&m)));
}

/// Passes if both pass; the detail has both parts either way.
fn both(a: Outcome, b: Outcome) -> Outcome {
    let pass = a.is_ok() && b.is_ok();
    let text = |o: Outcome| o.unwrap_or_else(|e| e);
    let parts: Vec<String> = [text(a), text(b)].into_iter().filter(|t| !t.is_empty()).collect();
    verdict(pass, parts.join("; "))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {}", Errno::from_io(&e)))
}

fn pid_is_one() -> Outcome {
    let pid = sys::getpid();
    verdict(pid == 1, format!("getpid()={pid}"))
}

/// `lo`, and `eth0` for a container on a network: no interface of the host's (net-interfaces
/// checks more closely).
fn own_interfaces() -> Outcome {
    let text = read("/proc/net/dev")?;
    let ifaces = parse::net_dev_interfaces(&text);
    let own = ifaces.contains(&"lo") && ifaces.iter().all(|i| *i == "lo" || *i == "eth0");
    verdict(own, format!("interfaces: {}", ifaces.join(",")))
}

fn cgroup_is_root() -> Outcome {
    let text = read("/proc/self/cgroup")?;
    let text = text.trim();
    verdict(text == "0::/", format!("/proc/self/cgroup={text:?}"))
}

/// uid_map is one range `0 X N` with X != 0, not the initial namespace's identity map.
fn user_map_is_private(text: &str) -> Outcome {
    let map = parse::id_map(text).ok_or_else(|| format!("unreadable uid_map {:?}", text.trim()))?;
    let shown = describe(&map);
    if parse::is_identity_map(&map) {
        return Err(format!("uid_map \"{shown}\" is the identity map of the initial user namespace"));
    }
    match map.as_slice() {
        [IdRange { inside: 0, outside, .. }] if *outside != 0 => Ok(format!("uid_map \"{shown}\"")),
        _ => Err(format!("uid_map \"{shown}\" is not a single range from 0 to a non-zero host id")),
    }
}

/// Container uid 0 maps to a host uid other than 0, and no range reaches host uid 0.
fn root_is_not_host_root(text: &str) -> Outcome {
    let map = parse::id_map(text).ok_or_else(|| format!("unreadable uid_map {:?}", text.trim()))?;
    let shown = describe(&map);
    let root = map.iter().find(|r| r.inside == 0).map(|r| r.outside);
    let reaches_host_root = map.iter().any(|r| r.outside == 0);
    match root {
        Some(host) if host != 0 && !reaches_host_root => Ok(format!("uid 0 is host uid {host}")),
        Some(host) => Err(format!("uid 0 is host uid {host}; uid_map \"{shown}\"")),
        None => Err(format!("uid 0 is not mapped; uid_map \"{shown}\"")),
    }
}

fn describe(map: &[IdRange]) -> String {
    map.iter().map(|r| format!("{} {} {}", r.inside, r.outside, r.count)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_map_verdicts() {
        assert!(user_map_is_private("0 131072 65536\n").is_ok());
        assert!(user_map_is_private("0 0 4294967295\n").is_err());
        assert!(user_map_is_private("0 0 65536\n").is_err());
        assert!(user_map_is_private("0 131072 1\n1 200000 10\n").is_err());
        assert!(root_is_not_host_root("0 131072 65536\n").is_ok());
        assert!(root_is_not_host_root("0 0 4294967295\n").is_err());
        assert!(root_is_not_host_root("0 1000 1\n1 0 1\n").is_err(), "a range reaching host root");
        assert!(root_is_not_host_root("1 1000 1\n").is_err(), "uid 0 unmapped");
    }

    #[test]
    fn initial_inode_is_refused() {
        let ns = Ns { kind: "user", initial: 0xEFFF_FFFD, link: Ok("user:[4026531837]".into()) };
        assert!(ns.not_initial().is_err());
        let ns = Ns { kind: "user", initial: 0xEFFF_FFFD, link: Ok("user:[4026532290]".into()) };
        assert_eq!(ns.not_initial(), Ok("user:[4026532290]".to_string()));
        assert_eq!(both(Ok("a".into()), Ok(String::new())), Ok("a".to_string()));
        assert_eq!(both(Ok("a".into()), Err("b".into())), Err("a; b".to_string()));
        assert_eq!(both(Err("a".into()), Ok("b".into())), Err("a; b".to_string()));
    }
}
