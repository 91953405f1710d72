//! One result line: `S1 fastasync-1k impl=... count=... size=... secs=...
//! msgs_per_s=... MB_per_s=... p50_us=... p99_us=... [key=value ...]`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Percentiles, Scenario};

/// One scenario result, the unit scripts read from `sessionrepl bench`.
///
/// Formatting ([`Display`](fmt::Display)) gives the line of
/// `shared/bench/SCENARIOS.md`: `secs` with 3 decimals, `msgs_per_s` as an
/// integer, `MB_per_s` (10^6 bytes) with 1 decimal, and the latencies in µs
/// with 1 decimal, or `0` where the scenario does not measure them. Extra
/// fields (such as `threads=4`) follow in the order they were added.
/// [`BenchLine::parse`] reads such a line back, from this crate or from the
/// Java harness.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchLine {
    /// Scenario id, `S1`..`S7`.
    pub id: String,
    /// Scenario name, `fastasync-1k`...
    pub name: String,
    /// What ran: `sessionrepl`, `floor` or `tribes` (the `impl=` field).
    pub impl_name: String,
    /// Messages, commits (S6) or sessions (S7) timed.
    pub count: u64,
    /// Bytes per message.
    pub size: u64,
    /// Seconds from the first send until the last delivery (S7: until the
    /// joiner is ready).
    pub secs: f64,
    /// Messages (S6: commits) per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Median latency in µs, 0 when not measured.
    pub p50_us: f64,
    /// 99th-percentile latency in µs, 0 when not measured.
    pub p99_us: f64,
    /// Further `key=value` fields, in order.
    pub extra: Vec<(String, String)>,
}

impl BenchLine {
    /// A line for `count` messages of `size` bytes that took `elapsed`, with
    /// rates derived from them and no latency figures.
    pub fn measured(
        scenario: Scenario,
        impl_name: &str,
        count: u64,
        size: u64,
        elapsed: Duration,
    ) -> BenchLine {
        let secs = elapsed.as_secs_f64();
        let (msgs_per_s, mb_per_s) = if secs > 0.0 {
            (count as f64 / secs, count as f64 * size as f64 / secs / 1e6)
        } else {
            (0.0, 0.0)
        };
        BenchLine {
            id: scenario.id().to_owned(),
            name: scenario.name().to_owned(),
            impl_name: impl_name.to_owned(),
            count,
            size,
            secs,
            msgs_per_s,
            mb_per_s,
            p50_us: 0.0,
            p99_us: 0.0,
            extra: Vec::new(),
        }
    }

    /// Sets `p50_us` and `p99_us` from `p`.
    pub fn with_latency(mut self, p: Percentiles) -> BenchLine {
        self.p50_us = p.p50_us;
        self.p99_us = p.p99_us;
        self
    }

