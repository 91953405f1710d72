//! `sr_session_store`: the replicated session store (open, wait until
//! ready, per-request get / commit, invalidate, id change, drain, stats).

use super::channel::{in_callback_of, is_in_callback_of};
use super::member::write_items;
use super::session::SessionHandle;
use super::store_event::{sr_session_event_callback, EventCallback};
use super::{
    arg_ref, arg_slice, ffi_result, ffi_value, free_handle, into_handle, millis, sr_addr,
    sr_config, sr_result, sr_session, sr_txn, take_handle, write_counters, Fail, Handle, Out,
    Userdata,
};
use crate::session::{CommitHandle, SessionStats, SessionStore, StoreLookup, Txn};
use bytes::Bytes;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

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
    store: SessionStore,
    /// Its address names this store in the in-callback markers.
    token: Arc<u8>,
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
            b = b.event_listener(move |e| in_callback_of(key, || cb.call(e)));
        }
        let store = b.open()?;
        out.write(into_handle(StoreHandle { store, token }));
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
        if h.refuse_in_callback("sr_session_store_free").is_err() {
            crate::sr_log!(
                Error,
                "sr_session_store_free called from inside its event callback; ignored"
            );
            return;
        }
        h.store.close();
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
/// a crash. When it returns, the event callback is not running and will
/// not run again. Idempotent.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_IN_CALLBACK`.
///
/// Thread safety: any thread except the store's event callback.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_close(store: *mut sr_session_store) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        h.refuse_in_callback("sr_session_store_close")?;
        h.store.close();
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

/// Starts recording a request's changes to session `id[0..len]` (copied)
/// into a new `*out`, to fill with `sr_txn_set` and friends and hand to
/// `sr_session_store_commit` or `sr_session_store_create`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_ARGUMENT` (`len`
/// 0); `*out` is written only on `SR_OK`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_begin(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    out: *mut *mut sr_txn,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(into_handle::<sr_txn>(
            h.store.begin(Bytes::copy_from_slice(id)),
        ));
        Ok(())
    })
}

/// Waits for a commit as `wait_ms` asks and writes the copies.
fn finish(handle: CommitHandle, wait_ms: u64, out_copies: *mut usize) -> Result<(), Fail> {
    let copies = if wait_ms == 0 {
        match handle.try_result() {
            Some(r) => r?,
            None => {
                return Err(Fail::new(
                    sr_result::SR_PENDING,
                    "applied here; replication not acknowledged yet",
                ))
            }
        }
    } else {
        handle.wait(millis(wait_ms))?
    };
    if !out_copies.is_null() {
        // SAFETY: non-NULL and writable (the callers' contract).
        unsafe { out_copies.write(copies) }
    }
    Ok(())
}

/// The shared body of commit and create: consumes `txn` on every path.
///
/// # Safety
/// As `sr_session_store_commit`.
unsafe fn apply_txn(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    wait_ms: u64,
    out_copies: *mut usize,
    what: &str,
    op: impl FnOnce(&SessionStore, Txn) -> crate::Result<CommitHandle>,
) -> sr_result {
    // Taken before any check, so that every path consumes it.
    // SAFETY: forwarded from the caller.
    let txn = unsafe { take_handle(txn) };
    ffi_result(move || {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        let txn = txn.ok_or_else(|| Fail::null("txn"))?;
        if wait_ms > 0 {
            h.refuse_in_callback(what)?;
        }
        finish(op(&h.store, txn)?, wait_ms, out_copies)
    })
}

