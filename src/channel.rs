//! The channel: what users hold. A [`ChannelBuilder`] takes the config and
//! listeners; [`ChannelBuilder::start`] binds the receiver and starts the
//! sender threads; [`Channel::send`] replicates a payload to members in the
//! configured `replicationMode`; [`Channel::stop`] ends it all.
//!
//! ```no_run
//! use sessionrepl::{Channel, Config};
//! use bytes::Bytes;
//! let ch = Channel::builder(Config::default())
//!     .listener(|m| { println!("{} bytes from {}", m.payload.len(), m.from); Ok(()) })
//!     .start()?;
//! let peer = "127.0.0.1:4001".parse().unwrap();
//! ch.send(&[peer], Bytes::from_static(b"hello"), ch.default_options())?;
//! # Ok::<(), sessionrepl::Error>(())
//! ```
//!
//! [`ChannelBuilder`]: crate::channel::ChannelBuilder
//! [`ChannelBuilder::start`]: crate::channel::ChannelBuilder::start
//! [`Channel::send`]: crate::channel::Channel::send
//! [`Channel::stop`]: crate::channel::Channel::stop

use crate::config::{Config, ReplicationMode};
use crate::error::{Error, Result};
use crate::membership::{
    LocalMemberInfo, Member, MemberEvent, MemberListener, MembershipService, MembershipType,
};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::pump::{Dest, Outgoing};
use crate::transport::sync::SyncSender;
use crate::transport::tribes_send::TribesSender;
use crate::transport::{
    AnyPump, AnyReceiver, Message, MessageListener, OutcomeListener, SendOptions, Shared, Ticket,
};
use crate::wire::compress::Deflater;
use crate::wire::frame::{FrameHeader, FLAG_COMPRESSED, FLAG_INTERNAL_DEFLATE};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use crate::transport::{Delivery, Outcome};

/// Collects what a channel needs before it starts.
pub struct ChannelBuilder {
    cfg: Config,
    listener: Option<MessageListener>,
    batch: Option<crate::transport::BatchListener>,
    outcome: Option<OutcomeListener>,
    members: Option<MemberListener>,
}

