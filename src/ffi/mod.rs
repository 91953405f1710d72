//! The C ABI (`sr_*`). Thin over the Rust API; nothing else is exported.
//!
//! Conventions (written out for C developers in `docs/C-API.md`):
//!
//! - Opaque handles (`sr_config`, `sr_channel`, `sr_message`, `sr_ticket`,
//!   `sr_session_store`, `sr_txn`, `sr_session`) are zero-sized types on the C side; `_new` hands one out through an
//!   out-parameter, `_free` takes it back and `_free(NULL)` does nothing.
//! - Every fallible function returns one [`sr_result`]; `SR_OK` is 0 and the
//!   numbers never change or get reused. The thread-local detail of the last
//!   failure is read with [`sr_last_error_message`].
//! - Out-parameters are written only on `SR_OK` (the only exception is the
//!   needed length of a buffer that was too small, documented where it
//!   applies).
//! - Every export checks its pointers for NULL (`SR_NULL_PARAMETER`) and
//!   catches panics (`SR_PANIC`) through `ffi_result` or `ffi_value`, so
//!   nothing unwinds into C.
//! - Callbacks take `void *userdata` first.
//!
//! The header `include/sessionrepl.h` is generated from this module by
//! cbindgen and checked in; `tests/ffi_header.rs` fails when it is stale.
//!
//! Result codes are grouped by area, with ranges reserved for the parts that
//! are not wrapped yet: 1–99 general, 100–199 configuration, 200–299 channel
//! and transport, 300–399 membership, 400–499 session store.

#![allow(non_camel_case_types)]

mod addr;
mod channel;
mod config;
mod log;
mod member;
mod message;
mod result;
mod session;
mod store;
mod store_event;
mod ticket;
mod version;

pub use addr::*;
pub use channel::*;
pub use config::*;
pub use log::*;
pub use member::*;
pub use message::*;
pub use result::*;
pub use session::*;
pub use store::*;
pub use store_event::*;
pub use ticket::*;
pub use version::*;

pub(crate) use channel::Userdata;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// Why an export failed: the code returned to C and the detail kept for
/// [`sr_last_error_message`].
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: sr_result,
    pub(crate) detail: String,
}

impl Fail {
    pub(crate) fn new(code: sr_result, detail: impl Into<String>) -> Self {
        Fail {
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Self {
        Fail::new(
            sr_result::SR_NULL_PARAMETER,
            format!("argument '{name}' is NULL"),
        )
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Fail::new(sr_result::SR_INVALID_ARGUMENT, detail)
    }
}

impl From<crate::Error> for Fail {
    fn from(e: crate::Error) -> Self {
        Fail::new(sr_result::from_error(&e), result::error_detail(&e))
    }
}

/// The panic boundary of every export that returns a value rather than an
/// [`sr_result`]: runs `f`, and returns `on_panic` if it panicked.
pub(crate) fn ffi_value<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_detail(payload.as_ref()));
            on_panic
        }
    }
}

/// The boundary of every export that returns an [`sr_result`]: runs `f`,
/// turns its failure into a code (recording the detail for
/// [`sr_last_error_message`]) and a panic into `SR_PANIC`.
pub(crate) fn ffi_result(f: impl FnOnce() -> Result<(), Fail>) -> sr_result {
    ffi_value(sr_result::SR_PANIC, || match f() {
        Ok(()) => sr_result::SR_OK,
        Err(fail) => {
            set_last_error(&fail.detail);
            fail.code
        }
    })
}

fn panic_detail(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error (panic): {what}")
}

/// Maps an opaque C handle type to the Rust value behind it.
pub(crate) trait Handle {
    /// The Rust value a pointer to the C type really points at.
    type Inner;
}

/// Moves `v` to the heap and hands the pointer out as the C handle type.
pub(crate) fn into_handle<H: Handle>(v: H::Inner) -> *mut H {
    Box::into_raw(Box::new(v)).cast()
}

