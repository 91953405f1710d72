//! The accepting side of a native connection: preface exchange, frames in,
//! acks and keepalive answers out.

use super::decoder::{Frame, FrameBuf, FrameDecoder};
use super::secure::{SecureError, SecureStream};
use crate::error::{Error, Result};
use crate::wire::frame::{put_reason_frame, AckBatch, FrameHeader, FrameType};
use crate::wire::preface::Preface;
use bytes::BytesMut;

/// What the connection produced.
#[derive(Debug)]
pub enum InEvent {
    /// The peer's preface arrived and was accepted; our answer is queued.
    Open(Preface),
    /// A DATA frame.
    Data(Frame),
    /// A BATCH frame (deflated run of DATA frames; see
    /// `wire::frame::batch_frames`).
    Batch(Frame),
    /// The peer is closing, with a reason.
    GoAway(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitPreface,
    Open,
}

/// Accepting side of one connection.
#[derive(Debug)]
pub struct InboundConn {
    state: State,
    dec: FrameDecoder,
    local: Preface,
    /// Peer's preface once open.
    pub peer: Option<Preface>,
    acks: AckBatch,
    out: Vec<u8>,
    /// Secure mode: the connection's secure filter (records in and out).
    secure: Option<Box<SecureStream>>,
}

impl InboundConn {
    /// A connection that answers with `local` and accepts DATA payloads up
    /// to `max_frame` bytes.
    pub fn new(local: Preface, max_frame: usize) -> Self {
        InboundConn {
            state: State::AwaitPreface,
            dec: FrameDecoder::new(max_frame),
            local,
            peer: None,
            acks: AckBatch::default(),
            out: Vec::new(),
            secure: None,
        }
    }

    /// Runs the connection through `s`: the bytes given to
    /// [`InboundConn::open_secure`] are opened, and output is sealed.
    pub fn set_secure(&mut self, s: SecureStream) {
        self.secure = Some(Box::new(s));
    }

    /// True in secure mode once the secure handshake completed.
    pub fn secure_established(&self) -> bool {
        self.secure.as_ref().is_some_and(|s| s.is_established())
    }

    /// The secure filter, in secure mode.
    pub fn secure_stream(&mut self) -> Option<&mut SecureStream> {
        self.secure.as_deref_mut()
    }

    /// True in secure mode.
    pub fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// Secure mode: bytes read from the socket, all taken; the plaintext
    /// waits for [`InboundConn::take_plain`].
    ///
    /// # Errors
    /// See [`SecureError`]: close the connection.
    pub fn open_secure(&mut self, input: &[u8]) -> std::result::Result<(), SecureError> {
        match self.secure.as_deref_mut() {
            Some(s) => s.receive(input),
            None => Ok(()),
        }
    }

    /// Secure mode: the plaintext opened so far, to decode with
    /// [`InboundConn::poll`]; give the rest back with
    /// [`InboundConn::put_plain`].
    pub fn take_plain(&mut self) -> BytesMut {
        self.secure
            .as_deref_mut()
            .map(|s| std::mem::take(s.plain()))
            .unwrap_or_default()
    }

    /// See [`InboundConn::take_plain`].
    pub fn put_plain(&mut self, b: BytesMut) {
        if let Some(s) = self.secure.as_deref_mut() {
            *s.plain() = b;
        }
    }

    /// Bytes still needed for the frame in progress.
    pub fn wanted(&self, buf: &BytesMut) -> usize {
        match &self.secure {
            Some(_) => self.dec.wanted_after(0),
            None => self.dec.wanted(buf),
        }
    }

    /// True once the peer's preface was accepted.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Bytes still needed for the frame in progress given `buffered` bytes
    /// (0 if unknown).
    pub fn wanted_after(&self, buffered: usize) -> usize {
        self.dec.wanted_after(buffered)
    }

