//! Authenticated, encrypted connections, sans-IO. The connection paths
//! (`proto::sender`, `proto::inbound` through `transport::rx_core`, and the
//! synchronous sender) run every byte through a [`SecureStream`].
//!
//! One interface, [`SecureSession`], over two modes:
//!
//! - shared key ([`noise`]): `encryptionKey` → a Noise `NNpsk0` handshake
//!   and AES-GCM records with implicit counters (replay and reorder fail);
//! - certificates ([`tls`]): mutual TLS 1.3 with rustls, peers verified
//!   against `tlsCaCertificateFile`.
//!
//! The secure layer wraps the *whole* native byte stream: what the
//! transport writes through it (preface, frames) is exactly today's
//! protocol, so the frame header is encrypted and authenticated with the
//! payload, and the receiver decodes frames from the plaintext it gets
//! back. The first bytes of a connection tell the mode: `SRPN` (shared
//! key) or a TLS handshake record `16 03`.
//!
//! The calling pattern for one connection (either side):
//!
//! ```
//! # use sessionrepl::__internal::proto::secure::*;
//! # use std::sync::Arc;
//! let ctx = SecureContext::shared_key(&[SharedKey::from_hex(&"11".repeat(32)).unwrap()]);
//! let mut a = SecureSession::connect(&ctx, "127.0.0.1".parse().unwrap()).unwrap();
//! let mut b = SecureSession::accept(&ctx).unwrap();
//! let (mut wire, mut plain) = (Vec::new(), Vec::new());
//! a.send(b"frame bytes", &mut wire).unwrap(); // the hello; data waits
//! b.receive(&wire, &mut plain).unwrap();       // verifies it
//! wire.clear();
//! b.poll_transmit(&mut wire);                  // the answer
//! a.receive(&wire, &mut plain).unwrap();
//! assert!(a.is_established() && b.is_established());
//! wire.clear();
//! a.poll_transmit(&mut wire);                  // the queued record
//! b.receive(&wire, &mut plain).unwrap();
//! assert_eq!(plain, b"frame bytes");
//! ```

pub mod keys;
pub mod noise;
mod records;
pub mod stream;
pub mod tls;
pub mod tribes;

pub use keys::SharedKey;
pub use noise::NoiseSession;
pub use stream::SecureStream;
pub use tls::{TlsContext, TlsSession};

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a secure session failed. Every error fails the session: the
/// connection is to be closed, and nothing more is delivered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureError {
    /// The peer did not authenticate (wrong or no cluster key, certificate
    /// not signed by the cluster CA, another mode): count it as a refusal.
    Refused(String),
    /// Tampered, replayed, reordered, truncated or foreign bytes.
    Corrupt(String),
    /// More plaintext queued before the handshake than the bound allows.
    Backpressure,
    /// The local configuration cannot make a session.
    Config(String),
}

impl fmt::Display for SecureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecureError::Refused(s) => write!(f, "peer refused: {s}"),
            SecureError::Corrupt(s) => write!(f, "secure stream broken: {s}"),
            SecureError::Backpressure => write!(f, "too much data queued before the handshake"),
            SecureError::Config(s) => write!(f, "security configuration: {s}"),
        }
    }
}

impl std::error::Error for SecureError {}

/// Room a plaintext buffer takes when it must grow (four full records).
const PLAIN_RESERVE: usize = 256 * 1024;

/// Where a session appends the plaintext it opened (a `Vec<u8>`, or the
/// `BytesMut` frames are split from without a copy).
pub trait PlainBuf {
    /// Bytes held.
    fn len(&self) -> usize;
    /// True if empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grows by `n` zero bytes and returns them.
    fn grow(&mut self, n: usize) -> &mut [u8];
    /// Appends `data` and returns the appended bytes (to open in place).
    fn append(&mut self, data: &[u8]) -> &mut [u8];
    /// Shortens to `len` bytes.
    fn cut(&mut self, len: usize);
}

impl PlainBuf for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let start = Vec::len(self);
        self.resize(start + n, 0);
        &mut self[start..]
    }
    fn append(&mut self, data: &[u8]) -> &mut [u8] {
        let start = Vec::len(self);
        self.extend_from_slice(data);
        &mut self[start..]
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len)
    }
}

impl PlainBuf for bytes::BytesMut {
    fn len(&self) -> usize {
        bytes::BytesMut::len(self)
    }
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let start = bytes::BytesMut::len(self);
        self.resize(start + n, 0);
        &mut self[start..]
    }
    fn append(&mut self, data: &[u8]) -> &mut [u8] {
        let start = bytes::BytesMut::len(self);
        if self.capacity() - start < data.len() {
            // Frames split off earlier still share the old allocation: take
            // room for several records at once, not one allocation each.
            self.reserve(data.len().max(PLAIN_RESERVE));
        }
        self.extend_from_slice(data);
        &mut self[start..]
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len)
    }
}

impl From<SecureError> for crate::Error {
    fn from(e: SecureError) -> Self {
        match e {
            SecureError::Config(s) => crate::Error::InvalidArgument(s),
            other => crate::Error::Protocol(other.to_string()),
        }
    }
}

