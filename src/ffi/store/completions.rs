//! The engine behind the asynchronous calls of `sr_session_store`
//! (`sr_session_store_commit_async`, `_get_async`, ...): one completion
//! thread per store (started by the first asynchronous call), a bounded
//! table of operations in flight, and an eventfd plus a queue for hosts
//! that reap completions from their own event loop.
//!
//! Each operation completes exactly once: with its outcome, with
//! `SR_TIMEOUT` at its deadline, or with `SR_SHUTDOWN` when the store
//! closes. Outcomes arrive through wakers on the session slots; the
//! wakers run under the store's lock, so they only note the ticket and
//! signal this thread, which delivers outside every lock.

use crate::error::Error;
use crate::ffi::session::SessionHandle;
use crate::ffi::{into_handle, sr_addr, sr_result, sr_session, Fail, Userdata};
use crate::session::{CommitHandle, FetchHandle, LookupStep, SessionStore, StoreLookup};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::Instant;

/// Which call started an asynchronous operation.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_async_kind {
    /// `sr_session_store_commit_async`.
    SR_ASYNC_COMMIT = 1,
    /// `sr_session_store_create_async`.
    SR_ASYNC_CREATE = 2,
    /// `sr_session_store_invalidate_async`.
    SR_ASYNC_INVALIDATE = 3,
    /// `sr_session_store_get_async`.
    SR_ASYNC_GET = 4,
}

/// How one asynchronous operation ended: passed to its completion callback
/// (valid during the call) or copied out by `sr_session_store_reap`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_completion {
    /// The ticket the starting call wrote to `*out_ticket`.
    pub ticket: u64,
    /// Which call started it.
    pub kind: sr_async_kind,
    /// The outcome: as the blocking call with the same name would return
    /// (`SR_OK`, `SR_NOT_FOUND`, `SR_MOVED`, `SR_CONFLICT`,
    /// `SR_REMOTE_FAILURE`, `SR_UNREACHABLE`, ...), or `SR_TIMEOUT` (the
    /// deadline passed; a commit may still be acknowledged later) or
    /// `SR_SHUTDOWN` (the store closed first).
    pub result: sr_result,
    /// Commits, creates, invalidations with `SR_OK`: the copies that hold
    /// the change, this node's included; 0 otherwise.
    pub copies: usize,
    /// `SR_ASYNC_GET` with `SR_OK`: the snapshot, now owned by the receiver
    /// of the completion (free it with `sr_session_free`); NULL otherwise.
    pub session: *mut sr_session,
    /// `SR_ASYNC_GET` with `SR_MOVED`: the member the session was handed
    /// to (see `sr_session_store_member_payload`); `family` 0 otherwise.
    pub moved: sr_addr,
    /// The `userdata` given to the starting call.
    pub userdata: *mut c_void,
}

/// Called once per asynchronous operation started with a callback, on the
/// store's completion thread (`sr-session-async`), with the `userdata` of
/// the starting call; `completion` is valid during the call. For a failed
/// operation (other than `SR_TIMEOUT` and `SR_SHUTDOWN`),
/// `sr_last_error_message` gives the detail during the call.
pub type sr_completion_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, completion: *const sr_completion)>;

/// Where a completion goes.
#[derive(Clone, Copy)]
pub(crate) enum Deliver {
    /// To this callback, on the completion thread.
    Callback(unsafe extern "C" fn(*mut c_void, *const sr_completion)),
    /// To the reap queue (the eventfd becomes readable).
    Reap,
}

/// What is in flight.
pub(crate) enum Op {
    /// A commit, create or invalidation.
    Commit(CommitHandle),
    /// A read: `fetch` is the primary's answer on its way, else the next
    /// lookup step is due at `retry_at`.
    Get {
        id: Bytes,
        fetch: Option<FetchHandle>,
        retry_at: Instant,
    },
    /// The store refused it at the start: complete with this code and
    /// detail.
    Refused(sr_result, String),
}

struct Pending {
    kind: sr_async_kind,
    op: Op,
    deadline: Instant,
    deliver: Deliver,
    userdata: Userdata,
}

