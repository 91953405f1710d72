//! The ring: submission with batching, completion reaping, cancellation,
//! a wake-up eventfd, and a drain that leaves nothing in flight.

use super::op::Op;
use super::slab::Slab;
use io_uring::{cqueue, opcode, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Operations in flight in every ring of the process.
static LIVE_OPS: AtomicUsize = AtomicUsize::new(0);
/// Operations whose buffers were leaked by a ring that could not drain.
static LEAKED_OPS: AtomicUsize = AtomicUsize::new(0);

/// Operations in flight in all rings of this process (the wake-up reads of
/// running rings included): zero once every ring has stopped.
pub fn live_ops() -> usize {
    LIVE_OPS.load(Ordering::SeqCst)
}

/// Operations ever leaked because a ring could not drain (should stay 0).
pub fn leaked_ops() -> usize {
    LEAKED_OPS.load(Ordering::SeqCst)
}

fn take_op(ops: &mut Slab<InFlight>, id: OpId) -> Option<Op> {
    let f = ops.remove(id)?;
    LIVE_OPS.fetch_sub(1, Ordering::SeqCst);
    Some(f.op)
}

/// `user_data` of completions nobody waits for (cancel requests).
const IGNORED: u64 = u64::MAX;

/// Identifies an in-flight operation (its `user_data`).
pub type OpId = u64;

/// One completion handed to the owner of the ring.
pub struct Completion {
    /// The tag given at submission (e.g. a connection index).
    pub tag: u64,
    /// The operation's id.
    pub id: OpId,
    /// Result: bytes, a descriptor, or `-errno`.
    pub res: i32,
    /// CQE flags (buffer id, `MORE`, `NOTIF`).
    pub flags: u32,
    /// The operation with its buffers, on its last completion only.
    pub op: Option<Op>,
    /// The op was cancelled; reported only because the completion
    /// consumed a provided buffer that must go back to its ring.
    pub orphan: bool,
}

impl Completion {
    /// More completions will follow for this operation.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
    /// A zero-copy send's notification (the buffers are released).
    pub fn notif(&self) -> bool {
        cqueue::notif(self.flags)
    }
    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

struct InFlight {
    op: Op,
    tag: u64,
    /// Cancelled by its owner: drop the buffers at the last completion.
    orphan: bool,
}

/// Wakes the ring's thread from another thread with one `write(2)`.
pub struct RingWaker {
    fd: OwnedFd,
    /// Set by the ring thread before it sleeps.
    pub sleeping: AtomicBool,
}

impl RingWaker {
    /// Wakes the thread if it announced sleep.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake_now();
        }
    }

    /// Wakes the thread unconditionally.
    pub fn wake_now(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// An io_uring instance owning every operation submitted through it.
pub struct Ring {
    ring: IoUring,
    ops: Slab<InFlight>,
    waker: Arc<RingWaker>,
    wake_armed: bool,
    draining: bool,
    unsubmitted: usize,
}

impl Ring {
    /// A ring with `entries` submission slots (completion queue 4×) and
    /// no SQPOLL (see the module docs for why).
    ///
    /// # Errors
    /// Ring or eventfd creation failures (`EPERM`/`ENOSYS` where io_uring
    /// is forbidden).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(entries * 4)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)?;
        // SAFETY: plain syscall; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut r = Ring {
            ring,
            ops: Slab::new(),
            waker: Arc::new(RingWaker {
                fd,
                sleeping: AtomicBool::new(false),
            }),
            wake_armed: false,
            draining: false,
            unsubmitted: 0,
        };
        r.arm_wake()?;
        Ok(r)
    }

    /// The underlying ring (for buffer ring registration).
    pub(super) fn raw(&self) -> &IoUring {
        &self.ring
    }

    /// The waker other threads use.
    pub fn waker(&self) -> Arc<RingWaker> {
        self.waker.clone()
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let fd = self.waker.fd.as_raw_fd();
        self.push(
            Op::ReadEvent {
                fd,
                buf: Box::new([0; 8]),
            },
            IGNORED - 1,
        )?;
        self.wake_armed = true;
        Ok(())
    }

    /// Submits `op`; `tag` comes back with its completions. The op and its
    /// buffers stay in the ring until its last completion.
    ///
    /// # Errors
    /// Submission failures.
    pub fn push(&mut self, op: Op, tag: u64) -> io::Result<OpId> {
        let id = self.ops.insert(InFlight {
            op,
            tag,
            orphan: false,
        });
        LIVE_OPS.fetch_add(1, Ordering::SeqCst);
        let entry = self
            .ops
            .get_mut(id)
            .map(|f| f.op.entry())
            .expect("just inserted")
            .user_data(id);
        if let Err(e) = self.push_entry(&entry) {
            self.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    fn push_entry(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in `e` refers to heap memory owned by an
            // op held in `self.ops` until its last completion (see `op.rs`),
            // or to nothing (cancel by user_data).
            let pushed = unsafe { self.ring.submission().push(e) };
            if pushed.is_ok() {
                self.unsubmitted += 1;
                return Ok(());
            }
            // Submission queue full: hand the batch to the kernel.
            self.ring.submit()?;
            self.unsubmitted = 0;
        }
    }

    fn remove(&mut self, id: OpId) -> Option<Op> {
        take_op(&mut self.ops, id)
    }

    /// Cancels `id`: its buffers are dropped when its last completion
    /// arrives, which is not reported.
    pub fn cancel(&mut self, id: OpId) {
        if let Some(f) = self.ops.get_mut(id) {
            f.orphan = true;
            let e = opcode::AsyncCancel::new(id).build().user_data(IGNORED);
            let _ = self.push_entry(&e);
        }
    }

    /// Asks the kernel to end `id` (a multishot receive) without
    /// orphaning it: completions already under way, data included, still
    /// come back as usual, and the last one (`-ECANCELED` when the cancel
    /// ended it) returns the op. For pausing a connection without losing
    /// bytes.
    pub fn stop(&mut self, id: OpId) {
        if self.ops.get(id).is_some() {
            let e = opcode::AsyncCancel::new(id).build().user_data(IGNORED);
            let _ = self.push_entry(&e);
        }
    }

    /// Operations in flight (the internal wake-up read included).
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Hands queued submissions to the kernel without waiting; makes no
    /// system call when there is nothing to submit or run.
    ///
    /// # Errors
    /// `io_uring_enter` failures other than `EINTR`/`EBUSY`.
    pub fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted == 0 && !self.ring.submission().taskrun() {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => {
                self.unsubmitted = 0;
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits and sleeps until a completion arrives or `timeout` passes.
    ///
    /// # Errors
    /// `io_uring_enter` failures other than `EINTR`/`ETIME`/`EBUSY`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if !self.ring.completion().is_empty() {
            return self.submit();
        }
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {
                self.unsubmitted = 0;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::ETIME | libc::EBUSY)
                ) =>
            {
                self.unsubmitted = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves completions into `out`; drops the buffers of cancelled ops
    /// and re-arms the wake-up read. Returns how many CQEs were seen.
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let mut n = 0;
        let mut rearm = false;
        {
            let cq = self.ring.completion();
            for cqe in cq {
                n += 1;
                let ud = cqe.user_data();
                if ud == IGNORED {
                    continue;
                }
                let more = cqueue::more(cqe.flags());
                let Some(f) = self.ops.get(ud) else { continue };
                if f.tag == IGNORED - 1 {
                    if !more {
                        take_op(&mut self.ops, ud);
                        rearm = true;
                    }
                    continue;
                }
                let orphan = f.orphan;
                let tag = f.tag;
                let op = if more {
                    None
                } else {
                    take_op(&mut self.ops, ud)
                };
                if orphan && cqueue::buffer_select(cqe.flags()).is_none() {
                    // Its buffers (if final) drop here, after the kernel is done.
                    continue;
                }
                out.push(Completion {
                    tag,
                    id: ud,
                    res: cqe.result(),
                    flags: cqe.flags(),
                    op: if orphan { None } else { op },
                    orphan,
                });
            }
        }
        if rearm && !self.draining {
            self.wake_armed = false;
            if self.arm_wake().is_err() {
                crate::sr_log!(Error, "io_uring: cannot re-arm the wake-up read");
            }
        }
        n
    }

    /// Cancels everything and waits (up to `limit`) for every last
    /// completion. Returns true if nothing is left in flight; otherwise the
    /// remaining buffers are leaked rather than freed under the kernel.
    pub fn drain(&mut self, limit: Duration) -> bool {
        self.draining = true;
        for id in self.ops.ids() {
            self.cancel(id);
        }
        let deadline = Instant::now() + limit;
        let mut sink = Vec::new();
        while self.ops.len() > 0 && Instant::now() < deadline {
            let _ = self.wait(Duration::from_millis(10));
            self.reap(&mut sink);
            // A re-armed wake-up read must be cancelled too.
            for id in self.ops.ids() {
                if self.ops.get(id).is_some_and(|f| !f.orphan) {
                    self.cancel(id);
                }
            }
            sink.clear();
        }
        let clean = self.ops.len() == 0;
        if !clean {
            crate::sr_log!(
                Error,
                "io_uring: {} operations did not complete; leaking their buffers",
                self.ops.len()
            );
            let left = self.ops.take_all();
            LEAKED_OPS.fetch_add(left.len(), Ordering::SeqCst);
            LIVE_OPS.fetch_sub(left.len(), Ordering::SeqCst);
            std::mem::forget(left);
        }
        clean
    }

    /// Raw descriptor of the ring (diagnostics).
    pub fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.ops.len() > 0 {
            self.drain(Duration::from_secs(5));
        }
    }
}
