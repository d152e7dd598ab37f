//! Feeds arbitrary bytes to the DHCP parser and to a client waiting for an OFFER and an ACK.
//!
//! Run with `make fuzz FUZZ_TARGETS=dhcp` (docs/architecture.md, "Fuzzing").
#![no_main]

use keel_net::dhcp::{Client, Message, Step};
use libfuzzer_sys::fuzz_target;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fuzz_target!(|data: &[u8]| {
    // The parser must never panic, and whatever it accepts must survive encode → parse.
    if let Ok(msg) = Message::parse(data) {
        let again = Message::parse(&msg.encode());
        assert_eq!(again.as_ref(), Ok(&msg));
    }

    // Drive a client with the input as a reply to its own transaction: patch in its xid and
    // our MAC so the input gets past the transaction filter into the state machine.
    let mut client = Client::new(MAC, Some("fuzz".into()), 1);
    let Step::Send(discover) = client.poll(0) else { return };
    let Ok(discover) = Message::parse(&discover.bytes) else { return };
    let mut reply = data.to_vec();
    if let Some(xid) = reply.get_mut(4..8) {
        xid.copy_from_slice(&discover.xid.to_be_bytes());
    }
    if let Some(chaddr) = reply.get_mut(28..34) {
        chaddr.copy_from_slice(&MAC);
    }
    let mut now = 0;
    for _ in 0..4 {
        let _ = client.receive(now, &reply);
        for _ in 0..16 {
            if client.poll(now) == Step::Idle {
                break;
            }
        }
        now = client.next_deadline().unwrap_or(now).max(now);
    }
});
