//! DHCPv4 (RFC 2131, RFC 2132, RFC 3442): a message codec and a sans-IO client.
//!
//! The caller owns a UDP socket bound to `0.0.0.0:68` (with `SO_BINDTODEVICE` and
//! `SO_BROADCAST`) and a monotonic clock in milliseconds; [`Client`] never touches either. It
//! is bounded: one transaction at a time, one message in flight, no queues.
//!
//! # States
//!
//! ```text
//!  INIT ─▶ SELECTING ─OFFER─▶ REQUESTING ─ACK─▶ BOUND ─T1─▶ RENEWING ─T2─▶ REBINDING ─expiry─▶ INIT
//!                                               ▲  ▲          │              │
//!                                               │  └───ACK────┘              │
//!                                               └─────────────ACK────────────┘
//!  link_up with a lease ─▶ REBOOTING ─ACK (or no answer: keep the lease)─▶ BOUND
//!  NAK in REQUESTING, RENEWING, REBINDING or REBOOTING ─▶ INIT
//! ```
//!
//! - **Init**: DISCOVER is due now (or after a restart delay, see below), with a new xid.
//! - **Selecting**: DISCOVER broadcast, retransmitted after 1 s, 2 s, 4 s, 8 s, then every
//!   16 s until an OFFER arrives. The first OFFER with a server id (option 54) is taken.
//! - **Requesting**: REQUEST broadcast with options 50 (offered address) and 54, same xid,
//!   same backoff; ACK → Bound ([`Event::Bound`]), NAK → Init ([`Event::Nak`]); after
//!   [`REQUEST_ATTEMPTS`] unanswered REQUESTs (15 s), back to Init.
//! - **Bound**: nothing is sent until T1 (option 58, default ½ lease).
//! - **Renewing** (from T1): REQUEST unicast to the lease's server with `ciaddr` set, no
//!   50/54; retransmitted after half the time left until T2, at least 60 s (RFC 2131
//!   §4.4.5). ACK → Bound ([`Event::Renewed`], or [`Event::Bound`] with `replaces` when the
//!   configuration changed); NAK → Init.
//! - **Rebinding** (from T2, option 59, default ⅞ lease): the same REQUEST broadcast, retried
//!   after half the time left until expiry, at least 60 s. At expiry: [`Event::Expired`] and
//!   Init.
//! - **Rebooting** ([`Client::link_up`] with an unexpired lease): REQUEST broadcast with option
//!   50 = the old address, no 54. ACK → Bound, NAK → Init; unanswered, the old lease is kept
//!   and its own timers take over (RFC 2131 §3.2).
//! - **LinkDown** ([`Client::link_lost`]): nothing is sent; a held lease still expires.
//!
//! A lease of `0xffffffff` ([`INFINITE`]) is never renewed. The broadcast flag is set whenever
//! `ciaddr` is 0, so servers broadcast their replies: the kernel would not deliver a unicast
//! to an address the interface does not have yet.
//! After a NAK, an expiry or an abandoned REQUEST, the next DISCOVER is immediate the first
//! time, then delayed 1 s, 2 s, … 16 s for each further failure until a lease is renewed, so a
//! misbehaving server cannot make the client loop at network speed. No jitter is added.
//!
//! # Driving it
//!
//! ```no_run
//! # use keel_net::dhcp::{Client, Event, Step};
//! # fn now() -> u64 { 0 }
//! # fn send(_: &[u8], _: std::net::SocketAddrV4) {}
//! # fn wait_readable(_: Option<u64>) -> Option<Vec<u8>> { None }
//! # fn apply(_: Event) {}
//! let mut client = Client::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], Some("keel".into()), 42);
//! loop {
//!     loop {
//!         match client.poll(now()) {
//!             Step::Send(t) => send(&t.bytes, t.to.socket_addr()),
//!             Step::Event(e) => apply(e),
//!             Step::Idle => break,
//!         }
//!     }
//!     // Sleep until the deadline or a datagram (None: wait for a datagram or a link change).
//!     if let Some(datagram) = wait_readable(client.next_deadline()) {
//!         if let Some(event) = client.receive(now(), &datagram) {
//!             apply(event);
//!         }
//!     }
//! }
//! ```

mod client;
mod codec;

pub use client::{
    Client, Destination, Event, Lease, Phase, Step, Transmit, CLIENT_PORT, DEFAULT_LEASE_SECS, INFINITE,
    INITIAL_RETRANSMIT_MS, MAX_RETRANSMIT_MS, MIN_RENEW_RETRY_MS, REQUEST_ATTEMPTS, SERVER_PORT,
};
pub use codec::{code, ClasslessRoute, Message, MessageType, Op, Options, ParseError, MAGIC_COOKIE};

