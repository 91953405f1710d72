//! Shared-key mode: a `Noise_NNpsk0_25519_AESGCM_SHA256` handshake (the
//! `snow` crate) followed by AEAD records.
//!
//! Both sides mix a pre-shared key derived from `encryptionKey` into the
//! handshake before anything else, and each contributes a fresh X25519
//! ephemeral key, so
//! - the initiator's hello verifies only under the cluster key (a responder
//!   without it learns nothing and answers nothing),
//! - the responder's hello verifies only under the cluster key *and* the
//!   initiator's fresh ephemeral (a replayed answer is refused),
//! - record keys are fresh per connection (forward secret), so a record
//!   captured on one connection fails on every other one.
//!
//! Wire format (big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SRPN` (`53 52 50 4E`) |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | suite (1 = `Noise_NNpsk0_25519_AESGCM_SHA256`) |
//! | 6 | 2 | body length B (at most 1024) |
//! | 8 | B | Noise handshake message (48 bytes: ephemeral key + tag) |
//!
//! Each side sends one hello (initiator first). Then every byte travels in
//! records: a 2-byte length L (17..=65535) and L bytes of AES-256-GCM
//! ciphertext with its 16-byte tag, keyed per direction from the
//! handshake's split (see `records`). The record nonce is an implicit
//! counter and the length is authenticated: a replayed, dropped,
//! reordered or spliced record fails authentication and fails the
//! connection.

use std::sync::Arc;

use snow::{Builder, HandshakeState};

use super::records::RecordKeys;
use super::{PlainBuf, SecureError};

/// Magic of a shared-key hello.
pub const HELLO_MAGIC: [u8; 4] = *b"SRPN";
/// Hello format version.
pub const HELLO_VERSION: u8 = 1;
/// Suite number of `Noise_NNpsk0_25519_AESGCM_SHA256`.
pub const SUITE_NNPSK0_AESGCM: u8 = 1;
/// Fixed part of a hello.
pub const HELLO_HEADER_LEN: usize = 8;
/// Longest hello body accepted.
pub const MAX_HELLO_BODY: usize = 1024;
/// Bytes of a record's length field.
pub const RECORD_HEADER_LEN: usize = 2;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Longest record body (Noise's message limit).
pub const MAX_RECORD_LEN: usize = 65535;
/// Most plaintext in one record.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_LEN - TAG_LEN;
/// Most plaintext the initiator queues before the handshake completes.
pub const MAX_EARLY: usize = 256 * 1024;

const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
const PROLOGUE_LABEL: &[u8] = b"sessionrepl secure v1";

/// A decoded hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Suite number.
    pub suite: u8,
    /// The Noise handshake message.
    pub body: &'a [u8],
}

/// Decodes a hello from the start of `buf`: `Ok(None)` = more bytes
/// needed, `Ok(Some((hello, consumed)))` otherwise.
///
/// # Errors
/// Wrong magic or version, or a body longer than [`MAX_HELLO_BODY`].
pub fn decode_hello(buf: &[u8]) -> Result<Option<(Hello<'_>, usize)>, SecureError> {
    let n = buf.len().min(4);
    if buf[..n] != HELLO_MAGIC[..n] {
        return Err(SecureError::Refused(
            "peer does not speak the shared-key handshake".into(),
        ));
    }
    if buf.len() < HELLO_HEADER_LEN {
        return Ok(None);
    }
    if buf[4] != HELLO_VERSION {
        return Err(SecureError::Refused(format!(
            "unsupported handshake version {}",
            buf[4]
        )));
    }
    let len = u16::from_be_bytes([buf[6], buf[7]]) as usize;
    if len > MAX_HELLO_BODY {
        return Err(SecureError::Corrupt(format!("hello body of {len} bytes")));
    }
    if buf.len() < HELLO_HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some((
        Hello {
            suite: buf[5],
            body: &buf[HELLO_HEADER_LEN..HELLO_HEADER_LEN + len],
        },
        HELLO_HEADER_LEN + len,
    )))
}

/// Appends a hello to `out`.
pub fn encode_hello(suite: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&HELLO_MAGIC);
    out.push(HELLO_VERSION);
    out.push(suite);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn prologue(suite: u8) -> Vec<u8> {
    let mut p = PROLOGUE_LABEL.to_vec();
    p.extend_from_slice(&HELLO_MAGIC);
    p.push(HELLO_VERSION);
    p.push(suite);
    p
}

fn builder<'a>(psk: &'a [u8; 32], prologue: &'a [u8]) -> Result<Builder<'a>, snow::Error> {
    let params = NOISE_PARAMS.parse().expect("valid Noise pattern name");
    Builder::new(params).psk(0, psk)?.prologue(prologue)
}

enum State {
    /// Initiator: hello sent, waiting for the responder's.
    AwaitAnswer(Box<HandshakeState>),
    /// Responder: waiting for the initiator's hello.
    AwaitHello,
    Established(Box<RecordKeys>),
    Failed,
}

