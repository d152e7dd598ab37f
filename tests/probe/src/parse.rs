//! Pure parsers for the kernel's text files: /proc/self/status, uid_map, namespace links,
//! /proc/net/dev, /proc/self/mountinfo and the flat-keyed cgroup files. No I/O, so they are unit-tested here.

/// The value of `Key:` in /proc/PID/status, trimmed (`CapEff:\t0000…` → `0000…`).
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// A capability mask in hex as /proc prints it.
pub fn hex_mask(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim(), 16).ok()
}

/// One line of /proc/PID/uid_map or gid_map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u64,
    /// The id it maps to in the parent namespace.
    pub outside: u64,
    /// How many consecutive ids.
    pub count: u64,
}

/// Every line of an id map; `None` if a line is not three numbers.
pub fn id_map(text: &str) -> Option<Vec<IdRange>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            let r = IdRange { inside: f.next()??, outside: f.next()??, count: f.next()?? };
            f.next().is_none().then_some(r)
        })
        .collect()
}

/// The whole 32-bit id space mapped to itself: what the initial user namespace shows.
pub fn is_identity_map(map: &[IdRange]) -> bool {
    map == [IdRange { inside: 0, outside: 0, count: 4_294_967_295 }]
}

/// The inode in a namespace link: `net:[4026532281]` → 4026532281.
pub fn ns_inode(link: &str) -> Option<u64> {
    let (_, rest) = link.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

/// Interface names in /proc/net/dev (two header lines, then `name: counters…`).
pub fn net_dev_interfaces(text: &str) -> Vec<&str> {
    text.lines().skip(2).filter_map(|l| l.split_once(':').map(|(name, _)| name.trim())).collect()
}

/// One line of /proc/PID/mountinfo, as far as the checks need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub point: String,
    /// The per-mount options (`ro,nosuid,…`).
    pub options: String,
    /// The filesystem type after the ` - ` separator.
    pub fstype: String,
}

impl Mount {
    /// The mount itself is read-only (its per-mount `ro`, not the superblock's).
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Every well-formed line of a mountinfo text, in order (a later mount at the same point is
/// on top of an earlier one).
pub fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            let f: Vec<&str> = before.split(' ').collect();
            let (point, options) = (f.get(4)?, f.get(5)?);
            let fstype = after.split(' ').next()?;
            Some(Mount { point: unescape(point), options: options.to_string(), fstype: fstype.to_string() })
        })
        .collect()
}

/// The topmost mount at `point`, if something is mounted exactly there.
pub fn mount_at<'a>(mounts: &'a [Mount], point: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.point == point)
}

/// Decodes the kernel's `\NNN` octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let code = b.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (c, code) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in a flat-keyed file (`nr_throttled 3` in cpu.stat, `max 0` in
/// pids.events, `oom_kill 1` in memory.events).
pub fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim())
    })
}

/// A one-line cgroup file as one word: trimmed, inner spaces as `/` (`cpu.max` `25000 100000` →
/// `25000/100000`), so `key=value` fields split on whitespace stay whole.
pub fn one_word(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tprobe\nUmask:\t0022\nState:\tR (running)\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn status_fields() {
        assert_eq!(status_field(STATUS, "CapEff"), Some("0000000000000000"));
        assert_eq!(status_field(STATUS, "CapPrm").and_then(hex_mask), Some(0x1ff_ffff_ffff));
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        assert_eq!(status_field(STATUS, "Seccomp_filters"), Some("1"));
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(STATUS, "CapAmb"), None);
        assert_eq!(hex_mask("zz"), None);
    }

    #[test]
    fn id_maps() {
        let m = id_map("         0     131072      65536\n").expect("valid");
        assert_eq!(m, [IdRange { inside: 0, outside: 131072, count: 65536 }]);
        assert!(!is_identity_map(&m));
        let host = id_map("         0          0 4294967295\n").expect("valid");
        assert!(is_identity_map(&host));
        assert_eq!(id_map("0 1 2\n5 6 7\n").map(|m| m.len()), Some(2));
        assert_eq!(id_map("0 1\n"), None);
        assert_eq!(id_map("0 1 2 3\n"), None);
        assert_eq!(id_map("0 x 2\n"), None);
        assert_eq!(id_map(""), Some(vec![]));
    }

    #[test]
    fn namespace_links() {
        assert_eq!(ns_inode("net:[4026532281]"), Some(4_026_532_281));
        assert_eq!(ns_inode("cgroup:[4026531835]"), Some(0xEFFF_FFFB));
        assert_eq!(ns_inode("net:4026532281"), None);
        assert_eq!(ns_inode("net:[x]"), None);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
            lo:       0       0    0    0    0     0          0         0        0\n  \
            eth0: 1234 5 0 0 0 0 0 0 99\n";
        assert_eq!(net_dev_interfaces(text), ["lo", "eth0"]);
    }

    #[test]
    fn keyed_cgroup_files() {
        let stat = "usage_usec 8000123\nuser_usec 8000000\nsystem_usec 123\nnr_periods 80\nnr_throttled 77\n\
            throttled_usec 5900000\n";
        assert_eq!(keyed(stat, "nr_throttled"), Some("77"));
        assert_eq!(keyed(stat, "nr_periods"), Some("80"));
        assert_eq!(keyed(stat, "usage"), None);
        assert_eq!(keyed("max 12\n", "max"), Some("12"));
        assert_eq!(one_word("25000 100000\n"), "25000/100000");
        assert_eq!(one_word("max\n"), "max");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw\n\
                    23 22 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw\n\
                    24 22 0:21 /sys /proc/sys ro,nosuid,nodev,noexec - proc proc rw\n\
                    25 1 8:1 / /mnt/a\\040b rw - ext4 /dev/sda1 rw\n\
                    garbage\n\
                    26 22 0:21 /sys /proc/sys rw - proc proc rw\n";
        let m = mountinfo(text);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].point, "/proc/kcore");
        assert_eq!(m[1].fstype, "devtmpfs");
        assert!(m[2].read_only() && !m[0].read_only());
        assert_eq!(m[3].point, "/mnt/a b");
        assert!(!mount_at(&m, "/proc/sys").is_some_and(Mount::read_only), "the topmost mount counts");
        assert!(mount_at(&m, "/proc/keys").is_none());
    }
}
