//! The read and failure side of a [`SenderConn`]: replies (acks,
//! failures, pongs, GOAWAY), a broken connection (resend or fail what it
//! held), the sequence markers that keep delivery exactly-once across
//! reconnects, and shutdown.

use super::pending::{Items, Pending};
use super::{Action, Delivery, SenderConn, State};
use crate::error::Error;
use crate::proto::outbound::Reply;
use crate::wire::frame::ack_ranges;
use crate::wire::preface::CAP_SEQ;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

impl<T: Default> SenderConn<T> {
    /// Decodes every complete reply in `buf` (bytes read from the socket).
    /// A bad reply or a GOAWAY breaks the connection
    /// ([`Action::Close`] follows).
    pub fn handle_replies(&mut self, now: Instant, buf: &mut BytesMut) {
        self.last_activity = now;
        if self.secure.is_some() {
            // secure hook: replies are opened first
            return self.secure_replies(now, buf);
        }
        self.decode_replies(now, buf);
    }

    pub(super) fn decode_replies(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            let r = match self.proto.poll(buf) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return self.close_broken(now, &format!("bad reply: {e}")),
            };
            match r {
                Reply::Preface(p) => {
                    // Nothing is written yet on this connection: the
                    // markers can still be dropped (or put back).
                    let seq = p.caps & CAP_SEQ != 0;
                    if seq != self.seq_markers {
                        self.seq_markers = seq;
                        self.mark_gaps(now);
                    }
                }
                Reply::Ack(p) => {
                    for (first, count) in ack_ranges(&p) {
                        let out = &mut self.outcomes;
                        self.counters.acks += self.inflight.ack_range(first, count, |id, p| {
                            out.push_back((id, p.token, Ok(Delivery::Acked)))
                        }) as u64;
                    }
                }
                Reply::Fail { id, reason } => {
                    if let Some(p) = self.inflight.take(id) {
                        self.outcomes
                            .push_back((id, p.token, Err(Error::RemoteFailure(reason))));
                    }
                }
                Reply::Pong(_) => self.ping_deadline = None,
                Reply::GoAway(r) => {
                    return self.close_broken(now, &format!("member going away: {r}"))
                }
            }
        }
    }

    pub(super) fn close_broken(&mut self, now: Instant, why: &str) {
        self.actions.push_back(Action::Close(why.to_string()));
        self.handle_broken(now, why);
    }

    /// The connection is lost (the driver dropped or is dropping its
    /// socket): what may not have arrived is queued again for resend (up
    /// to `maxRetryAttempts`, and only before its deadline), the rest
    /// ends as [`Error::Unreachable`] or [`Error::Timeout`]; reconnect after
    /// a backoff.
    pub fn handle_broken(&mut self, now: Instant, why: &str) {
        let max = self.limits.max_retry_attempts;
        let mut retry: Vec<Pending<T>> = Vec::new();
        let addr = self.addr;
        let out = &mut self.outcomes;
        let counters = &mut self.counters;
        let mut keep = |mut p: Pending<T>| {
            if p.deadline <= now {
                out.push_back((p.id, p.token, Err(Error::Timeout)));
            } else if p.attempts < max {
                p.attempts += 1;
                counters.resends += 1;
                retry.push(p);
            } else {
                let e = Error::Unreachable(format!("{addr}: {why}"));
                out.push_back((p.id, p.token, Err(e)));
            }
        };
        self.inflight.drain_all(|_, p| keep(p));
        for p in self.pending.drain(..) {
            Items::of(p).for_each(&mut keep);
        }
        // Resend in stream order: inflight (tracked by id) and pending
        // interleave by sequence number.
        retry.sort_by_key(|p| p.seq);
        self.to_deflate = retry.iter().filter(|p| p.deflate).count();
        self.pending = retry.into();
        self.head_off = 0;
        self.ctl.clear();
        self.secure_closed();
        self.wire_expect = None;
        self.ping_deadline = None;
        self.mark_gaps(now);
        self.state = State::Backoff(now + self.backoff);
        self.backoff = (self.backoff * 2).clamp(
            self.limits.backoff_min.max(Duration::from_millis(1)),
            self.limits.backoff_max.max(Duration::from_millis(1)),
        );
    }

    /// Makes the markers in `pending` match the sequence numbers: one
    /// before every entry whose number is not the one the receiver will
    /// expect, none elsewhere. Called after entries were removed or put
    /// back (rare), never on the hot path.
    pub(super) fn mark_gaps(&mut self, now: Instant) {
        let start = usize::from(self.head_off > 0);
        let mut expect = if start == 1 {
            Some(self.pending[0].seq + self.pending[0].count())
        } else {
            self.wire_expect
        };
        let mut out = VecDeque::with_capacity(self.pending.len() + 1);
        let mut rest = std::mem::take(&mut self.pending);
        out.extend(rest.drain(..start));
        let mut markers = out.iter().filter(|p| p.marker).count();
        for p in rest {
            if p.marker {
                continue;
            }
            if self.seq_markers && expect != Some(p.seq) {
                out.push_back(Pending::marker(self.epoch, p.seq, now));
                markers += 1;
            }
            expect = Some(p.seq + p.count());
            out.push_back(p);
        }
        self.pending = out;
        self.markers = markers;
        self.tail_expect = expect;
    }

    /// The driver stops: everything without an outcome ends as
    /// [`Error::Shutdown`].
    pub fn handle_shutdown(&mut self) {
        let out = &mut self.outcomes;
        self.inflight
            .drain_all(|id, p| out.push_back((id, p.token, Err(Error::Shutdown))));
        for p in self.pending.drain(..) {
            for p in Items::of(p) {
                self.outcomes
                    .push_back((p.id, p.token, Err(Error::Shutdown)));
            }
        }
        self.to_deflate = 0;
        self.markers = 0;
        self.head_off = 0;
        self.tail_expect = None;
        self.wire_expect = None;
        self.ctl.clear();
        self.secure_closed();
        if !matches!(self.state, State::Idle) {
            self.actions.push_back(Action::Close("shutdown".into()));
        }
        self.state = State::Idle;
    }
}
