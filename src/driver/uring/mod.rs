//! The io_uring driver: completions instead of readiness.
//!
//! - `ring`: the [`Ring`]. Every operation ([`Op`]) is moved into a slab at
//!   submission and its `user_data` is the slab index (plus a generation);
//!   the op owns every buffer the kernel may touch until its last
//!   completion. An op cancelled (or left behind by a closed connection)
//!   is marked orphan: its buffers stay parked in the slab until the
//!   kernel's final completion, then drop. [`Ring::drain`] cancels and
//!   waits for everything; a ring that cannot drain leaks rather than
//!   frees memory under the kernel.
//! - `bufring`: the provided-buffer ring ([`BufRing`]) multishot receives fill, lent
//!   to listeners as zero-copy `Bytes`.
//! - [`probe()`]: what must be there before `auto` picks this driver.
//!
//! Choices, measured on the 2-vCPU reference VM: no SQPOLL (its kernel
//! thread spins a whole core, which on two cores takes half the machine
//! from the application and the peer; a batched `io_uring_enter` per loop
//! turn costs less than that); `COOP_TASKRUN` + `TASKRUN_FLAG` (no
//! inter-processor interrupts for task work; we enter the kernel only when
//! there is something to submit or run). Registered files are not used:
//! each connection has one long-lived multishot receive, so the per-SQE
//! file lookup they save is rare on the receive side.

mod bufring;
mod driver;
mod op;
pub mod probe;
mod ring;
mod slab;

pub use bufring::{BufRing, Filled};
pub use driver::{Provided, UringDriver, UringTuning};
pub(crate) use op::recv_filled;
pub use op::{Gather, Op};
pub use probe::{force_unavailable, probe};
pub use ring::{leaked_ops, live_ops, Completion, OpId, Ring, RingWaker};

/// Takes ownership of a descriptor an accept completion returned.
///
/// # Panics
/// If `fd` is negative (an error result, which callers check first).
pub fn owned_fd(fd: i32) -> std::os::fd::OwnedFd {
    assert!(fd >= 0, "not a descriptor: {fd}");
    use std::os::fd::FromRawFd;
    // SAFETY: the kernel just created `fd` for this completion; nothing
    // else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}
