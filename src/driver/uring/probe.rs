//! What the kernel must offer before the io_uring driver is chosen: a ring
//! can be created (containers often forbid it with `EPERM`, old kernels
//! lack it with `ENOSYS`), every opcode the driver submits is supported,
//! and a provided-buffer ring can be registered.

use super::bufring::BufRing;
use super::ring::Ring;
use io_uring::{opcode, Probe};
use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static FORCE_FAIL: Cell<bool> = const { Cell::new(false) };
}

/// Test hook: while set on this thread, [`probe`] reports io_uring as
/// missing, as a kernel that forbids it would.
pub fn force_unavailable(on: bool) {
    FORCE_FAIL.with(|f| f.set(on));
}

/// Checks (once per process, plus the per-thread test hook) that io_uring
/// can run this driver.
///
/// The trial ring is made on a short-lived thread of its own, never on the
/// caller's: when a ring is torn down the kernel tells every task that
/// used it with task work that interrupts that task's blocking system
/// call, so a caller (a host thread starting a channel) blocked in a read
/// with a timeout shortly after would get a spurious `EINTR`.
///
/// # Errors
/// Why it cannot: the failing step and the OS error.
pub fn probe() -> Result<(), String> {
    if FORCE_FAIL.with(|f| f.get()) {
        return Err("io_uring disabled by test hook".into());
    }
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            crate::driver::sys::ThreadBuilder::new()
                .name("sr-uring-probe".into())
                .spawn(probe_kernel)
                .map_err(|e| format!("cannot start the probe thread: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("the io_uring probe panicked".into()))
        })
        .clone()
}

fn probe_kernel() -> Result<(), String> {
    let ring = Ring::new(8).map_err(|e| format!("ring creation failed: {e}"))?;
    let mut p = Probe::new();
    ring.raw()
        .submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("opcode probe failed: {e}"))?;
    let need = [
        ("ACCEPT", opcode::AcceptMulti::CODE),
        ("RECV", opcode::RecvMulti::CODE),
        ("SEND", opcode::Send::CODE),
        ("SENDMSG", opcode::SendMsg::CODE),
        ("SENDMSG_ZC", opcode::SendMsgZc::CODE),
        ("CONNECT", opcode::Connect::CODE),
        ("READ", opcode::Read::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
        ("POLL_ADD", opcode::PollAdd::CODE),
    ];
    for (name, code) in need {
        if !p.is_supported(code) {
            return Err(format!("opcode {name} not supported"));
        }
    }
    // Multishot receive with provided buffers needs a buffer ring (5.19+).
    BufRing::new(&ring, 0, 2, 64, 2)
        .map_err(|e| format!("provided-buffer ring registration failed: {e}"))?;
    Ok(())
}