impl ChannelBuilder {
    /// Sets the message listener (called on the receiver thread, or a worker
    /// with `tcpThreadCount > 0`; in order per connection). Returning
    /// `Err(reason)` makes the sender see a FAIL when it asked for an ack
    /// after delivery.
    pub fn listener(
        mut self,
        f: impl Fn(&Message) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// Sets the listener from an existing `Arc`.
    pub fn listener_arc(mut self, l: MessageListener) -> Self {
        self.listener = Some(l);
        self
    }

    /// Sets a batch listener: native connections' messages go to it in
    /// batches, in order per connection, instead of to
    /// [`ChannelBuilder::listener`] one by one; the per-message listener
    /// still serves Tribes connections, so set both. See
    /// [`crate::transport::BatchListener`].
    pub fn batch_listener(mut self, l: crate::transport::BatchListener) -> Self {
        self.batch = Some(l);
        self
    }

    /// Sets the outcome listener of the asynchronous modes: called once per
    /// message and destination with acked, sent, failed or timed out.
    pub fn outcome_listener(
        mut self,
        f: impl Fn(u64, SocketAddr, &Outcome) + Send + Sync + 'static,
    ) -> Self {
        self.outcome = Some(Arc::new(f));
        self
    }

    /// Sets the membership listener: members added, removed (with the
    /// reason) and suspected, in order, on membership's own thread.
    pub fn member_listener(mut self, f: impl Fn(&MemberEvent) + Send + Sync + 'static) -> Self {
        self.members = Some(Arc::new(f));
        self
    }

    /// Starts the channel: binds the receiver, starts sender threads.
    ///
    /// # Errors
    /// Invalid configuration, bind failure, thread creation failure.
    pub fn start(self) -> Result<Channel> {
        let cfg = self.cfg;
        cfg.validate()?;
        let backend = crate::driver::Backend::resolve(&cfg.io_backend)?;
        let member_id = cfg.member_id.unwrap_or_else(random_id);
        let secure = cfg.security.context()?;
        let mut shared = Shared::new(cfg, member_id, self.outcome);
        shared.secure = secure;
        let shared = Arc::new(shared);
        if let Some(b) = self.batch {
            let _ = shared.batch.set(b);
        }
        let listener = self
            .listener
            .unwrap_or_else(|| Arc::new(|_: &Message| Ok(())));
        let receiver = AnyReceiver::start(backend, shared.clone(), listener)?;
        let _ = shared.local.set(receiver.local_addr());
        let mode = shared.cfg.replication_mode;
        let limit = match mode {
            ReplicationMode::Pooled => shared.cfg.max_pool_socket_limit,
            _ => 1,
        };
        // Both asynchronous modes run on one shared engine thread, whatever
        // the number of members; `asynchronous` adds all-or-nothing
        // admission per member.
        let fast = match mode {
            ReplicationMode::FastAsyncQueue => {
                Some(AnyPump::start(backend, shared.clone(), "sr-fastasync")?)
            }
            ReplicationMode::Asynchronous => Some(AnyPump::start_policy(
                backend,
                shared.clone(),
                "sr-async",
                true,
            )?),
            _ => None,
        };
        let fast = fast.map(Arc::new);
        let pump_w = fast.as_ref().map(Arc::downgrade);
        let tribes_peers: Arc<RwLock<HashSet<SocketAddr>>> = Arc::default();
        let any_tribes_peer = Arc::new(AtomicBool::new(false));
        let any2 = any_tribes_peer.clone();
        let membership = if shared.cfg.membership.membership_type != MembershipType::None {
            let peers = tribes_peers.clone();
            let user = self.members;
            let listener: MemberListener = Arc::new(move |ev: &MemberEvent| {
                {
                    let mut p = peers.write().unwrap_or_else(|e| e.into_inner());
                    match ev {
                        // Only a multicast heartbeat without sessionrepl's
                        // facts marks a plain Tribes node; static and DNS
                        // members carry no facts and speak the native protocol.
                        MemberEvent::Added(m)
                            if m.source == crate::membership::MemberSource::Multicast
                                && !m.is_sessionrepl() =>
                        {
                            p.insert(m.addr);
                        }
                        MemberEvent::Removed(m, _) => {
                            p.remove(&m.addr);
                        }
                        _ => {}
                    }
                    any2.store(!p.is_empty(), Ordering::Relaxed);
                }
                // A member that left: its sender state goes once nothing
                // is owed to it.
                if let (MemberEvent::Removed(m, _), Some(p)) =
                    (ev, pump_w.as_ref().and_then(|w| w.upgrade()))
                {
                    p.member_left(m.addr);
                }
                if let Some(u) = &user {
                    u(ev);
                }
            });
            let mut local = LocalMemberInfo::new(
                receiver.local_addr(),
                shared.member_id,
                shared.cfg.domain.clone(),
            );
            local.payload = shared.cfg.membership.member_payload.clone();
            let svc = MembershipService::start(&shared.cfg.membership, local, listener)?;
            Some(svc)
        } else {
            None
        };
        let membership = Arc::new(Mutex::new(membership));
        {
            let m = Arc::downgrade(&membership);
            let _ = shared.on_unreachable.set(Box::new(move |addr| {
                if let Some(m) = m.upgrade() {
                    if let Some(svc) = m.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        svc.report_send_failure(addr);
                    }
                }
            }));
        }
        let intake = crate::queue::Intake::new(shared.cfg.send_pool_keep_bytes);
        Ok(Channel {
            inner: Arc::new(Inner {
                tribes: TribesSender::new(shared.clone()),
                tribes_peers,
                any_tribes_peer,
                membership,
                sync: SyncSender::new(shared.clone(), limit).with_shared_connections(
                    mode == ReplicationMode::Pooled && shared.cfg.pool_shared_connection,
                ),
                shared,
                mode,
                local: receiver.local_addr(),
                receiver: Mutex::new(Some(receiver)),
                fast: Mutex::new(fast),
                fast_ref: OnceArc::default(),
                running: AtomicBool::new(true),
                next_id: AtomicU64::new(1),
                intake,
            }),
        })
    }
}

/// A tiny write-once slot for the fastasync pump, read without a lock.
#[derive(Default)]
struct OnceArc(std::sync::OnceLock<Arc<AnyPump>>);

