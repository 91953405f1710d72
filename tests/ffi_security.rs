//! Security settings through the C ABI: `encryptionKey` and friends are set
//! with `sr_config_set`; a wrong or short key is `SR_INVALID_CONFIG_VALUE`
//! with a last-error message that names the key and never the value.

use sessionrepl::ffi::*;
use std::ffi::{c_char, CStr, CString};
use std::ptr;

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

fn set(cfg: *mut sr_config, k: &str, v: &str) -> sr_result {
    let (k, v) = (CString::new(k).unwrap(), CString::new(v).unwrap());
    // SAFETY: cfg came from sr_config_new; strings are NUL-terminated.
    unsafe { sr_config_set(cfg, k.as_ptr(), v.as_ptr()) }
}

#[test]
fn encryption_keys_are_set_through_sr_config_set_and_bad_ones_refused_without_echo() {
    let mut cfg = ptr::null_mut();
    // SAFETY: valid out-parameter.
    assert_eq!(unsafe { sr_config_new(&mut cfg) }, sr_result::SR_OK);
    let key = "8f3a".repeat(16);
    assert_eq!(set(cfg, "encryptionKey", &key), sr_result::SR_OK);
    assert_eq!(
        set(cfg, "encryptionAlgorithm", "AES/GCM/NoPadding"),
        sr_result::SR_OK
    );
    for bad in [
        "8f3a8f3a",
        "not-a-key-at-all-not-a-key-at-all",
        &"8f3a".repeat(9),
    ] {
        assert_eq!(
            set(cfg, "encryptionKey", bad),
            sr_result::SR_INVALID_CONFIG_VALUE
        );
        let e = last_error();
        assert!(e.contains("encryptionKey"), "{e}");
        assert!(!e.contains(bad), "the error repeats the value: {e}");
    }
    assert_eq!(
        set(cfg, "encryptionAlgorithm", "AES/CBC/PKCS5Padding"),
        sr_result::SR_INVALID_CONFIG_VALUE
    );
    assert_eq!(
        set(cfg, "tlsCaCertificateFile", "/etc/ssl/ca.pem"),
        sr_result::SR_OK
    );
    // SAFETY: cfg came from sr_config_new and is freed once.
    unsafe { sr_config_free(cfg) };
}
