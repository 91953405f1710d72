//! A membership-only node: announces itself, prints membership events.
//!
//! ```text
//! cargo run --example member_node -- listen=127.0.0.1:4001 membershipType=multicast \
//!     mcastAddr=239.1.2.3 mcastPort=45564 [id=<32 hex>] [any other membership key=value]
//! ```
//!
//! It binds a TCP listener on `listen` (so other nodes' failure detection
//! finds it reachable) and prints one line per event on stdout:
//!
//! ```text
//! ready addr=<host:port> id=<hex>
//! member-added id=<hex> addr=<host:port> domain=<d> sessionrepl=<true|false>
//! member-removed id=<hex> addr=<host:port> reason=<timeout|shutdown|failure|restarted>
//! member-suspect id=<hex> addr=<host:port>
//! stopped
//! ```
//!
//! A line `stop` on stdin, or end of stdin, stops it in order (shutdown
//! notice); `stop-silently` stops without one.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use sessionrepl::membership::{
    hex, LocalMemberInfo, MemberEvent, MembershipConfig, MembershipService,
};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// 16 random bytes from std's per-process random hash keys.
fn random_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for half in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    id
}

/// Runs a node with `key=value` arguments; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let mut cfg = MembershipConfig::default();
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut id = random_id();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            eprintln!("expected key=value, got {a}");
            return 2;
        };
        let r = match k {
            "listen" => v.parse().map(|x| listen = x).map_err(|e| format!("{e}")),
            "id" => sessionrepl::config::parse_member_id(k, v)
                .map(|x| id = x)
                .map_err(|e| e.to_string()),
            _ => match cfg.set(k, v) {
                Ok(true) => Ok(()),
                Ok(false) => Err("not a membership key".into()),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(e) = r {
            eprintln!("{k}: {e}");
            return 2;
        }
    }
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return 1;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    // Accept and drop connections (failure-detector probes).
    std::thread::spawn(move || for _ in listener.incoming() {});
    let print = Arc::new(|e: &MemberEvent| say(&e.to_string()));
    let svc = match MembershipService::start(&cfg, LocalMemberInfo::new(addr, id, ""), print) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("membership: {e}");
            return 1;
        }
    };
    say(&format!("ready addr={addr} id={}", hex(&id)));
    let mut silently = false;
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("stop") | Err(_) => break,
            Ok("stop-silently") => {
                silently = true;
                break;
            }
            Ok("members") => say(&format!("members count={}", svc.members().len())),
            Ok(_) => {}
        }
    }
    if silently {
        svc.stop_silently();
    } else {
        svc.stop();
    }
    say("stopped");
    0
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(&args));
}