struct Inner {
    shared: Arc<Shared>,
    tribes: TribesSender,
    /// Members known (from membership) to be plain Tribes nodes.
    tribes_peers: Arc<RwLock<HashSet<SocketAddr>>>,
    /// Lock-free check for the send path: is any member a Tribes node?
    any_tribes_peer: Arc<AtomicBool>,
    membership: Arc<Mutex<Option<MembershipService>>>,
    mode: ReplicationMode,
    local: SocketAddr,
    receiver: Mutex<Option<AnyReceiver>>,
    sync: SyncSender,
    fast: Mutex<Option<Arc<AnyPump>>>,
    fast_ref: OnceArc,
    running: AtomicBool,
    next_id: AtomicU64,
    /// Pooled memory for payloads copied in ([`Channel::copy_payload`]).
    intake: crate::queue::Intake,
}

/// A running replication channel. Cheap to clone; all clones share it.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

thread_local! {
    static DEFLATER: RefCell<Option<(u32, Deflater)>> = const { RefCell::new(None) };
}

impl Channel {
    /// A builder for a channel with `cfg`.
    pub fn builder(cfg: Config) -> ChannelBuilder {
        ChannelBuilder {
            cfg,
            listener: None,
            batch: None,
            outcome: None,
            members: None,
        }
    }

    /// The receiver's bound address (members send here).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// This node's 16-byte member id.
    pub fn member_id(&self) -> [u8; 16] {
        self.inner.shared.member_id
    }

