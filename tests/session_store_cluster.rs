//! SessionStore on real channels over loopback (in-process nodes, multicast
//! membership on 127.0.0.1): join with state transfer, id change, expiry,
//! invalidation, drain with racing commits, state-transfer timeout.

mod store_util;

use bytes::Bytes;
use sessionrepl::membership::MemberEvent;
use sessionrepl::session::{SessionEvent, SessionStore, StoreLookup};
use sessionrepl::{Channel, Error};
use std::time::Duration;
use store_util::*;

#[test]
fn joiner_receives_its_share_and_is_ready_only_when_complete() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(3, &cfg);
    for i in 0..150 {
        let n = &nodes[i % 3].store;
        assert!(create(n, &format!("j{i}"), "v", &format!("x{i}")) >= 2);
    }
    let joiner = open(&cfg);
    assert!(joiner.store.is_ready());
    assert!(joiner.store.ready_after().is_some());
    let held = joiner.store.stats().sessions;
    assert!(held > 0, "the joiner received no session");
    assert!(joiner.store.stats().sessions_transferred as usize >= held);
    for i in 0..150 {
        let id = format!("j{i}");
        assert_eq!(
            value(&joiner.store, &id, "v").as_deref(),
            Some(format!("x{i}").as_bytes()),
            "{id} on the joiner"
        );
    }
}

#[test]
fn change_id_is_applied_cluster_wide() {
    let cfg = cluster_settings(&["backupCount=2"]);
    let nodes = cluster(3, &cfg);
    create(&nodes[0].store, "before-login", "user", "alice");
    let copies = nodes[0]
        .store
        .change_id(b"before-login", Bytes::from_static(b"after-login"))
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(copies, 3);
    for n in &nodes {
        assert_eq!(
            value(&n.store, "after-login", "user").as_deref(),
            Some(&b"alice"[..])
        );
        assert!(matches!(
            n.store.get(b"before-login").unwrap(),
            StoreLookup::NotFound
        ));
    }
    wait_for("an id-changed event on node 2", || {
        nodes[1].events.lock().unwrap().iter().any(|e| {
            matches!(e, SessionEvent::IdChanged { old, new, .. }
                if &old[..] == b"before-login" && &new[..] == b"after-login")
        })
    });
}

#[test]
fn idle_session_expires_on_every_member() {
    let cfg = cluster_settings(&["backupCount=2", "expireCheckInterval=100"]);
    let nodes = cluster(3, &cfg);
    let mut t = nodes[0].store.begin(&b"short"[..]);
    t.set(&b"k"[..], &b"v"[..]).set_max_inactive(1);
    nodes[0].store.create(t).unwrap().wait(WAIT).unwrap();
    create(&nodes[0].store, "long", "k", "v");
    for n in &nodes {
        assert!(value(&n.store, "short", "k").is_some());
    }
    wait_for("expiry everywhere", || {
        nodes
            .iter()
            .all(|n| matches!(n.store.get(b"short").unwrap(), StoreLookup::NotFound))
    });
    let expired_events = nodes
        .iter()
        .filter(|n| {
            n.events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, SessionEvent::Expired { id, .. } if &id[..] == b"short"))
        })
        .count();
    assert_eq!(expired_events, 3, "every member reports the expiry");
    for n in &nodes {
        assert!(
            value(&n.store, "long", "k").is_some(),
            "a busy session stays"
        );
    }
}

#[test]
fn invalidation_removes_the_session_everywhere() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(3, &cfg);
    create(&nodes[1].store, "gone", "k", "v");
    nodes[2].store.get(b"gone").unwrap();
    nodes[2]
        .store
        .invalidate(b"gone")
        .unwrap()
        .wait(WAIT)
        .unwrap();
    for n in &nodes {
        assert!(matches!(
            n.store.get(b"gone").unwrap(),
            StoreLookup::NotFound
        ));
    }
    // The id stays retired (tombstoned) so a late copy cannot bring it back.
    let mut t = nodes[2].store.begin(&b"gone"[..]);
    t.set(&b"k"[..], &b"again"[..]);
    // Node 2 is not the primary: the create goes there and the conflict
    // comes back through the handle.
    assert!(matches!(
        nodes[2].store.create(t).and_then(|h| h.wait(WAIT)),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn drain_with_racing_commits_loses_and_reverts_nothing() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(3, &cfg);
    let n = 200;
    for i in 0..n {
        create(&nodes[0].store, &format!("d{i}"), "v", "1");
    }
    let (a, rest) = nodes.split_first().unwrap();
    let (b, c) = (&rest[0], &rest[1]);
    let acked = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let mut acked = Vec::new();
            for i in 0..n {
                let id = format!("d{i}");
                if set(&b.store, &id, "v", "2").is_ok() {
                    acked.push(id);
                }
            }
            acked
        });
        a.store.drain(WAIT).unwrap();
        writer.join().unwrap()
    });
    assert!(matches!(
        a.store.commit({
            let mut t = a.store.begin(&b"d0"[..]);
            t.set(&b"v"[..], &b"3"[..]);
            t
        }),
        Err(Error::Shutdown)
    ));
    a.store.close();
    wait_members(&c.store, 1);
    assert_eq!(
        acked.len(),
        n,
        "every commit racing the drain was acknowledged"
    );
    for i in 0..n {
        let id = format!("d{i}");
        assert_eq!(
            value(&c.store, &id, "v").as_deref(),
            Some(&b"2"[..]),
            "{id}"
        );
    }
}

