//! `sr_session_store`: the replicated session store: open, close, wait
//! until ready, routing queries (here); per-request calls (`ops`);
//! asynchronous calls and their completions (`async_calls`,
//! `completions`); counters (`stats`).

mod async_calls;
mod completions;
mod ops;
mod stats;

pub use async_calls::*;
pub use completions::{sr_async_kind, sr_completion, sr_completion_callback};
pub use ops::*;
pub use stats::*;

use super::channel::{in_callback_of, is_in_callback_of};
use super::member::{write_items, write_member_payload};
use super::store_event::{sr_session_event_callback, EventCallback};
use super::{
    arg_ref, arg_slice, ffi_result, ffi_value, free_handle, into_handle, millis, sr_addr,
    sr_config, sr_result, Fail, Handle, Out, Userdata,
};
use crate::session::SessionStore;
use completions::AsyncOps;
use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex};

/// A replicated session store on one node: a channel with membership plus
/// the session replication on top (`docs/SESSIONS.md`). Made (and
/// started) by `sr_session_store_open`, freed by `sr_session_store_free`.
///
/// Thread safety: every `sr_session_store_*` function may be called from
/// any thread, concurrently (request threads share one store), except
/// `sr_session_store_free`, which must be the last call on the handle.
pub struct sr_session_store {
    _private: [u8; 0],
}

/// What an `sr_session_store` pointer points at.
pub(crate) struct StoreHandle {
    store: Arc<SessionStore>,
    /// Its address names this store in the in-callback markers.
    token: Arc<u8>,
    /// `accessTimeout`: the default deadline of asynchronous calls.
    access_timeout: std::time::Duration,
    /// `maxAsyncOperations`.
    max_async: usize,
    /// The asynchronous calls' engine, started by the first of them.
    async_ops: Mutex<AsyncCell>,
}

#[derive(Default)]
struct AsyncCell {
    ops: Option<Arc<AsyncOps>>,
    closed: bool,
}

impl Handle for sr_session_store {
    type Inner = StoreHandle;
}

impl StoreHandle {
    fn key(&self) -> usize {
        Arc::as_ptr(&self.token) as usize
    }

    /// Fails with `SR_IN_CALLBACK` when called from this store's event
    /// callback, which runs on the driver thread a blocking call would
    /// wait for.
    fn refuse_in_callback(&self, what: &str) -> Result<(), Fail> {
        if is_in_callback_of(self.key()) {
            return Err(Fail::new(
                sr_result::SR_IN_CALLBACK,
                format!("{what} would block inside the store's event callback"),
            ));
        }
        Ok(())
    }

    /// The asynchronous engine, started on first use; `SR_SHUTDOWN` once
    /// the store is closed.
    fn async_ops(&self) -> Result<Arc<AsyncOps>, Fail> {
        let mut g = self.async_ops.lock().unwrap_or_else(|e| e.into_inner());
        if g.closed {
            return Err(Fail::new(sr_result::SR_SHUTDOWN, "the store is closed"));
        }
        if let Some(ops) = &g.ops {
            return Ok(ops.clone());
        }
        let ops = Arc::new(AsyncOps::start(self.store.clone(), self.max_async)?);
        g.ops = Some(ops.clone());
        Ok(ops)
    }

    /// Fails with `SR_IN_CALLBACK` inside the event callback or a
    /// completion callback (`close` and `free` would wait for the thread
    /// running it).
    fn refuse_in_any_callback(&self, what: &str) -> Result<(), Fail> {
        self.refuse_in_callback(what)?;
        let g = self.async_ops.lock().unwrap_or_else(|e| e.into_inner());
        if g.ops.as_ref().is_some_and(|o| o.is_completion_thread()) {
            return Err(Fail::new(
                sr_result::SR_IN_CALLBACK,
                format!("{what} would wait for itself inside a completion callback"),
            ));
        }
        Ok(())
    }

    /// Closes the store, then completes every asynchronous call still in
    /// flight (`SR_SHUTDOWN` unless its outcome came first).
    fn close(&self) {
        self.store.close();
        let ops = {
            let mut g = self.async_ops.lock().unwrap_or_else(|e| e.into_inner());
            g.closed = true;
            g.ops.clone()
        };
        if let Some(ops) = ops {
            ops.stop();
        }
    }
}

