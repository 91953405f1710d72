//! [`SessionStore`]: the replicated session store on a real network — a
//! [`SessionNode`] wired onto a [`Channel`] with membership.
//!
//! ```no_run
//! use sessionrepl::session::{SessionStore, StoreLookup};
//! use sessionrepl::Config;
//! use std::time::Duration;
//! let mut cfg = Config::default();
//! cfg.set("membershipType", "multicast")?;
//! cfg.set("mcastAddr", "239.255.7.7")?;
//! let store = SessionStore::open(cfg)?;
//! store.wait_ready(Duration::from_secs(60))?;
//! // One request: look the session up, record changes, commit at the end.
//! let mut txn = store.begin(&b"abc"[..]);
//! txn.set(&b"cart"[..], &b"3 items"[..]);
//! store.create(txn)?.wait(Duration::from_secs(5))?; // replicated and acked
//! if let StoreLookup::Local(s) = store.get(b"abc")? {
//!     assert_eq!(&s.attribute(b"cart").unwrap()[..], b"3 items");
//! }
//! store.drain(Duration::from_secs(30))?; // hand everything over, then
//! store.close();                        // stop
//! # Ok::<(), sessionrepl::Error>(())
//! ```
//!
//! See `docs/SESSIONS.md` for the model and the guarantees, and
//! [`core`](self) for the threading.

mod core;
mod handle;
mod probe;

pub use self::core::{member_key, EventListener, MemberEventListener};
use self::core::{Core, Input};
pub use handle::{CommitHandle, FetchHandle, LookupStep};
use handle::{Slot, SlotResult};

use super::model::{MemberKey, Session, SessionId, Txn};
use super::node::{Lookup, NodeState, SessionEvent, SessionStats, TransferFailure};
use crate::channel::Channel;
use crate::config::{Config, ReplicationMode};
use crate::error::{Error, Result};
use crate::membership::{MemberEvent, MemberSource, MembershipType};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What [`SessionStore::get`] found: an owned snapshot, so the host holds
/// no lock while it serves the request.
#[derive(Debug, Clone)]
pub enum StoreLookup {
    /// The session, as held here (fetched from its owner first if needed).
    Local(Session),
    /// This node handed the session over while draining: forward or
    /// redirect the request to the member listening at this address.
    Moved(SocketAddr),
    /// No such session in the cluster.
    NotFound,
}

/// How long [`SessionStore::get`] waits before it asks again when no ready
/// primary could answer.
pub const LOOKUP_RETRY: Duration = Duration::from_millis(20);

/// Builds a [`SessionStore`]: the config plus an optional event listener.
pub struct SessionStoreBuilder {
    cfg: Config,
    listener: Option<EventListener>,
    member_listener: Option<MemberEventListener>,
}