/// What a node's connections require, built once at start and shared by
/// every connection. Holds derived key material: its `Debug` shows none.
#[derive(Clone)]
pub enum SecureContext {
    /// Shared-key mode: Noise PSKs derived from the accepted cluster keys,
    /// the current key first.
    SharedKey(Arc<[[u8; 32]]>),
    /// Certificate mode.
    Tls(Arc<TlsContext>),
}

impl fmt::Debug for SecureContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecureContext::SharedKey(k) => {
                write!(f, "SecureContext::SharedKey(<{} keys>)", k.len())
            }
            SecureContext::Tls(_) => write!(f, "SecureContext::Tls"),
        }
    }
}

impl SecureContext {
    /// Shared-key mode from the cluster keys (current first, then the keys
    /// still accepted during a rollover).
    pub fn shared_key(keys: &[SharedKey]) -> SecureContext {
        let psks: Vec<[u8; 32]> = keys
            .iter()
            .map(|k| k.derive(keys::LABEL_NOISE_PSK))
            .collect();
        SecureContext::SharedKey(psks.into())
    }

    /// Short name of the mode, for logs and stats.
    pub fn mode_name(&self) -> &'static str {
        match self {
            SecureContext::SharedKey(_) => "shared-key",
            SecureContext::Tls(_) => "tls",
        }
    }
}

/// One connection's secure layer, either mode, either side.
#[derive(Debug)]
pub enum SecureSession {
    /// Shared-key mode.
    Noise(NoiseSession),
    /// Certificate mode.
    Tls(Box<TlsSession>),
}

impl SecureSession {
    /// The connecting side of a connection to `peer` (the address a TLS
    /// server certificate is checked against when it names addresses).
    ///
    /// # Errors
    /// [`SecureError::Config`] if the context cannot make a session.
    pub fn connect(ctx: &SecureContext, peer: IpAddr) -> Result<Self, SecureError> {
        match ctx {
            SecureContext::SharedKey(k) => NoiseSession::initiator(k.clone()).map(Self::Noise),
            SecureContext::Tls(t) => TlsSession::client(t, peer).map(|s| Self::Tls(Box::new(s))),
        }
    }

    /// The accepting side.
    ///
    /// # Errors
    /// [`SecureError::Config`] if the context cannot make a session.
    pub fn accept(ctx: &SecureContext) -> Result<Self, SecureError> {
        match ctx {
            SecureContext::SharedKey(k) => NoiseSession::responder(k.clone()).map(Self::Noise),
            SecureContext::Tls(t) => TlsSession::server(t).map(|s| Self::Tls(Box::new(s))),
        }
    }

    /// Bytes received from the socket, in order; authenticated plaintext is
    /// appended to `plain`.
    ///
    /// # Errors
    /// See [`SecureError`]; after an error, close the connection.
    pub fn receive(&mut self, input: &[u8], plain: &mut impl PlainBuf) -> Result<(), SecureError> {
        match self {
            Self::Noise(s) => s.receive(input, plain),
            Self::Tls(s) => s.receive(input, plain),
        }
    }

    /// Plaintext to send: whatever is pending (handshake bytes) and the
    /// ciphertext are appended to `out`; before the handshake completes the
    /// plaintext waits, bounded, and leaves with a later transmit.
    ///
    /// # Errors
    /// [`SecureError::Backpressure`] if too much waits for the handshake.
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        match self {
            Self::Noise(s) => s.send(plain, out),
            Self::Tls(s) => s.send(plain, out),
        }
    }

    /// As [`SecureSession::send`] for plaintext in pieces (a sender's
    /// iovecs), gathered into as few records as possible. Returns the
    /// plaintext bytes taken (all of them on success).
    ///
    /// # Errors
    /// As [`SecureSession::send`].
    pub fn send_vectored(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<usize, SecureError> {
        match self {
            Self::Noise(s) => s.send_vectored(parts, out),
            Self::Tls(s) => s.send_vectored(parts, out),
        }
    }

    /// Handshake bytes (and records queued before it completed) to write.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::Noise(s) => s.poll_transmit(out),
            Self::Tls(s) => s.poll_transmit(out),
        }
    }

    /// True once application bytes flow.
    pub fn is_established(&self) -> bool {
        match self {
            Self::Noise(s) => s.is_established(),
            Self::Tls(s) => s.is_established(),
        }
    }

    /// The peer closed its side of the stream.
    ///
    /// # Errors
    /// [`SecureError::Corrupt`] if the stream ended inside a record.
    pub fn receive_eof(&mut self) -> Result<(), SecureError> {
        match self {
            Self::Noise(s) => s.receive_eof(),
            Self::Tls(s) => s.receive_eof(),
        }
    }
}

/// True if a connection's first bytes may open a secure session (`SRPN`
/// or a TLS handshake record); `None` while fewer than 2 bytes are known.
pub fn looks_secure(first: &[u8]) -> Option<bool> {
    if first.len() < 2 {
        return None;
    }
    let n = first.len().min(4);
    Some(first[..n] == noise::HELLO_MAGIC[..n] || (first[0] == 0x16 && first[1] == 0x03))
}