    /// Consumes bytes from the front of `buf` and returns the next event.
    ///
    /// # Errors
    /// Any protocol violation; the connection must be closed.
    #[inline(always)]
    pub fn poll<B: FrameBuf>(&mut self, buf: &mut B) -> Result<Option<InEvent>> {
        // The hot path (a DATA frame on an open connection) stays inline in
        // the caller's decode loop; the rest is out of line.
        if self.state == State::Open {
            match self.dec.decode(buf)? {
                Some(f) if f.header.ty == FrameType::Data => return Ok(Some(InEvent::Data(f))),
                Some(f) => {
                    if let Some(ev) = self.control(f)? {
                        return Ok(Some(ev));
                    }
                }
                None => return Ok(None),
            }
        }
        self.poll_general(buf)
    }

    /// How many complete DATA frames without any of the `exclude` flags
    /// start `buf` on an open connection (at most `max`; none before the
    /// preface or while a frame is in progress), and their length in
    /// bytes: a run the caller takes with [`InboundConn::take_data`] in
    /// one pass, instead of one [`InboundConn::poll`] event each.
    #[inline]
    pub fn data_run(&self, buf: &[u8], max: usize, exclude: u8) -> (usize, usize) {
        if self.state != State::Open {
            return (0, 0);
        }
        self.dec.data_run(buf, max, exclude)
    }

    /// Takes the next frame of a run counted by [`InboundConn::data_run`]
    /// as `(id, flags, payload)`; `None` if `buf` does not start with a
    /// complete DATA frame.
    #[inline(always)]
    pub fn take_data<B: FrameBuf>(&mut self, buf: &mut B) -> Option<(u64, u8, bytes::Bytes)> {
        if self.state != State::Open {
            return None;
        }
        self.dec.take_data(buf)
    }

