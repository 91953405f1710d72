//! MemberTable on a virtual clock.

use super::*;
use crate::membership::member::caps;
use crate::wire::tribes::{TribesMember, SHUTDOWN_COMMAND};

const DROP: Duration = Duration::from_millis(3000);

fn local() -> LocalMemberInfo {
    LocalMemberInfo::new("127.0.0.1:4000".parse().unwrap(), [0xEE; 16], "")
}

fn table(fd: bool, domain: &[u8]) -> MemberTable {
    MemberTable::new(
        TableConfig {
            drop_time: DROP,
            domain: domain.to_vec(),
            failure_detection: fd,
            remove_suspects_timeout: Duration::from_secs(30),
        },
        &local(),
    )
}

fn blob(port: u16, id: u8, domain: &[u8], alive: i64) -> Vec<u8> {
    let mut m = TribesMember::new([127, 0, 0, 1].into(), port, [id; 16]);
    m.domain = domain.to_vec();
    m.alive_ms = alive;
    m.to_bytes().unwrap()
}

fn events(t: &mut MemberTable) -> Vec<MemberEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn probes(t: &mut MemberTable) -> Vec<ProbeRequest> {
    std::iter::from_fn(|| t.poll_probe()).collect()
}

#[test]
fn first_heartbeat_adds_and_repeats_only_refresh() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 10), t0);
    t.handle_datagram(&blob(4001, 1, b"", 510), t0 + Duration::from_millis(500));
    let ev = events(&mut t);
    assert_eq!(ev.len(), 1);
    let MemberEvent::Added(m) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(m.addr, "127.0.0.1:4001".parse().unwrap());
    assert_eq!(m.id, [1; 16]);
    assert!(!m.is_sessionrepl());
    assert_eq!(t.members()[0].alive, Duration::from_millis(510));
    assert_eq!(t.stats().heartbeats, 2);
}

#[test]
fn sessionrepl_facts_are_recognised() {
    let mut t = table(true, b"");
    let mut m = TribesMember::new([127, 0, 0, 1].into(), 4001, [1; 16]);
    m.payload = PeerFacts::new(caps::ALL).encode().to_vec();
    t.handle_datagram(&m.to_bytes().unwrap(), Instant::now());
    let f = t.members()[0].facts.unwrap();
    assert_eq!(f.capabilities, caps::ALL);
}

#[test]
fn silent_member_is_dropped_after_drop_time_without_detection() {
    let mut t = table(false, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    events(&mut t);
    assert_eq!(t.next_timeout(), Some(t0 + DROP));
    t.handle_timeout(t0 + DROP - Duration::from_millis(1));
    assert!(events(&mut t).is_empty());
    t.handle_timeout(t0 + DROP);
    let ev = events(&mut t);
    assert!(matches!(
        &ev[..],
        [MemberEvent::Removed(_, RemoveReason::Timeout)]
    ));
    assert!(t.members().is_empty());
    assert_eq!(t.next_timeout(), None);
}

#[test]
fn silent_member_is_verified_then_removed_when_unreachable() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    events(&mut t);
    t.handle_timeout(t0 + DROP);
    assert!(events(&mut t).is_empty(), "no removal before the check");
    let p = probes(&mut t);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].addr, "127.0.0.1:4001".parse().unwrap());
    t.handle_timeout(t0 + DROP * 2);
    assert!(probes(&mut t).is_empty(), "one check at a time");
    t.handle_probe_result(p[0].token, false, t0 + DROP * 2);
    let ev = events(&mut t);
    assert!(matches!(
        &ev[..],
        [MemberEvent::Removed(_, RemoveReason::Timeout)]
    ));
}

#[test]
fn reachable_silent_member_becomes_suspect_and_expires() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let addr: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    events(&mut t);
    t.handle_timeout(t0 + DROP);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, true, t0 + DROP);
    assert!(matches!(&events(&mut t)[..], [MemberEvent::Suspect(_)]));
    assert_eq!(t.members().len(), 1, "suspects stay listed");
    assert!(t.is_suspect(addr));
    // Re-checked after another drop time; still reachable: no new event.
    t.handle_timeout(t0 + DROP * 2);
    let p = probes(&mut t);
    assert_eq!(p.len(), 1);
    t.handle_probe_result(p[0].token, true, t0 + DROP * 2);
    assert!(events(&mut t).is_empty());
    // After removeSuspectsTimeout it goes.
    t.handle_timeout(t0 + DROP + Duration::from_secs(30));
    let ev = events(&mut t);
    assert!(matches!(
        &ev[..],
        [MemberEvent::Removed(_, RemoveReason::Timeout)]
    ));
}

