//! What the asynchronous sender engine needs around the sans-IO
//! [`SenderConn`], apart from moving bytes: the caller-side handle (queue,
//! flags, per-member admission), moving queued messages onto members, and
//! carrying out what a member's state machine asks (connect, close, report
//! outcomes).

use super::pump::Outgoing;
use super::{Shared, Ticket};
use crate::error::Error;
use crate::proto::sender::{Action, Message, SenderConn, SenderLimits};
use crate::queue::SendQueue;
use crate::stats::Stats;
use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_INTERNAL_DEFLATE};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// This thread runs a sender engine (see [`PumpHandle::send`]).
    static ENGINE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as a sender engine's: its sends never wait
/// for room in a queue.
pub(crate) fn mark_engine_thread() {
    ENGINE_THREAD.with(|t| t.set(true));
}

/// The per-message handle a member's sender carries: the caller's ticket.
pub(crate) type Tok = Option<Arc<Ticket>>;

/// A member's sender in an engine.
pub(crate) type Conn = SenderConn<Tok>;

/// Per-member admission for `asynchronous` mode: a send reserves a place
/// in every destination's queue before it is queued at all (all or
/// nothing), waiting up to `queueAddWaitTimeout` for room; the engine
/// gives places back as messages get their outcomes and wakes waiting
/// producers (no polling).
pub(crate) struct Admission {
    cap: usize,
    used: Mutex<HashMap<SocketAddr, usize>>,
    room: Condvar,
}

impl Admission {
    pub(crate) fn new(cap: usize) -> Admission {
        Admission {
            cap: cap.max(1),
            used: Mutex::new(HashMap::new()),
            room: Condvar::new(),
        }
    }

