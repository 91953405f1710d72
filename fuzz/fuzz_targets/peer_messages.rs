//! Fuzzes what a member (or anyone who reaches a port) sends above the
//! transport: session-store messages (the payload of a DATA frame), the
//! multicast membership datagrams a [`MemberTable`] takes, with and without
//! heartbeat authentication, and the member facts a heartbeat carries; and
//! the config file text an operator writes. Checks, beyond "no panic":
//! - a session message that decodes re-encodes to bytes that decode to the
//!   same message, and those bytes are canonical (encoding again gives them);
//! - the member table never holds more than `MAX_MEMBERS`, never holds the
//!   local member, and keeps working (a timeout pass after every datagram);
//! - a datagram that verifies under a key was sealed with it (forgery fails).
//!
//! The membership part reads the input as datagrams (see `datagrams`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sessionrepl::__internal::proto::secure::SharedKey;
use sessionrepl::__internal::wire::tribes::{TribesMember, SHUTDOWN_COMMAND};
use sessionrepl::membership::auth::HeartbeatAuth;
use sessionrepl::membership::{
    LocalMemberInfo, MemberTable, PeerFacts, TableConfig, MAX_MEMBERS, PAYLOAD_MAGIC,
};
use sessionrepl::session::{CodecLimits, Message};
use sessionrepl::Config;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    session_message(data);
    membership(data);
    let _ = PeerFacts::decode(data);
    // Config text: any bytes an operator's file could hold.
    let text = String::from_utf8_lossy(data);
    let _ = Config::default().parse_file_text(&text);
});

fn session_message(data: &[u8]) {
    // Small limits as well as the defaults: the bound checks run at both.
    for limits in [CodecLimits::default(), small_limits()] {
        let Ok(m) = Message::decode(&Bytes::copy_from_slice(data), &limits) else {
            continue;
        };
        let enc = m.encode();
        let again =
            Message::decode(&enc, &limits).expect("a decoded message re-encodes to a valid one");
        assert_eq!(m, again, "round trip changed the message");
        assert_eq!(enc, again.encode(), "encoding is not canonical");
    }
}

fn small_limits() -> CodecLimits {
    CodecLimits {
        max_id_len: 8,
        max_name_len: 8,
        max_value_len: 32,
        max_attrs: 2,
        max_ops: 2,
        max_sessions_per_chunk: 2,
    }
}

/// The input as datagrams, split at every `0xFF 0xFE` pair, so that one
/// input can carry several (a join, a refresh, a shutdown notice, ...).
/// A piece that starts with `M` is not sent as it is: it describes a valid
/// member blob (see `member_blob`), which is then cut or has a byte
/// changed, so that the table's deep paths (add, refresh, domain, facts,
/// shutdown, table full) are reached without the fuzzer having to find
/// the blob format first.
fn datagrams(data: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0xFE {
            pieces.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    pieces.push(&data[start..]);
    pieces
        .into_iter()
        .map(|p| match p.split_first() {
            Some((b'M', spec)) => member_blob(spec),
            _ => p.to_vec(),
        })
        .collect()
}

/// A Tribes member blob from `spec`: byte 0 picks the id (and with its top
/// bit a shutdown command), 1–2 the port, 3 the domain's length (its bytes
/// follow), then the sessionrepl facts or other payload; the last two bytes
/// say where to cut the blob and which byte to change (0 = neither).
fn member_blob(spec: &[u8]) -> Vec<u8> {
    let at = |i: usize| spec.get(i).copied().unwrap_or(0);
    let mut m = TribesMember::new(
        [127, 0, 0, 1].into(),
        u16::from_be_bytes([at(1), at(2)]),
        [at(0) & 0x7F; 16],
    );
    if at(0) & 0x80 != 0 {
        m.command = SHUTDOWN_COMMAND.to_vec();
    }
    let dl = usize::from(at(3) % 8);
    m.domain = spec.get(4..4 + dl).unwrap_or_default().to_vec();
    let rest = spec.get(4 + dl..).unwrap_or_default();
    let (body, tail) = rest.split_at(rest.len().saturating_sub(2));
    if body.first() == Some(&b'F') {
        // sessionrepl facts, then the memberPayload block
        m.payload = PeerFacts::new(u32::from(at(5))).encode().to_vec();
        // (any length: the decoder bounds it by MAX_MEMBER_PAYLOAD)
        let p = &body[1..body.len().min(u16::MAX as usize)];
        m.payload.extend_from_slice(&PAYLOAD_MAGIC);
        m.payload.extend_from_slice(&(p.len() as u16).to_be_bytes());
        m.payload.extend_from_slice(p);
    } else {
        m.payload = body.to_vec();
    }
    m.alive_ms = i64::from(at(0)) * 1000;
    let Ok(mut blob) = m.to_bytes() else {
        return Vec::new();
    };
    let (cut, flip) = (
        tail.first().copied().unwrap_or(0),
        tail.get(1).copied().unwrap_or(0),
    );
    if flip != 0 {
        let i = usize::from(flip) % blob.len();
        blob[i] ^= flip;
    }
    if cut != 0 {
        blob.truncate(usize::from(cut) % blob.len());
    }
    blob
}

fn membership(data: &[u8]) {
    let local = LocalMemberInfo::new(
        "127.0.0.1:4000".parse().expect("addr"),
        [7; 16],
        b"".to_vec(),
    );
    let cfg = TableConfig {
        drop_time: Duration::from_millis(3000),
        domain: Vec::new(),
        failure_detection: data.first().is_some_and(|b| b & 1 == 1),
        remove_suspects_timeout: Duration::from_millis(300),
    };
    let mut table = MemberTable::new(cfg, &local);
    let key = SharedKey::from_bytes(vec![9; 32]).expect("a 32-byte key");
    let mut auth = HeartbeatAuth::new(std::slice::from_ref(&key), 5_000);
    let t0 = Instant::now();
    for (k, d) in datagrams(data).iter().enumerate() {
        let now = t0 + Duration::from_millis(400 * k as u64);
        let now_us = 1_700_000_000_000_000 + 400_000 * k as u64;
        if auth.verify(d, now_us).is_ok() {
            // Only a datagram sealed with this key verifies: the fuzzer
            // cannot forge the MAC, so a pass here is a bug.
            panic!("an unsealed datagram verified");
        }
        table.handle_datagram(d, now);
        table.handle_timeout(now);
        while table.poll_event().is_some() {}
        while let Some(p) = table.poll_probe() {
            table.handle_probe_result(p.token, k % 2 == 0, now);
        }
        let members = table.members();
        assert!(members.len() <= MAX_MEMBERS);
        assert!(
            members
                .iter()
                .all(|m| m.id != [7; 16] || m.addr != local.addr),
            "the local member was added"
        );
    }
    // A datagram sealed with the key verifies once, and not again (replay).
    let mut blob = data.to_vec();
    blob.extend_from_slice(&HeartbeatAuth::empty_trailer());
    let mut sealer = HeartbeatAuth::new(std::slice::from_ref(&key), 5_000);
    if sealer.seal(&mut blob, 1_700_000_000_000_000) {
        let mut checker = HeartbeatAuth::new(std::slice::from_ref(&key), 5_000);
        if checker.verify(&blob, 1_700_000_000_000_000).is_ok() {
            assert!(
                checker.verify(&blob, 1_700_000_000_000_000).is_err(),
                "a replay verified"
            );
        }
    }
}
