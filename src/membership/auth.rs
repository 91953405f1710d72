//! Authenticated multicast heartbeats (shared-key mode).
//!
//! With `encryptionKey` set, every heartbeat (shutdown notices included)
//! carries a trailer at the end of its Tribes member blob's payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SRHA` |
//! | 4 | 8 | send time, µs since the Unix epoch (BE), strictly rising per sender |
//! | 12 | 16 | HMAC-SHA256 (truncated) of the whole datagram with these 16 bytes zeroed |
//!
//! The MAC key is derived from the cluster key (never the key itself). A
//! receiver accepts a heartbeat only if the MAC verifies, the time is within
//! `heartbeatAuthWindow` of its own clock, and the time is above the last
//! one it accepted from that member id: a forged heartbeat fails the MAC, a
//! replayed one fails the time checks, so neither adds, refreshes or
//! removes a member. Heartbeats without the trailer (plain Tribes nodes)
//! are refused as well.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::proto::secure::keys::{SharedKey, LABEL_HEARTBEAT};
use crate::wire::tribes::TribesMemberRef;

/// Magic of the trailer.
pub const TRAILER_MAGIC: [u8; 4] = *b"SRHA";
/// Trailer length.
pub const TRAILER_LEN: usize = 28;
const MAC_LEN: usize = 16;
/// Most member ids whose last time is remembered (oldest forgotten first).
pub const MAX_TRACKED: usize = 4096;

/// Why a heartbeat was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatRefusal {
    /// Not a member blob, or no trailer.
    Unauthenticated,
    /// The MAC does not verify (forged, tampered, other key).
    BadMac,
    /// Time outside the window around the receiver's clock.
    Stale,
    /// Time not above the last accepted from this member (replay).
    Replay,
}

/// Seals outgoing and verifies incoming heartbeats with the keys derived
/// from the accepted cluster keys (current first).
pub struct HeartbeatAuth {
    keys: Vec<[u8; 32]>,
    window_us: u64,
    last_sent_us: u64,
    last_seen: HashMap<[u8; 16], u64>,
}

impl std::fmt::Debug for HeartbeatAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatAuth")
            .field("keys", &self.keys.len())
            .field("window_us", &self.window_us)
            .finish_non_exhaustive()
    }
}

/// Where the trailer sits in `blob` (the last bytes of its payload).
fn trailer_offset(blob: &[u8]) -> Option<usize> {
    let (m, used) = TribesMemberRef::parse(blob).ok()?;
    if used != blob.len() || m.payload.len() < TRAILER_LEN {
        return None;
    }
    let pay_start = m.payload.as_ptr() as usize - blob.as_ptr() as usize;
    Some(pay_start + m.payload.len() - TRAILER_LEN)
}

