//! Deterministic simulation with a nemesis, checked like Jepsen checks a
//! database: concurrent clients do read-modify-write list appends on shared
//! sessions (read, set the base version, append a unique element, commit)
//! while a seeded nemesis crashes nodes (state lost), pauses them (a long
//! GC: inputs and timers queue up), joins new nodes (also right after a
//! crash, inside the failure-detection window), drains nodes, partitions
//! and heals links, and the network loses, reorders and duplicates
//! messages. At the end everything heals and every session is read once
//! more; the recorded history goes through the list-append checker
//! (`tests/support/listappend.rs`): one order per session, no lost
//! acknowledged append, no read going back in time, conflicts genuine.
//!
//! The nemesis keeps the guarantee's precondition: at most `backupCount`
//! holders lost at once. A crash or drain is allowed only when the cluster
//! has been whole for a while (every node ready, nobody under-replicated,
//! the last loss detected). Pauses stay shorter than failure detection,
//! and partitions cut links without changing membership, but for one kind:
//! in half of the schedules (`minCommitCopies=2`), a member is cut off and
//! membership notices on both sides (a minority of one, which takes no
//! commit), like a crash only when the cluster is whole, with no join
//! until it is back in every view (a joiner on its side would make two
//! views with two members each, outside the guarantee). Those schedules
//! create sessions throughout (new names every simulated second).
//!
//! After the final reads, every node's `under_replicated` (when enough
//! members are left) and `handoffs_in_progress` must return to 0.
//!
//! `make test` runs the fixed seeds below plus 40 more (about 30 s in a
//! debug build on a loaded 2-core machine); `SIM_SEEDS=100000 cargo test --release --test
//! session_nemesis -- --nocapture` (or `SIM_SEEDS=5000-6000` for a range)
//! runs many.

#[path = "support/listappend.rs"]
mod listappend;

#[path = "support/nemesis_model.rs"]
mod nemesis_model;

use listappend::{AppendResult, Elem, Event, OpKind};
use nemesis_model::*;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{
    CommitFailure, CommitTicket, Lookup, NodeState, Session, SessionConfig, SessionEvent,
    SessionMode, Txn,
};
use sessionrepl::Error;
use std::time::{Duration, Instant};

struct Run {
    c: SimCluster,
    plan: Plan,
    t0: Instant,
    clients: Vec<Client>,
    history: Vec<Event>,
    next_elem: Elem,
    /// When the last crash, drain or join happened (the nemesis waits
    /// before the next loss).
    last_disruption: Instant,
    draining: Option<usize>,
    crashes: usize,
    joins: usize,
    drains: usize,
    pauses: usize,
    partitions: usize,
    isolations: usize,
    /// When an isolated member was last let back in: membership sees it
    /// again only after failure detection, so no join until then.
    rejoined: Option<Instant>,
    /// Last line printed by [`Run::watch`].
    watched: Option<String>,
}

impl Run {
    fn new(plan: Plan) -> Run {
        let net = SimConfig {
            seed: plan.seed,
            latency_min: Duration::from_micros(50),
            latency_max: ms(3),
            loss: 0.01,
            ack_timeout: ms(40),
            detect_delay: ms(150),
            duplicate: 0.01,
        };
        let session = SessionConfig {
            mode: SessionMode::Backup,
            backup_count: plan.backups,
            access_timeout: ms(300),
            primary_settle_time: ms(300),
            expire_check_interval: ms(100),
            max_inactive_interval: -1,
            state_transfer_timeout: Some(Duration::from_secs(30)),
            min_commit_copies: if plan.isolate { 2 } else { 1 },
            ..SessionConfig::default()
        };
        let c = SimCluster::started(net, session, plan.nodes);
        let t0 = c.now();
        let clients = (0..plan.clients)
            .map(|i| Client {
                process: i as u32,
                node: i % plan.nodes,
                step: Step::Idle { at: t0 },
            })
            .collect();
        Run {
            last_disruption: t0,
            c,
            plan,
            t0,
            clients,
            history: Vec::new(),
            next_elem: 1,
            draining: None,
            crashes: 0,
            joins: 0,
            drains: 0,
            pauses: 0,
            partitions: 0,
            isolations: 0,
            rejoined: None,
            watched: None,
        }
    }