/// Opens a session store with a copy of `cfg` (channel keys plus the
/// session keys of `docs/SESSIONS.md`: `sessionMode`, `backupCount`,
/// `accessTimeout`, ...) into `*out`: binds the receiver, starts
/// membership and begins state transfer. Call `sr_session_store_wait_ready`
/// before serving requests. `on_event` (NULL allowed) receives the store's
/// events with `userdata`, which must stay valid until
/// `sr_session_store_free` returns.
///
/// A `replicationMode` of `synchronous` or `pooled` is replaced by
/// `fastasyncqueue` (the store needs per-message outcomes).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_CONFIG_VALUE` or
/// `SR_IO` (bind or multicast join failed); `*out` is written only on
/// `SR_OK`.
///
/// Thread safety: any thread; `cfg` is only read.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`; `on_event` is NULL or a valid
/// function; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_open(
    cfg: *const sr_config,
    on_event: sr_session_event_callback,
    userdata: *mut c_void,
    out: *mut *mut sr_session_store,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_ref(cfg, "cfg") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        let token = Arc::new(0u8);
        let key = Arc::as_ptr(&token) as usize;
        let mut b = SessionStore::builder(cfg.clone());
        if let Some(f) = on_event {
            let cb = EventCallback {
                f,
                userdata: Userdata(userdata),
            };
            b = b
                .event_listener(move |e| in_callback_of(key, || cb.call(e)))
                .member_listener(move |e| in_callback_of(key, || cb.call_member(e)));
        }
        let store = Arc::new(b.open()?);
        out.write(into_handle(StoreHandle {
            store,
            token,
            access_timeout: cfg.session.access_timeout,
            max_async: cfg.session.max_async_operations,
            async_ops: Mutex::new(AsyncCell::default()),
        }));
        Ok(())
    })
}

/// Closes the store (as `sr_session_store_close`) and frees it. NULL does
/// nothing. Called from the store's own event callback it would wait for
/// itself, so it logs an error and does nothing.
///
/// Thread safety: the last call on `store`.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_free(store: *mut sr_session_store) {
    ffi_value((), || {
        // SAFETY: forwarded from the caller.
        let Ok(h) = (unsafe { arg_ref(store, "store") }) else {
            return;
        };
        if h.refuse_in_any_callback("sr_session_store_free").is_err() {
            crate::sr_log!(
                Error,
                "sr_session_store_free called from inside one of its callbacks; ignored"
            );
            return;
        }
        h.close();
        // SAFETY: live and from `into_handle` (the caller's promise); no
        // borrow of it outlives this point.
        unsafe { free_handle(store) }
    })
}

/// Stops the store: the driver and the channel stop (membership announces
/// the shutdown), pending commits fail with `SR_SHUTDOWN`, and later calls
/// fail with `SR_SHUTDOWN` (reads of a closed store may answer
/// `SR_NOT_FOUND`). Without `sr_session_store_drain` first, the other
/// members re-replicate this node's sessions from their copies, as after
/// a crash. Asynchronous calls still in flight complete (`SR_SHUTDOWN`
/// unless their outcome came first): their callbacks have run when it
/// returns, and reaped completions stay reapable until `_free`. When it
/// returns, the event callback is not running and will not run again.
/// Idempotent.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_IN_CALLBACK`.
///
/// Thread safety: any thread except the store's event callback and its
/// completion callbacks.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_close(store: *mut sr_session_store) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        h.refuse_in_any_callback("sr_session_store_close")?;
        h.close();
        Ok(())
    })
}

/// Waits up to `timeout_ms` until state transfer is complete: this node
/// holds every session placement gives it and may serve requests.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_TIMEOUT` (not yet; it may
/// still become ready), `SR_REMOTE_FAILURE` (`stateTransferTimeout`
/// passed: the node holds partial state), `SR_SHUTDOWN` (closed) or
/// `SR_IN_CALLBACK`.
///
/// Thread safety: any thread except the store's event callback.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_wait_ready(
    store: *const sr_session_store,
    timeout_ms: u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        h.refuse_in_callback("sr_session_store_wait_ready")?;
        Ok(h.store.wait_ready(millis(timeout_ms))?)
    })
}

/// 1 once state transfer completed, else 0 (also for NULL).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_is_ready(store: *const sr_session_store) -> c_int {
    ffi_value(0, || {
        // SAFETY: forwarded from the caller.
        unsafe { arg_ref(store, "store") }.map_or(0, |h| h.store.is_ready() as c_int)
    })
}

