//! The receiver's bounds as a sans-IO bookkeeper: connection slots,
//! handshake deadlines, the global receive-memory pool, and deadlines of
//! connections whose peer does not read its acks. Tokens and `now` in;
//! decisions (admit, evict, reserve, expire) and the next deadline out. The
//! I/O drivers (mio, io_uring) only carry the decisions out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The configured bounds (see the "Receiver limits" table in
/// `docs/PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxLimitsConfig {
    /// `maxConnections`: inbound connections open at once.
    pub max_connections: usize,
    /// `handshakeTimeout`: time from accept to a complete preface.
    pub handshake_timeout: Duration,
    /// `maxPendingAckBytes`: unsent output (acks, PONGs, FAILs) above which
    /// a connection is no longer read.
    pub max_pending_output: usize,
    /// `ackWriteTimeout`: how long a connection may stay above
    /// `max_pending_output` before it is closed.
    pub output_stall_timeout: Duration,
    /// `maxReceiveMemory`: bytes of frames in progress across connections.
    pub max_receive_memory: usize,
    /// `connectionUploadTimeout`: time a frame, once started, may take to
    /// arrive in full (a large frame's clock starts when its memory is
    /// reserved).
    pub upload_timeout: Duration,
    /// `maxInflatePerTurn`: inflated bytes per connection before the
    /// receiver turns to other connections.
    pub inflate_per_turn: usize,
}

/// Frames up to this size are read without a reservation: they fit the
/// read chunk every connection has anyway.
pub const UNRESERVED_FRAME: usize = 64 * 1024;

/// What to do with a newly accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take it.
    Accept,
    /// Take it after closing this older connection that has not completed
    /// its preface.
    Evict(usize),
    /// Every slot holds a connection that completed its preface: refuse.
    Refuse,
}

/// Why a connection's deadline closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete preface within `handshakeTimeout`.
    Handshake,
    /// Acks unsent above `maxPendingAckBytes` for `ackWriteTimeout`.
    OutputStalled,
    /// A frame started (or holding receive memory) did not complete
    /// within `connectionUploadTimeout`.
    Upload,
}

/// Bookkeeping of one receiver thread's connections against its bounds.
#[derive(Debug)]
pub struct RxLimits {
    cfg: RxLimitsConfig,
    conns: usize,
    /// Connections still in their handshake: token → deadline. Tokens
    /// ascend with accept order, so the first entry is the oldest.
    handshaking: Deadlines,
    /// Connections above the output bound: token → deadline.
    stalled_output: Deadlines,
    /// Connections with a frame partly received (and those holding a
    /// reservation): token → deadline of that frame.
    uploads: Deadlines,
    mem_used: usize,
    /// Connections waiting for receive memory, in arrival order.
    mem_waiters: VecDeque<usize>,
    /// Memory was released since waiters last retried.
    freed: bool,
}

impl RxLimits {
    /// An empty bookkeeper.
    pub fn new(cfg: RxLimitsConfig) -> Self {
        RxLimits {
            cfg,
            conns: 0,
            handshaking: Deadlines::default(),
            stalled_output: Deadlines::default(),
            uploads: Deadlines::default(),
            mem_used: 0,
            mem_waiters: VecDeque::new(),
            freed: false,
        }
    }

    /// The bounds.
    pub fn config(&self) -> &RxLimitsConfig {
        &self.cfg
    }

    /// Decides on a connection just accepted as `token` (larger than every
    /// earlier token). On `Accept` or `Evict` it is counted and its
    /// handshake deadline starts; the evicted one must be closed with
    /// [`RxLimits::closed`].
    pub fn admit(&mut self, token: usize, now: Instant) -> Admit {
        let verdict = if self.conns < self.cfg.max_connections {
            Admit::Accept
        } else if let Some(old) = self.handshaking.oldest() {
            Admit::Evict(old)
        } else {
            return Admit::Refuse;
        };
        self.conns += 1;
        self.handshaking
            .set(token, now + self.cfg.handshake_timeout);
        verdict
    }

    /// The connection completed its preface: its handshake deadline ends
    /// and it is no longer evictable.
    pub fn opened(&mut self, token: usize) {
        self.handshaking.remove(token);
    }

