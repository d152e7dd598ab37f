//! Linux capability names and numbers (linux/capability.h; the same on every arch).

/// Every capability Linux 6.1 knows, by number.
pub const ALL: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Highest capability number keel knows.
pub const LAST: u32 = ALL.len() as u32 - 1;

/// The number of a capability, by name: `NET_BIND_SERVICE` or `CAP_NET_BIND_SERVICE`, any case.
pub fn by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL.iter().position(|c| *c == bare).and_then(|i| u32::try_from(i).ok())
}

/// The name of capability `n` (`CAP_` prefixed), if known.
pub fn name(n: u32) -> Option<String> {
    ALL.get(n as usize).map(|c| format!("CAP_{c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(by_name("CHOWN"), Some(0));
        assert_eq!(by_name("cap_net_bind_service"), Some(10));
        assert_eq!(by_name("SYS_ADMIN"), Some(21));
        assert_eq!(by_name("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(by_name("FLY"), None);
        assert_eq!(name(21).as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(LAST, 40);
    }
}
