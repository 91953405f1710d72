//! The threads and sockets around [`MemberTable`].
//!
//! - the *core* thread owns the table: it sends heartbeats, runs timers and
//!   delivers events to the listener, in order, without holding a lock;
//! - a *multicast receiver* thread forwards datagrams to the core thread;
//! - two *probe* threads run blocking work: TCP reachability checks and DNS
//!   lookups.
//!
//! Everything reaches the core thread through one channel, so the table has
//! one writer and events have one order.

use std::net::{SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use super::auth::HeartbeatAuth;
use super::config::{MembershipConfig, MembershipType};
use super::member::{LocalMemberInfo, Member, MemberEvent, MemberSource, PeerFacts};
use super::table::{MemberTable, MembershipStats, TableConfig};
use crate::error::{Error, Result};
use crate::wire::tribes::{patch_alive, TribesMember, SHUTDOWN_COMMAND};

/// Receives membership events, on the membership core thread, one at a
/// time, in order. It must not block for long (heartbeats wait meanwhile).
pub type MemberListener = Arc<dyn Fn(&MemberEvent) + Send + Sync>;

/// How often blocked receive calls wake up to notice a stop.
const POLL: Duration = Duration::from_millis(100);
const PROBE_THREADS: usize = 2;

enum Cmd {
    Datagram(Vec<u8>),
    ProbeResult(u64, bool),
    Dns(Vec<SocketAddr>),
    SendFailure(SocketAddr),
    Stop { notify: bool },
}

enum Job {
    Probe {
        token: u64,
        addr: SocketAddr,
        timeout: Duration,
    },
    Resolve(String, u16),
}

struct Shared {
    table: Mutex<MemberTable>,
    running: AtomicBool,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, MemberTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running membership service. Dropping it is [`MembershipService::stop`].
pub struct MembershipService {
    shared: Arc<Shared>,
    cmd: Sender<Cmd>,
    threads: Vec<JoinHandle<()>>,
    local: LocalMemberInfo,
}

impl std::fmt::Debug for MembershipService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipService")
            .field("local", &self.local)
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// Opens the multicast socket: bound to the group and port (so only that
/// group's datagrams arrive), joined on `mcastBindAddress`, sending through
/// that interface with the configured TTL, loopback on.
fn open_mcast(cfg: &MembershipConfig) -> Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddrV4::new(cfg.mcast_addr, cfg.mcast_port).into())?;
    s.join_multicast_v4(&cfg.mcast_addr, &cfg.mcast_bind_address)?;
    s.set_multicast_if_v4(&cfg.mcast_bind_address)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(cfg.mcast_ttl)?;
    #[cfg(target_os = "linux")]
    {
        // Only groups this socket joined, not every group of the host.
        let _ = s.set_multicast_all_v4(false);
    }
    s.set_read_timeout(Some(POLL))?;
    Ok(s.into())
}

impl MembershipService {
    /// Starts membership as configured. With `membershipType=none` nothing
    /// runs and the member list stays empty.
    ///
    /// # Errors
    /// A config that fails [`MembershipConfig::validate`], a local address
    /// that cannot go in a heartbeat (unspecified), or a socket error
    /// (joining the group on `mcastBindAddress`, spawning threads).
    pub fn start(
        cfg: &MembershipConfig,
        local: LocalMemberInfo,
        listener: MemberListener,
    ) -> Result<MembershipService> {
        cfg.validate()?;
        let mut local = local;
        if local.domain.is_empty() {
            local.domain = cfg.mcast_cluster_domain.clone();
        }
        let mcast = cfg.membership_type == MembershipType::Multicast;
        if mcast && (local.addr.ip().is_unspecified() || local.addr.port() == 0) {
            return Err(Error::InvalidArgument(format!(
                "local address {} cannot be announced",
                local.addr
            )));
        }
        let table = MemberTable::new(
            TableConfig {
                drop_time: cfg.mcast_drop_time,
                domain: local.domain.clone(),
                failure_detection: cfg.failure_detection,
                remove_suspects_timeout: cfg.remove_suspects_timeout,
            },
            &local,
        );
        let shared = Arc::new(Shared {
            table: Mutex::new(table),
            running: AtomicBool::new(true),
        });
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let mut svc = MembershipService {
            shared: shared.clone(),
            cmd: cmd_tx.clone(),
            threads: Vec::new(),
            local: local.clone(),
        };
        if cfg.membership_type == MembershipType::None {
            return Ok(svc);
        }
        let now = Instant::now();
        {
            let mut t = shared.table();
            for s in &cfg.static_members {
                t.add_configured(s.addr, s.id, MemberSource::Static, now);
            }
        }
        let sock = if mcast { Some(open_mcast(cfg)?) } else { None };
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..PROBE_THREADS {
            let rx = job_rx.clone();
            let tx = cmd_tx.clone();
            svc.spawn(&format!("sr-member-probe{i}"), move || probe_loop(rx, tx))?;
        }
        if let Some(s) = &sock {
            let s = s.try_clone()?;
            let tx = cmd_tx.clone();
            let sh = shared.clone();
            svc.spawn("sr-member-mcast-rx", move || rx_loop(s, tx, sh))?;
        }
        let auth = (!cfg.heartbeat_keys.is_empty()).then(|| {
            HeartbeatAuth::new(
                &cfg.heartbeat_keys,
                cfg.heartbeat_auth_window.as_millis() as u64,
            )
        });
        let core = Core {
            auth,
            cfg: cfg.clone(),
            local,
            shared,
            listener,
            sock,
            jobs: job_tx,
            started: now,
        };
        svc.spawn("sr-member-core", move || core.run(cmd_rx))?;
        Ok(svc)
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let h = crate::driver::sys::ThreadBuilder::new()
            .name(name.into())
            .spawn(f)?;
        self.threads.push(h);
        Ok(())
    }

