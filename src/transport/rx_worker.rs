//! The receiver's delivery threads (`tcpThreadCount` workers, each
//! delivering its connections' messages in order, one by one or in batches
//! to a [`BatchListener`](crate::transport::BatchListener)) and the batch
//! delivery of messages held on the I/O thread.

use super::{deliver, AckReturn, ConnCore, Job, RxCore, RxShared, WorkerShared};
use crate::stats::Stats;
use crate::transport::{BatchListener, Message, MessageListener, Shared, MAX_DELIVERY_BATCH};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl RxCore {
    /// Delivers the messages held for the batch listener and sends their
    /// acks or FAILs.
    pub(super) fn flush_inline(&mut self, c: &mut ConnCore) {
        let Some(bl) = self.shared.batch.get() else {
            return;
        };
        if self.inline.is_empty() {
            return;
        }
        {
            let msgs: Vec<&Message> = self.inline.iter().map(|(m, _)| m).collect();
            deliver_batch(bl, &msgs, &mut self.results, &self.shared);
        }
        for ((m, ack), r) in self.inline.drain(..).zip(self.results.drain(..)) {
            if ack {
                match r {
                    Ok(()) => c.proto.ack(m.id),
                    Err(reason) => c.proto.fail(m.id, &reason),
                }
            }
        }
    }
}

pub(super) fn worker_loop(
    w: Arc<WorkerShared>,
    l: MessageListener,
    rx: Arc<RxShared>,
    shared: Arc<Shared>,
) {
    let spin = shared.cfg.idle.spin;
    let mut idle_since: Option<Instant> = None;
    let mut batch: Vec<Job> = Vec::new();
    let mut results: Vec<Result<(), String>> = Vec::new();
    loop {
        if let Some(bl) = shared.batch.get() {
            while batch.len() < MAX_DELIVERY_BATCH {
                match w.q.pop() {
                    Some(job) => batch.push(job),
                    None => break,
                }
            }
            if !batch.is_empty() {
                idle_since = None;
                let msgs: Vec<&Message> = batch.iter().map(|j| &j.msg).collect();
                deliver_batch(bl, &msgs, &mut results, &shared);
                drop(msgs);
                for (job, r) in batch.drain(..).zip(results.drain(..)) {
                    if job.ack {
                        return_ack(&rx, &job, r);
                    }
                }
                continue;
            }
        } else if let Some(job) = w.q.pop() {
            idle_since = None;
            let r = deliver(&l, &job.msg, &shared);
            if job.ack {
                return_ack(&rx, &job, r);
            }
            continue;
        }
        if w.stop.load(Ordering::SeqCst) {
            return;
        }
        match idle_since {
            None => idle_since = Some(Instant::now()),
            Some(t) if t.elapsed() >= spin => {
                w.sleeping.store(true, Ordering::SeqCst);
                if w.q.is_empty() && !w.stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                w.sleeping.store(false, Ordering::SeqCst);
            }
            _ => std::hint::spin_loop(),
        }
    }
}

/// Calls the batch listener; afterwards `results` holds exactly one result
/// per message (a panic or a missing result is a failure).
fn deliver_batch(
    bl: &BatchListener,
    msgs: &[&Message],
    results: &mut Vec<Result<(), String>>,
    shared: &Shared,
) {
    results.clear();
    if catch_unwind(AssertUnwindSafe(|| bl(msgs, results))).is_err() {
        results.clear();
        results.resize(msgs.len(), Err("listener panicked".to_string()));
    }
    results.truncate(msgs.len());
    results.resize(msgs.len(), Err("listener gave no result".to_string()));
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        Stats::add(&shared.stats.listener_errors, failed as u64);
    }
}

/// Hands a delivery's ack (or FAIL) back to the I/O thread.
fn return_ack(rx: &RxShared, job: &Job, r: Result<(), String>) {
    let mut ret = AckReturn {
        token: job.token,
        id: job.msg.id,
        err: r.err(),
    };
    // The return queue holds every worker's full queue, so this only spins
    // if the I/O thread is far behind.
    while let Err(back) = rx.acks.push(ret) {
        ret = back;
        std::thread::yield_now();
    }
    if rx.sleeping.swap(false, Ordering::SeqCst) {
        rx.waker.wake();
    }
}