    /// Reserves one place at each of `dests`, or none.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when some destination stayed full for `wait`.
    pub(crate) fn reserve(&self, dests: &[SocketAddr], wait: Duration) -> crate::Result<()> {
        let deadline = Instant::now() + wait;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if dests
                .iter()
                .all(|a| used.get(a).copied().unwrap_or(0) < self.cap)
            {
                for &a in dests {
                    *used.entry(a).or_insert(0) += 1;
                }
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::QueueFull);
            }
            used = self
                .room
                .wait_timeout(used, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Gives back `n` places at `a`.
    pub(crate) fn release(&self, a: SocketAddr, n: usize) {
        if n == 0 {
            return;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = used.get_mut(&a) {
            *u = u.saturating_sub(n);
            if *u == 0 {
                used.remove(&a);
            }
        }
        drop(used);
        self.room.notify_all();
    }
}

/// The caller-side half of an engine (mio or io_uring): the queue and the
/// flags the engine thread publishes.
pub(crate) struct PumpHandle {
    pub(crate) queue: Arc<SendQueue<Outgoing>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) idle: Arc<AtomicBool>,
    pub(crate) in_flight: Arc<AtomicU64>,
    pub(crate) members: Arc<AtomicU64>,
    pub(crate) shared: Arc<Shared>,
    /// Set in `asynchronous` mode: all-or-nothing admission per member.
    pub(crate) admission: Option<Arc<Admission>>,
    /// Members that left the cluster, for the engine to release.
    pub(crate) left: Arc<Mutex<Vec<SocketAddr>>>,
    pub(crate) any_left: Arc<AtomicBool>,
}

impl PumpHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        waker: Box<dyn crate::queue::Wake>,
        admission: bool,
    ) -> PumpHandle {
        let cap = shared.cfg.max_queue_length;
        // With admission the members' places bound what is queued; the
        // shared queue is only the hand-off to the engine thread.
        let handoff = if admission { cap.max(1024) } else { cap };
        PumpHandle {
            queue: Arc::new(SendQueue::new(handoff, waker)),
            stop: Arc::new(AtomicBool::new(false)),
            idle: Arc::new(AtomicBool::new(true)),
            in_flight: Arc::new(AtomicU64::new(0)),
            members: Arc::new(AtomicU64::new(0)),
            admission: admission.then(|| Arc::new(Admission::new(cap))),
            left: Arc::default(),
            any_left: Arc::default(),
            shared,
        }
    }

    pub(crate) fn send(&self, item: Outgoing) -> crate::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::NotRunning);
        }
        // A send from a sender engine's own thread (a listener it calls)
        // never waits for room: the room would have to come from that
        // thread. It fails with `QueueFull` at once instead.
        let wait = if ENGINE_THREAD.with(|t| t.get()) {
            Duration::ZERO
        } else {
            self.shared.cfg.queue_add_wait_timeout
        };
        if let Some(adm) = &self.admission {
            if let Err(e) = adm.reserve(item.dest.as_slice(), wait) {
                Stats::add(&self.shared.stats.queue_full, 1);
                return Err(e);
            }
        }
        match self.queue.push(item, wait) {
            Ok(()) => Ok(()),
            Err((e, item)) => {
                if let Some(adm) = &self.admission {
                    for &a in item.dest.as_slice() {
                        adm.release(a, 1);
                    }
                }
                Stats::add(&self.shared.stats.queue_full, 1);
                Err(e)
            }
        }
    }

    /// `addr` left the cluster: its state is released once nothing is owed.
    pub(crate) fn member_left(&self, addr: SocketAddr) {
        self.left
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(addr);
        self.any_left.store(true, Ordering::SeqCst);
        self.queue.wake();
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.idle.load(Ordering::SeqCst)
    }

    /// Publishes idleness, in-flight count and queue depth (engine side).
    pub(crate) fn publish<'a>(&self, held: bool, conns: impl Iterator<Item = &'a Conn>) {
        let (mut n, mut members) = (0usize, 0u64);
        for c in conns {
            n += c.load();
            members += 1;
        }
        let idle = !held && self.queue.is_empty() && n == 0;
        self.idle.store(idle, Ordering::SeqCst);
        self.in_flight.store(n as u64, Ordering::Relaxed);
        self.members.store(members, Ordering::Relaxed);
        self.shared
            .stats
            .queue_depth
            .store((self.queue.len() + n) as u64, Ordering::Relaxed);
    }

    /// Reports everything still queued (and `held`) as shut down.
    pub(crate) fn report_unsent(&self, held: Option<Outgoing>) {
        let mut held = held;
        while let Some(item) = held.take().or_else(|| self.queue.pop()) {
            for &a in item.dest.as_slice() {
                self.shared
                    .report(item.id, a, Err(Error::Shutdown), item.ticket.as_ref());
                if let Some(adm) = &self.admission {
                    adm.release(a, 1);
                }
            }
        }
    }

    /// A second handle on the same queue and flags (for the engine).
    pub(crate) fn clone_ref(&self) -> PumpHandle {
        PumpHandle {
            queue: self.queue.clone(),
            stop: self.stop.clone(),
            idle: self.idle.clone(),
            in_flight: self.in_flight.clone(),
            members: self.members.clone(),
            shared: self.shared.clone(),
            admission: self.admission.clone(),
            left: self.left.clone(),
            any_left: self.any_left.clone(),
        }
    }
}

/// The engine side the shared logic needs.
pub(crate) trait Engine {
    /// The caller-side handle.
    fn handle(&self) -> &PumpHandle;
    /// Index of the member `addr`, created if new.
    fn index(&mut self, addr: SocketAddr, now: Instant) -> usize;
    /// The member at `i` (it exists).
    fn conn(&mut self, i: usize) -> &mut Conn;
    /// Starts connecting member `i`; tells its sender how that went.
    fn connect(&mut self, i: usize, now: Instant);
    /// Drops member `i`'s socket (cancelling its operations).
    fn close(&mut self, i: usize);
}

