//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`) whose buffers are
//! lent to the receiver as zero-copy `Bytes`.
//!
//! When the kernel fills buffer `bid`, that buffer leaves its slot and
//! becomes the owner of a `Bytes`; the slot is refilled at once from the
//! buffers that came back (a lent buffer returns when its last slice
//! drops, on whatever thread) or from a fresh allocation up to a memory
//! cap. So a listener that keeps payloads does not starve the ring until
//! the cap is reached; past it the slot stays empty, multishot receives end
//! with `ENOBUFS`, and the receiver falls back to plain receives until
//! buffers come back.

use super::ring::Ring;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use io_uring::types::BufRingEntry;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// A buffer on loan to a `Bytes`; goes home when dropped.
struct Lent {
    buf: Option<Box<[u8]>>,
    len: usize,
    home: Arc<ArrayQueue<Box<[u8]>>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[..self.len],
            None => &[],
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            // A full home queue (the ring is gone or over-supplied) frees it.
            let _ = self.home.push(b);
        }
    }
}

/// `IOU_PBUF_RING_INC` (6.12): buffers are consumed incrementally.
const PBUF_RING_INC: u16 = 2;
/// `IORING_CQE_F_BUF_MORE`: the kernel keeps filling this buffer.
const CQE_F_BUF_MORE: u32 = 1 << 4;

/// A chunk the kernel filled, as zero-copy `Bytes`.
pub struct Filled {
    /// The bytes received.
    pub chunk: Bytes,
    /// In incremental mode, a view of the whole buffer the chunk lies in:
    /// the next chunk of the same connection may continue right after
    /// this one in it, and [`Filled::join`] can then make one slice of
    /// both without a copy. Crate-private: the kernel may still be writing
    /// into the rest of that buffer, so only the receiver, which knows
    /// where the kernel stopped, may look at it.
    pub(crate) buffer: Option<Bytes>,
}

impl Filled {
    /// One slice covering `head` followed by `next`, when both lie back to
    /// back inside `buffer` (the view `head` came with).
    pub fn join(head: &Bytes, buffer: &Bytes, next: &Bytes) -> Option<Bytes> {
        crate::driver::join_adjacent(head, buffer, next)
    }
}

/// A registered ring of provided buffers.
pub struct BufRing {
    group: u16,
    mask: u16,
    mem: memmap2::MmapMut,
    tail: u16,
    buf_size: usize,
    slots: Vec<Option<Box<[u8]>>>,
    empty: Vec<u16>,
    home: Arc<ArrayQueue<Box<[u8]>>>,
    /// Returned buffers taken from `home`, the last returned on top.
    spare: Vec<Box<[u8]>>,
    allocated: usize,
    max_buffers: usize,
    provided: usize,
    /// Incremental consumption registered.
    inc: bool,
    /// Per buffer id in incremental mode: the view of the buffer being
    /// filled and how far the kernel got.
    filling: Vec<Option<(Bytes, usize)>>,
}

impl BufRing {
    /// Registers group `group` with `entries` (a power of two ≤ 32768)
    /// buffers of `buf_size` bytes, allocating up to `max_buffers` buffers
    /// in all over its life (lent ones included).
    ///
    /// # Errors
    /// Registration failures (kernels before 5.19).
    pub fn new(
        ring: &Ring,
        group: u16,
        entries: u16,
        buf_size: usize,
        max_buffers: usize,
    ) -> io::Result<BufRing> {
        Self::with_mode(ring, group, entries, buf_size, max_buffers, false)
    }

    /// As [`BufRing::new`]; with `incremental`, asks for incremental
    /// consumption (kernel 6.12+: one large buffer takes several receives
    /// back to back) and falls back to whole-buffer mode where refused.
    ///
    /// # Errors
    /// Registration failures (kernels before 5.19).
    pub fn with_mode(
        ring: &Ring,
        group: u16,
        entries: u16,
        buf_size: usize,
        max_buffers: usize,
        incremental: bool,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let mem = memmap2::MmapMut::map_anon(bytes.max(4096))?;
        let register = |flags: u16| {
            // SAFETY: `mem` is page-aligned memory of `entries` ring entries
            // that this value owns; it outlives the registration: the
            // receiver declares its ring before its buffer ring, so the ring
            // is drained and closed (releasing the registration) first.
            unsafe {
                ring.raw().submitter().register_buf_ring_with_flags(
                    mem.as_ptr() as u64,
                    entries,
                    group,
                    flags,
                )
            }
        };
        let mut inc = false;
        if incremental && register(PBUF_RING_INC).is_ok() {
            inc = true;
        } else {
            register(0)?;
        }
        let mut b = BufRing {
            group,
            mask: entries - 1,
            mem,
            tail: 0,
            buf_size,
            slots: (0..entries).map(|_| None).collect(),
            empty: (0..entries).rev().collect(),
            home: Arc::new(ArrayQueue::new(max_buffers.max(entries as usize))),
            spare: Vec::new(),
            allocated: 0,
            max_buffers: max_buffers.max(entries as usize),
            provided: 0,
            inc,
            filling: (0..entries).map(|_| None).collect(),
        };
        b.replenish();
        Ok(b)
    }

