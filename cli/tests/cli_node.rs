//! `sessionrepl node` as a real process: it prints `ready`, member events
//! and messages, acks what asks for an ack, and stops cleanly on SIGTERM.

use bytes::Bytes;
use sessionrepl::{Channel, Config, ReplicationMode};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{stdout_lines, Log};
use std::sync::Arc;

struct Node {
    child: Child,
    lines: Arc<Log<String>>,
}

impl Node {
    fn start(sets: &[String]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionrepl"));
        cmd.arg("node");
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child, WAIT);
        Node { child, lines }
    }
    /// A line matching `what` (events of different members may come in any
    /// order, so this searches everything printed so far).
    fn expect(&self, what: impl Fn(&str) -> bool, label: &str) -> String {
        self.lines.wait(label, |l| what(l))
    }
    fn ready(&self) -> SocketAddr {
        let l = self.expect(|l| l.starts_with("ready addr="), "ready");
        l["ready addr=".len()..].parse().unwrap()
    }
    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn nodes_see_each_other_ack_messages_and_report_shutdown_and_death() {
    let mport = free_port();
    let group = format!("239.255.{}.{}", (mport >> 8) & 0xff, mport & 0xff);
    let sets = |_: u8| {
        vec![
            "membershipType=multicast".to_string(),
            format!("mcastAddr={group}"),
            format!("mcastPort={mport}"),
            "mcastBindAddress=127.0.0.1".into(),
            "mcastFrequency=100".into(),
            "mcastDropTime=1000".into(),
            "mcastClusterDomain=cli-test".into(),
        ]
    };
    let a = Node::start(&sets(1));
    let b = Node::start(&sets(2));
    let c = Node::start(&sets(3));
    let (aa, ba, ca) = (a.ready(), b.ready(), c.ready());
    for (n, others) in [(&a, [ba, ca]), (&b, [aa, ca]), (&c, [aa, ba])] {
        for o in others {
            let l = n.expect(
                |l| l.starts_with("member-added") && l.contains(&format!("addr={o} ")),
                "member-added",
            );
            assert!(l.contains("domain=cli-test"), "{l}");
            assert!(l.contains("sessionrepl=true"), "{l}");
        }
    }
    // A message with an ack after delivery is acked and printed.
    let mut cfg = Config::default();
    cfg.replication_mode = ReplicationMode::Synchronous;
    let tx = Channel::builder(cfg).start().unwrap();
    tx.send(&[aa], Bytes::from(vec![b'x'; 321]), tx.default_options())
        .unwrap();
    let l = a.expect(|l| l.starts_with("message"), "message");
    assert_eq!(l, format!("message from={} bytes=321", tx.local_addr()));
    tx.stop();

    // SIGTERM: an orderly stop, announced; SIGKILL: silence, dropped later.
    b.signal(libc::SIGTERM);
    b.expect(|l| l == "stopped", "stopped");
    let l = a.expect(
        |l| l.starts_with("member-removed") && l.contains(&format!("addr={ba} ")),
        "b removed",
    );
    assert!(l.ends_with("reason=shutdown"), "{l}");
    c.signal(libc::SIGKILL);
    let t0 = Instant::now();
    let l = a.expect(
        |l| l.starts_with("member-removed") && l.contains(&format!("addr={ca} ")),
        "c removed",
    );
    assert!(
        l.ends_with("reason=timeout") || l.ends_with("reason=failure"),
        "{l}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "dropped after {:?}",
        t0.elapsed()
    );
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionrepl"))
        .args(["node", "--set", "replicationMode=turbo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replicationMode"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_sessionrepl"))
        .args(["node", "--set", "noSuchKey=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("noSuchKey"));
}
