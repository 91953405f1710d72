//! One `sessionrepl store-node` process, many concurrent callers: commands go
//! out tagged (`@<tag> <command>`), answers come back tagged in any order.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The process is gone (killed, crashed or quit) or its stdin is closed.
    Gone,
    /// No answer within the caller's deadline (the node may be paused).
    Timeout,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<String>>>>;

/// A running node. Killed when dropped.
pub struct NodeProc {
    /// `n<slot>.<incarnation>`, for logs.
    pub name: String,
    /// The address the node's receiver listens on (its member identity).
    pub addr: String,
    pid: i32,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pending: Pending,
    gone: Arc<AtomicBool>,
    next: AtomicU64,
}

impl NodeProc {
    /// Starts `prefix... sessionrepl store-node --set <s>...` (the prefix is
    /// empty, or `ip netns exec <ns>`, which execs in place so the pid is the
    /// node's) and waits up to `ready_wait` for its `ready` line.
    ///
    /// # Errors
    /// The node's `error` line, or a timeout / early exit.
    pub fn start(
        name: String,
        prefix: &[String],
        settings: &[String],
        ready_wait: Duration,
    ) -> Result<NodeProc, String> {
        let bin = env!("CARGO_BIN_EXE_sessionrepl");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("store-node");
        for s in settings {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{name}: spawn: {e}"))?;
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout piped");
        let pending: Pending = Arc::default();
        let gone = Arc::new(AtomicBool::new(false));
        let (untagged_tx, untagged) = mpsc::channel();
        {
            let (pending, gone) = (pending.clone(), gone.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix('@') {
                        let (tag, answer) = rest.split_once(' ').unwrap_or((rest, ""));
                        let Ok(tag) = tag.parse::<u64>() else {
                            continue;
                        };
                        if let Some(tx) = pending.lock().unwrap().remove(&tag) {
                            let _ = tx.send(answer.to_string());
                        }
                    } else if !line.starts_with("event ") {
                        let _ = untagged_tx.send(line);
                    }
                }
                gone.store(true, Ordering::SeqCst);
                pending.lock().unwrap().clear(); // wakes every caller: Gone
            });
        }
        let mut node = NodeProc {
            name,
            addr: String::new(),
            pid,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pending,
            gone,
            next: AtomicU64::new(1),
        };
        let deadline = Instant::now() + ready_wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match untagged.recv_timeout(left) {
                Ok(l) if l.starts_with("ready ") => {
                    node.addr = l
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .unwrap_or_default()
                        .to_string();
                    return Ok(node);
                }
                Ok(l) if l.starts_with("error ") => return Err(format!("{}: {l}", node.name)),
                Ok(_) => {}
                Err(e) => return Err(format!("{}: no ready line ({e:?})", node.name)),
            }
        }
    }

    /// Sends `cmd` tagged and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`CallError::Gone`] if the process ended first, [`CallError::Timeout`].
    pub fn call(&self, cmd: &str, timeout: Duration) -> Result<String, CallError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(CallError::Gone);
        }
        let tag = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().unwrap().insert(tag, tx);
        if self.gone.load(Ordering::SeqCst) {
            self.pending.lock().unwrap().remove(&tag);
            return Err(CallError::Gone);
        }
        {
            let mut g = self.stdin.lock().unwrap();
            let ok = match g.as_mut() {
                Some(s) => writeln!(s, "@{tag} {cmd}").and_then(|()| s.flush()).is_ok(),
                None => false,
            };
            if !ok {
                self.pending.lock().unwrap().remove(&tag);
                return Err(CallError::Gone);
            }
        }
        match rx.recv_timeout(timeout) {
            Ok(a) => Ok(a),
            Err(RecvTimeoutError::Timeout) => {
                self.pending.lock().unwrap().remove(&tag);
                Err(CallError::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(CallError::Gone),
        }
    }

    /// True once the process's stdout closed (it died or quit).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Sends signal `sig` (`STOP`, `CONT`) with kill(1): no `unsafe` in
    /// tests. The pid is our unreaped child's, so it names no other process.
    fn signal(&self, sig: &str) {
        if !matches!(self.child.lock().unwrap().try_wait(), Ok(None)) {
            return; // reaped: the pid may name another process by now
        }
        let _ = Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .status();
    }

    /// SIGKILL, then reap.
    pub fn sigkill(&self) {
        let mut c = self.child.lock().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGSTOP: the node stops processing (a long GC pause).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Closes stdin (the node closes its store and exits) and waits for the
    /// exit; SIGKILL after `timeout`.
    pub fn quit(&self, timeout: Duration) -> bool {
        self.stdin.lock().unwrap().take();
        let deadline = Instant::now() + timeout;
        let mut c = self.child.lock().unwrap();
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let c = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill(); // SIGKILL ends a stopped process too
        let _ = c.wait();
    }
}
