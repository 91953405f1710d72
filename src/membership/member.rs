//! What the rest of the engine knows about a member, and the events that
//! change the member list.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Magic opening the sessionrepl facts in a heartbeat's payload field.
pub const FACTS_MAGIC: [u8; 4] = *b"SRPL";
/// Version of the facts layout this build writes.
pub const FACTS_VERSION: u16 = 1;
/// Encoded length of [`PeerFacts`]: magic (4) + version (2) + capabilities (4).
pub const FACTS_LEN: usize = 10;

/// Magic opening the member's application metadata (`memberPayload`) in a
/// heartbeat's payload field, right after the facts: `SRMD`, a 2-byte
/// big-endian length, then that many bytes.
pub const PAYLOAD_MAGIC: [u8; 4] = *b"SRMD";
/// Longest `memberPayload`, in bytes.
pub const MAX_MEMBER_PAYLOAD: usize = 1024;

/// Appends the `memberPayload` block (nothing for an empty one; cut to
/// [`MAX_MEMBER_PAYLOAD`]).
pub fn encode_member_payload(out: &mut Vec<u8>, p: &[u8]) {
    if p.is_empty() {
        return;
    }
    let p = &p[..p.len().min(MAX_MEMBER_PAYLOAD)];
    out.extend_from_slice(&PAYLOAD_MAGIC);
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(p);
}

/// The `memberPayload` a heartbeat payload field carries: empty unless it
/// has the facts, then the block, whole and within
/// [`MAX_MEMBER_PAYLOAD`] (anything else is ignored, not an error).
pub fn decode_member_payload(payload: &[u8]) -> &[u8] {
    if PeerFacts::decode(payload).is_none() {
        return &[];
    }
    let rest = &payload[FACTS_LEN..];
    if rest.len() < 6 || rest[..4] != PAYLOAD_MAGIC {
        return &[];
    }
    let n = u16::from_be_bytes([rest[4], rest[5]]) as usize;
    if n > MAX_MEMBER_PAYLOAD || rest.len() < 6 + n {
        return &[];
    }
    &rest[6..6 + n]
}

/// Capability bits a sessionrepl node announces in its heartbeats.
pub mod caps {
    /// Speaks the native protocol (`SRPL` preface, `docs/PROTOCOL.md`).
    pub const NATIVE_PROTOCOL: u32 = 0x1;
    /// Accepts Tribes framing (`FLT2002`) on its receiver.
    pub const TRIBES_FRAMING: u32 = 0x2;
    /// Understands compressed native frames.
    pub const COMPRESSION: u32 = 0x4;
    /// What this build supports.
    pub const ALL: u32 = NATIVE_PROTOCOL | TRIBES_FRAMING | COMPRESSION;
}

/// What a sessionrepl node says about itself in the payload of its Tribes
/// member blob. Plain Tribes nodes carry no facts.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `SRPL` |
/// | 4 | 2 | version (BE) |
/// | 6 | 4 | capability bits (BE, see [`caps`]) |
///
/// Bytes after these 10 are ignored (room for later versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerFacts {
    /// Facts layout version.
    pub version: u16,
    /// Capability bits ([`caps`]).
    pub capabilities: u32,
}

impl PeerFacts {
    /// This build's facts with the given capabilities.
    pub fn new(capabilities: u32) -> Self {
        PeerFacts {
            version: FACTS_VERSION,
            capabilities,
        }
    }

    /// The 10-byte encoding.
    pub fn encode(&self) -> [u8; FACTS_LEN] {
        let mut b = [0u8; FACTS_LEN];
        b[..4].copy_from_slice(&FACTS_MAGIC);
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        b[6..10].copy_from_slice(&self.capabilities.to_be_bytes());
        b
    }