    /// True while `token` has not completed its preface.
    pub fn is_handshaking(&self, token: usize) -> bool {
        self.handshaking.contains(token)
    }

    /// The connection is gone; `reserved` receive memory it held returns
    /// to the pool.
    pub fn closed(&mut self, token: usize, reserved: usize) {
        self.conns = self.conns.saturating_sub(1);
        self.handshaking.remove(token);
        self.stalled_output.remove(token);
        self.uploads.remove(token);
        self.mem_waiters.retain(|&t| t != token);
        self.release_memory(reserved);
    }

    /// Connections counted now.
    pub fn connections(&self) -> usize {
        self.conns
    }

    /// True if `pending` unsent bytes exceed the output bound.
    pub fn output_over(&self, pending: usize) -> bool {
        pending > self.cfg.max_pending_output
    }

    /// The connection's unsent output went above the bound: its deadline
    /// starts (an earlier one stays).
    pub fn output_blocked(&mut self, token: usize, now: Instant) {
        let deadline = now + self.cfg.output_stall_timeout;
        self.stalled_output.set_if_absent(token, deadline);
    }

    /// The connection's output is back within the bound.
    pub fn output_unblocked(&mut self, token: usize) {
        self.stalled_output.remove(token);
    }

    /// Reserves `n` bytes of receive memory for `token`'s frame in
    /// progress. On refusal the connection is queued and handed back by
    /// [`RxLimits::take_waiters`] once memory frees. First fit: a frame that
    /// fits is served even while a larger one waits, so connections stuck
    /// on their reservations cannot block smaller frames that fit.
    /// A granted frame must then complete within `connectionUploadTimeout`
    /// from `now`, so memory cannot be held hostage by a peer that stops
    /// mid-frame.
    pub fn reserve(&mut self, token: usize, n: usize, now: Instant) -> bool {
        if self.mem_used + n <= self.cfg.max_receive_memory {
            self.mem_waiters.retain(|&t| t != token);
            self.mem_used += n;
            self.uploads.set(token, now + self.cfg.upload_timeout);
            return true;
        }
        if !self.mem_waiters.contains(&token) {
            self.mem_waiters.push_back(token);
        }
        // Waiting for memory is not the peer's doing: its frame's clock
        // starts again when the reservation is granted.
        self.uploads.remove(token);
        false
    }

    /// `token` holds a frame partly received, of any size (a header in
    /// part counts), that started at `now`: it must arrive in full within
    /// `connectionUploadTimeout`, else [`Expiry::Upload`] closes the
    /// connection. A peer that stops mid-frame holds its connection slot
    /// and its read chunk, whatever the frame's size.
    pub fn frame_started(&mut self, token: usize, now: Instant) {
        self.uploads.set(token, now + self.cfg.upload_timeout);
    }

    /// `token` is between frames: no frame deadline (an idle connection
    /// is not an upload).
    pub fn between_frames(&mut self, token: usize) {
        self.uploads.remove(token);
    }

    /// `token`'s frame completed: its `n` reserved bytes return to the pool.
    pub fn release(&mut self, token: usize, n: usize) {
        self.uploads.remove(token);
        self.release_memory(n);
    }

    fn release_memory(&mut self, n: usize) {
        self.freed |= n > 0;
        self.mem_used = self.mem_used.saturating_sub(n);
    }

    /// Receive memory reserved now.
    pub fn memory_used(&self) -> usize {
        self.mem_used
    }

    /// Takes the waiting connections out of the queue if memory was
    /// released since the last call; the driver resumes them and each
    /// retries [`RxLimits::reserve`] (those still refused queue again, in
    /// order). Nothing released, nothing to retry: waiters cost no work.
    pub fn take_waiters(&mut self) -> Vec<usize> {
        if std::mem::take(&mut self.freed) && !self.mem_waiters.is_empty() {
            self.mem_waiters.drain(..).collect()
        } else {
            Vec::new()
        }
    }

    /// True if connections wait for receive memory.
    pub fn has_waiters(&self) -> bool {
        !self.mem_waiters.is_empty()
    }

