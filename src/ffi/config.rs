//! `sr_config`: a channel's configuration, set with Tomcat's attribute names
//! or typed setters.

use super::{arg_mut, arg_str, ffi_result, free_handle, into_handle, sr_result, Fail, Handle, Out};
use crate::config::{AckMode, ReplicationMode};
use crate::{Config, Error};
use std::ffi::{c_char, c_int};

/// A channel's configuration. Made by `sr_config_new`, freed by
/// `sr_config_free`; `sr_channel_new` copies it, so it may be freed or
/// changed afterwards without affecting the channel.
///
/// Thread safety: not synchronised. Use one `sr_config` from one thread at a
/// time (distinct configs may be used concurrently).
pub struct sr_config {
    _private: [u8; 0],
}

impl Handle for sr_config {
    type Inner = Config;
}

/// `replicationMode`: who writes a message and when `sr_channel_send`
/// returns. Values for `sr_config_set_replication_mode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_replication_mode {
    /// The caller's thread writes and, with an ack requested, waits for it.
    SR_MODE_SYNCHRONOUS = 0,
    /// Like synchronous, with a pool of connections per member.
    SR_MODE_POOLED = 1,
    /// Ordered per-member bounded queues, drained by one shared engine
    /// thread (no thread per member); a send is admitted to all its
    /// members or to none; outcomes go to the outcome callback.
    SR_MODE_ASYNCHRONOUS = 2,
    /// One bounded lock-free queue drained in batches by an I/O thread;
    /// outcomes go to the outcome callback.
    SR_MODE_FASTASYNCQUEUE = 3,
}

/// When the receiver acknowledges a message (`sr_send_options.ack`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_ack_mode {
    /// No acknowledgement: the outcome is "written".
    SR_ACK_NONE = 0,
    /// Acked as soon as the receiver decoded the frame.
    SR_ACK_RECEIPT = 1,
    /// Acked after the receiver's listener returned 0; a non-zero return
    /// makes the outcome `SR_REMOTE_FAILURE`.
    SR_ACK_DELIVERY = 2,
}

impl sr_ack_mode {
    pub(crate) fn to_rust(code: c_int) -> Result<AckMode, Fail> {
        match code {
            0 => Ok(AckMode::None),
            1 => Ok(AckMode::Receipt),
            2 => Ok(AckMode::Delivery),
            n => Err(Fail::invalid(format!(
                "ack mode {n}: expected SR_ACK_NONE, SR_ACK_RECEIPT or SR_ACK_DELIVERY"
            ))),
        }
    }

    pub(crate) fn from_rust(a: AckMode) -> Self {
        match a {
            AckMode::None => Self::SR_ACK_NONE,
            AckMode::Receipt => Self::SR_ACK_RECEIPT,
            AckMode::Delivery => Self::SR_ACK_DELIVERY,
        }
    }
}

/// Makes a configuration with the defaults (see `docs/C-API.md` and the
/// Rust `Config` docs) into `*out`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`. `*out` is written only on
/// `SR_OK`; free it with `sr_config_free`.
///
/// Thread safety: may be called from any thread.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_config_new(out: *mut *mut sr_config) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(into_handle(Config::default()));
        Ok(())
    })
}

/// Frees a configuration. NULL does nothing.
///
/// Thread safety: no other thread may be using `cfg`.
///
/// # Safety
/// `cfg` is NULL or from `sr_config_new` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_config_free(cfg: *mut sr_config) {
    super::ffi_value((), || {
        // SAFETY: forwarded from the caller.
        unsafe { free_handle(cfg) }
    })
}

/// Sets one key, by Tomcat's attribute name (`replicationMode`,
/// `ackTimeout`, `tcpListenPort`, `mcastAddr`, ...), from its text value.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_ARGUMENT` (not UTF-8),
/// `SR_UNKNOWN_CONFIG_KEY` or `SR_INVALID_CONFIG_VALUE`; on failure the
/// configuration is unchanged (never a silent default) and
/// `sr_last_error_message` names the key and the reason.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`; `key` and `value` are NULL or
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set(
    cfg: *mut sr_config,
    key: *const c_char,
    value: *const c_char,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        // SAFETY: forwarded from the caller.
        let key = unsafe { arg_str(key, "key") }?;
        // SAFETY: forwarded from the caller.
        let value = unsafe { arg_str(value, "value") }?;
        set_atomically(cfg, key, value)
    })
}

