//! The runtime core: the [`SessionNode`] behind one mutex, the inputs that
//! reach it from channel threads, and the driver thread.
//!
//! Threading, and why:
//!
//! * A message is handled on the receiver thread that delivered it, under
//!   the node's mutex, so the node's verdict is the delivery ack without a
//!   hand-off to another thread and back (one lock, no wake-up, per message).
//! * Host calls (`commit`, `get`, ...) also run on the caller's thread under
//!   the mutex.
//! * Send outcomes (on the channel's sender thread) and membership events
//!   (on membership's thread) never wait for the mutex: they are pushed to a
//!   lock-free inbox that whoever next holds the mutex applies first. The
//!   sender thread therefore never blocks on the node, and a node holding
//!   the mutex while it queues a send can never wait on a sender blocked on
//!   the mutex.
//! * After pushing an outcome the sender thread tries the mutex (never
//!   waits for it): if free, it applies the inbox, resolves the commit
//!   handles that completes and sends what that produced (a reply to a
//!   member whose commit this node ran for it, a retry). Its sends never
//!   wait for room in its own queue: they fail with `QueueFull` at once.
//!   If the mutex is held, its holder applies the inbox after letting go
//!   ([`Core::settle`]). So an acknowledged commit wakes
//!   its waiter directly, not the driver thread first (S6 one commit at a
//!   time, p50 15–25 µs against 24–96 µs in interleaved runs on 2 vCPUs,
//!   both drivers), and a host listener that takes long on the driver
//!   thread does not hold acknowledgements back.
//! * Every holder of the mutex ends with [`Core::flush`]: transmits go to
//!   the channel in the order the node produced them (still under the
//!   mutex, so two threads cannot reorder one member's messages), and events
//!   resolve commit handles and fetches or queue for the host's listener.
//! * The driver thread runs the node's timers, starts the node once member
//!   discovery had its time, and calls the host's event listener outside the
//!   mutex (so the listener may call back into the store).

use super::handle::{Slot, SlotResult};
use crate::channel::Channel;
use crate::config::AckMode;
use crate::membership::{derived_id, MemberEvent};
use crate::session::model::{MemberKey, SessionId};
use crate::session::node::{
    CommitTicket, NodeState, SendOutcome, SendToken, SessionEvent, SessionNode, TransferFailure,
};
use crate::transport::{Message, Outcome, SendOptions};
use crossbeam_queue::SegQueue;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Rounds of "send, handle the refusals as failed sends, send what that
/// queued" in one flush. The rest stays queued in the node for the next
/// flush (the driver's next turn), so a channel that refuses everything
/// (stopping) costs a bounded amount of work per turn, not a loop.
const MAX_REFUSED_ROUNDS: usize = 4;

/// The host's listener of session events.
pub type EventListener = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// The host's listener of the store's members coming and going.
pub type MemberEventListener = Arc<dyn Fn(&MemberEvent) + Send + Sync>;

/// What the driver thread hands the host's listeners, in one order.
enum HostEvent {
    Session(SessionEvent),
    Member(MemberEvent),
}

/// The store's key for the member whose receiver listens on `addr`: the
/// address and an id derived from it. Membership events and messages both
/// name members by listen address, so both map to the same key, whatever
/// member id a static entry or a preface carries.
pub fn member_key(addr: SocketAddr) -> MemberKey {
    MemberKey::new(derived_id(&addr), addr)
}

/// How often the node's view is compared with the membership layer's.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Inputs that reach the node through the inbox.
#[derive(Debug)]
pub(crate) enum Input {
    Outcome(u64, SocketAddr, SendOutcome),
    Added(SocketAddr),
    Removed(SocketAddr),
}

/// Everything guarded by the node's mutex.
pub(crate) struct State {
    pub(crate) node: SessionNode,
    /// Channel message id → the node's token and the outcomes still due.
    sent: HashMap<u64, (SendToken, usize)>,
    pub(crate) commits: HashMap<CommitTicket, Arc<Slot>>,
    pub(crate) fetches: HashMap<SessionId, Vec<Arc<Slot>>>,
    /// When to call `start` (member discovery first); `None` once started.
    start_at: Option<Instant>,
    join_started: Option<Instant>,
    next_timer: Instant,
    /// How long a member of the node's view may be missing from the
    /// membership layer's before it is dropped (`None`: no membership).
    member_grace: Option<Duration>,
    /// Members of the node's view the membership layer does not list, and
    /// since when.
    unconfirmed: HashMap<MemberKey, Instant>,
}

