//! Time in a [`SenderConn`]: deadlines, connect timeouts, backoff,
//! keepalive and the release of a member that left.

use super::pending::{Items, Pending};
use super::{Action, SenderConn, State};
use crate::error::Error;
use crate::wire::frame::{FrameHeader, FrameType};
use std::time::{Duration, Instant};

impl<T: Default> SenderConn<T> {
    /// Time passed to `now`: fails messages past their deadline (written or
    /// not), connects that took too long, ends a backoff, and runs
    /// keepalive (ping, close when quiet, break when a ping went
    /// unanswered).
    pub fn handle_timeout(&mut self, now: Instant) {
        let out = &mut self.outcomes;
        self.inflight.expire(now, |id, p| {
            out.push_back((id, p.token, Err(Error::Timeout)))
        });
        self.expire_pending(now);
        match self.state {
            State::Connecting(d) if now >= d => self.close_broken(now, "connect timed out"),
            State::Backoff(until) if now >= until => {
                if self.pending.is_empty() {
                    self.state = State::Idle;
                    self.idle_since = now;
                } else {
                    self.counters.reconnects += 1;
                    self.want_connect();
                }
            }
            State::Open => {
                self.secure_timeout(now);
                if self.state == State::Open {
                    self.keepalive(now);
                }
            }
            _ => {}
        }
        if self.state == State::Idle && self.load() > 0 {
            self.want_connect();
        }
        self.release_if_left(now);
    }

    /// Messages not written by their deadline end as [`Error::Timeout`];
    /// a head frame partly written and overdue means the member stopped
    /// reading: the connection closes.
    fn expire_pending(&mut self, now: Instant) {
        let Some(front) = self.pending.front() else {
            return;
        };
        // Deadlines ascend with sequence numbers, so only the front can
        // be due; a leading marker goes with what it announced.
        let due = |p: &Pending<T>| !p.marker && p.deadline <= now;
        let front_due = due(front) || (front.marker && self.pending.get(1).is_some_and(due));
        if !front_due {
            return;
        }
        if self.head_off > 0 || self.frames_in_records() {
            return self.close_broken(now, "write deadline passed (member not reading)");
        }
        let mut removed = false;
        while let Some(p) = self.pending.front() {
            if !(due(p) || (p.marker && self.pending.get(1).is_some_and(due))) {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            removed = true;
            self.markers -= usize::from(p.marker);
            self.to_deflate = self.to_deflate.saturating_sub(usize::from(p.deflate));
            for p in Items::of(p) {
                self.outcomes
                    .push_back((p.id, p.token, Err(Error::Timeout)));
            }
        }
        if removed {
            self.mark_gaps(now);
        }
    }

    fn keepalive(&mut self, now: Instant) {
        if let Some(d) = self.ping_deadline {
            if now >= d {
                self.close_broken(now, "no answer to keepalive ping");
            }
            return;
        }
        let l = &self.limits;
        let quiet = self.pending.is_empty() && self.inflight.is_empty() && self.ctl.is_empty();
        let idle_for = now.saturating_duration_since(self.last_activity);
        let too_old = l.keep_alive_count > 0 && self.sent_on_conn >= l.keep_alive_count;
        if quiet
            && ((!l.keep_alive_timeout.is_zero() && idle_for >= l.keep_alive_timeout) || too_old)
        {
            self.state = State::Idle;
            self.idle_since = now;
            self.actions.push_back(Action::Close("idle".into()));
            return;
        }
        if !l.ping_interval.is_zero() && idle_for >= l.ping_interval {
            let h = FrameHeader {
                ty: FrameType::Ping,
                flags: 0,
                len: 0,
                id: self.next_ping,
            };
            self.next_ping += 1;
            self.ctl.extend_from_slice(&h.encode());
            self.ping_deadline = Some(now + l.ack_timeout);
            self.last_activity = now;
        }
    }

    /// The member left the cluster: once every message has its outcome the
    /// connection closes and this sender may be dropped at once (no
    /// `idle_release` wait). Messages still owed keep their deadlines.
    pub fn handle_leave(&mut self, now: Instant) {
        self.leaving = true;
        self.limits.idle_release = Duration::ZERO;
        self.release_if_left(now);
    }

    fn release_if_left(&mut self, now: Instant) {
        if !self.leaving || self.load() > 0 || self.state == State::Idle {
            return;
        }
        if matches!(self.state, State::Open | State::Connecting(_)) {
            self.actions.push_back(Action::Close("member left".into()));
        }
        self.ctl.clear();
        self.state = State::Idle;
        self.idle_since = now;
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.inflight.next_deadline();
        let mut at = |d: Instant| t = Some(t.map_or(d, |t: Instant| t.min(d)));
        if let Some(p) = self.pending.iter().take(2).find(|p| !p.marker) {
            at(p.deadline);
        }
        match self.state {
            State::Connecting(d) | State::Backoff(d) => at(d),
            State::Open => {
                if let Some(d) = self.handshake_deadline {
                    at(d);
                }
                if let Some(d) = self.ping_deadline {
                    at(d);
                } else {
                    let l = &self.limits;
                    for i in [l.ping_interval, l.keep_alive_timeout] {
                        if !i.is_zero() {
                            at(self.last_activity + i);
                        }
                    }
                }
            }
            State::Idle | State::Wanted => {}
        }
        t
    }
}
