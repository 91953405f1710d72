//! The raw-socket floor runs end to end with tiny counts and reports
//! plausible, self-consistent figures.

use sessionrepl_cli::bench::{floor, BenchLine, Scenario};

fn assert_consistent(line: &BenchLine, scenario: Scenario, count: u64, size: u64) {
    assert_eq!(line.id, scenario.id());
    assert_eq!(line.name, scenario.name());
    assert_eq!(line.impl_name, "floor");
    assert_eq!((line.count, line.size), (count, size));
    assert!(line.secs > 0.0, "{line}");
    assert!(line.msgs_per_s > 0.0, "{line}");
    let rate = count as f64 / line.secs;
    assert!((line.msgs_per_s - rate).abs() <= rate * 1e-9, "{line}");
    let mb = rate * size as f64 / 1e6;
    assert!((line.mb_per_s - mb).abs() <= mb * 1e-9, "{line}");
    // What is printed reads back as the same line.
    let printed = line.to_string();
    assert_eq!(BenchLine::parse(&printed).unwrap().to_string(), printed);
}

#[test]
fn ping_pong_floor_measures_round_trips() {
    let line = floor::ping_pong(Scenario::S2, 2_000, 1024).unwrap();
    println!("{line}");
    assert_consistent(&line, Scenario::S2, 2_000, 1024);
    assert_eq!(line.extra("floor"), Some("pingpong_spin"));
    assert!(line.p50_us > 0.0, "{line}");
    assert!(line.p99_us >= line.p50_us, "{line}");
    // Each round trip is a p50-ish latency, so the rate cannot exceed what
    // the median allows by much (the loop is strictly sequential).
    assert!(line.msgs_per_s < 1e6 / line.p50_us * 2.0 + 1.0, "{line}");
}

#[test]
fn ping_pong_floor_with_100k_requests() {
    let line = floor::for_scenario(Scenario::S4, 200, 100 * 1024)
        .unwrap()
        .unwrap();
    println!("{line}");
    assert_consistent(&line, Scenario::S4, 200, 102_400);
    assert!(line.p50_us > 0.0 && line.p99_us >= line.p50_us, "{line}");
}

#[test]
fn stream_floor_measures_one_way_throughput() {
    let line = floor::for_scenario(Scenario::S1, 2_000, 1024)
        .unwrap()
        .unwrap();
    println!("{line}");
    assert_consistent(&line, Scenario::S1, 2_000, 1024);
    assert_eq!((line.p50_us, line.p99_us), (0.0, 0.0));
    assert_eq!(line.extra("batch"), Some("512"));
    assert_eq!(line.extra("floor"), Some("stream_max"));
    assert!(
        matches!(line.extra("rbuf"), Some("262144" | "1048576")),
        "{line}"
    );
}

#[test]
fn stream_floor_handles_a_partial_last_batch() {
    // 1100 = two whole batches of 512 and 76 more; odd sizes too.
    let line = floor::stream(Scenario::S5, 1100, 1000).unwrap();
    assert_consistent(&line, Scenario::S5, 1100, 1000);
    let line = floor::stream(Scenario::S1, 1, 1).unwrap();
    assert_consistent(&line, Scenario::S1, 1, 1);
}
