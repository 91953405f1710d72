//! `sr_channel`: start, send in every mode, stop; its counters are in
//! `stats`.

mod stats;

pub use stats::*;

use super::member::MemberCallback;
use super::message::lend;
use super::{
    arg_ref, arg_ref_plain, arg_slice, ffi_result, ffi_value, free_handle, into_handle, millis,
    set_last_error, sr_ack_mode, sr_addr, sr_config, sr_message, sr_result, sr_ticket, Fail,
    Handle, Out,
};
use crate::transport::SendOptions;
use crate::{Channel, Config};
use bytes::Bytes;
use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};

/// A replication channel: a receiver that delivers messages to the message
/// callback and senders in the configured `replicationMode`. Made by
/// `sr_channel_new` (stopped), started by `sr_channel_start`, freed by
/// `sr_channel_free`.
///
/// Thread safety: every `sr_channel_*` function may be called from any
/// thread, concurrently with the others, except `sr_channel_free`, which
/// must be the last call on the handle.
pub struct sr_channel {
    _private: [u8; 0],
}

/// Called for each received message, in order per sending connection, on
/// the receiver's selector thread (or one of `tcpThreadCount` worker
/// threads): never on the caller's thread, and never concurrently for one
/// connection. `msg` and the payload it points at are valid until the
/// callback returns; use `sr_message_retain` to keep the message longer.
/// Return 0 to accept; any other value makes a sender that asked for
/// `SR_ACK_DELIVERY` see `SR_REMOTE_FAILURE`. Keep it short: it holds up the
/// connection's later messages. It must not call `sr_channel_stop`,
/// `sr_channel_start` or `sr_channel_free` of its own channel (they return
/// `SR_IN_CALLBACK`).
pub type sr_message_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, msg: *const sr_message) -> c_int>;

/// Called once per message and destination in the asynchronous modes
/// (`SR_MODE_ASYNCHRONOUS`, `SR_MODE_FASTASYNCQUEUE`) with the message id
/// `sr_channel_send` returned, the destination and `SR_OK` (acked, or
/// written when no ack was asked) or the failure (`SR_REMOTE_FAILURE`,
/// `SR_TIMEOUT`, `SR_UNREACHABLE`, `SR_SHUTDOWN`, ...). Called on a sender
/// I/O thread, or on the thread calling `sr_channel_stop` for messages
/// cancelled by the stop. `dest` is valid until the callback returns;
/// `sr_last_error_message` on that thread gives the failure's detail. Keep
/// it short; it must not call `sr_channel_stop`, `sr_channel_start` or
/// `sr_channel_free` of its own channel.
pub type sr_outcome_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, id: u64, dest: *const sr_addr, result: sr_result),
>;

/// Called exactly once when the library no longer needs a buffer lent to
/// `sr_channel_send_borrowed`, on whichever thread drops the last
/// reference (the caller's thread, possibly before the send returns, or a
/// sender I/O thread). `data` and `len` are what was passed to the send.
pub type sr_release_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize)>;

/// Per-send options. Fill with `sr_send_options_default` and change what
/// you need, or pass NULL to a send for the channel's defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_send_options {
    /// An `sr_ack_mode` value.
    pub ack: c_int,
    /// Non-zero: compress the payload if it has at least
    /// `compressionMinSize` bytes.
    pub compress: c_int,
}

impl sr_send_options {
    fn to_rust(self) -> Result<SendOptions, Fail> {
        Ok(SendOptions {
            ack: sr_ack_mode::to_rust(self.ack)?,
            compress: self.compress != 0,
        })
    }
}

/// The C caller's `void *userdata`. The C side promises it may be used from
/// the threads the callbacks document.
#[derive(Clone, Copy)]
pub(crate) struct Userdata(pub(crate) *mut c_void);

// SAFETY: the pointer is never dereferenced by Rust; it is only handed back
// to C callbacks, whose documented threading the C caller agreed to.
unsafe impl Send for Userdata {}
// SAFETY: as above.
unsafe impl Sync for Userdata {}

