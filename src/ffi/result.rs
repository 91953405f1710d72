//! `sr_result`, its static descriptions, and the thread-local detail of the
//! last failure.

use super::{ffi_result, write_text};
use crate::Error;
use std::cell::RefCell;
use std::ffi::{c_char, c_int};

/// The result of every fallible `sr_*` function. `SR_OK` is 0. Numbers are
/// stable: a code is never renumbered or reused, new codes are appended in
/// their area's range (1–99 general, 100–199 configuration, 200–299 channel
/// and transport, 300–399 membership, 400–499 session store).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_result {
    /// Success.
    SR_OK = 0,
    /// A required pointer argument was NULL.
    SR_NULL_PARAMETER = 1,
    /// An argument was out of range, malformed or not UTF-8.
    SR_INVALID_ARGUMENT = 2,
    /// An internal error (a Rust panic) was caught at the boundary.
    SR_PANIC = 3,
    /// A caller buffer was too small; the needed length was reported.
    SR_INSUFFICIENT_SIZE = 4,
    /// An operating-system I/O error (bind, read, thread creation, ...).
    SR_IO = 5,
    /// The call is not allowed from inside one of the library's callbacks
    /// (it would wait for the thread that is running the callback).
    SR_IN_CALLBACK = 6,
    /// A configuration key is not known.
    SR_UNKNOWN_CONFIG_KEY = 100,
    /// A configuration value was refused for its key.
    SR_INVALID_CONFIG_VALUE = 101,
    /// The channel is not running.
    SR_NOT_RUNNING = 200,
    /// The channel is already running.
    SR_ALREADY_RUNNING = 201,
    /// The bounded send queue stayed full for `queueAddWaitTimeout`.
    SR_QUEUE_FULL = 202,
    /// No acknowledgement arrived within `ackTimeout`, or a flush did not
    /// finish in time.
    SR_TIMEOUT = 203,
    /// The receiver reported a failure (its listener refused the message).
    SR_REMOTE_FAILURE = 204,
    /// The member could not be reached (connect failed, connection lost).
    SR_UNREACHABLE = 205,
    /// Cancelled because the channel stopped.
    SR_SHUTDOWN = 206,
    /// The peer violated the protocol.
    SR_PROTOCOL = 207,
    /// A frame exceeded `maxFrameSize`.
    SR_FRAME_TOO_LARGE = 208,
    /// Decompression failed or exceeded `maxDecompressedSize`.
    SR_DECOMPRESS = 209,
    /// A ticket's outcomes are not all known yet.
    SR_PENDING = 210,
    /// There is no member to send to.
    SR_NO_MEMBERS = 300,
    /// A session was not found.
    SR_NOT_FOUND = 400,
    /// A conflicting operation (for example a session id already in use).
    SR_CONFLICT = 401,
    /// The session was handed to another member (this node drained); its
    /// address was reported.
    SR_MOVED = 402,
}

impl sr_result {
    /// The code for an engine error. One variant, one code.
    pub fn from_error(e: &Error) -> Self {
        use sr_result::*;
        match e {
            Error::InvalidArgument(_) => SR_INVALID_ARGUMENT,
            Error::UnknownConfigKey(_) => SR_UNKNOWN_CONFIG_KEY,
            Error::InvalidConfigValue { .. } => SR_INVALID_CONFIG_VALUE,
            Error::Io(_) => SR_IO,
            Error::Protocol(_) => SR_PROTOCOL,
            Error::FrameTooLarge { .. } => SR_FRAME_TOO_LARGE,
            Error::Decompress(_) => SR_DECOMPRESS,
            Error::QueueFull => SR_QUEUE_FULL,
            Error::Timeout => SR_TIMEOUT,
            Error::RemoteFailure(_) => SR_REMOTE_FAILURE,
            Error::Unreachable(_) => SR_UNREACHABLE,
            Error::NotRunning => SR_NOT_RUNNING,
            Error::AlreadyRunning => SR_ALREADY_RUNNING,
            Error::Shutdown => SR_SHUTDOWN,
            Error::NotFound => SR_NOT_FOUND,
            Error::Conflict(_) => SR_CONFLICT,
        }
    }

