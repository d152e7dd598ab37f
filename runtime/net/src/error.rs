//! Errors of keel-net. Messages are short and never repeat their source: print the chain.

use std::io;
use std::time::Duration;

use crate::netlink::Malformed;

/// Result with [`NetError`].
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Why a network step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The kernel refused a request; prints as `create veth k-web: File exists (os error 17)`.
    #[error("{what}: {}{}", io::Error::from_raw_os_error(*errno), detail(message.as_deref()))]
    Kernel {
        /// The request, with the object it names.
        what: String,
        /// The positive errno the kernel answered.
        errno: i32,
        /// The kernel's extended-ack message, if it sent one.
        message: Option<String>,
    },
    /// A system call on this side failed (socket, bind, send, recv, setns, …).
    #[error("{what}")]
    Io {
        /// The step.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel did not answer a request in time.
    #[error("{what}: no answer from the kernel within {timeout:?}")]
    Timeout {
        /// The request.
        what: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The kernel's answer to a request does not parse.
    #[error("{what}: malformed reply")]
    Malformed {
        /// The request.
        what: String,
        /// What is wrong with it.
        #[source]
        source: Malformed,
    },
    /// A string that cannot be an interface name.
    #[error("`{0}` is not an interface name (1 to 15 bytes, no NUL, `/`, `:` or whitespace)")]
    InterfaceName(String),
    /// The thread could not return to its own network namespace after working in another.
    #[error("return to the original network namespace")]
    NetnsRestore(#[source] io::Error),
}

fn detail(message: Option<&str>) -> String {
    message.map(|m| format!(" (kernel: {m})")).unwrap_or_default()
}

/// Check an interface name the way the kernel's `dev_valid_name` does.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace());
    if bad {
        return Err(NetError::InterfaceName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_print_request_then_errno_once() {
        let e = NetError::Kernel { what: "create veth k-web".into(), errno: 17, message: None };
        assert_eq!(e.to_string(), "create veth k-web: File exists (os error 17)");
        assert!(std::error::Error::source(&e).is_none());
        let e = NetError::Kernel { what: "add rule".into(), errno: 2, message: Some("Chain not found".into()) };
        assert_eq!(e.to_string(), "add rule: No such file or directory (os error 2) (kernel: Chain not found)");
    }

    #[test]
    fn interface_names() {
        assert!(check_ifname("k-web").is_ok());
        assert!(check_ifname("123456789012345").is_ok());
        for bad in ["", "1234567890123456", "a b", "a/b", "a:b", ".", "a\0"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