/// One connection's shared-key session (either side), sans-IO.
pub struct NoiseSession {
    psks: Arc<[[u8; 32]]>,
    state: State,
    key_index: Option<usize>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    early: Vec<u8>,
}

impl std::fmt::Debug for NoiseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSession")
            .field("established", &self.is_established())
            .field("key_index", &self.key_index)
            .finish_non_exhaustive()
    }
}

impl NoiseSession {
    /// The connecting side: its hello, made with `psks[0]`, is ready in
    /// [`NoiseSession::poll_transmit`] at once.
    ///
    /// # Errors
    /// No key given, or the Noise library failed (it should not).
    pub fn initiator(psks: Arc<[[u8; 32]]>) -> Result<Self, SecureError> {
        let first = *psks
            .first()
            .ok_or_else(|| SecureError::Config("no shared key".into()))?;
        let pro = prologue(SUITE_NNPSK0_AESGCM);
        let mut hs = builder(&first, &pro)
            .and_then(|b| b.build_initiator())
            .map_err(internal)?;
        let mut msg = [0u8; 256];
        let n = hs.write_message(&[], &mut msg).map_err(internal)?;
        let mut outbuf = Vec::with_capacity(HELLO_HEADER_LEN + n);
        encode_hello(SUITE_NNPSK0_AESGCM, &msg[..n], &mut outbuf);
        Ok(NoiseSession {
            psks,
            state: State::AwaitAnswer(Box::new(hs)),
            key_index: Some(0),
            inbuf: Vec::new(),
            outbuf,
            early: Vec::new(),
        })
    }

    /// The accepting side: it accepts a hello made with any of `psks`
    /// (the current key first, then keys still accepted during a rollover).
    ///
    /// # Errors
    /// No key given.
    pub fn responder(psks: Arc<[[u8; 32]]>) -> Result<Self, SecureError> {
        if psks.is_empty() {
            return Err(SecureError::Config("no shared key".into()));
        }
        Ok(NoiseSession {
            psks,
            state: State::AwaitHello,
            key_index: None,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            early: Vec::new(),
        })
    }

    /// True once record keys exist (initiator: the answer verified;
    /// responder: the hello verified and the answer is queued).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// The record keys once established (for sealing in place).
    pub(crate) fn record_keys(&mut self) -> Option<&mut RecordKeys> {
        match &mut self.state {
            State::Established(k) if self.outbuf.is_empty() => Some(k),
            _ => None,
        }
    }

    /// True if [`NoiseSession::record_keys`] gives the keys.
    pub(crate) fn has_record_keys(&self) -> bool {
        matches!(self.state, State::Established(_)) && self.outbuf.is_empty()
    }

    /// Which of the accepted keys the peer used (0 = the current one).
    pub fn key_index(&self) -> Option<usize> {
        self.key_index
    }

    /// The peer closed its side.
    ///
    /// # Errors
    /// [`SecureError::Corrupt`] if part of a record or hello was pending
    /// (the stream was truncated).
    pub fn receive_eof(&mut self) -> Result<(), SecureError> {
        if self.inbuf.is_empty() {
            return Ok(());
        }
        self.fail();
        Err(SecureError::Corrupt("stream ends inside a record".into()))
    }

