//! A bounded multi-producer, single-consumer ring whose consumer takes
//! items in batches.
//!
//! Each slot carries a stamp (Dmitry Vyukov's bounded queue): twice the
//! position a producer may write it at, then that + 1 once the value is in,
//! then twice the position one lap later once the consumer took the value
//! (doubled so that "written" never equals "free" for the next lap, even
//! with one slot).
//! Producers claim positions with one CAS on `tail`; the consumer, alone
//! (guarded by `consuming`), reads slots in order and publishes `head` once
//! per batch, so taking an item costs no read-modify-write.

use crossbeam_utils::CachePadded;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The ring; see the module documentation.
pub(crate) struct Ring<T> {
    /// Next position the consumer takes (published once per batch).
    head: CachePadded<AtomicUsize>,
    /// Next position a producer claims.
    tail: CachePadded<AtomicUsize>,
    /// A consumer is taking items (there is one at a time).
    consuming: AtomicBool,
    slots: Box<[Slot<T>]>,
}

// SAFETY: values move between threads through the ring (T: Send); a slot's
// value is accessed only by the one thread whose stamp check admitted it.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; all shared state is atomics or stamp-guarded slots.
unsafe impl<T: Send> Sync for Ring<T> {}

/// True when stamp `s` is behind stamp `p` (wrapping).
#[inline]
fn behind(s: usize, p: usize) -> bool {
    (s.wrapping_sub(p) as isize) < 0
}

/// The stamp of a slot free for position `p`.
#[inline]
fn free(p: usize) -> usize {
    p.wrapping_mul(2)
}

/// The stamp of a slot holding the value of position `p`.
#[inline]
fn written(p: usize) -> usize {
    free(p) | 1
}

impl<T> Ring<T> {
    /// A ring of `capacity` (at least 1) items.
    pub(crate) fn new(capacity: usize) -> Ring<T> {
        let slots = (0..capacity.max(1))
            .map(|i| Slot {
                stamp: AtomicUsize::new(free(i)),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            consuming: AtomicBool::new(false),
            slots,
        }
    }

    /// Capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Items claimed and not yet taken (may include one being written or
    /// a batch being taken).
    pub(crate) fn len(&self) -> usize {
        // `head` first: it never passes the `tail` read after it.
        let head = self.head.load(Ordering::SeqCst);
        let tail = self.tail.load(Ordering::SeqCst);
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// True when nothing is claimed beyond what the consumer took.
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        self.tail.load(Ordering::SeqCst) == head
    }

    /// Adds `v` at the end; gives it back when the ring is full.
    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        let cap = self.capacity();
        let mut t = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[t % cap];
            let s = slot.stamp.load(Ordering::Acquire);
            if s == free(t) {
                match self.tail.compare_exchange_weak(
                    t,
                    t.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS gave this thread position `t`; the
                        // stamp says the slot is free until we publish.
                        unsafe { (*slot.value.get()).write(v) };
                        slot.stamp.store(written(t), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => t = now,
                }
            } else if behind(s, free(t)) {
                // The slot still holds last lap's item: full, unless
                // `tail` moved on meanwhile.
                let now = self.tail.load(Ordering::Relaxed);
                if now == t {
                    return Err(v);
                }
                t = now;
            } else {
                t = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes up to `max` items in order, as the one consumer (a second
    /// caller waits until the first batch is dropped). `head` is published
    /// when the batch is dropped.
    pub(crate) fn drain(&self, max: usize) -> Drain<'_, T> {
        while self
            .consuming
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Drain {
            ring: self,
            head: self.head.load(Ordering::Relaxed),
            left: max,
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.drain(usize::MAX).next().is_some() {}
    }
}

/// A batch being taken off a [`Ring`]; see [`Ring::drain`].
pub(crate) struct Drain<'a, T> {
    ring: &'a Ring<T>,
    head: usize,
    left: usize,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        let cap = self.ring.capacity();
        let slot = &self.ring.slots[self.head % cap];
        if slot.stamp.load(Ordering::Acquire) != written(self.head) {
            return None;
        }
        // SAFETY: the stamp says a producer finished writing position
        // `head`, and only this consumer (the `consuming` guard) reads it.
        let v = unsafe { (*slot.value.get()).assume_init_read() };
        slot.stamp
            .store(free(self.head.wrapping_add(cap)), Ordering::Release);
        self.head = self.head.wrapping_add(1);
        self.left -= 1;
        Some(v)
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        self.ring.head.store(self.head, Ordering::SeqCst);
        self.ring.consuming.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_wrap_around() {
        let r = Ring::new(3);
        for lap in 0..5u32 {
            for i in 0..3 {
                r.push(lap * 10 + i).unwrap();
            }
            assert_eq!(r.push(99), Err(99), "full");
            assert_eq!(r.len(), 3);
            assert_eq!(r.drain(2).collect::<Vec<_>>(), [lap * 10, lap * 10 + 1]);
            r.push(lap * 10 + 3).unwrap();
            let rest: Vec<_> = r.drain(usize::MAX).collect();
            assert_eq!(rest, [lap * 10 + 2, lap * 10 + 3]);
            assert!(r.is_empty() && r.drain(8).next().is_none());
        }
    }

    #[test]
    fn a_ring_of_one_holds_one() {
        let r = Ring::new(1);
        for i in 0..4 {
            r.push(i).unwrap();
            assert_eq!(r.push(9), Err(9), "full");
            assert_eq!(r.drain(5).collect::<Vec<_>>(), [i]);
        }
    }

    #[test]
    fn items_left_in_the_ring_are_dropped_with_it() {
        let a = Arc::new(());
        let r = Ring::new(8);
        for _ in 0..5 {
            r.push(a.clone()).unwrap();
        }
        drop(r.drain(2).collect::<Vec<_>>());
        assert_eq!(Arc::strong_count(&a), 4);
        drop(r);
        assert_eq!(Arc::strong_count(&a), 1);
    }

    #[test]
    fn many_producers_lose_nothing_and_keep_each_ones_order() {
        const P: usize = 4;
        const N: usize = 50_000;
        let r = Arc::new(Ring::new(64));
        let hs: Vec<_> = (0..P)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..N {
                        let mut v = (p, i);
                        while let Err(back) = r.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0usize; P];
        let mut got = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while got < P * N {
            assert!(std::time::Instant::now() < deadline, "stuck at {got}");
            for (p, i) in r.drain(17) {
                assert_eq!(i, next[p], "producer {p} out of order");
                next[p] += 1;
                got += 1;
            }
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(r.is_empty());
    }
}