    /// Every code this version knows.
    pub(crate) const ALL: &'static [sr_result] = {
        use sr_result::*;
        &[
            SR_OK,
            SR_NULL_PARAMETER,
            SR_INVALID_ARGUMENT,
            SR_PANIC,
            SR_INSUFFICIENT_SIZE,
            SR_IO,
            SR_IN_CALLBACK,
            SR_UNKNOWN_CONFIG_KEY,
            SR_INVALID_CONFIG_VALUE,
            SR_NOT_RUNNING,
            SR_ALREADY_RUNNING,
            SR_QUEUE_FULL,
            SR_TIMEOUT,
            SR_REMOTE_FAILURE,
            SR_UNREACHABLE,
            SR_SHUTDOWN,
            SR_PROTOCOL,
            SR_FRAME_TOO_LARGE,
            SR_DECOMPRESS,
            SR_PENDING,
            SR_NO_MEMBERS,
            SR_NOT_FOUND,
            SR_CONFLICT,
            SR_MOVED,
        ]
    };

    fn description(code: c_int) -> &'static str {
        use sr_result::*;
        let Some(r) = Self::ALL.iter().find(|r| **r as c_int == code) else {
            return "unknown result code\0";
        };
        match r {
            SR_OK => "success\0",
            SR_NULL_PARAMETER => "a required pointer argument was NULL\0",
            SR_INVALID_ARGUMENT => "invalid argument\0",
            SR_PANIC => "internal error (panic caught at the C boundary)\0",
            SR_INSUFFICIENT_SIZE => "buffer too small\0",
            SR_IO => "I/O error\0",
            SR_IN_CALLBACK => "not allowed from inside a callback\0",
            SR_UNKNOWN_CONFIG_KEY => "unknown configuration key\0",
            SR_INVALID_CONFIG_VALUE => "invalid configuration value\0",
            SR_NOT_RUNNING => "channel not running\0",
            SR_ALREADY_RUNNING => "channel already running\0",
            SR_QUEUE_FULL => "send queue full\0",
            SR_TIMEOUT => "timed out\0",
            SR_REMOTE_FAILURE => "receiver reported failure\0",
            SR_UNREACHABLE => "member unreachable\0",
            SR_SHUTDOWN => "cancelled by shutdown\0",
            SR_PROTOCOL => "protocol error\0",
            SR_FRAME_TOO_LARGE => "frame too large\0",
            SR_DECOMPRESS => "decompression failed\0",
            SR_PENDING => "outcome pending\0",
            SR_NO_MEMBERS => "no members\0",
            SR_NOT_FOUND => "not found\0",
            SR_CONFLICT => "conflict\0",
            SR_MOVED => "session moved to another member\0",
        }
    }
}

/// A static, NUL-terminated English description of a result code. Any
/// integer is accepted; codes this version does not know give
/// `"unknown result code"`. Never NULL; never free it.
///
/// Thread safety: may be called from any thread at any time.
#[no_mangle]
pub extern "C" fn sr_result_message(result: c_int) -> *const c_char {
    super::ffi_value(c"internal error".as_ptr(), || {
        sr_result::description(result).as_ptr().cast()
    })
}

/// The last-error detail of an engine error: its text without the words
/// `sr_result_message` already gives for its code, so that a host printing
/// `"%s: %s"` of the two reads `receiver reported failure: listener
/// returned 7`, not the category twice. A reason that itself carries the
/// prefix (a failure relayed from member to member) is cut down to its
/// innermost reason.
pub(crate) fn error_detail(e: &Error) -> String {
    const REMOTE: &str = "receiver reported failure: ";
    const UNREACHABLE: &str = "member unreachable: ";
    let strip = |mut s: &str, prefix: &str| {
        while let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
        s.to_string()
    };
    match e {
        Error::RemoteFailure(r) => strip(r, REMOTE),
        Error::Unreachable(r) => strip(r, UNREACHABLE),
        other => other.to_string(),
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the detail of a failure on this thread.
pub(crate) fn set_last_error(detail: &str) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(detail);
        }
    });
}

/// Copies the detail of the most recent failed `sr_*` call on the calling
/// thread (for example `unknown configuration key 'foo'`) into `buf`,
/// NUL-terminated, and its length (without the NUL) into `*out_n`. The
/// detail is kept until the next failure on this thread (successful calls
/// do not clear it, as with `errno`); it is empty if nothing failed yet.
/// This function never changes it.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`out_n` NULL, or `buf` NULL with
/// `len > 0`) or `SR_INSUFFICIENT_SIZE`; with the latter, `*out_n` is set to
/// the needed length (without the NUL) and `buf` is left unchanged.
///
/// Thread safety: may be called from any thread; each thread has its own
/// detail. Inside an outcome callback it gives the detail of that outcome.
///
/// # Safety
/// `buf` is NULL or valid for writing `len` bytes; `out_n` is NULL or valid
/// for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn sr_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    let detail = LAST_ERROR
        .try_with(|e| e.try_borrow().map(|s| s.clone()).unwrap_or_default())
        .unwrap_or_default();
    // Failures of this very call must not overwrite the detail it reports.
    let saved = detail.clone();
    let r = ffi_result(|| {
        // SAFETY: forwarded from the caller.
        unsafe { write_text(&detail, buf, len, out_n) }
    });
    set_last_error(&saved);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_do_not_repeat_the_result_message() {
        let e = Error::RemoteFailure("receiver reported failure: listener returned 7".into());
        assert_eq!(error_detail(&e), "listener returned 7");
        let e = Error::Unreachable("127.0.0.1:4000: connection refused".into());
        assert_eq!(error_detail(&e), "127.0.0.1:4000: connection refused");
        let e = Error::UnknownConfigKey("foo".into());
        assert_eq!(error_detail(&e), "unknown configuration key 'foo'");
        // The description and the detail together name the category once.
        let e = Error::RemoteFailure("receiver reported failure: no".into());
        let code = sr_result::from_error(&e) as c_int;
        let text = format!(
            "{}: {}",
            sr_result::description(code).trim_end_matches('\0'),
            error_detail(&e)
        );
        assert_eq!(text, "receiver reported failure: no");
    }
}
