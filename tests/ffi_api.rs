//! The C ABI driven from Rust, the way C calls it: result codes, the
//! last-error detail, NULL handling, and one round trip with a C callback.
//! (The full C-side suite is `ffi-tests/`, run by `make ffi-test`.)

use sessionrepl::ffi::*;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

fn last_error() -> String {
    let mut buf = [0 as c_char; 256];
    let mut n = 0usize;
    // SAFETY: buf is writable for its length; n is a valid out-parameter.
    let r = unsafe { sr_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(r, sr_result::SR_OK);
    // SAFETY: written NUL-terminated on SR_OK.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    let mut cfg = ptr::null_mut();
    // SAFETY: valid out-parameter; strings are NUL-terminated literals.
    unsafe {
        assert_eq!(sr_config_new(&mut cfg), sr_result::SR_OK);
        assert_eq!(
            sr_config_set(cfg, c"foo".as_ptr(), c"1".as_ptr()),
            sr_result::SR_UNKNOWN_CONFIG_KEY
        );
        assert_eq!(last_error(), "unknown configuration key 'foo'");
        assert_eq!(
            sr_config_set(cfg, c"ackTimeout".as_ptr(), c"soon".as_ptr()),
            sr_result::SR_INVALID_CONFIG_VALUE
        );
        assert!(last_error().contains("ackTimeout"), "{}", last_error());
        sr_config_free(cfg);
    }
}

#[test]
fn null_arguments_give_null_parameter_and_leave_outputs_alone() {
    let sentinel = std::ptr::dangling_mut::<sr_channel>();
    let mut ch = sentinel;
    // SAFETY: NULL is allowed everywhere; ch is a valid out-parameter.
    unsafe {
        assert_eq!(
            sr_channel_new(ptr::null(), None, None, ptr::null_mut(), &mut ch),
            sr_result::SR_NULL_PARAMETER
        );
        assert_eq!(ch, sentinel);
        assert_eq!(last_error(), "argument 'cfg' is NULL");
        assert_eq!(sr_config_new(ptr::null_mut()), sr_result::SR_NULL_PARAMETER);
        assert_eq!(
            sr_channel_stop(ptr::null_mut()),
            sr_result::SR_NULL_PARAMETER
        );
        sr_channel_free(ptr::null_mut());
        sr_config_free(ptr::null_mut());
        sr_message_free(ptr::null_mut());
        sr_ticket_free(ptr::null_mut());
    }
}

#[test]
fn result_messages_are_static_and_unknown_codes_are_named() {
    // SAFETY: sr_result_message returns static NUL-terminated strings.
    let msg = |c: c_int| {
        unsafe { CStr::from_ptr(sr_result_message(c)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(msg(0), "success");
    assert_eq!(msg(12345), "unknown result code");
    assert_eq!(
        msg(sr_result::SR_REMOTE_FAILURE as c_int),
        "receiver reported failure"
    );
}

static RECEIVED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn refuse_odd(_ud: *mut c_void, msg: *const sr_message) -> c_int {
    // SAFETY: msg is valid for the callback.
    let len = unsafe { sr_message_len(msg) };
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    (len % 2) as c_int
}

#[test]
fn synchronous_send_returns_the_listeners_verdict() {
    // SAFETY: every pointer passed is valid or NULL as documented; handles
    // are freed once.
    unsafe {
        let mut cfg = ptr::null_mut();
        assert_eq!(sr_config_new(&mut cfg), sr_result::SR_OK);
        assert_eq!(
            sr_config_set_replication_mode(cfg, sr_replication_mode::SR_MODE_SYNCHRONOUS as c_int),
            sr_result::SR_OK
        );
        assert_eq!(sr_config_set_ack_timeout_ms(cfg, 5000), sr_result::SR_OK);
        let (mut rx, mut tx) = (ptr::null_mut(), ptr::null_mut());
        assert_eq!(
            sr_channel_new(cfg, Some(refuse_odd), None, ptr::null_mut(), &mut rx),
            sr_result::SR_OK
        );
        assert_eq!(
            sr_channel_new(cfg, None, None, ptr::null_mut(), &mut tx),
            sr_result::SR_OK
        );
        sr_config_free(cfg);
        assert_eq!(sr_channel_start(rx), sr_result::SR_OK);
        assert_eq!(sr_channel_start(tx), sr_result::SR_OK);
        let mut to = std::mem::zeroed::<sr_addr>();
        assert_eq!(sr_channel_local_addr(rx, &mut to), sr_result::SR_OK);
        let mut id = 0u64;
        assert_eq!(
            sr_channel_send(tx, &to, 1, b"even".as_ptr(), 4, ptr::null(), &mut id),
            sr_result::SR_OK
        );
        assert_ne!(id, 0);
        assert_eq!(
            sr_channel_send(tx, &to, 1, b"odd".as_ptr(), 3, ptr::null(), ptr::null_mut()),
            sr_result::SR_REMOTE_FAILURE
        );
        assert!(
            last_error().contains("listener returned 1"),
            "{}",
            last_error()
        );
        assert_eq!(RECEIVED.load(Ordering::SeqCst), 2);
        assert_eq!(sr_channel_stop(tx), sr_result::SR_OK);
        assert_eq!(sr_channel_stop(tx), sr_result::SR_OK);
        sr_channel_free(tx);
        sr_channel_free(rx); // still running: stopped first
    }
}
