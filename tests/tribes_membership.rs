//! Interoperability of MembershipService with a real Apache Tribes node
//! (java/TribesPeer.java, compiled here against Debian's
//! tomcat10-tribes.jar), on loopback multicast with TTL 1.
//!
//! Skipped, with a printed reason, when javac or the jars are absent.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionrepl::__internal::wire::tribes::{TribesMember, SHUTDOWN_COMMAND};
use sessionrepl::membership::{
    hex, LocalMemberInfo, MemberEvent, MembershipConfig, MembershipService, RemoveReason,
};

mod common;
use common::{compile_java, stdout_lines, Log, JULI_JAR, TRIBES_JAR};
const WAIT: Duration = Duration::from_secs(30);

/// A running TribesPeer; killed when dropped.
struct JavaPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Log<String>>,
    port: u16,
}

impl JavaPeer {
    fn start(classes: &Path, group: Ipv4Addr, mport: u16) -> JavaPeer {
        let port = free_tcp_port();
        let cp = format!("{}:{TRIBES_JAR}:{JULI_JAR}", classes.display());
        let mut child = Command::new("java")
            .args([
                "-Djava.net.preferIPv4Stack=true",
                "-Xshare:auto",
                "-cp",
                &cp,
            ])
            .arg("TribesPeer")
            .args([group.to_string(), mport.to_string(), port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("java");
        let lines = stdout_lines(&mut child, WAIT);
        let stdin = child.stdin.take();
        JavaPeer {
            child,
            stdin,
            lines,
            port,
        }
    }

    fn started(&self) -> (String, Vec<u8>) {
        let l = self.lines.wait("started", |l| l.starts_with("started "));
        let id = field(&l, "id").to_string();
        let blob = unhex(field(&l, "blob"));
        (id, blob)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn send(&mut self, cmd: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{cmd}").unwrap();
        s.flush().unwrap();
    }
}

impl Drop for JavaPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or("")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Compiles java/TribesPeer.java into a fresh temp dir, or says why not.
fn compile_peer() -> Result<PathBuf, String> {
    compile_java("TribesPeer.java")
}

struct RustNode {
    svc: Option<MembershipService>,
    events: Arc<Log<MemberEvent>>,
    addr: SocketAddr,
    id: [u8; 16],
    _listener: TcpListener,
}

fn rust_node(cfg: &MembershipConfig, n: u8) -> RustNode {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let id = [n; 16];
    let events = Log::new(WAIT);
    let ev = events.clone();
    let svc = MembershipService::start(
        cfg,
        LocalMemberInfo::new(addr, id, ""),
        Arc::new(move |e: &MemberEvent| {
            ev.push(e.clone());
        }),
    )
    .unwrap();
    RustNode {
        svc: Some(svc),
        events,
        addr,
        id,
        _listener: l,
    }
}

#[test]
fn tribes_and_sessionrepl_see_each_other_join_leave_and_die() {
    let classes = match compile_peer() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIP tribes_membership: {why}");
            return;
        }
    };
    let mport = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = Ipv4Addr::new(239, 201, (std::process::id() % 250) as u8, 7);
    let mut cfg = MembershipConfig::default();
    for (k, v) in [
        ("membershipType", "multicast".to_string()),
        ("mcastAddr", group.to_string()),
        ("mcastPort", mport.to_string()),
        ("mcastBindAddress", "127.0.0.1".into()),
        ("mcastTTL", "1".into()),
        ("mcastFrequency", "100".into()),
        ("mcastDropTime", "1500".into()),
        ("failureDetectorConnectTimeout", "500".into()),
    ] {
        cfg.set(k, &v).unwrap();
    }

    // A raw listener on the group captures what Tribes really sends.
    let sniff = {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((group, mport)).into()).unwrap();
        s.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        UdpSocket::from(s)
    };

    let r1 = rust_node(&cfg, 0x11);
    let mut r2 = rust_node(&cfg, 0x22);
    let mut r3 = rust_node(&cfg, 0x33);
    let mut j1 = JavaPeer::start(&classes, group, mport);
    let (j1_id, j1_blob) = j1.started();