#[test]
fn heartbeat_clears_suspicion_and_voids_pending_check() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    events(&mut t);
    t.handle_timeout(t0 + DROP);
    let p = probes(&mut t);
    t.handle_datagram(&blob(4001, 1, b"", 3100), t0 + DROP);
    t.handle_probe_result(p[0].token, false, t0 + DROP);
    assert!(events(&mut t).is_empty());
    assert_eq!(t.members().len(), 1);
}

#[test]
fn shutdown_removes_at_once() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    let mut m = TribesMember::decode(&blob(4001, 1, b"", 100)).unwrap();
    m.command = SHUTDOWN_COMMAND.to_vec();
    t.handle_datagram(&m.to_bytes().unwrap(), t0 + Duration::from_millis(1));
    let ev = events(&mut t);
    assert!(matches!(
        &ev[..],
        [
            MemberEvent::Added(_),
            MemberEvent::Removed(_, RemoveReason::Shutdown)
        ]
    ));
    assert!(t.members().is_empty());
    // A shutdown of an unknown member changes nothing.
    t.handle_datagram(&m.to_bytes().unwrap(), t0 + Duration::from_millis(2));
    assert!(events(&mut t).is_empty());
}

#[test]
fn restart_at_same_address_replaces_the_old_member() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 9000), t0);
    t.handle_datagram(&blob(4001, 2, b"", 0), t0);
    let ev = events(&mut t);
    assert_eq!(ev.len(), 3);
    assert!(matches!(&ev[1], MemberEvent::Removed(m, RemoveReason::Restarted) if m.id == [1; 16]));
    assert!(matches!(&ev[2], MemberEvent::Added(m) if m.id == [2; 16]));
}

#[test]
fn domain_filter_ignores_other_domains() {
    let mut t = table(true, b"shop");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"other", 0), t0);
    t.handle_datagram(&blob(4002, 2, b"", 0), t0);
    t.handle_datagram(&blob(4003, 3, b"shop", 0), t0);
    assert_eq!(t.members().len(), 1);
    assert_eq!(t.members()[0].domain, b"shop");
    assert_eq!(t.stats().foreign_domain, 2);
    // An empty local domain accepts every domain.
    let mut any = table(true, b"");
    any.handle_datagram(&blob(4001, 1, b"other", 0), t0);
    assert_eq!(any.members().len(), 1);
}

#[test]
fn hostile_and_own_heartbeats_are_counted_not_listed() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let good = blob(4001, 1, b"", 0);
    t.handle_datagram(&good[..40], t0);
    t.handle_datagram(b"garbage", t0);
    t.handle_datagram(b"", t0);
    let mut bad_port = TribesMember::decode(&good).unwrap();
    bad_port.port = 70000;
    t.handle_datagram(&bad_port.to_bytes().unwrap(), t0);
    let mut zero_host = TribesMember::decode(&good).unwrap();
    zero_host.host = [0, 0, 0, 0].into();
    t.handle_datagram(&zero_host.to_bytes().unwrap(), t0);
    let mut trailing = good.clone();
    trailing.push(1);
    t.handle_datagram(&trailing, t0);
    t.handle_datagram(b"FLT2002\0\0\0\0TLF2003", t0);
    t.handle_datagram(&blob(4000, 0xEE, b"", 0), t0);
    assert!(t.members().is_empty());
    assert!(events(&mut t).is_empty());
    let s = t.stats();
    assert_eq!(s.hostile, 6);
    assert_eq!(s.broadcasts_ignored, 1);
    assert_eq!(s.own, 1);
    assert_eq!(s.heartbeats, 0);
}

#[test]
fn forged_id_flood_is_bounded() {
    let mut t = table(false, b"");
    let t0 = Instant::now();
    for i in 0..(MAX_MEMBERS + 50) {
        let mut m = TribesMember::new([127, 0, 0, 2].into(), 1000 + i as u16, [0; 16]);
        m.unique_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        t.handle_datagram(&m.to_bytes().unwrap(), t0);
    }
    assert_eq!(t.members().len(), MAX_MEMBERS);
    assert_eq!(t.stats().table_full, 50);
}