/// Borrows the value behind a handle, or fails with `SR_NULL_PARAMETER`.
///
/// # Safety
/// `p` is NULL or was made by [`into_handle`] for `H` and not yet freed, and
/// nothing mutates the value during `'a`.
pub(crate) unsafe fn arg_ref<'a, H: Handle>(p: *const H, name: &str) -> Result<&'a H::Inner, Fail> {
    // SAFETY: a non-NULL `p` came from `into_handle::<H>`, so it points at a
    // live `H::Inner` (the caller's promise).
    unsafe { p.cast::<H::Inner>().as_ref() }.ok_or_else(|| Fail::null(name))
}

/// Mutably borrows the value behind a handle, or fails with
/// `SR_NULL_PARAMETER`.
///
/// # Safety
/// As [`arg_ref`], and nothing else reads or writes the value during `'a`.
pub(crate) unsafe fn arg_mut<'a, H: Handle>(
    p: *mut H,
    name: &str,
) -> Result<&'a mut H::Inner, Fail> {
    // SAFETY: as in `arg_ref`; exclusivity is the caller's promise.
    unsafe { p.cast::<H::Inner>().as_mut() }.ok_or_else(|| Fail::null(name))
}

/// Borrows a plain `#[repr(C)]` value the caller passed by pointer.
///
/// # Safety
/// `p` is NULL or points at an initialised `T` that stays valid and
/// unchanged during `'a`.
pub(crate) unsafe fn arg_ref_plain<'a, T>(p: *const T, name: &str) -> Result<&'a T, Fail> {
    // SAFETY: the caller's promise.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null(name))
}

/// Takes back and drops a handle; NULL does nothing.
///
/// # Safety
/// `p` is NULL or was made by [`into_handle`] for `H` and not yet freed.
pub(crate) unsafe fn free_handle<H: Handle>(p: *mut H) {
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `into_handle::<H>` and is
        // freed once (the caller's promise).
        drop(unsafe { Box::from_raw(p.cast::<H::Inner>()) });
    }
}

/// Takes back a handle to consume its value; NULL gives `None`.
///
/// # Safety
/// As [`free_handle`].
pub(crate) unsafe fn take_handle<H: Handle>(p: *mut H) -> Option<H::Inner> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Box::into_raw` in `into_handle::<H>` and is
    // taken back once (the caller's promise).
    Some(*unsafe { Box::from_raw(p.cast::<H::Inner>()) })
}

/// Copies a counters struct into a caller's struct of `size` bytes (pass
/// `sizeof` of it): the first `min(size, size_of::<T>())` bytes, whole
/// 8-byte counters only, so a caller built against an older, shorter
/// struct gets the fields it knows.
///
/// # Safety
/// A non-NULL `out` is writable for `size` bytes.
pub(crate) unsafe fn write_counters<T: Copy>(v: &T, out: *mut T, size: usize) -> Result<(), Fail> {
    if out.is_null() {
        return Err(Fail::null("out"));
    }
    if size < 8 || size % 8 != 0 {
        return Err(Fail::invalid(format!(
            "size {size}: pass sizeof of the struct ({})",
            std::mem::size_of::<T>()
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `out` is non-NULL and writable for `size` >= `n` bytes (the
    // caller's promise); the source is our own value of at least `n` bytes.
    // Byte copy: `out` may be unaligned memory of an older, shorter struct.
    unsafe { std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), out.cast::<u8>(), n) };
    Ok(())
}

/// A checked, non-NULL out-parameter; written only on success.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Checks `p` for NULL.
    ///
    /// # Safety
    /// A non-NULL `p` is valid for writing one `T` until [`Out::write`].
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> Result<Self, Fail> {
        NonNull::new(p).map(Out).ok_or_else(|| Fail::null(name))
    }

    /// Writes the value (without reading or dropping the old one, which may
    /// be uninitialised memory of the caller's).
    pub(crate) fn write(self, v: T) {
        // SAFETY: non-NULL and writable, as promised to `Out::new`.
        unsafe { self.0.as_ptr().write(v) }
    }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// A non-NULL `p` points at a NUL-terminated string that stays valid and
/// unchanged during `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's promise).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Fail::invalid(format!("argument '{name}' is not valid UTF-8")))
}

