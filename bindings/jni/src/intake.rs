//! The send side's intake: a Java payload is copied once, straight from the
//! `byte[]` (`GetByteArrayRegion`) or the direct `ByteBuffer` into pooled
//! memory the engine then sends from, with no allocation per message
//! (destinations: [`crate::dests`]).
//!
//! Why: the per-message `send`'s profile showed `malloc` of a `Vec` per
//! message on the Java thread, its `free` on the engine thread (glibc's
//! cross-thread consolidation), one `ExceptionCheck` per wrapped JNI call
//! and a `Vec` per destination list, together more than the engine's own
//! work per 1 KiB message.
//!
//! Pooling: each channel keeps one [`BytesMut`] chunk of [`CHUNK`] bytes;
//! a message is written at its end and split off as a frozen
//! [`Bytes`] (a reference count on the chunk, not a copy). When the chunk
//! is full, `reserve` takes the same memory back if every message cut from
//! it has been sent (dropped), else (the usual case under load: its last
//! messages are still queued) a new chunk is allocated and the old one is
//! freed with its last message: one allocation per chunk, not per message. So the intake holds at most one
//! chunk beyond the messages the bounded send queue holds anyway; a
//! payload over [`OWN`] bytes gets an allocation of its own.

use crate::boundary::Fail;
use bytes::{Bytes, BytesMut};
use jni::objects::{JByteArray, JByteBuffer};
use jni::sys::jint;
use jni::JNIEnv;
use std::mem::MaybeUninit;
use std::sync::Mutex;

/// The pooled chunk messages are cut from: below glibc's mmap threshold
/// (128 KiB), so a new chunk comes from the heap's free memory. At 256 KiB
/// every chunk was a fresh mmap, its pages faulted in on the Java thread
/// and unmapped on the engine's (both showed in the batch send's profile);
/// 64 KiB was faster in each of three interleaved S8 batch runs.
const CHUNK: usize = 64 * 1024;
/// A payload larger than this gets its own allocation (so a chunk holds at
/// least four messages and a large message does not pin a chunk).
const OWN: usize = 16 * 1024;

/// Per-channel pooled memory for payloads to send.
#[derive(Default)]
pub(crate) struct Intake(Mutex<BytesMut>);

impl Intake {
    /// `len` bytes written by `fill` (which writes all of the slice it is
    /// given or fails), in pooled memory.
    pub(crate) fn copy(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), Fail>,
    ) -> Result<Bytes, Fail> {
        if len > OWN {
            let mut v: Vec<u8> = Vec::with_capacity(len);
            fill(&mut v.spare_capacity_mut()[..len])?;
            // SAFETY: `fill` returned Ok, so it wrote all `len` bytes.
            unsafe { v.set_len(len) };
            return Ok(Bytes::from(v));
        }
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if b.capacity() - b.len() < len {
            b.reserve(CHUNK);
        }
        let at = b.len();
        fill(&mut b.spare_capacity_mut()[..len])?;
        // SAFETY: `fill` returned Ok, so it wrote the `len` bytes after `at`.
        unsafe { b.set_len(at + len) };
        Ok(b.split().freeze())
    }

    /// Copies `arr[off .. off+len)` into the intake. `max` bounds `len`
    /// before any memory is taken (the channel's `maxFrameSize`).
    pub(crate) fn array(
        &self,
        env: &mut JNIEnv,
        arr: &JByteArray,
        off: jint,
        len: jint,
        max: usize,
    ) -> Result<Bytes, Fail> {
        let n = array_len(env, arr)?;
        let (o, l) = span(off, len, n, max)?;
        self.copy(l, |out| region(env, arr, o, out))
    }

    /// Copies `len` bytes at `off` of a direct `ByteBuffer` into the intake.
    pub(crate) fn buffer(
        &self,
        env: &mut JNIEnv,
        buf: &JByteBuffer,
        off: jint,
        len: jint,
        max: usize,
    ) -> Result<Bytes, Fail> {
        let s = direct(env, buf)?;
        let (o, l) = span(off, len, s.len(), max)?;
        self.slice(&s[o..o + l])
    }

    /// Copies `src` (Java memory) into the intake.
    pub(crate) fn slice(&self, src: &[u8]) -> Result<Bytes, Fail> {
        self.copy(src.len(), |out| {
            // SAFETY: MaybeUninit<u8> has u8's layout; `out` is as long as
            // `src` (`copy` hands exactly the length asked for), and Java
            // memory never overlaps ours.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    out.as_mut_ptr().cast::<u8>(),
                    src.len(),
                )
            };
            Ok(())
        })
    }
}

/// The length of a Java `byte[]` (not null).
pub(crate) fn array_len(env: &mut JNIEnv, arr: &JByteArray) -> Result<usize, Fail> {
    if arr.is_null() {
        return Err(Fail::Named(
            "SR_NULL_PARAMETER".into(),
            "null payload".into(),
        ));
    }
    let raw = env.get_raw();
    // SAFETY: `raw` is this call's valid JNIEnv and `arr` a live, non-null
    // local reference to an array; GetArrayLength never throws.
    let n = unsafe {
        let f = (**raw)
            .GetArrayLength
            .ok_or_else(|| Fail::arg("JNI: no GetArrayLength"))?;
        f(raw, arr.as_raw())
    };
    Ok(n.max(0) as usize)
}

