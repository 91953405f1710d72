//! The send side's intake: a Java payload is copied once, straight from the
//! `byte[]` (`GetByteArrayRegion`) or the direct `ByteBuffer` into the
//! channel's pooled send memory ([`Channel::copy_payload`]), with no
//! allocation per message (destinations: [`crate::dests`]).
//!
//! Why: the per-message `send`'s profile showed `malloc` of a `Vec` per
//! message on the Java thread, its `free` on the engine thread (glibc's
//! cross-thread consolidation), one `ExceptionCheck` per wrapped JNI call
//! and a `Vec` per destination list, together more than the engine's own
//! work per 1 KiB message.

use crate::boundary::Fail;
use bytes::Bytes;
use jni::objects::{JByteArray, JByteBuffer};
use jni::sys::jint;
use jni::JNIEnv;
use sessionrepl::Channel;
use std::mem::MaybeUninit;

/// Copies `arr[off .. off+len)` into `c`'s pooled memory. `max` bounds
/// `len` before any memory is taken (the channel's `maxFrameSize`).
pub(crate) fn array(
    c: &Channel,
    env: &mut JNIEnv,
    arr: &JByteArray,
    off: jint,
    len: jint,
    max: usize,
) -> Result<Bytes, Fail> {
    let n = array_len(env, arr)?;
    let (o, l) = span(off, len, n, max)?;
    c.copy_payload_with(l, |out| region(env, arr, o, out))
}

/// Copies `len` bytes at `off` of a direct `ByteBuffer` into `c`'s pooled
/// memory.
pub(crate) fn buffer(
    c: &Channel,
    env: &mut JNIEnv,
    buf: &JByteBuffer,
    off: jint,
    len: jint,
    max: usize,
) -> Result<Bytes, Fail> {
    let s = direct(env, buf)?;
    let (o, l) = span(off, len, s.len(), max)?;
    Ok(c.copy_payload(&s[o..o + l]))
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
