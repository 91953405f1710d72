//! A member's idle connections, one slot each, with no lock: a caller takes
//! from and returns to its own slot first (a slot per thread, by a number
//! each thread draws once), so with no more callers than slots each keeps
//! using the same connection and its socket's state stays in that core's
//! cache, instead of going to whichever caller asks next (a FIFO queue
//! hands every connection round all the callers).

use crossbeam_utils::atomic::AtomicCell;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads numbered in the order they first use a pool.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_NO: usize = THREADS.fetch_add(1, Ordering::Relaxed);
}

/// One slot: an idle item or none, swapped whole (a pointer: lock-free).
type Slot<T> = AtomicCell<Option<Box<T>>>;

/// Up to `n` idle items (boxed: moving one in or out copies a pointer).
pub(super) struct IdleSlots<T> {
    slots: Box<[CachePadded<Slot<T>>]>,
    idle: AtomicUsize,
}

impl<T> IdleSlots<T> {
    /// Room for `n` items (at least one).
    pub(super) fn new(n: usize) -> Self {
        IdleSlots {
            slots: (0..n.max(1))
                .map(|_| CachePadded::new(AtomicCell::new(None)))
                .collect(),
            idle: AtomicUsize::new(0),
        }
    }

    /// This thread's slots in the order it tries them: its own first.
    fn order(&self) -> impl Iterator<Item = &Slot<T>> {
        let n = self.slots.len();
        let home = THREAD_NO.with(|t| *t) % n;
        (0..n).map(move |i| &*self.slots[(home + i) % n])
    }

    /// An idle item, this thread's own if it is there.
    pub(super) fn pop(&self) -> Option<Box<T>> {
        if self.is_empty() {
            return None;
        }
        let got = self.order().find_map(|s| s.take())?;
        self.idle.fetch_sub(1, Ordering::SeqCst);
        Some(got)
    }

    /// Puts `item` in this thread's slot, or the next free one; an item
    /// found in the way moves on to the next. `Err` with one of the items
    /// (maybe another than `item`) when two rounds found no free slot
    /// (only when more than `n` are pushed).
    pub(super) fn push(&self, item: Box<T>) -> Result<(), Box<T>> {
        let mut carry = item;
        for s in self.order().chain(self.order()) {
            match s.swap(Some(carry)) {
                None => {
                    self.idle.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Some(displaced) => carry = displaced,
            }
        }
        Err(carry)
    }

    /// True when no item is idle (as counted after each push and pop).
    pub(super) fn is_empty(&self) -> bool {
        self.idle.load(Ordering::SeqCst) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_lock_free() {
        assert!(Slot::<u64>::is_lock_free());
    }

    #[test]
    fn a_thread_gets_back_what_it_returned_and_others_find_the_rest() {
        let s = IdleSlots::new(4);
        assert!(s.pop().is_none());
        s.push(Box::new(1)).unwrap();
        s.push(Box::new(2)).unwrap();
        // Its own slot first: the last one it returned there.
        assert_eq!(*s.pop().unwrap(), 2);
        let other = std::thread::scope(|sc| sc.spawn(|| s.pop().map(|b| *b)).join().unwrap());
        assert_eq!(other, Some(1));
        assert!(s.is_empty() && s.pop().is_none());
    }

    #[test]
    fn holds_n_items_and_refuses_one_more() {
        let s = IdleSlots::new(3);
        for i in 0..3 {
            s.push(Box::new(i)).unwrap();
        }
        // One item comes back (not necessarily the new one); none is lost.
        let refused = *s.push(Box::new(9)).unwrap_err();
        let mut got: Vec<i32> = std::iter::from_fn(|| s.pop().map(|b| *b)).collect();
        got.push(refused);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 9]);
    }

    #[test]
    fn threads_pushing_and_popping_lose_nothing() {
        let s = IdleSlots::new(8);
        for i in 0..8 {
            s.push(Box::new(i)).unwrap();
        }
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(b) = s.pop() {
                            s.push(b).unwrap();
                        }
                    }
                });
            }
        });
        let mut got: Vec<i32> = std::iter::from_fn(|| s.pop().map(|b| *b)).collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    }
}