    // Our codec decodes the blob Tribes reports as its own...
    let local = TribesMember::decode(&j1_blob).expect("Tribes' own blob decodes");
    assert_eq!(hex(&local.unique_id), j1_id);
    assert_eq!(local.port, i32::from(j1.port));
    assert_eq!(local.host, std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(
        j1_blob,
        local.to_bytes().unwrap(),
        "re-encodes byte for byte"
    );
    // ...and the heartbeats it sends.
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 65536];
    let hb = loop {
        assert!(Instant::now() < deadline, "no Tribes heartbeat captured");
        let Ok(n) = sniff.recv(&mut buf) else {
            continue;
        };
        if let Ok(m) = TribesMember::decode(&buf[..n]) {
            if m.unique_id == local.unique_id {
                break m;
            }
        }
    };
    assert_eq!(hb.port, local.port);
    assert!(hb.command.is_empty() && hb.payload.is_empty());
    assert_eq!((hb.secure_port, hb.udp_port), (-1, -1));

    // Both sides list each other.
    let e = r1.events.wait(
        "Tribes joins",
        |e| matches!(e, MemberEvent::Added(m) if m.addr == j1.addr()),
    );
    assert_eq!(hex(&e.member().id), j1_id);
    assert!(
        !e.member().is_sessionrepl(),
        "plain Tribes peer has no facts"
    );
    for r in [&r1, &r2, &r3] {
        let l = j1.lines.wait("Tribes lists us", |l| {
            l.starts_with("member-added") && field(l, "id") == hex(&r.id)
        });
        assert_eq!(field(&l, "port"), r.addr.port().to_string());
        assert_eq!(field(&l, "host"), "127.0.0.1");
        assert!(
            field(&l, "payload").starts_with("5352504c"),
            "facts carried: {l}"
        );
    }

    // Our orderly stop: Tribes sees BABY-ALEX.
    r2.svc.take().unwrap().stop();
    let l = j1.lines.wait("Tribes sees our shutdown", |l| {
        l.starts_with("member-disappeared") && field(l, "id") == hex(&r2.id)
    });
    assert_eq!(field(&l, "command").as_bytes(), SHUTDOWN_COMMAND);

    // Our crash: Tribes expires us after its drop time.
    r3.svc.take().unwrap().stop_silently();
    let l = j1.lines.wait("Tribes expires a silent node", |l| {
        l.starts_with("member-disappeared") && field(l, "id") == hex(&r3.id)
    });
    assert_eq!(field(&l, "command"), "");

    // Tribes' orderly stop: removed at once with Shutdown.
    j1.send("stop");
    r1.events.wait(
        "Tribes shutdown",
        |e| matches!(e, MemberEvent::Removed(m, RemoveReason::Shutdown) if m.addr == j1.addr()),
    );
    j1.lines.wait("stopped", |l| l == "stopped");

    // A Tribes node killed with SIGKILL vanishes by timeout.
    let mut j2 = JavaPeer::start(&classes, group, mport);
    let (j2_id, _) = j2.started();
    r1.events.wait(
        "second Tribes joins",
        |e| matches!(e, MemberEvent::Added(m) if hex(&m.id) == j2_id),
    );
    let killed = Instant::now();
    j2.child.kill().unwrap();
    let _ = j2.child.wait();
    r1.events.wait(
        "killed Tribes dropped",
        |e| matches!(e, MemberEvent::Removed(m, RemoveReason::Timeout) if hex(&m.id) == j2_id),
    );
    assert!(killed.elapsed() >= Duration::from_millis(1000));
    // Left: only r3, silent but with its TCP port open, hence suspect.
    let svc = r1.svc.as_ref().unwrap();
    let left: Vec<SocketAddr> = svc.members().iter().map(|m| m.addr).collect();
    assert_eq!(left, [r3.addr]);
    assert!(svc.is_suspect(r3.addr));
    let _ = std::fs::remove_dir_all(&classes);
}
