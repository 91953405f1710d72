//! The secure filter of a [`SenderConn`] (issue 12): in secure mode each
//! connection first runs the handshake (its messages are the only bytes
//! written until it completes, by `handshakeTimeout`), then every write
//! batch — preface, PINGs, frame headers and payloads — is sealed into
//! records, and replies are opened before they are decoded. The driver
//! writes what [`SenderConn::poll_transmit`] gives either way.

use super::{Action, SenderConn, State};
use crate::proto::secure::stream::SEAL_BATCH;
use crate::proto::secure::{SecureError, SecureStream};
use crate::wire::frame::HEADER_LEN;
use bytes::BytesMut;
use std::time::Instant;

impl<T: Default> SenderConn<T> {
    /// A new connection: a fresh secure session whose first handshake
    /// message is written before anything else.
    pub(super) fn secure_connecting(&mut self, now: Instant) {
        self.sealed_ctl = 0;
        self.handshake_deadline = None;
        let Some(ctx) = &self.secure_ctx else {
            return;
        };
        match SecureStream::connect(ctx, self.addr.ip()) {
            Ok(s) => self.secure = Some(Box::new(s)),
            Err(e) => self.close_broken(now, &format!("secure session: {e}")),
        }
    }

    /// The connection is gone: its session with it.
    pub(super) fn secure_closed(&mut self) {
        if self.state == State::Open && self.secure.as_ref().is_some_and(|s| !s.is_established()) {
            // Connected, but the member closed before proving the key.
            self.counters.secure_refusals += 1;
        }
        if self.secure_ctx.is_some() {
            self.secure = None;
            self.sealed_ctl = 0;
            self.handshake_deadline = None;
        }
    }

    /// True if the connection is secured and its handshake is done.
    pub fn is_secured(&self) -> bool {
        self.secure.as_ref().is_some_and(|s| s.is_established())
    }

    /// Secure mode: part of the front frames is sealed into records not
    /// fully written yet (they cannot be dropped from the queue).
    pub(super) fn frames_in_records(&self) -> bool {
        self.secure
            .as_deref()
            .is_some_and(|s| s.unsent_plain() > self.sealed_ctl)
    }

    /// Seals the next batch (control bytes, then up to `max` frames, at
    /// most [`SEAL_BATCH`] bytes) once the previous one is fully written.
    pub(super) fn seal_batch(&mut self, max: usize) {
        let Some(sec) = self.secure.as_deref_mut() else {
            return;
        };
        if !sec.pending().is_empty() || !sec.is_established() || self.state != State::Open {
            return;
        }
        let mut room = SEAL_BATCH;
        let mut seal = sec.sealer();
        let ctl = self.ctl.len().min(room);
        seal.push(&self.ctl[..ctl]);
        room -= ctl;
        self.sealed_ctl = ctl;
        for (k, p) in self.pending.iter().take(max).enumerate() {
            if room == 0 {
                break;
            }
            let skip = if k == 0 { self.head_off } else { 0 };
            let (hdr, body) = if skip < HEADER_LEN {
                (&p.hdr[skip..], &p.payload[..])
            } else {
                (&[][..], &p.payload[skip - HEADER_LEN..])
            };
            let h = hdr.len().min(room);
            seal.push(&hdr[..h]);
            room -= h;
            let b = body.len().min(room);
            seal.push(&body[..b]);
            room -= b;
        }
        if let Err(e) = seal.finish() {
            self.counters.secure_errors += 1;
            let now = self.last_activity;
            self.close_broken(now, &format!("secure: {e}"));
        }
    }

    /// Replies in secure mode: opened (the handshake answer verified
    /// first), then decoded as plaintext.
    pub(super) fn secure_replies(&mut self, now: Instant, buf: &mut BytesMut) {
        let Some(sec) = self.secure.as_deref_mut() else {
            buf.clear();
            return;
        };
        let r = sec.receive(buf);
        buf.clear();
        if let Err(e) = r {
            match e {
                SecureError::Refused(_) => self.counters.secure_refusals += 1,
                _ => self.counters.secure_errors += 1,
            }
            self.secure = None; // counted here, not again as an unfinished handshake
            return self.close_broken(now, &format!("secure: {e}"));
        }
        if sec.is_established() {
            self.handshake_deadline = None;
        }
        let mut plain = std::mem::take(sec.plain());
        self.decode_replies(now, &mut plain);
        if let Some(sec) = self.secure.as_deref_mut() {
            *sec.plain() = plain;
        }
    }

    /// The handshake deadline passed: the peer never proved the key
    /// (counted as a refusal when the connection closes).
    pub(super) fn secure_timeout(&mut self, now: Instant) {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.handshake_deadline = None;
            self.actions
                .push_back(Action::Close("secure handshake timed out".into()));
            self.handle_broken(now, "secure handshake timed out (handshakeTimeout)");
        }
    }
}