/// Commits a request's changes (the end of a request). Backup mode: the
/// session's primary applies them (here, or handed to it), checking the
/// txn's base version if set, and only the changes go to the backups.
/// `txn` is consumed on every path, failures and NULL arguments included.
///
/// With `wait_ms > 0` it waits that long for every holder to acknowledge
/// (from then on the change survives the loss of up to `backupCount`
/// nodes); with `wait_ms` 0 it does not wait and returns `SR_PENDING`
/// unless the outcome is already known (an empty `txn` records an access
/// and is complete at once).
///
/// Returns `SR_OK` (`*out_copies`, NULL allowed, gets the number of copies
/// that hold the change, this node's included), `SR_NULL_PARAMETER`,
/// `SR_NOT_FOUND` (no such session), `SR_PENDING`, `SR_TIMEOUT` (not
/// acknowledged within `wait_ms`; it may still be), `SR_REMOTE_FAILURE`
/// (not acknowledged by every holder, or the primary it was handed to was
/// lost: the change may or may not survive; read to find out),
/// `SR_CONFLICT` (the session changed since the txn's base version,
/// `sr_txn_set_base`: nothing applied), `SR_UNREACHABLE` (no ready primary
/// took it, or fewer than `minCommitCopies` holders are up: nothing
/// applied), `SR_SHUTDOWN` (drained or closed) or
/// `SR_IN_CALLBACK` (`wait_ms > 0` inside the event callback).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `txn` is NULL or a live
/// `sr_txn` that is not used afterwards; `out_copies` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_commit(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    wait_ms: u64,
    out_copies: *mut usize,
) -> sr_result {
    // SAFETY: forwarded from the caller.
    unsafe {
        apply_txn(
            store,
            txn,
            wait_ms,
            out_copies,
            "sr_session_store_commit",
            |s, t| s.commit(t),
        )
    }
}

/// Creates the session `txn` names, with `txn`'s changes, and replicates
/// it; waits as `sr_session_store_commit`. `txn` is consumed on every
/// path.
///
/// Returns as `sr_session_store_commit`, except that `SR_CONFLICT` means
/// the id exists or was removed recently, and `SR_INVALID_ARGUMENT` that
/// `maxActiveSessions` is reached.
///
/// Thread safety: any thread.
///
/// # Safety
/// As `sr_session_store_commit`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_create(
    store: *const sr_session_store,
    txn: *mut sr_txn,
    wait_ms: u64,
    out_copies: *mut usize,
) -> sr_result {
    // SAFETY: forwarded from the caller.
    unsafe {
        apply_txn(
            store,
            txn,
            wait_ms,
            out_copies,
            "sr_session_store_create",
            |s, t| s.create(t),
        )
    }
}

/// Looks session `id[0..len]` up and writes a snapshot of it to `*out`
/// (free it with `sr_session_free`). When this node holds no copy it
/// asks the session's primary, waiting up to `timeout_ms` (0: the
/// configured `accessTimeout`). Backup mode: the primary answers every
/// read, with acknowledged state only, and no other node keeps a copy, so
/// the request never works on a stale one. The snapshot's version
/// (`sr_session_info_get`) is the base to set on the request's txn
/// (`sr_txn_set_base_from`).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `id`, `out`),
/// `SR_INVALID_ARGUMENT` (`len` 0), `SR_NOT_FOUND` (no such session in
/// the cluster), `SR_MOVED` (this node drained and handed it to the member
/// at the address written to `*out_moved`, if not NULL: forward or
/// redirect the request), `SR_TIMEOUT` (no primary answered in time: it
/// was lost and not yet replaced, or is still settling), `SR_SHUTDOWN` or `SR_IN_CALLBACK`. `*out` is written only on
/// `SR_OK`, `*out_moved` only on `SR_MOVED`.
///
/// Thread safety: any thread except the store's event callback.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes; `out` and `out_moved` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_get(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    timeout_ms: u64,
    out: *mut *mut sr_session,
    out_moved: *mut sr_addr,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        h.refuse_in_callback("sr_session_store_get")?;
        let found = if timeout_ms == 0 {
            h.store.get(id)?
        } else {
            h.store.get_timeout(id, millis(timeout_ms))?
        };
        match found {
            StoreLookup::Local(s) => {
                out.write(into_handle::<sr_session>(SessionHandle::new(s)));
                Ok(())
            }
            StoreLookup::Moved(a) => {
                if !out_moved.is_null() {
                    // SAFETY: non-NULL and writable (the caller's promise).
                    unsafe { out_moved.write(a.into()) }
                }
                Err(Fail::new(
                    sr_result::SR_MOVED,
                    format!("session handed over to {a}"),
                ))
            }
            StoreLookup::NotFound => Err(Fail::new(
                sr_result::SR_NOT_FOUND,
                "no such session in the cluster",
            )),
        }
    })
}

