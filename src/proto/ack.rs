//! The sender's tracker of messages awaiting acknowledgement.
//!
//! Many messages may be in flight per connection; each is matched by id.
//! Every tracked message leaves the tracker exactly once: acked, failed,
//! expired or drained (connection lost).

use std::collections::VecDeque;
use std::time::Instant;

/// Messages awaiting an ack, ordered by id, each with a deadline.
#[derive(Debug)]
pub struct AckTracker<T> {
    q: VecDeque<(u64, Instant, T)>,
}

impl<T> Default for AckTracker<T> {
    fn default() -> Self {
        AckTracker { q: VecDeque::new() }
    }
}

impl<T> AckTracker<T> {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True if nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Tracks `id` until `deadline`. Ids usually ascend; an out-of-order id
    /// is inserted in place.
    pub fn track(&mut self, id: u64, deadline: Instant, item: T) {
        let pos = match self.q.back() {
            Some(&(last, _, _)) if last > id => self.q.partition_point(|e| e.0 < id),
            _ => self.q.len(),
        };
        self.q.insert(pos, (id, deadline, item));
    }

    /// Acknowledges ids `first .. first+count`; calls `done` for each that
    /// was tracked. Unknown ids (late or duplicate acks) are ignored.
    pub fn ack_range(&mut self, first: u64, count: u32, mut done: impl FnMut(u64, T)) -> usize {
        let end = first.saturating_add(count as u64);
        let mut n = 0;
        // Fast path: the range covers the front.
        while let Some(&(id, _, _)) = self.q.front() {
            if id >= first && id < end {
                let (id, _, t) = self.q.pop_front().expect("front exists");
                done(id, t);
                n += 1;
            } else {
                break;
            }
        }
        if self.q.front().is_some_and(|f| f.0 < end) {
            let start = self.q.partition_point(|e| e.0 < first);
            let stop = self.q.partition_point(|e| e.0 < end);
            for (id, _, t) in self.q.drain(start..stop) {
                done(id, t);
                n += 1;
            }
        }
        n
    }

    /// Removes `id` (a FAIL arrived for it).
    pub fn take(&mut self, id: u64) -> Option<T> {
        let pos = self.q.partition_point(|e| e.0 < id);
        match self.q.get(pos) {
            Some(e) if e.0 == id => self.q.remove(pos).map(|e| e.2),
            _ => None,
        }
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        // Deadlines ascend with ids in practice (same timeout for all);
        // scan a few to stay correct when they do not.
        self.q.iter().take(64).map(|e| e.1).min()
    }

    /// Removes every message whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant, mut expired: impl FnMut(u64, T)) -> usize {
        if self.q.iter().all(|e| e.1 > now) {
            return 0;
        }
        let mut n = 0;
        let mut keep = VecDeque::with_capacity(self.q.len());
        for (id, d, t) in self.q.drain(..) {
            if d <= now {
                expired(id, t);
                n += 1;
            } else {
                keep.push_back((id, d, t));
            }
        }
        self.q = keep;
        n
    }

    /// Removes everything (the connection was lost), in id order.
    pub fn drain_all(&mut self, mut f: impl FnMut(u64, T)) {
        for (id, _, t) in self.q.drain(..) {
            f(id, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ranges_ack_many_and_ignore_unknown() {
        let t0 = Instant::now();
        let mut t = AckTracker::new();
        for id in 1..=10u64 {
            t.track(id, t0 + Duration::from_secs(1), id * 100);
        }
        let mut got = Vec::new();
        assert_eq!(t.ack_range(1, 3, |id, v| got.push((id, v))), 3);
        assert_eq!(t.ack_range(6, 2, |id, v| got.push((id, v))), 2);
        assert_eq!(t.ack_range(100, 5, |_, _| panic!("unknown")), 0);
        assert_eq!(got, vec![(1, 100), (2, 200), (3, 300), (6, 600), (7, 700)]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.take(9), Some(900));
        assert_eq!(t.take(9), None);
    }

    #[test]
    fn out_of_order_track_keeps_order_and_timeouts_fire_on_virtual_clock() {
        let t0 = Instant::now();
        let mut t = AckTracker::new();
        t.track(5, t0 + Duration::from_millis(50), ());
        t.track(3, t0 + Duration::from_millis(10), ());
        t.track(4, t0 + Duration::from_millis(30), ());
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        let mut exp = Vec::new();
        assert_eq!(
            t.expire(t0 + Duration::from_millis(30), |id, _| exp.push(id)),
            2
        );
        assert_eq!(exp, vec![3, 4]);
        let mut rest = Vec::new();
        t.drain_all(|id, _| rest.push(id));
        assert_eq!(rest, vec![5]);
        assert!(t.is_empty());
    }
}
