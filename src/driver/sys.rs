//! Raw system calls for the hot path, each behind a safe signature.

use bytes::{BufMut, BytesMut};
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// Reads once from `fd` into the spare capacity of `buf` (reserving
/// `min_spare` bytes first), without zero-filling. Returns bytes read; 0
/// means end of stream.
///
/// # Errors
/// The OS error (including `WouldBlock` on a non-blocking socket).
pub(crate) fn read_into(fd: RawFd, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let spare = buf.chunk_mut();
    let cap = spare.len();
    // SAFETY: `spare` is writable memory of `cap` bytes owned by `buf`; the
    // kernel writes at most `cap` bytes; we advance by exactly what it wrote.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr() as *mut libc::c_void, cap) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised `n <= cap` bytes.
    unsafe { buf.advance_mut(n as usize) };
    Ok(n as usize)
}

/// Like [`read_into`] but never blocks, even on a blocking socket
/// (`recv` with `MSG_DONTWAIT`): `WouldBlock` when nothing is there yet.
///
/// # Errors
/// The OS error.
pub(crate) fn try_read_into(fd: RawFd, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let spare = buf.chunk_mut();
    let cap = spare.len();
    // SAFETY: as in `read_into`: the kernel writes at most `cap` bytes into
    // memory `buf` owns, and we advance by exactly what it wrote.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr() as *mut libc::c_void,
            cap,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised `n <= cap` bytes.
    unsafe { buf.advance_mut(n as usize) };
    Ok(n as usize)
}

