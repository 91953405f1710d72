//! The seven benchmark scenarios and `--scenario` parsing.

use std::fmt;
use std::str::FromStr;

/// One scenario of `shared/bench/SCENARIOS.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// `fastasync-1k`: 1 producer, 1,000,000 × 1 KiB, fastasyncqueue, no ack.
    S1,
    /// `sync-ack-1k`: 1 thread, 100,000 × 1 KiB, synchronous, ack after delivery.
    S2,
    /// `pooled-ack-1k-4t`: 4 threads, 100,000 × 1 KiB in all, pooled, ack after delivery.
    S3,
    /// `sync-ack-100k`: 1 thread, 20,000 × 100 KiB, synchronous, ack after delivery.
    S4,
    /// `fastasync-gzip-1k`: as S1 with compression, 300,000 messages.
    S5,
    /// `session-commit`: request commits replicated to one backup. The count
    /// is commits; the size is one attribute (1 KiB, 100 of them changed per
    /// commit; the 100 KiB single-attribute variant is the runner's choice).
    S6,
    /// `state-transfer`: a node joins one holding 100,000 sessions of 1 KiB.
    S7,
}

impl Scenario {
    /// All scenarios, in order.
    pub const ALL: [Scenario; 7] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
        Scenario::S7,
    ];

    /// The id, `S1`..`S7`, first field of a [`BenchLine`](super::BenchLine).
    pub fn id(self) -> &'static str {
        match self {
            Scenario::S1 => "S1",
            Scenario::S2 => "S2",
            Scenario::S3 => "S3",
            Scenario::S4 => "S4",
            Scenario::S5 => "S5",
            Scenario::S6 => "S6",
            Scenario::S7 => "S7",
        }
    }

    /// The name, second field of a [`BenchLine`](super::BenchLine).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::S1 => "fastasync-1k",
            Scenario::S2 => "sync-ack-1k",
            Scenario::S3 => "pooled-ack-1k-4t",
            Scenario::S4 => "sync-ack-100k",
            Scenario::S5 => "fastasync-gzip-1k",
            Scenario::S6 => "session-commit",
            Scenario::S7 => "state-transfer",
        }
    }

    /// Messages (S1..S5), commits (S6) or sessions (S7) of a full run.
    pub fn default_count(self) -> u64 {
        match self {
            Scenario::S1 => 1_000_000,
            Scenario::S2 | Scenario::S3 => 100_000,
            Scenario::S4 => 20_000,
            Scenario::S5 => 300_000,
            Scenario::S6 => 10_000,
            Scenario::S7 => 100_000,
        }
    }

    /// Bytes per message (S1..S5), per attribute (S6) or per session (S7).
    pub fn default_size(self) -> usize {
        match self {
            Scenario::S4 => 100 * 1024,
            _ => 1024,
        }
    }

    /// Sending threads: 4 for S3, 1 otherwise.
    pub fn threads(self) -> usize {
        match self {
            Scenario::S3 => 4,
            _ => 1,
        }
    }

    /// The default count divided by `divisor` (the `--scale` of quick runs;
    /// 0 counts as 1), never below one per thread.
    ///
    /// ```
    /// use sessionrepl_cli::bench::Scenario;
    /// assert_eq!(Scenario::S1.scaled_count(100), 10_000);
    /// assert_eq!(Scenario::S3.scaled_count(u64::MAX), 4);
    /// ```
    pub fn scaled_count(self, divisor: u64) -> u64 {
        (self.default_count() / divisor.max(1)).max(self.threads() as u64)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A `--scenario` value that names no scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseScenarioError {
    /// The offending item.
    pub item: String,
}

impl fmt::Display for ParseScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown scenario {:?}: expected S1..S7, a scenario name or `all`",
            self.item
        )
    }
}

impl std::error::Error for ParseScenarioError {}

impl FromStr for Scenario {
    type Err = ParseScenarioError;

    /// Accepts the id in either case (`S4`, `s4`) or the name (`sync-ack-100k`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.id().eq_ignore_ascii_case(s) || sc.name() == s)
            .ok_or_else(|| ParseScenarioError { item: s.to_owned() })
    }
}

/// Parses a comma-separated `--scenario` list such as `S1,S4` into scenarios
/// in the order given, duplicates dropped; `all` or an empty list means
/// every scenario.
///
/// # Errors
///
/// [`ParseScenarioError`] naming the first item that is no scenario.
///
/// ```
/// use sessionrepl_cli::bench::{parse_scenarios, Scenario};
/// assert_eq!(parse_scenarios("s4, S1,S4").unwrap(), vec![Scenario::S4, Scenario::S1]);
/// assert_eq!(parse_scenarios("all").unwrap().len(), 7);
/// assert!(parse_scenarios("S8").is_err());
/// ```
pub fn parse_scenarios(list: &str) -> Result<Vec<Scenario>, ParseScenarioError> {
    let mut picked = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item.eq_ignore_ascii_case("all") {
            return Ok(Scenario::ALL.to_vec());
        }
        let sc: Scenario = item.parse()?;
        if !picked.contains(&sc) {
            picked.push(sc);
        }
    }
    if picked.is_empty() {
        return Ok(Scenario::ALL.to_vec());
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_table_matches_the_spec() {
        let table: Vec<_> = Scenario::ALL
            .iter()
            .map(|s| {
                (
                    s.id(),
                    s.name(),
                    s.default_count(),
                    s.default_size(),
                    s.threads(),
                )
            })
            .collect();
        assert_eq!(
            table,
            vec![
                ("S1", "fastasync-1k", 1_000_000, 1024, 1),
                ("S2", "sync-ack-1k", 100_000, 1024, 1),
                ("S3", "pooled-ack-1k-4t", 100_000, 1024, 4),
                ("S4", "sync-ack-100k", 20_000, 102_400, 1),
                ("S5", "fastasync-gzip-1k", 300_000, 1024, 1),
                ("S6", "session-commit", 10_000, 1024, 1),
                ("S7", "state-transfer", 100_000, 1024, 1),
            ]
        );
    }

    #[test]
    fn parse_scenarios_accepts_ids_names_and_all() {
        assert_eq!(
            parse_scenarios("S1,S4").unwrap(),
            vec![Scenario::S1, Scenario::S4]
        );
        assert_eq!(
            parse_scenarios(" sync-ack-1k , s7 ").unwrap(),
            vec![Scenario::S2, Scenario::S7]
        );
        assert_eq!(parse_scenarios("S2,S2,s2").unwrap(), vec![Scenario::S2]);
        assert_eq!(parse_scenarios("").unwrap(), Scenario::ALL.to_vec());
        assert_eq!(parse_scenarios("S3,ALL").unwrap(), Scenario::ALL.to_vec());
    }

    #[test]
    fn parse_scenarios_names_the_bad_item() {
        let err = parse_scenarios("S1,S9,S2").unwrap_err();
        assert_eq!(err.item, "S9");
        assert!(err.to_string().contains("S9"));
        assert!(parse_scenarios("S1;S2").is_err());
    }

    #[test]
    fn scaled_count_divides_and_keeps_one_per_thread() {
        assert_eq!(Scenario::S1.scaled_count(1), 1_000_000);
        assert_eq!(Scenario::S1.scaled_count(0), 1_000_000);
        assert_eq!(Scenario::S4.scaled_count(10), 2_000);
        assert_eq!(Scenario::S2.scaled_count(1_000_000), 1);
        assert_eq!(Scenario::S3.scaled_count(1_000_000), 4);
    }
}
