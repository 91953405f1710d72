//! Apache Tribes `EncryptInterceptor` message codec
//! (`encryptionAlgorithm="AES/GCM/NoPadding"`), so a sessionrepl node and a
//! stock Tribes node with the same `encryptionKey` read each other.
//!
//! The interceptor replaces a ChannelData message body by
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 12 | random IV |
//! | 12 | n + 16 | AES-GCM(key, IV) of `timestamp (8, big-endian ms) ‖ body`, 128-bit tag |
//!
//! with the raw `encryptionKey` (128, 192 or 256 bits) as the AES key and no
//! associated data (Tomcat 10.1.x `EncryptInterceptor.GCMEncryptionManager`).
//! A receiver drops a message whose trusted timestamp is more than
//! `replayWindowTime` (10 s) from its clock, at or below the eldest
//! timestamp it forgot, or whose IV it saw within the window (at most
//! `replayWindowMessageCount` = 8192 remembered) — [`ReplayWindow`] does the
//! same.

use std::collections::{BTreeMap, HashSet, VecDeque};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};

use super::{SecureError, SharedKey};

/// IV length of Tomcat's GCM manager.
pub const IV_LEN: usize = 12;
/// GCM tag length (128 bits).
pub const TAG_LEN: usize = 16;
/// Bytes the codec adds to a body: IV, timestamp, tag.
pub const OVERHEAD: usize = IV_LEN + 8 + TAG_LEN;
/// Tomcat's default `replayWindowTime` (ms).
pub const DEFAULT_REPLAY_WINDOW_MS: i64 = 10_000;
/// Tomcat's default `replayWindowMessageCount`.
pub const DEFAULT_REPLAY_WINDOW_COUNT: usize = 8192;
/// The only `encryptionAlgorithm` this codec speaks.
pub const ALGORITHM: &str = "AES/GCM/NoPadding";

type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;

enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

/// Seals and opens `EncryptInterceptor` message bodies with one key.
pub struct TribesCipher {
    cipher: Cipher,
}

impl std::fmt::Debug for TribesCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TribesCipher(<redacted>)")
    }
}

impl TribesCipher {
    /// A cipher over the raw cluster key, as Tomcat uses it.
    pub fn new(key: &SharedKey) -> Self {
        let k = key.as_bytes();
        let cipher = match k.len() {
            16 => Cipher::A128(Box::new(Aes128Gcm::new_from_slice(k).expect("16-byte key"))),
            24 => Cipher::A192(Box::new(Aes192Gcm::new_from_slice(k).expect("24-byte key"))),
            _ => Cipher::A256(Box::new(Aes256Gcm::new_from_slice(k).expect("32-byte key"))),
        };
        TribesCipher { cipher }
    }

    /// Seals `body` stamped with `timestamp_ms` under the random `iv`
    /// (the caller draws it from a CSPRNG, fresh per message).
    pub fn seal(&self, body: &[u8], timestamp_ms: i64, iv: [u8; IV_LEN]) -> Vec<u8> {
        let mut pt = Vec::with_capacity(8 + body.len());
        pt.extend_from_slice(&timestamp_ms.to_be_bytes());
        pt.extend_from_slice(body);
        let nonce = Nonce::from_slice(&iv);
        let ct = match &self.cipher {
            Cipher::A128(c) => c.encrypt(nonce, pt.as_slice()),
            Cipher::A192(c) => c.encrypt(nonce, pt.as_slice()),
            Cipher::A256(c) => c.encrypt(nonce, pt.as_slice()),
        }
        .expect("AES-GCM encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        out
    }

    /// Seals with a fresh random IV from the OS.
    ///
    /// # Errors
    /// The OS random source failed.
    pub fn seal_random(&self, body: &[u8], timestamp_ms: i64) -> Result<Vec<u8>, SecureError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| SecureError::Config(format!("random: {e}")))?;
        Ok(self.seal(body, timestamp_ms, iv))
    }

    /// Opens a sealed body: `(timestamp_ms, body)`. Replay checks are
    /// [`ReplayWindow::check`]'s job, with the returned timestamp.
    ///
    /// # Errors
    /// [`SecureError::Refused`] if too short or the tag does not verify
    /// (another key, tampered, or not encrypted at all).
    pub fn open(&self, msg: &[u8]) -> Result<(i64, Vec<u8>), SecureError> {
        if msg.len() < OVERHEAD {
            return Err(SecureError::Refused(
                "EncryptInterceptor message too short".into(),
            ));
        }
        let nonce = Nonce::from_slice(&msg[..IV_LEN]);
        let ct = &msg[IV_LEN..];
        let pt = match &self.cipher {
            Cipher::A128(c) => c.decrypt(nonce, ct),
            Cipher::A192(c) => c.decrypt(nonce, ct),
            Cipher::A256(c) => c.decrypt(nonce, ct),
        }
        .map_err(|_| {
            SecureError::Refused("EncryptInterceptor message does not verify under the key".into())
        })?;
        let ts = i64::from_be_bytes(pt[..8].try_into().expect("8 bytes"));
        Ok((ts, pt[8..].to_vec()))
    }
}

