//! The write path of a [`SenderConn`]: what to write next (control
//! bytes, then frames, compressed in runs and sealed in secure mode) and
//! what follows when the socket took bytes (a frame fully written is
//! tracked for its ack or ends as sent).

use super::pending::{batch_window, Items, Pending};
use super::{Batcher, Chunk, Delivery, SenderConn, State};
use crate::wire::frame::HEADER_LEN;
use std::time::Instant;

impl<T: Default> SenderConn<T> {
    /// True when there is something to write and room to write it. Frames
    /// wait for the receiver's reply preface (one round trip per
    /// connection): it says whether sequence markers may be written.
    #[inline]
    pub fn wants_write(&self) -> bool {
        if self.state != State::Open {
            return false;
        }
        // secure hook: only ciphertext leaves, and only after the handshake
        if let Some(s) = &self.secure {
            if !s.pending().is_empty() {
                return true;
            }
            if !s.is_established() {
                return false;
            }
        }
        !self.ctl.is_empty()
            || (self.proto.is_open()
                && !self.pending.is_empty()
                && self.inflight.len() < self.limits.window)
    }

    /// What to write next, at most `max_frames` frames after the control
    /// bytes: compresses runs first (with `b`), then returns the control
    /// bytes and the frames. Report what the socket took with
    /// [`handle_written`](Self::handle_written) before the next call.
    pub fn poll_transmit(
        &mut self,
        b: &mut Batcher,
        max_frames: usize,
    ) -> (&[u8], impl Iterator<Item = Chunk<'_>>) {
        // A full window holds frames back (control bytes still go), and so
        // does a receiver that has not answered the preface yet.
        let max = if self.proto.is_open() {
            max_frames.min(self.limits.window.saturating_sub(self.inflight.len()))
        } else {
            0
        };
        if self.to_deflate > 0 {
            let start = usize::from(self.head_off > 0);
            let (done, z) =
                batch_window(&mut self.pending, start, max, b, self.limits.max_frame_size);
            self.to_deflate = self.to_deflate.saturating_sub(done);
            self.counters.compressed += z as u64;
        }
        // secure hook: the batch is sealed, the driver writes ciphertext
        let secure = self.secure.is_some();
        if secure {
            self.seal_batch(max);
            if let Some(s) = self.secure.as_deref_mut() {
                s.share_pending();
            }
        }
        let head_off = self.head_off;
        let frames = self
            .pending
            .iter()
            .take(if secure { 0 } else { max })
            .enumerate()
            .map(move |(k, p)| {
                let skip = if k == 0 { head_off } else { 0 };
                if skip < HEADER_LEN {
                    Chunk {
                        hdr: &p.hdr[skip..],
                        payload: &p.payload,
                        skip: 0,
                    }
                } else {
                    Chunk {
                        hdr: &[],
                        payload: &p.payload,
                        skip: skip - HEADER_LEN,
                    }
                }
            });
        // Secure mode: the sealed batch goes as one shared frame body, so
        // a driver that keeps what it sends (io_uring) does not copy it.
        let (out, sealed) = match &self.secure {
            Some(s) => (
                &[][..],
                s.pending_shared().map(|(b, skip)| Chunk {
                    hdr: &[],
                    payload: b,
                    skip,
                }),
            ),
            None => (&self.ctl[..], None),
        };
        (out, frames.chain(sealed))
    }

    /// The socket took `written` bytes of what
    /// [`poll_transmit`](Self::poll_transmit) offered: control bytes
    /// first, then frames; a frame fully written is tracked for its ack or
    /// ends as [`Delivery::Sent`].
    pub fn handle_written(&mut self, now: Instant, written: usize) {
        self.last_activity = now;
        if written > 0 {
            self.last_progress = now;
        }
        // secure hook: plaintext counts once the records holding it are
        // out (the batch's control bytes first, then its frames)
        let (ctl, written) = match self.secure.as_deref_mut() {
            Some(s) => {
                let plain = s.written(written);
                if plain == 0 {
                    return;
                }
                let ctl = self.sealed_ctl.min(plain);
                self.sealed_ctl -= ctl;
                (ctl, plain - ctl)
            }
            None => {
                let ctl = written.min(self.ctl.len());
                (ctl, written - ctl)
            }
        };
        self.advance_written(ctl, written);
    }

    /// `ctl` control bytes and then `written` frame bytes went out.
    fn advance_written(&mut self, ctl: usize, mut written: usize) {
        self.ctl.drain(..ctl);
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while written > 0 {
            let Some(p) = self.pending.front() else { break };
            let size = p.wire_len();
            let left = size - self.head_off;
            if written < left {
                self.head_off += written;
                break;
            }
            written -= left;
            self.head_off = 0;
            let p = self.pending.pop_front().expect("front exists");
            bytes += size as u64;
            self.wire_expect = Some(p.seq + p.count());
            if p.marker {
                self.markers -= 1;
            } else if p.batch.is_none() {
                // The common entry: one message, handled in place (no
                // iterator over a batch, no further moves of the entry).
                msgs += 1;
                self.item_written(p);
            } else {
                for p in Items::of(p) {
                    msgs += 1;
                    self.item_written(p);
                }
            }
        }
        if self.pending.is_empty() {
            // Back to the start of the ring: the next messages land in
            // memory written moments ago, not capacity entries ago.
            self.pending.clear();
            self.tail_expect = self.wire_expect;
            self.stalled = false;
        }
        self.sent_on_conn += msgs;
        self.counters.msgs_sent += msgs;
        self.counters.bytes_sent += bytes;
    }

    /// One message fully written: tracked for its ack, or ended as sent.
    #[inline]
    fn item_written(&mut self, p: Pending<T>) {
        if p.ack {
            self.inflight.track(p.id, p.deadline, p);
        } else if self.quiet.is_some_and(|q| q(&p.token)) {
            self.quiet_sent += 1;
        } else {
            let Pending { id, token, .. } = p;
            self.outcomes.push_back((id, token, Ok(Delivery::Sent)));
        }
    }
}
