//! Three hosts in network namespaces, joined by veth pairs to a bridge in a
//! fourth namespace; all created and removed by this test (names unique per
//! process). Multicast uses TTL 1 and never leaves these namespaces.
//!
//! Asserts multicast membership across hosts, no spurious drop while TCP
//! streams saturate the links, removal of a SIGKILLed node
//! within the drop time (plus the TCP check), and a partitioned host (its
//! veth down) dropped and added back once the link is up.
//!
//! The nodes are this test binary re-run inside each namespace
//! (`ip netns exec`) in helper mode, running `examples/member_node.rs`.
//! Skipped, with a printed reason, without root or `ip`.

#[path = "../examples/member_node.rs"]
#[allow(dead_code)]
mod member_node;

mod common;
use common::{stdout_lines, Log};

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "SR_MEMBER_NODE_ARGS";
const WAIT: Duration = Duration::from_secs(20);

/// Helper mode: when run inside a namespace by the test below.
#[test]
fn node_helper() {
    if let Ok(a) = std::env::var(HELPER_ENV) {
        let args: Vec<String> = a.split_whitespace().map(String::from).collect();
        // End the harness's "test node_helper ... " line first.
        println!();
        std::process::exit(member_node::run(&args));
    }
}

const BLAST_ENV: &str = "SR_NETNS_BLAST";

/// Helper mode: a TCP traffic generator run inside a namespace. `sink ADDR`
/// accepts one connection and reads everything; `send ADDR SECS` writes as
/// fast as it can for SECS seconds.
#[test]
fn blast_helper() {
    let Ok(a) = std::env::var(BLAST_ENV) else {
        return;
    };
    use std::io::{Read, Write};
    let v: Vec<&str> = a.split_whitespace().collect();
    println!();
    match v.as_slice() {
        ["sink", addr] => {
            let l = std::net::TcpListener::bind(addr).unwrap();
            println!("sink-ready");
            let (mut c, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            println!("sink-done bytes={total}");
        }
        ["send", addr, secs] => {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let buf = vec![7u8; 1 << 20];
            let end = Instant::now() + Duration::from_secs(secs.parse().unwrap());
            while Instant::now() < end {
                if c.write_all(&buf).is_err() {
                    break;
                }
            }
            println!("send-done");
        }
        _ => panic!("bad blast args {a}"),
    }
    std::process::exit(0);
}

/// Runs this test binary in blast helper mode inside namespace `ns`.
fn blast(ns: &str, args: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "blast_helper", "--nocapture", "--test-threads=1"])
        .env(BLAST_ENV, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip netns exec")
}