    /// Appends an extra `key=value` field (replacing one of the same key).
    ///
    /// # Panics
    ///
    /// If the key or the value is empty or holds whitespace or `=`, or the
    /// key is one of the standard fields: the line could not be read back.
    pub fn with_extra(mut self, key: &str, value: impl fmt::Display) -> BenchLine {
        let value = value.to_string();
        assert!(
            is_token(key) && is_token(&value),
            "bad extra field {key}={value}"
        );
        assert!(!STANDARD_KEYS.contains(&key), "{key} is a standard field");
        match self.extra.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.extra.push((key.to_owned(), value)),
        }
        self
    }

    /// The value of extra field `key`, if present.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How many times this line's message rate is `base`'s (0 when `base`
    /// has none): the ratio the scenarios are judged by.
    pub fn rate_ratio(&self, base: &BenchLine) -> f64 {
        if base.msgs_per_s > 0.0 {
            self.msgs_per_s / base.msgs_per_s
        } else {
            0.0
        }
    }

    /// Parses one line in the format [`Display`](fmt::Display) writes.
    /// Numbers may carry any number of decimals; unknown keys land in
    /// [`extra`](BenchLine::extra).
    ///
    /// # Errors
    ///
    /// [`ParseLineError`] when the id or name is missing, a field is not
    /// `key=value`, a number does not parse, or a standard field is missing
    /// or repeated.
    pub fn parse(line: &str) -> Result<BenchLine, ParseLineError> {
        let err = |reason: String| ParseLineError {
            line: line.to_owned(),
            reason,
        };
        let mut tokens = line.split_ascii_whitespace();
        let id = tokens.next().ok_or_else(|| err("empty line".into()))?;
        let name = tokens
            .next()
            .ok_or_else(|| err("no scenario name".into()))?;
        if id.contains('=') || name.contains('=') {
            return Err(err(
                "id and name must come before the key=value fields".into()
            ));
        }
        let mut seen = [None::<&str>; STANDARD_KEYS.len()];
        let mut extra: Vec<(String, String)> = Vec::new();
        for token in tokens {
            let (key, value) = token
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| err(format!("{token:?} is not key=value")))?;
            let slot = match STANDARD_KEYS.iter().position(|k| *k == key) {
                Some(i) => &mut seen[i],
                None if extra.iter().any(|(k, _)| k == key) => {
                    return Err(err(format!("{key} repeated")))
                }
                None => {
                    extra.push((key.to_owned(), value.to_owned()));
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(err(format!("{key} repeated")));
            }
        }
        let field = |i: usize| seen[i].ok_or_else(|| err(format!("{} missing", STANDARD_KEYS[i])));
        let number = |i: usize| -> Result<f64, ParseLineError> {
            let v = field(i)?;
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| err(format!("{}={v} is not a number", STANDARD_KEYS[i])))
        };
        let integer = |i: usize| -> Result<u64, ParseLineError> {
            let v = field(i)?;
            v.parse::<u64>()
                .map_err(|_| err(format!("{}={v} is not an integer", STANDARD_KEYS[i])))
        };
        Ok(BenchLine {
            id: id.to_owned(),
            name: name.to_owned(),
            impl_name: field(0)?.to_owned(),
            count: integer(1)?,
            size: integer(2)?,
            secs: number(3)?,
            msgs_per_s: number(4)?,
            mb_per_s: number(5)?,
            p50_us: number(6)?,
            p99_us: number(7)?,
            extra,
        })
    }
}

/// The fields every line has, in their order after the id and the name.
const STANDARD_KEYS: [&str; 8] = [
    "impl",
    "count",
    "size",
    "secs",
    "msgs_per_s",
    "MB_per_s",
    "p50_us",
    "p99_us",
];

fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c == '=' || c.is_whitespace())
}

/// Latency as written: `0` when not measured, else µs with one decimal
/// (the S2 goal is a ratio of a few µs, so whole µs would be too coarse).
struct Latency(f64);

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0.0 {
            f.write_str("0")
        } else {
            write!(f, "{:.1}", self.0)
        }
    }
}

impl fmt::Display for BenchLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} impl={} count={} size={} secs={:.3} msgs_per_s={:.0} MB_per_s={:.1} p50_us={} p99_us={}",
            self.id,
            self.name,
            self.impl_name,
            self.count,
            self.size,
            self.secs,
            self.msgs_per_s,
            self.mb_per_s,
            Latency(self.p50_us),
            Latency(self.p99_us),
        )?;
        for (k, v) in &self.extra {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for BenchLine {
    type Err = ParseLineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BenchLine::parse(s)
    }
}

/// A line that is not in the bench line format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLineError {
    /// The line as given.
    pub line: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ParseLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a bench line ({}): {:?}", self.reason, self.line)
    }
}