    fn ns(&self) -> u64 {
        self.c.now().saturating_duration_since(self.t0).as_nanos() as u64
    }

    /// Nodes a client may use: alive, ready, not draining.
    fn usable(&self) -> Vec<usize> {
        self.c
            .alive()
            .into_iter()
            .filter(|i| {
                self.c.node(*i).state() == NodeState::Ready
                    && Some(*i) != self.draining
                    && !self.c.is_paused(*i)
            })
            .collect()
    }

    fn session_name(&mut self) -> String {
        let k = self.c.rng().below(self.plan.sessions as u64);
        if self.plan.isolate {
            // New sessions every second: creates happen throughout, also
            // while a member is cut off; and cold ones, where a create may
            // be the last commit before a heal.
            let epoch = self.ns() / 1_000_000_000;
            if self.c.rng().chance(0.3) {
                let cold = self.c.rng().below(30);
                return format!("e{epoch}c{cold}");
            }
            return format!("e{epoch}s{k}");
        }
        format!("s{k}")
    }

    /// The sessions the final reads cover.
    fn final_sessions(&self) -> Vec<String> {
        if !self.plan.isolate {
            return (0..self.plan.sessions).map(|k| format!("s{k}")).collect();
        }
        listappend::sessions_of(&self.history)
    }

    fn record_append(
        &mut self,
        p: u32,
        invoke: u64,
        s: String,
        e: Elem,
        base: Option<Vec<Elem>>,
        r: AppendResult,
    ) {
        let complete = self.ns();
        self.history.push(Event {
            process: p,
            invoke,
            complete,
            op: OpKind::Append {
                session: s,
                elem: e,
                base,
                result: r,
            },
        });
    }

    fn record_read(&mut self, p: u32, invoke: u64, s: String, value: Option<Vec<Elem>>) {
        let complete = self.ns();
        self.history.push(Event {
            process: p,
            invoke,
            complete,
            op: OpKind::Read { session: s, value },
        });
    }

    /// A read's answer arrived: record it, and for an append commit next.
    fn read_done(&mut self, k: usize, found: Option<Session>) {
        let Step::Reading {
            session,
            elem,
            invoke,
        } = std::mem::replace(&mut self.clients[k].step, Step::Idle { at: self.c.now() })
        else {
            return;
        };
        let p = self.clients[k].process;
        let list = found.as_ref().map(list_of);
        self.record_read(p, invoke, session.clone(), list.clone());
        let Some(elem) = elem else {
            self.idle(k);
            return;
        };
        // Append on top of what was read, with its version as the base. The
        // append is one operation from the read's start (its base was
        // observed then) to the commit's outcome.
        let node = self.clients[k].node;
        let base = list.clone().unwrap_or_default();
        let mut next = base.clone();
        next.push(elem);
        let r = match &found {
            None => {
                let mut t = Txn::new(session.clone());
                t.set(ATTR, encode(&next));
                self.c.with(node, |n, now| n.create(t, 1, now))
            }
            Some(s) => {
                let mut t = Txn::on(s);
                t.set(ATTR, encode(&next));
                self.c
                    .with(node, |n, now| n.commit(t, now))
                    .and_then(|o| o.ok_or(Error::NotFound))
            }
        };
        match r {
            Ok(ticket) => {
                self.clients[k].step = Step::Committing {
                    session,
                    elem,
                    base,
                    ticket,
                    invoke,
                };
            }
            Err(e) => {
                let res = match e {
                    Error::Conflict(_) => AppendResult::Conflict,
                    _ => AppendResult::Fail,
                };
                self.record_append(p, invoke, session, elem, Some(base), res);
                self.idle(k);
            }
        }
    }

    fn idle(&mut self, k: usize) {
        let think = Duration::from_micros(self.c.rng().below(4000));
        self.clients[k].step = Step::Idle {
            at: self.c.now() + think,
        };
    }

