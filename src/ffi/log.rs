//! Routes the engine's log records to the host.

use super::{ffi_result, sr_result, Fail, Userdata};
use crate::log::{self, Level};
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

/// Severity of a log record; also the most verbose level passed to
/// `sr_set_log_callback`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_log_level {
    /// Something failed.
    SR_LOG_ERROR = 1,
    /// Something was refused or looks wrong, and the engine carried on.
    SR_LOG_WARN = 2,
    /// Life-cycle events.
    SR_LOG_INFO = 3,
    /// Detail for debugging.
    SR_LOG_DEBUG = 4,
}

/// Receives one log record: its level, the engine module that wrote it
/// (`target`) and the text, both NUL-terminated and valid until the
/// callback returns. Called on whichever library or caller thread logs,
/// possibly on several threads at once. It must not call
/// `sr_set_log_callback`.
pub type sr_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: sr_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

fn level_from(code: c_int) -> Result<Level, Fail> {
    Ok(match code {
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        4 => Level::Debug,
        n => {
            return Err(Fail::invalid(format!(
                "log level {n}: expected SR_LOG_ERROR..SR_LOG_DEBUG (1..4)"
            )))
        }
    })
}

fn c_level(l: Level) -> sr_log_level {
    match l {
        Level::Error => sr_log_level::SR_LOG_ERROR,
        Level::Warn => sr_log_level::SR_LOG_WARN,
        Level::Info => sr_log_level::SR_LOG_INFO,
        Level::Debug => sr_log_level::SR_LOG_DEBUG,
    }
}

/// Text as a C string; interior NULs become spaces.
fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Sends the library's log records of `level` (an `sr_log_level`) and more
/// severe to `cb(userdata, ...)`, process-wide, replacing any earlier
/// callback. `cb` NULL restores the default (stderr, at the level set here).
/// `userdata` must stay valid until the callback is replaced.
///
/// Returns `SR_OK` or `SR_INVALID_ARGUMENT` (bad level).
///
/// Thread safety: any thread. After it returns, new records go to the new
/// callback; a record being written on another thread at that moment may
/// still reach the old one.
///
/// # Safety
/// `cb` is NULL or a valid callback with this signature.
#[no_mangle]
pub unsafe extern "C" fn sr_set_log_callback(
    cb: sr_log_callback,
    userdata: *mut c_void,
    level: c_int,
) -> sr_result {
    ffi_result(|| {
        let level = level_from(level)?;
        let sink: Option<log::Sink> = cb.map(|f| {
            let ud = Userdata(userdata);
            let sink: log::Sink = Arc::new(move |l: Level, target: &str, msg: &str| {
                let (t, m) = (c_text(target), c_text(msg));
                // SAFETY: a valid callback (the caller's promise); the strings
                // live for the call.
                unsafe { f(ud.get(), c_level(l), t.as_ptr(), m.as_ptr()) }
            });
            sink
        });
        log::set_sink(sink);
        log::set_max_level(level);
        Ok(())
    })
}
