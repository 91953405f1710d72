//! The verdict of a run: the checker's, plus what the harness itself saw
//! (answers it could not read, sessions unreadable after healing, nodes
//! that did not restart or converge). A failure panics with the anomalies
//! counted by kind, the nemesis log, and the path of a dump of the history.

use super::workload::History;
use super::Cluster;
use crate::listappend;

/// How many anomalies of each kind (`lost update`, `stale read`, ...) and
/// in how many sessions.
pub fn kinds(anomalies: &[String]) -> String {
    let mut by: std::collections::BTreeMap<String, (usize, std::collections::BTreeSet<String>)> =
        Default::default();
    for a in anomalies {
        let (session, rest) = match a.strip_prefix("session ") {
            Some(r) => r.split_once(": ").unwrap_or(("?", r)),
            None => ("-", a.as_str()),
        };
        let rest = rest.replace("committed on a stale base", "stale base");
        let kind = [
            "lost update",
            "stale read",
            "divergent",
            "phantom",
            "stale base",
            "spurious conflict",
            "twice",
            "is visible",
        ]
        .into_iter()
        .find(|k| rest.contains(k))
        .unwrap_or("other")
        .to_string();
        let e = by.entry(kind).or_default();
        e.0 += 1;
        e.1.insert(session.to_string());
    }
    by.iter()
        .map(|(k, (n, s))| format!("{k} x{n} in {} sessions", s.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// p50 / p99 / max of each kind of operation, in ms.
pub fn latency(events: &[listappend::Event]) -> String {
    use listappend::{AppendResult, OpKind};
    let mut by: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for e in events {
        let kind = match &e.op {
            OpKind::Read { .. } => "read",
            OpKind::Append { result, .. } => match result {
                AppendResult::Ok => "append-ok",
                AppendResult::Conflict => "append-conflict",
                AppendResult::Fail => "append-fail",
                AppendResult::Info => "append-info",
            },
        };
        by.entry(kind)
            .or_default()
            .push(e.complete.saturating_sub(e.invoke));
    }
    by.iter_mut()
        .map(|(k, v)| {
            v.sort_unstable();
            let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] / 1_000_000;
            format!(
                "{k} n={} p50={} p99={} max={} ms",
                v.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks the history of a finished run (the cluster is killed first) and
/// panics, naming `replay`, if anything is wrong; returns the checker's
/// report otherwise.
pub fn judge(
    name: &str,
    replay: &str,
    cluster: &Cluster,
    hist: &History,
    problems: Vec<String>,
    unread: Vec<String>,
) -> listappend::Report {
    let events = hist.events();
    let harness = hist.harness_errors.lock().unwrap().clone();
    cluster.kill_all();
    let t = std::time::Instant::now();
    let verdict = listappend::check(&events);
    eprintln!(
        "jepsen {name}: {} events checked in {} ms",
        events.len(),
        t.elapsed().as_millis()
    );
    eprintln!("jepsen {name}: latency {}", latency(&events));
    let mut failures = Vec::new();
    match &verdict {
        Ok(r) => eprintln!("jepsen {name}: checker: {r}"),
        Err(anomalies) => {
            failures.push(format!(
                "{} anomalies ({}):",
                anomalies.len(),
                kinds(anomalies)
            ));
            failures.extend(anomalies.iter().take(40).cloned());
        }
    }
    failures.extend(harness.iter().map(|h| format!("harness: {h}")));
    failures.extend(
        unread
            .iter()
            .map(|u| format!("unavailable after heal: {u}")),
    );
    failures.extend(problems.iter().map(|p| format!("liveness: {p}")));
    let dump_anyway = std::env::var_os("JEPSEN_DUMP").is_some();
    if failures.is_empty() && !dump_anyway {
        return verdict.unwrap_or_default();
    }
    let tag: String = replay
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect();
    let path = std::env::temp_dir().join(format!("jepsen-{name}-{tag}.txt"));
    let mut dump = cluster.notes().join("\n");
    if let Err(anomalies) = &verdict {
        dump.push_str("\n\nanomalies:\n");
        for a in anomalies.iter().take(20_000) {
            dump.push_str(a);
            dump.push('\n');
        }
    }
    dump.push_str("\n\nappends not acknowledged (elem node answer):\n");
    for (e, node, words) in hist.not_ok.lock().unwrap().iter() {
        dump.push_str(&format!("{e} {node} {words}\n"));
    }
    dump.push_str("\n\nhistory:\n");
    for e in &events {
        dump.push_str(&format!("{e:?}\n"));
    }
    let _ = std::fs::write(&path, dump);
    if failures.is_empty() {
        eprintln!("jepsen {name}: history in {}", path.display());
        return verdict.unwrap_or_default();
    }
    panic!(
        "jepsen {name} {replay}: {}\nnemesis:\n{}\nhistory: {}",
        failures.join("\n"),
        cluster.notes().join("\n"),
        path.display()
    );
}
