//! The Tribes peer runs through the project's own harness with tiny counts.
//! Skipped, with the reason printed, where no JDK or Tribes jar is present.

use std::time::Duration;

use sessionrepl_cli::bench::tribes::{self, TribesHarness};
use sessionrepl_cli::bench::Scenario;

fn harness() -> Option<TribesHarness> {
    match TribesHarness::discover() {
        Ok(h) => Some(h),
        Err(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn tribes_async_and_gzip_deliver_every_message() {
    let Some(h) = harness() else { return };
    for scenario in [Scenario::S1, Scenario::S5] {
        let line = h.run(scenario, 3_000, 1024, TIMEOUT).unwrap().unwrap();
        println!("{line}");
        assert_eq!(
            (line.id.as_str(), line.name.as_str()),
            (scenario.id(), scenario.name())
        );
        assert_eq!(line.impl_name, "tribes");
        assert_eq!((line.count, line.size), (3_000, 1024));
        assert!(
            line.secs > 0.0 && line.msgs_per_s > 0.0 && line.mb_per_s > 0.0,
            "{line}"
        );
        assert_eq!((line.p50_us, line.p99_us), (0.0, 0.0));
        assert_eq!(line.extra("threads"), Some("1"));
    }
}

#[test]
fn tribes_pooled_ack_reports_latencies_per_send() {
    let Some(h) = harness() else { return };
    let line = h.run(Scenario::S3, 1_000, 1024, TIMEOUT).unwrap().unwrap();
    println!("{line}");
    assert_eq!(line.id, "S3");
    assert_eq!(line.impl_name, "tribes");
    assert_eq!(line.count, 1_000);
    assert_eq!(line.extra("threads"), Some("4"));
    assert!(line.msgs_per_s > 0.0, "{line}");
    assert!(line.p50_us > 0.0 && line.p99_us >= line.p50_us, "{line}");
}

#[test]
fn tribes_has_no_session_manager_scenarios() {
    // S6 and S7 need Tomcat's session managers: no line, no JVM started.
    let Some(h) = harness() else { return };
    assert!(h.run(Scenario::S6, 10, 1024, TIMEOUT).unwrap().is_none());
    assert!(tribes::run_scenario(Scenario::S7, 10, 1024, TIMEOUT)
        .unwrap()
        .is_none());
}

#[test]
fn tribes_run_is_killed_at_the_timeout() {
    let Some(h) = harness() else { return };
    // Far more synchronous sends than fit in two seconds.
    let err = h
        .run(Scenario::S2, 50_000_000, 1024, Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn harness_is_compiled_once_per_source_version() {
    let Some(h) = harness() else { return };
    let root =
        std::env::temp_dir().join(format!("sessionrepl-tribes-cache-{}", std::process::id()));
    let h = h.with_cache_root(&root);
    let dir = h.prepare().unwrap();
    let class = dir.join("TribesHarness.class");
    let compiled_at = std::fs::metadata(&class).unwrap().modified().unwrap();
    assert_eq!(h.prepare().unwrap(), dir);
    assert_eq!(
        std::fs::metadata(&class).unwrap().modified().unwrap(),
        compiled_at
    );
    let source = std::fs::read_to_string(dir.join("TribesHarness.java")).unwrap();
    assert_eq!(source, tribes::HARNESS_SOURCE);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("build."))
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}
