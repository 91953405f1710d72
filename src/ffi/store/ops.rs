//! Per-request calls of `sr_session_store`: begin, commit, create, get,
//! access, invalidate, id change, and drain.

use super::{arg_id, sr_session_store};
use crate::ffi::session::SessionHandle;
use crate::ffi::{
    arg_ref, ffi_result, into_handle, millis, sr_addr, sr_result, sr_session, sr_txn, take_handle,
    Fail, Out,
};
use crate::session::{CommitHandle, SessionStore, StoreLookup, Txn};
use bytes::Bytes;

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
/// (`sr_txn_set_base_from`). It is not an access: a request that only
/// reads calls `sr_session_store_access` too, or the session expires after
/// its max inactive interval however often it is read.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`store`, `id`, `out`),
/// `SR_INVALID_ARGUMENT` (`len` 0), `SR_NOT_FOUND` (no such session in
/// the cluster), `SR_MOVED` (this node drained and handed it to the member
/// at the address written to `*out_moved`, if not NULL: forward or
/// redirect the request, e.g. to the URL `sr_session_store_member_payload`
/// gives for that address), `SR_TIMEOUT` (no primary answered in time: it
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
/// Any member may ask: one without a copy hands the rename to the
/// session's primary, as it does a commit.
///
/// Returns as `sr_session_store_commit` (`SR_NOT_FOUND`: no member holds
/// `old`; `SR_CONFLICT`: `new_id` in use or removed recently), plus
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