    /// Current members (suspects included), longest-running first.
    pub fn members(&self) -> Vec<Member> {
        self.shared.table().members()
    }

    /// True if the member at `addr` is suspect (silent or failing but
    /// reachable over TCP).
    pub fn is_suspect(&self, addr: SocketAddr) -> bool {
        self.shared.table().is_suspect(addr)
    }

    /// What the local node announces.
    pub fn local(&self) -> &LocalMemberInfo {
        &self.local
    }

    /// Counters of received heartbeats.
    pub fn stats(&self) -> MembershipStats {
        self.shared.table().stats()
    }

    /// The transport reports that sending to `addr` failed: the member is
    /// verified over TCP and removed (`Failure`) if unreachable, or marked
    /// suspect if it still accepts connections.
    pub fn report_send_failure(&self, addr: SocketAddr) {
        let _ = self.cmd.send(Cmd::SendFailure(addr));
    }

    /// Stops: announces the shutdown (multicast `BABY-ALEX`), so other
    /// members drop this node at once, and joins every thread.
    pub fn stop(mut self) {
        self.shutdown(true);
    }

    /// Stops without announcing anything, as a crash would: other members
    /// notice only by timeout. For tests and for failure drills.
    pub fn stop_silently(mut self) {
        self.shutdown(false);
    }

