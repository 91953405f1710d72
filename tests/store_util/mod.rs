//! Helpers shared by the session-store tests: a private multicast group,
//! port and domain per cluster (127.0.0.1 only, TTL 1), and in-process stores.

#![allow(dead_code)]

use sessionrepl::session::{SessionEvent, SessionStore, StoreLookup};
use sessionrepl::Config;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `key=value` settings of a fresh cluster: multicast on 127.0.0.1 with a
/// group, port and domain no other test (or process) shares.
pub fn cluster_settings(extra: &[&str]) -> Vec<String> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let mut v = vec![
        "membershipType=multicast".to_string(),
        format!("mcastAddr=239.254.{}.{}", pid % 250, n % 250 + 1),
        format!("mcastPort={}", 20_000 + (pid * 13 + n * 101) % 30_000),
        "mcastBindAddress=127.0.0.1".into(),
        "mcastTTL=1".into(),
        "mcastFrequency=100".into(),
        "mcastDropTime=1000".into(),
        format!("domain=store-test-{pid}-{n}"),
        "tcpListenAddress=127.0.0.1".into(),
        "replicationMode=fastasyncqueue".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn config(settings: &[String]) -> Config {
    let mut c = Config::default();
    for s in settings {
        let (k, v) = s.split_once('=').unwrap();
        c.set(k, v).unwrap();
    }
    c
}

/// An in-process store recording its events.
pub struct Node {
    pub store: SessionStore,
    pub events: Arc<Mutex<Vec<SessionEvent>>>,
}

pub fn open(settings: &[String]) -> Node {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    let store = SessionStore::builder(config(settings))
        .event_listener(move |e| e2.lock().unwrap().push(e.clone()))
        .open()
        .unwrap();
    store.wait_ready(WAIT).unwrap();
    Node { store, events }
}

/// Opens `n` stores that see each other.
pub fn cluster(n: usize, settings: &[String]) -> Vec<Node> {
    let nodes: Vec<Node> = (0..n).map(|_| open(settings)).collect();
    for node in &nodes {
        wait_members(&node.store, n - 1);
    }
    nodes
}

pub fn wait_members(s: &SessionStore, n: usize) {
    wait_for(&format!("{} to see {n} members", s.local_addr()), || {
        s.members().len() == n
    });
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of attribute `name` of `id` as `s` finds it (fetching if needed).
pub fn value(s: &SessionStore, id: &str, name: &str) -> Option<Vec<u8>> {
    match s.get(id.as_bytes()).unwrap() {
        StoreLookup::Local(sess) => sess.attribute(name.as_bytes()).map(|v| v.to_vec()),
        _ => None,
    }
}

/// Creates `id` with `name=value` on `s` and waits for the ack.
pub fn create(s: &SessionStore, id: &str, name: &str, value: &str) -> usize {
    let mut t = s.begin(id.as_bytes().to_vec());
    t.set(name.as_bytes().to_vec(), value.as_bytes().to_vec());
    s.create(t).unwrap().wait(WAIT).unwrap()
}

/// Commits `name=value` to `id` on `s` (fetching it first) and waits.
pub fn set(s: &SessionStore, id: &str, name: &str, value: &str) -> sessionrepl::Result<usize> {
    match s.get(id.as_bytes())? {
        StoreLookup::Local(_) => {}
        other => panic!("{id} not available on {}: {other:?}", s.local_addr()),
    }
    let mut t = s.begin(id.as_bytes().to_vec());
    t.set(name.as_bytes().to_vec(), value.as_bytes().to_vec());
    s.commit(t)?.wait(WAIT)
}