#[cfg(test)]
mod tests {
    use super::codec::tests::{full_message, slirp_reply};
    use super::*;

    /// xorshift64: deterministic pseudo-random bytes without extra crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..1 + rng.below(8) {
            match rng.below(6) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = rng.byte();
                }
                1 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                2 => {
                    let n = rng.below(b.len() + 1);
                    b.truncate(n);
                }
                3 => {
                    // Overwrite bytes in the options area, where the TLVs are.
                    let i = 240 + rng.below(64);
                    if i < b.len() {
                        b[i] = [0, 1, 3, 6, 12, 15, 26, 51, 53, 54, 121, 255][rng.below(12)];
                    }
                }
                4 => {
                    let i = rng.below(b.len() + 1);
                    let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.byte()).collect();
                    b.splice(i..i, junk);
                }
                _ => {
                    let extra: Vec<u8> = (0..rng.below(32)).map(|_| rng.byte()).collect();
                    b.extend(extra);
                }
            }
        }
        b
    }

    /// Parse must never panic; whatever it accepts must survive encode → parse unchanged.
    fn check(bytes: &[u8]) -> bool {
        match Message::parse(bytes) {
            Ok(m) => {
                assert_eq!(Message::parse(&m.encode()).as_ref(), Ok(&m), "round trip of {bytes:?}");
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn fuzz_parser_and_client() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;

        for _ in 0..2_000 {
            let len = rng.below(700);
            let mut b: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            // Give half of them a plausible header so the options parser gets exercised.
            if rng.below(2) == 0 && b.len() >= 240 {
                b[0] = 2;
                b[1] = 1;
                b[2] = 6;
                b[236..240].copy_from_slice(&MAGIC_COOKIE);
            }
            if check(&b) {
                accepted += 1;
            }
        }

        // Mutated valid messages, also fed to a client in each state that listens, with seeds
        // carrying that state's xid so most mutations get past the transaction filter.
        let mut clients = Vec::new();
        let mut c = Client::new(mac, Some("fuzz".into()), 1);
        let Step::Send(discover) = c.poll(0) else { panic!("no DISCOVER") };
        let xid = Message::parse(&discover.bytes).unwrap().xid;
        clients.push((c.clone(), xid, 0));
        assert_eq!(c.receive(0, &slirp_reply(2, xid, mac)), None);
        assert!(matches!(c.poll(0), Step::Send(_)));
        clients.push((c.clone(), xid, 0));
        assert!(matches!(c.receive(0, &slirp_reply(5, xid, mac)), Some(Event::Bound { .. })));
        let t1 = 43_200_000;
        let Step::Send(renew) = c.poll(t1) else { panic!("no renewal") };
        clients.push((c.clone(), Message::parse(&renew.bytes).unwrap().xid, t1));
        let t2 = 75_600_000;
        let Step::Send(rebind) = c.poll(t2) else { panic!("no rebinding") };
        clients.push((c.clone(), Message::parse(&rebind.bytes).unwrap().xid, t2));
        c.link_lost();
        c.link_up(t2);
        let Step::Send(reboot) = c.poll(t2) else { panic!("no reboot") };
        clients.push((c.clone(), Message::parse(&reboot.bytes).unwrap().xid, t2));

        for (i, (client, xid, start)) in clients.iter().enumerate() {
            let mut ack = full_message();
            ack.xid = *xid;
            ack.chaddr = mac;
            let seeds = [
                full_message().encode(),
                ack.encode(),
                slirp_reply(2, *xid, mac),
                slirp_reply(5, *xid, mac),
                slirp_reply(6, *xid, mac),
            ];
            for n in 0..1_500 {
                let b = mutate(&mut rng, &seeds[n % seeds.len()]);
                if check(&b) {
                    accepted += 1;
                }
                let mut c = client.clone();
                let now = start + n as u64 * 1_000;
                let _ = c.receive(now, &b);
                for _ in 0..4 {
                    let _ = c.poll(now);
                    let _ = c.receive(now, &b);
                    let _ = c.next_deadline();
                    let _ = c.lease();
                }
                assert!(c.next_deadline().is_some() || c.phase() == Phase::Bound, "state {i}: {:?}", c.phase());
            }
        }
        assert!(accepted > 1_000, "only {accepted} inputs parsed: the mutations are too destructive");
    }
}