/// A new member sender for `addr` with a fresh random epoch.
pub(crate) fn new_conn(addr: SocketAddr, shared: &Shared, now: Instant) -> Conn {
    let mut e = [0u8; 8];
    e.copy_from_slice(&crate::channel::random_id()[..8]);
    let c = SenderConn::new(
        addr,
        SenderLimits::from_config(&shared.cfg),
        shared.cfg.domain.clone(),
        u64::from_le_bytes(e),
        now,
    )
    .with_secure(shared.secure.clone());
    if shared.outcome.is_some() {
        c
    } else {
        // No listener: a sent message without a ticket is told to nobody,
        // so it is only counted (no outcome entry per message).
        c.with_quiet_sent(|t: &Tok| t.is_none())
    }
}

/// Carries out what member `i`'s sender asks: connects, closes, outcomes
/// (reported to the listener and ticket; places given back), counters.
pub(crate) fn drive<E: Engine>(e: &mut E, i: usize, now: Instant) {
    loop {
        match e.conn(i).poll_action() {
            Some(Action::Connect) => e.connect(i, now),
            Some(Action::Close(why)) => {
                if why != "idle" && why != "shutdown" {
                    crate::sr_log!(Info, "connection to {} lost: {why}", e.conn(i).addr());
                }
                e.close(i);
            }
            None => break,
        }
    }
    let shared = e.handle().shared.clone();
    let adm = e.handle().admission.clone();
    let c = e.conn(i);
    let addr = c.addr();
    let mut n = c.take_quiet_sent();
    while let Some((id, tok, o)) = c.poll_outcome() {
        shared.report(id, addr, o, tok.as_ref());
        n += 1;
    }
    if let Some(adm) = adm {
        adm.release(addr, n);
    }
    let k = c.take_counters();
    if k != Default::default() {
        let s = &shared.stats;
        Stats::add(&s.msgs_sent, k.msgs_sent);
        Stats::add(&s.bytes_sent, k.bytes_sent);
        Stats::add(&s.acks_received, k.acks);
        Stats::add(&s.resends, k.resends);
        Stats::add(&s.compressed, k.compressed);
        Stats::add(&s.reconnects, k.reconnects);
        Stats::add(&s.secure_refusals, k.secure_refusals);
        Stats::add(&s.secure_errors, k.secure_errors);
    }
}

/// Moves up to `batch` queued messages onto their members' senders.
///
/// A member whose queue is full holds the message (in `held`, and intake
/// stops: backpressure through the shared queue to the producers) only
/// while it makes progress; once it is stalled (nothing written for
/// `stall_after`) its copies fail with `QueueFull` at once and the others
/// take theirs, so one stopped member never holds intake for everyone.
/// Returns how many messages were taken; `touched` collects the members
/// to drive.
pub(crate) fn intake<E: Engine>(
    e: &mut E,
    queue: &SendQueue<Outgoing>,
    held: &mut Option<Outgoing>,
    batch: usize,
    now: Instant,
    touched: &mut Vec<usize>,
) -> usize {
    let idle = e.handle().idle.clone();
    // Write between intakes before a healthy member's queue could fill
    // from one turn's worth alone.
    let batch = batch.min((e.handle().shared.cfg.max_queue_length / 2).max(1));
    let mut n = 0;
    let mut last: Option<usize> = None;
    // Clear `idle` before popping so `is_idle` cannot see an empty queue
    // and a stale idle flag at once. Only this thread sets it again (in
    // `publish`, after intake), so once per intake is enough: no atomic
    // read-modify-write per message.
    idle.store(false, Ordering::SeqCst);
    while n < batch {
        let item = match held.take() {
            Some(i) => i,
            None => match queue.pop() {
                Some(i) => i,
                None => break,
            },
        };
        let wait = item.dest.as_slice().iter().any(|&a| {
            let i = e.index(a, now);
            let c = e.conn(i);
            c.is_full() && !c.is_stalled(now)
        });
        if wait {
            *held = Some(item);
            break;
        }
        let deflate = item.flags & FLAG_INTERNAL_DEFLATE != 0;
        let flags = item.flags & !FLAG_INTERNAL_DEFLATE;
        let ack = item.flags & (FLAG_ACK_DELIVERY | FLAG_ACK_RECEIPT) != 0;
        let Outgoing {
            id,
            dest,
            payload,
            ticket,
            ..
        } = item;
        let dests = dest.as_slice();
        let end = dests.len() - 1;
        // The payload and ticket move into the last destination's entry;
        // earlier ones share them by reference count.
        let mut payload = Some(payload);
        let mut ticket = Some(ticket);
        for (k, &a) in dests.iter().enumerate() {
            let i = e.index(a, now);
            let (payload, token) = if k == end {
                (payload.take().unwrap_or_default(), ticket.take().flatten())
            } else {
                (
                    payload.clone().unwrap_or_default(),
                    ticket.clone().flatten(),
                )
            };
            let m = Message {
                id,
                payload,
                flags,
                ack,
                deflate,
                token,
            };
            let c = e.conn(i);
            let ok = c.handle_enqueue(now, m);
            if (!ok || c.state() == crate::proto::sender::State::Wanted) && last != Some(i) {
                touched.push(i);
                last = Some(i);
            }
        }
        n += 1;
    }
    if n > 0 {
        queue.popped();
    }
    n
}