impl Userdata {
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

#[derive(Clone, Copy)]
struct Callbacks {
    on_message: sr_message_callback,
    on_outcome: sr_outcome_callback,
    userdata: Userdata,
}

/// What an `sr_channel` pointer points at.
pub(crate) struct ChannelHandle {
    cfg: Config,
    callbacks: Callbacks,
    /// The membership callback, set before start.
    pub(super) on_member: Mutex<Option<MemberCallback>>,
    /// Serialises start, stop and free.
    pub(super) lifecycle: Mutex<()>,
    /// The running channel; senders clone it (an `Arc`) under a read lock.
    pub(super) running: RwLock<Option<Channel>>,
    /// The channel last stopped, for its final counters.
    last: Mutex<Option<Channel>>,
}

impl Handle for sr_channel {
    type Inner = ChannelHandle;
}

impl ChannelHandle {
    pub(super) fn key(&self) -> usize {
        self as *const Self as usize
    }

    pub(super) fn running(&self) -> Result<Channel, Fail> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| crate::Error::NotRunning.into())
    }

    /// The running channel, or the one last stopped.
    pub(super) fn current(&self) -> Result<Channel, Fail> {
        self.running().or_else(|f| {
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or(f)
        })
    }

    fn stop(&self) {
        let _g = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        let ch = self
            .running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(ch) = ch {
            ch.stop();
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(ch);
        }
    }
}

thread_local! {
    /// Channels whose callback this thread is running now.
    static IN_CALLBACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Runs a C callback of channel `key`, marking this thread as inside it.
pub(crate) fn in_callback_of<R>(key: usize, f: impl FnOnce() -> R) -> R {
    struct Leave(usize);
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = IN_CALLBACK.try_with(|v| {
                let mut v = v.borrow_mut();
                if let Some(i) = v.iter().rposition(|k| *k == self.0) {
                    v.remove(i);
                }
            });
        }
    }
    let _ = IN_CALLBACK.try_with(|v| v.borrow_mut().push(key));
    let _leave = Leave(key);
    f()
}

pub(crate) fn is_in_callback_of(key: usize) -> bool {
    IN_CALLBACK
        .try_with(|v| v.borrow().contains(&key))
        .unwrap_or(false)
}

pub(super) fn refuse_in_callback(h: &ChannelHandle, what: &str) -> Result<(), Fail> {
    if is_in_callback_of(h.key()) {
        return Err(Fail::new(
            sr_result::SR_IN_CALLBACK,
            format!("{what} called from inside a callback of the same channel"),
        ));
    }
    Ok(())
}

/// Makes a stopped channel with a copy of `cfg` and the callbacks into
/// `*out`. Both callbacks are optional (NULL): without `on_message`
/// messages are accepted and dropped; without `on_outcome` the asynchronous
/// modes' outcomes are only counted. `userdata` is passed to both and must
/// stay valid until `sr_channel_stop` or `sr_channel_free` returns.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_INVALID_CONFIG_VALUE`
/// (inconsistent settings); `*out` is written only on `SR_OK`.
///
/// Thread safety: any thread; `cfg` is only read.
///
/// # Safety
/// `cfg` is NULL or a live `sr_config`; `out` is NULL or writable; the
/// callbacks, if not NULL, are valid functions with these signatures.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_new(
    cfg: *const sr_config,
    on_message: sr_message_callback,
    on_outcome: sr_outcome_callback,
    userdata: *mut c_void,
    out: *mut *mut sr_channel,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let cfg = unsafe { arg_ref(cfg, "cfg") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        cfg.validate()?;
        out.write(into_handle(ChannelHandle {
            cfg: cfg.clone(),
            callbacks: Callbacks {
                on_message,
                on_outcome,
                userdata: Userdata(userdata),
            },
            on_member: Mutex::new(None),
            lifecycle: Mutex::new(()),
            running: RwLock::new(None),
            last: Mutex::new(None),
        }));
        Ok(())
    })
}

