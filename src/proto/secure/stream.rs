//! One connection's secure filter, the same on every path (the
//! asynchronous sender, the synchronous sender, the receiver): ciphertext
//! in → plaintext for the frame decoder; plaintext out (in pieces) →
//! records for the socket. Drivers only move bytes.
//!
//! Output is sealed in batches: the caller hands a whole write batch
//! (preface, frame headers, payloads) through a [`Sealer`], which fills
//! records of up to 64 KiB in place in one reused buffer. Where each
//! record ends is kept with the plaintext it carries, so a sender learns a
//! frame went out as soon as the records holding it did: not earlier (the
//! member cannot ack it before), and not later either — the member opens,
//! delivers and acks the first frames of a batch while the rest is still
//! being written, and an ack for a frame not yet counted as written finds
//! nothing to acknowledge (it would be lost, and the message time out).

use std::collections::VecDeque;
use std::net::IpAddr;

use bytes::{Buf, Bytes, BytesMut};

use super::noise::{MAX_RECORD_PLAINTEXT, RECORD_HEADER_LEN, TAG_LEN};
use super::records::RecordKeys;
use super::{SecureContext, SecureError, SecureSession};

/// Most plaintext sealed per [`SecureStream::sealer`] batch by senders.
pub const SEAL_BATCH: usize = 4 * MAX_RECORD_PLAINTEXT;

/// A reused output buffer above this capacity is given back once drained.
const KEEP_CAPACITY: usize = 1 << 20;

/// Certificate mode: plaintext handed to rustls per call, so its records
/// are marked one by one (rustls' largest record payload).
const TLS_PIECE: usize = 16 * 1024;

/// One connection's secure layer with its buffers.
#[derive(Debug)]
pub struct SecureStream {
    session: SecureSession,
    /// Ciphertext (handshake messages, records); `wire[..sent]` is
    /// written already.
    wire: Vec<u8>,
    /// The same output once handed out shared
    /// ([`SecureStream::share_pending`]): while it is not empty it holds
    /// all of the output (with the same offsets) and `wire` is empty.
    shared: Bytes,
    sent: usize,
    /// Plaintext bytes whose records are in `wire`.
    sealed: usize,
    /// Per sealed record (or certificate-mode piece), in `wire` order: the
    /// offset in `wire` where it ends and the plaintext it carries.
    marks: VecDeque<(usize, usize)>,
    /// Certificate mode: opened plaintext not yet decoded. Shared-key
    /// mode: the receive buffer for bytes that arrive in buffers not the
    /// connection's own (see [`SecureStream::open_in_place`]).
    plain: BytesMut,
    /// Gathered plaintext (certificate mode: rustls makes the records).
    gather: Vec<u8>,
    /// In-place receiving ([`SecureStream::open_in_place`]): opened
    /// plaintext at the front of the receive buffer, and the bytes after
    /// it that are spent (record headers and tags) before the ciphertext.
    ready: usize,
    gap: usize,
}

impl SecureStream {
    fn new(session: SecureSession) -> SecureStream {
        let mut s = SecureStream {
            session,
            wire: Vec::new(),
            shared: Bytes::new(),
            sent: 0,
            sealed: 0,
            marks: VecDeque::new(),
            plain: BytesMut::new(),
            gather: Vec::new(),
            ready: 0,
            gap: 0,
        };
        s.session.poll_transmit(&mut s.wire);
        s
    }

    /// The connecting side; its first handshake message is in
    /// [`SecureStream::pending`] at once.
    ///
    /// # Errors
    /// [`SecureError::Config`] if the context cannot make a session.
    pub fn connect(ctx: &SecureContext, peer: IpAddr) -> Result<SecureStream, SecureError> {
        SecureSession::connect(ctx, peer).map(Self::new)
    }

