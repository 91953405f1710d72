//! Pooled memory for payloads a caller hands over by reference (a C
//! pointer, a Java array): each is copied once into a shared chunk and cut
//! off as a [`Bytes`] (a reference count on the chunk, not an allocation).
//!
//! Why: a copy per message into its own allocation (`Bytes::copy_from_slice`)
//! costs a `malloc` on the caller's thread and a `free` on the I/O thread
//! that sent it (glibc's cross-thread consolidation); in the S1 profile of
//! that path both together cost more than the engine's own work per 1 KiB
//! message.
//!
//! Each channel keeps one chunk of [`CHUNK`] bytes. A message is written at
//! its end and split off. When the chunk is full it is kept, and a kept
//! chunk whose messages have all been dropped (sent) is taken back; only
//! when none is free is a new chunk allocated. Free chunks up to
//! `sendPoolKeepBytes` stay kept (more are freed on the next fills), and at most
//! [`MAX_KEPT`] chunks in all (a chunk beyond it is freed with its last
//! message). In a steady stream no memory is allocated or freed at all. A
//! payload over [`OWN`] bytes gets an allocation of its own, and so does a
//! copy made while another thread holds the chunk (never a wait on a lock).
//!
//! Why keep chunks: freeing each full chunk on the I/O thread that sent its
//! last message returned the memory to glibc, which trimmed it (`madvise`)
//! and the next chunk faulted its pages in again on the caller's thread: in
//! the S8 profile (Java `send`, 1 KiB) page faults were about a third of
//! the sending thread's time.
//!
//! Bound: a queued message keeps its whole chunk alive, so the memory
//! behind queued messages is at most the queued messages' count times
//! [`CHUNK`] (the send queues bound the count), plus the open chunk and
//! `sendPoolKeepBytes` of free ones.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::Mutex;

/// Bytes per pooled chunk: below glibc's mmap threshold (128 KiB), so a new
/// chunk comes from the heap's free memory. At 256 KiB every chunk was a
/// fresh mmap, its pages faulted in on the sending thread and unmapped on
/// the I/O thread; 64 KiB was faster in each of three interleaved S8 runs.
pub const CHUNK: usize = 64 * 1024;
/// A payload larger than this gets its own allocation (a chunk holds at
/// least four messages, and a large message does not pin a chunk).
pub const OWN: usize = 16 * 1024;

/// Chunks a channel keeps in all (free, or holding messages not yet sent).
pub const MAX_KEPT: usize = 1024;
/// Kept chunks looked at per fill, oldest first.
const SCAN: usize = 4;

/// A channel's pooled send memory.
#[derive(Default)]
pub struct Intake(Mutex<Chunks>);

impl Intake {
    /// Pooled memory that keeps up to `keep_bytes` of free chunks for reuse
    /// (`sendPoolKeepBytes`).
    pub fn new(keep_bytes: usize) -> Intake {
        Intake(Mutex::new(Chunks {
            spares: keep_bytes / CHUNK,
            ..Chunks::default()
        }))
    }
}

/// The open chunk and the full ones kept for reuse.
#[derive(Default)]
struct Chunks {
    /// Written at its end; what is written is split off at once, so it is
    /// always empty (its spare capacity is the chunk's free room).
    open: BytesMut,
    /// Full chunks, oldest first: each an empty view that keeps its chunk
    /// alive and takes it back whole once no message holds it.
    full: VecDeque<BytesMut>,
    /// Free chunks kept at most.
    spares: usize,
    /// `open` is a chunk (before the first copy it is an empty view of
    /// none, not kept).
    started: bool,
}

