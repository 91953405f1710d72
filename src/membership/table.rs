//! The member list as a sans-IO state machine: heartbeats, configured
//! members, probe results and `now` go in; [`MemberEvent`]s and TCP probe
//! requests come out. No sockets, no clock, no threads, so every rule is
//! tested on a virtual clock.
//!
//! Rules (after Tribes' `Membership`, `McastServiceImpl` and
//! `TcpFailureDetector`):
//! - a heartbeat from an unknown identity (host, port, unique id) adds it;
//!   one from a known identity refreshes it; `BABY-ALEX` removes it at once;
//! - a multicast member silent for `drop_time` is verified over TCP (with
//!   failure detection on): unreachable → removed (`Timeout`), reachable →
//!   `Suspect`, re-checked every `drop_time` and removed after
//!   `remove_suspects_timeout`; a heartbeat clears the suspicion;
//! - a reported send failure is verified the same way (`Failure`);
//! - static and DNS members are added at once; a failed TCP ping or a
//!   confirmed send failure takes them out (`Failure`), a good ping brings
//!   them back;
//! - heartbeats of our own id, of other domains (when ours is not empty) and
//!   undecodable ones are ignored and counted.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::member::{
    derived_id, LocalMemberInfo, Member, MemberEvent, MemberSource, PeerFacts, RemoveReason,
};
use crate::wire::tribes::{TribesMemberRef, MEMBER_BEGIN, START_DATA};

/// Most entries the table holds; heartbeats of further identities are
/// dropped (and counted), so a flood of forged ids cannot grow memory.
pub const MAX_MEMBERS: usize = 1024;

/// Timing and filtering rules of a [`MemberTable`].
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Silence after which a multicast member is checked or dropped.
    pub drop_time: Duration,
    /// Only heartbeats of this domain count (empty = any domain).
    pub domain: Vec<u8>,
    /// Verify over TCP before dropping (else drop at once).
    pub failure_detection: bool,
    /// How long a member may stay suspect.
    pub remove_suspects_timeout: Duration,
}

/// Counters of what the table saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Heartbeats that decoded and were accepted.
    pub heartbeats: u64,
    /// Datagrams that were neither a valid member blob nor a Tribes frame,
    /// or blobs with an impossible port or host.
    pub hostile: u64,
    /// Heartbeats of another cluster domain.
    pub foreign_domain: u64,
    /// Our own heartbeats, looped back.
    pub own: u64,
    /// Tribes multicast message broadcasts (`FLT2002` datagrams), ignored.
    pub broadcasts_ignored: u64,
    /// Heartbeats dropped because the table was full.
    pub table_full: u64,
    /// Heartbeats refused by authentication (forged, replayed, stale, or
    /// unauthenticated while `encryptionKey` is set).
    pub unauthenticated: u64,
}

/// A TCP reachability check the driver must run and report back with
/// [`MemberTable::handle_probe_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Token to hand back with the result.
    pub token: u64,
    /// Address to connect to.
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Heartbeats stopped (or a suspect's periodic re-check).
    Silence,
    /// A send failed.
    SendFailure,
    /// Periodic ping of a configured member.
    Ping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Alive,
    Suspect {
        since: Instant,
        checked: Instant,
    },
    /// Configured member found unreachable: kept, not listed.
    Down,
}

#[derive(Debug, Clone)]
struct Entry {
    member: Member,
    last_heard: Instant,
    state: State,
    probe: Option<(u64, Cause)>,
}

type Key = (SocketAddr, [u8; 16]);

/// The member list state machine. See the module documentation.
#[derive(Debug)]
pub struct MemberTable {
    cfg: TableConfig,
    local_id: [u8; 16],
    local_addr: SocketAddr,
    entries: BTreeMap<Key, Entry>,
    events: VecDeque<MemberEvent>,
    probes: VecDeque<ProbeRequest>,
    next_token: u64,
    stats: MembershipStats,
}

impl MemberTable {
    /// An empty table for the local node `local`.
    pub fn new(cfg: TableConfig, local: &LocalMemberInfo) -> Self {
        MemberTable {
            cfg,
            local_id: local.id,
            local_addr: local.addr,
            entries: BTreeMap::new(),
            events: VecDeque::new(),
            probes: VecDeque::new(),
            next_token: 1,
            stats: MembershipStats::default(),
        }
    }

    /// Counts a datagram that failed heartbeat authentication.
    pub fn note_unauthenticated(&mut self) {
        self.stats.unauthenticated += 1;
    }