    /// Starts a client's next operation: mostly appends, some reads.
    fn start_op(&mut self, k: usize, final_read: Option<String>) {
        let usable = self.usable();
        if usable.is_empty() {
            self.idle(k);
            return;
        }
        if !usable.contains(&self.clients[k].node) || self.c.rng().chance(0.05) {
            let i = self.c.rng().below(usable.len() as u64) as usize;
            self.clients[k].node = usable[i];
        }
        let node = self.clients[k].node;
        let (session, elem) = match final_read {
            Some(s) => (s, None),
            None => {
                let s = self.session_name();
                let e = if self.c.rng().chance(0.8) {
                    let e = self.next_elem;
                    self.next_elem += 1;
                    Some(e)
                } else {
                    None
                };
                (s, e)
            }
        };
        let invoke = self.ns();
        let lookup = self
            .c
            .with(node, |n, now| match n.get(session.as_bytes(), now) {
                Lookup::Local(s) => Ok(Some(s.clone())),
                Lookup::NotFound => Ok(None),
                Lookup::Fetching { .. } => Err(true),
                Lookup::Moved(_) | Lookup::Unavailable => Err(false),
            });
        self.clients[k].step = Step::Reading {
            session: session.clone(),
            elem,
            invoke,
        };
        match lookup {
            Ok(found) => self.read_done(k, found),
            Err(true) => {} // the node's Fetched / FetchFailed event follows
            Err(false) => {
                // Not answerable now: nothing was read or written.
                if let Some(e) = elem {
                    self.record_append(
                        self.clients[k].process,
                        invoke,
                        session,
                        e,
                        None,
                        AppendResult::Fail,
                    );
                }
                self.idle(k);
            }
        }
    }

    /// Hands each node's events to the clients waiting on that node.
    fn dispatch(&mut self) {
        for i in 0..self.c.len() {
            let events = self.c.take_events(i);
            for e in events {
                match e {
                    SessionEvent::Fetched { id, .. } => {
                        let found = self.c.node_mut(i).take_fetched(&id);
                        let Some(found) = found else { continue };
                        for k in 0..self.clients.len() {
                            let waiting = self.clients[k].node == i
                                && matches!(&self.clients[k].step, Step::Reading { session, .. } if session.as_bytes() == &id[..]);
                            if waiting {
                                self.read_done(k, found.clone());
                            }
                        }
                    }
                    SessionEvent::FetchFailed { id } => {
                        for k in 0..self.clients.len() {
                            let waiting = self.clients[k].node == i
                                && matches!(&self.clients[k].step, Step::Reading { session, .. } if session.as_bytes() == &id[..]);
                            if waiting {
                                self.abandon(k, AppendResult::Fail);
                            }
                        }
                    }
                    SessionEvent::CommitAcked { ticket, .. } => {
                        self.commit_done(i, ticket, AppendResult::Ok)
                    }
                    SessionEvent::CommitFailed { ticket, reason, .. } => {
                        let r = match reason {
                            CommitFailure::Conflict => AppendResult::Conflict,
                            CommitFailure::Unacknowledged => AppendResult::Info,
                            CommitFailure::Unavailable | CommitFailure::NotFound => {
                                AppendResult::Fail
                            }
                        };
                        self.commit_done(i, ticket, r)
                    }
                    _ => {}
                }
            }
        }
    }

    fn commit_done(&mut self, node: usize, t: CommitTicket, r: AppendResult) {
        let Some(k) = (0..self.clients.len()).find(|k| {
            self.clients[*k].node == node
                && matches!(self.clients[*k].step, Step::Committing { ticket, .. } if ticket == t)
        }) else {
            return;
        };
        let Step::Committing {
            session,
            elem,
            base,
            invoke,
            ..
        } = std::mem::replace(&mut self.clients[k].step, Step::Idle { at: self.c.now() })
        else {
            return;
        };
        let p = self.clients[k].process;
        self.record_append(p, invoke, session, elem, Some(base), r);
        self.idle(k);
    }