impl SessionStoreBuilder {
    /// Sets the listener of session events: sessions created, updated,
    /// expired, invalidated or renamed by other members (with
    /// `notifyListenersOnReplication`), local expiries, conflicts, and the
    /// life-cycle events `Ready`, `TransferFailed` and `Drained`. Called on
    /// the store's driver thread, outside any lock: it may call the store.
    pub fn event_listener(mut self, f: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// Sets the listener of the store's members: `Added` when a member the
    /// store places sessions on joins, `Removed` when it leaves (plain
    /// Tribes nodes heard by multicast are not store members and are not
    /// reported). Called on the store's driver thread, in order with the
    /// session events, outside any lock: it may call the store. Read a
    /// member's metadata with [`Member::member_payload`].
    ///
    /// [`Member::member_payload`]: crate::membership::Member::member_payload
    pub fn member_listener(mut self, f: impl Fn(&MemberEvent) + Send + Sync + 'static) -> Self {
        self.member_listener = Some(Arc::new(f));
        self
    }

    /// Opens the store: starts the channel and membership, then the node,
    /// which asks the members it found for its share of the sessions once
    /// member discovery had its time (`memberDiscoveryTime`).
    ///
    /// `replicationMode` `synchronous` and `pooled` are replaced by
    /// `fastasyncqueue`: the store needs per-message outcomes and must
    /// never block on a peer while it holds its node.
    ///
    /// # Errors
    /// Invalid configuration, bind failure, thread creation failure.
    pub fn open(self) -> Result<SessionStore> {
        let mut cfg = self.cfg;
        if cfg.replication_mode.is_synchronous() {
            cfg.replication_mode = ReplicationMode::FastAsyncQueue;
        }
        let discovery =
            cfg.session
                .member_discovery_time
                .unwrap_or(match cfg.membership.membership_type {
                    MembershipType::Multicast => {
                        cfg.membership.mcast_frequency * 2 + Duration::from_millis(50)
                    }
                    MembershipType::Dns => Duration::from_secs(1),
                    MembershipType::Static | MembershipType::None => Duration::ZERO,
                });
        let access_timeout = cfg.session.access_timeout;
        // A member the node knows but the membership layer has not listed
        // for this long is dropped (see `Core::reconcile_members`): longer
        // than discovery and than a failed ping's round.
        let member_grace = (cfg.membership.membership_type != MembershipType::None).then(|| {
            (discovery * 2)
                .max(cfg.membership.tcp_ping_interval * 2 + cfg.membership.failure_connect_timeout)
                .max(Duration::from_secs(1))
        });
        let static_probe = (cfg.membership.membership_type == MembershipType::Static).then(|| {
            (
                cfg.membership
                    .static_members
                    .iter()
                    .map(|m| m.addr)
                    .collect::<Vec<_>>(),
                cfg.domain.clone(),
                cfg.membership.failure_connect_timeout,
                cfg.rx_limits.handshake_timeout.min(probe::MAX_REPLY_WAIT),
            )
        });
        let session_cfg = cfg.session.clone();
        let core = Arc::new(Core::new(self.listener, self.member_listener, cfg.compress));
        let (w1, w2, w3) = (
            Arc::downgrade(&core),
            Arc::downgrade(&core),
            Arc::downgrade(&core),
        );
        let channel = Channel::builder(cfg)
            .listener(move |m| match w1.upgrade() {
                Some(c) => c.on_message(m),
                None => Err("session store closed".into()),
            })
            .outcome_listener(move |id, to, o| {
                if let Some(c) = w2.upgrade() {
                    c.on_outcome(id, to, o);
                }
            })
            .member_listener(move |ev| {
                let Some(c) = w3.upgrade() else { return };
                match ev {
                    MemberEvent::Added(m) if is_store_member(m) => c.push(Input::Added(m.addr)),
                    MemberEvent::Removed(m, _) => c.push(Input::Removed(m.addr)),
                    _ => {}
                }
                match ev {
                    MemberEvent::Added(m) | MemberEvent::Removed(m, _) if is_store_member(m) => {
                        c.member_event(ev)
                    }
                    _ => {}
                }
            })
            .start()?;
        if let Some((members, domain, connect, reply)) = static_probe {
            // A member's kind comes from its answer to our preface (static
            // members send no heartbeat facts).
            let mut p = crate::wire::Preface::new(channel.member_id(), &domain, false);
            p.listen_port = channel.local_addr().port();
            let me = channel.local_addr();
            if let Err(e) = probe::check_static_members(&members, me, &p.encode(), connect, reply) {
                channel.stop();
                return Err(e);
            }
        }
        let me = member_key(channel.local_addr());
        let now = Instant::now();
        let node = super::SessionNode::new(session_cfg, me, now);
        core.install(node, now + discovery, member_grace);
        let _ = core.channel.set(channel);
        let c = core.clone();
        let driver = crate::driver::sys::ThreadBuilder::new()
            .name("sr-session-driver".into())
            .spawn(move || c.drive());
        let driver = match driver {
            Ok(h) => h,
            Err(e) => {
                if let Some(ch) = core.channel.get() {
                    ch.stop();
                }
                return Err(e.into());
            }
        };
        let _ = core.driver.set(driver.thread().clone());
        core.wake();
        Ok(SessionStore {
            core,
            me,
            driver: Mutex::new(Some(driver)),
            access_timeout,
        })
    }
}

/// Session stores are the members that speak sessionrepl (their heartbeats
/// carry its facts) or that the operator listed (static, DNS).
fn is_store_member(m: &crate::membership::Member) -> bool {
    m.is_sessionrepl() || m.source != MemberSource::Multicast
}

/// The replicated session store of one node on a real network (see the
/// module docs). Thread-safe: share it (`Arc`) between request threads.
pub struct SessionStore {
    core: Arc<Core>,
    me: MemberKey,
    driver: Mutex<Option<JoinHandle<()>>>,
    access_timeout: Duration,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SessionStore {
    /// A builder, to set an event listener before opening.
    pub fn builder(cfg: Config) -> SessionStoreBuilder {
        SessionStoreBuilder {
            cfg,
            listener: None,
            member_listener: None,
        }
    }

    /// Opens a store with no event listener (see [`SessionStoreBuilder::open`]).
    ///
    /// # Errors
    /// As [`SessionStoreBuilder::open`].
    pub fn open(cfg: Config) -> Result<SessionStore> {
        SessionStore::builder(cfg).open()
    }

    /// The channel underneath (its address, counters, members).
    pub fn channel(&self) -> &Channel {
        self.core.channel.get().expect("set at open")
    }

    /// The address other members reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.me.addr
    }

