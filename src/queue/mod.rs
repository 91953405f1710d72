//! Bounded lock-free queues for the hot path.
//!
//! [`SendQueue`] is the fastasyncqueue: many producers push without taking
//! a lock (a CAS on the ring); one I/O thread pops in batches. Producers make
//! a wake-up system call only when the consumer has announced it is going to
//! sleep. A full queue is the caller's error after `queueAddWaitTimeout`,
//! never silent growth; a producer waiting for room sleeps until the
//! consumer frees some ([`SendQueue::popped`]), it does not poll.
//!
//! [`SendQueue`]: crate::queue::SendQueue
//! [`SendQueue::popped`]: crate::queue::SendQueue::popped

mod intake;
pub use intake::Intake;

use crate::error::Error;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::Backoff;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Something that wakes the consumer (a mio `Waker`, an unpark).
pub trait Wake: Send + Sync {
    /// Wakes the consumer; may make a system call.
    fn wake(&self);
}

/// A bounded multi-producer queue with sleep/wake hand-shaking.
pub struct SendQueue<T> {
    q: ArrayQueue<T>,
    sleeping: AtomicBool,
    waker: Box<dyn Wake>,
    /// Producers waiting for room.
    waiting: AtomicUsize,
    room_lock: Mutex<()>,
    room: Condvar,
}

impl<T> SendQueue<T> {
    /// A queue of `capacity` items whose consumer is woken with `waker`.
    pub fn new(capacity: usize, waker: Box<dyn Wake>) -> Self {
        SendQueue {
            q: ArrayQueue::new(capacity.max(1)),
            sleeping: AtomicBool::new(false),
            waker,
            waiting: AtomicUsize::new(0),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Pushes, waiting up to `wait` for room.
    ///
    /// # Errors
    /// [`Error::QueueFull`] with the item given back when the queue stayed
    /// full for `wait`.
    pub fn push(&self, item: T, wait: Duration) -> std::result::Result<(), (Error, T)> {
        let mut item = match self.q.push(item) {
            Ok(()) => {
                self.notify();
                return Ok(());
            }
            Err(i) => i,
        };
        if wait.is_zero() {
            return Err((Error::QueueFull, item));
        }
        self.wake_now();
        let deadline = Instant::now() + wait;
        let backoff = Backoff::new();
        // Room usually comes within microseconds: spin briefly, then sleep
        // until the consumer signals room (`popped`).
        while !backoff.is_completed() {
            backoff.snooze();
            item = match self.q.push(item) {
                Ok(()) => {
                    self.notify();
                    return Ok(());
                }
                Err(i) => i,
            };
        }
        let mut g = self.room_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let r = loop {
            item = match self.q.push(item) {
                Ok(()) => break Ok(()),
                Err(i) => i,
            };
            let now = Instant::now();
            if now >= deadline {
                break Err(item);
            }
            self.wake_now();
            g = self
                .room
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        match r {
            Ok(()) => {
                self.notify();
                Ok(())
            }
            Err(item) => Err((Error::QueueFull, item)),
        }
    }

    /// Consumer: items were popped; wakes producers waiting for room.
    /// Cheap when nobody waits (a fence and a load).
    #[inline]
    pub fn popped(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _g = self.room_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_all();
        }
    }

    #[inline]
    fn notify(&self) {
        // SeqCst pairs with `prepare_sleep`: either the consumer sees our
        // item when it re-checks, or we see its flag and wake it.
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake_now();
        }
    }

    fn wake_now(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Wakes the consumer whatever it is doing (a control request).
    pub fn wake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Pops one item.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.q.pop()
    }

    /// Consumer: announce sleep. Returns false (and cancels) if items
    /// arrived meanwhile, in which case the consumer must not sleep.
    pub fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if !self.q.is_empty() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Consumer: woke up (for whatever reason). Writes the flag only when
    /// it is set: producers read it on every push, and a store on every
    /// turn of a busy consumer would take the line from them each time.
    #[inline]
    pub fn awake(&self) {
        if self.sleeping.load(Ordering::Relaxed) {
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    struct CountWake(Arc<AtomicUsize>);
    impl Wake for CountWake {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn full_queue_is_an_error_after_the_wait() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let q = SendQueue::new(2, Box::new(CountWake(wakes.clone())));
        q.push(1, Duration::ZERO).unwrap();
        q.push(2, Duration::ZERO).unwrap();
        let t0 = Instant::now();
        let (e, item) = q.push(3, Duration::from_millis(20)).unwrap_err();
        assert!(matches!(e, Error::QueueFull));
        assert_eq!(item, 3);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert!(matches!(
            q.push(4, Duration::ZERO),
            Err((Error::QueueFull, 4))
        ));
        assert_eq!(q.pop(), Some(1));
        q.push(5, Duration::ZERO).unwrap();
    }

    #[test]
    fn producers_wake_only_a_sleeping_consumer() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let q = SendQueue::new(16, Box::new(CountWake(wakes.clone())));
        q.push(1, Duration::ZERO).unwrap();
        q.push(2, Duration::ZERO).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        assert!(!q.prepare_sleep(), "items pending: must not sleep");
        while q.pop().is_some() {}
        assert!(q.prepare_sleep());
        q.push(3, Duration::ZERO).unwrap();
        q.push(4, Duration::ZERO).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_waiting_producer_is_woken_by_room_not_by_its_timeout() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(SendQueue::new(1, Box::new(CountWake(wakes.clone()))));
        q.push(1, Duration::ZERO).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            q2.push(2, Duration::from_secs(60)).unwrap();
            t0.elapsed()
        });
        while q.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(q.pop(), Some(1));
        q.popped();
        let waited = t.join().unwrap();
        assert!(waited < Duration::from_secs(30), "woke only at {waited:?}");
        assert_eq!(q.pop(), Some(2));
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "the consumer never slept");
    }
}