/// Starts the channel: binds the receiver and starts the sender threads.
/// A stopped channel may be started again (with port 0 it may get another
/// port).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_ALREADY_RUNNING`, `SR_IO`
/// (bind failed, for example the port is in use), `SR_INVALID_CONFIG_VALUE`
/// or `SR_IN_CALLBACK`.
///
/// Thread safety: any thread, except inside this channel's callbacks.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_start(ch: *mut sr_channel) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        refuse_in_callback(h, "sr_channel_start")?;
        let _g = h.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        if h.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(crate::Error::AlreadyRunning.into());
        }
        let mut b = Channel::builder(h.cfg.clone());
        let cb = h.callbacks;
        let key = h.key();
        if let Some(f) = cb.on_message {
            b = b.listener(move |m| {
                let ud = cb.userdata.get();
                // SAFETY: `f` is a valid callback (the caller's promise to
                // sr_channel_new); the lent message lives for the call.
                let rc = in_callback_of(key, || lend(m, |p| unsafe { f(ud, p) }));
                match rc {
                    0 => Ok(()),
                    rc => Err(format!("listener returned {rc}")),
                }
            });
        }
        if let Some(f) = cb.on_outcome {
            b = b.outcome_listener(move |id, to, o| {
                let ud = cb.userdata.get();
                let dest = sr_addr::from(to);
                let code = match o {
                    Ok(_) => sr_result::SR_OK,
                    Err(e) => {
                        set_last_error(&super::result::error_detail(e));
                        sr_result::from_error(e)
                    }
                };
                // SAFETY: `f` is a valid callback (the caller's promise);
                // `dest` lives for the call.
                in_callback_of(key, || unsafe { f(ud, id, &dest, code) });
            });
        }
        let on_member = *h.on_member.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = on_member {
            b = b.member_listener(move |ev| in_callback_of(key, || m.call(ev)));
        }
        let channel = b.start()?;
        *h.running.write().unwrap_or_else(|e| e.into_inner()) = Some(channel);
        Ok(())
    })
}

/// Stops the channel: no new sends; queued and unacknowledged messages end
/// as `SR_SHUTDOWN` (reported to the outcome callback before this returns);
/// the receiver closes. When it returns, no callback of this channel is
/// running or will run (until the next start). Stopping a stopped (or never
/// started) channel does nothing and returns `SR_OK`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_IN_CALLBACK`.
///
/// Thread safety: any thread, except inside this channel's callbacks.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_stop(ch: *mut sr_channel) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        refuse_in_callback(h, "sr_channel_stop")?;
        h.stop();
        Ok(())
    })
}

/// Stops the channel if it runs (as `sr_channel_stop`), then frees it. NULL
/// does nothing. Called from inside one of this channel's callbacks it
/// would wait for itself, so it logs an error and does nothing.
///
/// Thread safety: the last call on `ch`: no other thread may be using it.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_free(ch: *mut sr_channel) {
    ffi_value((), || {
        // SAFETY: forwarded from the caller.
        let Ok(h) = (unsafe { arg_ref(ch, "ch") }) else {
            return;
        };
        if refuse_in_callback(h, "sr_channel_free").is_err() {
            crate::sr_log!(
                Error,
                "sr_channel_free called from inside a callback; ignored"
            );
            return;
        }
        h.stop();
        // SAFETY: live and from `into_handle` (the caller's promise); no
        // borrow of it outlives this point.
        unsafe { free_handle(ch) }
    })
}

/// Writes the receiver's bound port to `*out`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_RUNNING`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_local_port(ch: *const sr_channel, out: *mut u16) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(h.running()?.local_addr().port());
        Ok(())
    })
}

/// Writes the receiver's bound address (where members send to) to `*out`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_RUNNING`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_local_addr(
    ch: *const sr_channel,
    out: *mut sr_addr,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(h.running()?.local_addr().into());
        Ok(())
    })
}

/// Writes this node's 16-byte member id to `out[0..16]`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` or `SR_NOT_RUNNING` (the id is
/// chosen at start unless `memberId` is configured).
///
/// Thread safety: any thread.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable for 16
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_member_id(ch: *const sr_channel, out: *mut u8) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out.cast::<[u8; 16]>(), "out") }?;
        out.write(h.running()?.member_id());
        Ok(())
    })
}

/// Writes the channel's default send options (from `waitForAck`, `syncAck`,
/// `compress`) to `*out`.
///
/// Returns `SR_OK` or `SR_NULL_PARAMETER`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_send_options_default(
    ch: *const sr_channel,
    out: *mut sr_send_options,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        let o = SendOptions::from_config(&h.cfg);
        out.write(sr_send_options {
            ack: sr_ack_mode::from_rust(o.ack) as c_int,
            compress: o.compress as c_int,
        });
        Ok(())
    })
}

/// The arguments every send shares, checked.
struct SendArgs<'a> {
    channel: Channel,
    dests: &'a [sr_addr],
    opts: SendOptions,
}

