//! The session-store C ABI driven from Rust, the way C calls it: a
//! transaction is consumed on every path, a snapshot reads back what was
//! committed, and sizes and lengths are checked. (The full C-side suite,
//! with a three-store cluster, is `ffi-tests/test_store.c`.)

use sessionrepl::ffi::*;
use std::ptr;

/// A store alone on 127.0.0.1 (no membership), ready.
fn solo_store() -> *mut sr_session_store {
    solo_store_with(&[])
}

/// [`solo_store`] with more keys.
fn solo_store_with(keys: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> *mut sr_session_store {
    let mut cfg = ptr::null_mut();
    let mut st = ptr::null_mut();
    // SAFETY: valid out-parameters; NUL-terminated literals.
    unsafe {
        assert_eq!(sr_config_new(&mut cfg), sr_result::SR_OK);
        for (k, v) in keys {
            assert_eq!(sr_config_set(cfg, k.as_ptr(), v.as_ptr()), sr_result::SR_OK);
        }
        assert_eq!(
            sr_config_set(cfg, c"membershipType".as_ptr(), c"none".as_ptr()),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_config_set(cfg, c"tcpListenAddress".as_ptr(), c"127.0.0.1".as_ptr()),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_session_store_open(cfg, None, ptr::null_mut(), &mut st),
            sr_result::SR_OK
        );
        sr_config_free(cfg);
        assert_eq!(sr_session_store_wait_ready(st, 30_000), sr_result::SR_OK);
    }
    st
}

#[test]
fn committed_attributes_read_back_from_a_snapshot_in_name_order() {
    let st = solo_store();
    // SAFETY: `st` is live; every pointer passed is valid for its length.
    unsafe {
        let mut txn = ptr::null_mut();
        assert_eq!(
            sr_session_store_begin(st, b"s1".as_ptr(), 2, &mut txn),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_txn_set(txn, c"b".as_ptr(), b"2".as_ptr(), 1),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_txn_set(txn, c"a".as_ptr(), b"1".as_ptr(), 1),
            sr_result::SR_OK
        );
        let mut copies = 0usize;
        assert_eq!(
            sr_session_store_create(st, txn, 30_000, &mut copies),
            sr_result::SR_OK
        );
        assert_eq!(copies, 1);
        let mut s = ptr::null_mut();
        assert_eq!(
            sr_session_store_get(st, b"s1".as_ptr(), 2, 0, &mut s, ptr::null_mut()),
            sr_result::SR_OK
        );
        assert_eq!(sr_session_attribute_count(s), 2);
        let (mut n, mut nl, mut v, mut vl) = (ptr::null(), 0usize, ptr::null(), 0usize);
        assert_eq!(
            sr_session_attribute_at(s, 0, &mut n, &mut nl, &mut v, &mut vl),
            sr_result::SR_OK
        );
        assert_eq!(std::slice::from_raw_parts(n, nl), b"a");
        assert_eq!(std::slice::from_raw_parts(v, vl), b"1");
        let mut info = std::mem::zeroed::<sr_session_info>();
        assert_eq!(sr_session_info_get(s, &mut info), sr_result::SR_OK);
        assert!(info.version >= 1);
        assert_eq!(info.attribute_count, 2);
        sr_session_free(s);
        sr_session_store_free(st);
    }
}

#[test]
fn a_txn_is_consumed_even_when_the_store_is_null() {
    let st = solo_store();
    // SAFETY: `st` is live; the txn is handed over once per call.
    unsafe {
        let mut txn = ptr::null_mut();
        assert_eq!(
            sr_session_store_begin(st, b"x".as_ptr(), 1, &mut txn),
            sr_result::SR_OK
        );
        // Freed by the call although the store is NULL (no leak under the
        // test's allocator; a double free would crash the next call).
        assert_eq!(
            sr_session_store_commit(ptr::null(), txn, 0, ptr::null_mut()),
            sr_result::SR_NULL_PARAMETER
        );
        assert_eq!(
            sr_session_store_begin(st, b"x".as_ptr(), 1, &mut txn),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_session_store_commit(st, txn, 1_000, ptr::null_mut()),
            sr_result::SR_NOT_FOUND
        );
        let mut stats = sr_session_stats::default();
        assert_eq!(
            sr_session_store_stats(st, &mut stats, 12),
            sr_result::SR_INVALID_ARGUMENT
        );
        assert_eq!(
            sr_session_store_stats(st, &mut stats, std::mem::size_of::<sr_session_stats>()),
            sr_result::SR_OK
        );
        assert_eq!(stats.sessions, 0);
        sr_session_store_free(st);
    }
}

/// `sr_session_store_get` is not an access: a session only read expires
/// after its max inactive interval, while one that is also passed to
/// `sr_session_store_access` stays (docs/C-API.md says so).
#[test]
fn get_does_not_count_as_an_access_for_expiry_but_access_does() {
    let st = solo_store_with(&[(c"expireCheckInterval", c"50")]);
    // SAFETY: `st` is live; every pointer passed is valid for its length.
    unsafe {
        for id in [&b"read-only"[..], &b"accessed"[..]] {
            let mut txn = ptr::null_mut();
            assert_eq!(
                sr_session_store_begin(st, id.as_ptr(), id.len(), &mut txn),
                sr_result::SR_OK
            );
            assert_eq!(sr_txn_set_max_inactive(txn, 1), sr_result::SR_OK);
            assert_eq!(
                sr_session_store_create(st, txn, 30_000, ptr::null_mut()),
                sr_result::SR_OK
            );
        }
        let get = |id: &[u8]| {
            let mut s = ptr::null_mut();
            let r = sr_session_store_get(st, id.as_ptr(), id.len(), 0, &mut s, ptr::null_mut());
            sr_session_free(s);
            r
        };
        let started = std::time::Instant::now();
        // Read both every 100 ms, and access one of them, until the
        // read-only one is gone (1 s interval; bounded at 20 s for a loaded
        // machine).
        loop {
            assert_eq!(
                sr_session_store_access(st, b"accessed".as_ptr(), 8),
                sr_result::SR_OK
            );
            assert_eq!(
                get(b"accessed"),
                sr_result::SR_OK,
                "the accessed session expired"
            );
            match get(b"read-only") {
                sr_result::SR_OK => {}
                sr_result::SR_NOT_FOUND => break,
                r => panic!("get: {r:?}"),
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "a session only read for 20 s did not expire: get counts as an access"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
        assert_eq!(get(b"accessed"), sr_result::SR_OK);
        let mut stats = sr_session_stats::default();
        assert_eq!(
            sr_session_store_stats(st, &mut stats, std::mem::size_of::<sr_session_stats>()),
            sr_result::SR_OK
        );
        assert_eq!(stats.expired, 1);
        sr_session_store_free(st);
    }
}
