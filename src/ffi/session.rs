//! `sr_txn` (one request's changes to a session) and `sr_session` (a
//! snapshot of a session, as `sr_session_store_get` found it).

use super::{
    arg_mut, arg_ref, arg_slice, ffi_result, ffi_value, free_handle, sr_result, Fail, Handle, Out,
};
use crate::session::{Session, Txn, Version};
use bytes::Bytes;
use std::ffi::{c_char, CStr};

/// The changes one request makes to one session, recorded with
/// `sr_txn_set`, `sr_txn_remove`, ... and applied by
/// `sr_session_store_commit` (or `_create`), which consumes it. Made by
/// `sr_session_store_begin`; `sr_txn_free` abandons one not committed.
///
/// Thread safety: not synchronised; one thread at a time per txn (it may
/// be handed from thread to thread).
pub struct sr_txn {
    _private: [u8; 0],
}

impl Handle for sr_txn {
    type Inner = Txn;
}

/// A snapshot of one session: its id, attributes, metadata and version as
/// `sr_session_store_get` found them. It does not change when the session
/// does; get it again for a fresh one. Every pointer it hands out stays
/// valid until `sr_session_free`.
///
/// Thread safety: read-only; may be read from any thread, by several at
/// once, and freed from any thread once.
pub struct sr_session {
    _private: [u8; 0],
}

/// What an `sr_session` pointer points at: the session and its attributes
/// sorted by name (a stable order for `sr_session_attribute_at`, and a
/// binary search for `sr_session_get`).
pub(crate) struct SessionHandle {
    session: Session,
    attrs: Vec<(Bytes, Bytes)>,
}

impl SessionHandle {
    pub(crate) fn new(session: Session) -> Self {
        let mut attrs: Vec<(Bytes, Bytes)> = session
            .attributes()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        attrs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        SessionHandle { session, attrs }
    }
}

impl Handle for sr_session {
    type Inner = SessionHandle;
}

/// Reads a NUL-terminated attribute name (any bytes but NUL).
///
/// # Safety
/// A non-NULL `name` is NUL-terminated and valid during `'a`.
unsafe fn arg_name<'a>(name: *const c_char) -> Result<&'a [u8], Fail> {
    if name.is_null() {
        return Err(Fail::null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's promise).
    Ok(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// Writes a pointer and length pair: `*out_data` (valid as long as the
/// owner) and `*out_len`.
///
/// # Safety
/// Each out-pointer is NULL or writable.
unsafe fn write_bytes(b: &[u8], out_data: *mut *const u8, out_len: *mut usize) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    let (d, l) = unsafe {
        (
            Out::new(out_data, "out_data")?,
            Out::new(out_len, "out_len")?,
        )
    };
    d.write(b.as_ptr());
    l.write(b.len());
    Ok(())
}

/// Records `name = value[0..len]` (a copy; the value is opaque bytes the
/// host serialized). Setting a name twice keeps the last value.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER` (`txn`, `name`, or `value` with
/// `len > 0`).
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `name` is NULL or NUL-terminated;
/// `value` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set(
    txn: *mut sr_txn,
    name: *const c_char,
    value: *const u8,
    len: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { arg_name(name) }?;
        // SAFETY: forwarded from the caller.
        let value = unsafe { arg_slice(value, len, "value") }?;
        t.set(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
        Ok(())
    })
}

/// Records the removal of attribute `name` (nothing happens at commit if
/// it does not exist).
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_remove(txn: *mut sr_txn, name: *const c_char) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { arg_name(name) }?;
        t.remove(Bytes::copy_from_slice(name));
        Ok(())
    })
}

/// Records a new max inactive interval in seconds (negative: never
/// expire).
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set_max_inactive(txn: *mut sr_txn, secs: i64) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        unsafe { arg_mut(txn, "txn") }?.set_max_inactive(secs);
        Ok(())
    })
}

/// Records the principal (serialized by the host) as `data[0..len]`;
/// `data` NULL (with `len` 0) clears it.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER` (`txn`, or `data` NULL with
/// `len > 0`).
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `data` is NULL or readable for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set_principal(
    txn: *mut sr_txn,
    data: *const u8,
    len: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let v = unsafe { optional_bytes(data, len) }?;
        t.set_principal(v);
        Ok(())
    })
}

/// Records the authentication type as `data[0..len]`; `data` NULL (with
/// `len` 0) clears it.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER` (`txn`, or `data` NULL with
/// `len > 0`).
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `data` is NULL or readable for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set_auth_type(
    txn: *mut sr_txn,
    data: *const u8,
    len: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let v = unsafe { optional_bytes(data, len) }?;
        t.set_auth_type(v);
        Ok(())
    })
}