/// Checks the arguments every send shares.
///
/// # Safety
/// As the sends' own contracts.
unsafe fn send_args<'a>(
    ch: *mut sr_channel,
    dests: *const sr_addr,
    n_dests: usize,
    opts: *const sr_send_options,
) -> Result<SendArgs<'a>, Fail> {
    // SAFETY: forwarded from the caller.
    let h = unsafe { arg_ref(ch, "ch") }?;
    // SAFETY: forwarded from the caller.
    let dests = unsafe { arg_slice(dests, n_dests, "dests") }?;
    if dests.is_empty() {
        return Err(Fail::invalid("no destination (n_dests is 0)"));
    }
    // SAFETY: forwarded from the caller.
    let opts = unsafe { send_opts(h, opts) }?;
    Ok(SendArgs {
        channel: h.running()?,
        dests,
        opts,
    })
}

/// The options of a send: `opts`, or the channel's defaults when NULL.
///
/// # Safety
/// `opts` is NULL or readable.
pub(super) unsafe fn send_opts(
    h: &ChannelHandle,
    opts: *const sr_send_options,
) -> Result<SendOptions, Fail> {
    if opts.is_null() {
        return Ok(SendOptions::from_config(&h.cfg));
    }
    // SAFETY: non-NULL and readable (the caller's promise).
    unsafe { arg_ref_plain(opts, "opts") }?.to_rust()
}

/// Converts the destinations, on the stack for up to 8 of them.
fn with_socket_addrs<R>(
    dests: &[sr_addr],
    f: impl FnOnce(&[SocketAddr]) -> Result<R, Fail>,
) -> Result<R, Fail> {
    const ON_STACK: usize = 8;
    let conv = |a: &sr_addr| a.to_socket();
    if dests.len() <= ON_STACK {
        let mut buf = [SocketAddr::from(([0, 0, 0, 0], 0)); ON_STACK];
        for (slot, a) in buf.iter_mut().zip(dests) {
            *slot = conv(a)?;
        }
        f(&buf[..dests.len()])
    } else {
        let v = dests.iter().map(conv).collect::<Result<Vec<_>, _>>()?;
        f(&v)
    }
}

fn send_payload(args: SendArgs<'_>, payload: Bytes) -> Result<u64, Fail> {
    with_socket_addrs(args.dests, |to| {
        Ok(args.channel.send(to, payload, args.opts)?)
    })
}

/// Sends a copy of `buf[0..len]` to the `n_dests` members in `dests`, with
/// `opts` (NULL: the channel's defaults), and writes the message id to
/// `*out_id` (NULL allowed).
///
/// In `SR_MODE_SYNCHRONOUS` and `SR_MODE_POOLED` the call returns the
/// outcome: `SR_OK` once every member acked (or, without ack, once written),
/// else the first failure (`SR_REMOTE_FAILURE`, `SR_TIMEOUT`,
/// `SR_UNREACHABLE`). In `SR_MODE_ASYNCHRONOUS` and
/// `SR_MODE_FASTASYNCQUEUE` it returns `SR_OK` once queued (or
/// `SR_QUEUE_FULL`: not queued) and each destination's outcome goes to the
/// outcome callback with this id.
///
/// Also returns `SR_NULL_PARAMETER` (`ch`, `dests` with `n_dests > 0`, or
/// `buf` with `len > 0` NULL), `SR_INVALID_ARGUMENT` (`n_dests` 0, a bad
/// `sr_addr` or ack mode, `len` over `maxFrameSize`) or `SR_NOT_RUNNING`.
/// `*out_id` is written only on `SR_OK`.
///
/// Thread safety: any thread, concurrently with other sends.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `dests` is NULL or readable for
/// `n_dests` entries; `buf` is NULL or readable for `len` bytes; `opts` is
/// NULL or readable; `out_id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_send(
    ch: *mut sr_channel,
    dests: *const sr_addr,
    n_dests: usize,
    buf: *const u8,
    len: usize,
    opts: *const sr_send_options,
    out_id: *mut u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let args = unsafe { send_args(ch, dests, n_dests, opts) }?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { arg_slice(buf, len, "buf") }?;
        let payload = args.channel.copy_payload(data);
        let id = send_payload(args, payload)?;
        write_id(out_id, id);
        Ok(())
    })
}

pub(super) fn write_id(out_id: *mut u64, id: u64) {
    if !out_id.is_null() {
        // SAFETY: non-NULL and writable (the sends' contract).
        unsafe { out_id.write(id) }
    }
}

