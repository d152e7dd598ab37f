//! The guest's NIC on QEMU's user network (slirp), cut off from the real network.
//!
//! `restrict=on` keeps every guest connection inside QEMU: the guest still gets an address by
//! DHCP (10.0.2.15, no router or DNS option) and the forwards below still work, but nothing it
//! sends reaches the build machine's network. Host ports are bound to 127.0.0.1 only.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A NIC on QEMU's restricted user network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNet {
    /// 127.0.0.1:HOST on this machine → the guest's uplink port.
    pub publish: Vec<Publish>,
    /// Guest connections to ADDR:PORT (inside slirp's 10.0.2.0/24) → a command here.
    pub guest_forwards: Vec<GuestForward>,
}

/// `HOST:GUEST[/udp]`: a port on 127.0.0.1 forwarded into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// UDP instead of TCP.
    pub udp: bool,
    /// Port on 127.0.0.1.
    pub host: u16,
    /// Port on the guest's uplink address.
    pub guest: u16,
}

/// A guest-side address whose TCP connections QEMU hands, one by one, to a command on this
/// machine (its stdin and stdout are the connection): `cat` is an echo server that needs no
/// network at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestForward {
    /// Address inside slirp's network, e.g. 10.0.2.100.
    pub addr: Ipv4Addr,
    /// Port at that address.
    pub port: u16,
    /// The command QEMU starts per connection (no commas).
    pub command: String,
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Publish, String> {
        let (ports, udp) = match s.rsplit_once('/') {
            Some((p, "udp")) => (p, true),
            Some((p, "tcp")) => (p, false),
            Some((_, other)) => return Err(format!("`{s}`: unknown protocol `{other}` (expected tcp or udp)")),
            None => (s, false),
        };
        let (h, g) = ports.split_once(':').ok_or_else(|| format!("`{s}` is not HOST:GUEST[/udp], e.g. 8080:80"))?;
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Ok(n),
            _ => Err(format!("`{s}`: `{p}` is not a port (1-65535)")),
        };
        Ok(Publish { udp, host: port(h)?, guest: port(g)? })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.host, self.guest, if self.udp { "/udp" } else { "" })
    }
}

impl UserNet {
    /// The `-netdev` value.
    pub(crate) fn netdev(&self) -> String {
        let mut s = String::from("user,id=n0,restrict=on");
        for p in &self.publish {
            let proto = if p.udp { "udp" } else { "tcp" };
            s.push_str(&format!(",hostfwd={proto}:127.0.0.1:{}-:{}", p.host, p.guest));
        }
        for g in &self.guest_forwards {
            s.push_str(&format!(",guestfwd=tcp:{}:{}-cmd:{}", g.addr, g.port, g.command.replace(',', ",,")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_syntax() {
        assert_eq!("8080:80".parse::<Publish>().unwrap(), Publish { udp: false, host: 8080, guest: 80 });
        assert_eq!("5353:53/udp".parse::<Publish>().unwrap(), Publish { udp: true, host: 5353, guest: 53 });
        assert!("8080".parse::<Publish>().unwrap_err().contains("HOST:GUEST"));
        assert!("0:80".parse::<Publish>().is_err());
        assert!("80:80/sctp".parse::<Publish>().unwrap_err().contains("sctp"));
        assert!("99999:80".parse::<Publish>().is_err());
    }

    #[test]
    fn netdev_is_restricted_and_local() {
        let n = UserNet {
            publish: vec![Publish { udp: false, host: 18080, guest: 80 }],
            guest_forwards: vec![GuestForward {
                addr: Ipv4Addr::new(10, 0, 2, 100),
                port: 7,
                command: "/bin/cat".into(),
            }],
        };
        assert_eq!(
            n.netdev(),
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:18080-:80,guestfwd=tcp:10.0.2.100:7-cmd:/bin/cat"
        );
    }
}
