//! Version: the header's `SESSIONREPL_VERSION*` macros and `sr_version()`.
//!
//! The constants are literals because cbindgen copies literals only; the
//! compile-time checks below fail the build when they disagree with
//! Cargo.toml, so bumping the crate version forces them (and then, through
//! `tests/ffi_header.rs`, the header) to follow. The header builds the
//! `SESSIONREPL_VERSION` string from them (cbindgen.toml's trailer).

use std::ffi::c_char;

/// Major version of the library (Cargo.toml's).
pub const SESSIONREPL_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const SESSIONREPL_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const SESSIONREPL_VERSION_PATCH: u32 = 0;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u32;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version part is not a number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

const _: () = {
    assert!(
        SESSIONREPL_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
        "update SESSIONREPL_VERSION_MAJOR in src/ffi/version.rs to Cargo.toml's version"
    );
    assert!(
        SESSIONREPL_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
        "update SESSIONREPL_VERSION_MINOR in src/ffi/version.rs to Cargo.toml's version"
    );
    assert!(
        SESSIONREPL_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
        "update SESSIONREPL_VERSION_PATCH in src/ffi/version.rs to Cargo.toml's version"
    );
};

/// The library's version, `"MAJOR.MINOR.PATCH"` (static, NUL-terminated,
/// never NULL; never free it). Compare with `SESSIONREPL_VERSION` to detect
/// a header/library mismatch at run time.
///
/// Thread safety: may be called from any thread at any time.
#[no_mangle]
pub extern "C" fn sr_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