/// Life-cycle flags host threads wait on.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) ready: bool,
    pub(crate) ready_after: Option<Duration>,
    pub(crate) failed: Option<TransferFailure>,
    pub(crate) drained: bool,
    pub(crate) closed: bool,
}

/// Shared by the store, the channel's listeners (weakly) and the driver.
pub(crate) struct Core {
    state: OnceLock<Mutex<State>>,
    inbox: SegQueue<Input>,
    events: SegQueue<HostEvent>,
    wake: AtomicBool,
    pub(crate) driver: OnceLock<Thread>,
    pub(crate) channel: OnceLock<Channel>,
    pub(crate) status: Mutex<Status>,
    pub(crate) status_cv: Condvar,
    listener: Option<EventListener>,
    member_listener: Option<MemberEventListener>,
    pub(crate) stopping: AtomicBool,
    opts_ack: SendOptions,
    opts_plain: SendOptions,
}

impl Core {
    pub(crate) fn new(
        listener: Option<EventListener>,
        member_listener: Option<MemberEventListener>,
        compress: bool,
    ) -> Self {
        Core {
            state: OnceLock::new(),
            inbox: SegQueue::new(),
            events: SegQueue::new(),
            wake: AtomicBool::new(false),
            driver: OnceLock::new(),
            channel: OnceLock::new(),
            status: Mutex::new(Status::default()),
            status_cv: Condvar::new(),
            listener,
            member_listener,
            stopping: AtomicBool::new(false),
            opts_ack: SendOptions {
                ack: AckMode::Delivery,
                compress,
            },
            opts_plain: SendOptions {
                ack: AckMode::None,
                compress,
            },
        }
    }

    /// Installs the node, to be started at `start_at`; `member_grace` as
    /// in [`Core::reconcile_members`].
    pub(crate) fn install(
        &self,
        node: SessionNode,
        start_at: Instant,
        member_grace: Option<Duration>,
    ) {
        let now = Instant::now();
        let _ = self.state.set(Mutex::new(State {
            node,
            sent: HashMap::new(),
            commits: HashMap::new(),
            fetches: HashMap::new(),
            start_at: Some(start_at),
            join_started: None,
            next_timer: now,
            member_grace,
            unconfirmed: HashMap::new(),
        }));
    }

    pub(crate) fn push(&self, i: Input) {
        self.inbox.push(i);
        self.wake();
    }

