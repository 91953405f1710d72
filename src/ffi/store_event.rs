//! `sr_session_event`: what the session store tells its event callback.

use super::{sr_addr, sr_remove_reason, Userdata};
use crate::membership::MemberEvent;
use crate::session::{MemberKey, SessionEvent, TransferFailure};
use std::ffi::{c_int, c_void};

/// What an `sr_session_event` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sr_session_event_kind {
    /// Another member created session `id` (or it arrived by transfer);
    /// `by` is that member.
    SR_SESSION_CREATED = 0,
    /// Another member (`by`) changed session `id`; `version` is its new
    /// version counter.
    SR_SESSION_UPDATED = 1,
    /// Session `id` expired; `flag` is non-zero if this node expired it.
    SR_SESSION_EXPIRED = 2,
    /// Another member (`by`) invalidated session `id`.
    SR_SESSION_INVALIDATED = 3,
    /// Another member (`by`) renamed session `id` to `new_id`.
    SR_SESSION_ID_CHANGED = 4,
    /// Two concurrent versions of `id` met: `version` was kept,
    /// `discarded_version` dropped.
    SR_SESSION_CONFLICT = 5,
    /// State transfer is complete; `count` sessions are held here.
    SR_SESSION_READY = 6,
    /// State transfer timed out with `count` donors incomplete.
    SR_SESSION_TRANSFER_FAILED = 7,
    /// Every session this node held is handed over: safe to stop.
    SR_SESSION_DRAINED = 8,
    /// The cluster's health changed (a member added, lost or leaving, or
    /// copies restored): `count` members in placement (this node
    /// included), `version` sessions held here with fewer copies than
    /// configured. Safe to take the next node down only once `version` is
    /// 0 on every node.
    SR_SESSION_HEALTH = 9,
    /// A member the store places sessions on joined: `by` is its address,
    /// `payload` its `memberPayload` (empty for static and DNS members).
    SR_SESSION_MEMBER_ADDED = 10,
    /// A member the store placed sessions on left: `by` is its address,
    /// `payload` its last `memberPayload`, `flag` why (an
    /// `sr_remove_reason`).
    SR_SESSION_MEMBER_REMOVED = 11,
}

/// One session-store event, passed to the event callback; it and the bytes
/// it points at are valid only until the callback returns. Fields that do
/// not apply to `kind` are zero (NULL pointers, `by.family` 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sr_session_event {
    /// What happened.
    pub kind: sr_session_event_kind,
    /// The session id (the old id for `SR_SESSION_ID_CHANGED`).
    pub id: *const u8,
    /// Length of `id`.
    pub id_len: usize,
    /// The new id (`SR_SESSION_ID_CHANGED`).
    pub new_id: *const u8,
    /// Length of `new_id`.
    pub new_id_len: usize,
    /// The member the change came from (created, updated, invalidated, id
    /// changed); `family` 0 otherwise.
    pub by: sr_addr,
    /// The version counter (updated: the new one; conflict: the kept one).
    pub version: u64,
    /// The dropped version counter (conflict).
    pub discarded_version: u64,
    /// Sessions held (ready), or donors missing (transfer failed).
    pub count: u64,
    /// Non-zero if this node expired the session (expired); the
    /// `sr_remove_reason` (member removed).
    pub flag: c_int,
    /// The member's application metadata (member added or removed; not
    /// NUL-terminated; NULL when `payload_len` is 0).
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
}

/// Called for each session-store event (see `sr_session_event_kind`), in
/// order, on the store's driver thread. `ev` is valid until the callback
/// returns. The callback may call the store's non-blocking functions
/// (`begin`, `commit`/`create`/`invalidate`/`change_id` with `wait_ms` 0,
/// `access`, `stats`, ...); the blocking ones (`get`, `wait_ready`,
/// `drain`, a wait for a commit, `free`) return `SR_IN_CALLBACK`, since
/// the driver they would wait for is the thread running the callback.
pub type sr_session_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, ev: *const sr_session_event)>;

/// A C event callback with its userdata.
#[derive(Clone, Copy)]
pub(crate) struct EventCallback {
    pub(crate) f: unsafe extern "C" fn(*mut c_void, *const sr_session_event),
    pub(crate) userdata: Userdata,
}

fn by(m: &MemberKey) -> sr_addr {
    m.addr.into()
}