    /// Reads facts from a heartbeat payload; `None` for a plain Tribes
    /// payload (or anything else without the magic).
    pub fn decode(payload: &[u8]) -> Option<PeerFacts> {
        if payload.len() < FACTS_LEN || payload[..4] != FACTS_MAGIC {
            return None;
        }
        Some(PeerFacts {
            version: u16::from_be_bytes([payload[4], payload[5]]),
            capabilities: u32::from_be_bytes([payload[6], payload[7], payload[8], payload[9]]),
        })
    }
}

/// How a member became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberSource {
    /// Multicast heartbeats.
    Multicast,
    /// The `staticMembers` list.
    Static,
    /// A DNS answer.
    Dns,
}

/// A member of the cluster (never the local node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// 16-byte unique id (from the heartbeat; for static and DNS members
    /// the configured id or one derived from the address, see
    /// [`derived_id`]).
    pub id: [u8; 16],
    /// TCP address of the member's receiver.
    pub addr: SocketAddr,
    /// Cluster domain from its heartbeat (empty if none or not known).
    pub domain: Vec<u8>,
    /// How long the member's membership service had been running at its
    /// last heartbeat (zero for static and DNS members).
    pub alive: Duration,
    /// sessionrepl facts, `None` for a plain Tribes node (or a static/DNS
    /// member never heard from).
    pub facts: Option<PeerFacts>,
    /// The raw payload field of its last heartbeat.
    pub payload: Vec<u8>,
    /// How it became known.
    pub source: MemberSource,
}

impl Member {
    /// True if the member announced sessionrepl facts.
    pub fn is_sessionrepl(&self) -> bool {
        self.facts.is_some()
    }

    /// Its application metadata (`memberPayload`: an HTTP address, a
    /// route name), as its last heartbeat carried it; empty if none (or a
    /// static/DNS member, which sends no heartbeats).
    pub fn member_payload(&self) -> &[u8] {
        decode_member_payload(&self.payload)
    }

    /// The unique id as 32 lower-case hex digits.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", hex(&self.id[..4]), self.addr)
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A deterministic id for a member known only by address (static or DNS),
/// so every node derives the same id for it: two FNV-1a-64 hashes of
/// `"sessionrepl-member:" + addr`.
pub fn derived_id(addr: &SocketAddr) -> [u8; 16] {
    let text = format!("sessionrepl-member:{addr}");
    let fnv = |basis: u64| {
        text.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        })
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    id[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4).to_be_bytes());
    id
}

/// Why a member left the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoveReason {
    /// Its heartbeats stopped (and, with failure detection, a TCP check
    /// failed), it left the DNS answer, or it stayed suspect too long.
    Timeout,
    /// It announced its shutdown (`BABY-ALEX`).
    Shutdown,
    /// A send to it failed and a TCP check confirmed it unreachable, or a
    /// TCP ping of a static/DNS member failed.
    Failure,
    /// A new member appeared at the same address with another unique id
    /// (the process restarted).
    Restarted,
}

impl RemoveReason {
    /// Lower-case name (`timeout`, `shutdown`, `failure`, `restarted`).
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Timeout => "timeout",
            RemoveReason::Shutdown => "shutdown",
            RemoveReason::Failure => "failure",
            RemoveReason::Restarted => "restarted",
        }
    }
}

impl std::fmt::Display for MemberEvent {
    /// One line, as `sessionrepl node` prints it:
    /// `member-added id=<hex> addr=<host:port> domain=<d> sessionrepl=<bool>`,
    /// `member-removed id=<hex> addr=<host:port> reason=<reason>`,
    /// `member-suspect id=<hex> addr=<host:port>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.member();
        match self {
            MemberEvent::Added(_) => write!(
                f,
                "member-added id={} addr={} domain={} sessionrepl={}",
                m.id_hex(),
                m.addr,
                String::from_utf8_lossy(&m.domain),
                m.is_sessionrepl()
            ),
            MemberEvent::Removed(_, r) => write!(
                f,
                "member-removed id={} addr={} reason={}",
                m.id_hex(),
                m.addr,
                r.as_str()
            ),
            MemberEvent::Suspect(_) => {
                write!(f, "member-suspect id={} addr={}", m.id_hex(), m.addr)
            }
        }
    }
}

