//! What a [`SenderConn`](super::SenderConn) queues: frames waiting to be
//! written (or acked), sequence markers between them, and BATCH frames
//! compressed from runs of them.

use crate::wire::compress::Deflater;
use crate::wire::frame::{
    seq_marker, FrameHeader, FrameType, FLAG_COMPRESSED, FLAG_SEQ, HEADER_LEN,
};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Instant;

/// A frame waiting to be written (or acked).
pub(crate) struct Pending<T> {
    pub(crate) hdr: [u8; HEADER_LEN],
    pub(crate) payload: Bytes,
    pub(crate) id: u64,
    /// Sequence number on this member stream (first item's for a BATCH;
    /// the announced number for a marker).
    pub(crate) seq: u64,
    /// The outcome is decided by the receiver's ack.
    pub(crate) ack: bool,
    /// A sequence marker: bytes on the wire, no message, no outcome.
    pub(crate) marker: bool,
    pub(crate) attempts: u32,
    /// The message's outcome is due by then (enqueue + `ackTimeout`).
    pub(crate) deadline: Instant,
    pub(crate) token: T,
    /// To be compressed into a BATCH with its neighbours before writing.
    pub(crate) deflate: bool,
    /// Set on a BATCH entry: the messages it carries (payload uncompressed,
    /// kept for acks and resend). Boxed so that the common, unbatched entry
    /// stays one pointer wide here.
    #[allow(clippy::box_collection)]
    pub(crate) batch: Option<Box<Vec<Pending<T>>>>,
}

impl<T: Default> Pending<T> {
    /// A marker announcing that the next message on the wire has `seq`.
    pub(crate) fn marker(epoch: u64, seq: u64, deadline: Instant) -> Pending<T> {
        let payload = Bytes::copy_from_slice(&seq_marker(epoch, seq));
        Pending {
            hdr: FrameHeader::data(seq, payload.len(), FLAG_SEQ).encode(),
            payload,
            id: 0,
            seq,
            ack: false,
            marker: true,
            attempts: 0,
            deadline,
            token: T::default(),
            deflate: false,
            batch: None,
        }
    }
}

impl<T> Pending<T> {
    /// Bytes on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Messages this entry carries (0 for a marker).
    pub(crate) fn count(&self) -> u64 {
        if self.marker {
            0
        } else {
            self.batch.as_ref().map_or(1, |b| b.len() as u64)
        }
    }
}

/// Most messages and raw bytes per BATCH frame.
const MAX_BATCH_MSGS: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The messages of an entry: itself, or a BATCH's items, without
/// allocating in the common single case.
pub(crate) enum Items<T> {
    One(Option<Pending<T>>),
    Many(std::vec::IntoIter<Pending<T>>),
}

impl<T> Items<T> {
    pub(crate) fn of(mut p: Pending<T>) -> Items<T> {
        match p.batch.take() {
            Some(items) => Items::Many(items.into_iter()),
            None if p.marker => Items::One(None),
            None => Items::One(Some(p)),
        }
    }
}

impl<T> Iterator for Items<T> {
    type Item = Pending<T>;
    fn next(&mut self) -> Option<Pending<T>> {
        match self {
            Items::One(p) => p.take(),
            Items::Many(it) => it.next(),
        }
    }
}

/// An engine's compressor for BATCH frames, its state reused across
/// batches and members, and the scratch buffer a batch's frames are laid
/// out in before deflate.
pub struct Batcher {
    deflater: Deflater,
    scratch: Vec<u8>,
}

impl Batcher {
    /// A batcher compressing at `level` (`compressionLevel`).
    pub fn new(level: u32) -> Batcher {
        Batcher {
            deflater: Deflater::new(level),
            scratch: Vec::new(),
        }
    }
}

/// Compresses every run of to-be-deflated messages among the first
/// `window` entries of `pending` (from `start`) into BATCH frames: one
/// compressor reset per batch instead of one per message, and a dictionary
/// shared by the batch. Runs never cross a marker, so a BATCH's items have
/// consecutive sequence numbers. Returns how many entries were batched
/// (plus those found not worth it) and how many messages went compressed.
pub(crate) fn batch_window<T: Default>(
    pending: &mut VecDeque<Pending<T>>,
    start: usize,
    window: usize,
    b: &mut Batcher,
    max_frame: usize,
) -> (usize, usize) {
    let (mut consumed, mut compressed) = (0, 0);
    let mut k = start;
    while k < pending.len().min(window) {
        if !(pending[k].deflate && pending[k].batch.is_none()) {
            k += 1;
            continue;
        }
        let (mut end, mut raw) = (k, 0usize);
        while end < pending.len()
            && end - k < MAX_BATCH_MSGS
            && raw < MAX_BATCH_BYTES
            && pending[end].deflate
            && pending[end].batch.is_none()
        {
            raw += pending[end].wire_len();
            end += 1;
        }
        consumed += end - k;
        b.scratch.clear();
        for p in pending.range(k..end) {
            b.scratch.extend_from_slice(&p.hdr);
            b.scratch.extend_from_slice(&p.payload);
        }
        let z = match b.deflater.compress(&b.scratch) {
            Ok(z) if z.len() + HEADER_LEN < raw && z.len() <= max_frame => z,
            // Incompressible or too large: send the messages plain.
            _ => {
                for p in pending.range_mut(k..end) {
                    p.deflate = false;
                }
                k = end;
                continue;
            }
        };
        let items: Vec<Pending<T>> = pending.drain(k..end).collect();
        compressed += items.len();
        let (first, seq, deadline) = (items[0].id, items[0].seq, items[0].deadline);
        let hdr = FrameHeader {
            ty: FrameType::Batch,
            flags: FLAG_COMPRESSED,
            len: z.len() as u32,
            id: first,
        }
        .encode();
        pending.insert(
            k,
            Pending {
                hdr,
                payload: z,
                id: first,
                seq,
                ack: false,
                marker: false,
                attempts: 0,
                deadline,
                token: T::default(),
                deflate: false,
                batch: Some(Box::new(items)),
            },
        );
        k += 1;
    }
    (consumed, compressed)
}