/// Tomcat's replay filter: a time window plus the IVs seen within it.
#[derive(Debug)]
pub struct ReplayWindow {
    window_ms: i64,
    max_count: usize,
    by_time: BTreeMap<i64, VecDeque<[u8; IV_LEN]>>,
    seen: HashSet<[u8; IV_LEN]>,
    last_removed: i64,
}

impl ReplayWindow {
    /// A window of `window_ms` remembering at most `max_count` IVs,
    /// starting at `now_ms`.
    pub fn new(window_ms: i64, max_count: usize, now_ms: i64) -> Self {
        ReplayWindow {
            window_ms,
            max_count: max_count.max(1),
            by_time: BTreeMap::new(),
            seen: HashSet::new(),
            last_removed: now_ms - window_ms,
        }
    }

    /// True (and remembered) if a message sealed at `timestamp_ms` with the
    /// IV that opens `sealed` is fresh at `now_ms`; false for a replay, a
    /// stale or a future message.
    pub fn check(&mut self, sealed: &[u8], timestamp_ms: i64, now_ms: i64) -> bool {
        if sealed.len() < IV_LEN
            || timestamp_ms < now_ms - self.window_ms
            || timestamp_ms > now_ms + self.window_ms
            || timestamp_ms <= self.last_removed
        {
            return false;
        }
        let iv: [u8; IV_LEN] = sealed[..IV_LEN].try_into().expect("IV_LEN bytes");
        if !self.seen.insert(iv) {
            return false;
        }
        self.by_time.entry(timestamp_ms).or_default().push_back(iv);
        while self.seen.len() > self.max_count {
            self.remove_eldest();
        }
        true
    }

    /// Forgets IVs older than the window (bounded work per call).
    pub fn expire(&mut self, now_ms: i64) {
        while let Some((&ts, _)) = self.by_time.first_key_value() {
            if ts >= now_ms - self.window_ms {
                break;
            }
            self.remove_eldest();
        }
    }

    fn remove_eldest(&mut self) {
        let Some(mut e) = self.by_time.first_entry() else {
            return;
        };
        let ts = *e.key();
        if let Some(iv) = e.get_mut().pop_front() {
            self.seen.remove(&iv);
            self.last_removed = self.last_removed.max(ts);
        }
        if e.get().is_empty() {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize, b: u8) -> SharedKey {
        SharedKey::from_bytes(vec![b; n]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_for_each_key_size() {
        for n in [16, 24, 32] {
            let c = TribesCipher::new(&key(n, 7));
            let s = c.seal(b"session attr", 1_700_000_000_123, [9; IV_LEN]);
            assert_eq!(s.len(), b"session attr".len() + OVERHEAD);
            assert_eq!(&s[..IV_LEN], &[9; IV_LEN]);
            let (ts, body) = c.open(&s).unwrap();
            assert_eq!(ts, 1_700_000_000_123);
            assert_eq!(body, b"session attr");
        }
    }

    #[test]
    fn wrong_key_flipped_bit_and_short_message_are_refused() {
        let c = TribesCipher::new(&key(16, 1));
        let s = c.seal(b"x", 5, [1; IV_LEN]);
        assert!(TribesCipher::new(&key(16, 2)).open(&s).is_err());
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x10;
            assert!(c.open(&t).is_err(), "bit flip at {i} accepted");
        }
        assert!(c.open(&s[..OVERHEAD - 1]).is_err());
        assert!(c.open(&s[..s.len() - 1]).is_err());
    }

    #[test]
    fn replay_window_refuses_replays_stale_and_future_messages() {
        let now = 1_000_000;
        let mut w = ReplayWindow::new(10_000, 4, now);
        let m = |iv: u8| vec![iv; IV_LEN + 20];
        assert!(w.check(&m(1), now, now));
        assert!(!w.check(&m(1), now, now), "same IV twice");
        assert!(!w.check(&m(2), now - 10_001, now), "stale");
        assert!(!w.check(&m(3), now + 10_001, now), "future");
        for iv in 4..8 {
            assert!(w.check(&m(iv), now + iv as i64, now));
        }
        // The count bound forgot IV 1 but raised the floor past it.
        assert!(!w.check(&m(1), now, now), "forgotten but below floor");
        w.expire(now + 20_000);
        assert!(w.seen.is_empty());
    }
}