/// Address to member index, with the last lookup cached (most batches go
/// to one member), and free slots reused.
#[derive(Default)]
pub(crate) struct LinkIndex {
    by_addr: HashMap<SocketAddr, usize>,
    last: Option<(SocketAddr, usize)>,
    free: Vec<usize>,
}

impl LinkIndex {
    /// The index of `addr`; when new, `make(slot)` is told where it goes
    /// (`slot` is a freed index or `next`).
    pub(crate) fn lookup(&mut self, addr: SocketAddr, next: usize) -> (usize, bool) {
        if let Some((a, i)) = self.last {
            if a == addr {
                return (i, false);
            }
        }
        let (i, new) = match self.by_addr.get(&addr) {
            Some(&i) => (i, false),
            None => {
                let i = self.free.pop().unwrap_or(next);
                self.by_addr.insert(addr, i);
                (i, true)
            }
        };
        self.last = Some((addr, i));
        (i, new)
    }

    /// The index of `addr`, if known.
    pub(crate) fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Forgets `addr` (at `i`); the slot may be reused.
    pub(crate) fn remove(&mut self, addr: SocketAddr, i: usize) {
        self.by_addr.remove(&addr);
        if self.last.is_some_and(|(a, _)| a == addr) {
            self.last = None;
        }
        self.free.push(i);
    }
}

/// Until when a held message may wait: `t` (the engine's next timer), or
/// earlier, when a full destination would count as stalled.
pub(crate) fn held_until<E: Engine>(
    e: &mut E,
    held: &Option<Outgoing>,
    mut t: Instant,
    now: Instant,
) -> Instant {
    if let Some(h) = held {
        for &a in h.dest.as_slice() {
            let i = e.index(a, now);
            t = t.min(e.conn(i).stall_deadline());
        }
    }
    t
}

/// Tells the senders of members that left (see
/// [`PumpHandle::member_left`]); cheap when none did.
pub(crate) fn members_left<E: Engine>(e: &mut E, index: &LinkIndex, now: Instant) {
    let flag = &e.handle().any_left;
    if !flag.load(Ordering::Relaxed) || !flag.swap(false, Ordering::SeqCst) {
        return;
    }
    let left: Vec<SocketAddr> =
        std::mem::take(&mut *e.handle().left.lock().unwrap_or_else(|p| p.into_inner()));
    for a in left {
        if let Some(i) = index.find(a) {
            e.conn(i).handle_leave(now);
            drive(e, i, now);
        }
    }
}

/// Puts `x` at slot `i` of `v` (a freed slot, or one past the end).
pub(crate) fn put_slot<T>(v: &mut Vec<Option<T>>, i: usize, x: T) {
    if i == v.len() {
        v.push(Some(x));
    } else {
        v[i] = Some(x);
    }
}