    /// The accepting side.
    ///
    /// # Errors
    /// [`SecureError::Config`] if the context cannot make a session.
    pub fn accept(ctx: &SecureContext) -> Result<SecureStream, SecureError> {
        SecureSession::accept(ctx).map(Self::new)
    }

    /// True once application bytes may be sealed.
    pub fn is_established(&self) -> bool {
        self.session.is_established()
    }

    /// Bytes read from the socket: authenticated plaintext goes to
    /// [`SecureStream::plain`], handshake answers to
    /// [`SecureStream::pending`].
    ///
    /// # Errors
    /// See [`SecureError`]: close the connection.
    pub fn receive(&mut self, input: &[u8]) -> Result<(), SecureError> {
        self.unshare();
        let r = self.session.receive(input, &mut self.plain);
        self.session.poll_transmit(&mut self.wire);
        r
    }

    /// True if records are opened with [`SecureStream::open_in_place`]
    /// (shared-key mode); otherwise with [`SecureStream::receive`].
    pub fn opens_in_place(&self) -> bool {
        matches!(self.session, SecureSession::Noise(_))
    }

    /// Shared-key mode: opens the records in `buf` where they lie, so
    /// frames are decoded from (and delivered as slices of) the receive
    /// buffer itself, with no copy. `buf` is the one receive buffer of
    /// the connection: it holds what the last call left (the plaintext
    /// not decoded, spent bytes, a partial record) followed by the bytes
    /// read since. Hellos at its start are consumed (an answer goes to
    /// [`SecureStream::pending`]). Returns how many plaintext bytes are at
    /// the front of `buf`; say with [`SecureStream::plain_left`] how many
    /// of them the decoder left there.
    ///
    /// The spent bytes are dropped as soon as the plaintext before them is
    /// no longer than they are (moving it is then cheaper than they grow,
    /// 18 bytes per record), so they never take more than the frame in
    /// progress.
    ///
    /// # Errors
    /// See [`SecureError`]: close the connection (nothing of `buf` may be
    /// decoded).
    pub fn open_in_place(&mut self, buf: &mut BytesMut) -> Result<usize, SecureError> {
        let SecureSession::Noise(n) = &mut self.session else {
            return Err(SecureError::Config(
                "records open in place in shared-key mode only".into(),
            ));
        };
        if self.ready + self.gap > buf.len() {
            n.fail();
            return Err(SecureError::Corrupt(
                "receive buffer does not hold the records left in it".into(),
            ));
        }
        if n.opening_keys().is_none() {
            // Hellos come first on a connection: nothing is opened yet.
            let used = n.receive_handshake(buf)?;
            buf.advance(used);
            if !self.shared.is_empty() {
                // The answer goes after the output in `wire`.
                Self::take_back(&mut self.wire, &mut self.shared);
            }
            n.poll_transmit(&mut self.wire);
        }
        let Some(keys) = n.opening_keys() else {
            return Ok(0);
        };
        if let Err(e) = keys.open_in_place(buf, &mut self.ready, &mut self.gap) {
            n.fail();
            return Err(e);
        }
        if self.gap > 0 && self.gap >= self.ready {
            buf.copy_within(..self.ready, self.gap);
            buf.advance(self.gap);
            self.gap = 0;
        }
        Ok(self.ready)
    }

    /// After [`SecureStream::open_in_place`] on `buf`: how many of its
    /// bytes belong to a record not complete yet (neither plaintext nor
    /// spent). A frame in progress includes them.
    pub fn unopened(&self, buf: &BytesMut) -> usize {
        buf.len().saturating_sub(self.ready + self.gap)
    }

    /// The frame decoder left `n` of the plaintext bytes
    /// [`SecureStream::open_in_place`] reported (it took the rest from the
    /// front of the buffer); `rest` is the buffer after them. With no
    /// plaintext left, the spent bytes at the start of `rest` are dropped.
    pub fn plain_left(&mut self, n: usize, rest: &mut BytesMut) {
        debug_assert!(n <= self.ready);
        self.ready = n.min(self.ready);
        if self.ready == 0 && self.gap > 0 && self.gap <= rest.len() {
            rest.advance(self.gap);
            self.gap = 0;
        }
    }

