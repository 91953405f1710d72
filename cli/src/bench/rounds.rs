//! `bench --rounds N`: the same rows measured in N interleaved rounds
//! (floor, sessionrepl and peer of each scenario back to back, then the
//! next round), summarised as the median of the per-round ratios.
//!
//! On a shared 2-core machine one run's ratio swings by ±0.1 or more (the
//! floor alone moves 1.6× between back-to-back runs); a ratio taken within
//! each round and then the median over rounds is what a goal can be checked
//! against. Every round's lines are printed as they are; the summary lines
//! start with `#`, so scripts reading result lines skip them.

use super::BenchLine;

/// Extra fields that are measurements or tuning picks, not part of what a
/// row is: rows that differ only in them are the same row.
const MEASURED: &[&str] = &["wire_bytes", "rbuf", "best_of"];

/// What identifies a row across rounds: id, implementation and the
/// descriptive extra fields (`payload=copied`, `io=mio`, `window=1`, ...).
fn key(l: &BenchLine) -> String {
    let mut k = format!("{} impl={}", l.id, l.impl_name);
    for (n, v) in &l.extra {
        if !MEASURED.contains(&n.as_str()) {
            k.push_str(&format!(" {n}={v}"));
        }
    }
    k
}

/// The median of `v` (sorted in place); `None` when empty.
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// One summary figure: the median ratio and the range over rounds.
fn figure(name: &str, mut r: Vec<f64>) -> Option<String> {
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    median(&mut r).map(|m| format!(" {name}={m:.2} [{lo:.2}-{hi:.2}]"))
}

