//! A connect that ends connected to itself is a failed connect, never a
//! delivery. On loopback, a connect to a free port inside the ephemeral
//! range can pick that port as its own source port; TCP's simultaneous open
//! then joins the socket to itself and it reads back what it writes, so a
//! message sent without an ack would be reported `Sent` to a member that
//! does not exist.
//!
//! To make that happen every time, each case runs this test binary again
//! in a network namespace of its own (`unshare -n`, removed when the child
//! exits) whose ephemeral range is the one port the child sends to.

use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Config, ReplicationMode};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

mod common;

/// The port the child's connects take as their source and destination.
const PORT: u16 = 40_000;
/// Set in the child: which case to run (`mode:io`).
const CHILD: &str = "SR_SELF_CONNECT_CASE";

/// In the child: loopback up and an ephemeral range of one port.
fn prepare_namespace() {
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(st.success(), "ip link set lo up: {st}");
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{PORT} {PORT}"),
    )
    .expect("set ip_local_port_range");
    // The precondition of every case: a plain connect joins itself.
    // Closed with a reset, so no TIME_WAIT keeps the port from the case.
    let s = std::net::TcpStream::connect(("127.0.0.1", PORT)).expect("self connect");
    assert_eq!(s.local_addr().unwrap(), s.peer_addr().unwrap());
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// In the child: one send without an ack to the port, in `mode` over `io`;
/// returns how it ended.
fn run_case(case: &str) -> String {
    prepare_namespace();
    let (mode, io) = case.split_once(':').expect("mode:io");
    let mut cfg = Config::default();
    cfg.io_backend = io.into();
    // Outside the one-port ephemeral range.
    cfg.tcp_listen_port = 4000;
    // The first connect's end is the outcome (a retry finds the port's
    // last connection still closing: "cannot assign requested address").
    cfg.max_retry_attempts = 0;
    cfg.ack_timeout = Duration::from_secs(3);
    cfg.connect_timeout = Duration::from_millis(500);
    let to: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let opts = SendOptions {
        ack: AckMode::None,
        compress: false,
    };
    let payload = Bytes::from_static(b"to nobody");
    if mode == "tribes" {
        cfg.replication_mode = ReplicationMode::Synchronous;
        let ch = Channel::builder(cfg).start().unwrap();
        let r = ch.send_tribes(&[to], payload, opts);
        ch.stop();
        return format!("{r:?}");
    }
    cfg.replication_mode = ReplicationMode::parse(mode).expect("mode");
    let ch = Channel::builder(cfg).start().unwrap();
    let r = match ch.send_with_ticket(&[to], payload, opts) {
        Ok((_, t)) => format!("{:?}", t.wait(Duration::from_secs(20))),
        Err(e) => format!("Err({e:?})"),
    };
    ch.stop();
    r
}

/// Runs `case` in a child in its own network namespace; returns the line
/// it printed.
fn in_namespace(case: &str) -> Option<String> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        .env(CHILD, case)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let out = String::from_utf8_lossy(&o.stdout);
            // No rights for namespaces: only a skip outside CI.
            let no_rights =
                err.contains("unshare failed") || err.contains("Operation not permitted");
            assert!(
                no_rights && std::env::var("CI").as_deref() != Ok("true"),
                "case {case} failed: {}\n{out}\n{err}",
                o.status
            );
            eprintln!("skipped: no network namespace here: {err}");
            return None;
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "unshare not runnable under CI=true: {e}"
            );
            eprintln!("skipped: unshare not runnable: {e}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OUTCOME "))
        .unwrap_or_else(|| panic!("case {case} printed no outcome:\n{stdout}"));
    Some(line.to_string())
}

fn self_connect_fails(case: &str) {
    let Some(o) = in_namespace(case) else { return };
    eprintln!("{case}: {o}");
    assert!(
        o.contains("Unreachable") && o.contains("connected to itself") && !o.contains("Sent"),
        "{case}: a send over a connection to itself must fail as unreachable, got {o}"
    );
}

/// No libtest harness (`harness = false`): the same binary is the child
/// that runs one case in its namespace, so no test entry exists only to be
/// that child. A failed case panics, and the run fails.
fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        println!("\nOUTCOME {}", run_case(&case));
        return;
    }
    let cases = [
        (
            "fastasyncqueue_connected_to_itself_fails",
            "fastasyncqueue:mio",
        ),
        (
            "fastasyncqueue_connected_to_itself_fails",
            "fastasyncqueue:uring",
        ),
        ("asynchronous_connected_to_itself_fails", "asynchronous:mio"),
        ("synchronous_connected_to_itself_fails", "synchronous:mio"),
        ("tribes_send_connected_to_itself_fails", "tribes:mio"),
    ];
    for (name, case) in cases {
        if case.ends_with(":uring") && !common::uring_usable() {
            println!("test {name}::uring ... skipped");
            continue;
        }
        self_connect_fails(case);
        println!("test {name} ({case}) ... ok");
    }
}