impl Chunks {
    /// Makes room for `len` bytes (at most [`OWN`]) in the open chunk.
    fn room(&mut self, len: usize) {
        if self.open.capacity() >= len {
            return;
        }
        let old = std::mem::take(&mut self.open);
        if std::mem::replace(&mut self.started, true) {
            self.full.push_back(old);
        }
        let mut found = None;
        for _ in 0..self.full.len().min(SCAN) {
            let Some(mut c) = self.full.pop_front() else {
                break;
            };
            if c.try_reclaim(CHUNK) {
                if found.is_none() {
                    found = Some(c);
                } else if self.full.len() < self.spares {
                    self.full.push_back(c);
                }
            } else if self.full.len() < MAX_KEPT {
                // Still holding messages: looked at again later.
                self.full.push_back(c);
            }
        }
        self.open = found.unwrap_or_else(|| BytesMut::with_capacity(CHUNK));
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

impl Intake {
    /// `len` bytes written by `fill`, in pooled memory.
    ///
    /// `fill` must write all of the slice it is given (exactly `len`
    /// elements) or fail; on failure nothing is kept.
    ///
    /// # Errors
    /// Whatever `fill` returns.
    pub fn copy_with<E>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        // Large payloads, and a copy while another thread is copying (or
        // after a copy panicked), get their own allocation: never a wait.
        let pooled = if len <= OWN {
            self.0.try_lock().ok()
        } else {
            None
        };
        let Some(mut b) = pooled else {
            let mut v: Vec<u8> = Vec::with_capacity(len);
            fill(&mut v.spare_capacity_mut()[..len])?;
            // SAFETY: `fill` returned Ok, so it wrote all `len` bytes.
            unsafe { v.set_len(len) };
            return Ok(Bytes::from(v));
        };
        b.room(len);
        let b = &mut b.open;
        debug_assert!(b.is_empty());
        fill(&mut b.spare_capacity_mut()[..len])?;
        // SAFETY: `fill` returned Ok, so it wrote the `len` bytes at the
        // start of the (empty) open chunk's free room.
        unsafe { b.set_len(len) };
        Ok(b.split().freeze())
    }

    /// A copy of `src` in pooled memory.
    pub fn copy(&self, src: &[u8]) -> Bytes {
        let r: Result<Bytes, std::convert::Infallible> = self.copy_with(src.len(), |out| {
            // SAFETY: MaybeUninit<u8> has u8's layout; `out` is exactly as
            // long as `src` (`copy_with` hands the length asked for), and
            // `src`, borrowed shared, cannot overlap the pool's memory,
            // which is written only here under the lock.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    out.as_mut_ptr().cast::<u8>(),
                    src.len(),
                )
            };
            Ok(())
        });
        match r {
            Ok(b) => b,
            Err(e) => match e {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_their_bytes_while_the_chunk_is_reused_and_replaced() {
        let pool = Intake::default();
        let mut kept = Vec::new();
        // Far more than one chunk, with every tenth copy kept alive (so some
        // chunks cannot be taken back) and the rest dropped at once.
        for i in 0..5_000u32 {
            let data: Vec<u8> = (0..(i % 2_000) as usize)
                .map(|j| (j as u32 ^ i) as u8)
                .collect();
            let b = pool.copy(&data);
            assert_eq!(&b[..], &data[..]);
            if i % 10 == 0 {
                kept.push((b, data));
            }
        }
        for (b, data) in &kept {
            assert_eq!(&b[..], &data[..]);
        }
    }

    #[test]
    fn a_chunk_whose_messages_were_all_sent_is_taken_back() {
        let pool = Intake::default();
        let first = pool.copy(&[1; 1000]);
        let at = first.as_ptr() as usize;
        drop(first);
        let mut last = Bytes::new();
        for _ in 0..(CHUNK / 1000 + 1) {
            // Sent (dropped) before the next is copied, so when the chunk
            // fills up no message still holds it.
            drop(std::mem::take(&mut last));
            last = pool.copy(&[2; 1000]);
        }
        assert!(
            (at..at + CHUNK).contains(&(last.as_ptr() as usize)),
            "the chunk was taken back"
        );
        // A held message keeps its chunk: the next chunk is other memory.
        let held = pool.copy(&[3; 1000]);
        let mut next = Bytes::new();
        for _ in 0..(CHUNK / 1000 + 1) {
            next = pool.copy(&[4; 1000]);
        }
        assert_eq!(&held[..], &[3; 1000][..]);
        assert!(!(at..at + CHUNK).contains(&(next.as_ptr() as usize)));
    }

    #[test]
    fn a_kept_chunk_is_taken_back_once_its_last_message_is_sent() {
        let pool = Intake::default();
        let in_chunk = |b: &Bytes, at: usize| (at..at + CHUNK).contains(&(b.as_ptr() as usize));
        // Chunk A, one of its messages held past the end of A.
        let held = pool.copy(&[1; 1000]);
        let a = held.as_ptr() as usize;
        let mut last = Bytes::new();
        while last.is_empty() || in_chunk(&last, a) {
            last = pool.copy(&[2; 1000]);
        }
        // Now in chunk B. A's last message is sent; B fills up.
        let b = last.as_ptr() as usize;
        drop(held);
        while in_chunk(&last, b) {
            drop(std::mem::take(&mut last));
            last = pool.copy(&[3; 1000]);
        }
        assert!(in_chunk(&last, a), "the oldest free chunk (A) is reused");
        assert_eq!(&last[..], &[3; 1000][..]);
    }

    /// Copies `chunks` chunks' worth of `OWN`-byte messages.
    fn fill(pool: &Intake, chunks: usize) -> Vec<Bytes> {
        (0..chunks * CHUNK / OWN)
            .map(|i| pool.copy(&[i as u8; OWN]))
            .collect()
    }

    #[test]
    fn chunks_kept_are_bounded_in_all_and_when_free() {
        const SPARES: usize = 100;
        let pool = Intake::new(SPARES * CHUNK);
        let kept = || pool.0.lock().unwrap().full.len();
        // Every message held: no chunk can be taken back.
        let first = pool.copy(&[9; 10]);
        assert_eq!(
            kept(),
            0,
            "the empty view before the first chunk is not kept"
        );
        drop(first);
        let held = fill(&pool, MAX_KEPT + 8);
        assert!(kept() <= MAX_KEPT, "{} chunks kept", kept());
        assert!(held
            .iter()
            .enumerate()
            .all(|(i, b)| b[..] == [i as u8; OWN][..]));
        drop(held);
        // All free now: reused one per fill, and the free ones beyond
        // SPARES released a few per fill.
        for _ in 0..MAX_KEPT {
            drop(fill(&pool, 1));
        }
        assert!(kept() <= SPARES, "{} chunks kept", kept());
    }

    #[test]
    fn large_payloads_and_failed_fills_are_handled() {
        let pool = Intake::default();
        let big = vec![7u8; OWN + 1];
        assert_eq!(&pool.copy(&big)[..], &big[..]);
        let r: Result<Bytes, &str> = pool.copy_with(100, |_| Err("refused"));
        assert_eq!(r, Err("refused"));
        // A refused fill leaves nothing behind: the next copy is intact.
        let b = pool.copy(b"after");
        assert_eq!(&b[..], b"after");
        let r: Result<Bytes, &str> = pool.copy_with(OWN + 5, |_| Err("big refused"));
        assert_eq!(r, Err("big refused"));
    }

    #[test]
    fn a_copy_while_another_thread_holds_the_chunk_does_not_wait() {
        let pool = std::sync::Arc::new(Intake::default());
        let guard = pool.0.lock().unwrap();
        let p = pool.clone();
        let b = std::thread::spawn(move || p.copy(b"side")).join().unwrap();
        drop(guard);
        assert_eq!(&b[..], b"side");
    }
}