    /// The client's operation ends without an answer (its node crashed,
    /// or a read found no primary): a pending commit becomes unknown.
    fn abandon(&mut self, k: usize, read_result: AppendResult) {
        let step = std::mem::replace(&mut self.clients[k].step, Step::Idle { at: self.c.now() });
        let p = self.clients[k].process;
        match step {
            Step::Reading {
                session,
                elem: Some(e),
                invoke,
            } => self.record_append(p, invoke, session, e, None, read_result),
            Step::Committing {
                session,
                elem,
                base,
                invoke,
                ..
            } => self.record_append(p, invoke, session, elem, Some(base), AppendResult::Info),
            _ => {}
        }
        self.idle(k);
    }

    /// True if the cluster looks whole to an operator: every live node
    /// ready, none under-replicated, no drain, the last disruption long
    /// enough ago to have been detected and repaired.
    fn whole(&self) -> bool {
        let settle = ms(150 * 3 + 300);
        self.draining.is_none()
            && self.c.isolated().is_empty()
            && self.c.now().saturating_duration_since(self.last_disruption) > settle
            && self.c.alive().iter().all(|i| {
                let n = self.c.node(*i);
                n.state() == NodeState::Ready
                    && n.stats().under_replicated == 0
                    && n.stats().handoffs_in_progress == 0
            })
            && self.c.alive().len() > self.plan.backups
    }

    /// A join would see an isolated member (or one let back in before the
    /// others saw it again) as its own side: two views, each with
    /// `minCommitCopies` members, outside the guarantee. No join then.
    fn joins_allowed(&self) -> bool {
        self.c.isolated().is_empty()
            && self.rejoined.is_none_or(|t| {
                self.c.now().saturating_duration_since(t) > self.c.cfg.detect_delay * 3
            })
    }

    fn nemesis(&mut self) {
        let alive = self.c.alive();
        let roll = self.c.rng().below(100);
        match roll {
            0..=14 if self.whole() && alive.len() > 2 => {
                let v = alive[self.c.rng().below(alive.len() as u64) as usize];
                self.c.kill(v);
                self.crashes += 1;
                self.last_disruption = self.c.now();
                // Half the time a new node joins at once, inside the
                // failure-detection window (issue 11, loss 1).
                if self.c.rng().chance(0.5) {
                    self.c.add_node();
                    self.joins += 1;
                }
            }
            15..=29 if alive.len() < 7 && self.joins_allowed() => {
                self.c.add_node();
                self.joins += 1;
            }
            30..=39 if self.whole() && alive.len() > 2 => {
                let v = alive[self.c.rng().below(alive.len() as u64) as usize];
                self.c.with(v, |n, now| n.drain(now));
                self.draining = Some(v);
                self.drains += 1;
                self.last_disruption = self.c.now();
            }
            40..=59 => {
                // A pause shorter than failure detection (GC, SIGSTOP).
                let v = alive[self.c.rng().below(alive.len() as u64) as usize];
                let d = ms(5 + self.c.rng().below(100));
                self.c.pause(v, d);
                self.pauses += 1;
            }
            60..=74 => {
                let a = alive[self.c.rng().below(alive.len() as u64) as usize];
                let b = alive[self.c.rng().below(alive.len() as u64) as usize];
                if a != b {
                    self.c.partition(a, b);
                    self.partitions += 1;
                }
            }
            75..=89 => {
                if !self.c.isolated().is_empty() {
                    self.last_disruption = self.c.now();
                    self.rejoined = Some(self.c.now());
                }
                self.c.heal();
            }
            90..=94 if self.plan.isolate && self.whole() && alive.len() > 2 => {
                // A partition membership notices: one member cut off, a
                // minority that minCommitCopies=2 keeps from committing.
                let v = alive[self.c.rng().below(alive.len() as u64) as usize];
                self.c.isolate(v);
                self.isolations += 1;
                self.last_disruption = self.c.now();
            }
            _ => {}
        }
    }