    /// The peer closed its side.
    ///
    /// # Errors
    /// [`SecureError::Corrupt`] if the stream ended inside a record.
    pub fn receive_eof(&mut self) -> Result<(), SecureError> {
        self.session.receive_eof()
    }

    /// Opened plaintext, for the frame decoder (it consumes from the
    /// front).
    pub fn plain(&mut self) -> &mut BytesMut {
        &mut self.plain
    }

    /// Ciphertext to write.
    pub fn pending(&self) -> &[u8] {
        if self.shared.is_empty() {
            &self.wire[self.sent..]
        } else {
            &self.shared[self.sent..]
        }
    }

    /// Makes the output to write shareable (no copy), for a driver that
    /// keeps what it sends until the kernel is done with it (io_uring
    /// would otherwise copy each sealed batch); see
    /// [`SecureStream::pending_shared`]. Output appended later (a seal, a
    /// handshake answer) first takes the buffer back.
    pub fn share_pending(&mut self) {
        if self.shared.is_empty() && !self.wire.is_empty() {
            self.shared = Bytes::from(std::mem::take(&mut self.wire));
        }
    }

    /// After [`SecureStream::share_pending`]: the shared output and the
    /// offset of its unwritten part (`None` if nothing is shared or all of
    /// it is written).
    pub fn pending_shared(&self) -> Option<(&Bytes, usize)> {
        (self.sent < self.shared.len()).then_some((&self.shared, self.sent))
    }

    /// The shared output back into `wire`, the same bytes at the same
    /// offsets: its allocation if no driver still holds it, else a copy.
    fn take_back(wire: &mut Vec<u8>, shared: &mut Bytes) {
        debug_assert!(wire.is_empty());
        match std::mem::take(shared).try_into_mut() {
            Ok(m) => *wire = Vec::from(m),
            Err(b) => wire.extend_from_slice(&b),
        }
    }

    fn unshare(&mut self) {
        if !self.shared.is_empty() {
            Self::take_back(&mut self.wire, &mut self.shared);
        }
    }

    /// The output buffer itself, for writers that drain what they wrote
    /// with `drain(..n)` instead of calling [`SecureStream::written`] (they
    /// get no plaintext accounting).
    pub fn pending_mut(&mut self) -> &mut Vec<u8> {
        self.unshare();
        if self.sent > 0 {
            self.wire.drain(..self.sent);
            self.sent = 0;
        }
        self.marks.clear();
        self.sealed = 0;
        &mut self.wire
    }

    /// The socket took `n` bytes of [`SecureStream::pending`]. Returns the
    /// plaintext now fully on the wire: that of every record whose last
    /// byte was written (all that was sealed once the output drained).
    pub fn written(&mut self, n: usize) -> usize {
        let len = self.wire.len().max(self.shared.len());
        self.sent = (self.sent + n).min(len);
        let mut plain = 0;
        while let Some(&(end, p)) = self.marks.front() {
            if end > self.sent {
                break;
            }
            self.marks.pop_front();
            plain += p;
        }
        if self.sent == len {
            // All written: the shared buffer's allocation is reused if no
            // driver holds it any more (never copied).
            if !self.shared.is_empty() {
                if let Ok(m) = std::mem::take(&mut self.shared).try_into_mut() {
                    self.wire = Vec::from(m);
                }
            }
            self.wire.clear();
            self.sent = 0;
            self.marks.clear();
            if self.wire.capacity() > KEEP_CAPACITY {
                self.wire = Vec::new();
            }
            plain = self.sealed;
        }
        self.sealed -= plain;
        plain
    }

    /// Plaintext sealed into records not fully written yet.
    pub fn unsent_plain(&self) -> usize {
        self.sealed
    }