fn mac(key: &[u8; 32], blob: &[u8], mac_at: usize) -> [u8; MAC_LEN] {
    let mut h = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any HMAC key length");
    h.update(&blob[..mac_at]);
    h.update(&[0u8; MAC_LEN]);
    h.update(&blob[mac_at + MAC_LEN..]);
    let full = h.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

impl HeartbeatAuth {
    /// An authenticator over `keys` (current first) with a freshness
    /// window of `window_ms`.
    pub fn new(keys: &[SharedKey], window_ms: u64) -> Self {
        HeartbeatAuth {
            keys: keys.iter().map(|k| k.derive(LABEL_HEARTBEAT)).collect(),
            window_us: window_ms.saturating_mul(1000),
            last_sent_us: 0,
            last_seen: HashMap::new(),
        }
    }

    /// The zeroed trailer to append to a heartbeat's payload before the
    /// blob is encoded; [`HeartbeatAuth::seal`] fills it.
    pub fn empty_trailer() -> [u8; TRAILER_LEN] {
        let mut t = [0u8; TRAILER_LEN];
        t[..4].copy_from_slice(&TRAILER_MAGIC);
        t
    }

    /// Stamps and MACs an encoded blob whose payload ends with a trailer,
    /// at wall time `now_us`. Call after every change to the blob (the
    /// alive time is patched per send).
    ///
    /// Returns false if the blob has no trailer (nothing is changed).
    pub fn seal(&mut self, blob: &mut [u8], now_us: u64) -> bool {
        let Some(at) = trailer_offset(blob) else {
            return false;
        };
        if blob[at..at + 4] != TRAILER_MAGIC {
            return false;
        }
        let t = now_us.max(self.last_sent_us + 1);
        self.last_sent_us = t;
        blob[at + 4..at + 12].copy_from_slice(&t.to_be_bytes());
        let m = mac(&self.keys[0], blob, at + 12);
        blob[at + 12..at + 12 + MAC_LEN].copy_from_slice(&m);
        true
    }

    /// Verifies a received datagram at wall time `now_us`; on success its
    /// time is remembered for the sender's member id.
    ///
    /// # Errors
    /// The [`HeartbeatRefusal`] saying why it must be ignored.
    pub fn verify(&mut self, datagram: &[u8], now_us: u64) -> Result<(), HeartbeatRefusal> {
        let at = trailer_offset(datagram).ok_or(HeartbeatRefusal::Unauthenticated)?;
        if datagram[at..at + 4] != TRAILER_MAGIC {
            return Err(HeartbeatRefusal::Unauthenticated);
        }
        let got = &datagram[at + 12..at + 12 + MAC_LEN];
        let ok = self.keys.iter().any(|k| {
            let want = mac(k, datagram, at + 12);
            // Constant-time comparison.
            want.iter().zip(got).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
        });
        if !ok {
            return Err(HeartbeatRefusal::BadMac);
        }
        let t = u64::from_be_bytes(datagram[at + 4..at + 12].try_into().expect("8 bytes"));
        if t.abs_diff(now_us) > self.window_us {
            return Err(HeartbeatRefusal::Stale);
        }
        let (m, _) =
            TribesMemberRef::parse(datagram).map_err(|_| HeartbeatRefusal::Unauthenticated)?;
        if let Some(&last) = self.last_seen.get(&m.unique_id) {
            if t <= last {
                return Err(HeartbeatRefusal::Replay);
            }
        } else if self.last_seen.len() >= MAX_TRACKED {
            // Forget the entry that is stalest (outside the window, it
            // refuses replays by the window check alone).
            if let Some(old) = self
                .last_seen
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k)
            {
                self.last_seen.remove(&old);
            }
        }
        self.last_seen.insert(m.unique_id, t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tribes::{patch_alive, TribesMember};

    fn key(b: u8) -> SharedKey {
        SharedKey::from_bytes(vec![b; 16]).unwrap()
    }

    fn blob(id: u8, with_trailer: bool) -> Vec<u8> {
        let mut m = TribesMember::new("127.0.0.1".parse().unwrap(), 4000 + id as u16, [id; 16]);
        m.payload = b"SRPL\x00\x01\x00\x00\x00\x07".to_vec();
        if with_trailer {
            m.payload.extend_from_slice(&HeartbeatAuth::empty_trailer());
        }
        m.to_bytes().unwrap()
    }

    const T0: u64 = 1_800_000_000_000_000;

    #[test]
    fn sealed_heartbeat_verifies_and_its_replay_is_refused() {
        let mut tx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut rx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut b = blob(1, true);
        patch_alive(&mut b, 1234).unwrap();
        assert!(tx.seal(&mut b, T0));
        assert_eq!(rx.verify(&b, T0 + 5), Ok(()));
        assert_eq!(rx.verify(&b, T0 + 10), Err(HeartbeatRefusal::Replay));
        // The next heartbeat (alive patched, re-sealed) is accepted.
        patch_alive(&mut b, 1734).unwrap();
        assert!(tx.seal(&mut b, T0 + 500_000));
        assert_eq!(rx.verify(&b, T0 + 500_010), Ok(()));
    }

    #[test]
    fn forged_tampered_and_unauthenticated_heartbeats_are_refused() {
        let mut rx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut forger = HeartbeatAuth::new(&[key(2)], 10_000);
        let mut b = blob(3, true);
        assert!(forger.seal(&mut b, T0));
        assert_eq!(rx.verify(&b, T0), Err(HeartbeatRefusal::BadMac));
        let mut tx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut b = blob(3, true);
        tx.seal(&mut b, T0);
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 0x01;
            assert!(rx.verify(&t, T0).is_err(), "flip at {i} accepted");
        }
        assert_eq!(
            rx.verify(&blob(4, false), T0),
            Err(HeartbeatRefusal::Unauthenticated)
        );
        assert_eq!(
            rx.verify(b"garbage", T0),
            Err(HeartbeatRefusal::Unauthenticated)
        );
        assert!(!tx.seal(&mut blob(5, false), T0));
    }

    #[test]
    fn heartbeat_outside_the_window_is_refused_and_previous_key_accepted() {
        let mut tx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut rx = HeartbeatAuth::new(&[key(2), key(1)], 10_000);
        let mut b = blob(6, true);
        tx.seal(&mut b, T0);
        assert_eq!(rx.verify(&b, T0 + 10_000_001), Err(HeartbeatRefusal::Stale));
        assert_eq!(rx.verify(&b, T0 - 10_000_001), Err(HeartbeatRefusal::Stale));
        assert_eq!(rx.verify(&b, T0 + 9_000_000), Ok(()));
    }

    #[test]
    fn send_times_rise_even_if_the_clock_does_not() {
        let mut tx = HeartbeatAuth::new(&[key(1)], 10_000);
        let mut rx = HeartbeatAuth::new(&[key(1)], 10_000);
        for _ in 0..3 {
            let mut b = blob(7, true);
            tx.seal(&mut b, T0);
            assert_eq!(rx.verify(&b, T0), Ok(()));
        }
    }
}