    /// The configuration the channel runs with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.cfg
    }

    /// Send options from the config (`waitForAck`, `syncAck`, `compress`).
    pub fn default_options(&self) -> SendOptions {
        SendOptions::from_config(&self.inner.shared.cfg)
    }

    /// True until [`Channel::stop`].
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Sends `payload` to every member in `to`; an empty `to` means every
    /// current member (as membership knows them).
    ///
    /// In `synchronous` and `pooled` modes this returns when every member
    /// acked (or, without ack, when it was written) and fails with the first
    /// member's error otherwise. In `asynchronous` and `fastasyncqueue`
    /// modes it returns once queued; each destination's outcome goes to the
    /// outcome listener. Returns the message id.
    ///
    /// # Errors
    /// [`Error::NotRunning`], [`Error::QueueFull`] (async modes; the message
    /// was not queued), [`Error::InvalidArgument`] (no destination and no
    /// members, payload
    /// over `maxFrameSize`), or in sync modes [`Error::Timeout`],
    /// [`Error::RemoteFailure`], [`Error::Unreachable`].
    pub fn send(&self, to: &[SocketAddr], payload: Bytes, opts: SendOptions) -> Result<u64> {
        self.send_inner(to, payload, opts, None)
    }

    /// Like [`Channel::send`], returning a [`Ticket`] that completes with
    /// every destination's outcome (in all modes).
    ///
    /// # Errors
    /// As [`Channel::send`], except that per-member failures in the
    /// synchronous modes go to the ticket instead.
    pub fn send_with_ticket(
        &self,
        to: &[SocketAddr],
        payload: Bytes,
        opts: SendOptions,
    ) -> Result<(u64, Arc<Ticket>)> {
        let to = self.destinations(to)?;
        let t = Arc::new(Ticket::new(to.len()));
        let id = self.send_inner(&to, payload, opts, Some(t.clone()))?;
        Ok((id, t))
    }

    /// `to`, or every current member when `to` is empty.
    fn destinations<'a>(&self, to: &'a [SocketAddr]) -> Result<std::borrow::Cow<'a, [SocketAddr]>> {
        if !to.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(to));
        }
        let all: Vec<SocketAddr> = self.members().iter().map(|m| m.addr).collect();
        if all.is_empty() {
            return Err(Error::InvalidArgument(
                "no destination given and no current members".into(),
            ));
        }
        Ok(std::borrow::Cow::Owned(all))
    }

    fn send_inner(
        &self,
        to: &[SocketAddr],
        payload: Bytes,
        opts: SendOptions,
        ticket: Option<Arc<Ticket>>,
    ) -> Result<u64> {
        let inner = &*self.inner;
        if !inner.running.load(Ordering::Relaxed) {
            return Err(Error::NotRunning);
        }
        if to.is_empty() {
            let all = self.destinations(to)?;
            return self.send_inner(&all, payload, opts, ticket);
        }
        if inner.any_tribes_peer.load(Ordering::Relaxed) {
            return self.send_mixed(to, payload, opts, ticket);
        }
        self.send_native(to, payload, opts, ticket)
    }

    fn send_native(
        &self,
        to: &[SocketAddr],
        payload: Bytes,
        opts: SendOptions,
        ticket: Option<Arc<Ticket>>,
    ) -> Result<u64> {
        let m = self.native_message(payload, opts)?;
        self.dispatch_native(to, m, ticket, None)
    }

    /// The native frame of one send: compressed here in the synchronous
    /// modes, flagged for the I/O thread's BATCH compression in the
    /// asynchronous ones, checked against `maxFrameSize`, with its id.
    fn native_message(&self, payload: Bytes, opts: SendOptions) -> Result<NativeMessage> {
        let inner = &*self.inner;
        let cfg = &inner.shared.cfg;
        // The asynchronous modes compress on the I/O thread, many messages
        // per deflate stream (BATCH frames); the synchronous ones here.
        let (payload, mut flags) = if inner.mode.is_synchronous() {
            self.prepare(payload, opts)?
        } else if opts.compress && payload.len() >= cfg.compression_min_size {
            (payload, FLAG_INTERNAL_DEFLATE)
        } else {
            (payload, 0)
        };
        if payload.len() > cfg.max_frame_size {
            return Err(Error::InvalidArgument(format!(
                "payload of {} bytes exceeds maxFrameSize {}",
                payload.len(),
                cfg.max_frame_size
            )));
        }
        flags |= opts.ack_flags();
        Ok(NativeMessage {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            payload,
            flags,
            ack: opts.ack != crate::config::AckMode::None,
        })
    }

    /// Sends `m` to native members: in the synchronous modes on this
    /// thread, by `deadline` if given (else `ackTimeout` from now); in the
    /// asynchronous ones onto the engine's queue.
    fn dispatch_native(
        &self,
        to: &[SocketAddr],
        m: NativeMessage,
        ticket: Option<Arc<Ticket>>,
        deadline: Option<Instant>,
    ) -> Result<u64> {
        let inner = &*self.inner;
        let NativeMessage {
            id,
            payload,
            flags,
            ack,
        } = m;
        match inner.mode {
            ReplicationMode::Synchronous | ReplicationMode::Pooled => {
                let hdr = FrameHeader::data(id, payload.len(), flags).encode();
                if to.len() == 1 && ticket.is_none() && deadline.is_none() {
                    inner.sync.send_one(to[0], &hdr, &payload, id, ack)?;
                    return Ok(id);
                }
                let results = match deadline {
                    Some(d) => inner.sync.send_many_by(to, &hdr, &payload, id, ack, d),
                    None => inner.sync.send_many(to, &hdr, &payload, id, ack),
                };
                let d = if ack { Delivery::Acked } else { Delivery::Sent };
                let mut first_err = None;
                for (a, r) in results {
                    let o = r.map(|()| d);
                    if let (Err(e), None) = (&o, &first_err) {
                        first_err = Some(e.clone());
                    }
                    if let Some(t) = &ticket {
                        t.complete(a, o);
                    }
                }
                match (first_err, &ticket) {
                    (Some(e), None) => Err(e),
                    _ => Ok(id),
                }
            }
            ReplicationMode::FastAsyncQueue | ReplicationMode::Asynchronous => {
                let pump = inner.fast_pump()?;
                let dest = if to.len() == 1 {
                    Dest::One(to[0])
                } else {
                    Dest::Many(Arc::from(to))
                };
                pump.send(Outgoing {
                    id,
                    dest,
                    payload,
                    flags,
                    ticket,
                })?;
                Ok(id)
            }
        }
    }

    /// Some destinations may be Tribes nodes: those get Tribes framing, the
    /// rest the native protocol, and the whole send ends by one deadline
    /// (`ackTimeout` from now): the Tribes members are sent to in parallel
    /// (one `poll` loop), and in the synchronous modes while the native
    /// members are (a Tribes connect or write still in progress is driven
    /// on a helper thread for the call meanwhile), so a stalled member of
    /// either kind delays no other. Nothing is sent to anyone when the message is
    /// refused up front (too large; a full queue in the asynchronous modes).
    fn send_mixed(
        &self,
        to: &[SocketAddr],
        payload: Bytes,
        opts: SendOptions,
        ticket: Option<Arc<Ticket>>,
    ) -> Result<u64> {
        let deadline = Instant::now() + self.inner.shared.cfg.ack_timeout;
        let (tribes, native): (Vec<SocketAddr>, Vec<SocketAddr>) = {
            let p = self
                .inner
                .tribes_peers
                .read()
                .unwrap_or_else(|e| e.into_inner());
            to.iter().partition(|a| p.contains(a))
        };
        let native_msg = if native.is_empty() {
            None
        } else {
            Some(self.native_message(payload.clone(), opts)?)
        };
        let (head, body) = if tribes.is_empty() {
            (Bytes::new(), Bytes::new())
        } else if self.inner.shared.cfg.tribes_envelope {
            self.inner.tribes.raw_frame(&payload)?
        } else {
            self.inner.tribes.frame(&payload, opts.ack, opts.compress)?
        };
        let sync = self.inner.mode.is_synchronous();
        let tx = &self.inner.tribes;
        let (id, native_r, tribes_r) = match native_msg {
            None => {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let b = tx.start(&tribes, head, body, opts.ack, deadline);
                (id, Ok(id), tx.finish(b))
            }
            // The native members' enqueue decides first: refused, no
            // Tribes member gets the message either.
            Some(m) if !sync => {
                let id = self.dispatch_native(&native, m, ticket.clone(), None)?;
                let b = tx.start(&tribes, head, body, opts.ack, deadline);
                (id, Ok(id), tx.finish(b))
            }
            // Tribes frames go out first (without blocking) and progress
            // (connects, writes, acks) while the native members are served.
            Some(m) => {
                let b = tx.start(&tribes, head, body, opts.ack, deadline);
                let id = m.id;
                let (r, t) = tx.finish_alongside(b, || {
                    self.dispatch_native(&native, m, ticket.clone(), Some(deadline))
                });
                (id, r, t)
            }
        };
        let mut first_err = native_r.err();
        for (a, sent) in tribes_r {
            let o = sent.map(|()| {
                if opts.ack == crate::config::AckMode::None {
                    Delivery::Sent
                } else {
                    Delivery::Acked
                }
            });
            if sync && ticket.is_none() {
                if let Err(e) = &o {
                    if matches!(e, Error::Unreachable(_)) {
                        self.inner.shared.unreachable(a);
                    }
                    first_err.get_or_insert_with(|| e.clone());
                }
            } else {
                self.inner.shared.report(id, a, o, ticket.as_ref());
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    /// Sends to Tribes members explicitly (BYTE_MESSAGE ChannelData in
    /// Tribes framing), whatever membership knows about them, to all of
    /// them at once, by `ackTimeout` from now. With `tribesEnvelope`,
    /// `payload` is a whole ChannelData and goes as is.
    ///
    /// # Errors
    /// The first failure, in the order of `to`.
    pub fn send_tribes(&self, to: &[SocketAddr], payload: Bytes, opts: SendOptions) -> Result<()> {
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let (head, body) = if self.inner.shared.cfg.tribes_envelope {
            self.inner.tribes.raw_frame(&payload)?
        } else {
            self.inner.tribes.frame(&payload, opts.ack, opts.compress)?
        };
        let deadline = Instant::now() + self.inner.shared.cfg.ack_timeout;
        let b = self.inner.tribes.start(to, head, body, opts.ack, deadline);
        self.inner
            .tribes
            .finish(b)
            .into_iter()
            .try_for_each(|(_, r)| r)
    }

    /// Current members (empty with `membershipType=none`), longest-running
    /// first.
    pub fn members(&self) -> Vec<Member> {
        self.inner
            .membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| m.members())
            .unwrap_or_default()
    }

    /// The application metadata (`memberPayload`) of the member at `addr`
    /// as its last heartbeat carried it, or this node's own for its own
    /// address; `None` if no current member is there.
    pub fn member_payload(&self, addr: SocketAddr) -> Option<Vec<u8>> {
        if addr == self.local_addr() {
            return Some(self.inner.shared.cfg.membership.member_payload.clone());
        }
        self.members()
            .iter()
            .find(|m| m.addr == addr)
            .map(|m| m.member_payload().to_vec())
    }

    /// A copy of `data` in the channel's pooled send memory, to pass to
    /// [`Channel::send`] when the caller's bytes are only borrowed (the C
    /// API's `sr_channel_send`, the Java binding): cut from a shared 64 KiB
    /// chunk instead of an allocation per message, so neither the sending
    /// thread nor the I/O thread that drops it calls the allocator per
    /// message. A queued message keeps its chunk alive until sent.
    pub fn copy_payload(&self, data: &[u8]) -> Bytes {
        self.inner.intake.copy(data)
    }

    /// As [`Channel::copy_payload`], with the bytes written by `fill`, which
    /// must write all `len` bytes of the slice it is given or fail (then
    /// nothing is kept). For a binding whose source is not a Rust slice.
    ///
    /// # Errors
    /// Whatever `fill` returns.
    pub fn copy_payload_with<E>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> std::result::Result<(), E>,
    ) -> std::result::Result<Bytes, E> {
        self.inner.intake.copy_with(len, fill)
    }

    /// Sends to every current member.
    ///
    /// # Errors
    /// As [`Channel::send`]; [`Error::InvalidArgument`] when there are no
    /// members.
    pub fn send_to_members(&self, payload: Bytes, opts: SendOptions) -> Result<u64> {
        self.send(&[], payload, opts)
    }

    /// Compresses when asked and worthwhile, with this thread's reused
    /// compressor.
    fn prepare(&self, payload: Bytes, opts: SendOptions) -> Result<(Bytes, u8)> {
        let cfg = &self.inner.shared.cfg;
        if !opts.compress || payload.len() < cfg.compression_min_size {
            return Ok((payload, 0));
        }
        let level = cfg.compression_level;
        let c = DEFLATER.with(|d| {
            let mut d = d.borrow_mut();
            if d.as_ref().map(|(l, _)| *l) != Some(level) {
                *d = Some((level, Deflater::new(level)));
            }
            d.as_mut().map(|(_, z)| z.compress(&payload))
        });
        let c = c.ok_or_else(|| Error::InvalidArgument("compressor unavailable".into()))??;
        Stats::add(&self.inner.shared.stats.compressed, 1);
        if c.len() >= payload.len() {
            return Ok((payload, 0));
        }
        Ok((c, FLAG_COMPRESSED))
    }

    /// Waits until every queued message has an outcome (asynchronous modes;
    /// immediate in the synchronous ones).
    ///
    /// # Errors
    /// [`Error::Timeout`] if messages are still pending after `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let fast_idle = self.inner.fast_ref.0.get().is_none_or(|p| p.is_idle());
            if fast_idle {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.shared.stats.snapshot()
    }

    /// Stops: no new sends; queued and unacked messages end as
    /// [`Error::Shutdown`] (reported to the outcome listener); the receiver
    /// closes. Idempotent.
    pub fn stop(&self) {
        let inner = &*self.inner;
        if !inner.running.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(p) = inner.fast.lock().unwrap_or_else(|e| e.into_inner()).take() {
            stop_pump(p);
        }
        if let Some(p) = inner.fast_ref.0.get() {
            stop_pump(p.clone());
        }
        inner.sync.close_all();
        inner.tribes.close_all();
        if let Some(m) = inner
            .membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            m.stop();
        }
        if let Some(mut r) = inner
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.stop();
        }
    }
}

fn stop_pump(p: Arc<AnyPump>) {
    p.stop();
}

impl Inner {
    fn fast_pump(&self) -> Result<&Arc<AnyPump>> {
        if let Some(p) = self.fast_ref.0.get() {
            return Ok(p);
        }
        let g = self.fast.lock().unwrap_or_else(|e| e.into_inner());
        let p = g.as_ref().ok_or(Error::NotRunning)?.clone();
        drop(g);
        Ok(self.fast_ref.0.get_or_init(|| p))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(mut r) = self.receiver.get_mut().ok().and_then(|r| r.take()) {
            r.stop();
        }
    }
}

/// One message's native frame, ready for any number of members.
struct NativeMessage {
    id: u64,
    payload: Bytes,
    flags: u8,
    ack: bool,
}

/// 16 random bytes from the OS (falling back to time and pid).
pub fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut id).is_ok() {
            return id;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    id[..16].copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    id
}
