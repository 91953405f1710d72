//! A deterministic simulated cluster: a test harness for [`SessionNode`]s.
//!
//! No sockets, no threads, no OS clock: nodes exchange their transmits
//! through a simulated network on a virtual clock, with per-message random
//! latency (so messages overtake each other), loss, partitions and crashes,
//! all drawn from one seeded generator, so a failing seed replays exactly.
//! The network behaves like a channel with delivery acks: the receiver's
//! `handle_message` result travels back to the sender as the outcome, a lost
//! message or ack surfaces as a timeout after `ack_timeout`, and a crashed
//! member is reported removed to the others after `detect_delay`.

use super::config::SessionConfig;
use super::model::{MemberKey, SessionId};
use super::node::{SendOutcome, SendToken, SessionEvent, SessionNode};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Network behaviour of the simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Shortest one-way latency.
    pub latency_min: Duration,
    /// Longest one-way latency (messages overtake each other within the range).
    pub latency_max: Duration,
    /// Probability (0..=1) that a message, or its ack, is lost.
    pub loss: f64,
    /// When a lost message or ack is reported as timed out.
    pub ack_timeout: Duration,
    /// How long membership takes to report a crash or a join.
    pub detect_delay: Duration,
    /// Probability (0..=1) that a message is delivered twice (the copy
    /// without an ack).
    pub duplicate: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(2),
            loss: 0.0,
            ack_timeout: Duration::from_millis(50),
            detect_delay: Duration::from_millis(20),
            duplicate: 0.0,
        }
    }
}

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }
}

#[derive(Debug)]
enum Action {
    Deliver {
        from: usize,
        to: usize,
        payload: Bytes,
        token: SendToken,
    },
    Outcome {
        node: usize,
        token: SendToken,
        member: MemberKey,
        outcome: SendOutcome,
    },
    Added {
        at: usize,
        member: MemberKey,
    },
    Removed {
        at: usize,
        member: MemberKey,
    },
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// The store.
    pub node: SessionNode,
    /// False once crashed or stopped.
    pub alive: bool,
    /// Events it emitted, in order.
    pub events: Vec<SessionEvent>,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct SimCluster {
    /// Network behaviour.
    pub cfg: SimConfig,
    /// Session-store configuration of nodes added from now on.
    pub session: SessionConfig,
    now: Instant,
    rng: SimRng,
    nodes: Vec<SimNode>,
    index: HashMap<MemberKey, usize>,
    queue: BTreeMap<(Instant, u64), Action>,
    seq: u64,
    cut: HashSet<(usize, usize)>,
    /// Nodes cut off with membership noticing ([`SimCluster::isolate`]).
    isolated: HashSet<usize>,
    /// Paused nodes, until when: their inputs wait, their timers do not run.
    paused: HashMap<usize, Instant>,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Print every delivery and membership change (env `SIM_TRACE`).
    pub trace: bool,
    start: Instant,
}

/// The member key of simulated node `i`.
pub fn sim_key(i: usize) -> MemberKey {
    let mut id = [0xabu8; 16];
    id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 4000));
    MemberKey::new(id, addr)
}

impl SimCluster {
    /// An empty cluster.
    pub fn new(cfg: SimConfig, session: SessionConfig) -> Self {
        // Iteration order of the nodes' maps must replay too.
        super::hash::deterministic(true);
        let now = Instant::now();
        SimCluster {
            rng: SimRng::new(cfg.seed),
            cfg,
            session,
            now,
            nodes: Vec::new(),
            index: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            cut: HashSet::new(),
            isolated: HashSet::new(),
            paused: HashMap::new(),
            delivered: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            start: now,
        }
    }