    fn shutdown(&mut self, notify: bool) {
        if self.threads.is_empty() {
            return;
        }
        let _ = self.cmd.send(Cmd::Stop { notify });
        self.shared.running.store(false, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for MembershipService {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

fn rx_loop(sock: UdpSocket, tx: Sender<Cmd>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65536];
    while shared.running.load(Ordering::SeqCst) {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if tx.send(Cmd::Datagram(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                crate::sr_log!(Warn, "multicast receive failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn probe_loop(jobs: Receiver<Job>, tx: Sender<Cmd>) {
    for job in jobs {
        let cmd = match job {
            Job::Probe {
                token,
                addr,
                timeout,
            } => Cmd::ProbeResult(token, TcpStream::connect_timeout(&addr, timeout).is_ok()),
            Job::Resolve(name, port) => match (name.as_str(), port).to_socket_addrs() {
                Ok(it) => Cmd::Dns(it.take(256).collect()),
                Err(e) => {
                    // Keep the current members; the next refresh retries.
                    crate::sr_log!(Warn, "DNS membership: cannot resolve {name}: {e}");
                    continue;
                }
            },
        };
        if tx.send(cmd).is_err() {
            return;
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Core {
    /// Seals and verifies heartbeats when a cluster key is set.
    auth: Option<HeartbeatAuth>,
    cfg: MembershipConfig,
    local: LocalMemberInfo,
    shared: Arc<Shared>,
    listener: MemberListener,
    sock: Option<UdpSocket>,
    jobs: Sender<Job>,
    started: Instant,
}

impl Core {
    fn heartbeat_blob(&self) -> Vec<u8> {
        let mut m = TribesMember::new(self.local.addr.ip(), self.local.addr.port(), self.local.id);
        m.domain = self.local.domain.clone();
        m.payload = PeerFacts::new(self.local.capabilities).encode().to_vec();
        super::member::encode_member_payload(&mut m.payload, &self.local.payload);
        if self.auth.is_some() {
            m.payload.extend_from_slice(&HeartbeatAuth::empty_trailer());
        }
        m.to_bytes().unwrap_or_default()
    }

    fn send_blob(&mut self, blob: &mut [u8], now: Instant) {
        let Some(s) = &self.sock else { return };
        let alive = now.saturating_duration_since(self.started).as_millis() as i64;
        let _ = patch_alive(blob, alive);
        if let Some(a) = &mut self.auth {
            if !a.seal(blob, unix_micros()) {
                crate::sr_log!(Error, "heartbeat has no authentication trailer; not sent");
                return;
            }
        }
        let to = SocketAddrV4::new(self.cfg.mcast_addr, self.cfg.mcast_port);
        if let Err(e) = s.send_to(blob, to) {
            crate::sr_log!(Warn, "heartbeat to {to} failed: {e}");
        }
    }

    fn run(mut self, cmds: Receiver<Cmd>) {
        let mcast = self.sock.is_some();
        let dns = self.cfg.membership_type == MembershipType::Dns;
        let ping = self.cfg.tcp_ping_interval;
        let mut blob = self.heartbeat_blob();
        let now = Instant::now();
        let mut next_hb = now;
        let mut next_dns = now;
        let mut next_ping = now + ping;
        loop {
            let now = Instant::now();
            if mcast && now >= next_hb {
                self.send_blob(&mut blob, now);
                next_hb = (next_hb + self.cfg.mcast_frequency).max(now);
            }
            if dns && now >= next_dns {
                let _ = self
                    .jobs
                    .send(Job::Resolve(self.cfg.dns_name.clone(), self.cfg.dns_port));
                next_dns = now + self.cfg.dns_refresh_interval;
            }
            let timer = {
                let mut t = self.shared.table();
                if !ping.is_zero() && now >= next_ping {
                    t.ping_configured(now);
                    next_ping = now + ping;
                }
                t.handle_timeout(now);
                t.next_timeout()
            };
            self.flush();
            let mut deadline = timer.unwrap_or(now + Duration::from_secs(3600));
            if mcast {
                deadline = deadline.min(next_hb);
            }
            if dns {
                deadline = deadline.min(next_dns);
            }
            if !ping.is_zero() {
                deadline = deadline.min(next_ping);
            }
            let cmd = match cmds.recv_deadline(deadline) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let now = Instant::now();
            match cmd {
                Cmd::Stop { notify } => {
                    if notify && mcast {
                        let mut m = TribesMember::decode(&blob).unwrap_or_else(|_| {
                            TribesMember::new(self.local.addr.ip(), 0, self.local.id)
                        });
                        m.command = SHUTDOWN_COMMAND.to_vec();
                        if let Ok(mut b) = m.to_bytes() {
                            self.send_blob(&mut b, now);
                        }
                    }
                    if let Some(s) = &self.sock {
                        let _ = s
                            .leave_multicast_v4(&self.cfg.mcast_addr, &self.cfg.mcast_bind_address);
                    }
                    return;
                }
                Cmd::Datagram(d) => {
                    if let Some(a) = &mut self.auth {
                        if let Err(why) = a.verify(&d, unix_micros()) {
                            self.shared.table().note_unauthenticated();
                            crate::sr_log!(Debug, "heartbeat refused: {why:?}");
                            continue;
                        }
                    }
                    self.shared.table().handle_datagram(&d, now)
                }
                Cmd::ProbeResult(token, ok) => {
                    crate::sr_log!(Debug, "{}: probe {token} reachable={ok}", self.local.addr);
                    self.shared.table().handle_probe_result(token, ok, now)
                }
                Cmd::Dns(addrs) => self.shared.table().set_dns_members(&addrs, now),
                Cmd::SendFailure(a) => self.shared.table().report_send_failure(a, now),
            }
        }
    }

    /// Hands probes to the probe threads and events to the listener, the
    /// latter outside the lock so the listener may call `members()`.
    fn flush(&self) {
        let (events, probes) = {
            let mut t = self.shared.table();
            let ev: Vec<MemberEvent> = std::iter::from_fn(|| t.poll_event()).collect();
            let pr: Vec<_> = std::iter::from_fn(|| t.poll_probe()).collect();
            (ev, pr)
        };
        for p in probes {
            crate::sr_log!(
                Debug,
                "{}: probe {} of {}",
                self.local.addr,
                p.token,
                p.addr
            );
            let _ = self.jobs.send(Job::Probe {
                token: p.token,
                addr: p.addr,
                timeout: self.cfg.failure_connect_timeout,
            });
        }
        for e in &events {
            match e {
                MemberEvent::Added(m) => {
                    crate::sr_log!(Info, "{}: member added {m}", self.local.addr)
                }
                MemberEvent::Removed(m, r) => {
                    crate::sr_log!(
                        Info,
                        "{}: member removed {m} ({})",
                        self.local.addr,
                        r.as_str()
                    )
                }
                MemberEvent::Suspect(m) => {
                    crate::sr_log!(Warn, "{}: member suspect {m}", self.local.addr)
                }
            }
            let l = &self.listener;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l(e))).is_err() {
                crate::sr_log!(Error, "membership listener panicked on {e:?}");
            }
        }
    }
}
