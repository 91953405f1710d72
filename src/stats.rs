//! Counters of a channel, readable at any time without stopping it.
//! Hot paths add to them once per batch, not once per message, where they can.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($( $(#[$m:meta])* $name:ident ),* $(,)?) => {
        /// Live counters (atomics), shared by the channel's threads.
        #[derive(Debug, Default)]
        pub struct Stats { $( $(#[$m])* pub $name: AtomicU64, )* }

        /// A point-in-time copy of [`Stats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        #[repr(C)]
        pub struct StatsSnapshot { $( $(#[$m])* pub $name: u64, )* }

        impl Stats {
            /// Copies every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Relaxed), )* }
            }
        }

        impl StatsSnapshot {
            /// Prometheus text exposition format, metric names prefixed
            /// `sessionrepl_`.
            pub fn to_prometheus(&self) -> String {
                let mut s = String::new();
                $(
                    let doc = concat!($( stringify!($m) ),*);
                    let help = doc.trim_start_matches("doc = ").trim_start_matches('r').trim_matches('"').trim();
                    let kind = if stringify!($name).ends_with("_depth") { "gauge" } else { "counter" };
                    let _ = writeln!(s, "# HELP sessionrepl_{} {}", stringify!($name), help);
                    let _ = writeln!(s, "# TYPE sessionrepl_{} {}", stringify!($name), kind);
                    let _ = writeln!(s, "sessionrepl_{} {}", stringify!($name), self.$name);
                )*
                s
            }
        }
    };
}

counters! {
    /// Messages written to sockets (one per destination).
    msgs_sent,
    /// Payload bytes written (after compression).
    bytes_sent,
    /// Messages delivered to the listener.
    msgs_received,
    /// Payload bytes received (before inflation).
    bytes_received,
    /// Acknowledgements received by senders.
    acks_received,
    /// Acknowledgements sent by the receiver.
    acks_sent,
    /// Messages that ended failed (FAIL frame, unreachable, queue full, shutdown).
    failures,
    /// Messages whose ack did not arrive within ackTimeout.
    timeouts,
    /// Sends refused because a queue stayed full.
    queue_full,
    /// Messages waiting in send queues now.
    queue_depth,
    /// Outgoing connections re-established after a loss.
    reconnects,
    /// Inbound connections closed for a protocol violation.
    protocol_errors,
    /// Inbound connections accepted.
    connections_accepted,
    /// Messages resent after a reconnect.
    resends,
    /// Messages compressed before sending.
    compressed,
    /// Listener calls that reported an error.
    listener_errors,
    /// Inbound connections closed by a receiver limit (handshakeTimeout,
    /// maxConnections, ackWriteTimeout, connectionUploadTimeout).
    rx_limit_closes,
    /// Connections refused because the peer did not authenticate (no or
    /// another cluster key, a certificate the cluster CA did not sign, clear
    /// text to a node that requires encryption), both directions.
    secure_refusals,
    /// Secured connections closed for a record that failed authentication
    /// (tampered, replayed, reordered, truncated or from another connection).
    secure_errors,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        if n != 0 {
            c.fetch_add(n, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_counter() {
        let s = Stats::default();
        Stats::add(&s.msgs_sent, 3);
        let t = s.snapshot().to_prometheus();
        assert!(t.contains("sessionrepl_msgs_sent 3\n"), "{t}");
        assert!(t.contains("# TYPE sessionrepl_queue_depth gauge"));
        assert!(t.contains("# HELP sessionrepl_timeouts Messages whose ack"));
    }
}