    /// A cluster of `n` nodes that all know each other and are ready.
    pub fn started(cfg: SimConfig, session: SessionConfig, n: usize) -> Self {
        let mut c = SimCluster::new(cfg, session);
        for i in 0..n {
            let node = SessionNode::new(c.session.clone(), sim_key(i), c.now);
            c.index.insert(sim_key(i), i);
            c.nodes.push(SimNode {
                node,
                alive: true,
                events: Vec::new(),
            });
        }
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    c.nodes[i].node.member_added(sim_key(j), c.now);
                }
            }
        }
        for i in 0..n {
            let now = c.now;
            c.nodes[i].node.start(now);
        }
        c.run_for(Duration::from_millis(50));
        c
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// True if no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// Node `i`.
    pub fn node(&self, i: usize) -> &SessionNode {
        &self.nodes[i].node
    }
    /// Node `i`, mutably (call [`SimCluster::pump`] after driving it).
    pub fn node_mut(&mut self, i: usize) -> &mut SessionNode {
        &mut self.nodes[i].node
    }
    /// Events node `i` emitted so far.
    pub fn events(&self, i: usize) -> &[SessionEvent] {
        &self.nodes[i].events
    }
    /// Takes the events node `i` emitted so far.
    pub fn take_events(&mut self, i: usize) -> Vec<SessionEvent> {
        std::mem::take(&mut self.nodes[i].events)
    }
    /// True if node `i` has not crashed or stopped.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }
    /// Indices of the live nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .collect()
    }
    /// The generator (for tests that draw their own workload).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    fn schedule(&mut self, at: Instant, a: Action) {
        self.seq += 1;
        self.queue.insert((at, self.seq), a);
    }

    fn latency(&mut self) -> Duration {
        let span = self
            .cfg
            .latency_max
            .saturating_sub(self.cfg.latency_min)
            .as_nanos() as u64;
        self.cfg.latency_min + Duration::from_nanos(self.rng.below(span + 1))
    }

    /// Adds a node; membership reports it to the others after `detect_delay`
    /// (and them to it at once), then it starts its state transfer. It
    /// joins the majority side: isolated nodes and it never see each other.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        if self.trace {
            eprintln!(
                "[{:>9}us] add {i}",
                self.now.saturating_duration_since(self.start).as_micros()
            );
        }
        let key = sim_key(i);
        let mut node = SessionNode::new(self.session.clone(), key, self.now);
        for j in self.alive() {
            if self.isolated.contains(&j) {
                // It joins the majority side: cut off from `j`, unseen.
                self.partition(i, j);
                continue;
            }
            node.member_added(sim_key(j), self.now);
            let at = self.now + self.cfg.detect_delay;
            self.schedule(at, Action::Added { at: j, member: key });
        }
        node.start(self.now);
        self.index.insert(key, i);
        self.nodes.push(SimNode {
            node,
            alive: true,
            events: Vec::new(),
        });
        self.pump();
        i
    }

    /// Crashes node `i`; the others learn it after `detect_delay`.
    pub fn kill(&mut self, i: usize) {
        if self.trace {
            eprintln!(
                "[{:>9}us] kill {i}",
                self.now.saturating_duration_since(self.start).as_micros()
            );
        }
        self.nodes[i].alive = false;
        self.isolated.remove(&i);
        let key = sim_key(i);
        for j in self.alive() {
            let at = self.now + self.cfg.detect_delay;
            self.schedule(at, Action::Removed { at: j, member: key });
        }
    }

    /// Pauses node `i` for `d` (a long GC pause, SIGSTOP): it handles no
    /// message, outcome, membership change or timer until then; they
    /// queue and arrive when it resumes. Nobody notices the pause.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        let e = self.paused.entry(i).or_insert(until);
        *e = (*e).max(until);
    }

    /// True if node `i` is paused now.
    pub fn is_paused(&self, i: usize) -> bool {
        self.paused.get(&i).is_some_and(|t| *t > self.now)
    }

    fn paused_until(&self, i: usize) -> Option<Instant> {
        self.paused.get(&i).copied().filter(|t| *t > self.now)
    }

    /// Cuts both directions between `a` and `b`.
    pub fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts node `i` off from every other node, and membership notices on
    /// both sides after `detect_delay`: a partition that leaves `i` a
    /// minority of one, each side seeing the other depart.
    pub fn isolate(&mut self, i: usize) {
        let key = sim_key(i);
        let at = self.now + self.cfg.detect_delay;
        for j in self.alive().into_iter().filter(|j| *j != i) {
            self.partition(i, j);
            self.schedule(at, Action::Removed { at: j, member: key });
            self.schedule(
                at,
                Action::Removed {
                    at: i,
                    member: sim_key(j),
                },
            );
        }
        self.isolated.insert(i);
    }

    /// Nodes cut off by [`SimCluster::isolate`] and not healed yet.
    pub fn isolated(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.isolated.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Restores every cut link; membership sees every isolated node (and
    /// it the others) again after `detect_delay`.
    pub fn heal(&mut self) {
        self.cut.clear();
        let at = self.now + self.cfg.detect_delay;
        for i in std::mem::take(&mut self.isolated) {
            for j in self.alive().into_iter().filter(|j| *j != i) {
                self.schedule(
                    at,
                    Action::Added {
                        at: j,
                        member: sim_key(i),
                    },
                );
                self.schedule(
                    at,
                    Action::Added {
                        at: i,
                        member: sim_key(j),
                    },
                );
            }
        }
    }

    /// Moves every queued transmit and event of every live node into the
    /// network and the event logs.
    pub fn pump(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            while let Some(e) = self.nodes[i].node.poll_event() {
                self.nodes[i].events.push(e);
            }
            while let Some(t) = self.nodes[i].node.poll_transmit() {
                for m in t.to.members() {
                    let Some(&to) = self.index.get(m) else {
                        continue;
                    };
                    if self.rng.chance(self.cfg.loss) {
                        if t.needs_ack() {
                            let at = self.now + self.cfg.ack_timeout;
                            self.schedule(
                                at,
                                Action::Outcome {
                                    node: i,
                                    token: t.token,
                                    member: *m,
                                    outcome: SendOutcome::TimedOut,
                                },
                            );
                        }
                        continue;
                    }
                    let at = self.now + self.latency();
                    self.schedule(
                        at,
                        Action::Deliver {
                            from: i,
                            to,
                            payload: t.payload.clone(),
                            token: t.token,
                        },
                    );
                    if self.cfg.duplicate > 0.0 && self.rng.chance(self.cfg.duplicate) {
                        let at = self.now + self.latency() + self.latency();
                        self.schedule(
                            at,
                            Action::Deliver {
                                from: i,
                                to,
                                payload: t.payload.clone(),
                                token: SendToken::NONE,
                            },
                        );
                    }
                }
            }
            while let Some(e) = self.nodes[i].node.poll_event() {
                self.nodes[i].events.push(e);
            }
        }
    }

    fn process(&mut self, a: Action) {
        let target = match &a {
            Action::Deliver { to, .. } => *to,
            Action::Outcome { node, .. } => *node,
            Action::Added { at, .. } | Action::Removed { at, .. } => *at,
        };
        if let Some(until) = self.paused_until(target) {
            // Queued until the node resumes, in order.
            self.schedule(until, a);
            return;
        }
        match a {
            Action::Deliver {
                from,
                to,
                payload,
                token,
            } => {
                let key_to = sim_key(to);
                let reachable = self.nodes[to].alive && !self.cut.contains(&(from, to));
                if !reachable {
                    if token != SendToken::NONE {
                        let at = self.now + self.cfg.ack_timeout;
                        self.schedule(
                            at,
                            Action::Outcome {
                                node: from,
                                token,
                                member: key_to,
                                outcome: SendOutcome::TimedOut,
                            },
                        );
                    }
                    return;
                }
                self.delivered += 1;
                let shown = self.trace.then(|| {
                    let m = super::codec::Message::decode(&payload, &Default::default());
                    let mut t = format!("{m:?}");
                    t.truncate(220);
                    t
                });
                let r = self.nodes[to]
                    .node
                    .handle_message(sim_key(from), payload, self.now);
                if let Some(t) = shown {
                    eprintln!(
                        "[{:>9}us] {from}->{to} {t} => {r:?}",
                        self.now.saturating_duration_since(self.start).as_micros()
                    );
                }
                if token != SendToken::NONE {
                    let (at, outcome) = if self.rng.chance(self.cfg.loss) {
                        (self.now + self.cfg.ack_timeout, SendOutcome::TimedOut)
                    } else if r.is_ok() {
                        (self.now + self.latency(), SendOutcome::Acked)
                    } else {
                        (self.now + self.latency(), SendOutcome::Failed)
                    };
                    self.schedule(
                        at,
                        Action::Outcome {
                            node: from,
                            token,
                            member: key_to,
                            outcome,
                        },
                    );
                }
            }
            Action::Outcome {
                node,
                token,
                member,
                outcome,
            } => {
                if self.nodes[node].alive {
                    let now = self.now;
                    self.nodes[node]
                        .node
                        .handle_send_outcome(token, member, outcome, now);
                }
            }
            Action::Added { at, member } => {
                if self.trace {
                    eprintln!(
                        "[{:>9}us] {at} adds {}",
                        self.now.saturating_duration_since(self.start).as_micros(),
                        self.index[&member]
                    );
                }
                if self.nodes[at].alive
                    && self
                        .index
                        .get(&member)
                        .is_some_and(|m| self.nodes[*m].alive)
                {
                    let now = self.now;
                    self.nodes[at].node.member_added(member, now);
                }
            }
            Action::Removed { at, member } => {
                if self.trace {
                    eprintln!(
                        "[{:>9}us] {at} removes {}",
                        self.now.saturating_duration_since(self.start).as_micros(),
                        self.index[&member]
                    );
                }
                if self.nodes[at].alive {
                    let now = self.now;
                    self.nodes[at].node.member_removed(member, now);
                }
            }
        }
    }

    /// Runs the cluster for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until_time(end);
    }

    fn run_until_time(&mut self, end: Instant) {
        loop {
            self.pump();
            let next_q = self.queue.keys().next().map(|k| k.0);
            let next_t = self
                .alive()
                .into_iter()
                .filter_map(|i| {
                    let t = self.nodes[i].node.poll_timeout();
                    match self.paused_until(i) {
                        Some(u) => t.map(|t| t.max(u)),
                        None => t,
                    }
                })
                .min();
            let next = match (next_q, next_t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    while let Some(entry) = self.queue.first_entry() {
                        if entry.key().0 > self.now {
                            break;
                        }
                        let a = entry.remove();
                        self.process(a);
                    }
                    for i in self.alive() {
                        if self.paused_until(i).is_none()
                            && self.nodes[i]
                                .node
                                .poll_timeout()
                                .is_some_and(|t| t <= self.now)
                        {
                            let now = self.now;
                            self.nodes[i].node.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(end);
                    self.pump();
                    return;
                }
            }
        }
    }

    /// Runs until `done` holds (checked after each step) or `limit` passes;
    /// returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&SimCluster) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            let step = Duration::from_millis(1).min(end - self.now);
            self.run_for(step);
        }
        done(self)
    }

    /// Drives node `i` with `f` and moves its output into the network.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut SessionNode, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].node, now);
        self.pump();
        r
    }

    /// Live nodes that hold session `id`.
    pub fn holders_of(&self, id: &[u8]) -> Vec<usize> {
        self.alive()
            .into_iter()
            .filter(|i| self.nodes[*i].node.peek(id).is_some())
            .collect()
    }

    /// The value of attribute `name` of session `id` on node `i`.
    pub fn value(&self, i: usize, id: &[u8], name: &[u8]) -> Option<Bytes> {
        self.nodes[i].node.peek(id)?.attribute(name).cloned()
    }

    /// Ids of the sessions node `i` holds.
    pub fn ids(&self, i: usize) -> Vec<SessionId> {
        self.nodes[i]
            .node
            .sessions()
            .iter()
            .map(|s| s.id().clone())
            .collect()
    }
}
