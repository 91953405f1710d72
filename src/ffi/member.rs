//! Membership: the member callback of an `sr_channel`, the current member
//! list and sending to every member.

use super::channel::{send_opts, write_id};
use super::{
    arg_ref, arg_ref_plain, arg_slice, ffi_result, sr_addr, sr_channel, sr_result, sr_send_options,
    write_bytes, write_text, Fail, Out, Userdata,
};
use crate::membership::{Member, MemberEvent, MemberSource, PeerFacts, RemoveReason};
use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

/// What happened to a member (`sr_member_event.kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_member_event_kind {
    /// The member joined (or a static/DNS member became reachable again).
    SR_MEMBER_ADDED = 0,
    /// The member left; `sr_member_event.reason` says why.
    SR_MEMBER_REMOVED = 1,
    /// The member went silent but still accepts connections: it stays in
    /// the list, flagged, until heard from again or removed.
    SR_MEMBER_SUSPECT = 2,
}

/// Why a member left (`sr_member_event.reason`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_remove_reason {
    /// Not a removal (`SR_MEMBER_ADDED`, `SR_MEMBER_SUSPECT`).
    SR_REMOVE_NONE = 0,
    /// Its heartbeats stopped, it left the DNS answer, or it stayed
    /// suspect too long.
    SR_REMOVE_TIMEOUT = 1,
    /// It announced its shutdown.
    SR_REMOVE_SHUTDOWN = 2,
    /// A send to it failed and a connection check confirmed it unreachable.
    SR_REMOVE_FAILURE = 3,
    /// Another member appeared at its address (the process restarted).
    SR_REMOVE_RESTARTED = 4,
}

/// How a member became known (`sr_member.source`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_member_source {
    /// Multicast heartbeats.
    SR_SOURCE_MULTICAST = 0,
    /// The `staticMembers` list.
    SR_SOURCE_STATIC = 1,
    /// A DNS answer.
    SR_SOURCE_DNS = 2,
}

/// A member as the member callback sees it: a view valid only until the
/// callback returns (`domain` points into the library's memory). Copy what
/// you need to keep.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_member {
    /// The member's 16-byte unique id.
    pub id: [u8; 16],
    /// Its receiver's address (where sends go).
    pub addr: sr_addr,
    /// Its cluster domain (not NUL-terminated; may be NULL when
    /// `domain_len` is 0).
    pub domain: *const u8,
    /// Length of `domain` in bytes.
    pub domain_len: usize,
    /// Non-zero if it announced itself as a sessionrepl node; zero for a
    /// plain Tomcat Tribes node (or a static/DNS member).
    pub is_sessionrepl: c_int,
    /// How it became known.
    pub source: sr_member_source,
    /// How long its membership service had run at its last heartbeat, in
    /// milliseconds (0 for static and DNS members).
    pub alive_ms: u64,
    /// Its application metadata (`memberPayload` in its config, at most
    /// `SR_MEMBER_PAYLOAD_MAX` bytes, not NUL-terminated; may be NULL when
    /// `payload_len` is 0): where to send a user whose session it holds.
    /// Empty for members that announced none, and for static and DNS
    /// members (only multicast heartbeats carry it).
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
}

/// Longest member payload (`memberPayload`), in bytes.
pub const SR_MEMBER_PAYLOAD_MAX: usize = 1024;

const _: () = assert!(SR_MEMBER_PAYLOAD_MAX == crate::membership::MAX_MEMBER_PAYLOAD);

/// One membership change, passed to the member callback; valid only until
/// the callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_member_event {
    /// Added, removed or suspect.
    pub kind: sr_member_event_kind,
    /// Why it was removed; `SR_REMOVE_NONE` for the other kinds.
    pub reason: sr_remove_reason,
    /// The member.
    pub member: sr_member,
}

/// Longest domain `sr_member_info` holds, NUL included.
pub const SR_MEMBER_DOMAIN_MAX: usize = 64;

/// A member as `sr_channel_members` copies it: a plain value owned by the
/// caller.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_member_info {
    /// The member's 16-byte unique id.
    pub id: [u8; 16],
    /// Its receiver's address.
    pub addr: sr_addr,
    /// Its cluster domain, NUL-terminated, cut to
    /// `SR_MEMBER_DOMAIN_MAX - 1` bytes.
    pub domain: [c_char; SR_MEMBER_DOMAIN_MAX],
    /// The domain's full length (more than `SR_MEMBER_DOMAIN_MAX - 1`
    /// means `domain` was cut).
    pub domain_len: usize,
    /// Non-zero for a sessionrepl node.
    pub is_sessionrepl: c_int,
    /// How it became known.
    pub source: sr_member_source,
    /// How long its membership service had run, in milliseconds.
    pub alive_ms: u64,
}

