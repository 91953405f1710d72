//! The receiver's fast path: a run of complete DATA frames at the front
//! of a read, decoded and delivered in one pass (one sequence check for
//! the run, no event per frame).

use super::{deliver, ConnCore, RxCore};
use crate::proto::FrameBuf;
use crate::transport::Message;
use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED, FLAG_SEQ};
use bytes::Bytes;

/// The most DATA frames [`RxCore::decode_clear`] takes as one run.
pub(super) const DATA_RUN: usize = crate::transport::MAX_DELIVERY_BATCH;

impl RxCore {
    /// The fast path of [`RxCore::decode_clear`]: a run of complete DATA
    /// frames (at most [`DATA_RUN`], not compressed, no sequence marker) is
    /// checked against the sequence filter once and delivered in one pass,
    /// with no event per frame. `None` if `buf` does not start with one.
    ///
    /// The bounds are checked after the run, not after each frame: a run's
    /// acks may take the output past `maxPendingAckBytes` by at most
    /// [`DATA_RUN`] acks, and a full worker queue holds at most the rest of
    /// the run in `stalled`. No frame of the run stays in `buf` once its
    /// number is claimed, so a connection closed afterwards loses none.
    #[inline]
    pub(super) fn data_run<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Option<u64> {
        let (n, len) = c.proto.data_run(buf, DATA_RUN, FLAG_COMPRESSED | FLAG_SEQ);
        if n == 0 {
            return None;
        }
        // One split for the run; its frames are then cut from it (the
        // last one is the rest of it, with no reference count touched).
        let mut run = buf.split_frame(len);
        self.frame_done(c);
        let fresh = c.seq.accept_run(n);
        // The per-message listener on this thread borrows one message
        // whose id and payload change from frame to frame.
        let single = self.workers.is_empty() && self.shared.batch.get().is_none();
        let mut msg = single.then(|| Message {
            from: c.from,
            peer: c.peer,
            member_id: c.member_id,
            id: 0,
            payload: Bytes::new(),
        });
        let mut delivered = 0u64;
        for i in 0..n {
            let Some((id, flags, payload)) = c.proto.take_data(&mut run) else {
                break; // cannot happen: `data_run` counted it
            };
            if !fresh.contains(&i) {
                Self::ack_duplicate(c, id, flags);
                continue;
            }
            delivered += 1;
            let Some(m) = msg.as_mut() else {
                self.on_data(token, c, id, flags, payload);
                continue;
            };
            m.id = id;
            m.payload = payload;
            self.deliver_here(c, m, flags);
        }
        Some(delivered)
    }

    /// Delivers `m` to the per-message listener on this thread, acking it
    /// on receipt or after delivery (or FAILing it) as `flags` ask.
    #[inline]
    pub(super) fn deliver_here(&self, c: &mut ConnCore, m: &Message, flags: u8) {
        if flags & FLAG_ACK_RECEIPT != 0 {
            c.proto.ack(m.id);
        }
        let r = deliver(&self.listener, m, &self.shared);
        if flags & FLAG_ACK_DELIVERY != 0 {
            match r {
                Ok(()) => c.proto.ack(m.id),
                Err(reason) => c.proto.fail(m.id, &reason),
            }
        }
    }
}