/// A completion owned by the library until delivered. Its session (if
/// any) is freed if it is never handed out.
struct Done {
    c: sr_completion,
    deliver: Deliver,
    /// Why it failed, for `sr_last_error_message` inside the callback.
    detail: Option<String>,
}

// SAFETY: `session` is a handle this module made and owns until it hands
// the completion out; `userdata` is the caller's and only handed back.
unsafe impl Send for Done {}

impl Drop for Done {
    fn drop(&mut self) {
        // SAFETY: a non-NULL session was made by `into_handle` here and
        // not handed out (handing out nulls it).
        unsafe { crate::ffi::free_handle(self.c.session) }
    }
}

impl Done {
    /// Hands the completion out: the receiver owns the session now.
    fn take(mut self) -> sr_completion {
        let c = self.c;
        self.c.session = std::ptr::null_mut();
        c
    }
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    /// Started and not yet handed out: pending, starting, queued for
    /// reaping, or about to be passed to its callback.
    outstanding: usize,
    /// Reserved by a starting call that has not inserted its op yet.
    starting: usize,
    pending: HashMap<u64, Pending>,
    /// Tickets whose outcome arrived (or is due at once).
    fired: Vec<u64>,
    /// Completed, waiting for `sr_session_store_reap`.
    ready: VecDeque<Done>,
    stopping: bool,
}

struct Shared {
    st: Mutex<State>,
    cv: Condvar,
    cap: usize,
    efd: OwnedFd,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fire(&self, ticket: u64) {
        self.lock().fired.push(ticket);
        self.cv.notify_one();
    }

