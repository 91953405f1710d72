//! The asynchronous calls of `sr_session_store`, for hosts that run an
//! event loop: each starts an operation and returns at once with a
//! ticket; the outcome comes later, exactly once, to a callback or to the
//! reap queue behind `sr_session_store_completion_fd`.

use super::completions::{sr_async_kind, sr_completion, sr_completion_callback, Deliver, Op};
use super::{arg_id, sr_session_store, StoreHandle};
use crate::ffi::{arg_ref, ffi_result, millis, sr_result, sr_txn, take_handle, Fail, Out};
use crate::session::{SessionStore, Txn};
use bytes::Bytes;
use std::ffi::{c_int, c_void};
use std::time::Instant;

/// The shared body of the starting calls: checks the store, then hands
/// `begin` to the store's completion engine and writes the ticket.
///
/// # Safety
/// `store` is NULL or live; `out_ticket` is NULL or writable.
unsafe fn start(
    store: *const sr_session_store,
    kind: sr_async_kind,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
    begin: impl FnOnce(&SessionStore) -> Result<Op, Fail>,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    let h: &StoreHandle = unsafe { arg_ref(store, "store") }?;
    let ops = h.async_ops()?;
    let wait = if timeout_ms == 0 {
        h.access_timeout
    } else {
        millis(timeout_ms)
    };
    let deliver = match cb {
        Some(f) => Deliver::Callback(f),
        None => Deliver::Reap,
    };
    let ticket = ops.submit(kind, Instant::now() + wait, deliver, userdata, || {
        begin(&h.store).unwrap_or_else(|f| Op::Refused(f.code, f.detail))
    })?;
    if !out_ticket.is_null() {
        // SAFETY: non-NULL and writable (the caller's promise).
        unsafe { out_ticket.write(ticket) }
    }
    Ok(())
}

/// The body of the commit-like calls: consumes `txn` on every path.
///
/// # Safety
/// As `sr_session_store_commit_async`.
#[allow(clippy::too_many_arguments)]
unsafe fn start_txn(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    kind: sr_async_kind,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
    op: fn(&SessionStore, Txn) -> crate::Result<crate::session::CommitHandle>,
) -> sr_result {
    // Taken before any check, so that every path consumes it.
    // SAFETY: forwarded from the caller.
    let txn = unsafe { take_handle(txn) };
    ffi_result(move || {
        let txn = txn.ok_or_else(|| Fail::null("txn"))?;
        // SAFETY: forwarded from the caller.
        unsafe {
            start(store, kind, timeout_ms, cb, userdata, out_ticket, |s| {
                Ok(Op::Commit(op(s, txn)?))
            })
        }
    })
}

/// Commits `txn` as `sr_session_store_commit` does, without waiting:
/// returns at once with a ticket in `*out_ticket` (NULL allowed), and the
/// outcome comes later in an `sr_completion`, exactly once: to `cb` with
/// `userdata` if `cb` is not NULL, else to the reap queue
/// (`sr_session_store_completion_fd`, `sr_session_store_reap`). Its
/// `result` is what `sr_session_store_commit` would return with a long
/// enough `wait_ms` (`SR_OK` once every holder acknowledged, with
/// `copies`; `SR_CONFLICT`, `SR_NOT_FOUND`, `SR_UNREACHABLE`,
/// `SR_REMOTE_FAILURE`, ...), `SR_TIMEOUT` when `timeout_ms` passed first
/// (0: the store's `accessTimeout`; the commit may still be acknowledged
/// later), or `SR_SHUTDOWN` when the store closed first. The change is
/// applied here (or handed to the primary) before this returns. `txn` is
/// consumed on every path.
///
/// Returns `SR_OK` (started: one completion will follow),
/// `SR_NULL_PARAMETER` (`store`, `txn`), `SR_QUEUE_FULL`
/// (`maxAsyncOperations` calls are outstanding: started and not yet
/// delivered or reaped), `SR_SHUTDOWN` (closed) or `SR_IO` (the first
/// asynchronous call could not start the completion thread or eventfd).
/// On any result but `SR_OK` no completion follows.
///
/// Thread safety: any thread, the event callback and completion callbacks
/// included. `cb` runs on the store's completion thread
/// (`sr-session-async`), one completion at a time; it may call any
/// `sr_session_store_*` function except `_close` and `_free`
/// (`SR_IN_CALLBACK`), and a blocking call there delays the completions
/// behind it. `userdata` must stay valid until the completion is
/// delivered.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `txn` is NULL or a live
/// `sr_txn` not used afterwards; `cb` is NULL or a valid function;
/// `out_ticket` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_commit_async(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
) -> sr_result {
    let kind = sr_async_kind::SR_ASYNC_COMMIT;
    // SAFETY: forwarded from the caller.
    unsafe {
        start_txn(
            store,
            txn,
            kind,
            timeout_ms,
            cb,
            userdata,
            out_ticket,
            |s, t| s.commit(t),
        )
    }
}

