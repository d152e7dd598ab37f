//! The container's own cgroup, seen through its cgroup namespace at /sys/fs/cgroup.

use crate::errno::Errno;
use crate::parse;

/// Where the container's cgroup (its cgroup namespace root) is mounted.
pub const DIR: &str = "/sys/fs/cgroup";

/// The contents of `DIR/name`, or `name: ERRNO`.
pub fn read(name: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("{DIR}/{name}")).map_err(|e| format!("{name}: {}", Errno::from_io(&e)))
}

/// `DIR/name` as one word (`25000/100000`), or `?` if unreadable.
pub fn word(name: &str) -> String {
    read(name).map(|t| parse::one_word(&t)).unwrap_or_else(|_| "?".to_string())
}

/// The value of `key` in the flat-keyed file `DIR/name`, or `?`.
pub fn keyed(name: &str, key: &str) -> String {
    read(name).ok().and_then(|t| parse::keyed(&t, key).map(str::to_string)).unwrap_or_else(|| "?".to_string())
}