    /// Debugging aid (`SIM_WATCH=s2`): prints each change of who holds
    /// the session, at which version, and whom each node places it on.
    fn watch(&mut self) {
        let Ok(id) = std::env::var("SIM_WATCH") else {
            return;
        };
        let (id, mut line) = (id.as_bytes(), String::new());
        for i in self.c.alive() {
            let n = self.c.node(i);
            let v = n.peek(id).map(|s| s.version());
            let v = v.map_or("-".into(), |v| {
                format!("{}/w{}", v.counter, v.writer[0] - 1)
            });
            let (pl, paused) = (n.placement_of(id), self.c.is_paused(i));
            let pl: Vec<usize> = (0..self.c.len())
                .filter(|j| pl.contains(&sim_key(*j)))
                .collect();
            let (st, u, prim) = (n.state(), n.stats().under_replicated, n.is_primary_for(id));
            line += &format!(" n{i}[{st:?} paused={paused} u={u} place={pl:?} prim={prim} v={v}]");
        }
        if Some(&line) != self.watched.as_ref() {
            eprintln!("{:>7}us{line}", self.ns() / 1000);
            self.watched = Some(line);
        }
    }

    fn run(&mut self) {
        let end_chaos = self.t0 + self.plan.chaos;
        let mut next_nemesis = self.t0 + ms(50);
        while self.c.now() < end_chaos {
            if self.c.now() >= next_nemesis {
                self.nemesis();
                next_nemesis = self.c.now() + ms(20 + self.c.rng().below(120));
            }
            self.drive_clients();
            self.c.run_for(Duration::from_micros(500));
            self.dispatch();
            self.watch();
        }
        // Heal, let the cluster settle, then let every client finish.
        self.c.heal();
        let deadline = self.c.now() + Duration::from_secs(20);
        while self.c.now() < deadline
            && self
                .clients
                .iter()
                .any(|cl| !matches!(cl.step, Step::Idle { .. }))
        {
            self.finish_drain();
            self.c.run_for(ms(1));
            self.dispatch();
            self.drop_dead_clients();
        }
        for k in 0..self.clients.len() {
            if !matches!(self.clients[k].step, Step::Idle { .. }) {
                self.abandon(k, AppendResult::Fail);
            }
        }
        for _ in 0..30 {
            self.finish_drain();
            self.c.run_for(ms(50));
        }
        self.dispatch();
        // A final read of every session, retried until a primary answers.
        for name in self.final_sessions() {
            let deadline = self.c.now() + Duration::from_secs(20);
            let mut done = false;
            while !done && self.c.now() < deadline {
                let before = self.history.len();
                self.clients[0].step = Step::Idle { at: self.c.now() };
                self.start_op(0, Some(name.clone()));
                let mut waited = Duration::ZERO;
                while !matches!(self.clients[0].step, Step::Idle { .. }) && waited < ms(2000) {
                    self.finish_drain();
                    self.c.run_for(ms(1));
                    self.dispatch();
                    waited += ms(1);
                }
                done = self.history.len() > before
                    && matches!(
                        self.history.last().map(|e| &e.op),
                        Some(OpKind::Read { .. })
                    );
                if !done {
                    self.finish_drain();
                    self.c.run_for(ms(50));
                    self.dispatch();
                }
            }
            assert!(
                done,
                "seed {}: final read of {name} never answered",
                self.plan.seed
            );
        }
        // Healed and quiet: every gauge an operator waits on returns to 0
        // (a hand-off or repair that never completes would keep it up).
        // (With fewer live members than copies, under-replication is the
        // truth, not a stuck gauge.)
        let enough = self.c.alive().len() > self.plan.backups;
        let whole = |c: &SimCluster| {
            c.alive().iter().all(|i| {
                let st = c.node(*i).stats();
                (st.under_replicated == 0 || !enough) && st.handoffs_in_progress == 0
            })
        };
        let settled = self.c.run_until(Duration::from_secs(10), |c| whole(c));
        if !settled {
            let gauges: Vec<String> = self
                .c
                .alive()
                .iter()
                .map(|i| {
                    let st = self.c.node(*i).stats();
                    format!(
                        "n{i}: under={} handoffs={}",
                        st.under_replicated, st.handoffs_in_progress
                    )
                })
                .collect();
            panic!("seed {}: gauges stuck: {gauges:?}", self.plan.seed);
        }
    }

