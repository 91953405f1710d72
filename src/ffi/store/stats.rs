//! `sr_session_stats`: a session store's counters.

use super::sr_session_store;
use crate::ffi::{arg_ref, ffi_result, sr_result, write_counters};
use crate::session::SessionStats;

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
