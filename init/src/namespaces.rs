//! keel-init's own namespaces, printed once at boot so that tests (and people reading a console
//! log) can see that containers do not share them.

/// The namespace kinds keel gives every container its own of.
const KINDS: [&str; 7] = ["mnt", "net", "pid", "user", "uts", "ipc", "cgroup"];

/// `mnt:[4026531841] net:[4026531840] …` for this process (needs /proc).
pub fn describe() -> String {
    KINDS
        .iter()
        .map(|k| match std::fs::read_link(format!("/proc/self/ns/{k}")) {
            Ok(target) => target.to_string_lossy().into_owned(),
            Err(e) => format!("{k}:?({e})"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_kind() {
        let d = describe();
        for k in KINDS {
            assert!(d.contains(&format!("{k}:[")), "{d}");
        }
    }
}