    /// Feeds one received multicast datagram.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        if !datagram.starts_with(&MEMBER_BEGIN) {
            if datagram.starts_with(&START_DATA) {
                self.stats.broadcasts_ignored += 1;
            } else {
                self.stats.hostile += 1;
            }
            return;
        }
        let (hb, used) = match TribesMemberRef::parse(datagram) {
            Ok(x) => x,
            Err(e) => {
                self.stats.hostile += 1;
                crate::sr_log!(Debug, "ignored heartbeat: {e}");
                return;
            }
        };
        let port_ok = (1..=65535).contains(&hb.port);
        if used != datagram.len() || !port_ok || hb.host.is_unspecified() || hb.host.is_multicast()
        {
            self.stats.hostile += 1;
            return;
        }
        if hb.unique_id == self.local_id {
            self.stats.own += 1;
            return;
        }
        if !self.cfg.domain.is_empty() && hb.domain != self.cfg.domain.as_slice() {
            self.stats.foreign_domain += 1;
            return;
        }
        self.stats.heartbeats += 1;
        let addr = SocketAddr::new(hb.host, hb.port as u16);
        let key = (addr, hb.unique_id);
        if hb.is_shutdown() {
            if let Some(e) = self.entries.remove(&key) {
                self.emit_removed(e, RemoveReason::Shutdown);
            } else if let Some(k) = self.configured_at(addr) {
                // A configured member announcing its stop: down until a
                // ping finds it again.
                self.drop_entry(k, RemoveReason::Shutdown);
            }
            return;
        }
        let alive = Duration::from_millis(hb.alive_ms.max(0) as u64);
        // A configured member's own heartbeats refresh its facts.
        let target = self
            .configured_at(addr)
            .or_else(|| self.entries.contains_key(&key).then_some(key));
        let entry = target.and_then(|k| self.entries.get_mut(&k));
        if let Some(e) = entry {
            e.last_heard = now;
            e.member.alive = alive;
            e.member.domain.clear();
            e.member.domain.extend_from_slice(hb.domain);
            if e.member.payload != hb.payload {
                e.member.payload = hb.payload.to_vec();
                e.member.facts = PeerFacts::decode(hb.payload);
            }
            if e.member.source == MemberSource::Multicast {
                // Heard from again: any suspicion or pending check is void.
                e.state = State::Alive;
                e.probe = None;
            }
            return;
        }
        // Same address, another id: the process restarted.
        let stale: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == addr)
            .copied()
            .collect();
        for k in stale {
            if let Some(e) = self.entries.remove(&k) {
                self.emit_removed(e, RemoveReason::Restarted);
            }
        }
        if self.entries.len() >= MAX_MEMBERS {
            self.stats.table_full += 1;
            return;
        }
        let member = Member {
            id: hb.unique_id,
            addr,
            domain: hb.domain.to_vec(),
            alive,
            facts: PeerFacts::decode(hb.payload),
            payload: hb.payload.to_vec(),
            source: MemberSource::Multicast,
        };
        self.insert_alive(key, member, now);
    }

    /// The static or DNS entry at `addr`, if any.
    fn configured_at(&self, addr: SocketAddr) -> Option<Key> {
        self.entries
            .iter()
            .find(|(k, e)| k.0 == addr && e.member.source != MemberSource::Multicast)
            .map(|(k, _)| *k)
    }

    fn insert_alive(&mut self, key: Key, member: Member, now: Instant) {
        self.events.push_back(MemberEvent::Added(member.clone()));
        self.entries.insert(
            key,
            Entry {
                member,
                last_heard: now,
                state: State::Alive,
                probe: None,
            },
        );
    }

    fn emit_removed(&mut self, e: Entry, reason: RemoveReason) {
        if e.state != State::Down {
            self.events
                .push_back(MemberEvent::Removed(e.member, reason));
        }
    }

    /// Adds a configured (static or DNS) member, listed at once. The local
    /// address and duplicates are skipped. Returns true if added.
    pub fn add_configured(
        &mut self,
        addr: SocketAddr,
        id: Option<[u8; 16]>,
        source: MemberSource,
        now: Instant,
    ) -> bool {
        let id = id.unwrap_or_else(|| derived_id(&addr));
        if addr == self.local_addr
            || id == self.local_id
            || self.entries.keys().any(|k| k.0 == addr)
            || self.entries.len() >= MAX_MEMBERS
        {
            return false;
        }
        let member = Member {
            id,
            addr,
            domain: Vec::new(),
            alive: Duration::ZERO,
            facts: None,
            payload: Vec::new(),
            source,
        };
        self.insert_alive((addr, id), member, now);
        true
    }

    /// Replaces the DNS members with `addrs` (one DNS answer): new
    /// addresses are added, vanished ones removed (`Timeout`).
    pub fn set_dns_members(&mut self, addrs: &[SocketAddr], now: Instant) {
        let gone: Vec<Key> = self
            .entries
            .iter()
            .filter(|(k, e)| e.member.source == MemberSource::Dns && !addrs.contains(&k.0))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(e) = self.entries.remove(&k) {
                self.emit_removed(e, RemoveReason::Timeout);
            }
        }
        for a in addrs {
            self.add_configured(*a, None, MemberSource::Dns, now);
        }
    }

    /// A send to `addr` failed: verify the member (or, without failure
    /// detection, drop it now with `Failure`).
    pub fn report_send_failure(&mut self, addr: SocketAddr, now: Instant) {
        let keys: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == addr)
            .copied()
            .collect();
        for k in keys {
            self.check(k, Cause::SendFailure, now);
        }
    }

    /// Requests a TCP ping of every static and DNS member without a check
    /// in flight (the driver calls this every `tcpPingInterval`).
    pub fn ping_configured(&mut self, now: Instant) {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.member.source != MemberSource::Multicast && e.probe.is_none())
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.check(k, Cause::Ping, now);
        }
    }

    fn check(&mut self, key: Key, cause: Cause, now: Instant) {
        let fd = self.cfg.failure_detection || cause == Cause::Ping;
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.state == State::Down && cause != Cause::Ping {
            return;
        }
        if !fd {
            let reason = if cause == Cause::Silence {
                RemoveReason::Timeout
            } else {
                RemoveReason::Failure
            };
            self.drop_entry(key, reason);
            return;
        }
        if let Some((_, c)) = e.probe {
            // One check at a time; a send failure outranks a routine one.
            if c == Cause::SendFailure || cause != Cause::SendFailure {
                return;
            }
        }
        let token = self.next_token;
        self.next_token += 1;
        e.probe = Some((token, cause));
        if let State::Suspect { since, .. } = e.state {
            e.state = State::Suspect {
                since,
                checked: now,
            };
        }
        self.probes.push_back(ProbeRequest { token, addr: key.0 });
    }

    /// Removes (multicast) or takes down (configured) an entry.
    fn drop_entry(&mut self, key: Key, reason: RemoveReason) {
        let configured =
            matches!(self.entries.get(&key), Some(e) if e.member.source != MemberSource::Multicast);
        if configured {
            if let Some(e) = self.entries.get_mut(&key) {
                e.probe = None;
                if e.state != State::Down {
                    e.state = State::Down;
                    let m = e.member.clone();
                    self.events.push_back(MemberEvent::Removed(m, reason));
                }
            }
        } else if let Some(e) = self.entries.remove(&key) {
            self.emit_removed(e, reason);
        }
    }

    /// Reports the outcome of a [`ProbeRequest`]. Stale tokens (the member
    /// was heard from, or removed, meanwhile) are ignored.
    pub fn handle_probe_result(&mut self, token: u64, reachable: bool, now: Instant) {
        let Some((key, cause)) = self.entries.iter().find_map(|(k, e)| match e.probe {
            Some((t, c)) if t == token => Some((*k, c)),
            _ => None,
        }) else {
            return;
        };
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        e.probe = None;
        match (reachable, cause, e.state) {
            (true, Cause::Ping, State::Down) => {
                e.state = State::Alive;
                e.last_heard = now;
                self.events.push_back(MemberEvent::Added(e.member.clone()));
            }
            (true, Cause::Ping, _) => e.last_heard = now,
            (true, _, State::Alive) => {
                e.state = State::Suspect {
                    since: now,
                    checked: now,
                };
                self.events
                    .push_back(MemberEvent::Suspect(e.member.clone()));
            }
            (true, _, _) => {}
            (false, Cause::Ping, State::Down) => {}
            (false, Cause::Silence, _) => self.drop_entry(key, RemoveReason::Timeout),
            (false, _, _) => self.drop_entry(key, RemoveReason::Failure),
        }
    }

    /// Advances the clock: silent multicast members are checked (or
    /// dropped), long suspects dropped, suspects re-checked.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut expired = Vec::new();
        for (k, e) in &self.entries {
            if e.probe.is_some() {
                continue;
            }
            match e.state {
                State::Alive
                    if e.member.source == MemberSource::Multicast
                        && now.saturating_duration_since(e.last_heard) >= self.cfg.drop_time =>
                {
                    due.push(*k)
                }
                State::Suspect { since, checked } => {
                    if now.saturating_duration_since(since) >= self.cfg.remove_suspects_timeout {
                        expired.push(*k);
                    } else if now.saturating_duration_since(checked) >= self.cfg.drop_time {
                        due.push(*k);
                    }
                }
                _ => {}
            }
        }
        for k in expired {
            self.drop_entry(k, RemoveReason::Timeout);
        }
        for k in due {
            self.check(k, Cause::Silence, now);
        }
    }

    /// When [`MemberTable::handle_timeout`] next has work, if ever.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.probe.is_none())
            .filter_map(|e| match e.state {
                State::Alive if e.member.source == MemberSource::Multicast => {
                    Some(e.last_heard + self.cfg.drop_time)
                }
                State::Suspect { since, checked } => Some(
                    (since + self.cfg.remove_suspects_timeout).min(checked + self.cfg.drop_time),
                ),
                _ => None,
            })
            .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// The next TCP check to run.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.probes.pop_front()
    }

    /// Listed members (suspects included), longest-running first (Tribes'
    /// order: DeltaManager asks `members()[0]` for state).
    pub fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self
            .entries
            .values()
            .filter(|e| e.state != State::Down)
            .map(|e| e.member.clone())
            .collect();
        v.sort_by(|a, b| b.alive.cmp(&a.alive).then(a.addr.cmp(&b.addr)));
        v
    }

    /// True if the member at `addr` is currently suspect.
    pub fn is_suspect(&self, addr: SocketAddr) -> bool {
        self.entries
            .iter()
            .any(|(k, e)| k.0 == addr && matches!(e.state, State::Suspect { .. }))
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        self.stats
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
