//! The holders query and invalidate / access from any node: three
//! in-process stores on loopback (backup mode, one backup).

mod store_util;

use sessionrepl::session::StoreLookup;
use store_util::*;

#[test]
fn holders_agree_on_every_node_and_a_non_holder_invalidates() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(3, &cfg);
    for n in &nodes {
        wait_members(&n.store, 2);
    }
    create(&nodes[0].store, "who", "k", "v");
    let h = nodes[0].store.holders(b"who");
    assert_eq!(h.len(), 2, "a primary and one backup: {h:?}");
    assert_ne!(h[0], h[1]);
    for n in &nodes {
        assert_eq!(n.store.holders(b"who"), h, "every node answers alike");
        // The primary comes first.
        assert_eq!(
            n.store.is_primary_for(b"who"),
            n.store.local_addr() == h[0],
            "primary of {:?}",
            n.store.local_addr()
        );
    }
    let outsider = nodes
        .iter()
        .find(|n| !h.contains(&n.store.local_addr()))
        .expect("three nodes, two holders");
    assert_eq!(
        outsider.store.stats().sessions,
        0,
        "a non-holder keeps no copy"
    );

    // Access from the node without a copy: accepted, sent to the holders.
    outsider.store.access(b"who").unwrap();

    // Invalidate from the node without a copy.
    let copies = outsider
        .store
        .invalidate(b"who")
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert!(copies >= 2, "both holders removed it: {copies}");
    for n in &nodes {
        assert!(
            matches!(n.store.get(b"who").unwrap(), StoreLookup::NotFound),
            "gone on {:?}",
            n.store.local_addr()
        );
        wait_for("no copy left", || n.store.stats().sessions == 0);
    }

    // An id no member ever held: invalidating it from a non-holder is
    // acknowledged by its holders, and the id is retired (a create fails).
    let never = (0..1000)
        .map(|i| format!("never-{i}"))
        .find(|id| {
            !nodes[0]
                .store
                .holders(id.as_bytes())
                .contains(&nodes[0].store.local_addr())
        })
        .unwrap();
    let copies = nodes[0]
        .store
        .invalidate(never.as_bytes())
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert!(copies >= 2, "{copies}");
    let mut t = nodes[0].store.begin(never.clone().into_bytes());
    t.set(&b"k"[..], &b"v"[..]);
    assert!(matches!(
        nodes[0].store.create(t).and_then(|h| h.wait(WAIT)),
        Err(sessionrepl::Error::Conflict(_))
    ));
}

#[test]
fn holders_of_a_lone_node_is_itself() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(1, &cfg);
    let me = nodes[0].store.local_addr();
    assert_eq!(nodes[0].store.holders(b"any"), vec![me]);
}

#[test]
fn local_copy_is_the_copy_each_holder_keeps_and_none_elsewhere() {
    let cfg = cluster_settings(&["backupCount=1"]);
    let nodes = cluster(3, &cfg);
    for n in &nodes {
        wait_members(&n.store, 2);
    }
    create(&nodes[0].store, "mine", "k", "v1");
    let h = nodes[0].store.holders(b"mine");
    for n in &nodes {
        let held = h.contains(&n.store.local_addr());
        if held {
            // The backup's copy arrives with the commit's ack at the latest.
            wait_for("the holder's copy", || {
                n.store.local_copy(b"mine").is_some()
            });
            let s = n.store.local_copy(b"mine").unwrap();
            assert_eq!(s.attribute(b"k").map(|v| &v[..]), Some(&b"v1"[..]));
        } else {
            assert!(
                n.store.local_copy(b"mine").is_none(),
                "a non-holder has no local copy"
            );
        }
    }
    assert!(nodes[0].store.local_copy(b"never-made").is_none());
}