    fn drive_clients(&mut self) {
        self.finish_drain();
        self.drop_dead_clients();
        for k in 0..self.clients.len() {
            if let Step::Idle { at } = self.clients[k].step {
                if self.c.now() >= at && !self.c.is_paused(self.clients[k].node) {
                    self.start_op(k, None);
                }
            }
        }
    }

    /// A drained node stops (as `close` after `drain`).
    fn finish_drain(&mut self) {
        if let Some(v) = self.draining {
            if !self.c.is_alive(v) || self.c.node(v).state() == NodeState::Drained {
                if self.c.is_alive(v) {
                    self.c.kill(v);
                }
                self.draining = None;
                self.last_disruption = self.c.now();
            }
        }
    }

    /// Clients whose node crashed lose their pending operation.
    fn drop_dead_clients(&mut self) {
        for k in 0..self.clients.len() {
            if !self.c.is_alive(self.clients[k].node) {
                self.abandon(k, AppendResult::Fail);
                let usable = self.usable();
                if let Some(&n) = usable.first() {
                    self.clients[k].node = n;
                }
            }
        }
    }
}

/// Runs one seed; returns the checker's report line and the counts.
fn run_seed(seed: u64) -> (listappend::Report, usize) {
    let plan = Plan::of(seed);
    let mut r = Run::new(plan.clone());
    r.run();
    let ops = r.history.len();
    match listappend::check(&r.history) {
        Ok(rep) => (rep, ops),
        Err(anomalies) => {
            let mut msg = format!(
                "seed {seed} ({plan:?}; crashes {} joins {} drains {} pauses {} partitions {} isolations {}): {} anomalies\n",
                r.crashes,
                r.joins,
                r.drains,
                r.pauses,
                r.partitions,
                r.isolations,
                anomalies.len()
            );
            for a in anomalies.iter().take(8) {
                msg.push_str(a);
                msg.push('\n');
            }
            panic!("{msg}");
        }
    }
}

#[test]
fn list_append_under_the_nemesis_keeps_every_acknowledged_append() {
    let mut seeds: Vec<u64> = FIXED_SEEDS.iter().map(|(s, _)| *s).collect();
    seeds.extend(seeds_from_env(40));
    let mut total_ops = 0;
    let mut ok = 0;
    let mut failed = Vec::new();
    for &seed in &seeds {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok((rep, ops)) => {
                total_ops += ops;
                ok += rep.appends_ok;
                assert!(rep.reads > 0, "seed {seed}: no reads: {rep}");
            }
            Err(_) => failed.push(seed),
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    eprintln!(
        "nemesis: {} seeds, {} operations checked, {} acknowledged appends",
        seeds.len(),
        total_ops,
        ok
    );
    assert!(ok > seeds.len(), "too few acknowledged appends: {ok}");
}

/// Prints the history of one session of one seed (debugging aid):
/// `SIM_DEBUG_SEED=1000 SIM_DEBUG_SESSION=s0 cargo test --test session_nemesis dump -- --nocapture`.
#[test]
fn dump() {
    let (Ok(seed), Ok(session)) = (
        std::env::var("SIM_DEBUG_SEED"),
        std::env::var("SIM_DEBUG_SESSION"),
    ) else {
        return;
    };
    let mut r = Run::new(Plan::of(seed.parse().unwrap()));
    r.run();
    for e in &r.history {
        let mine = match &e.op {
            OpKind::Append { session: s, .. } | OpKind::Read { session: s, .. } => *s == session,
        };
        if mine {
            eprintln!(
                "{:>6}..{:>6} p{} {:?}",
                e.invoke / 1_000_000,
                e.complete / 1_000_000,
                e.process,
                e.op
            );
        }
    }
}