/// Records a read-only request on session `id[0..len]`: refreshes its
/// last access here and, at most once per quarter of its max inactive
/// interval, on its holders. Backup mode: a store without a copy sends
/// the access to the session's holders and returns at once (it does not
/// wait for them, and does not learn whether the session exists).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_ARGUMENT` (`len` 0)
/// or `SR_NOT_FOUND` (no other member holds it by placement, e.g. a lone
/// store without the session; delta mode: no copy here).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_access(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        Ok(h.store.access(id)?)
    })
}

/// Invalidates session `id[0..len]` cluster-wide (logout); waits as
/// `sr_session_store_commit`. Works from any store: in backup mode a store
/// without a copy sends the removal to the session's holders, and `*out_copies`
/// counts their acknowledgements (the id is retired on them either way, so
/// no `sr_session_store_get` is needed first).
///
/// Returns as `sr_session_store_commit` (`SR_NOT_FOUND`: no other member
/// holds it by placement, e.g. a lone store without the session; delta
/// mode: no copy here), plus `SR_INVALID_ARGUMENT` (`len` 0).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `id` is NULL or readable
/// for `len` bytes; `out_copies` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_invalidate(
    store: *const sr_session_store,
    id: *const u8,
    len: usize,
    wait_ms: u64,
    out_copies: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { arg_id(id, len, "id") }?;
        if wait_ms > 0 {
            h.refuse_in_callback("sr_session_store_invalidate")?;
        }
        finish(h.store.invalidate(id)?, wait_ms, out_copies)
    })
}

/// Renames session `old[0..old_len]` to `new_id[0..new_len]` cluster-wide
/// (session-fixation protection after a login); every member applies it
/// as one step. Waits as `sr_session_store_commit`.
///
/// Returns as `sr_session_store_commit` (`SR_NOT_FOUND`: `old` not held
/// here; `SR_CONFLICT`: `new_id` in use or removed recently), plus
/// `SR_INVALID_ARGUMENT` (an empty id).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `old` and `new_id` are
/// NULL or readable for their lengths; `out_copies` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_change_id(
    store: *const sr_session_store,
    old: *const u8,
    old_len: usize,
    new_id: *const u8,
    new_len: usize,
    wait_ms: u64,
    out_copies: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        // SAFETY: forwarded from the caller.
        let old = unsafe { arg_id(old, old_len, "old") }?;
        // SAFETY: forwarded from the caller.
        let new_id = unsafe { arg_id(new_id, new_len, "new_id") }?;
        if wait_ms > 0 {
            h.refuse_in_callback("sr_session_store_change_id")?;
        }
        let handle = h.store.change_id(old, Bytes::copy_from_slice(new_id))?;
        finish(handle, wait_ms, out_copies)
    })
}

/// Hands every session this node holds to the members that hold it once
/// this node is gone, and returns when all of them acknowledged: then
/// `sr_session_store_free` is safe. Commits made meanwhile are forwarded,
/// not lost; afterwards `sr_session_store_get` answers `SR_MOVED` and
/// writes fail with `SR_SHUTDOWN`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_TIMEOUT` (hand-offs still
/// unacknowledged after `timeout_ms`: stopping now could lose the sessions
/// not yet handed over) or `SR_IN_CALLBACK`.
///
/// Thread safety: any thread except the store's event callback.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_drain(
    store: *const sr_session_store,
    timeout_ms: u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        h.refuse_in_callback("sr_session_store_drain")?;
        Ok(h.store.drain(millis(timeout_ms))?)
    })
}