/// 1 if this node is the primary holder of session `id[0..len]` now,
/// else 0 (also for NULL arguments or an empty id). A host that chooses
/// session ids can draw ids until this holds, so that new sessions start
/// out local to the node serving them.
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_is_primary_for(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
) -> c_int {
    ffi_value(0, || {
        // SAFETY: forwarded from the caller.
        let args = unsafe { (arg_ref(store, "store"), arg_id(id, len, "id")) };
        match args {
            (Ok(h), Ok(id)) => h.store.is_primary_for(id) as c_int,
            _ => 0,
        }
    })
}

/// Writes the address other members reach this store at to `*out`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_local_addr(
    store: *const sr_session_store,
    out: *mut sr_addr,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(h.store.local_addr().into());
        Ok(())
    })
}

/// Copies the addresses of the other members the store places sessions
/// on into `out[0..cap]` and their number into `*out_n`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `out_n`, or `out` with
/// `cap > 0`) or `SR_INSUFFICIENT_SIZE`: then `*out_n` is the number of
/// members and `out` is unchanged (call with `NULL, 0` to ask).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `out` is NULL or
/// writable for `cap` entries; `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_members(
    store: *const sr_session_store,
    out: *mut sr_addr,
    cap: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let out_n = unsafe { Out::new(out_n, "out_n") }?;
        if out.is_null() && cap != 0 {
            return Err(Fail::null("out"));
        }
        let members = h.store.members();
        // SAFETY: forwarded from the caller.
        unsafe { write_items(&members, out, cap, out_n, |a| (*a).into()) }
    })
}

/// Copies who holds session `id[0..len]` now into `out[0..cap]` (the
/// primary first, then the backups; listen addresses, this store's own
/// included when it is one of them) and their number into `*out_n`. Any
/// store answers, whether or not it keeps a copy: placement over its
/// current members, so the answer changes as members come and go (it is
/// the primary that `sr_session_store_commit` and `sr_session_store_get`
/// use at that moment). Nothing is sent; it does not block.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `id`, `out_n`, or `out`
/// with `cap > 0`), `SR_INVALID_ARGUMENT` (`len` 0) or
/// `SR_INSUFFICIENT_SIZE`: then `*out_n` is the number of holders and
/// `out` is unchanged (`backupCount + 1` entries always suffice in backup
/// mode).
///
/// Thread safety: any thread, the store's event callback included.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes; `out` is NULL or writable for `cap` entries; `out_n`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_holders(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    out: *mut sr_addr,
    cap: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        // SAFETY: forwarded from the caller.
        let out_n = unsafe { Out::new(out_n, "out_n") }?;
        if out.is_null() && cap != 0 {
            return Err(Fail::null("out"));
        }
        let holders = h.store.holders(id);
        // SAFETY: forwarded from the caller.
        unsafe { write_items(&holders, out, cap, out_n, |a| (*a).into()) }
    })
}

/// Copies the application metadata (`memberPayload`, at most
/// `SR_MEMBER_PAYLOAD_MAX` bytes, no NUL added) of the member listening at
/// `*addr` into `buf[0..len]` and its length into `*out_n`; this store's
/// own address gives its own. For building a redirect: pass the `moved`
/// address of an `SR_MOVED` answer, or the first of
/// `sr_session_store_holders` (the primary). Empty (`*out_n` 0) for a
/// member that announced none, or a static or DNS member (only multicast
/// heartbeats carry it).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `addr`, `out_n`, or
/// `buf` with `len > 0`), `SR_INVALID_ARGUMENT` (a bad `addr->family`),
/// `SR_NOT_FOUND` (no current member listens at `*addr`) or
/// `SR_INSUFFICIENT_SIZE`: then `*out_n` is the length and `buf` is
/// unchanged (`SR_MEMBER_PAYLOAD_MAX` bytes always suffice).
///
/// Thread safety: any thread, the event and completion callbacks included.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `addr` is NULL or points
/// at an `sr_addr`; `buf` is NULL or writable for `len` bytes; `out_n` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_member_payload(
    store: *const sr_session_store,
    addr: *const sr_addr,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_member_payload(addr, buf, len, out_n, |a| h.store.member_payload(a)) }
    })
}

/// Reads a session id argument: not NULL, not empty.
///
/// # Safety
/// A non-NULL `p` is readable for `len` bytes during `'a`.
unsafe fn arg_id<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Fail> {
    if p.is_null() {
        return Err(Fail::null(name));
    }
    if len == 0 {
        return Err(Fail::invalid(format!(
            "argument '{name}': empty session id"
        )));
    }
    // SAFETY: forwarded from the caller.
    unsafe { arg_slice(p, len, name) }
}
