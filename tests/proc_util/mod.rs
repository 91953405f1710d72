//! A `sessionrepl` child process driven through its stdin/stdout lines, for
//! the process-level tests (`session_store_static`, `cli_daemon`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How long any one line may take to come.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running `sessionrepl` process; dropping it kills it (SIGKILL).
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    passed: Vec<String>,
}

impl Proc {
    /// Starts `sessionrepl <args>`, stdout read line by line.
    pub fn start(args: &[String]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessionrepl"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Proc {
            child,
            stdin,
            lines,
            passed: Vec::new(),
        }
    }

    /// `sessionrepl store-node --set s...`, once it printed `ready`.
    pub fn store_node(settings: &[String]) -> Proc {
        let mut args = vec!["store-node".to_string()];
        for s in settings {
            args.push("--set".into());
            args.push(s.clone());
        }
        let mut p = Proc::start(&args);
        let ready = p.line("");
        assert!(ready.starts_with("ready "), "{ready}");
        p
    }

    /// The first line starting with `prefix` not taken yet (lines of
    /// independent events may come in either order, so lines passed over
    /// are kept for a later call; with an empty prefix, `event ` lines are
    /// passed over).
    pub fn line(&mut self, prefix: &str) -> String {
        let wanted =
            |l: &str| l.starts_with(prefix) && !(prefix.is_empty() && l.starts_with("event "));
        if let Some(i) = self.passed.iter().position(|l| wanted(l)) {
            return self.passed.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no '{prefix}' line"));
            if wanted(&l) {
                return l;
            }
            if !l.starts_with("event ") {
                self.passed.push(l);
            }
        }
    }

    /// Sends a store-node command and returns its answer (event lines
    /// skipped).
    pub fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin.as_mut().unwrap(), "{cmd}").unwrap();
        self.line("")
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `key=` in `line`.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}
