//! Key material of the shared-key mode: `encryptionKey` (hex, 128, 192 or
//! 256 bits, Tomcat `EncryptInterceptor`'s attribute) and the keys derived
//! from it. Key bytes never appear in `Debug` output, and are zeroed on drop.

use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;

/// Salt of every derivation from a cluster key, so keys derived here never
/// equal keys another program derives from the same secret.
const HKDF_SALT: &[u8] = b"sessionrepl cluster key v1";
/// Label of the Noise pre-shared key.
pub const LABEL_NOISE_PSK: &[u8] = b"noise psk";
/// Label of the multicast heartbeat MAC key.
pub const LABEL_HEARTBEAT: &[u8] = b"heartbeat mac";

/// A cluster key: 16, 24 or 32 bytes given as hex.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey {
    bytes: Vec<u8>,
}

impl SharedKey {
    /// Parses hex digits (whitespace, `:` and `-` between digits ignored)
    /// into a 128-, 192- or 256-bit key. The error never repeats the value.
    ///
    /// # Errors
    /// A message saying what is wrong (not hex, odd digit count, length).
    pub fn from_hex(v: &str) -> Result<Self, String> {
        let digits: Vec<u8> = v
            .bytes()
            .filter(|c| !matches!(c, b' ' | b'\t' | b':' | b'-'))
            .collect();
        if digits.is_empty() {
            return Err("empty key".into());
        }
        if digits.len() % 2 != 0 {
            return Err("odd number of hex digits".into());
        }
        let mut bytes = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            let hi = hex_val(pair[0]).ok_or("not a hex key")?;
            let lo = hex_val(pair[1]).ok_or("not a hex key")?;
            bytes.push(hi << 4 | lo);
        }
        Self::from_bytes(bytes)
    }

    /// A key from raw bytes (16, 24 or 32 of them).
    ///
    /// # Errors
    /// Any other length.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        match bytes.len() {
            16 | 24 | 32 => Ok(SharedKey { bytes }),
            n => {
                let mut b = bytes;
                b.fill(0);
                Err(format!(
                    "key is {} bits; expected 128, 192 or 256 (32, 48 or 64 hex digits)",
                    n * 8
                ))
            }
        }
    }

    /// The raw key (for Tribes `EncryptInterceptor` interop, which uses it
    /// directly as the AES key).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Key length in bits.
    pub fn bits(&self) -> usize {
        self.bytes.len() * 8
    }

    /// A 32-byte key for one purpose (`label`), by HKDF-SHA256.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.bytes);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hk.expand(label, &mut out)
            .expect("HKDF output length within limit");
        out
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedKey(<redacted {} bits>)", self.bits())
    }
}

impl Drop for SharedKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        std::hint::black_box(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_of_three_sizes_parse_and_others_are_refused() {
        for n in [16, 24, 32] {
            let k = SharedKey::from_hex(&"ab".repeat(n)).unwrap();
            assert_eq!(k.as_bytes(), &vec![0xab; n][..]);
        }
        assert!(SharedKey::from_hex(&"ab".repeat(15))
            .unwrap_err()
            .contains("120 bits"));
        assert!(SharedKey::from_hex("abc").unwrap_err().contains("odd"));
        assert!(SharedKey::from_hex(&"zz".repeat(16))
            .unwrap_err()
            .contains("hex"));
        assert!(SharedKey::from_hex("").is_err());
        let k = SharedKey::from_hex("00112233-44556677:8899aabb ccddeeff").unwrap();
        assert_eq!(k.bits(), 128);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = SharedKey::from_hex(&"5e".repeat(32)).unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("5e") && !s.contains("94"), "{s}");
        assert!(s.contains("redacted 256 bits"));
    }

    #[test]
    fn derived_keys_differ_by_label_and_key() {
        let a = SharedKey::from_hex(&"01".repeat(16)).unwrap();
        let b = SharedKey::from_hex(&"02".repeat(16)).unwrap();
        assert_ne!(a.derive(LABEL_NOISE_PSK), a.derive(LABEL_HEARTBEAT));
        assert_ne!(a.derive(LABEL_NOISE_PSK), b.derive(LABEL_NOISE_PSK));
        assert_eq!(a.derive(LABEL_NOISE_PSK), a.clone().derive(LABEL_NOISE_PSK));
    }
}