    /// Connections whose deadline passed at `now`, handshakes first; the
    /// caller closes them (and reports [`RxLimits::closed`]). Each is
    /// reported once: its deadline is removed here.
    pub fn expired(&mut self, now: Instant) -> Vec<(usize, Expiry)> {
        let mut out = Vec::new();
        self.handshaking.take_due(now, Expiry::Handshake, &mut out);
        self.stalled_output
            .take_due(now, Expiry::OutputStalled, &mut out);
        self.uploads.take_due(now, Expiry::Upload, &mut out);
        out
    }

    /// The earliest deadline, so an idle driver sleeps exactly until then.
    pub fn next_deadline(&self) -> Option<Instant> {
        [&self.handshaking, &self.stalled_output, &self.uploads]
            .iter()
            .filter_map(|d| d.next())
            .min()
    }
}

/// One kind of deadline, by connection, ordered both ways: by token (the
/// oldest connection first) and by time. The driver asks for what is due
/// and for the next deadline on every turn, so with thousands of
/// connections neither may scan them all: both cost O(log n) here.
#[derive(Debug, Default)]
struct Deadlines {
    by_token: BTreeMap<usize, Instant>,
    by_time: BTreeSet<(Instant, usize)>,
}

impl Deadlines {
    /// Sets (or moves) `token`'s deadline.
    fn set(&mut self, token: usize, at: Instant) {
        if let Some(old) = self.by_token.insert(token, at) {
            self.by_time.remove(&(old, token));
        }
        self.by_time.insert((at, token));
    }

    /// Sets `token`'s deadline unless it has one (an earlier one stays).
    fn set_if_absent(&mut self, token: usize, at: Instant) {
        if !self.by_token.contains_key(&token) {
            self.set(token, at);
        }
    }

    fn remove(&mut self, token: usize) {
        if let Some(old) = self.by_token.remove(&token) {
            self.by_time.remove(&(old, token));
        }
    }

    fn contains(&self, token: usize) -> bool {
        self.by_token.contains_key(&token)
    }

    /// The connection with the smallest token (tokens ascend with accept
    /// order: the oldest).
    fn oldest(&self) -> Option<usize> {
        self.by_token.keys().next().copied()
    }

    fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Removes the deadlines due at `now`, reporting each as `why`.
    fn take_due(&mut self, now: Instant, why: Expiry, out: &mut Vec<(usize, Expiry)>) {
        while let Some(&(at, token)) = self.by_time.first() {
            if at > now {
                break;
            }
            self.by_time.pop_first();
            self.by_token.remove(&token);
            out.push((token, why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RxLimitsConfig {
        RxLimitsConfig {
            max_connections: 3,
            handshake_timeout: Duration::from_secs(2),
            max_pending_output: 100,
            output_stall_timeout: Duration::from_secs(5),
            max_receive_memory: 1000,
            upload_timeout: Duration::from_secs(30),
            inflate_per_turn: 1 << 20,
        }
    }

    #[test]
    fn full_slots_evict_the_oldest_handshaking_connection_never_a_member() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        assert_eq!(l.admit(1, t0), Admit::Accept);
        assert_eq!(l.admit(2, t0), Admit::Accept);
        assert_eq!(l.admit(3, t0), Admit::Accept);
        l.opened(1);
        // Full: the oldest connection still in its handshake goes.
        assert_eq!(l.admit(4, t0), Admit::Evict(2));
        l.closed(2, 0);
        assert_eq!(l.connections(), 3);
        l.opened(3);
        l.opened(4);
        // Every slot holds a member: the newcomer is refused, nobody is evicted.
        assert_eq!(l.admit(5, t0), Admit::Refuse);
        assert_eq!(l.connections(), 3);
        l.closed(1, 0);
        assert_eq!(l.admit(6, t0), Admit::Accept);
    }

    #[test]
    fn deadlines_come_due_in_time_order_and_move_when_set_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::default();
        d.set(5, t0 + s(3));
        d.set(9, t0 + s(1));
        d.set(7, t0 + s(2));
        d.set_if_absent(9, t0 + s(9)); // an earlier one stays
        d.set(7, t0 + s(5)); // moved
        assert_eq!((d.oldest(), d.next()), (Some(5), Some(t0 + s(1))));
        let mut out = Vec::new();
        d.take_due(t0 + s(4), Expiry::Upload, &mut out);
        assert_eq!(out, vec![(9, Expiry::Upload), (5, Expiry::Upload)]);
        assert!(!d.contains(5) && d.contains(7));
        d.remove(7);
        assert_eq!((d.oldest(), d.next()), (None, None));
    }

    #[test]
    fn any_frame_started_must_complete_within_the_upload_timeout() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        for t in 1..=3 {
            l.admit(t, t0);
            l.opened(t);
        }
        // Small frames (no reservation) started on 1 and 2.
        l.frame_started(1, t0);
        l.frame_started(2, t0 + Duration::from_secs(1));
        // 2 finished its frame: no deadline left for it.
        l.between_frames(2);
        // 3 waits for memory: not its fault, no clock until granted.
        l.frame_started(3, t0);
        assert!(!l.reserve(3, 2000, t0));
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(l.expired(t0 + Duration::from_millis(29_999)).is_empty());
        assert_eq!(
            l.expired(t0 + Duration::from_secs(30)),
            vec![(1, Expiry::Upload)]
        );
        assert_eq!(l.next_deadline(), None);
        // Granted later, 3's frame gets the whole timeout from then.
        let t1 = t0 + Duration::from_secs(40);
        assert!(l.reserve(3, 500, t1));
        assert_eq!(l.next_deadline(), Some(t1 + Duration::from_secs(30)));
    }

    #[test]
    fn handshake_deadline_expires_only_unfinished_connections() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        l.admit(1, t0);
        l.admit(2, t0 + Duration::from_secs(1));
        l.opened(2);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(l.expired(t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(
            l.expired(t0 + Duration::from_secs(2)),
            vec![(1, Expiry::Handshake)]
        );
        assert!(
            l.expired(t0 + Duration::from_secs(3)).is_empty(),
            "reported once"
        );
        l.closed(1, 0);
        assert_eq!(
            l.next_deadline(),
            None,
            "an idle receiver has nothing to wake for"
        );
    }

    #[test]
    fn output_stall_deadline_starts_once_and_clears_when_drained() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        l.admit(1, t0);
        l.opened(1);
        assert!(!l.output_over(100));
        assert!(l.output_over(101));
        l.output_blocked(1, t0);
        // A later report does not move the deadline.
        l.output_blocked(1, t0 + Duration::from_secs(4));
        assert_eq!(
            l.expired(t0 + Duration::from_secs(5)),
            vec![(1, Expiry::OutputStalled)]
        );
        l.output_unblocked(1);
        assert!(l.expired(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn receive_memory_is_bounded_and_waiters_come_back_when_it_frees() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        assert!(l.reserve(1, 600, t0));
        assert!(!l.reserve(2, 600, t0), "would exceed the bound");
        assert!(
            l.reserve(3, 300, t0),
            "first fit: a frame that fits is served"
        );
        assert_eq!(l.memory_used(), 900);
        assert!(!l.reserve(4, 200, t0));
        assert!(l.has_waiters());
        // Nothing released: waiters are not retried.
        assert!(l.take_waiters().is_empty());
        l.release(1, 600);
        assert_eq!(l.take_waiters(), vec![2, 4]);
        assert!(l.reserve(2, 600, t0));
        assert!(!l.reserve(4, 200, t0));
        assert_eq!(l.memory_used(), 900);
        // A closed connection gives its reservation back and leaves the queue.
        l.closed(4, 0);
        assert!(!l.has_waiters());
        l.closed(2, 600);
        l.closed(3, 300);
        assert_eq!(l.memory_used(), 0);
        assert!(l.take_waiters().is_empty());
    }

    #[test]
    fn a_reserved_frame_must_complete_within_the_upload_timeout() {
        let t0 = Instant::now();
        let mut l = RxLimits::new(cfg());
        assert!(l.reserve(1, 500, t0));
        assert!(l.reserve(2, 500, t0 + Duration::from_secs(10)));
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(30)));
        // Connection 2 completes its frame in time; 1 stalls mid-frame.
        l.release(2, 500);
        assert_eq!(
            l.expired(t0 + Duration::from_secs(30)),
            vec![(1, Expiry::Upload)]
        );
        l.closed(1, 500);
        assert_eq!(l.memory_used(), 0);
        assert_eq!(l.next_deadline(), None);
    }
}
