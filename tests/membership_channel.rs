//! Membership wired into the channel: static members are native sessionrepl
//! peers (not Tribes), `send_to_members` reaches them with acks, and the
//! member listener sees them.

use bytes::Bytes;

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(static_members_get_native_messages_with_acks);
use sessionrepl::membership::MemberEvent;
use sessionrepl::{Channel, ReplicationMode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn static_members_get_native_messages_with_acks() {
    let (pa, pb) = (free_port(), free_port());
    let got = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let start = |port: u16, peer: u16, mode: ReplicationMode| {
        let mut cfg = io_cfg();
        cfg.replication_mode = mode;
        cfg.set("tcpListenPort", &port.to_string()).unwrap();
        cfg.set("membershipType", "static").unwrap();
        cfg.set("staticMembers", &format!("127.0.0.1:{peer}"))
            .unwrap();
        let (g, e) = (got.clone(), events.clone());
        Channel::builder(cfg)
            .listener(move |m| {
                g.lock().unwrap().push((m.from, m.payload.clone()));
                Ok(())
            })
            .member_listener(move |ev| e.lock().unwrap().push(ev.clone()))
            .start()
            .unwrap()
    };
    let a = start(pa, pb, ReplicationMode::Synchronous);
    let b = start(pb, pa, ReplicationMode::FastAsyncQueue);
    let seen = |addr| {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, MemberEvent::Added(m) if m.addr == addr))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen(a.local_addr()) && seen(b.local_addr())) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen(a.local_addr()) && seen(b.local_addr()),
        "member-added events"
    );
    assert_eq!(a.members()[0].addr, b.local_addr());
    assert_eq!(b.members()[0].addr, a.local_addr());
    // Synchronous: the ack proves the native protocol (Tribes framing would
    // have been refused by a sessionrepl receiver's preface check... and
    // counted as a protocol error).
    a.send_to_members(Bytes::from_static(b"from a"), a.default_options())
        .unwrap();
    let (_, t) = b
        .send_with_ticket(
            &[a.local_addr()],
            Bytes::from_static(b"from b"),
            b.default_options(),
        )
        .unwrap();
    t.wait_ok(Duration::from_secs(10)).unwrap();
    let g = got.lock().unwrap();
    assert!(g
        .iter()
        .any(|(f, p)| *f == a.local_addr() && &p[..] == b"from a"));
    assert!(g
        .iter()
        .any(|(f, p)| *f == b.local_addr() && &p[..] == b"from b"));
    assert_eq!(a.stats().protocol_errors + b.stats().protocol_errors, 0);
    drop(g);
    a.stop();
    b.stop();
}
