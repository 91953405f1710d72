//! `sessionrepl demo`: a session-store cluster on 127.0.0.1, one child
//! process per node (`sessionrepl store-node`), told as it happens: sessions
//! created and updated, a fourth node joining and receiving state, a node
//! killed with SIGKILL, a node draining before it stops. The last line
//! counts acknowledged commits that could not be found afterwards (`lost=`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const REPLY: Duration = Duration::from_secs(60);
const PER_NODE: usize = 100;
const SIZE: usize = 1024;

/// One node: a child process and its line protocol.
struct Node {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    addr: String,
}

impl Node {
    fn start(name: &str, settings: &[String]) -> Result<Node, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("store-node");
        for s in settings {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("SESSIONREPL_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut n = Node {
            name: name.into(),
            child,
            stdin,
            lines: rx,
            addr: String::new(),
        };
        let ready = n.reply()?;
        n.addr = field(&ready, "addr")
            .ok_or_else(|| format!("{name}: {ready}"))?
            .to_string();
        STARTED.with(|s| s.borrow_mut().push(ready));
        Ok(n)
    }

    fn reply(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + REPLY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("event ") => continue,
                Ok(l) if l.starts_with("err") || l.starts_with("error") => {
                    return Err(format!("{}: {l}", self.name))
                }
                Ok(l) => return Ok(l),
                Err(RecvTimeoutError::Timeout) => return Err(format!("{}: no answer", self.name)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited", self.name))
                }
            }
        }
    }

    fn send(&mut self, cmd: &str) -> Result<(), String> {
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("{}: {e}", self.name))
    }

    fn ask(&mut self, cmd: &str) -> Result<String, String> {
        self.send(cmd)?;
        self.reply()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node still running when the demo ends (or fails) is stopped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

thread_local! {
    static STARTED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Settings shared by every node: multicast on 127.0.0.1 only, TTL 1, a
/// group, port and domain of this run's own.
fn settings() -> Vec<String> {
    let pid = std::process::id();
    vec![
        "membershipType=multicast".into(),
        format!("mcastAddr=239.255.{}.{}", (pid >> 8) & 0xff, pid & 0xff),
        format!("mcastPort={}", 40_000 + pid % 20_000),
        "mcastBindAddress=127.0.0.1".into(),
        "mcastTTL=1".into(),
        "mcastFrequency=100".into(),
        "mcastDropTime=1000".into(),
        format!("domain=sessionrepl-demo-{pid}"),
        "tcpListenAddress=127.0.0.1".into(),
        "replicationMode=fastasyncqueue".into(),
        "sessionMode=backup".into(),
        "backupCount=1".into(),
    ]
}

struct Tally {
    commits: u64,
    lost: u64,
}

impl Tally {
    fn bulk(
        &mut self,
        n: &mut Node,
        what: &str,
        prefix: &str,
        value: &str,
    ) -> Result<String, String> {
        let r = n.ask(&format!(
            "bulk {what} {prefix} 0 {PER_NODE} v {value} {SIZE}"
        ))?;
        self.commits += num(&r, "acked");
        if num(&r, "failed") > 0 {
            return Err(format!("{}: {r}", n.name));
        }
        Ok(r)
    }

    fn check(&mut self, n: &mut Node, prefix: &str, value: &str) -> Result<u64, String> {
        let r = n.ask(&format!("check {prefix} 0 {PER_NODE} v {value}"))?;
        let lost = num(&r, "missing") + num(&r, "wrong");
        self.lost += lost;
        Ok(num(&r, "ok"))
    }
}

pub fn run(_args: &[String]) -> Result<(), String> {
    let t0 = Instant::now();
    let set = settings();
    println!("sessionrepl demo: a session store on 127.0.0.1, one process per node, each session on a primary and 1 backup");
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(Node::start(&format!("node{i}"), &set)?);
    }
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    println!(
        "3 nodes started (pids {}, {}, {}) at {}",
        nodes[0].child.id(),
        nodes[1].child.id(),
        nodes[2].child.id(),
        addrs.join(", ")
    );
    for n in nodes.iter_mut() {
        n.ask("waitmembers 2 10000")?;
    }
    let mut tally = Tally {
        commits: 0,
        lost: 0,
    };
    let t = Instant::now();
    for (i, n) in nodes.iter_mut().enumerate() {
        tally.bulk(n, "create", &format!("s{}-", i + 1), "1")?;
    }
    println!("each node created {PER_NODE} sessions (1 KiB each): {} sessions, every one acknowledged by its backup, in {} ms", 3 * PER_NODE, t.elapsed().as_millis());
    let t = Instant::now();
    for v in ["2", "3"] {
        for (i, n) in nodes.iter_mut().enumerate() {
            tally.bulk(n, "set", &format!("s{}-", i + 1), v)?;
        }
    }
    println!(
        "each node updated its sessions twice: {} more commits, all acknowledged, in {} ms",
        6 * PER_NODE,
        t.elapsed().as_millis()
    );
    nodes[0].ask("create login-0 user=alice")?;
    nodes[0].ask("chid login-0 login-1")?;
    let seen = nodes[2].ask("get login-1")?;
    let old = nodes[2].ask("get login-0")?;
    tally.commits += 2;
    println!("node1 renamed session login-0 to login-1 (after a login); node3 sees: \"{seen}\" and \"{old}\"");

    let mut n4 = Node::start("node4", &set)?;
    let ready = STARTED.with(|s| s.borrow().last().cloned().unwrap_or_default());
    println!(
        "node4 (pid {}) joined at {} and was ready only once it held its share: {} sessions received in {} ms",
        n4.child.id(),
        n4.addr,
        num(&ready, "sessions"),
        num(&ready, "transfer_ms")
    );
    for n in nodes.iter_mut() {
        n.ask("waitmembers 3 10000")?;
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        tally.bulk(n, "set", &format!("s{}-", i + 1), "4")?;
    }
    println!("every node committed v=4 to its sessions; placement now includes node4");

    let mut victim = nodes.remove(1);
    let t = Instant::now();
    // Child::kill sends SIGKILL on Unix: no shutdown notice, no hand-off.
    victim.child.kill().map_err(|e| e.to_string())?;
    let _ = victim.child.wait();
    println!("node2 (pid {}) killed with SIGKILL", victim.child.id());
    let m = nodes[0].ask("waitmembers 2 10000")?;
    nodes[1].ask("waitmembers 2 10000")?;
    n4.ask("waitmembers 2 10000")?;
    let st = nodes[0].ask("stats")?;
    println!(
        "the others noticed in {} ms ({m}); node1 alone re-replicated {} sessions and promoted {} to primary to restore two copies",
        t.elapsed().as_millis(),
        num(&st, "rereplications"),
        num(&st, "promotions")
    );
    let t = Instant::now();
    tally.bulk(&mut nodes[0], "set", "s2-", "5")?;
    println!("node1 took over node2's {PER_NODE} sessions (fetched from the surviving copies) and committed v=5 to them in {} ms", t.elapsed().as_millis());
    let ok = tally.check(&mut n4, "s1-", "4")?
        + tally.check(&mut n4, "s2-", "5")?
        + tally.check(&mut n4, "s3-", "4")?;
    println!(
        "after the kill, node4 finds {ok} of {} sessions with their last acknowledged value",
        3 * PER_NODE
    );

    // node3 drains while node1 keeps committing.
    let t = Instant::now();
    // A commit whose primary begins to drain before node1 sees it can be
    // answered "not applied"; node1 tries it again, as an application
    // would (`retry`), and the line says how often.
    nodes[0].send(&format!("bulk set s1- 0 {PER_NODE} v 6 {SIZE} retry"))?;
    let drained = nodes[1].ask("drain");
    let racing = nodes[0].reply()?;
    tally.commits += num(&racing, "acked");
    drained?;
    let st = nodes[1].ask("stats")?;
    nodes[1].send("quit")?;
    let _ = nodes[1].reply();
    let _ = nodes[1].child.wait();
    let retried = match num(&racing, "retried") {
        0 => String::new(),
        n => format!(" ({n} tried again after a \"not applied\" answer)"),
    };
    println!(
        "node3 drained ({} hand-offs, all acknowledged) while node1 committed {} updates{retried}, then stopped, in {} ms",
        num(&st, "handoffs"),
        num(&racing, "acked"),
        t.elapsed().as_millis()
    );
    if num(&racing, "failed") > 0 {
        return Err(format!("commits racing the drain failed: {racing}"));
    }
    let ok = tally.check(&mut n4, "s1-", "6")?
        + tally.check(&mut n4, "s2-", "5")?
        + tally.check(&mut n4, "s3-", "4")?;
    let s1 = nodes[0].ask("stats")?;
    let s4 = n4.ask("stats")?;
    println!(
        "the two nodes left hold {} + {} copies; node4 finds {ok} of {} sessions with their last acknowledged value",
        num(&s1, "sessions"),
        num(&s4, "sessions"),
        3 * PER_NODE
    );
    for n in [&mut nodes[0], &mut n4] {
        n.send("quit")?;
        let _ = n.reply();
        let _ = n.child.wait();
    }
    println!(
        "figures: nodes=4 killed=1 drained=1 sessions={} commits={} lost={} secs={:.1}",
        3 * PER_NODE + 1,
        tally.commits,
        tally.lost,
        t0.elapsed().as_secs_f64()
    );
    if tally.lost > 0 {
        return Err(format!("{} acknowledged commits were lost", tally.lost));
    }
    Ok(())
}