#[test]
fn state_transfer_timeout_surfaces_from_wait_ready() {
    let cfg = cluster_settings(&["stateTransferTimeout=0.5", "memberDiscoveryTime=400"]);
    // A member that speaks sessionrepl but is no session store: it acks the
    // state request and never sends the state.
    let silent = Channel::builder(config(&cfg))
        .listener(|_| Ok(()))
        .member_listener(|_: &MemberEvent| {})
        .start()
        .unwrap();
    let joiner = SessionStore::open(config(&cfg)).unwrap();
    let r = joiner.wait_ready(WAIT);
    assert!(
        matches!(r, Err(Error::RemoteFailure(ref m)) if m.contains("stateTransferTimeout")),
        "{r:?}"
    );
    assert!(!joiner.is_ready());
    assert!(joiner.wait_ready(Duration::from_millis(10)).is_err());
    silent.stop();
}

/// The host's event listener runs on the store's driver thread. One that
/// takes long (here: blocked until the end of the test) must not hold back
/// the acknowledgement of a commit: the channel's sender thread resolves
/// the handle itself when the node is free, instead of waking the driver
/// thread to do it.
#[test]
fn a_blocked_event_listener_does_not_hold_back_commit_acknowledgements() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    let cfg = cluster_settings(&["backupCount=1"]);
    let b = open(&cfg);
    let armed = Arc::new(AtomicBool::new(false));
    let blocked = Arc::new(AtomicBool::new(false));
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (armed2, blocked2, gate2) = (armed.clone(), blocked.clone(), gate.clone());
    let a = SessionStore::builder(config(&cfg))
        .event_listener(move |_| {
            if armed2.load(Ordering::SeqCst) {
                blocked2.store(true, Ordering::SeqCst);
                let (m, cv) = &*gate2;
                let mut open = m.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
            }
        })
        .open()
        .unwrap();
    a.wait_ready(WAIT).unwrap();
    wait_members(&a, 1);
    wait_members(&b.store, 1);
    // Opens the gate however the test ends (a panic must not leave the
    // driver thread blocked, or dropping `a` would wait for it forever).
    struct Opener(Arc<(Mutex<bool>, Condvar)>);
    impl Drop for Opener {
        fn drop(&mut self) {
            let (m, cv) = &*self.0;
            *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
    }
    let opener = Opener(gate.clone());
    armed.store(true, Ordering::SeqCst);
    // A session b creates whose primary is a: b hands the create to a,
    // a applies it (its listener hears of it and blocks the driver
    // thread), copies it to b, and once b acknowledged the copy, replies to
    // b. That reply goes out on a's sender thread, not its driver thread.
    let on_a = (0..)
        .map(|i| format!("made-on-b-{i}"))
        .find(|id| !b.store.is_primary_for(id.as_bytes()))
        .unwrap();
    let mut t = b.store.begin(on_a.as_bytes().to_vec());
    t.set(&b"k"[..], &b"v"[..]);
    let handed = b.store.create(t).unwrap();
    wait_for("a's listener to block", || blocked.load(Ordering::SeqCst));
    let handed = handed.wait(Duration::from_secs(5));
    let id = (0..)
        .map(|i| format!("made-on-a-{i}"))
        .find(|id| a.is_primary_for(id.as_bytes()))
        .unwrap();
    let mut t = a.begin(id.as_bytes().to_vec());
    t.set(&b"k"[..], &b"v"[..]);
    let copies = a.create(t).unwrap().wait(Duration::from_secs(5));
    drop(opener);
    assert_eq!(
        handed.expect("the reply to a commit a ran for b waited for the blocked listener"),
        2
    );
    assert_eq!(
        copies.expect("the commit's acknowledgement waited for the blocked listener"),
        2
    );
    assert_eq!(value(&b.store, &id, "k").as_deref(), Some(&b"v"[..]));
    a.close();
}
