//! The native side of the `io.sessionrepl` Java API (`libsessionrepl_jni.so`).
//!
//! Thin over the Rust API: `io.sessionrepl.Native` declares the methods,
//! [`JNI_OnLoad`] registers them with `RegisterNatives` and caches the
//! classes and method ids the callbacks need (`FindClass` fails on threads
//! the engine attached, for classes outside the system class loader).
//!
//! Conventions, as in the C ABI:
//! - every entry runs inside `boundary::entry`: a Rust panic becomes a
//!   `SessionReplException` with the result name `SR_PANIC`, never a crash;
//! - engine errors become `SessionReplException(result, detail)` with the
//!   `sr_result` name (`SR_TIMEOUT`, `SR_INVALID_CONFIG_VALUE`, ...);
//! - handles are `Box` pointers passed as `long`; the Java side guarantees
//!   that a handle is freed once and never used after (a read-write lock
//!   around every call);
//! - callback threads (receiver, sender I/O, membership, store driver)
//!   attach to the JVM once, as daemons, and detach when they exit, which
//!   is when the channel or store stops;
//! - structured values cross as small byte encodings (`enc`) decoded by
//!   `io.sessionrepl.Wire` on the Java side, and Java's input is decoded as
//!   hostile (bounded lengths, clear errors).
#![deny(missing_docs)]

mod batch;
mod boundary;
mod channel;
mod dests;
mod enc;
mod intake;
mod refs;
mod store;

use jni::sys::{jint, JNI_ERR, JNI_VERSION_1_8};
use jni::JavaVM;
use std::ffi::c_void;

/// Called by the JVM when `System.load`/`loadLibrary` loads this library:
/// registers the natives of `io.sessionrepl.Native` and caches the refs the
/// callbacks use. Returns the JNI version, or `JNI_ERR` (the load fails with
/// an `UnsatisfiedLinkError`) when a class or method is missing.
///
/// # Safety
/// Called by the JVM only, with its own `JavaVM` pointer.
#[no_mangle]
pub unsafe extern "system" fn JNI_OnLoad(
    vm: *mut jni::sys::JavaVM,
    _reserved: *mut c_void,
) -> jint {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: the JVM passes its own valid JavaVM pointer.
        let vm = unsafe { JavaVM::from_raw(vm) }.map_err(|e| e.to_string())?;
        let mut env = vm.get_env().map_err(|e| e.to_string())?;
        refs::init(&mut env)?;
        let class = env
            .find_class(refs::NATIVE_CLASS)
            .map_err(|e| e.to_string())?;
        env.register_native_methods(&class, &natives())
            .map_err(|e| format!("RegisterNatives: {e}"))?;
        refs::set_vm(vm);
        Ok::<(), String>(())
    });
    match r {
        Ok(Ok(())) => JNI_VERSION_1_8,
        Ok(Err(e)) => {
            eprintln!("sessionrepl_jni: JNI_OnLoad failed: {e}");
            JNI_ERR
        }
        Err(_) => {
            eprintln!("sessionrepl_jni: JNI_OnLoad panicked");
            JNI_ERR
        }
    }
}

fn natives() -> Vec<jni::NativeMethod> {
    let mut v = Vec::new();
    v.extend(boundary::natives());
    v.extend(channel::natives());
    v.extend(batch::natives());
    v.extend(dests::natives());
    v.extend(store::natives());
    v
}

/// One `NativeMethod` row.
pub(crate) fn native(name: &str, sig: &str, f: *mut c_void) -> jni::NativeMethod {
    jni::NativeMethod {
        name: name.into(),
        sig: sig.into(),
        fn_ptr: f,
    }
}
