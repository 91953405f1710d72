//! Link settings of the C library (`libsessionrepl.so`): its soname, so that
//! programs record `libsessionrepl.so.0` and survive compatible upgrades, and
//! a version script that exports the `sr_` C API and nothing else.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let map = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("src/ffi/exports.map");
    println!("cargo:rerun-if-changed=src/ffi/exports.map");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsessionrepl.so.{major}");
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            map.display()
        );
    }
}