/// Creates the session `txn` names as `sr_session_store_create`, without
/// waiting: the outcome comes as with `sr_session_store_commit_async`
/// (`SR_CONFLICT`: the id exists or was removed recently). `txn` is
/// consumed on every path.
///
/// Returns as `sr_session_store_commit_async`.
///
/// Thread safety: as `sr_session_store_commit_async`.
///
/// # Safety
/// As `sr_session_store_commit_async`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_create_async(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
) -> sr_result {
    let kind = sr_async_kind::SR_ASYNC_CREATE;
    // SAFETY: forwarded from the caller.
    unsafe {
        start_txn(
            store,
            txn,
            kind,
            timeout_ms,
            cb,
            userdata,
            out_ticket,
            |s, t| s.create(t),
        )
    }
}

/// Invalidates session `id[0..len]` as `sr_session_store_invalidate`,
/// without waiting: the outcome comes as with
/// `sr_session_store_commit_async`.
///
/// Returns as `sr_session_store_commit_async`, plus `SR_NULL_PARAMETER`
/// for `id` and `SR_INVALID_ARGUMENT` for `len` 0.
///
/// Thread safety: as `sr_session_store_commit_async`.
///
/// # Safety
/// As `sr_session_store_commit_async`; `id` is NULL or readable for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_invalidate_async(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        let kind = sr_async_kind::SR_ASYNC_INVALIDATE;
        // SAFETY: forwarded from the caller.
        unsafe {
            start(store, kind, timeout_ms, cb, userdata, out_ticket, |s| {
                Ok(Op::Commit(s.invalidate(id)?))
            })
        }
    })
}

/// Looks session `id[0..len]` up as `sr_session_store_get`, without
/// waiting: returns at once with a ticket, and the completion (see
/// `sr_session_store_commit_async` for where it goes) carries `SR_OK` with
/// the snapshot in `session` (the receiver owns it: `sr_session_free`),
/// `SR_NOT_FOUND`, `SR_MOVED` with the new holder in `moved`, or
/// `SR_TIMEOUT` when no primary answered within `timeout_ms` (0: the
/// store's `accessTimeout`), or `SR_SHUTDOWN`. Even a session held here
/// completes through the callback or the queue, never inside this call.
///
/// Returns as `sr_session_store_commit_async`, plus `SR_NULL_PARAMETER`
/// for `id` and `SR_INVALID_ARGUMENT` for `len` 0.
///
/// Thread safety: as `sr_session_store_commit_async`.
///
/// # Safety
/// As `sr_session_store_invalidate_async`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_get_async(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    timeout_ms: u64,
    cb: sr_completion_callback,
    userdata: *mut c_void,
    out_ticket: *mut u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        let kind = sr_async_kind::SR_ASYNC_GET;
        // SAFETY: forwarded from the caller.
        unsafe {
            start(store, kind, timeout_ms, cb, userdata, out_ticket, |_| {
                // The first lookup runs on the completion thread.
                Ok(Op::Get {
                    id: Bytes::copy_from_slice(id),
                    fetch: None,
                    retry_at: Instant::now(),
                })
            })
        }
    })
}

/// Writes the store's completion descriptor to `*out_fd`: an eventfd that
/// is readable while completions of asynchronous calls started without a
/// callback wait in the reap queue. Add it to your poll/epoll/libuv loop
/// for reading and call `sr_session_store_reap` when it is readable (do
/// not read it yourself; reaping the queue empty clears it). It stays
/// open, and the same, until `sr_session_store_free`, which closes it:
/// take it out of your loop first. The first call starts the store's
/// completion thread if no asynchronous call has.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_SHUTDOWN` (the store is
/// closed; a descriptor handed out before stays open until `_free`) or
/// `SR_IO`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `out_fd` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_completion_fd(
    store: *const sr_session_store,
    out_fd: *mut c_int,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h: &StoreHandle = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let out_fd = unsafe { Out::new(out_fd, "out_fd") }?;
        out_fd.write(h.async_ops()?.fd());
        Ok(())
    })
}

/// Moves up to `cap` completions from the reap queue into `out[0..cap]`,
/// oldest first, and their number into `*out_n` (0 when none are
/// waiting). Each is handed out once; the receiver owns its `session`.
/// Reaping frees their places under `maxAsyncOperations`. After
/// `sr_session_store_close` the completions it produced stay reapable.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `out_n`, or `out` with
/// `cap > 0`).
///
/// Thread safety: any thread; concurrent reapers each get different
/// completions.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `out` is NULL or
/// writable for `cap` entries; `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_reap(
    store: *const sr_session_store,
    out: *mut sr_completion,
    cap: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h: &StoreHandle = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let out_n = unsafe { Out::new(out_n, "out_n") }?;
        if out.is_null() && cap != 0 {
            return Err(Fail::null("out"));
        }
        if cap > isize::MAX as usize / std::mem::size_of::<sr_completion>() {
            return Err(Fail::invalid(format!("cap {cap} is too large")));
        }
        let ops = h
            .async_ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ops
            .clone();
        let Some(ops) = ops.filter(|_| cap > 0) else {
            out_n.write(0);
            return Ok(());
        };
        // SAFETY: `out` is non-NULL and writable for `cap` entries (the
        // caller's promise); MaybeUninit needs no initialised contents.
        let slots = unsafe {
            std::slice::from_raw_parts_mut(out.cast::<std::mem::MaybeUninit<sr_completion>>(), cap)
        };
        out_n.write(ops.reap(slots));
        Ok(())
    })
}
