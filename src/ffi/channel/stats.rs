//! `sr_stats`: a channel's counters, as a struct and in Prometheus text.

use super::sr_channel;
use crate::ffi::{arg_ref, ffi_result, sr_result, write_counters, write_text, Fail};
use crate::stats::StatsSnapshot;
use std::ffi::c_char;

/// A channel's counters (`sr_channel_stats`). Fields are only ever appended;
/// pass `sizeof(sr_stats)` so that an older caller gets the fields it knows.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct sr_stats {
    /// Messages written to sockets (one per destination).
    pub msgs_sent: u64,
    /// Payload bytes written (after compression).
    pub bytes_sent: u64,
    /// Messages delivered to the listener.
    pub msgs_received: u64,
    /// Payload bytes received (before inflation).
    pub bytes_received: u64,
    /// Acknowledgements received by senders.
    pub acks_received: u64,
    /// Acknowledgements sent by the receiver.
    pub acks_sent: u64,
    /// Messages that ended failed (FAIL frame, unreachable, queue full, shutdown).
    pub failures: u64,
    /// Messages whose ack did not arrive within ackTimeout.
    pub timeouts: u64,
    /// Sends refused because a queue stayed full.
    pub queue_full: u64,
    /// Messages waiting in send queues now.
    pub queue_depth: u64,
    /// Outgoing connections re-established after a loss.
    pub reconnects: u64,
    /// Inbound connections closed for a protocol violation.
    pub protocol_errors: u64,
    /// Inbound connections accepted.
    pub connections_accepted: u64,
    /// Messages resent after a reconnect.
    pub resends: u64,
    /// Messages compressed before sending.
    pub compressed: u64,
    /// Listener calls that reported an error.
    pub listener_errors: u64,
    /// Inbound connections closed by a receiver limit (handshakeTimeout,
    /// maxConnections, ackWriteTimeout, connectionUploadTimeout).
    pub rx_limit_closes: u64,
    /// Connections refused because the peer did not authenticate (no or
    /// another cluster key, a certificate the cluster CA did not sign, clear
    /// text to a node that requires encryption), both directions.
    pub secure_refusals: u64,
    /// Secured connections closed for a record that failed authentication
    /// (tampered, replayed, reordered, truncated or from another connection).
    pub secure_errors: u64,
}

// A counter added to the engine must be added here too.
const _: () = assert!(std::mem::size_of::<sr_stats>() == std::mem::size_of::<StatsSnapshot>());

impl From<StatsSnapshot> for sr_stats {
    fn from(s: StatsSnapshot) -> Self {
        sr_stats {
            msgs_sent: s.msgs_sent,
            bytes_sent: s.bytes_sent,
            msgs_received: s.msgs_received,
            bytes_received: s.bytes_received,
            acks_received: s.acks_received,
            acks_sent: s.acks_sent,
            failures: s.failures,
            timeouts: s.timeouts,
            queue_full: s.queue_full,
            queue_depth: s.queue_depth,
            reconnects: s.reconnects,
            protocol_errors: s.protocol_errors,
            connections_accepted: s.connections_accepted,
            resends: s.resends,
            compressed: s.compressed,
            listener_errors: s.listener_errors,
            rx_limit_closes: s.rx_limit_closes,
            secure_refusals: s.secure_refusals,
            secure_errors: s.secure_errors,
        }
    }
}

/// Copies the counters into `*out`, of which the caller has `size` bytes
/// (pass `sizeof(sr_stats)`): the first `min(size, sizeof(sr_stats))`
/// bytes are written, whole counters only. Readable while running and after
/// a stop (the final counters).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_ARGUMENT` (`size`
/// smaller than one counter or not a multiple of 8) or `SR_NOT_RUNNING`
/// (never started).
///
/// Thread safety: any thread; the counters are read without stopping the
/// channel, each one atomically, not all at one instant.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable for
/// `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_stats(
    ch: *const sr_channel,
    out: *mut sr_stats,
    size: usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let s = sr_stats::from(h.current()?.stats());
        // SAFETY: forwarded from the caller.
        unsafe { write_counters(&s, out, size) }
    })
}

/// Writes the counters as Prometheus text exposition (metric names
/// `sessionrepl_*`) into `buf`, NUL-terminated, and its length without the
/// NUL into `*out_n`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_NOT_RUNNING` (never started)
/// or `SR_INSUFFICIENT_SIZE`: then `*out_n` is the needed length without
/// the NUL and `buf` is unchanged; call with `buf` NULL and `len` 0 to ask
/// for the size. Counters move, so allow some slack.
///
/// Thread safety: any thread.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `buf` is NULL or writable for `len`
/// bytes; `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_stats_prometheus(
    ch: *const sr_channel,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        let text = h.current()?.stats().to_prometheus();
        // SAFETY: forwarded from the caller.
        unsafe { write_text(&text, buf, len, out_n) }
    })
}
