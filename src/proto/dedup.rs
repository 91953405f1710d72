//! The receiver's half of exactly-once delivery across reconnects.
//!
//! An asynchronous sender numbers the messages of each member stream
//! (`epoch`, chosen at random per sender instance, and a sequence number
//! starting at 1). It writes a sequence marker (a DATA frame with
//! [`FLAG_SEQ`](crate::wire::frame::FLAG_SEQ)) first on every connection
//! and wherever the numbers it writes skip (a message that timed out
//! unwritten); every other DATA message, alone or inside a BATCH, takes
//! the next number. After a reconnect the sender resends what was not
//! acked, so the receiver may see a number twice: it delivers a message
//! only if its number is above the stream's high-water mark, and acks the
//! duplicate without delivering it again.
//!
//! [`DedupTable`] holds the high-water marks, shared by every connection
//! of a receiver (a reconnect may land on another receiver thread), with
//! at most [`DedupTable::new`]'s `capacity` streams (the least recently
//! opened is forgotten first). [`StreamCursor`] is one connection's view:
//! a lock-free check per message, or one for a run of messages
//! ([`StreamCursor::accept_run`]).

use crate::error::{Error, Result};
use crate::wire::frame::parse_seq_marker;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Streams remembered by default.
pub const DEFAULT_STREAMS: usize = 4096;

/// High-water marks of the member streams a receiver has seen.
#[derive(Debug)]
pub struct DedupTable {
    capacity: usize,
    inner: Mutex<Streams>,
}

#[derive(Debug, Default)]
struct Streams {
    by_key: HashMap<([u8; 16], u64), Arc<AtomicU64>>,
    /// Keys in the order they were first seen (eviction order).
    order: VecDeque<([u8; 16], u64)>,
}

impl Default for DedupTable {
    fn default() -> Self {
        DedupTable::new(DEFAULT_STREAMS)
    }
}

impl DedupTable {
    /// A table remembering at most `capacity` streams.
    pub fn new(capacity: usize) -> DedupTable {
        DedupTable {
            capacity: capacity.max(1),
            inner: Mutex::new(Streams::default()),
        }
    }

    /// Streams remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|s| s.by_key.len()).unwrap_or(0)
    }

    /// True when no stream is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mark(&self, member: [u8; 16], epoch: u64) -> Arc<AtomicU64> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = s.by_key.get(&(member, epoch)) {
            return m.clone();
        }
        while s.by_key.len() >= self.capacity {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            s.by_key.remove(&old);
        }
        let m = Arc::new(AtomicU64::new(0));
        s.by_key.insert((member, epoch), m.clone());
        s.order.push_back((member, epoch));
        m
    }
}

/// One connection's position in its member stream.
#[derive(Debug, Default)]
pub struct StreamCursor {
    /// The stream's high-water mark; `None` until a marker arrived (a
    /// connection without markers, e.g. a synchronous one, is not
    /// deduplicated).
    mark: Option<Arc<AtomicU64>>,
    next: u64,
}

impl StreamCursor {
    /// A sequence marker arrived on this connection from `member`.
    ///
    /// # Errors
    /// A malformed marker payload (the connection must be closed).
    pub fn on_marker(
        &mut self,
        table: &DedupTable,
        member: [u8; 16],
        payload: &[u8],
    ) -> Result<()> {
        let (epoch, seq) = parse_seq_marker(payload)?;
        if seq == 0 {
            return Err(Error::Protocol("sequence marker with number 0".into()));
        }
        // Markers are rare (one per connection, one per gap): the table
        // lookup may take its lock.
        self.mark = Some(table.mark(member, epoch));
        self.next = seq;
        Ok(())
    }

    /// A message arrived: true to deliver it, false if it is a duplicate
    /// (ack it, do not deliver it again).
    #[inline]
    pub fn accept(&mut self) -> bool {
        let Some(m) = &self.mark else {
            return true;
        };
        let seq = self.next;
        // A hostile marker may start near u64::MAX: saturate, never wrap.
        self.next = self.next.saturating_add(1);
        m.fetch_max(seq, Ordering::AcqRel) < seq
    }

