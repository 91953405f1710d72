//! The receive engine's contract with its I/O driver, and the engine steps
//! written once against it.
//!
//! A first step towards "one engine over one driver contract" (issue 9):
//! the receiver's policy — admission against `maxConnections`, the
//! deadlines of `handshakeTimeout` / `ackWriteTimeout` /
//! `connectionUploadTimeout`, resuming connections that wait for receive
//! memory, and where a paused connection goes — lives here once; the mio
//! selector (readiness) and the io_uring ring (completions) only say how to
//! carry it out on their sockets. The frames themselves already go through
//! one decoder ([`RxCore::decode`]).
//!
//! What is left for the full contract (proposal): with these behind the
//! trait, the two run loops become one engine loop.
//!
//! - `poll(&mut self, timeout, out: &mut Vec<Event>)`: wait (at most until
//!   [`RxCore::sleep_for`]) and report `Accepted(token, peer)`,
//!   `Bytes(token, chunk)` (an owned chunk: a slice of a provided buffer,
//!   or of the connection's read buffer after a readiness-driven `read`),
//!   `Written(token, n)`, `Closed(token, why)`, `Woken`. Readiness drivers
//!   do their `read`/`write` calls inside `poll`; completion drivers reap.
//! - `write(&mut self, token, bytes)`: queue output, many frames per call
//!   (one `writev` / one send in flight, the rest kept in order).
//! - `waker(&self) -> Arc<dyn Wake>` for the workers' ack hand-back.
//!
//! The `carry` / `tail` bookkeeping of a frame straddling two chunks then
//! moves out of the io_uring receiver into the engine, shared by both.

use super::rx_core::{Close, ConnCore, Hold, RxCore};
use crate::proto::limits::Admit;
use std::net::SocketAddr;

/// What the receive engine needs from a driver.
pub(crate) trait RxDriver {
    /// A connection as the driver keeps it (socket, buffers, operations in
    /// flight) around its protocol state.
    type Conn;

    /// The engine state.
    fn core(&mut self) -> &mut RxCore;

    /// The protocol state inside a connection.
    fn conn_core(c: &mut Self::Conn) -> &mut ConnCore;

    /// Takes `token`'s connection out of the table (the engine puts it
    /// back with [`RxDriver::put_conn`] or closes it).
    fn take_conn(&mut self, token: usize) -> Option<Self::Conn>;

    /// Puts a connection back.
    fn put_conn(&mut self, token: usize, c: Self::Conn);

    /// Closes a connection taken out of the table: the engine's
    /// [`RxCore::on_close`] (counts, logs, frees its slot and memory), then
    /// the driver's own teardown.
    fn close_conn(&mut self, token: usize, c: Self::Conn, why: Close);

    /// Serves `token` again on the next turn of the loop, from the bytes it
    /// already holds, then from its socket.
    fn retry_next_turn(&mut self, token: usize);

    /// Takes no more bytes for `c` until it is retried. Readiness: nothing
    /// to do (unread bytes wait in the socket, where TCP backpressure holds
    /// them); completions: end the receive in flight without losing what it
    /// already received.
    fn stop_reading(&mut self, c: &mut Self::Conn);
}

/// Admits a connection just accepted as `token`: true to take it (after
/// closing the oldest connection still in its handshake when all slots are
/// taken), false to drop it (counted and logged).
pub(crate) fn admit<D: RxDriver>(d: &mut D, token: usize, peer: SocketAddr) -> bool {
    match d.core().admit(token, peer) {
        Admit::Accept => true,
        Admit::Evict(old) => {
            if let Some(c) = d.take_conn(old) {
                let why = Close::Limit(
                    "maxConnections reached: oldest connection without a preface makes room",
                );
                d.close_conn(old, c, why);
            }
            true
        }
        Admit::Refuse => false,
    }
}

/// Closes connections past a deadline and retries those that waited for
/// receive memory once some was released. Returns true if it did anything.
pub(crate) fn enforce_limits<D: RxDriver>(d: &mut D) -> bool {
    let mut did = false;
    for (t, why) in d.core().expired() {
        if let Some(c) = d.take_conn(t) {
            d.close_conn(t, c, why);
            did = true;
        }
    }
    for t in d.core().memory_waiters() {
        if let Some(mut c) = d.take_conn(t) {
            let held = d.core().unhold_memory(D::conn_core(&mut c));
            d.put_conn(t, c);
            if held {
                d.retry_next_turn(t);
                did = true;
            }
        }
    }
    did
}

/// A connection that just paused: retried on the next turn if a full
/// worker queue or its spent inflate budget paused it; and unless only its
/// turn is over, it takes no more bytes until the pause ends.
pub(crate) fn park<D: RxDriver>(d: &mut D, token: usize, c: &mut D::Conn) {
    let core = D::conn_core(c);
    let retry = core.retry_next_turn();
    let only_turn = core.stalled.is_empty() && core.hold == Some(Hold::Turn);
    if retry {
        d.retry_next_turn(token);
    }
    if !only_turn {
        d.stop_reading(c);
    }
}

/// After output was written: a connection held for unsent acks is served
/// again once they are back within `maxPendingAckBytes`.
pub(crate) fn output_written<D: RxDriver>(d: &mut D, token: usize, c: &mut D::Conn) {
    if d.core().output_drained(D::conn_core(c)) {
        d.retry_next_turn(token);
    }
}
