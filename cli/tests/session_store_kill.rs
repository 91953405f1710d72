//! Session-store nodes as real processes (`sessionrepl store-node`), killed
//! with SIGKILL: with N backups and at most N nodes lost at once, no
//! acknowledged commit is lost.

#[path = "../../tests/store_util/mod.rs"]
mod store_util;

#[path = "../../tests/support/certs.rs"]
mod certs;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;
use store_util::cluster_settings;

struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Proc {
    fn start(settings: &[String]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionrepl"));
        cmd.arg("store-node");
        for s in settings {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut p = Proc {
            child,
            stdin,
            lines,
        };
        let ready = p.reply();
        assert!(ready.starts_with("ready "), "{ready}");
        p
    }

    fn reply(&mut self) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("node answered");
            if !l.starts_with("event ") {
                return l;
            }
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.reply()
    }

    fn sigkill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Starts `n` nodes, has node `i` create and update sessions `p{i}-*`,
/// kills `kill` of them at once, and checks from a survivor that every
/// acknowledged value is there.
fn kill_and_check(n: usize, backups: usize, kill: &[usize]) {
    kill_and_check_with(n, backups, kill, &[]);
}

/// As [`kill_and_check`], every node also configured with `extra`.
fn kill_and_check_with(n: usize, backups: usize, kill: &[usize], extra: &[String]) {
    let mut set = cluster_settings(&[&format!("backupCount={backups}")]);
    set.extend(extra.iter().cloned());
    let mut procs: Vec<Proc> = (0..n).map(|_| Proc::start(&set)).collect();
    for p in procs.iter_mut() {
        let m = p.ask(&format!("waitmembers {} 20000", n - 1));
        assert_eq!(field(&m, "n"), (n - 1) as u64);
    }
    let per = 100;
    for (i, p) in procs.iter_mut().enumerate() {
        for (what, v) in [("create", "1"), ("set", "2"), ("set", "3")] {
            let r = p.ask(&format!("bulk {what} p{i}- 0 {per} v {v} 1024"));
            assert_eq!(field(&r, "acked"), per as u64, "{r}");
        }
    }
    for &k in kill {
        procs[k].sigkill();
    }
    let alive: Vec<usize> = (0..n).filter(|i| !kill.contains(i)).collect();
    for &i in &alive {
        let m = procs[i].ask(&format!("waitmembers {} 20000", alive.len() - 1));
        assert_eq!(field(&m, "n"), (alive.len() - 1) as u64, "{m}");
    }
    let checker = alive[0];
    for i in 0..n {
        let r = procs[checker].ask(&format!("check p{i}- 0 {per} v 3"));
        assert_eq!(field(&r, "ok"), per as u64, "sessions of node {i}: {r}");
    }
    // The survivors take over the dead nodes' sessions and keep committing.
    for &k in kill {
        let r = procs[checker].ask(&format!("bulk set p{k}- 0 {per} v 4 1024"));
        assert_eq!(field(&r, "acked"), per as u64, "{r}");
        let other = *alive.last().unwrap();
        let r = procs[other].ask(&format!("check p{k}- 0 {per} v 4"));
        assert_eq!(field(&r, "ok"), per as u64, "{r}");
    }
}

#[test]
fn sigkill_of_one_node_with_one_backup_loses_no_acknowledged_commit() {
    kill_and_check(3, 1, &[1]);
}

#[test]
fn two_nodes_killed_at_once_with_two_backups_lose_nothing() {
    kill_and_check(4, 2, &[0, 2]);
}

#[test]
fn sigkill_with_shared_key_encryption_loses_no_acknowledged_commit() {
    kill_and_check_with(3, 1, &[1], &certs::security_settings("key"));
}

#[test]
fn sigkill_with_certificate_encryption_loses_no_acknowledged_commit() {
    kill_and_check_with(3, 1, &[1], &certs::security_settings("tls"));
}