/// A C buffer lent to a send; calls `release` when the last reference goes.
struct LentBuffer {
    data: *const u8,
    len: usize,
    release: sr_release_callback,
    userdata: Userdata,
}

// SAFETY: the buffer is read-only while lent (the caller's promise to
// sr_channel_send_borrowed) and the release callback may be called from any
// thread (its documented contract).
unsafe impl Send for LentBuffer {}

impl AsRef<[u8]> for LentBuffer {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 || self.data.is_null() {
            return &[];
        }
        // SAFETY: non-NULL, readable for `len` bytes and unchanged until
        // release (the caller's promise; checked non-NULL before lending).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for LentBuffer {
    fn drop(&mut self) {
        if let Some(f) = self.release {
            // SAFETY: a valid callback (the caller's promise); called once,
            // from this one drop.
            unsafe { f(self.userdata.get(), self.data, self.len) }
        }
    }
}

/// Like `sr_channel_send`, without copying: the payload is `buf[0..len]`
/// itself, shared by every destination, and the library calls
/// `release(release_userdata, buf, len)` exactly once when it no longer
/// needs it — on every return path, including failures and NULL arguments,
/// and possibly before this function returns (always, in the synchronous
/// modes). `release` may be NULL if the buffer outlives the channel (static
/// data). The buffer must not change until released.
///
/// Returns as `sr_channel_send`.
///
/// Thread safety: any thread; `release` may run on a sender I/O thread.
///
/// # Safety
/// As `sr_channel_send`; `buf` stays readable and unchanged until
/// `release` is called; `release` is NULL or a valid callback.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_send_borrowed(
    ch: *mut sr_channel,
    dests: *const sr_addr,
    n_dests: usize,
    buf: *const u8,
    len: usize,
    opts: *const sr_send_options,
    release: sr_release_callback,
    release_userdata: *mut c_void,
    out_id: *mut u64,
) -> sr_result {
    // Made before any check, so that every path releases exactly once.
    let lent = LentBuffer {
        data: buf,
        len,
        release,
        userdata: Userdata(release_userdata),
    };
    ffi_result(move || {
        if buf.is_null() && len != 0 {
            return Err(Fail::null("buf"));
        }
        // SAFETY: forwarded from the caller.
        let args = unsafe { send_args(ch, dests, n_dests, opts) }?;
        let id = send_payload(args, Bytes::from_owner(lent))?;
        write_id(out_id, id);
        Ok(())
    })
}

/// Like `sr_channel_send` (a copy of the payload), and returns a ticket in
/// `*out_ticket` that completes with every destination's outcome, in every
/// mode: in the synchronous modes it is already complete when this returns
/// and per-member failures go to the ticket rather than the return code.
/// Free it with `sr_ticket_free`.
///
/// Returns as `sr_channel_send`; `*out_ticket` and `*out_id` (NULL allowed)
/// are written only on `SR_OK`.
///
/// Thread safety: any thread.
///
/// # Safety
/// As `sr_channel_send`; `out_ticket` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_send_ticket(
    ch: *mut sr_channel,
    dests: *const sr_addr,
    n_dests: usize,
    buf: *const u8,
    len: usize,
    opts: *const sr_send_options,
    out_ticket: *mut *mut sr_ticket,
    out_id: *mut u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let out_ticket = unsafe { Out::new(out_ticket, "out_ticket") }?;
        // SAFETY: forwarded from the caller.
        let args = unsafe { send_args(ch, dests, n_dests, opts) }?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { arg_slice(buf, len, "buf") }?;
        let payload = args.channel.copy_payload(data);
        let (id, ticket) = with_socket_addrs(args.dests, |to| {
            Ok(args.channel.send_with_ticket(to, payload, args.opts)?)
        })?;
        out_ticket.write(into_handle::<sr_ticket>(ticket));
        write_id(out_id, id);
        Ok(())
    })
}

/// Waits up to `timeout_ms` until every queued message has an outcome
/// (asynchronous modes; at once in the synchronous ones).
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_NOT_RUNNING` or `SR_TIMEOUT`
/// (messages still pending).
///
/// Thread safety: any thread; not useful inside an outcome callback (the
/// callback's own message is pending until it returns).
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_flush(ch: *mut sr_channel, timeout_ms: u64) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        Ok(h.running()?.flush(millis(timeout_ms))?)
    })
}