/// One read that never blocks ([`try_read_into`]), retried on `EINTR`:
/// `Ok(None)` when the socket has nothing yet.
///
/// # Errors
/// The OS error.
pub(crate) fn read_now(fd: RawFd, buf: &mut BytesMut, want: usize) -> io::Result<Option<usize>> {
    loop {
        match try_read_into(fd, buf, want) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Most iovecs one `writev` takes on Linux.
pub const IOV_MAX: usize = 1024;

/// `sendmsg` flags of every socket write: a peer that closed gives `EPIPE`,
/// never a SIGPIPE that would kill a host process with the default
/// disposition.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
// Targets without MSG_NOSIGNAL (macOS) would need SO_NOSIGPIPE on each
// socket; this crate is built and tested on Linux only.
const SEND_FLAGS: libc::c_int = 0;

/// One gathered `sendmsg` with [`SEND_FLAGS`] (`writev` would raise SIGPIPE
/// on a socket whose peer closed).
fn sendmsg_iov(fd: RawFd, iov: *const libc::iovec, cnt: usize) -> io::Result<usize> {
    sendmsg_iov_flags(fd, iov, cnt, SEND_FLAGS)
}

fn sendmsg_iov_flags(
    fd: RawFd,
    iov: *const libc::iovec,
    cnt: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov as *mut libc::iovec;
    msg.msg_iovlen = cnt as _;
    // SAFETY: `msg` points at `cnt` iovecs the caller keeps alive and
    // borrowed for the duration of the call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd, &msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One gathered write of at most [`IOV_MAX`] slices to a socket (a
/// `sendmsg` with `MSG_NOSIGNAL`, so a closed peer is `EPIPE`, never
/// SIGPIPE). Returns bytes written.
///
/// # Errors
/// The OS error (including `WouldBlock`, `BrokenPipe`; `ENOTSOCK` if `fd`
/// is not a socket).
pub fn writev(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // IoSlice is ABI-compatible with iovec (std guarantees it on Unix).
    sendmsg_iov(
        fd,
        bufs.as_ptr() as *const libc::iovec,
        bufs.len().min(IOV_MAX),
    )
}

/// Writes every slice completely on a blocking socket (retrying on EINTR
/// and short writes), with as few `writev` calls as the kernel allows.
///
/// # Errors
/// The OS error; a zero-length write is reported as `WriteZero`.
pub fn writev_all(fd: RawFd, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    while !bufs.is_empty() {
        match writev(fd, bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An empty iovec, to fill a stack array of them.
pub const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// An iovec pointing at `b`. The caller keeps `b` alive and unmoved until
/// the `writev_iovecs` call using it returns.
#[inline]
pub(crate) fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// Fills `iov` for one gathered write: `ctl`, then the header and the
/// unsent payload of each frame, at most
/// [`FRAMES_PER_SEND`](crate::driver::FRAMES_PER_SEND) frames, stopping
/// before the first frame `stop` refuses (left in `frames`). Returns the
/// iovecs filled and the frames taken. The iovecs point into `ctl` and the
/// frames' buffers: keep those borrowed until the write returns.
pub(crate) fn gather_frames<'a, I: Iterator<Item = crate::driver::Frame<'a>>>(
    ctl: &[u8],
    frames: &mut std::iter::Peekable<I>,
    iov: &mut [libc::iovec; IOV_MAX],
    stop: impl Fn(&crate::driver::Frame<'a>) -> bool,
) -> (usize, usize) {
    let mut n = 0;
    if !ctl.is_empty() {
        iov[n] = iovec(ctl);
        n += 1;
    }
    let mut k = 0;
    while k < crate::driver::FRAMES_PER_SEND {
        if frames.peek().is_none_or(&stop) {
            break;
        }
        let Some(f) = frames.next() else { break };
        k += 1;
        if !f.head.is_empty() {
            iov[n] = iovec(f.head);
            n += 1;
        }
        if f.body.len() > f.skip {
            iov[n] = iovec(&f.body[f.skip..]);
            n += 1;
        }
    }
    (n, k)
}

/// A gathered write to a socket over iovecs built with [`iovec`] from
/// buffers the caller keeps borrowed for the duration of the call (a
/// `sendmsg` with `MSG_NOSIGNAL`, like [`writev`]).
///
/// # Errors
/// The OS error (including `WouldBlock`, `BrokenPipe`).
pub(crate) fn writev_iovecs(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    sendmsg_iov(fd, iov.as_ptr(), iov.len().min(IOV_MAX))
}

/// [`writev_iovecs`] that never blocks, whatever the socket's mode
/// (`MSG_DONTWAIT`): a full socket is `WouldBlock`. For sockets left in
/// blocking mode because io_uring operations run on them too.
///
/// # Errors
/// The OS error (including `WouldBlock`, `BrokenPipe`).
#[cfg(target_os = "linux")]
pub(crate) fn writev_iovecs_nonblocking(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    sendmsg_iov_flags(
        fd,
        iov.as_ptr(),
        iov.len().min(IOV_MAX),
        SEND_FLAGS | libc::MSG_DONTWAIT,
    )
}

/// The signals a library thread leaves unblocked: the synchronous fault
/// signals, which the kernel delivers to the faulting thread whatever its
/// mask (blocking them only loses the host's crash handler or sanitizer
/// report).
const FAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

/// Sets the calling thread's signal mask to `set`, returning the old one.
fn set_thread_sigmask(set: &libc::sigset_t) -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero sigset_t is valid storage for pthread_sigmask to
    // fill in.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned sigset_t values;
    // pthread_sigmask changes only the calling thread's mask.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, &mut old) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(old)
}

/// Every signal except [`FAULT_SIGNALS`].
fn library_thread_mask() -> libc::sigset_t {
    // SAFETY: sigfillset/sigdelset initialise and edit the set we own; the
    // signal numbers are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in FAULT_SIGNALS {
            libc::sigdelset(&mut set, s);
        }
        set
    }
}

/// Starts library threads: [`std::thread::Builder`] with every
/// asynchronous signal blocked in the new thread (SIGINT, SIGTERM, SIGPIPE,
/// SIGCHLD, SIGUSR1, ... — all but the fault signals), so the host's
/// signals go to the host's own threads and no handler of the host ever
/// runs on a library thread. Every thread the library starts goes through
/// here; call sites read like `std::thread::Builder`.
///
/// The mask is inherited, not set by the new thread, so there is no window
/// in which the thread runs with signals unblocked: the calling thread
/// blocks them around `spawn` and then restores its own mask.
#[derive(Debug, Default)]
pub struct ThreadBuilder {
    name: Option<String>,
}

impl ThreadBuilder {
    /// A builder for an unnamed thread.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the thread (shown by `top -H`, `/proc/<pid>/task/*/comm`).
    pub fn name(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }

    /// Spawns the thread with signals blocked (see the type's docs).
    ///
    /// # Errors
    /// Thread creation failure (or a failing `pthread_sigmask`).
    pub fn spawn<F, T>(self, f: F) -> io::Result<std::thread::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut b = std::thread::Builder::new();
        if let Some(n) = self.name {
            b = b.name(n);
        }
        let old = set_thread_sigmask(&library_thread_mask())?;
        let r = b.spawn(f);
        set_thread_sigmask(&old)?;
        r
    }
}

/// A set of the given signals.
fn sigset_of(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and edit a set we own; an
    // invalid number is refused by sigaddset (EINVAL) and left out.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `sigs` in the calling thread (threads it starts afterwards
/// inherit the mask), so that a program can take them synchronously with
/// [`wait_signal`] instead of installing a handler. For programs (the
/// `sessionrepl node` daemon); the library itself never calls it.
///
/// # Errors
/// A failing `pthread_sigmask`.
pub fn block_signals(sigs: &[libc::c_int]) -> io::Result<()> {
    let set = sigset_of(sigs);
    // SAFETY: `set` is initialised; a NULL old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` for one of `sigs` (blocked first with
/// [`block_signals`]) and takes it: `Some(signal)`, or `None` on timeout
/// or interruption.
///
/// # Errors
/// A failing `sigtimedwait` other than timeout or interruption.
pub fn wait_signal(
    sigs: &[libc::c_int],
    timeout: std::time::Duration,
) -> io::Result<Option<libc::c_int>> {
    let set = sigset_of(sigs);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are initialised; no siginfo is asked for.
    let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(Some(rc));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(e),
    }
}

/// True when a connect ended connected to itself: on loopback, a connect to
/// a free port inside the ephemeral range can pick that same port as its
/// source, and TCP's simultaneous open then joins the socket to itself (it
/// reads back what it writes). Every sender treats that as a failed
/// connect.
pub(crate) fn connected_to_itself(s: socket2::SockRef<'_>) -> bool {
    match (s.local_addr(), s.peer_addr()) {
        (Ok(l), Ok(p)) => l.as_socket().is_some() && l.as_socket() == p.as_socket(),
        _ => false,
    }
}

/// The reason given for [`connected_to_itself`].
pub(crate) const SELF_CONNECT: &str = "connected to itself (the destination port is free)";

/// A finished connect's result: a failure if it ended connected to itself.
pub(crate) fn check_connected(s: socket2::SockRef<'_>, res: io::Result<()>) -> io::Result<()> {
    match res {
        Ok(()) if connected_to_itself(s) => Err(io::Error::other(SELF_CONNECT)),
        r => r,
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`poll(2)`,
/// rounded up to whole milliseconds so a short wait never spins). Returns
/// how many entries have `revents` set; `EINTR` counts as zero.
///
/// # Errors
/// The OS error.
pub fn poll(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> io::Result<usize> {
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a live, exclusively borrowed slice of `fds.len()`
    // pollfd structs; the kernel writes only their `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn sigpipe_set() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise a set we own.
        unsafe {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut s);
            libc::sigaddset(&mut s, libc::SIGPIPE);
            s
        }
    }

    /// True if SIGPIPE is pending for this thread; consumes it.
    fn take_pending_sigpipe() -> bool {
        let set = sigpipe_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timeout; no siginfo wanted.
        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE }
    }

    fn thread_mask() -> libc::sigset_t {
        // SAFETY: SIG_BLOCK with a NULL set only reads the mask into `cur`.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
            cur
        }
    }

    fn is_member(set: &libc::sigset_t, sig: libc::c_int) -> bool {
        // SAFETY: `set` is an initialised sigset_t.
        unsafe { libc::sigismember(set, sig) == 1 }
    }

    #[test]
    fn socket_writes_to_a_closed_connection_fail_with_epipe_and_raise_no_sigpipe() {
        // Blocked, a SIGPIPE stays pending (even with the SIG_IGN the test
        // harness installs), so the test sees whether one was raised.
        std::thread::spawn(|| {
            let set = sigpipe_set();
            // SAFETY: blocks SIGPIPE in this test thread only.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let fd = c.as_raw_fd();
            let data = [7u8; 16];
            let e = writev(fd, &[IoSlice::new(&data)]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            let e = writev_iovecs(fd, &[iovec(&data)]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            let e = writev_all(fd, &mut [IoSlice::new(&data)]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            assert!(!take_pending_sigpipe(), "a helper raised SIGPIPE");
            // Control: a plain writev on the same socket does raise it, so
            // the check above can fail.
            let iov = iovec(&data);
            // SAFETY: one iovec over `data`, alive for the call.
            let n = unsafe { libc::writev(fd, &iov, 1) };
            assert_eq!(n, -1);
            assert!(take_pending_sigpipe(), "control writev raised no SIGPIPE");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_blocked_signal_is_taken_synchronously() {
        std::thread::spawn(|| {
            block_signals(&[libc::SIGUSR2]).unwrap();
            let t = std::time::Duration::from_millis(20);
            assert_eq!(wait_signal(&[libc::SIGUSR2], t).unwrap(), None);
            // SAFETY: raises SIGUSR2 at this thread, where it is blocked.
            unsafe { libc::raise(libc::SIGUSR2) };
            assert_eq!(
                wait_signal(&[libc::SIGUSR2], t).unwrap(),
                Some(libc::SIGUSR2)
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn library_threads_block_asynchronous_signals_and_the_caller_keeps_its_mask() {
        let before = thread_mask();
        let h = ThreadBuilder::new()
            .name("sr-test".into())
            .spawn(|| {
                let m = thread_mask();
                let blocked = [
                    libc::SIGINT,
                    libc::SIGTERM,
                    libc::SIGPIPE,
                    libc::SIGHUP,
                    libc::SIGCHLD,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                    libc::SIGALRM,
                    libc::SIGQUIT,
                ];
                let all = blocked.iter().all(|s| is_member(&m, *s));
                let faults_open = FAULT_SIGNALS.iter().all(|s| !is_member(&m, *s));
                (
                    all,
                    faults_open,
                    std::thread::current().name().map(String::from),
                )
            })
            .unwrap();
        let (all, faults_open, name) = h.join().unwrap();
        assert!(all, "an asynchronous signal is not blocked");
        assert!(faults_open, "a fault signal is blocked");
        assert_eq!(name.as_deref(), Some("sr-test"));
        let after = thread_mask();
        for s in 1..32 {
            assert_eq!(is_member(&before, s), is_member(&after, s), "signal {s}");
        }
    }
}