impl sr_session_event {
    /// An event of `kind` with every other field zero.
    fn blank(kind: sr_session_event_kind) -> Self {
        sr_session_event {
            kind,
            id: std::ptr::null(),
            id_len: 0,
            new_id: std::ptr::null(),
            new_id_len: 0,
            by: sr_addr::default(),
            version: 0,
            discarded_version: 0,
            count: 0,
            flag: 0,
            payload: std::ptr::null(),
            payload_len: 0,
        }
    }
}

impl EventCallback {
    /// Calls the C callback with a view of a member event that lives for
    /// the call.
    pub(crate) fn call_member(&self, e: &MemberEvent) {
        let (kind, flag) = match e {
            MemberEvent::Added(_) => (sr_session_event_kind::SR_SESSION_MEMBER_ADDED, 0),
            MemberEvent::Removed(_, r) => (
                sr_session_event_kind::SR_SESSION_MEMBER_REMOVED,
                sr_remove_reason::from_rust(Some(*r)) as c_int,
            ),
            MemberEvent::Suspect(_) => return,
        };
        let m = e.member();
        let mut ev = sr_session_event::blank(kind);
        ev.by = m.addr.into();
        ev.flag = flag;
        ev.payload = m.member_payload().as_ptr();
        ev.payload_len = m.member_payload().len();
        self.invoke(&ev);
    }

    fn invoke(&self, ev: &sr_session_event) {
        // SAFETY: `f` is a valid callback (the caller's promise to
        // sr_session_store_open); `ev` and what it points at live for the
        // call.
        unsafe { (self.f)(self.userdata.get(), ev) }
    }

    /// Calls the C callback with a view of `e` that lives for the call.
    pub(crate) fn call(&self, e: &SessionEvent) {
        let mut ev = sr_session_event::blank(sr_session_event_kind::SR_SESSION_DRAINED);
        let set_id = |ev: &mut sr_session_event, id: &[u8]| {
            ev.id = id.as_ptr();
            ev.id_len = id.len();
        };
        use sr_session_event_kind::*;
        match e {
            SessionEvent::Created { id, by: m } => {
                ev.kind = SR_SESSION_CREATED;
                set_id(&mut ev, id);
                ev.by = by(m);
            }
            SessionEvent::Updated { id, version, by: m } => {
                ev.kind = SR_SESSION_UPDATED;
                set_id(&mut ev, id);
                ev.version = version.counter;
                ev.by = by(m);
            }
            SessionEvent::Expired { id, local } => {
                ev.kind = SR_SESSION_EXPIRED;
                set_id(&mut ev, id);
                ev.flag = *local as c_int;
            }
            SessionEvent::Invalidated { id, by: m } => {
                ev.kind = SR_SESSION_INVALIDATED;
                set_id(&mut ev, id);
                ev.by = by(m);
            }
            SessionEvent::IdChanged { old, new, by: m } => {
                ev.kind = SR_SESSION_ID_CHANGED;
                set_id(&mut ev, old);
                ev.new_id = new.as_ptr();
                ev.new_id_len = new.len();
                ev.by = by(m);
            }
            // The store completes commit and fetch waits with these; it
            // does not pass them to listeners.
            SessionEvent::CommitAcked { .. }
            | SessionEvent::CommitFailed { .. }
            | SessionEvent::Fetched { .. }
            | SessionEvent::FetchFailed { .. } => return,
            SessionEvent::Health {
                members,
                under_replicated,
            } => {
                ev.kind = SR_SESSION_HEALTH;
                ev.count = *members as u64;
                ev.version = *under_replicated as u64;
            }
            SessionEvent::Conflict {
                id,
                kept,
                discarded,
            } => {
                ev.kind = SR_SESSION_CONFLICT;
                set_id(&mut ev, id);
                ev.version = kept.counter;
                ev.discarded_version = discarded.counter;
            }
            SessionEvent::Ready { sessions } => {
                ev.kind = SR_SESSION_READY;
                ev.count = *sessions as u64;
            }
            SessionEvent::TransferFailed {
                reason: TransferFailure::Timeout { missing },
            } => {
                ev.kind = SR_SESSION_TRANSFER_FAILED;
                ev.count = *missing as u64;
            }
            SessionEvent::Drained => ev.kind = SR_SESSION_DRAINED,
        }
        self.invoke(&ev);
    }
}