/// A change of the member list, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member joined (or a static/DNS member became reachable again).
    Added(Member),
    /// A member left.
    Removed(Member, RemoveReason),
    /// A member went silent (or a send to it failed) but still accepts TCP
    /// connections: it stays in the list, flagged, until it is heard from
    /// again, a later check fails, or `removeSuspectsTimeout` passes.
    Suspect(Member),
}

impl MemberEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            MemberEvent::Added(m) | MemberEvent::Removed(m, _) | MemberEvent::Suspect(m) => m,
        }
    }
}

/// What the local node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMemberInfo {
    /// TCP address of the local receiver (put in heartbeats; must be an
    /// address other members can reach).
    pub addr: SocketAddr,
    /// The local 16-byte unique id.
    pub id: [u8; 16],
    /// Cluster domain announced in heartbeats (the config's
    /// `mcastClusterDomain` is used when this is empty).
    pub domain: Vec<u8>,
    /// Capability bits announced ([`caps`]).
    pub capabilities: u32,
    /// Application metadata announced (`memberPayload`).
    pub payload: Vec<u8>,
}

impl LocalMemberInfo {
    /// Local info announcing every capability of this build.
    pub fn new(addr: SocketAddr, id: [u8; 16], domain: impl Into<Vec<u8>>) -> Self {
        LocalMemberInfo {
            addr,
            id,
            domain: domain.into(),
            capabilities: caps::ALL,
            payload: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_payload_round_trips_and_hostile_blocks_are_ignored() {
        let mut p = PeerFacts::new(caps::ALL).encode().to_vec();
        encode_member_payload(&mut p, b"http://127.0.0.1:8081");
        p.extend_from_slice(b"SRHA-trailer-bytes");
        assert_eq!(decode_member_payload(&p), b"http://127.0.0.1:8081");
        // No facts, no block, a length past the end, one above the max.
        assert_eq!(decode_member_payload(b"SRMD\x00\x01x"), b"");
        let facts = PeerFacts::new(caps::ALL).encode().to_vec();
        assert_eq!(decode_member_payload(&facts), b"");
        let mut short = facts.clone();
        short.extend_from_slice(b"SRMD\x00\x09abc");
        assert_eq!(decode_member_payload(&short), b"");
        let mut big = facts.clone();
        big.extend_from_slice(b"SRMD\xff\xff");
        big.resize(big.len() + 65535, b'x');
        assert_eq!(decode_member_payload(&big), b"");
        // Cut to the max on the way out; empty writes nothing.
        let mut out = Vec::new();
        encode_member_payload(&mut out, &[7u8; MAX_MEMBER_PAYLOAD + 5]);
        assert_eq!(out.len(), 6 + MAX_MEMBER_PAYLOAD);
        let mut none = Vec::new();
        encode_member_payload(&mut none, b"");
        assert!(none.is_empty());
    }

    #[test]
    fn facts_round_trip_and_plain_payloads_have_none() {
        let f = PeerFacts::new(caps::ALL);
        let b = f.encode();
        assert_eq!(&b[..4], b"SRPL");
        assert_eq!(PeerFacts::decode(&b), Some(f));
        let mut longer = b.to_vec();
        longer.extend_from_slice(b"future");
        assert_eq!(PeerFacts::decode(&longer), Some(f));
        assert_eq!(PeerFacts::decode(&b[..9]), None);
        assert_eq!(PeerFacts::decode(b""), None);
        assert_eq!(PeerFacts::decode(b"XRPL\0\x01\0\0\0\x07"), None);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        assert_eq!(derived_id(&a), derived_id(&a));
        assert_ne!(derived_id(&a), derived_id(&b));
    }
}