/// Called for each membership change of a channel, in order, on the
/// channel's membership thread (never the caller's, never concurrently for
/// one channel). `ev` and everything it points at are valid until the
/// callback returns. Keep it short; it must not call `sr_channel_stop`,
/// `sr_channel_start` or `sr_channel_free` of its own channel (they return
/// `SR_IN_CALLBACK`).
pub type sr_member_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, ev: *const sr_member_event)>;

/// A C member callback with its userdata.
#[derive(Clone, Copy)]
pub(crate) struct MemberCallback {
    f: unsafe extern "C" fn(*mut c_void, *const sr_member_event),
    userdata: Userdata,
}

impl MemberCallback {
    /// Calls the C callback with a view of `ev` that lives for the call.
    pub(crate) fn call(&self, ev: &MemberEvent) {
        let (kind, reason) = match ev {
            MemberEvent::Added(_) => (sr_member_event_kind::SR_MEMBER_ADDED, None),
            MemberEvent::Removed(_, r) => (sr_member_event_kind::SR_MEMBER_REMOVED, Some(*r)),
            MemberEvent::Suspect(_) => (sr_member_event_kind::SR_MEMBER_SUSPECT, None),
        };
        let view = sr_member_event {
            kind,
            reason: sr_remove_reason::from_rust(reason),
            member: sr_member::view(ev.member()),
        };
        // SAFETY: `f` is a valid callback (the caller's promise to
        // sr_channel_set_member_callback); `view` and the member it points
        // into live for the call.
        unsafe { (self.f)(self.userdata.get(), &view) }
    }
}

impl sr_remove_reason {
    pub(crate) fn from_rust(r: Option<RemoveReason>) -> Self {
        match r {
            None => Self::SR_REMOVE_NONE,
            Some(RemoveReason::Timeout) => Self::SR_REMOVE_TIMEOUT,
            Some(RemoveReason::Shutdown) => Self::SR_REMOVE_SHUTDOWN,
            Some(RemoveReason::Failure) => Self::SR_REMOVE_FAILURE,
            Some(RemoveReason::Restarted) => Self::SR_REMOVE_RESTARTED,
        }
    }

    fn to_rust(self) -> Option<RemoveReason> {
        match self {
            Self::SR_REMOVE_NONE => None,
            Self::SR_REMOVE_TIMEOUT => Some(RemoveReason::Timeout),
            Self::SR_REMOVE_SHUTDOWN => Some(RemoveReason::Shutdown),
            Self::SR_REMOVE_FAILURE => Some(RemoveReason::Failure),
            Self::SR_REMOVE_RESTARTED => Some(RemoveReason::Restarted),
        }
    }
}

impl sr_member_source {
    fn from_rust(s: MemberSource) -> Self {
        match s {
            MemberSource::Multicast => Self::SR_SOURCE_MULTICAST,
            MemberSource::Static => Self::SR_SOURCE_STATIC,
            MemberSource::Dns => Self::SR_SOURCE_DNS,
        }
    }

    fn to_rust(self) -> MemberSource {
        match self {
            Self::SR_SOURCE_MULTICAST => MemberSource::Multicast,
            Self::SR_SOURCE_STATIC => MemberSource::Static,
            Self::SR_SOURCE_DNS => MemberSource::Dns,
        }
    }
}

impl sr_member {
    /// A view of `m`, borrowing its domain.
    fn view(m: &Member) -> Self {
        sr_member {
            id: m.id,
            addr: m.addr.into(),
            domain: m.domain.as_ptr(),
            domain_len: m.domain.len(),
            is_sessionrepl: m.is_sessionrepl() as c_int,
            source: sr_member_source::from_rust(m.source),
            alive_ms: m.alive.as_millis().min(u128::from(u64::MAX)) as u64,
            payload: m.member_payload().as_ptr(),
            payload_len: m.member_payload().len(),
        }
    }
}

impl From<&Member> for sr_member_info {
    fn from(m: &Member) -> Self {
        let mut domain = [0 as c_char; SR_MEMBER_DOMAIN_MAX];
        for (d, s) in domain
            .iter_mut()
            .zip(m.domain.iter().take(SR_MEMBER_DOMAIN_MAX - 1))
        {
            *d = *s as c_char;
        }
        let v = sr_member::view(m);
        sr_member_info {
            id: v.id,
            addr: v.addr,
            domain,
            domain_len: v.domain_len,
            is_sessionrepl: v.is_sessionrepl,
            source: v.source,
            alive_ms: v.alive_ms,
        }
    }
}