    /// `n` messages arrived in a row: the indices (within the run) of
    /// those to deliver; the others are duplicates (ack them, do not
    /// deliver them again). One atomic operation for the whole run, and
    /// the same outcome as [`StreamCursor::accept`] called `n` times: the
    /// duplicates are a prefix (already delivered) and, past a number
    /// saturated at `u64::MAX`, a suffix.
    #[inline]
    pub fn accept_run(&mut self, n: usize) -> std::ops::Range<usize> {
        let Some(m) = &self.mark else {
            return 0..n;
        };
        if n == 0 {
            return 0..0;
        }
        let first = self.next;
        // Distinct numbers in the run: a hostile marker near u64::MAX
        // saturates, never wraps.
        let distinct = (u64::MAX - first).saturating_add(1).min(n as u64) as usize;
        let last = first + (distinct as u64 - 1);
        self.next = first.saturating_add(n as u64);
        let prev = m.fetch_max(last, Ordering::AcqRel);
        if prev < first {
            return 0..distinct;
        }
        let seen = ((prev - first) as u128 + 1).min(distinct as u128) as usize;
        seen..distinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::seq_marker;

    #[test]
    fn a_resent_message_is_delivered_once_across_connections() {
        let t = DedupTable::default();
        let m = [1u8; 16];
        let mut c1 = StreamCursor::default();
        c1.on_marker(&t, m, &seq_marker(7, 1)).unwrap();
        assert!((0..3).all(|_| c1.accept()), "1..=3 delivered");
        // Reconnect: 2 and 3 were not acked, resent with 4.
        let mut c2 = StreamCursor::default();
        c2.on_marker(&t, m, &seq_marker(7, 2)).unwrap();
        assert!(!c2.accept(), "2 is a duplicate");
        assert!(!c2.accept(), "3 is a duplicate");
        assert!(c2.accept(), "4 is new");
        // A new sender instance (epoch) starts over.
        let mut c3 = StreamCursor::default();
        c3.on_marker(&t, m, &seq_marker(8, 1)).unwrap();
        assert!(c3.accept());
    }

    #[test]
    fn a_run_has_the_outcome_of_one_check_per_message() {
        // Against `accept` one by one, for marks before, inside and past
        // the run, and numbers saturating at u64::MAX.
        for start in [1u64, 5, u64::MAX - 3, u64::MAX] {
            for seen in [0u64, 1, 3, 6, 9, 20] {
                for n in 0..12usize {
                    let seen = start.saturating_add(seen).saturating_sub(1);
                    let (ta, tb) = (DedupTable::default(), DedupTable::default());
                    let mut prime = StreamCursor::default();
                    prime.on_marker(&ta, [1; 16], &seq_marker(1, 1)).unwrap();
                    prime.mark.as_ref().unwrap().store(seen, Ordering::SeqCst);
                    tb.mark([1; 16], 1).store(seen, Ordering::SeqCst);
                    let (mut a, mut b) = (StreamCursor::default(), StreamCursor::default());
                    a.on_marker(&ta, [1; 16], &seq_marker(1, start)).unwrap();
                    b.on_marker(&tb, [1; 16], &seq_marker(1, start)).unwrap();
                    let one_by_one: Vec<bool> = (0..n).map(|_| a.accept()).collect();
                    let run = b.accept_run(n);
                    let by_run: Vec<bool> = (0..n).map(|i| run.contains(&i)).collect();
                    assert_eq!(one_by_one, by_run, "start {start} seen {seen} n {n}");
                    assert_eq!(a.accept(), b.accept(), "the next one agrees too");
                }
            }
        }
        let mut c = StreamCursor::default();
        assert_eq!(c.accept_run(3), 0..3, "no marker: every message");
    }

    #[test]
    fn connections_without_markers_are_not_deduplicated() {
        let mut c = StreamCursor::default();
        assert!(c.accept() && c.accept());
    }

    #[test]
    fn the_table_is_bounded_and_bad_markers_are_errors() {
        let t = DedupTable::new(2);
        for e in 0..10 {
            let mut c = StreamCursor::default();
            c.on_marker(&t, [0; 16], &seq_marker(e, 1)).unwrap();
        }
        assert_eq!(t.len(), 2);
        let mut c = StreamCursor::default();
        assert!(c.on_marker(&t, [0; 16], &[1, 2, 3]).is_err());
        assert!(c.on_marker(&t, [0; 16], &seq_marker(1, 0)).is_err());
        c.on_marker(&t, [0; 16], &seq_marker(1, u64::MAX)).unwrap();
        assert!(c.accept());
        assert!(!c.accept(), "saturated, not wrapped: no second delivery");
    }
}
