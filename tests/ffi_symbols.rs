//! The shared library exports the `sr_` C API and nothing else, under the
//! soname `libsessionrepl.so.MAJOR`. Checks the `.so` cargo built beside
//! this test (debug or release, whichever profile runs the tests).
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Command;

fn shared_library() -> PathBuf {
    // target/<profile>/deps/ffi_symbols-<hash> -> target/<profile>/
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let so = dir.join("libsessionrepl.so");
    assert!(so.exists(), "{} not built", so.display());
    so
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (binutils) not runnable: {e}"));
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shared_library_exports_only_the_c_api() {
    let so = shared_library();
    let nm = tool("nm", &["-D", "--defined-only", so.to_str().unwrap()]);
    let names: Vec<&str> = nm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("sr_")).collect();
    assert!(foreign.is_empty(), "exports beyond the C API: {foreign:?}");
    for must in [
        "sr_version",
        "sr_channel_send",
        "sr_config_set",
        "sr_last_error_message",
        "sr_channel_set_member_callback",
        "sr_channel_members",
        "sr_session_store_open",
        "sr_session_store_commit",
        "sr_session_get",
    ] {
        assert!(names.contains(&must), "{must} not exported");
    }
}

#[test]
fn shared_library_has_versioned_soname() {
    let so = shared_library();
    let dynamic = tool("readelf", &["-d", so.to_str().unwrap()]);
    let want = format!("[libsessionrepl.so.{}]", env!("CARGO_PKG_VERSION_MAJOR"));
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("SONAME") && l.contains(&want)),
        "no SONAME {want}:\n{dynamic}"
    );
}