/// Sets the callback that sees every membership change of the channel
/// from its next `sr_channel_start` on (NULL removes it). `userdata` is
/// passed to it and must stay valid until `sr_channel_stop` or
/// `sr_channel_free` returns; after that it is not called any more.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`ch`) or `SR_ALREADY_RUNNING`
/// (set it before starting, or stop first).
///
/// Thread safety: any thread, not concurrently with `sr_channel_start`.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `cb` is NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_set_member_callback(
    ch: *mut sr_channel,
    cb: sr_member_callback,
    userdata: *mut c_void,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        let _g = h.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        if h.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(crate::Error::AlreadyRunning.into());
        }
        *h.on_member.lock().unwrap_or_else(|e| e.into_inner()) = cb.map(|f| MemberCallback {
            f,
            userdata: Userdata(userdata),
        });
        Ok(())
    })
}

/// Copies the application metadata (`memberPayload`, at most
/// `SR_MEMBER_PAYLOAD_MAX` bytes, no NUL added) of the member at `*addr`
/// (this channel's own address gives its own) into `buf[0..len]` and its
/// length into `*out_n`: the member-list counterpart of
/// `sr_member.payload`. Empty for a member that announced none, and for
/// static and DNS members.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`ch`, `addr`, `out_n`, or `buf`
/// with `len > 0`), `SR_INVALID_ARGUMENT` (a bad `addr->family`),
/// `SR_NOT_RUNNING`, `SR_NOT_FOUND` (no current member at `*addr`) or
/// `SR_INSUFFICIENT_SIZE`: then `*out_n` is the length and `buf` is
/// unchanged.
///
/// Thread safety: any thread, including the member callback.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `addr` is NULL or points at an
/// `sr_addr`; `buf` is NULL or writable for `len` bytes; `out_n` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_member_payload(
    ch: *const sr_channel,
    addr: *const sr_addr,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        let running = h.running()?;
        // SAFETY: forwarded from the caller.
        unsafe { write_member_payload(addr, buf, len, out_n, |a| running.member_payload(a)) }
    })
}

/// The body of `sr_channel_member_payload` and
/// `sr_session_store_member_payload`: reads `*addr`, looks its payload up
/// and copies it out (`SR_NOT_FOUND` when `lookup` knows no such member).
///
/// # Safety
/// `addr` is NULL or points at an `sr_addr`; `buf` and `out_n` as
/// [`write_bytes`].
pub(crate) unsafe fn write_member_payload(
    addr: *const sr_addr,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
    lookup: impl FnOnce(std::net::SocketAddr) -> Option<Vec<u8>>,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    let a = unsafe { arg_ref_plain(addr, "addr") }?.to_socket()?;
    let p = lookup(a)
        .ok_or_else(|| Fail::new(sr_result::SR_NOT_FOUND, format!("no member listens at {a}")))?;
    // SAFETY: forwarded from the caller.
    unsafe { write_bytes(&p, buf, len, out_n) }
}

/// Copies the current members (never this node), longest-running first,
/// into `out[0..cap]` and their number into `*out_n`. Empty with
/// `membershipType=none`.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER` (`ch`, `out_n`, or `out` with
/// `cap > 0`), `SR_NOT_RUNNING` or `SR_INSUFFICIENT_SIZE`: then `*out_n`
/// is the number of members and `out` is unchanged; call with `NULL, 0` to
/// ask for the number first (members come and go, so allow some slack).
///
/// Thread safety: any thread, including the member callback.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `out` is NULL or writable for
/// `cap` entries; `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_members(
    ch: *const sr_channel,
    out: *mut sr_member_info,
    cap: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let out_n = unsafe { Out::new(out_n, "out_n") }?;
        if out.is_null() && cap != 0 {
            return Err(Fail::null("out"));
        }
        let members = h.running()?.members();
        // SAFETY: forwarded from the caller.
        unsafe { write_items(&members, out, cap, out_n, |m| m.into()) }
    })
}

/// Copies `items` converted by `conv` into the caller's array
/// `out[0..cap]` and their number into `*out_n`; or, when they do not
/// fit, writes only the number and fails with `SR_INSUFFICIENT_SIZE`.
///
/// # Safety
/// A non-NULL `out` is writable for `cap` entries (NULL only with `cap`
/// 0).
pub(crate) unsafe fn write_items<S, T>(
    items: &[S],
    out: *mut T,
    cap: usize,
    out_n: Out<usize>,
    conv: impl Fn(&S) -> T,
) -> Result<(), Fail> {
    if items.len() > cap {
        out_n.write(items.len());
        return Err(Fail::new(
            sr_result::SR_INSUFFICIENT_SIZE,
            format!("room for {cap} entries, {} needed", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        // SAFETY: i < items.len() <= cap, and `out` is writable for `cap`
        // entries (non-NULL since cap > 0 here).
        unsafe { out.add(i).write(conv(item)) }
    }
    out_n.write(items.len());
    Ok(())
}

/// Sends a copy of `buf[0..len]` to every current member, with `opts`
/// (NULL: the channel's defaults); like `sr_channel_send` with the member
/// list as destinations. `*out_id` (NULL allowed) gets the message id.
///
/// Returns as `sr_channel_send`, and `SR_NO_MEMBERS` when the channel has
/// no member now. `*out_id` is written only on `SR_OK`.
///
/// Thread safety: any thread, concurrently with other sends.
///
/// # Safety
/// `ch` is NULL or a live `sr_channel`; `buf` is NULL or readable for `len`
/// bytes; `opts` is NULL or readable; `out_id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_channel_send_to_members(
    ch: *mut sr_channel,
    buf: *const u8,
    len: usize,
    opts: *const sr_send_options,
    out_id: *mut u64,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { arg_ref(ch, "ch") }?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { arg_slice(buf, len, "buf") }?;
        // SAFETY: forwarded from the caller.
        let opts = unsafe { send_opts(h, opts) }?;
        let channel = h.running()?;
        if channel.members().is_empty() {
            return Err(Fail::new(
                sr_result::SR_NO_MEMBERS,
                "the channel has no members to send to",
            ));
        }
        let id = channel.send_to_members(channel.copy_payload(data), opts)?;
        write_id(out_id, id);
        Ok(())
    })
}