/// A session store's counters (`sr_session_store_stats`). Fields are only
/// ever appended; pass `sizeof(sr_session_stats)`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct sr_session_stats {
    /// Sessions held now.
    pub sessions: u64,
    /// Commits (with changes), creates, invalidations and id changes
    /// started here.
    pub commits: u64,
    /// Of those, acknowledged by every required copy.
    pub commits_acked: u64,
    /// Of those, not acknowledged.
    pub commits_failed: u64,
    /// Concurrent versions met.
    pub conflicts: u64,
    /// Replicated changes applied here.
    pub applied: u64,
    /// Replicated changes ignored as older than what is here.
    pub stale: u64,
    /// Deltas refused for a missing base (a whole copy was then sent).
    pub gaps: u64,
    /// Whole copies sent (repair, rebalance, hand-off).
    pub copies_sent: u64,
    /// Messages that could not be decoded.
    pub decode_errors: u64,
    /// Sessions expired here.
    pub expired: u64,
    /// Sessions that became primary here after their primary left.
    pub promotions: u64,
    /// Copies sent to restore the configured number of copies.
    pub rereplications: u64,
    /// State transfers served to joiners.
    pub transfers_served: u64,
    /// State transfers received (as a joiner).
    pub transfers_received: u64,
    /// Sessions received through state transfer.
    pub sessions_transferred: u64,
    /// Fetches started.
    pub fetches: u64,
    /// Sessions handed over by drain.
    pub handoffs: u64,
    /// Commits handed to the session's primary by this node.
    pub forwarded: u64,
    /// Now: sessions held here with fewer copies than configured. Take the
    /// next node down only while this is 0 on every node.
    pub under_replicated: u64,
    /// Now: hand-offs in flight (drain, copies released to new holders,
    /// state transfers served).
    pub handoffs_in_progress: u64,
}

// A counter added to the engine must be added here too.
const _: () =
    assert!(std::mem::size_of::<sr_session_stats>() == std::mem::size_of::<SessionStats>());

impl From<SessionStats> for sr_session_stats {
    fn from(s: SessionStats) -> Self {
        sr_session_stats {
            sessions: s.sessions as u64,
            commits: s.commits,
            commits_acked: s.commits_acked,
            commits_failed: s.commits_failed,
            conflicts: s.conflicts,
            applied: s.applied,
            stale: s.stale,
            gaps: s.gaps,
            copies_sent: s.copies_sent,
            decode_errors: s.decode_errors,
            expired: s.expired,
            promotions: s.promotions,
            rereplications: s.rereplications,
            transfers_served: s.transfers_served,
            transfers_received: s.transfers_received,
            sessions_transferred: s.sessions_transferred,
            fetches: s.fetches,
            handoffs: s.handoffs,
            forwarded: s.forwarded,
            under_replicated: s.under_replicated as u64,
            handoffs_in_progress: s.handoffs_in_progress as u64,
        }
    }
}

/// Copies the store's counters into `*out`, of which the caller has
/// `size` bytes (pass `sizeof(sr_session_stats)`): the first
/// `min(size, sizeof(sr_session_stats))` bytes, whole counters only.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_ARGUMENT` (`size`
/// smaller than one counter or not a multiple of 8).
///
/// Thread safety: any thread.
///
/// # Safety
/// `store` is NULL or a live `sr_session_store`; `out` is NULL or writable
/// for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_session_store_stats(
    store: *const sr_session_store,
    out: *mut sr_session_stats,
    size: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(store, "store") }?;
        let s = sr_session_stats::from(h.store.stats());
        // SAFETY: forwarded from the caller.
        unsafe { write_counters(&s, out, size) }
    })
}