/// `Config::set` on a copy, committed only on success, so that a refused
/// value can never leave a half-set configuration behind.
fn set_atomically(cfg: &mut Config, key: &str, value: &str) -> Result<(), Fail> {
    let mut next = cfg.clone();
    next.set(key, value)?;
    *cfg = next;
    Ok(())
}

/// Reads a configuration file: one `key=value` per line (Tomcat's names),
/// `#` comments and blank lines ignored.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_IO` (cannot read the file),
/// `SR_INVALID_ARGUMENT` (a line without `=`, not UTF-8),
/// `SR_UNKNOWN_CONFIG_KEY` or `SR_INVALID_CONFIG_VALUE`. On failure the
/// configuration is unchanged and `sr_last_error_message` gives the path and
/// line number.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sr_config_load_file(
    cfg: *mut sr_config,
    path: *const c_char,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        // SAFETY: forwarded from the caller.
        let path = unsafe { arg_str(path, "path") }?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Fail::new(sr_result::SR_IO, format!("{path}: {e}")))?;
        // Line by line (rather than Config::parse_file_text) so that the
        // code says which kind of error the line had.
        let mut next = cfg.clone();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |f: Fail| Fail::new(f.code, format!("{path}:{}: {}", n + 1, f.detail));
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| at(Fail::invalid("expected key=value")))?;
            next.set(k, v).map_err(|e| at(e.into()))?;
        }
        *cfg = next;
        Ok(())
    })
}

/// Sets `replicationMode` to an `sr_replication_mode` value.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE` (not
/// one of the `SR_MODE_*` values).
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_replication_mode(
    cfg: *mut sr_config,
    mode: c_int,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        cfg.replication_mode = match mode {
            0 => ReplicationMode::Synchronous,
            1 => ReplicationMode::Pooled,
            2 => ReplicationMode::Asynchronous,
            3 => ReplicationMode::FastAsyncQueue,
            n => {
                return Err(Error::InvalidConfigValue {
                    key: "replicationMode".into(),
                    reason: format!("{n} is not an sr_replication_mode"),
                }
                .into())
            }
        };
        Ok(())
    })
}

/// Sets `ackTimeout` in milliseconds (1 ms to 24 h).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE`.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_ack_timeout_ms(cfg: *mut sr_config, ms: u64) -> sr_result {
    // SAFETY: forwarded from the caller.
    unsafe { set_text(cfg, "ackTimeout", &ms.to_string()) }
}

/// Sets the receiver's address and port (`tcpListenAddress`,
/// `tcpListenPort`); port 0 picks a free port when the channel starts (read
/// it with `sr_channel_local_port`).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE` (not an
/// IP address).
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`; `ip` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_listen(
    cfg: *mut sr_config,
    ip: *const c_char,
    port: u16,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        // SAFETY: forwarded from the caller.
        let ip = unsafe { arg_str(ip, "ip") }?;
        let mut next = cfg.clone();
        next.set("tcpListenAddress", ip)?;
        next.tcp_listen_port = port;
        *cfg = next;
        Ok(())
    })
}

/// Sets the default acknowledgement of sends (`waitForAck`, `syncAck`) to an
/// `sr_ack_mode` value; `sr_send_options` can override it per send.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE`.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_ack_mode(cfg: *mut sr_config, ack: c_int) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        let ack = sr_ack_mode::to_rust(ack).map_err(|f| {
            Fail::new(
                sr_result::SR_INVALID_CONFIG_VALUE,
                format!("waitForAck/syncAck: {}", f.detail),
            )
        })?;
        cfg.wait_for_ack = ack != AckMode::None;
        cfg.sync_ack = ack == AckMode::Delivery;
        Ok(())
    })
}

/// Sets `compress` (non-zero = compress payloads of at least
/// `compressionMinSize` bytes by default).
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_compress(cfg: *mut sr_config, on: c_int) -> sr_result {
    // SAFETY: forwarded from the caller.
    unsafe { set_text(cfg, "compress", if on != 0 { "true" } else { "false" }) }
}

/// Sets `tcpThreadCount`: listener worker threads (0 = messages are
/// delivered on the receiver's selector thread).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE`.
///
/// Thread safety: see `sr_config`.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
#[no_mangle]
pub unsafe extern "C" fn sr_config_set_worker_threads(cfg: *mut sr_config, n: u32) -> sr_result {
    // SAFETY: forwarded from the caller.
    unsafe { set_text(cfg, "tcpThreadCount", &n.to_string()) }
}

/// A typed setter through `Config::set`, so that both paths share one
/// validation and one error text.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`.
unsafe fn set_text(cfg: *mut sr_config, key: &str, value: &str) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        set_atomically(cfg, key, value)
    })
}