    pub(crate) fn wake(&self) {
        if !self.wake.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.driver.get() {
                t.unpark();
            }
        }
    }

    /// The node's mutex; waits (briefly) for the node to be installed, as a
    /// message may arrive between the channel's start and the install.
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(m) = self.state.get() {
                return Some(m.lock().unwrap_or_else(|e| e.into_inner()));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs `f` on the node under its mutex: queued inputs first, then `f`,
    /// then the node's transmits and events.
    ///
    /// # Panics
    /// If the node was never installed (a bug of `SessionStore::open`).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let mut g = self.lock().expect("session node installed at open");
        let now = Instant::now();
        self.absorb(&mut g, now);
        let r = f(&mut g, now);
        self.flush(&mut g, now);
        drop(g);
        self.settle();
        r
    }

    fn absorb(&self, st: &mut State, now: Instant) {
        while let Some(i) = self.inbox.pop() {
            match i {
                Input::Outcome(id, addr, o) => {
                    let Some(entry) = st.sent.get_mut(&id) else {
                        continue;
                    };
                    let token = entry.0;
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        st.sent.remove(&id);
                    }
                    st.node.handle_send_outcome(token, member_key(addr), o, now);
                }
                Input::Added(a) => st.node.member_added(member_key(a), now),
                Input::Removed(a) => st.node.member_removed(member_key(a), now),
            }
        }
    }

    /// Hands the node's transmits to the channel, in order, and handles its
    /// events. A send the channel refuses outright counts as failed for each
    /// destination, which may make the node send again: at most
    /// [`MAX_REFUSED_ROUNDS`] rounds of that.
    fn flush(&self, st: &mut State, now: Instant) {
        let Some(ch) = self.channel.get() else {
            return;
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for _ in 0..MAX_REFUSED_ROUNDS {
            let mut refused: Vec<(SendToken, MemberKey)> = Vec::new();
            while let Some(t) = st.node.poll_transmit() {
                addrs.clear();
                addrs.extend(t.to.members().iter().map(|m| m.addr));
                let ack = t.needs_ack();
                let opts = if ack { self.opts_ack } else { self.opts_plain };
                match ch.send(&addrs, t.payload, opts) {
                    Ok(id) if ack => {
                        st.sent.insert(id, (t.token, addrs.len()));
                    }
                    Ok(_) => {}
                    Err(_) if ack => refused.extend(t.to.members().iter().map(|m| (t.token, *m))),
                    Err(_) => {}
                }
            }
            if refused.is_empty() {
                break;
            }
            for (token, m) in refused {
                st.node
                    .handle_send_outcome(token, m, SendOutcome::Failed, now);
            }
        }
        while let Some(e) = st.node.poll_event() {
            self.on_event(st, e, now);
        }
    }

    fn on_event(&self, st: &mut State, e: SessionEvent, now: Instant) {
        match e {
            SessionEvent::CommitAcked { ticket, copies, .. } => {
                if let Some(s) = st.commits.remove(&ticket) {
                    s.complete(SlotResult::Acked(copies));
                }
                return;
            }
            SessionEvent::CommitFailed { ticket, reason, .. } => {
                if let Some(s) = st.commits.remove(&ticket) {
                    s.complete(SlotResult::Failed(reason));
                }
                return;
            }
            SessionEvent::Fetched { ref id, .. } => {
                let slots = st.fetches.remove(id).unwrap_or_default();
                if let Some(found) = st.node.take_fetched(id) {
                    for s in slots {
                        s.complete_read(found.clone());
                    }
                } else {
                    // Taken by an earlier event of the same read: ask again.
                    for s in slots {
                        s.complete(SlotResult::Unavailable);
                    }
                }
                return;
            }
            SessionEvent::FetchFailed { ref id } => {
                for s in st.fetches.remove(id).unwrap_or_default() {
                    s.complete(SlotResult::Unavailable);
                }
                return;
            }
            SessionEvent::Ready { .. } => {
                let mut g = self.status();
                g.ready = true;
                g.failed = None;
                g.ready_after = st.join_started.map(|t| now.saturating_duration_since(t));
                self.status_cv.notify_all();
            }
            SessionEvent::TransferFailed { reason } => {
                self.status().failed = Some(reason);
                self.status_cv.notify_all();
            }
            SessionEvent::Drained => {
                self.status().drained = true;
                self.status_cv.notify_all();
            }
            _ => {}
        }
        if self.listener.is_some() {
            self.events.push(HostEvent::Session(e));
            self.wake();
        }
    }

    /// Queues a change of the store's members for the host's member
    /// listener (on the driver thread, in order with the session events).
    pub(crate) fn member_event(&self, e: &MemberEvent) {
        if self.member_listener.is_some() {
            self.events.push(HostEvent::Member(e.clone()));
            self.wake();
        }
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's message listener: the node's verdict is the ack.
    pub(crate) fn on_message(&self, m: &Message) -> Result<(), String> {
        let Some(mut g) = self.lock() else {
            return Err("session store not started".into());
        };
        let now = Instant::now();
        self.absorb(&mut g, now);
        let r = g
            .node
            .handle_message(member_key(m.from), m.payload.clone(), now);
        self.flush(&mut g, now);
        let me = g.node.me().addr;
        drop(g);
        self.settle();
        if let Err(e) = &r {
            crate::sr_log!(Debug, "{me} rejects a message from {}: {e}", m.from);
        }
        r.map_err(|e| e.to_string())
    }

    /// The channel's outcome listener (sender thread): queue, never block.
    pub(crate) fn on_outcome(&self, id: u64, to: SocketAddr, o: &Outcome) {
        let so = match o {
            Ok(crate::transport::Delivery::Acked) => SendOutcome::Acked,
            Ok(crate::transport::Delivery::Sent) => return,
            Err(crate::error::Error::Timeout) => SendOutcome::TimedOut,
            Err(_) => SendOutcome::Failed,
        };
        if let Err(e) = o {
            crate::sr_log!(Debug, "outcome of message {id} to {to}: {e}");
        }
        self.inbox.push(Input::Outcome(id, to, so));
        self.settle();
    }

    /// Applies the inbox if the node is free (never waits for it), and
    /// again while more arrived meanwhile. Called by whoever pushed an
    /// input, and by every holder of the mutex after it let go: an input
    /// pushed while the mutex was held is applied by its holder on the way
    /// out, so none waits for the driver thread (which may be busy in the
    /// host's listener). It hands the node's transmits to the channel too,
    /// also on the channel's sender thread: a send from it never waits for
    /// room in its own queue (it fails with `QueueFull` at once, which the
    /// node handles as a failed send).
    fn settle(&self) {
        let Some(m) = self.state.get() else {
            return;
        };
        loop {
            // Orders the push (or the unlock) before the look at the inbox
            // (or the try below): of a pusher and a holder letting go, at
            // least one sees the other.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.inbox.is_empty() {
                return;
            }
            let mut g = match m.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                // Its holder settles after letting go.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let now = Instant::now();
            self.absorb(&mut g, now);
            self.flush(&mut g, now);
            if g.node.has_transmits() {
                // Left over by the flush's bound: the driver thread's next
                // turn sends it.
                self.wake();
            }
        }
    }

    /// Drops from the node's view a member the membership layer has not
    /// listed for `member_grace`. The node also adds a member whose state
    /// request overtook its membership event; if that member then fails
    /// before the membership layer saw it up (a static member found down
    /// by its last ping and killed before the next one), no removal
    /// would ever come, and the node would wait for it forever.
    fn reconcile_members(&self) {
        let Some(ch) = self.channel.get() else {
            return;
        };
        let listed: Vec<SocketAddr> = ch.members().iter().map(|m| m.addr).collect();
        self.with(|st, now| {
            let Some(grace) = st.member_grace else {
                return;
            };
            let missing: Vec<MemberKey> = st
                .node
                .members
                .iter()
                .filter(|m| !listed.contains(&m.addr))
                .copied()
                .collect();
            st.unconfirmed.retain(|m, _| missing.contains(m));
            for m in missing {
                let since = *st.unconfirmed.entry(m).or_insert(now);
                if now.saturating_duration_since(since) >= grace {
                    crate::sr_log!(
                        Info,
                        "{}: {} dropped from the session view: not a member for {} ms",
                        st.node.me().addr,
                        m.addr,
                        grace.as_millis()
                    );
                    st.unconfirmed.remove(&m);
                    st.node.member_removed(m, now);
                }
            }
        });
    }

    /// The driver thread: timers, the deferred start, inbox work nobody
    /// else picked up, and the host's event listener.
    pub(crate) fn drive(self: Arc<Self>) {
        let mut next_reconcile = Instant::now();
        while !self.stopping.load(Ordering::Acquire) {
            self.wake.store(false, Ordering::Release);
            if Instant::now() >= next_reconcile {
                next_reconcile = Instant::now() + RECONCILE_EVERY;
                self.reconcile_members();
            }
            let next = self.with(|st, now| {
                if let Some(at) = st.start_at {
                    if now >= at {
                        st.start_at = None;
                        st.join_started = Some(now);
                        st.node.start(now);
                    }
                }
                if now >= st.next_timer {
                    st.node.handle_timeout(now);
                    st.next_timer = st
                        .node
                        .poll_timeout()
                        .unwrap_or(now + Duration::from_secs(1));
                }
                let mut next = st.next_timer;
                if let Some(at) = st.start_at {
                    next = next.min(at);
                }
                next
            });
            while let Some(e) = self.events.pop() {
                match (e, &self.listener, &self.member_listener) {
                    (HostEvent::Session(e), Some(l), _) => l(&e),
                    (HostEvent::Member(e), _, Some(l)) => l(&e),
                    _ => {}
                }
            }
            if self.wake.load(Ordering::Acquire) {
                continue;
            }
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            std::thread::park_timeout(wait);
        }
    }

    /// Fails every pending handle (the store is closing).
    pub(crate) fn fail_pending(&self) {
        if let Some(m) = self.state.get() {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            for (_, s) in g.commits.drain() {
                s.complete(SlotResult::Closed);
            }
            for (_, v) in g.fetches.drain() {
                for s in v {
                    s.complete(SlotResult::Closed);
                }
            }
        }
        let mut g = self.status();
        g.closed = true;
        self.status_cv.notify_all();
    }

    /// The node's current state.
    pub(crate) fn node_state(&self) -> NodeState {
        self.with(|st, _| st.node.state())
    }
}