    /// Moves bytes to send (hello, records of early data) to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.outbuf);
    }

    /// Takes bytes received from the peer; authenticated plaintext is
    /// appended to `plain`. A partial record waits inside (at most one).
    ///
    /// # Errors
    /// [`SecureError::Refused`] when the peer does not prove the key;
    /// [`SecureError::Corrupt`] for a tampered, replayed, reordered,
    /// truncated-length or foreign record. The session is failed after
    /// any error: close the connection.
    pub fn receive(&mut self, input: &[u8], plain: &mut impl PlainBuf) -> Result<(), SecureError> {
        let r = if self.inbuf.is_empty() {
            self.process(input, plain).map(|used| {
                self.inbuf.extend_from_slice(&input[used..]);
            })
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(input);
            self.process(&buf, plain).map(|used| {
                buf.drain(..used);
                self.inbuf = buf;
            })
        };
        if r.is_err() {
            self.fail();
        }
        r
    }

    /// Encrypts `plain` into records appended to `out`, after anything
    /// [`NoiseSession::poll_transmit`] would give; before the handshake
    /// completes the bytes wait, bounded by [`MAX_EARLY`], and leave with
    /// the first transmit after it.
    ///
    /// # Errors
    /// [`SecureError::Backpressure`] past [`MAX_EARLY`];
    /// [`SecureError::Corrupt`] on a failed session.
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        self.send_vectored(&[plain], out).map(|_| ())
    }

    /// As [`NoiseSession::send`] for plaintext in pieces (frame headers and
    /// payloads as a sender's iovecs): the pieces are gathered so records
    /// are as large as allowed, not one per piece. Returns the plaintext
    /// bytes taken (all of them).
    ///
    /// # Errors
    /// As [`NoiseSession::send`].
    pub fn send_vectored(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<usize, SecureError> {
        out.append(&mut self.outbuf);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        match &mut self.state {
            State::Established(t) => t.seal(parts, out).map(|()| total),
            State::Failed => Err(SecureError::Corrupt("session failed".into())),
            State::AwaitAnswer(_) | State::AwaitHello => {
                if self.early.len() + total > MAX_EARLY {
                    return Err(SecureError::Backpressure);
                }
                for p in parts {
                    self.early.extend_from_slice(p);
                }
                Ok(total)
            }
        }
    }

    /// The in-place receive path (`SecureStream::open_in_place`): consumes
    /// the complete hellos at the start of `input` while the handshake
    /// runs and returns how many bytes it used; records are left to
    /// [`NoiseSession::opening_keys`].
    ///
    /// # Errors
    /// As [`NoiseSession::receive`]; the session is failed after any.
    pub(crate) fn receive_handshake(&mut self, input: &[u8]) -> Result<usize, SecureError> {
        let r = self.handshake(input);
        if r.is_err() {
            self.fail();
        }
        r
    }

    /// The keys to open records with once established (whatever waits to
    /// be transmitted).
    pub(crate) fn opening_keys(&mut self) -> Option<&mut RecordKeys> {
        match &mut self.state {
            State::Established(k) => Some(k),
            _ => None,
        }
    }

    pub(crate) fn fail(&mut self) {
        self.state = State::Failed;
        self.inbuf = Vec::new();
        self.outbuf.clear();
        self.early = Vec::new();
    }

    /// Consumes complete hellos and records from `buf`; returns how many
    /// bytes it used.
    fn process(&mut self, buf: &[u8], plain: &mut impl PlainBuf) -> Result<usize, SecureError> {
        let pos = self.handshake(buf)?;
        match &mut self.state {
            State::Established(t) => Ok(pos + t.open(&buf[pos..], plain)?),
            _ => Ok(pos),
        }
    }

    /// Consumes complete hellos from `buf` until established; returns how
    /// many bytes it used.
    fn handshake(&mut self, buf: &[u8]) -> Result<usize, SecureError> {
        let mut pos = 0;
        loop {
            match &self.state {
                State::Failed => return Err(SecureError::Corrupt("session failed".into())),
                State::Established(_) => return Ok(pos),
                State::AwaitHello | State::AwaitAnswer(_) => {
                    let Some((hello, n)) = decode_hello(&buf[pos..])? else {
                        return Ok(pos);
                    };
                    self.on_hello(hello)?;
                    pos += n;
                }
            }
        }
    }

    fn on_hello(&mut self, hello: Hello<'_>) -> Result<(), SecureError> {
        if hello.suite != SUITE_NNPSK0_AESGCM {
            return Err(SecureError::Refused(format!(
                "unsupported suite {}",
                hello.suite
            )));
        }
        let mut scratch = [0u8; MAX_HELLO_BODY];
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitAnswer(mut hs) => {
                hs.read_message(hello.body, &mut scratch).map_err(|_| {
                    SecureError::Refused("responder does not prove the cluster key".into())
                })?;
                let mut t = record_keys(&mut hs)?;
                let early = std::mem::take(&mut self.early);
                t.seal(&[&early], &mut self.outbuf)?;
                self.state = State::Established(Box::new(t));
                Ok(())
            }
            State::AwaitHello => {
                let pro = prologue(SUITE_NNPSK0_AESGCM);
                for (i, psk) in self.psks.iter().enumerate() {
                    let mut hs = builder(psk, &pro)
                        .and_then(|b| b.build_responder())
                        .map_err(internal)?;
                    if hs.read_message(hello.body, &mut scratch).is_err() {
                        continue;
                    }
                    let n = hs.write_message(&[], &mut scratch).map_err(internal)?;
                    encode_hello(SUITE_NNPSK0_AESGCM, &scratch[..n], &mut self.outbuf);
                    let mut t = record_keys(&mut hs)?;
                    let early = std::mem::take(&mut self.early);
                    t.seal(&[&early], &mut self.outbuf)?;
                    self.state = State::Established(Box::new(t));
                    self.key_index = Some(i);
                    return Ok(());
                }
                Err(SecureError::Refused(
                    "initiator does not prove the cluster key".into(),
                ))
            }
            _ => Err(SecureError::Corrupt("unexpected hello".into())),
        }
    }
}

/// The record keys of a finished handshake (its raw split).
fn record_keys(hs: &mut HandshakeState) -> Result<RecordKeys, SecureError> {
    if !hs.is_handshake_finished() {
        return Err(SecureError::Corrupt("handshake not finished".into()));
    }
    let (k1, k2) = hs.dangerously_get_raw_split();
    Ok(RecordKeys::new(hs.is_initiator(), &k1, &k2))
}

fn internal(e: snow::Error) -> SecureError {
    SecureError::Corrupt(format!("handshake: {e}"))
}

#[cfg(test)]
#[path = "noise_tests.rs"]
mod tests;