    /// The buffer group id for `RecvMulti`.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Buffers the kernel can fill now.
    pub fn provided(&self) -> usize {
        self.provided
    }

    /// Buffers allocated so far (provided, lent or idle).
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The buffer returned last (its memory is the likeliest still in
    /// cache), else a new one within the cap. Returned buffers queue up
    /// oldest first in `home`; taking them from there in that order would
    /// rotate every buffer ever allocated, so the receive copy would land
    /// in memory written longest ago.
    fn next_buffer(&mut self) -> Option<Box<[u8]>> {
        while let Some(b) = self.home.pop() {
            self.spare.push(b);
        }
        if let Some(b) = self.spare.pop() {
            return Some(b);
        }
        if self.allocated < self.max_buffers {
            self.allocated += 1;
            return Some(vec![0u8; self.buf_size].into_boxed_slice());
        }
        None
    }

    /// Refills empty slots from returned or new buffers. Returns how many
    /// buffers were handed to the kernel.
    pub fn replenish(&mut self) -> usize {
        let mut n = 0;
        while let Some(&bid) = self.empty.last() {
            let Some(buf) = self.next_buffer() else { break };
            self.empty.pop();
            self.provide(bid, buf);
            n += 1;
        }
        if n > 0 {
            self.publish();
        }
        n
    }

    fn provide(&mut self, bid: u16, buf: Box<[u8]>) {
        let idx = (self.tail & self.mask) as usize;
        let base = self.mem.as_mut_ptr() as *mut BufRingEntry;
        // SAFETY: `idx < entries`, so the entry lies inside `mem`; the
        // kernel only reads entries between its head and our published
        // tail, and this one is beyond the tail until `publish`.
        let e = unsafe { &mut *base.add(idx) };
        e.set_addr(buf.as_ptr() as u64);
        e.set_len(buf.len() as u32);
        e.set_bid(bid);
        self.slots[bid as usize] = Some(buf);
        self.tail = self.tail.wrapping_add(1);
        self.provided += 1;
    }

    fn publish(&mut self) {
        let base = self.mem.as_ptr() as *const BufRingEntry;
        // SAFETY: the tail field lives in the first entry, inside `mem`,
        // is 2-byte aligned, and is only written by us; the kernel reads
        // it atomically, so we store it atomically with release ordering
        // after the entries it covers.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(base) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// True if buffers are consumed incrementally.
    pub fn incremental(&self) -> bool {
        self.inc
    }

    /// The chunk a receive completion with `flags` put in buffer `bid`
    /// (`len` bytes). In whole-buffer mode the buffer leaves the ring;
    /// in incremental mode it leaves once the kernel is done with it.
    pub fn filled(&mut self, bid: u16, len: usize, flags: u32) -> Option<Filled> {
        if !self.inc {
            return self.take(bid, len).map(|chunk| Filled {
                chunk,
                buffer: None,
            });
        }
        let more = flags & CQE_F_BUF_MORE != 0;
        let slot = self.filling.get_mut(bid as usize)?;
        if slot.is_none() {
            let buf = self.slots.get_mut(bid as usize)?.take()?;
            let size = buf.len();
            let view = Bytes::from_owner(Lent {
                buf: Some(buf),
                len: size,
                home: self.home.clone(),
            });
            *slot = Some((view, 0));
        }
        let (view, off) = slot.as_mut()?;
        let start = *off;
        let end = (start + len).min(view.len());
        *off = end;
        let f = Filled {
            chunk: view.slice(start..end),
            buffer: Some(view.clone()),
        };
        if !more {
            // The kernel moved on: refill the slot.
            *slot = None;
            self.provided -= 1;
            self.empty.push(bid);
            self.replenish();
        }
        Some(f)
    }

    /// Takes buffer `bid`, which the kernel filled with `len` bytes, as a
    /// zero-copy `Bytes`; its slot is refilled when a buffer is available.
    pub fn take(&mut self, bid: u16, len: usize) -> Option<Bytes> {
        let buf = self.slots.get_mut(bid as usize)?.take()?;
        self.provided -= 1;
        self.empty.push(bid);
        self.replenish();
        Some(Bytes::from_owner(Lent {
            buf: Some(buf),
            len: len.min(self.buf_size),
            home: self.home.clone(),
        }))
    }
}