fn wait_line(c: &mut Child, prefix: &str) -> String {
    let out = c.stdout.as_mut().unwrap();
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("blast helper ended before '{prefix}'");
        }
        if line.starts_with(prefix) {
            return line.trim().to_string();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces; deleted on drop, even when the test fails.
struct Lab {
    bridge: String,
    hosts: Vec<String>,
    subnet: String,
}

impl Lab {
    fn build() -> Result<Lab, String> {
        let tag = std::process::id() % 100_000;
        let mut lab = Lab {
            bridge: format!("srmb{tag}"),
            hosts: (1..=3).map(|i| format!("srm{tag}h{i}")).collect(),
            subnet: format!("10.213.{}", tag % 250),
        };
        ip(&["netns", "add", &lab.bridge])?;
        let all = lab.hosts.clone();
        lab.hosts.clear();
        let b = lab.bridge.clone();
        ip(&["-n", &b, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &b,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &b, "link", "set", "br0", "up"])?;
        for (i, h) in all.iter().enumerate() {
            ip(&["netns", "add", h])?;
            lab.hosts.push(h.clone());
            let peer = format!("v{}", i + 1);
            ip(&[
                "link", "add", "eth0", "netns", h, "type", "veth", "peer", "name", &peer, "netns",
                &b,
            ])?;
            ip(&["-n", &b, "link", "set", &peer, "master", "br0"])?;
            ip(&["-n", &b, "link", "set", &peer, "up"])?;
            let addr = format!("{}.{}/24", lab.subnet, i + 1);
            ip(&["-n", h, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", h, "link", "set", "eth0", "up"])?;
            ip(&["-n", h, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn host_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Takes host `i`'s link to the bridge down or up.
    fn link(&self, i: usize, up: bool) {
        let peer = format!("v{}", i + 1);
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &peer,
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.bridge)) {
            let _ = ip(&["netns", "del", h]);
        }
    }
}

/// A node process inside a namespace; killed when dropped.
struct Node {
    child: Child,
    _stdin: ChildStdin,
    lines: Arc<Log<String>>,
    addr: String,
    id: String,
}

impl Node {
    fn start(ns: &str, ip_addr: &str, i: usize, extra: &str) -> Node {
        let id = format!("{:02x}", 0xA0 + i).repeat(16);
        let addr = format!("{ip_addr}:4000");
        let args = format!("listen={addr} id={id} {extra}");
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["--exact", "node_helper", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec");
        let lines = stdout_lines(&mut child, WAIT);
        let stdin = child.stdin.take().unwrap();
        let n = Node {
            child,
            _stdin: stdin,
            lines,
            addr,
            id,
        };
        n.wait_n("ready", 1, |l| l.starts_with("ready "));
        n
    }

    fn wait_n(&self, what: &str, n: usize, f: impl Fn(&str) -> bool) {
        self.lines
            .wait_n(&format!("{}: {what}", self.addr), n, |l| f(l));
    }

    fn added(&self, other: &Node, n: usize) {
        let pat = format!("member-added id={} addr={} ", other.id, other.addr);
        self.wait_n("member-added", n, |l| l.starts_with(&pat));
    }

    fn removed(&self, other: &Node, reason: &str, n: usize) {
        let pat = format!(
            "member-removed id={} addr={} reason={reason}",
            other.id, other.addr
        );
        self.wait_n("member-removed", n, |l| l == pat);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn why_skip() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) not available".into()),
    }
}

#[test]
fn three_namespaced_hosts_join_crash_and_partition() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    if let Some(why) = why_skip() {
        eprintln!("SKIP membership_netns: {why}");
        return;
    }
    let lab = match Lab::build() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIP membership_netns: cannot build namespaces: {e}");
            return;
        }
    };
    let group = format!("239.213.{}.1", std::process::id() % 250);
    let common = |i: usize| {
        format!(
            "membershipType=multicast mcastAddr={group} mcastPort=45564 mcastTTL=1 \
             mcastBindAddress={} mcastFrequency=100 mcastDropTime=1000 \
             failureDetectorConnectTimeout=300",
            lab.host_ip(i)
        )
    };
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&lab.hosts[i], &lab.host_ip(i), i, &common(i)))
        .collect();
    for (i, a) in nodes.iter().enumerate() {
        for (j, b) in nodes.iter().enumerate() {
            if i != j {
                a.added(b, 1);
            }
        }
    }
    // Load: saturate the bridge with TCP streams host0 -> host1 and
    // host1 -> host2 for 3 s; heartbeats share the links, and no member may
    // be dropped meanwhile.
    let mut sinks = Vec::new();
    let mut senders = Vec::new();
    for (from, to) in [(0usize, 1usize), (1, 2)] {
        let addr = format!("{}:5000", lab.host_ip(to));
        let mut sink = blast(&lab.hosts[to], &format!("sink {addr}"));
        wait_line(&mut sink, "sink-ready");
        senders.push(blast(&lab.hosts[from], &format!("send {addr} 3")));
        sinks.push(sink);
    }
    for mut s in senders {
        let _ = s.wait();
    }
    for mut s in sinks {
        let done = wait_line(&mut s, "sink-done");
        let bytes: u64 = done.trim_start_matches("sink-done bytes=").parse().unwrap();
        assert!(bytes > 10 << 20, "the load was real: {bytes} bytes");
        let _ = s.wait();
    }
    for n in &nodes {
        let g = n.lines.snapshot();
        let dropped: Vec<_> = g
            .iter()
            .filter(|l| l.starts_with("member-removed"))
            .collect();
        assert!(
            dropped.is_empty(),
            "{}: spurious drop under load: {dropped:?}",
            n.addr
        );
    }

    let mut nodes = nodes;
    let (n0, rest) = nodes.split_at_mut(1);
    let (n1, n2) = rest.split_at_mut(1);
    let (n0, n1, n2) = (&mut n0[0], &mut n1[0], &mut n2[0]);

    // Partition host 2: everyone drops everyone across the cut...
    lab.link(2, false);
    n0.removed(n2, "timeout", 1);
    n1.removed(n2, "timeout", 1);
    n2.removed(n0, "timeout", 1);
    n2.removed(n1, "timeout", 1);
    // ...and the link back heals it.
    lab.link(2, true);
    n0.added(n2, 2);
    n1.added(n2, 2);
    n2.added(n0, 2);
    n2.added(n1, 2);

    // SIGKILL host 1's node: dropped within drop time + TCP check.
    let t = Instant::now();
    n1.child.kill().unwrap();
    let _ = n1.child.wait();
    n0.removed(n1, "timeout", 1);
    n2.removed(n1, "timeout", 1);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(nodes);
    drop(lab);
}
