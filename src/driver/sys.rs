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
pub fn read_into(fd: RawFd, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
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
pub fn try_read_into(fd: RawFd, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
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

/// Most iovecs one `writev` takes on Linux.
pub const IOV_MAX: usize = 1024;

/// One `writev` of at most [`IOV_MAX`] slices. Returns bytes written.
///
/// # Errors
/// The OS error (including `WouldBlock`).
pub fn writev(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let cnt = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: IoSlice is ABI-compatible with iovec; the slices stay borrowed
    // for the duration of the call.
    let n = unsafe { libc::writev(fd, bufs.as_ptr() as *const libc::iovec, cnt) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
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
pub fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// `writev` over iovecs built with [`iovec`] from buffers the caller keeps
/// borrowed for the duration of the call.
///
/// # Errors
/// The OS error (including `WouldBlock`).
pub fn writev_iovecs(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    let cnt = iov.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: each iovec points into a live buffer (see `iovec`); the kernel
    // only reads from them.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), cnt) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
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
