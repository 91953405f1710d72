//! Destinations of a send: an address list Java encoded for this call
//! ([`Dests`], decoded on the stack), or a set prepared once
//! (`io.sessionrepl.Destinations`, a [`DestSet`] handle) that a send uses
//! as it is, with no JNI call and no decoding.

use crate::boundary::{entry, Fail};
use crate::intake::{array_len, region};
use jni::objects::{JByteArray, JClass};
use jni::sys::jlong;
use jni::JNIEnv;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr};

/// Destinations of one send, decoded without allocating when they are few.
pub(crate) struct Dests {
    few: [SocketAddr; FEW],
    n: usize,
    many: Vec<SocketAddr>,
}

/// Destinations kept on the stack.
const FEW: usize = 8;
/// The largest destination encoding read onto the stack (FEW IPv6 ones).
const FEW_BYTES: usize = 4 + FEW * 19;
/// The most addresses a prepared set may hold (a bound on what one
/// `Destinations.of` makes native memory for).
const MAX_SET: usize = 4096;

impl Dests {
    /// The addresses (empty: every current member).
    pub(crate) fn as_slice(&self) -> &[SocketAddr] {
        if self.many.is_empty() {
            &self.few[..self.n]
        } else {
            &self.many
        }
    }

    /// Decodes Java's `Wire.addrs` encoding; none for null.
    pub(crate) fn read(env: &mut JNIEnv, dests: &JByteArray) -> Result<Dests, Fail> {
        let unspec = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let mut d = Dests {
            few: [unspec; FEW],
            n: 0,
            many: Vec::new(),
        };
        if dests.is_null() {
            return Ok(d);
        }
        let n = array_len(env, dests)?;
        if n > FEW_BYTES {
            d.many = crate::enc::Dec::new(&env.convert_byte_array(dests)?).addrs()?;
            return Ok(d);
        }
        let mut raw = [MaybeUninit::<u8>::uninit(); FEW_BYTES];
        region(env, dests, 0, &mut raw[..n])?;
        // SAFETY: `region` wrote all of `raw[..n]`; MaybeUninit<u8> has
        // u8's layout.
        let enc = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), n) };
        let mut dec = crate::enc::Dec::new(enc);
        let count = dec.u32()? as usize;
        if count > FEW {
            d.many = crate::enc::Dec::new(enc).addrs()?;
            return Ok(d);
        }
        for slot in d.few.iter_mut().take(count) {
            *slot = dec.addr()?;
        }
        d.n = count;
        Ok(d)
    }
}

/// A prepared destination set (empty: every current member), behind a
/// `Destinations` handle.
pub(crate) struct DestSet(Box<[SocketAddr]>);

/// The destinations of a send: the prepared `set` when it is not 0, else
/// the encoded `dests`.
// It lives on the stack for one call; boxing `Dests` would allocate per send.
#[allow(clippy::large_enum_variant)]
pub(crate) enum To<'a> {
    /// A prepared set, used as it is.
    Set(&'a [SocketAddr]),
    /// Decoded for this call.
    Read(Dests),
}

impl To<'_> {
    /// Reads the destinations of one send.
    pub(crate) fn new<'a>(
        env: &mut JNIEnv,
        set: jlong,
        dests: &JByteArray,
    ) -> Result<To<'a>, Fail> {
        if set != 0 {
            // SAFETY: a non-zero set comes from `dests_new` (Box::into_raw);
            // the Java `Destinations` frees it (its Cleaner) only once it is
            // unreachable, and every send keeps it reachable until the
            // native call returned (reachabilityFence).
            let s = unsafe { &*(set as *const DestSet) };
            return Ok(To::Set(&s.0));
        }
        Ok(To::Read(Dests::read(env, dests)?))
    }

    /// The addresses (empty: every current member).
    pub(crate) fn as_slice(&self) -> &[SocketAddr] {
        match self {
            To::Set(s) => s,
            To::Read(d) => d.as_slice(),
        }
    }
}

/// `Native.destsNew(byte[])`: a prepared set from `Wire.addrs`'s encoding.
extern "system" fn dests_new(mut env: JNIEnv, _c: JClass, dests: JByteArray) -> jlong {
    entry(&mut env, 0, |env| {
        let addrs = if dests.is_null() {
            Vec::new()
        } else {
            if array_len(env, &dests)? > 4 + MAX_SET * 19 {
                return Err(Fail::arg(format!("more than {MAX_SET} destinations")));
            }
            crate::enc::Dec::new(&env.convert_byte_array(&dests)?).addrs()?
        };
        if addrs.len() > MAX_SET {
            return Err(Fail::arg(format!("more than {MAX_SET} destinations")));
        }
        Ok(Box::into_raw(Box::new(DestSet(addrs.into_boxed_slice()))) as jlong)
    })
}

/// `Native.destsFree(long)`: frees a prepared set (its Java object's
/// Cleaner, once).
extern "system" fn dests_free(mut env: JNIEnv, _c: JClass, set: jlong) {
    entry(&mut env, (), |_| {
        if set != 0 {
            // SAFETY: from `dests_new`; the Cleaner runs once, after the
            // Java object (and so every send using it) is gone.
            drop(unsafe { Box::from_raw(set as *mut DestSet) });
        }
        Ok(())
    })
}

pub(crate) fn natives() -> Vec<jni::NativeMethod> {
    vec![
        crate::native("destsNew", "([B)J", dests_new as *mut std::ffi::c_void),
        crate::native("destsFree", "(J)V", dests_free as *mut std::ffi::c_void),
    ]
}