/// Summary lines for `rounds` (each round's lines, in order): for every
/// row that is neither a floor nor a peer, the median message rate and,
/// per round where its scenario has them, its rate against the floor's and
/// the peer's (`vs_floor`, `vs_tribes`) and its p50 against the floor's
/// (`p50_vs_floor`; lower is better), and for an encrypted row its rate
/// and p50 against its clear-text twin of the same round (`vs_clear`,
/// `p50_vs_clear`), each as median [min-max] over rounds.
pub fn summary(rounds: &[Vec<BenchLine>]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for l in rounds.iter().flatten() {
        let k = key(l);
        if l.impl_name != "floor" && !l.impl_name.starts_with("tribes") && !order.contains(&k) {
            order.push(k);
        }
    }
    order
        .iter()
        .map(|k| {
            let (mut rate, mut vs_floor, mut p50_floor, mut vs_tribes) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut vs_clear, mut p50_clear) = (Vec::new(), Vec::new());
            // An encrypted row's clear-text twin: the same key with sec=none.
            let clear_key = k
                .split(' ')
                .map(|f| if f.starts_with("sec=") { "sec=none" } else { f })
                .collect::<Vec<_>>()
                .join(" ");
            for round in rounds {
                let Some(l) = round.iter().find(|l| key(l) == *k) else {
                    continue;
                };
                rate.push(l.msgs_per_s);
                let base = |name: &str| round.iter().find(|b| b.id == l.id && b.impl_name == name);
                if let Some(f) = base("floor") {
                    vs_floor.push(l.rate_ratio(f));
                    if f.p50_us > 0.0 && l.p50_us > 0.0 {
                        p50_floor.push(l.p50_us / f.p50_us);
                    }
                }
                let peer = if l.extra("sec").is_some_and(|s| s != "none") {
                    "tribes-encrypt"
                } else {
                    "tribes"
                };
                if let Some(t) = base(peer) {
                    vs_tribes.push(l.rate_ratio(t));
                }
                if clear_key != *k {
                    if let Some(c) = round.iter().find(|c| key(c) == clear_key) {
                        vs_clear.push(l.rate_ratio(c));
                        if c.p50_us > 0.0 && l.p50_us > 0.0 {
                            p50_clear.push(l.p50_us / c.p50_us);
                        }
                    }
                }
            }
            let n = rate.len();
            let mut s = format!(
                "# {k}: median of {n} rounds msgs_per_s={:.0}",
                median(&mut rate).unwrap_or(0.0)
            );
            for (name, r) in [
                ("vs_floor", vs_floor),
                ("p50_vs_floor", p50_floor),
                (
                    if k.contains("sec=none") {
                        "vs_tribes"
                    } else {
                        "vs_peer"
                    },
                    vs_tribes,
                ),
                ("vs_clear", vs_clear),
                ("p50_vs_clear", p50_clear),
            ] {
                if let Some(f) = figure(name, r) {
                    s.push_str(&f);
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> BenchLine {
        s.parse().unwrap()
    }

    fn round(floor: u32, ours: u32, copied: u32, tribes: u32) -> Vec<BenchLine> {
        vec![
            line(&format!("S1 fastasync-1k impl=floor count=1 size=1 secs=1 msgs_per_s={floor} MB_per_s=1 p50_us=0 p99_us=0 rbuf=262144")),
            line(&format!("S1 fastasync-1k impl=sessionrepl count=1 size=1 secs=1 msgs_per_s={ours} MB_per_s=1 p50_us=0 p99_us=0 wire_bytes=9 io=mio sec=none")),
            line(&format!("S1 fastasync-1k impl=sessionrepl count=1 size=1 secs=1 msgs_per_s={copied} MB_per_s=1 p50_us=0 p99_us=0 wire_bytes=7 payload=copied io=mio sec=none")),
            line(&format!("S1 fastasync-1k impl=tribes count=1 size=1 secs=1 msgs_per_s={tribes} MB_per_s=1 p50_us=0 p99_us=0")),
            line(&format!("S2 sync-ack-1k impl=floor count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us={} p99_us=0", f64::from(floor) / 1000.0)),
            line(&format!("S2 sync-ack-1k impl=sessionrepl count=1 size=1 secs=1 msgs_per_s=1 MB_per_s=1 p50_us={} p99_us=0 io=mio sec=none", f64::from(ours) / 1000.0)),
        ]
    }

    #[test]
    fn ratios_are_taken_within_each_round_then_the_median() {
        // The floor swings 2x between rounds; the ratio does not.
        let rounds = vec![
            round(4000, 2400, 1000, 100),
            round(2000, 1200, 900, 100),
            round(3000, 2100, 1200, 50),
        ];
        let s = summary(&rounds);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            s[0],
            "# S1 impl=sessionrepl io=mio sec=none: median of 3 rounds msgs_per_s=2100 \
             vs_floor=0.60 [0.60-0.70] vs_tribes=24.00 [12.00-42.00]"
        );
        assert!(s[1].starts_with("# S1 impl=sessionrepl payload=copied io=mio sec=none: median of 3 rounds msgs_per_s=1000 vs_floor=0.40 [0.25-0.45]"), "{}", s[1]);
        // S2: p50 against the floor's p50 (2400/4000, 1200/2000, 2100/3000 as µs).
        assert!(s[2].contains("p50_vs_floor=0.60 [0.60-0.70]"), "{}", s[2]);
        assert!(
            !s[2].contains("vs_tribes"),
            "no peer row in S2 here: {}",
            s[2]
        );
    }

    #[test]
    fn an_encrypted_row_is_compared_with_its_clear_text_twin() {
        let r = |clear: u32, enc: u32, p50c: f64, p50e: f64| {
            vec![
                line(&format!("S2 sync-ack-1k impl=sessionrepl count=1 size=1 secs=1 msgs_per_s={clear} MB_per_s=1 p50_us={p50c} p99_us=0 io=mio sec=none")),
                line(&format!("S2 sync-ack-1k impl=sessionrepl count=1 size=1 secs=1 msgs_per_s={enc} MB_per_s=1 p50_us={p50e} p99_us=0 io=mio sec=shared-key")),
            ]
        };
        let s = summary(&[
            r(100, 50, 8.0, 10.0),
            r(200, 160, 10.0, 11.0),
            r(100, 70, 9.0, 9.9),
        ]);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(!s[0].contains("vs_clear"), "{}", s[0]);
        assert!(
            s[1].ends_with("vs_clear=0.70 [0.50-0.80] p50_vs_clear=1.10 [1.10-1.25]"),
            "{}",
            s[1]
        );
    }

    #[test]
    fn a_row_missing_from_a_round_counts_only_where_it_ran() {
        let mut short = round(1000, 500, 400, 10);
        short.retain(|l| l.extra("payload").is_none());
        let s = summary(&[round(1000, 800, 400, 10), short]);
        assert!(s[0].contains("median of 2 rounds"), "{}", s[0]);
        assert!(s[1].contains("median of 1 rounds"), "{}", s[1]);
    }
}