/// Optimistic concurrency: the commit of `txn` applies only if the session
/// is still at the version `(version, writer)` (as `sr_session_info_get`
/// reports it for the snapshot the request read) on its primary; if
/// another commit came in between, `sr_session_store_commit` returns
/// `SR_CONFLICT` and nothing is applied. Without a base a commit applies on
/// whatever version is current.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER` (`txn` or `writer`).
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `writer` is NULL or readable for 16
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set_base(
    txn: *mut sr_txn,
    version: u64,
    writer: *const u8,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller (16 readable bytes).
        let w = unsafe { arg_slice(writer, 16, "writer") }?;
        let mut id = [0u8; 16];
        id.copy_from_slice(w);
        t.set_base(Version {
            counter: version,
            writer: id,
        });
        Ok(())
    })
}

/// Optimistic concurrency from a snapshot: sets the base of `txn` to the
/// version of `s` (the session the request read), as `sr_txn_set_base`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_txn` and `sr_session`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `s` is NULL or a live `sr_session`.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_set_base_from(txn: *mut sr_txn, s: *const sr_session) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_mut(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        t.set_base(h.session.version());
        Ok(())
    })
}

/// The base version of `txn` set by `sr_txn_set_base`: writes it to
/// `*out_version` and `out_writer[0..16]` and returns `SR_OK`, or
/// `SR_NOT_FOUND` if none is set (then nothing is written).
///
/// Returns also `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn`; `out_version` is NULL or writable;
/// `out_writer` is NULL or writable for 16 bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_txn_base(
    txn: *const sr_txn,
    out_version: *mut u64,
    out_writer: *mut u8,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_ref(txn, "txn") }?;
        // SAFETY: forwarded from the caller.
        let ov = unsafe { Out::new(out_version, "out_version") }?;
        if out_writer.is_null() {
            return Err(Fail::null("out_writer"));
        }
        let b = t.base().ok_or_else(|| Fail::from(crate::Error::NotFound))?;
        ov.write(b.counter);
        // SAFETY: non-NULL and writable for 16 bytes (the caller's promise).
        unsafe { std::ptr::copy_nonoverlapping(b.writer.as_ptr(), out_writer, 16) };
        Ok(())
    })
}

/// `None` for NULL with length 0, else a copy of the bytes.
///
/// # Safety
/// A non-NULL `data` is readable for `len` bytes.
unsafe fn optional_bytes(data: *const u8, len: usize) -> Result<Option<Bytes>, Fail> {
    if data.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    let v = unsafe { arg_slice(data, len, "data") }?;
    Ok(Some(Bytes::copy_from_slice(v)))
}

/// Abandons a transaction that was not committed. NULL does nothing.
///
/// Thread safety: the last call on `txn`.
///
/// # Safety
/// `txn` is NULL or a live `sr_txn` (not yet committed or freed).
#[no_mangle]
pub unsafe extern "C" fn sr_txn_free(txn: *mut sr_txn) {
    // SAFETY: forwarded from the caller.
    ffi_value((), || unsafe { free_handle(txn) })
}

/// Frees a session snapshot. NULL does nothing.
///
/// Thread safety: the last call on `s`; the pointers it handed out become
/// invalid.
///
/// # Safety
/// `s` is NULL or a live `sr_session` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_session_free(s: *mut sr_session) {
    // SAFETY: forwarded from the caller.
    ffi_value((), || unsafe { free_handle(s) })
}

/// Writes a pointer to the session id (not NUL-terminated) to `*out_data`
/// and its length to `*out_len`; valid until `sr_session_free`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; the out-pointers are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_id(
    s: *const sr_session,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_bytes(h.session.id(), out_data, out_len) }
    })
}

/// Looks attribute `name` up: writes a pointer to its value to
/// `*out_data` and the value's length to `*out_len` (valid until
/// `sr_session_free`).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_FOUND` (no such
/// attribute; the out-parameters are unchanged).
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; `name` is NULL or NUL-terminated;
/// the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_get(
    s: *const sr_session,
    name: *const c_char,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { arg_name(name) }?;
        if out_data.is_null() || out_len.is_null() {
            return Err(Fail::null(if out_data.is_null() {
                "out_data"
            } else {
                "out_len"
            }));
        }
        let i = h
            .attrs
            .binary_search_by(|(n, _)| n[..].cmp(name))
            .map_err(|_| {
                Fail::new(
                    sr_result::SR_NOT_FOUND,
                    format!("no attribute '{}'", String::from_utf8_lossy(name)),
                )
            })?;
        // SAFETY: forwarded from the caller.
        unsafe { write_bytes(&h.attrs[i].1, out_data, out_len) }
    })
}

