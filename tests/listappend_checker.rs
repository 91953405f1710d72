//! The list-append history checker (tests/support/listappend.rs) finds each
//! anomaly it claims to, and passes a correct history.

#[path = "support/listappend.rs"]
mod listappend;

use listappend::{check, AppendResult, Event, OpKind};

fn app(p: u32, t: (u64, u64), elem: u64, base: Option<&[u64]>, r: AppendResult) -> Event {
    Event {
        process: p,
        invoke: t.0,
        complete: t.1,
        op: OpKind::Append {
            session: "s".into(),
            elem,
            base: base.map(|b| b.to_vec()),
            result: r,
        },
    }
}

fn read(p: u32, t: (u64, u64), v: Option<&[u64]>) -> Event {
    Event {
        process: p,
        invoke: t.0,
        complete: t.1,
        op: OpKind::Read {
            session: "s".into(),
            value: v.map(|b| b.to_vec()),
        },
    }
}

use AppendResult::{Conflict, Fail, Info};
const OK: AppendResult = AppendResult::Ok;

fn errs(h: &[Event]) -> Vec<String> {
    match check(h) {
        Ok(r) => panic!("expected anomalies, got {r}"),
        Err(e) => e,
    }
}

#[test]
fn correct_history_with_conflict_and_info_passes() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), OK),
        app(2, (5, 20), 2, Some(&[]), Conflict), // 1 overtook the empty base
        app(2, (21, 30), 3, Some(&[1]), OK),
        app(3, (22, 40), 4, Some(&[1, 3]), Info), // applied after all
        app(1, (31, 45), 5, Some(&[1, 3]), Conflict),
        read(3, (50, 60), Some(&[1, 3, 4])),
        read(1, (61, 62), Some(&[1, 3, 4])),
    ];
    let r = check(&h).expect("valid");
    assert_eq!(
        (
            r.appends_ok,
            r.appends_conflict,
            r.appends_info,
            r.info_applied
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(r.ok_confirmed, 2);
}

#[test]
fn lost_acknowledged_append_is_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), OK),
        app(2, (11, 20), 2, Some(&[1]), OK),
        read(3, (30, 40), Some(&[1])),
    ];
    let e = errs(&h);
    assert!(
        e.iter()
            .any(|s| s.contains("lost update") && s.contains("append 2")),
        "{e:?}"
    );
}

#[test]
fn not_found_after_ack_is_a_lost_update() {
    let h = vec![app(1, (0, 10), 1, Some(&[]), OK), read(3, (30, 40), None)];
    assert!(errs(&h).iter().any(|s| s.contains("lost update")));
}

#[test]
fn read_going_back_in_time_is_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), Info),
        read(2, (11, 12), Some(&[1])),
        read(3, (13, 14), Some(&[])),
    ];
    assert!(errs(&h).iter().any(|s| s.contains("stale read")));
}

#[test]
fn divergent_lists_are_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), Info),
        app(2, (0, 10), 2, Some(&[]), Info),
        read(3, (11, 12), Some(&[1])),
        read(4, (11, 12), Some(&[2])),
    ];
    assert!(errs(&h).iter().any(|s| s.contains("divergent")));
}

#[test]
fn commit_on_a_stale_base_is_found() {
    // Two acknowledged appends on the same base: one of them overwrote.
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), OK),
        app(2, (0, 10), 2, Some(&[]), OK),
        read(3, (11, 12), Some(&[1, 2])),
    ];
    let e = errs(&h);
    assert!(
        e.iter()
            .any(|s| s.contains("stale base") && s.contains("element 2")),
        "{e:?}"
    );
}

#[test]
fn spurious_conflict_is_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), OK),
        app(2, (11, 20), 2, Some(&[1]), Conflict),
        read(3, (21, 22), Some(&[1])),
    ];
    assert!(errs(&h).iter().any(|s| s.contains("spurious conflict")));
}

#[test]
fn conflict_blamed_on_a_later_append_is_spurious() {
    // The only append at the base's end began after the conflict was reported.
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), Conflict),
        app(2, (11, 20), 2, Some(&[]), OK),
        read(3, (21, 22), Some(&[2])),
    ];
    assert!(errs(&h).iter().any(|s| s.contains("spurious conflict")));
}

#[test]
fn failed_append_that_appears_and_phantoms_are_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), Fail),
        read(3, (21, 22), Some(&[1, 99])),
    ];
    let e = errs(&h);
    assert!(e.iter().any(|s| s.contains("answered Fail")), "{e:?}");
    assert!(e.iter().any(|s| s.contains("phantom element 99")), "{e:?}");
}

#[test]
fn duplicate_element_in_a_list_is_found() {
    let h = vec![
        app(1, (0, 10), 1, Some(&[]), OK),
        read(3, (21, 22), Some(&[1, 1])),
    ];
    assert!(errs(&h).iter().any(|s| s.contains("twice")));
}
