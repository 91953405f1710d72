//! `sr_ticket`: wait for one message's outcomes at all its destinations.

use super::{arg_ref, ffi_result, free_handle, millis, sr_addr, sr_result, Fail, Handle, Out};
use crate::transport::Ticket;
use crate::Error;
use std::sync::Arc;

/// A waitable handle on one message's outcomes at all its destinations,
/// made by `sr_channel_send_ticket`, freed by `sr_ticket_free`.
///
/// Thread safety: any thread may wait on or query a ticket, several at
/// once; free it once, when no other thread uses it.
pub struct sr_ticket {
    _private: [u8; 0],
}

impl Handle for sr_ticket {
    type Inner = Arc<Ticket>;
}

/// Waits up to `timeout_ms` for every destination's outcome.
///
/// Returns `SR_OK` when every destination succeeded (acked, or written
/// without ack), the first destination's failure code (`SR_REMOTE_FAILURE`,
/// `SR_UNREACHABLE`, `SR_TIMEOUT`, `SR_SHUTDOWN`, ...) otherwise,
/// `SR_PENDING` if outcomes are still missing after `timeout_ms` (wait
/// again), or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_ticket`. Do not wait from inside a callback of the
/// same channel: the outcome may need that very thread.
///
/// # Safety
/// `ticket` is NULL or a live `sr_ticket`.
#[no_mangle]
pub unsafe extern "C" fn sr_ticket_wait(ticket: *const sr_ticket, timeout_ms: u64) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_ref(ticket, "ticket") }?;
        if !t.is_done() && millis(timeout_ms).is_zero() {
            return Err(pending());
        }
        match t.wait_ok(millis(timeout_ms)) {
            Ok(_) => Ok(()),
            Err(Error::Timeout) if !t.is_done() => Err(pending()),
            Err(e) => Err(e.into()),
        }
    })
}

fn pending() -> Fail {
    Fail::new(sr_result::SR_PENDING, "outcomes still pending")
}

/// The outcome at the `index`-th destination to complete (in completion
/// order, 0-based): its address into `*dest` and its code into `*result`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_PENDING` (not every outcome
/// is known yet: call `sr_ticket_wait` first) or `SR_INVALID_ARGUMENT` (`index` not below the number of
/// destinations). Nothing is written on failure.
///
/// Thread safety: see `sr_ticket`.
///
/// # Safety
/// `ticket` is NULL or a live `sr_ticket`; `dest` and `result` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn sr_ticket_outcome(
    ticket: *const sr_ticket,
    index: usize,
    dest: *mut sr_addr,
    result: *mut sr_result,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let t = unsafe { arg_ref(ticket, "ticket") }?;
        // SAFETY: forwarded from the caller.
        let dest = unsafe { Out::new(dest, "dest") }?;
        // SAFETY: forwarded from the caller.
        let result = unsafe { Out::new(result, "result") }?;
        let all = t.wait(std::time::Duration::ZERO).map_err(|_| pending())?;
        let (a, o) = all.get(index).ok_or_else(|| {
            Fail::invalid(format!("index {index}: only {} destinations", all.len()))
        })?;
        dest.write((*a).into());
        result.write(match o {
            Ok(_) => sr_result::SR_OK,
            Err(e) => sr_result::from_error(e),
        });
        Ok(())
    })
}

/// Frees a ticket (the message itself carries on). NULL does nothing.
///
/// Thread safety: see `sr_ticket`.
///
/// # Safety
/// `ticket` is NULL or a live `sr_ticket` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_ticket_free(ticket: *mut sr_ticket) {
    // SAFETY: forwarded from the caller.
    super::ffi_value((), || unsafe { free_handle(ticket) })
}
