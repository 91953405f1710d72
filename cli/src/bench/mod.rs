//! `sessionrepl bench`: the scenarios of `shared/bench/SCENARIOS.md`, with
//! the raw-socket floor and the Tribes peer measured in the same run.
//!
//! Every figure is meant to be read as a ratio taken in one run (the
//! machines are shared and noisy), so this module gives each runner the same
//! pieces:
//!
//! * [`Scenario`]: S1..S7 with their names, default counts and sizes, and
//!   [`parse_scenarios`] for `--scenario S1,S4`;
//! * [`BenchLine`]: one result line, formatted and parsed in exactly the
//!   format scripts read;
//! * [`payload`] and [`fill_payload`]: message bytes cycling through
//!   `session-attribute-` (compressible, like serialized session data);
//! * [`LatencyRecorder`]: per-send latencies recorded without allocating in
//!   the timed loop, reduced to p50/p99 afterwards;
//! * [`floor`]: the raw-socket floor (TCP ping-pong and a batched one-way
//!   stream) measured in this process;
//! * [`tribes`]: the Apache Tribes peer, run through the project's own Java
//!   harness when a JDK and the Tribes jar are present.
//!
//! ```
//! use sessionrepl_cli::bench::{parse_scenarios, BenchLine, Scenario};
//! use std::time::Duration;
//!
//! let picked = parse_scenarios("S1,S4").unwrap();
//! assert_eq!(picked, vec![Scenario::S1, Scenario::S4]);
//! let line = BenchLine::measured(Scenario::S1, "sessionrepl", 1_000_000, 1024,
//!                                Duration::from_millis(250));
//! assert_eq!(
//!     line.to_string(),
//!     "S1 fastasync-1k impl=sessionrepl count=1000000 size=1024 secs=0.250 \
//!      msgs_per_s=4000000 MB_per_s=4096.0 p50_us=0 p99_us=0"
//! );
//! ```

pub mod floor;
mod latency;
mod line;
pub mod plot;
pub mod rounds;
mod scenario;
mod session;
pub mod tribes;

pub use latency::{percentile_of_sorted, LatencyRecorder, Percentiles};
pub use line::{BenchLine, ParseLineError};
pub use scenario::{parse_scenarios, ParseScenarioError, Scenario};

/// The text payload bytes cycle through, as the scenarios prescribe.
pub const PAYLOAD_PATTERN: &[u8] = b"session-attribute-";

/// A payload of `size` bytes cycling through [`PAYLOAD_PATTERN`].
///
/// ```
/// assert_eq!(sessionrepl_cli::bench::payload(20), b"session-attribute-se");
/// ```
pub fn payload(size: usize) -> Vec<u8> {
    let mut buf = vec![0; size];
    fill_payload(&mut buf);
    buf
}

/// How many distinct S5 payloads a sender cycles through: 4 MiB of 1 KiB
/// messages, far more than deflate's 32 KiB window sees at once.
pub const SESSION_PAYLOADS: usize = 4096;

/// S5's payloads, which compress like real session data rather than like one
/// repeated string (SCENARIOS.md): `n` messages of `size` bytes, each
/// [`payload`] with its own session id at the start (`sid=`, 16 hex digits
/// of its index, `;`) and then 64 pseudo-random bytes (xorshift64 from a
/// fixed seed, the same sequence `bench/tribes/TribesHarness.java` makes, so
/// both peers compress the same bytes). Bytes past `size` are left out.
///
/// ```
/// let p = sessionrepl_cli::bench::session_payloads(2, 1024);
/// assert!(p[0].starts_with(b"sid=0000000000000000;"));
/// assert!(p[1].starts_with(b"sid=0000000000000001;"));
/// assert_ne!(p[0][21..85], p[1][21..85]);
/// assert_eq!(p[0][85..], sessionrepl_cli::bench::payload(1024)[85..]);
/// ```
pub fn session_payloads(n: usize, size: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            let mut p = payload(size);
            let mut head = format!("sid={i:016x};").into_bytes();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                head.extend_from_slice(&x.to_le_bytes());
            }
            let k = head.len().min(size);
            p[..k].copy_from_slice(&head[..k]);
            p
        })
        .collect()
}

/// Fills `buf` with bytes cycling through [`PAYLOAD_PATTERN`], starting at
/// the pattern's first byte.
pub fn fill_payload(buf: &mut [u8]) {
    for (dst, src) in buf.iter_mut().zip(PAYLOAD_PATTERN.iter().cycle()) {
        *dst = *src;
    }
}

/// How many untimed messages to send before timing `count` of them: a tenth,
/// at least 1 and at most 5,000 (enough to open connections, fill pools and,
/// for the JVM peer, get the send path compiled).
pub fn warmup_count(count: u64) -> u64 {
    (count / 10).clamp(1, 5_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_cycles_through_the_session_attribute_text() {
        let p = payload(40);
        assert_eq!(&p[..18], PAYLOAD_PATTERN);
        assert_eq!(&p[18..36], PAYLOAD_PATTERN);
        assert_eq!(&p[36..], b"sess");
        assert!(payload(0).is_empty());
    }

    #[test]
    fn warmup_is_a_tenth_within_bounds() {
        assert_eq!(warmup_count(0), 1);
        assert_eq!(warmup_count(2_000), 200);
        assert_eq!(warmup_count(1_000_000), 5_000);
    }
}

mod run;
pub use run::{cli, parse_args, run_sessionrepl, run_sessionrepl_lines, BenchOptions};