/// The number of attributes; 0 if `s` is NULL.
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_attribute_count(s: *const sr_session) -> usize {
    // SAFETY: forwarded from the caller.
    ffi_value(0, || {
        unsafe { arg_ref(s, "s") }.map_or(0, |h| h.attrs.len())
    })
}

/// The attribute at `index` (0 to `sr_session_attribute_count - 1`, in
/// byte order of the names): writes pointers to its name and value and
/// their lengths (names are not NUL-terminated), valid until
/// `sr_session_free`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_ARGUMENT` (`index`
/// out of range).
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; the out-pointers are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_attribute_at(
    s: *const sr_session,
    index: usize,
    out_name: *mut *const u8,
    out_name_len: *mut usize,
    out_value: *mut *const u8,
    out_value_len: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        if out_name.is_null() || out_name_len.is_null() {
            return Err(Fail::null("out_name"));
        }
        if out_value.is_null() || out_value_len.is_null() {
            return Err(Fail::null("out_value"));
        }
        let (n, v) = h.attrs.get(index).ok_or_else(|| {
            Fail::invalid(format!(
                "index {index}: the session has {} attributes",
                h.attrs.len()
            ))
        })?;
        // SAFETY: forwarded from the caller (all four checked non-NULL).
        unsafe {
            write_bytes(n, out_name, out_name_len)?;
            write_bytes(v, out_value, out_value_len)
        }
    })
}

/// A session's version and metadata (`sr_session_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct sr_session_info {
    /// The version counter: the number of commits that led to this state.
    pub version: u64,
    /// The member id of the node that wrote this version.
    pub writer: [u8; 16],
    /// Creation time in milliseconds since the Unix epoch.
    pub creation_time_ms: u64,
    /// Seconds of inactivity before it expires; negative: never.
    pub max_inactive_secs: i64,
    /// Milliseconds since this node last saw it accessed.
    pub idle_ms: u64,
    /// Number of attributes.
    pub attribute_count: usize,
}

/// Writes the session's version and metadata to `*out`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_info_get(
    s: *const sr_session,
    out: *mut sr_session_info,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        let v = h.session.version();
        let m = h.session.meta();
        out.write(sr_session_info {
            version: v.counter,
            writer: v.writer,
            creation_time_ms: m.creation_time,
            max_inactive_secs: m.max_inactive_secs,
            idle_ms: h.session.idle_ms(std::time::Instant::now()),
            attribute_count: h.attrs.len(),
        });
        Ok(())
    })
}

/// Writes a pointer to the principal (as the host serialized it) and its
/// length, valid until `sr_session_free`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_FOUND` (none set).
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; the out-pointers are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_principal(
    s: *const sr_session,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        let p = h.session.meta().principal.as_ref();
        // SAFETY: forwarded from the caller.
        unsafe { write_optional(p, "principal", out_data, out_len) }
    })
}

/// Writes a pointer to the authentication type and its length, valid
/// until `sr_session_free`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_FOUND` (none set).
///
/// Thread safety: see `sr_session`.
///
/// # Safety
/// `s` is NULL or a live `sr_session`; the out-pointers are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_auth_type(
    s: *const sr_session,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(s, "s") }?;
        let a = h.session.meta().auth_type.as_ref();
        // SAFETY: forwarded from the caller.
        unsafe { write_optional(a, "auth type", out_data, out_len) }
    })
}

/// As [`write_bytes`], with `SR_NOT_FOUND` for `None` (after the NULL
/// checks, so a NULL out-pointer is always `SR_NULL_PARAMETER`).
///
/// # Safety
/// As [`write_bytes`].
unsafe fn write_optional(
    v: Option<&Bytes>,
    what: &str,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> Result<(), Fail> {
    if out_data.is_null() || out_len.is_null() {
        return Err(Fail::null(if out_data.is_null() {
            "out_data"
        } else {
            "out_len"
        }));
    }
    let v = v.ok_or_else(|| Fail::new(sr_result::SR_NOT_FOUND, format!("no {what} set")))?;
    // SAFETY: forwarded from the caller.
    unsafe { write_bytes(v, out_data, out_len) }
}