    /// Starts sealing one batch of plaintext (pieces pushed in order).
    /// Call only when established.
    pub fn sealer(&mut self) -> Sealer<'_> {
        self.unshare();
        let SecureStream {
            session,
            wire,
            sealed,
            marks,
            gather,
            ..
        } = self;
        let noise = matches!(session, SecureSession::Noise(n) if n.has_record_keys());
        if noise {
            let SecureSession::Noise(n) = session else {
                unreachable!("checked above")
            };
            Sealer::Records(RecordSealer {
                keys: n.record_keys().expect("checked above"),
                out: wire,
                sealed,
                marks,
                open: None,
                failed: false,
            })
        } else {
            gather.clear();
            Sealer::Gather {
                session,
                wire,
                sealed,
                marks,
                gather,
            }
        }
    }
}

/// One batch being sealed; [`Sealer::finish`] closes its last record.
pub enum Sealer<'a> {
    /// Shared-key records sealed in place.
    Records(RecordSealer<'a>),
    /// Certificate mode: gathered, then handed to rustls at once.
    #[allow(missing_docs)]
    Gather {
        session: &'a mut SecureSession,
        wire: &'a mut Vec<u8>,
        sealed: &'a mut usize,
        marks: &'a mut VecDeque<(usize, usize)>,
        gather: &'a mut Vec<u8>,
    },
}

/// Fills and seals shared-key records in the output buffer.
pub struct RecordSealer<'a> {
    keys: &'a mut RecordKeys,
    out: &'a mut Vec<u8>,
    sealed: &'a mut usize,
    marks: &'a mut VecDeque<(usize, usize)>,
    /// Start of the record being filled (its header) in `out`.
    open: Option<usize>,
    failed: bool,
}

impl RecordSealer<'_> {
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let start = *self.open.get_or_insert_with(|| {
                self.out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
                self.out.len() - RECORD_HEADER_LEN
            });
            let fill = self.out.len() - start - RECORD_HEADER_LEN;
            let take = (MAX_RECORD_PLAINTEXT - fill).min(data.len());
            self.out.extend_from_slice(&data[..take]);
            data = &data[take..];
            if fill + take == MAX_RECORD_PLAINTEXT {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        let Some(start) = self.open.take() else {
            return;
        };
        let plain = self.out.len() - start - RECORD_HEADER_LEN;
        if self.keys.seal_at(self.out, start).is_err() {
            self.failed = true;
            return;
        }
        *self.sealed += plain;
        self.marks.push_back((self.out.len(), plain));
    }
}

impl Sealer<'_> {
    /// Appends plaintext to the batch.
    pub fn push(&mut self, data: &[u8]) {
        match self {
            Sealer::Records(r) => r.push(data),
            Sealer::Gather { gather, .. } => gather.extend_from_slice(data),
        }
    }

    /// Seals what is left of the batch.
    ///
    /// # Errors
    /// The session failed (close the connection).
    pub fn finish(self) -> Result<(), SecureError> {
        match self {
            Sealer::Records(mut r) => {
                r.close();
                if r.failed {
                    return Err(SecureError::Corrupt("cannot seal record".into()));
                }
                Ok(())
            }
            Sealer::Gather {
                session,
                wire,
                sealed,
                marks,
                gather,
            } => {
                for piece in gather.chunks(TLS_PIECE) {
                    session.send(piece, wire)?;
                    *sealed += piece.len();
                    marks.push_back((wire.len(), piece.len()));
                }
                if gather.capacity() > KEEP_CAPACITY {
                    *gather = Vec::new();
                }
                Ok(())
            }
        }
    }
}

/// Upper bound of the ciphertext for `plain` bytes in shared-key records.
pub fn sealed_len(plain: usize) -> usize {
    plain + plain.div_ceil(MAX_RECORD_PLAINTEXT) * (RECORD_HEADER_LEN + TAG_LEN)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