    /// This node's key in placement.
    pub fn me(&self) -> MemberKey {
        self.me
    }

    /// Waits until state transfer is complete: this node holds every
    /// session the placement gives it and may serve requests.
    ///
    /// # Errors
    /// [`Error::Timeout`] if not ready within `timeout`;
    /// [`Error::RemoteFailure`] if `stateTransferTimeout` passed first (the
    /// node holds partial state); [`Error::Shutdown`] if closed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut g = self.core.status();
        loop {
            if g.ready {
                return Ok(());
            }
            if let Some(TransferFailure::Timeout { missing }) = g.failed {
                return Err(Error::RemoteFailure(format!(
                    "state transfer timed out (stateTransferTimeout) with {missing} donor(s) incomplete"
                )));
            }
            if g.closed {
                return Err(Error::Shutdown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            g = self
                .core
                .status_cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// True once state transfer completed.
    pub fn is_ready(&self) -> bool {
        self.core.status().ready
    }

    /// How long state transfer took, from the node's start (after member
    /// discovery) until it was ready; `None` before.
    pub fn ready_after(&self) -> Option<Duration> {
        self.core.status().ready_after
    }

    /// The node's life-cycle state.
    pub fn state(&self) -> NodeState {
        self.core.node_state()
    }

    /// Starts recording a request's changes to session `id`.
    pub fn begin(&self, id: impl Into<SessionId>) -> Txn {
        Txn::new(id)
    }

    /// True if this node is the primary of `id` now. A host that chooses
    /// session ids can draw until this holds, so new sessions start local.
    pub fn is_primary_for(&self, id: &[u8]) -> bool {
        self.core.with(|st, _| st.node.is_primary_for(id))
    }

    /// Creates session `txn.id()` with the changes in `txn` and replicates it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the id exists or was removed recently,
    /// [`Error::InvalidArgument`] past `maxActiveSessions`,
    /// [`Error::Shutdown`] after drain.
    pub fn create(&self, txn: Txn) -> Result<CommitHandle> {
        let ct = epoch_ms();
        self.core.with(|st, now| {
            let ticket = st.node.create(txn, ct, now)?;
            let slot = Slot::new();
            st.commits.insert(ticket, slot.clone());
            Ok(CommitHandle::new(slot, now))
        })
    }

    /// Commits a request's changes (the end of a request). In backup mode
    /// the session's primary applies them (here, or handed to it), checking
    /// the transaction's base version if set ([`Txn::on`],
    /// [`Txn::set_base`]), and sends only the changes to the backups. The
    /// handle completes when every holder acknowledged, or with the failure
    /// (see [`CommitHandle::wait`]). An empty `txn` records an access and
    /// returns a completed handle.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the base is stale (decided here when this
    /// node is the primary; otherwise through the handle),
    /// [`Error::NotFound`] if there is no such session,
    /// [`Error::Unreachable`] if fewer than `minCommitCopies` holders are
    /// up or no primary is known, [`Error::Shutdown`] after drain.
    pub fn commit(&self, txn: Txn) -> Result<CommitHandle> {
        self.core.with(|st, now| match st.node.commit(txn, now)? {
            Some(ticket) => {
                let slot = Slot::new();
                st.commits.insert(ticket, slot.clone());
                Ok(CommitHandle::new(slot, now))
            }
            None => Ok(CommitHandle::new(Slot::done(SlotResult::Acked(1)), now)),
        })
    }

    /// Looks session `id` up, fetching it from its owner when this node
    /// holds no copy (backup mode), waiting up to `accessTimeout`. Not an
    /// access for expiry: a read-only request calls
    /// [`SessionStore::access`] too.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the owner did not answer in time.
    pub fn get(&self, id: &[u8]) -> Result<StoreLookup> {
        self.get_timeout(id, self.access_timeout)
    }

    /// [`SessionStore::get`] with an explicit wait. In backup mode the
    /// session's primary answers, with acknowledged state only: a read
    /// waits while a commit of the session is in flight, and while no ready
    /// primary can answer (a primary lost and not yet replaced, a joiner
    /// not yet ready), up to `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if no answer came within `timeout`.
    pub fn get_timeout(&self, id: &[u8], timeout: Duration) -> Result<StoreLookup> {
        let deadline = Instant::now() + timeout;
        loop {
            let step = match self.lookup_step(id) {
                LookupStep::Fetching(h) => match h.wait_until(deadline) {
                    None => return Err(Error::Timeout),
                    Some(step) => step?,
                },
                step => step,
            };
            if let LookupStep::Done(found) = step {
                return Ok(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            std::thread::sleep(left.min(LOOKUP_RETRY));
        }
    }

    /// The copy of `id` this node holds (delta mode: every node; backup
    /// mode: its primary and backups), read without a fetch and without
    /// waiting. Unlike [`SessionStore::get`] it may lag the primary by
    /// commits in flight; `None` when this node holds no copy.
    pub fn local_copy(&self, id: &[u8]) -> Option<Session> {
        self.core.with(|st, _| st.node.table.get(id).cloned())
    }

    /// One step of [`SessionStore::get`] that never blocks: the answer, a
    /// fetch from the session's primary to wait for (its
    /// [`FetchHandle::on_complete`] says when), or `Retry` (no ready
    /// primary can answer yet; try again after [`LOOKUP_RETRY`]). For hosts
    /// that run their own event loop.
    pub fn lookup_step(&self, id: &[u8]) -> LookupStep {
        self.core.with(|st, now| match st.node.get(id, now) {
            Lookup::Local(s) => LookupStep::Done(StoreLookup::Local(s.clone())),
            Lookup::Moved(m) => LookupStep::Done(StoreLookup::Moved(m.addr)),
            Lookup::NotFound => LookupStep::Done(StoreLookup::NotFound),
            Lookup::Unavailable => LookupStep::Retry,
            Lookup::Fetching { .. } => {
                let slot = Slot::new();
                let key = SessionId::copy_from_slice(id);
                st.fetches.entry(key).or_default().push(slot.clone());
                LookupStep::Fetching(FetchHandle::new(slot))
            }
        })
    }

    /// Records a read-only request: refreshes the last access here and, no
    /// more often than a quarter of the max inactive interval, on the
    /// holders (so none of them expires a session in use). In backup mode
    /// a node without a copy sends the access to the session's holders
    /// (without waiting for them).
    ///
    /// # Errors
    /// [`Error::NotFound`] if no member holds it by placement (delta mode:
    /// this node holds no copy).
    pub fn access(&self, id: &[u8]) -> Result<()> {
        self.core.with(|st, now| st.node.access(id, now))
    }

    /// Invalidates session `id` cluster-wide (logout). Idle sessions expire
    /// by themselves after their max inactive interval: the member that is
    /// their primary expires them and tells the others. In backup mode a
    /// node without a copy sends the removal to the session's holders; the
    /// handle completes when they acknowledged it (also when they held no
    /// such session: the id is retired either way).
    ///
    /// # Errors
    /// [`Error::NotFound`] if no other member holds it by placement (delta
    /// mode: this node holds no copy).
    pub fn invalidate(&self, id: &[u8]) -> Result<CommitHandle> {
        self.core.with(|st, now| {
            let ticket = st.node.invalidate(id, now)?;
            let slot = Slot::new();
            st.commits.insert(ticket, slot.clone());
            Ok(CommitHandle::new(slot, now))
        })
    }

    /// Renames a session cluster-wide (session-fixation protection after
    /// login); every member applies it as one step. Any member may ask: one
    /// without a copy hands the rename to the session's primary, as it does
    /// a commit.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no member holds `old` (from the handle's wait
    /// when the primary answers it), [`Error::Conflict`] if `new` is in use
    /// or was removed recently.
    pub fn change_id(&self, old: &[u8], new: impl Into<SessionId>) -> Result<CommitHandle> {
        let new = new.into();
        self.core.with(|st, now| {
            let ticket = st.node.change_id(old, new, now)?;
            let slot = Slot::new();
            st.commits.insert(ticket, slot.clone());
            Ok(CommitHandle::new(slot, now))
        })
    }

    /// Who holds session `id` now, by placement over the live members:
    /// the primary first, then the backups (listen addresses; this node's
    /// own address when it is one of them). Any node answers, with or
    /// without a copy, from its current member list; the answer changes as
    /// members come and go. Empty only if this node is not running. In
    /// delta mode every member holds every session and the first one owns
    /// its expiry.
    pub fn holders(&self, id: &[u8]) -> Vec<SocketAddr> {
        self.core.with(|st, _| {
            st.node
                .placement_of(id)
                .as_slice()
                .iter()
                .map(|m| m.addr)
                .collect()
        })
    }

    /// The application metadata (`memberPayload`) of the member listening
    /// at `addr` (this node's own included): what it announced in its
    /// heartbeats. `None` if no current member listens there. Use it with
    /// [`StoreLookup::Moved`] and [`SessionStore::holders`] to send a user
    /// to the node that holds their session.
    pub fn member_payload(&self, addr: SocketAddr) -> Option<Vec<u8>> {
        self.channel().member_payload(addr)
    }

    /// The other members the store places sessions on (listen addresses).
    pub fn members(&self) -> Vec<SocketAddr> {
        self.core
            .with(|st, _| st.node.members.iter().map(|m| m.addr).collect())
    }

    /// Hands every session this node holds to the members that hold it
    /// once this node is gone, and returns when all of them acknowledged:
    /// then it is safe to [`SessionStore::close`]. Commits made here or
    /// arriving meanwhile are forwarded, not lost; afterwards `get` answers
    /// [`StoreLookup::Moved`] and writes fail with [`Error::Shutdown`].
    ///
    /// # Errors
    /// [`Error::Timeout`] if hand-offs are still unacknowledged after
    /// `timeout` (stopping now could lose the sessions not yet handed over).
    pub fn drain(&self, timeout: Duration) -> Result<()> {
        self.core.with(|st, now| st.node.drain(now));
        let deadline = Instant::now() + timeout;
        let mut g = self.core.status();
        while !g.drained {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            g = self
                .core
                .status_cv
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            drop(g);
            // A member that left meanwhile is applied by whoever holds the node.
            self.core.wake();
            g = self.core.status();
        }
        Ok(())
    }

    /// The node's counters.
    pub fn stats(&self) -> SessionStats {
        self.core.with(|st, _| st.node.stats())
    }

    /// Stops the driver and the channel (membership announces the
    /// shutdown). Pending handles fail with [`Error::Shutdown`]. Without a
    /// [`SessionStore::drain`] first, the other members re-replicate this
    /// node's sessions from their copies, as after a crash. Idempotent.
    pub fn close(&self) {
        self.core.stopping.store(true, Ordering::Release);
        self.core.wake();
        if let Some(t) = self.core.driver.get() {
            t.unpark();
        }
        if let Some(h) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        if let Some(ch) = self.core.channel.get() {
            ch.stop();
        }
        self.core.fail_pending();
    }
}

impl Drop for SessionStore {
    fn drop(&mut self) {
        self.close();
    }
}