#[test]
fn send_failure_is_verified() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    t.handle_datagram(&blob(4001, 1, b"", 0), t0);
    events(&mut t);
    t.report_send_failure(a, t0);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, true, t0);
    assert!(matches!(&events(&mut t)[..], [MemberEvent::Suspect(_)]));
    t.report_send_failure(a, t0);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, false, t0);
    assert!(matches!(
        &events(&mut t)[..],
        [MemberEvent::Removed(_, RemoveReason::Failure)]
    ));
    // Unknown addresses are ignored.
    t.report_send_failure("127.0.0.1:9".parse().unwrap(), t0);
    assert!(probes(&mut t).is_empty());
}

#[test]
fn static_members_go_down_on_failed_ping_and_come_back() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let a: SocketAddr = "127.0.0.1:4005".parse().unwrap();
    assert!(t.add_configured(a, None, MemberSource::Static, t0));
    assert!(
        !t.add_configured(a, None, MemberSource::Static, t0),
        "duplicate"
    );
    assert!(
        !t.add_configured(local().addr, None, MemberSource::Static, t0),
        "self"
    );
    assert!(matches!(&events(&mut t)[..], [MemberEvent::Added(m)] if m.id == derived_id(&a)));
    // Silence never drops a static member.
    t.handle_timeout(t0 + DROP * 10);
    assert!(events(&mut t).is_empty() && probes(&mut t).is_empty());
    t.ping_configured(t0);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, false, t0);
    assert!(matches!(
        &events(&mut t)[..],
        [MemberEvent::Removed(_, RemoveReason::Failure)]
    ));
    assert!(t.members().is_empty());
    t.ping_configured(t0);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, false, t0);
    assert!(events(&mut t).is_empty(), "still down, no repeat");
    t.ping_configured(t0);
    let p = probes(&mut t);
    t.handle_probe_result(p[0].token, true, t0);
    assert!(matches!(&events(&mut t)[..], [MemberEvent::Added(_)]));
    assert_eq!(t.members().len(), 1);
}

#[test]
fn dns_answers_add_and_remove() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let a: SocketAddr = "127.0.0.2:4000".parse().unwrap();
    let b: SocketAddr = "127.0.0.3:4000".parse().unwrap();
    t.set_dns_members(&[a, b, local().addr], t0);
    assert_eq!(events(&mut t).len(), 2);
    t.set_dns_members(&[b], t0);
    let ev = events(&mut t);
    assert!(matches!(&ev[..], [MemberEvent::Removed(m, RemoveReason::Timeout)] if m.addr == a));
    assert_eq!(t.members().len(), 1);
}

#[test]
fn members_are_listed_longest_running_first() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    t.handle_datagram(&blob(4001, 1, b"", 100), t0);
    t.handle_datagram(&blob(4002, 2, b"", 9000), t0);
    t.handle_datagram(&blob(4003, 3, b"", 500), t0);
    let ports: Vec<u16> = t.members().iter().map(|m| m.addr.port()).collect();
    assert_eq!(ports, [4002, 4003, 4001]);
}

#[test]
fn heartbeats_at_a_configured_address_refresh_it_and_shutdown_takes_it_down() {
    let mut t = table(true, b"");
    let t0 = Instant::now();
    let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    t.add_configured(a, None, MemberSource::Static, t0);
    let mut m = TribesMember::decode(&blob(4001, 1, b"d", 50)).unwrap();
    m.payload = PeerFacts::new(caps::ALL).encode().to_vec();
    t.handle_datagram(&m.to_bytes().unwrap(), t0);
    let listed = t.members();
    assert_eq!(listed.len(), 1, "no second entry for the same address");
    assert!(listed[0].is_sessionrepl());
    assert_eq!(listed[0].source, MemberSource::Static);
    m.command = SHUTDOWN_COMMAND.to_vec();
    t.handle_datagram(&m.to_bytes().unwrap(), t0);
    let ev = events(&mut t);
    assert!(matches!(
        &ev[..],
        [
            MemberEvent::Added(_),
            MemberEvent::Removed(_, RemoveReason::Shutdown)
        ]
    ));
    assert!(t.members().is_empty());
}