/// Fills `out` from `arr[off ..]` with `GetByteArrayRegion`, the only JNI
/// call per payload besides `GetArrayLength`. The caller checked `off +
/// out.len()` against the array's length (which never changes), so the
/// JVM cannot throw and no `ExceptionCheck` follows (it cost more than the
/// copy in the per-message send's profile).
pub(crate) fn region(
    env: &mut JNIEnv,
    arr: &JByteArray,
    off: usize,
    out: &mut [MaybeUninit<u8>],
) -> Result<(), Fail> {
    let raw = env.get_raw();
    // SAFETY: `raw` is this call's valid JNIEnv; `arr` is a live local
    // reference; `off + out.len()` is within its length (checked by the
    // caller), so it writes exactly `out.len()` bytes to `out` and raises
    // nothing.
    unsafe {
        let f = (**raw)
            .GetByteArrayRegion
            .ok_or_else(|| Fail::arg("JNI: no GetByteArrayRegion"))?;
        f(
            raw,
            arr.as_raw(),
            off as jint,
            out.len() as jint,
            out.as_mut_ptr().cast::<i8>(),
        );
    }
    Ok(())
}

/// The memory of a direct `ByteBuffer`, for the duration of this call.
pub(crate) fn direct<'b>(env: &mut JNIEnv, buf: &'b JByteBuffer) -> Result<&'b [u8], Fail> {
    if buf.is_null() {
        return Err(Fail::Named(
            "SR_NULL_PARAMETER".into(),
            "null payload".into(),
        ));
    }
    let p = env
        .get_direct_buffer_address(buf)
        .map_err(|_| Fail::arg("not a direct ByteBuffer"))?;
    let cap = env.get_direct_buffer_capacity(buf)?;
    // SAFETY: `p` is the direct buffer's memory of `cap` bytes, which the
    // buffer object (a live reference for this call, borrowed by the
    // result) keeps alive.
    Ok(unsafe { std::slice::from_raw_parts(p, cap) })
}

/// An offset and a length from Java, checked against the `n` bytes there
/// are and the `max` a message may have.
pub(crate) fn span(off: jint, len: jint, n: usize, max: usize) -> Result<(usize, usize), Fail> {
    let (Ok(o), Ok(l)) = (usize::try_from(off), usize::try_from(len)) else {
        return Err(Fail::arg("negative offset or length"));
    };
    if o.checked_add(l).is_none_or(|end| end > n) {
        return Err(Fail::arg(format!(
            "offset {o} and length {l} exceed the {n} bytes there are"
        )));
    }
    if l > max {
        return Err(Fail::arg(format!(
            "payload of {l} bytes exceeds maxFrameSize {max}"
        )));
    }
    Ok((o, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(intake: &Intake, src: &[u8]) -> Bytes {
        intake
            .copy(src.len(), |out| {
                for (o, b) in out.iter_mut().zip(src) {
                    o.write(*b);
                }
                Ok(())
            })
            .unwrap()
    }

    #[test]
    fn held_messages_stay_intact_across_chunks_and_a_sent_chunk_is_reused() {
        let intake = Intake::default();
        let msg = |i: usize| vec![i as u8; 1000 + i % 7];
        // Many chunks' worth, all held: nothing is overwritten.
        let held: Vec<Bytes> = (0..300).map(|i| put(&intake, &msg(i))).collect();
        for (i, b) in held.iter().enumerate() {
            assert_eq!(&b[..], &msg(i)[..], "message {i}");
        }
        drop(held);
        // Every message of the current chunk dropped: the next chunk is the
        // same memory (reclaimed, not allocated).
        let first = put(&intake, &[1; 1000]);
        let at = first.as_ptr();
        drop(first);
        let mut last = Bytes::new();
        for _ in 0..(CHUNK / 1000 + 1) {
            // Sent (dropped) before the next is copied, so when the chunk
            // fills up no message still holds it.
            drop(std::mem::take(&mut last));
            last = put(&intake, &[2; 1000]);
        }
        assert!(
            (at as usize..at as usize + CHUNK).contains(&(last.as_ptr() as usize)),
            "the chunk was taken back"
        );
        // A payload over OWN gets its own allocation, intact.
        let big = vec![7u8; OWN + 1];
        assert_eq!(&put(&intake, &big)[..], &big[..]);
    }

    #[test]
    fn a_failed_fill_leaves_the_intake_usable() {
        let intake = Intake::default();
        let r = intake.copy(10, |_| Err(Fail::arg("no")));
        assert!(r.is_err());
        assert_eq!(&put(&intake, b"abc")[..], b"abc");
    }

    #[test]
    fn spans_outside_the_array_or_over_the_frame_limit_are_refused() {
        assert!(span(-1, 1, 10, 100).is_err());
        assert!(span(0, -1, 10, 100).is_err());
        assert!(span(5, 6, 10, 100).is_err());
        assert!(span(i32::MAX, i32::MAX, 10, 100).is_err());
        assert!(span(0, 10, 10, 5).is_err());
        assert_eq!(span(2, 3, 10, 100).unwrap(), (2, 3));
    }
}
