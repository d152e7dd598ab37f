//! keel-net: the network pieces keel-init drives, with no async runtime and no external binary.
//!
//! - [`netlink`]: message framing (nlmsghdr, attributes, nesting) and reply parsing shared by
//!   the two families below; pure, and never panics on what the kernel sends.
//! - [`link`]: rtnetlink requests: a veth whose peer is created inside a container's network
//!   namespace, link up, the link list, addresses, routes, permanent neighbours.
//! - [`nft`]: the [`keel_plan::net::Firewall`] as one nf_tables batch, and loading it.
//! - [`container`]: a container's veth and per-namespace settings, from the parent's side.
//! - `dhcp`: a DHCPv4 codec and client state machine (pure: the caller owns the socket and clock).
//! - [`sys`]: the system calls: netlink sockets with bounded waits, entering another network
//!   namespace, the DHCP client's socket.
//! - [`http`]: a bounded HTTP/1.1 head parser for the API in keel-init and its client.
//! - [`tls`]: the API's TLS policy (TLS 1.3, mutual, elliptic-curve keys only), for the
//!   server, `keel check` and the client.
//! - [`error`]: the one error type, [`NetError`].
//!
//! All unsafe code is in `sys`.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod container;
pub mod dhcp;
pub mod error;
pub mod http;
pub mod link;
pub mod netlink;
pub mod nft;
pub mod sys;
pub mod tls;

pub use error::{NetError, Result};
pub use link::{Link, Route, Rtnl};
pub use sys::{dhcp_socket, interface_index, with_netns};