    fn signal_fd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        // A full counter (EAGAIN) is still readable, which is all we need.
        let _ = unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn clear_fd(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from an eventfd we own
        // (non-blocking: EAGAIN when already clear).
        let _ = unsafe { libc::read(self.efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// The asynchronous operations of one store.
pub(crate) struct AsyncOps {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl AsyncOps {
    /// Creates the eventfd and starts the completion thread.
    pub(crate) fn start(store: Arc<SessionStore>, cap: usize) -> Result<AsyncOps, Fail> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Fail::new(
                sr_result::SR_IO,
                format!("eventfd: {}", std::io::Error::last_os_error()),
            ));
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            st: Mutex::new(State::default()),
            cv: Condvar::new(),
            cap,
            efd,
        });
        let s = shared.clone();
        let thread = crate::driver::sys::ThreadBuilder::new()
            .name("sr-session-async".into())
            .spawn(move || run(&s, &store))
            .map_err(|e| Fail::new(sr_result::SR_IO, format!("completion thread: {e}")))?;
        Ok(AsyncOps {
            shared,
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The eventfd that is readable while completions wait to be reaped.
    pub(crate) fn fd(&self) -> RawFd {
        self.shared.efd.as_raw_fd()
    }

    /// True on the completion thread (inside a completion callback).
    pub(crate) fn is_completion_thread(&self) -> bool {
        std::thread::current().id() == self.thread_id
    }

    /// Starts one operation: reserves a place (`SR_QUEUE_FULL` past the
    /// cap, `SR_SHUTDOWN` once closing), runs `begin` (the store call) and
    /// hands its op to the completion thread. Returns the ticket.
    pub(crate) fn submit(
        &self,
        kind: sr_async_kind,
        deadline: Instant,
        deliver: Deliver,
        userdata: *mut c_void,
        begin: impl FnOnce() -> Op,
    ) -> Result<u64, Fail> {
        let ticket = {
            let mut g = self.shared.lock();
            if g.stopping {
                return Err(Fail::new(sr_result::SR_SHUTDOWN, "the store is closed"));
            }
            if g.outstanding >= self.shared.cap {
                return Err(Fail::new(
                    sr_result::SR_QUEUE_FULL,
                    format!(
                        "{} asynchronous operations outstanding (maxAsyncOperations): \
                         reap or wait for completions first",
                        g.outstanding
                    ),
                ));
            }
            g.outstanding += 1;
            g.starting += 1;
            g.next_ticket += 1;
            g.next_ticket
        };
        // Even a panic in `begin` must not leave the reservation behind.
        let op = std::panic::catch_unwind(std::panic::AssertUnwindSafe(begin))
            .unwrap_or_else(|_| Op::Refused(sr_result::SR_PANIC, "internal error (panic)".into()));
        let handle = match &op {
            Op::Commit(h) => Some(h.clone()),
            _ => None,
        };
        {
            let mut g = self.shared.lock();
            g.starting -= 1;
            if !matches!(op, Op::Commit(_)) {
                g.fired.push(ticket);
            }
            g.pending.insert(
                ticket,
                Pending {
                    kind,
                    op,
                    deadline,
                    deliver,
                    userdata: Userdata(userdata),
                },
            );
        }
        self.shared.cv.notify_one();
        if let Some(h) = handle {
            h.on_complete(waker(&self.shared, ticket));
        }
        Ok(ticket)
    }

    /// Moves up to `out.len()` reaped completions into `out`; returns how
    /// many. Clears the eventfd once the queue is empty.
    pub(crate) fn reap(&self, out: &mut [std::mem::MaybeUninit<sr_completion>]) -> usize {
        let mut g = self.shared.lock();
        let mut n = 0;
        while n < out.len() {
            let Some(d) = g.ready.pop_front() else { break };
            out[n].write(d.take());
            g.outstanding -= 1;
            n += 1;
        }
        if g.ready.is_empty() {
            self.shared.clear_fd();
        }
        n
    }

    /// Completes everything still in flight with `SR_SHUTDOWN` (callbacks
    /// run before this returns) and stops the thread. Reaped completions
    /// stay reapable. Idempotent.
    pub(crate) fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for AsyncOps {
    fn drop(&mut self) {
        self.stop();
    }
}

fn waker(shared: &Arc<Shared>, ticket: u64) -> impl FnOnce() + Send + 'static {
    let w: Weak<Shared> = Arc::downgrade(shared);
    move || {
        if let Some(s) = w.upgrade() {
            s.fire(ticket);
        }
    }
}

/// The completion thread.
fn run(shared: &Arc<Shared>, store: &SessionStore) {
    loop {
        let mut g = shared.lock();
        loop {
            if !g.fired.is_empty() || g.stopping {
                break;
            }
            let next = g.pending.values().map(next_due).min();
            let now = Instant::now();
            match next {
                Some(t) if t <= now => break,
                Some(t) => {
                    g = shared
                        .cv
                        .wait_timeout(g, t - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => g = shared.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            }
        }
        let now = Instant::now();
        let stopping = g.stopping;
        let mut work: Vec<(u64, Pending)> = Vec::new();
        let fired = std::mem::take(&mut g.fired);
        for t in fired {
            if let Some(p) = g.pending.remove(&t) {
                work.push((t, p));
            }
        }
        let due: Vec<u64> = g
            .pending
            .iter()
            .filter(|(_, p)| stopping || next_due(p) <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            if let Some(p) = g.pending.remove(&t) {
                work.push((t, p));
            }
        }
        drop(g);

        let mut again: Vec<(u64, Pending)> = Vec::new();
        let mut done: Vec<Done> = Vec::new();
        for (t, p) in work {
            match resolve(t, p, store, stopping) {
                Ok(d) => done.push(d),
                Err(p) => again.push((t, p)),
            }
        }
        let mut wake = Vec::new();
        if !again.is_empty() {
            let mut g = shared.lock();
            for (t, p) in again {
                if let Op::Get { fetch: Some(h), .. } = &p.op {
                    wake.push((t, h.clone()));
                }
                g.pending.insert(t, p);
            }
        }
        for (t, h) in wake {
            h.on_complete(waker(shared, t));
        }
        deliver(shared, done);

        let g = shared.lock();
        if g.stopping && g.pending.is_empty() && g.fired.is_empty() && g.starting == 0 {
            return;
        }
    }
}

/// When a pending op needs the thread without an outcome: its deadline,
/// or its next lookup step.
fn next_due(p: &Pending) -> Instant {
    match &p.op {
        Op::Get {
            fetch: None,
            retry_at,
            ..
        } => (*retry_at).min(p.deadline),
        _ => p.deadline,
    }
}

/// The completion of `p` if it has one now; else `p` back, to wait on.
fn resolve(
    ticket: u64,
    mut p: Pending,
    store: &SessionStore,
    stopping: bool,
) -> Result<Done, Pending> {
    let now = Instant::now();
    let late = if stopping {
        sr_result::SR_SHUTDOWN
    } else {
        sr_result::SR_TIMEOUT
    };
    let expired = stopping || now >= p.deadline;
    let mut c = sr_completion {
        ticket,
        kind: p.kind,
        result: sr_result::SR_OK,
        copies: 0,
        session: std::ptr::null_mut(),
        moved: sr_addr::default(),
        userdata: p.userdata.get(),
    };
    let mut detail = None;
    let mut fail = |c: &mut sr_completion, e: &Error| {
        c.result = sr_result::from_error(e);
        detail = Some(crate::ffi::result::error_detail(e));
    };
    match &mut p.op {
        Op::Refused(code, why) => {
            c.result = *code;
            detail = Some(std::mem::take(why));
        }
        Op::Commit(h) => match h.try_result() {
            Some(Ok(n)) => c.copies = n,
            Some(Err(e)) => fail(&mut c, &e),
            None if expired => c.result = late,
            None => return Err(p),
        },
        Op::Get {
            id,
            fetch,
            retry_at,
        } => {
            let step = match fetch.take() {
                Some(h) => match h.outcome() {
                    Some(step) => step,
                    None if expired => Err(Error::Timeout),
                    None => {
                        *fetch = Some(h);
                        return Err(p);
                    }
                },
                None if expired => Err(Error::Timeout),
                None => Ok(store.lookup_step(id)),
            };
            match step {
                Ok(LookupStep::Done(found)) => set_found(&mut c, found),
                Ok(LookupStep::Fetching(h)) => {
                    *fetch = Some(h);
                    return Err(p);
                }
                Ok(LookupStep::Retry) if !expired => {
                    *retry_at = now + crate::session::LOOKUP_RETRY;
                    return Err(p);
                }
                Ok(LookupStep::Retry) | Err(Error::Timeout) => c.result = late,
                Err(e) => fail(&mut c, &e),
            }
        }
    }
    Ok(Done {
        c,
        deliver: p.deliver,
        detail,
    })
}

fn set_found(c: &mut sr_completion, found: StoreLookup) {
    match found {
        StoreLookup::Local(s) => c.session = into_handle::<sr_session>(SessionHandle::new(s)),
        StoreLookup::Moved(a) => {
            c.result = sr_result::SR_MOVED;
            c.moved = a.into();
        }
        StoreLookup::NotFound => c.result = sr_result::SR_NOT_FOUND,
    }
}

/// Runs the callbacks (no lock held) and queues the rest for reaping.
fn deliver(shared: &Shared, done: Vec<Done>) {
    for mut d in done {
        match d.deliver {
            Deliver::Callback(f) => {
                if let Some(why) = d.detail.take() {
                    crate::ffi::set_last_error(&why);
                }
                let c = d.take();
                let ud = c.userdata;
                // Its place is free before the call, so that the callback
                // can start the next step (a commit after a read).
                shared.lock().outstanding -= 1;
                // A panic cannot unwind out of an extern "C" call; the
                // callback is C code.
                // SAFETY: `f` is the caller's valid function and `c` lives
                // through the call; the caller promised `userdata` may be
                // used from this thread.
                unsafe { f(ud, &c) };
            }
            Deliver::Reap => {
                // Pushed and signalled under the lock `reap` clears the fd
                // under, so the fd is readable exactly while the queue is
                // not empty.
                let mut g = shared.lock();
                g.ready.push_back(d);
                shared.signal_fd();
            }
        }
    }
}