    /// [`InboundConn::poll`] for the preface and for control frames.
    #[inline(never)]
    fn poll_general<B: FrameBuf>(&mut self, buf: &mut B) -> Result<Option<InEvent>> {
        loop {
            match self.state {
                State::AwaitPreface => {
                    let Some((p, n)) = Preface::decode(buf)? else {
                        return Ok(None);
                    };
                    if p.reply {
                        return Err(Error::Protocol("reply preface from a client".into()));
                    }
                    if !self.local.domain.is_empty() && p.domain != self.local.domain {
                        return Err(Error::Protocol(format!(
                            "cluster domain '{}' refused",
                            String::from_utf8_lossy(&p.domain)
                        )));
                    }
                    buf.skip(n);
                    self.out.extend_from_slice(&self.local.encode());
                    self.state = State::Open;
                    self.peer = Some(p.clone());
                    return Ok(Some(InEvent::Open(p)));
                }
                State::Open => {
                    let Some(f) = self.dec.decode(buf)? else {
                        return Ok(None);
                    };
                    if let Some(ev) = self.control(f)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// A frame on an open connection: DATA and BATCH are events, a PING is
    /// answered here (`None`), the rest ends the connection or is ignored.
    #[inline(never)]
    fn control(&mut self, f: Frame) -> Result<Option<InEvent>> {
        match f.header.ty {
            FrameType::Data => Ok(Some(InEvent::Data(f))),
            FrameType::Batch => Ok(Some(InEvent::Batch(f))),
            FrameType::Ping => {
                let h = FrameHeader {
                    ty: FrameType::Pong,
                    flags: 0,
                    len: 0,
                    id: f.header.id,
                };
                self.out.extend_from_slice(&h.encode());
                Ok(None)
            }
            FrameType::Pong => Ok(None),
            FrameType::GoAway => Ok(Some(InEvent::GoAway(
                String::from_utf8_lossy(&f.payload).into_owned(),
            ))),
            FrameType::Ack | FrameType::Fail => Err(Error::Protocol(format!(
                "{:?} frame sent to a receiver",
                f.header.ty
            ))),
        }
    }

    /// Acknowledges a message (batched until [`InboundConn::take_output`]).
    #[inline]
    pub fn ack(&mut self, id: u64) {
        self.acks.push(id);
    }

    /// Reports a failed delivery; pending acks go first to keep order.
    pub fn fail(&mut self, id: u64, reason: &str) {
        self.acks.flush_into(&mut self.out);
        put_reason_frame(&mut self.out, FrameType::Fail, id, reason);
    }

    /// Queues bytes to write as they are (a Tribes-dialect connection's
    /// 21-byte ACK frames use the same output path as native acks).
    pub fn push_raw(&mut self, b: &[u8]) {
        self.acks.flush_into(&mut self.out);
        self.out.extend_from_slice(b);
    }

    /// Bytes waiting to be written (batched acks counted as encoded): what
    /// the per-connection output bound (`maxPendingAckBytes`) measures.
    pub fn pending_output(&self) -> usize {
        let sealed = self.secure.as_ref().map_or(0, |s| s.pending().len());
        self.out.len() + self.acks.encoded_len() + sealed
    }

    /// The payload length of a frame whose header arrived and whose
    /// payload has not fully arrived yet.
    pub fn frame_in_progress(&self) -> Option<usize> {
        self.dec.frame_in_progress()
    }

    /// True if acks or other bytes are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
            || !self.acks.is_empty()
            || self
                .secure
                .as_ref()
                .is_some_and(|s| !s.pending().is_empty())
    }

    /// Flushes batched acks and returns the bytes to write (in secure
    /// mode: sealed into records, after any handshake bytes). The caller
    /// removes what it wrote with `drain(..n)`.
    pub fn take_output(&mut self) -> &mut Vec<u8> {
        self.acks.flush_into(&mut self.out);
        // secure hook: only records leave a secured connection
        let Some(s) = self.secure.as_deref_mut() else {
            return &mut self.out;
        };
        if s.is_established() && !self.out.is_empty() {
            let mut seal = s.sealer();
            seal.push(&self.out);
            if seal.finish().is_ok() {
                self.out.clear();
            }
        }
        s.pending_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::outbound::{OutboundConn, Reply};
    use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT};

    fn data(id: u64, flags: u8, p: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader::data(id, p.len(), flags).encode().to_vec();
        v.extend_from_slice(p);
        v
    }

    #[test]
    fn handshake_data_acks_and_fail_reach_the_sender_in_order() {
        let mut rx = InboundConn::new(Preface::new([2; 16], b"d", true), 1 << 20);
        let mut tx = OutboundConn::new(b"d".to_vec());
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&Preface::new([1; 16], b"d", false).encode());
        for id in 1..=4 {
            wire.extend_from_slice(&data(id, FLAG_ACK_DELIVERY, b"x"));
        }
        wire.extend_from_slice(&data(5, FLAG_ACK_RECEIPT, b"y"));
        let mut ids = Vec::new();
        while let Some(ev) = rx.poll(&mut wire).unwrap() {
            match ev {
                InEvent::Open(p) => assert_eq!(p.member_id, [1; 16]),
                InEvent::Data(f) => {
                    ids.push(f.header.id);
                    if f.header.id == 3 {
                        rx.fail(3, "listener refused");
                    } else {
                        rx.ack(f.header.id);
                    }
                }
                InEvent::GoAway(_) | InEvent::Batch(_) => unreachable!(),
            }
        }
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let mut back = BytesMut::from(&rx.take_output()[..]);
        let mut replies = Vec::new();
        while let Some(r) = tx.poll(&mut back).unwrap() {
            replies.push(r);
        }
        assert!(matches!(&replies[0], Reply::Preface(p) if p.member_id == [2; 16]));
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        for r in &replies[1..] {
            match r {
                Reply::Ack(p) => acked
                    .extend(crate::wire::frame::ack_ranges(p).flat_map(|(f, n)| f..f + n as u64)),
                Reply::Fail { id, reason } => failed.push((*id, reason.clone())),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(acked, vec![1, 2, 4, 5]);
        assert_eq!(failed, vec![(3, "listener refused".to_string())]);
    }

    #[test]
    fn foreign_domain_and_garbage_are_refused() {
        let mut rx = InboundConn::new(Preface::new([2; 16], b"a", true), 1024);
        let mut w = BytesMut::from(&Preface::new([1; 16], b"b", false).encode()[..]);
        assert!(rx.poll(&mut w).is_err());
        let mut rx = InboundConn::new(Preface::new([2; 16], b"", true), 1024);
        let mut w = BytesMut::from(&b"\x16\x03\x01 hello tls"[..]);
        assert!(rx.poll(&mut w).is_err());
    }
}