/// Formats a membership event as one line, the way `sessionrepl node`
/// prints it (`member-added id=<hex> addr=<ip:port> domain=<d>
/// sessionrepl=<bool>`, `member-removed id=.. addr=.. reason=<reason>`,
/// `member-suspect id=.. addr=..`), into `buf`, NUL-terminated; `*out_n`
/// gets its length without the NUL.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_ARGUMENT` (a bad
/// `sr_addr` family or enum value, a NULL `domain` with `domain_len > 0`)
/// or `SR_INSUFFICIENT_SIZE` (then `*out_n` is the needed length and `buf`
/// is unchanged).
///
/// Thread safety: any thread.
///
/// # Safety
/// `ev` is NULL or a readable `sr_member_event` whose `member.domain` is
/// readable for `member.domain_len` bytes; `buf` is NULL or writable for
/// `len` bytes; `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_member_event_format(
    ev: *const sr_member_event,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let ev = unsafe { arg_ref_plain(ev, "ev") }?;
        // SAFETY: forwarded from the caller.
        let event = unsafe { event_from_view(ev) }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_text(&event.to_string(), buf, len, out_n) }
    })
}

/// Rebuilds the engine's event from a C view, checking every field that C
/// may have filled in by hand (enums arrive as plain integers).
///
/// # Safety
/// `ev.member.domain` is NULL or readable for `domain_len` bytes.
unsafe fn event_from_view(ev: &sr_member_event) -> Result<MemberEvent, Fail> {
    // Read the enums as integers: C may have stored any value in them.
    // SAFETY: both are 4-byte C enums; reading their representation as
    // c_int is always defined.
    let (kind, reason, source) = unsafe {
        (
            *(&ev.kind as *const sr_member_event_kind).cast::<c_int>(),
            *(&ev.reason as *const sr_remove_reason).cast::<c_int>(),
            *(&ev.member.source as *const sr_member_source).cast::<c_int>(),
        )
    };
    let source = match source {
        0 => sr_member_source::SR_SOURCE_MULTICAST,
        1 => sr_member_source::SR_SOURCE_STATIC,
        2 => sr_member_source::SR_SOURCE_DNS,
        n => return Err(Fail::invalid(format!("sr_member.source {n} is not valid"))),
    };
    let reason = match reason {
        0 => sr_remove_reason::SR_REMOVE_NONE,
        1 => sr_remove_reason::SR_REMOVE_TIMEOUT,
        2 => sr_remove_reason::SR_REMOVE_SHUTDOWN,
        3 => sr_remove_reason::SR_REMOVE_FAILURE,
        4 => sr_remove_reason::SR_REMOVE_RESTARTED,
        n => {
            return Err(Fail::invalid(format!(
                "sr_member_event.reason {n} is not valid"
            )))
        }
    };
    let m = &ev.member;
    // SAFETY: forwarded from the caller.
    let domain = unsafe { arg_slice(m.domain, m.domain_len, "member.domain") }?;
    let member = Member {
        id: m.id,
        addr: m.addr.to_socket()?,
        domain: domain.to_vec(),
        alive: Duration::from_millis(m.alive_ms),
        facts: (m.is_sessionrepl != 0).then(|| PeerFacts::new(crate::membership::caps::ALL)),
        payload: Vec::new(),
        source: source.to_rust(),
    };
    Ok(match (kind, reason.to_rust()) {
        (0, _) => MemberEvent::Added(member),
        (1, Some(r)) => MemberEvent::Removed(member, r),
        (1, None) => return Err(Fail::invalid("a removal needs a reason")),
        (2, _) => MemberEvent::Suspect(member),
        (n, _) => {
            return Err(Fail::invalid(format!(
                "sr_member_event.kind {n} is not valid"
            )))
        }
    })
}
