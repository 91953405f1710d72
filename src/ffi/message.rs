//! `sr_message`: a received message, lent to the message callback and
//! retainable beyond it.

use super::{
    arg_ref, ffi_result, ffi_value, free_handle, into_handle, sr_addr, sr_result, Handle, Out,
};
use crate::transport::Message;

/// A received message. The message callback is lent one that is valid only
/// until the callback returns; `sr_message_retain` makes an owned one (no
/// copy of the payload: it shares the receive buffer) that lives until
/// `sr_message_free`.
///
/// Thread safety: read-only; a retained message may be read from any thread,
/// by several at once, and freed from any thread once.
pub struct sr_message {
    _private: [u8; 0],
}

/// What an `sr_message` pointer points at.
pub(crate) enum MessageHandle {
    /// The engine's message, lent for the duration of a callback.
    Lent(*const Message),
    /// A retained message.
    Owned(Message),
}

impl Handle for sr_message {
    type Inner = MessageHandle;
}

impl MessageHandle {
    fn get(&self) -> &Message {
        match self {
            // SAFETY: a lent handle is only reachable by C during the callback
            // it was made for, while the engine's `&Message` is alive.
            MessageHandle::Lent(m) => unsafe { &**m },
            MessageHandle::Owned(m) => m,
        }
    }
}

/// Reads a message argument, or NULL.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`.
unsafe fn msg_ref<'a>(msg: *const sr_message) -> Option<&'a Message> {
    // SAFETY: forwarded from the caller.
    unsafe { arg_ref(msg, "msg") }.ok().map(MessageHandle::get)
}

/// The payload's first byte (valid for `sr_message_len` bytes while `msg`
/// is). NULL if `msg` is NULL; may be non-NULL for an empty payload.
///
/// Thread safety: see `sr_message`.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`.
#[no_mangle]
pub unsafe extern "C" fn sr_message_data(msg: *const sr_message) -> *const u8 {
    // SAFETY: forwarded from the caller.
    ffi_value(std::ptr::null(), || {
        unsafe { msg_ref(msg) }.map_or(std::ptr::null(), |m| m.payload.as_ptr())
    })
}

/// The payload's length in bytes (after inflation); 0 if `msg` is NULL.
///
/// Thread safety: see `sr_message`.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`.
#[no_mangle]
pub unsafe extern "C" fn sr_message_len(msg: *const sr_message) -> usize {
    // SAFETY: forwarded from the caller.
    ffi_value(0, || unsafe { msg_ref(msg) }.map_or(0, |m| m.payload.len()))
}

/// The message id the sender's `sr_channel_send` returned (unique per
/// sending channel); 0 if `msg` is NULL.
///
/// Thread safety: see `sr_message`.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`.
#[no_mangle]
pub unsafe extern "C" fn sr_message_id(msg: *const sr_message) -> u64 {
    // SAFETY: forwarded from the caller.
    ffi_value(0, || unsafe { msg_ref(msg) }.map_or(0, |m| m.id))
}

/// Writes the address the message's connection came from to `*out`, and
/// the sender's 16-byte member id to `member_id` unless it is NULL.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`; nothing is written on failure.
///
/// Thread safety: see `sr_message`.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`; `out` is NULL or writable;
/// `member_id` is NULL or writable for 16 bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_message_sender(
    msg: *const sr_message,
    out: *mut sr_addr,
    member_id: *mut u8,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { arg_ref(msg, "msg") }?.get();
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(m.from.into());
        if !member_id.is_null() {
            // SAFETY: non-NULL and writable for 16 bytes (the caller's
            // promise); the source is our own array.
            unsafe { std::ptr::copy_nonoverlapping(m.member_id.as_ptr(), member_id, 16) };
        }
        Ok(())
    })
}

/// Makes an owned copy of the handle into `*out` (the payload is shared,
/// not copied), valid until `sr_message_free`. Works on a lent message
/// (inside the message callback) and on a retained one.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`; `*out` is written only on
/// `SR_OK`.
///
/// Thread safety: see `sr_message`.
///
/// # Safety
/// `msg` is NULL or a live `sr_message`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_message_retain(
    msg: *const sr_message,
    out: *mut *mut sr_message,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { arg_ref(msg, "msg") }?.get();
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(into_handle(MessageHandle::Owned(m.clone())));
        Ok(())
    })
}

/// Frees a message made by `sr_message_retain`. NULL does nothing; a lent
/// message (the callback's own pointer) is left alone (and an error is
/// logged), since the engine owns it.
///
/// Thread safety: any thread, once per retained message.
///
/// # Safety
/// `msg` is NULL, a lent message during its callback, or a retained message
/// not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_message_free(msg: *mut sr_message) {
    ffi_value((), || {
        // SAFETY: forwarded from the caller.
        if let Ok(MessageHandle::Lent(_)) = unsafe { arg_ref(msg, "msg") } {
            crate::sr_log!(Error, "sr_message_free called on a lent message; ignored");
            return;
        }
        // SAFETY: NULL or a retained message made by `into_handle`.
        unsafe { free_handle(msg) }
    })
}

/// Runs `f` with a lent `sr_message` pointing at `m`.
pub(crate) fn lend<R>(m: &Message, f: impl FnOnce(*const sr_message) -> R) -> R {
    let h = MessageHandle::Lent(m);
    f((&h as *const MessageHandle).cast())
}