impl std::error::Error for ParseLineError {}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_LINE: &str = "S1 fastasync-1k impl=sessionrepl count=1000000 size=1024 secs=0.250 msgs_per_s=4000000 MB_per_s=4096.0 p50_us=0 p99_us=0";

    #[test]
    fn measured_line_formats_exactly_as_the_spec_example() {
        let line = BenchLine::measured(
            Scenario::S1,
            "sessionrepl",
            1_000_000,
            1024,
            Duration::from_millis(250),
        );
        assert_eq!(line.to_string(), SPEC_LINE);
    }

    #[test]
    fn latency_and_extra_fields_follow_the_standard_ones() {
        let line =
            BenchLine::measured(Scenario::S3, "floor", 100_000, 1024, Duration::from_secs(2))
                .with_latency(Percentiles {
                    p50_us: 4.26,
                    p99_us: 29.04,
                    max_us: 100.0,
                    samples: 100_000,
                })
                .with_extra("threads", 4)
                .with_extra("io", "mio")
                .with_extra("threads", 3);
        assert_eq!(
            line.to_string(),
            "S3 pooled-ack-1k-4t impl=floor count=100000 size=1024 secs=2.000 msgs_per_s=50000 \
             MB_per_s=51.2 p50_us=4.3 p99_us=29.0 threads=3 io=mio"
        );
        assert_eq!(line.extra("io"), Some("mio"));
        assert_eq!(line.extra("batch"), None);
    }

    #[test]
    fn parse_reads_back_what_display_writes() {
        let line: BenchLine = SPEC_LINE.parse().unwrap();
        assert_eq!(line.id, "S1");
        assert_eq!(line.name, "fastasync-1k");
        assert_eq!(line.impl_name, "sessionrepl");
        assert_eq!((line.count, line.size), (1_000_000, 1024));
        assert_eq!(line.secs, 0.25);
        assert_eq!(line.msgs_per_s, 4_000_000.0);
        assert_eq!(line.mb_per_s, 4096.0);
        assert_eq!((line.p50_us, line.p99_us), (0.0, 0.0));
        assert_eq!(line.to_string(), SPEC_LINE);

        let java = "S2 sync-ack-1k impl=tribes count=5000 size=1024 secs=0.343 msgs_per_s=14586 \
                    MB_per_s=14.9 p50_us=36.4 p99_us=355.4 threads=1";
        let parsed = BenchLine::parse(java).unwrap();
        assert_eq!(parsed.p50_us, 36.4);
        assert_eq!(parsed.extra("threads"), Some("1"));
        assert_eq!(
            parsed.to_string(),
            java.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn parse_rejects_malformed_lines() {
        let bad = [
            "",
            "S1",
            "S1 impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0",
            "S1 n impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0",
            "S1 n impl=floor count=x size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0",
            "S1 n impl=floor count=1 size=1 secs=NaN msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0",
            "S1 n impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0 count=2",
            "S1 n impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0 junk",
            "S1 n impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us=0 p99_us=0 a=1 a=2",
        ];
        for b in bad {
            let e = BenchLine::parse(b).unwrap_err();
            assert_eq!(e.line, b);
            assert!(!e.reason.is_empty());
        }
        let e = BenchLine::parse(bad[3]).unwrap_err();
        assert_eq!(e.reason, "p99_us missing");
    }

    #[test]
    fn rate_ratio_compares_message_rates() {
        let fast = BenchLine::measured(
            Scenario::S1,
            "sessionrepl",
            100,
            1,
            Duration::from_millis(10),
        );
        let slow = BenchLine::measured(Scenario::S1, "tribes", 100, 1, Duration::from_millis(200));
        assert!((fast.rate_ratio(&slow) - 20.0).abs() < 1e-9);
        let none = BenchLine::measured(Scenario::S1, "tribes", 0, 1, Duration::ZERO);
        assert_eq!(fast.rate_ratio(&none), 0.0);
    }

    #[test]
    #[should_panic(expected = "bad extra field")]
    fn extra_with_a_space_is_refused() {
        let _ = BenchLine::measured(Scenario::S1, "floor", 1, 1, Duration::from_secs(1))
            .with_extra("note", "two words");
    }
}
