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
//! its end and split off. When the chunk is full, the same memory is taken
//! back if every message cut from it has been dropped (sent), else a new
//! chunk is allocated and the old one is freed with its last message: one
//! allocation per chunk, not per message. A payload over [`OWN`] bytes gets
//! an allocation of its own, and so does a copy made while another thread
//! holds the chunk (never a wait on a lock).
//!
//! Bound: a queued message keeps its whole chunk alive, so the memory
//! behind queued messages is at most the queued messages' count times
//! [`CHUNK`] (the send queues bound the count), plus one open chunk.

use bytes::{Bytes, BytesMut};
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

/// A channel's pooled send memory.
#[derive(Default)]
pub struct Intake(Mutex<BytesMut>);

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
        if b.capacity() - b.len() < len {
            b.reserve(CHUNK);
        }
        let at = b.len();
        fill(&mut b.spare_capacity_mut()[..len])?;
        // SAFETY: `fill` returned Ok, so it wrote the `len` bytes after `at`.
        unsafe { b.set_len(at + len) };
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
