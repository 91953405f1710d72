//! A waitable handle on one message's outcomes at all its destinations.

use super::{Delivery, Outcome};
use crate::error::Error;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Completes when every destination of a message has an outcome.
#[derive(Debug)]
pub struct Ticket {
    state: Mutex<TicketState>,
    cv: Condvar,
}

#[derive(Debug)]
struct TicketState {
    remaining: usize,
    outcomes: Vec<(SocketAddr, Outcome)>,
}

impl Ticket {
    /// A ticket expecting `destinations` outcomes.
    pub fn new(destinations: usize) -> Self {
        Ticket {
            state: Mutex::new(TicketState {
                remaining: destinations,
                outcomes: Vec::with_capacity(destinations),
            }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn complete(&self, to: SocketAddr, o: Outcome) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.outcomes.push((to, o));
        s.remaining = s.remaining.saturating_sub(1);
        if s.remaining == 0 {
            self.cv.notify_all();
        }
    }

    /// True once every destination has an outcome.
    pub fn is_done(&self) -> bool {
        self.state.lock().map(|s| s.remaining == 0).unwrap_or(true)
    }

    /// Waits up to `timeout` for every outcome; returns them.
    ///
    /// # Errors
    /// [`Error::Timeout`] if outcomes are still missing after `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<Vec<(SocketAddr, Outcome)>, Error> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.remaining > 0 {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(s.outcomes.clone())
    }

    /// Waits and folds the outcomes: `Ok` if every destination succeeded,
    /// else the first failure.
    ///
    /// # Errors
    /// The first destination's failure, or [`Error::Timeout`].
    pub fn wait_ok(&self, timeout: Duration) -> Result<Delivery, Error> {
        let all = self.wait(timeout)?;
        let mut d = Delivery::Acked;
        for (to, o) in all {
            match o {
                Ok(Delivery::Sent) => d = Delivery::Sent,
                Ok(Delivery::Acked) => {}
                Err(Error::Unreachable(r)) => return Err(Error::Unreachable(format!("{to}: {r}"))),
                Err(e) => return Err(e),
            }
        }
        Ok(d)
    }
}
