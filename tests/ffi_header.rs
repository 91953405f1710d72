//! The checked-in C header is what cbindgen makes from `src/ffi/` now, and
//! its version macros match Cargo.toml. Run `make ffi-header` to refresh it.

use std::path::Path;

fn generated() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen failed on src/ffi")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

fn checked_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/sessionrepl.h");
    std::fs::read_to_string(path).expect("include/sessionrepl.h")
}

#[test]
fn checked_in_header_is_not_stale() {
    let (want, have) = (generated(), checked_in());
    if want != have {
        let first = want
            .lines()
            .zip(have.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(have.lines().count()));
        panic!(
            "include/sessionrepl.h is stale (first difference at line {}): run `make ffi-header` and commit it",
            first + 1
        );
    }
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let h = checked_in();
    for (name, want) in [
        ("SESSIONREPL_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("SESSIONREPL_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("SESSIONREPL_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {want}\n");
        assert!(h.contains(&line), "header lacks `{}`", line.trim());
    }
    let v = unsafe { std::ffi::CStr::from_ptr(sessionrepl::ffi::sr_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn header_declares_every_exported_function() {
    let h = checked_in();
    let mut n = 0;
    for dir_entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi")).unwrap()
    {
        let path = dir_entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for chunk in src.split("#[no_mangle]").skip(1) {
            let name = chunk
                .split("fn ")
                .nth(1)
                .and_then(|s| s.split('(').next())
                .expect("a function after #[no_mangle]")
                .trim();
            assert!(
                h.contains(&format!(" {name}(")) || h.contains(&format!("*{name}(")),
                "{name} missing from the header"
            );
            n += 1;
        }
    }
    assert!(n >= 39, "found only {n} exports");
}