/// Reads a pointer + count argument; NULL is allowed when `n == 0`.
///
/// # Safety
/// A non-NULL `p` points at `n` initialised `T`s that stay valid and
/// unchanged during `'a`.
pub(crate) unsafe fn arg_slice<'a, T>(p: *const T, n: usize, name: &str) -> Result<&'a [T], Fail> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::null(name));
    }
    if n.checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Fail::invalid(format!(
            "argument '{name}': length {n} is too large"
        )));
    }
    // SAFETY: non-NULL, `n` elements valid (the caller's promise), size
    // checked against isize::MAX above.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Copies `s` into the caller's buffer, NUL-terminated. `out_n` gets the
/// length of `s` (without the NUL) on `SR_OK`, and on
/// `SR_INSUFFICIENT_SIZE` so the caller can retry with a bigger buffer.
///
/// # Safety
/// A non-NULL `buf` is valid for writing `len` bytes; a non-NULL `out_n` for
/// one `size_t`.
pub(crate) unsafe fn write_text(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    unsafe { write_buf(s.as_bytes(), true, buf.cast::<u8>(), len, out_n) }
}

/// Copies `b` into the caller's buffer, without a NUL: `out_n` as
/// [`write_text`].
///
/// # Safety
/// As [`write_text`].
pub(crate) unsafe fn write_bytes(
    b: &[u8],
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    unsafe { write_buf(b, false, buf, len, out_n) }
}

/// The body of [`write_text`] (`nul`) and [`write_bytes`].
///
/// # Safety
/// As [`write_text`].
unsafe fn write_buf(
    b: &[u8],
    nul: bool,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    let out_n = unsafe { Out::new(out_n, "out_n") }?;
    if buf.is_null() && len != 0 {
        return Err(Fail::null("buf"));
    }
    let needed = b.len() + nul as usize;
    if len < needed {
        out_n.write(b.len());
        return Err(Fail::new(
            sr_result::SR_INSUFFICIENT_SIZE,
            format!("buffer of {len} bytes too small: {needed} needed"),
        ));
    }
    if needed > 0 {
        // SAFETY: `buf` is non-NULL (len >= needed > 0) and writable for
        // `len` >= `needed` bytes; `b` does not overlap the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), buf, b.len());
            if nul {
                buf.add(b.len()).write(0);
            }
        }
    }
    out_n.write(b.len());
    Ok(())
}

/// Milliseconds from C to a `Duration`.
pub(crate) fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_turns_a_panic_into_sr_panic_with_detail() {
        let r = ffi_result(|| panic!("boom"));
        assert_eq!(r, sr_result::SR_PANIC);
        let v = ffi_value(7u32, || panic!("bang"));
        assert_eq!(v, 7);
        let mut buf = [0 as c_char; 128];
        let mut n = 0;
        // SAFETY: valid buffer and out-parameter.
        let r = unsafe { sr_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!(r, sr_result::SR_OK);
        // SAFETY: NUL-terminated on SR_OK.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(s, "internal error (panic): bang");
    }

    #[test]
    fn result_codes_are_unique_and_described() {
        let mut seen = std::collections::HashSet::new();
        for r in sr_result::ALL {
            assert!(seen.insert(*r as i32), "{r:?} reuses a number");
            // SAFETY: static NUL-terminated strings.
            let m = unsafe { CStr::from_ptr(sr_result_message(*r as i32)) };
            assert_ne!(m.to_str().unwrap(), "unknown result code", "{r:?}");
        }
    }
}
