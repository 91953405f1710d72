//! The panic and error boundary of every native entry, exceptions, and the
//! attach-once environment of callback threads.

use crate::refs;
use jni::objects::{JClass, JObject, JThrowable, JValue};
use jni::sys::jint;
use jni::JNIEnv;
use sessionrepl::ffi::sr_result;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a native call failed: becomes a `SessionReplException` unless a
/// Java exception is already pending.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A result name (`SR_INVALID_ARGUMENT`, ...) and its detail.
    Named(String, String),
    /// A Java exception is pending; let it propagate.
    Pending,
}

impl Fail {
    /// `SR_INVALID_ARGUMENT` with `detail`.
    pub(crate) fn arg(detail: impl Into<String>) -> Fail {
        Fail::Named("SR_INVALID_ARGUMENT".into(), detail.into())
    }
}

impl From<sessionrepl::Error> for Fail {
    fn from(e: sessionrepl::Error) -> Fail {
        Fail::Named(result_name(&e), e.to_string())
    }
}

impl From<jni::errors::Error> for Fail {
    fn from(e: jni::errors::Error) -> Fail {
        match e {
            jni::errors::Error::JavaException => Fail::Pending,
            jni::errors::Error::NullPtr(what) | jni::errors::Error::NullDeref(what) => {
                Fail::Named("SR_NULL_PARAMETER".into(), format!("null {what}"))
            }
            e => Fail::Named("SR_INVALID_ARGUMENT".into(), format!("JNI: {e}")),
        }
    }
}

/// The `sr_result` name of an engine error, as the C ABI numbers it.
pub(crate) fn result_name(e: &sessionrepl::Error) -> String {
    format!("{:?}", sr_result::from_error(e))
}

/// Runs a native entry: a returned failure or a panic becomes a pending
/// `SessionReplException` and the call returns `default`.
pub(crate) fn entry<'l, T>(
    env: &mut JNIEnv<'l>,
    default: T,
    f: impl FnOnce(&mut JNIEnv<'l>) -> Result<T, Fail>,
) -> T {
    let r = catch_unwind(AssertUnwindSafe(|| f(env)));
    let fail = match r {
        Ok(Ok(v)) => return v,
        Ok(Err(fail)) => fail,
        Err(p) => Fail::Named("SR_PANIC".into(), panic_text(&p)),
    };
    throw(env, fail);
    default
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let m = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (panic caught at the JNI boundary): {m}")
}

/// Makes `fail` the pending exception (unless one is pending already).
fn throw(env: &mut JNIEnv, fail: Fail) {
    if env.exception_check().unwrap_or(true) {
        return;
    }
    let Fail::Named(name, detail) = fail else {
        return;
    };
    let r = refs::get();
    let made = (|| -> jni::errors::Result<()> {
        let n = env.new_string(&name)?;
        let d = env.new_string(&detail)?;
        // SAFETY: the constructor id was looked up on this class with the
        // signature (String, String) in JNI_OnLoad; both arguments are strings.
        let obj = unsafe {
            env.new_object_unchecked(
                refs::exception_class(r),
                r.exception_new,
                &[JValue::Object(&n).as_jni(), JValue::Object(&d).as_jni()],
            )
        }?;
        env.throw(JThrowable::from(obj))
    })();
    if made.is_err() && !env.exception_check().unwrap_or(true) {
        let _ = env.throw_new(
            "java/lang/IllegalStateException",
            format!("{name}: {detail}"),
        );
    }
}

/// Runs `f` on this (engine) thread with a JNI environment: the thread is
/// attached once as a daemon and stays attached until it exits; `f` runs in
/// a local frame (these threads never return to Java, so local refs must
/// not pile up). A panic, or a Java exception left pending (it is printed
/// and cleared), is returned as an error text.
pub(crate) fn with_env<R>(
    f: impl for<'a> FnOnce(&mut JNIEnv<'a>) -> Result<R, Fail>,
) -> Result<R, String> {
    let vm = refs::vm().ok_or_else(|| "JVM not loaded".to_string())?;
    let mut env = vm
        .attach_current_thread_as_daemon()
        .map_err(|e| format!("attach to the JVM: {e}"))?;
    let r = catch_unwind(AssertUnwindSafe(|| env.with_local_frame(16, |env| f(env))));
    let pending = env.exception_check().unwrap_or(false);
    if pending {
        let _ = env.exception_describe();
        let _ = env.exception_clear();
    }
    match r {
        Ok(Ok(v)) if !pending => Ok(v),
        Ok(Ok(_)) | Ok(Err(Fail::Pending)) => Err("the Java callback threw".into()),
        Ok(Err(Fail::Named(n, d))) => Err(format!("{n}: {d}")),
        Err(p) => Err(panic_text(&p)),
    }
}

/// `Native.attachedThreads()`: engine threads attached to the JVM now.
extern "system" fn attached_threads(mut env: JNIEnv, _c: JClass) -> jint {
    entry(&mut env, 0, |_| {
        Ok(refs::vm().map_or(0, |vm| vm.threads_attached()) as jint)
    })
}

/// `Native.checkPanicBoundary()`: panics inside the boundary, which must
/// turn it into a `SessionReplException(SR_PANIC)`. It lets the Java tests
/// prove that a native panic never takes the JVM down.
extern "system" fn check_panic_boundary(mut env: JNIEnv, _c: JClass) {
    entry(&mut env, (), |_| -> Result<(), Fail> {
        panic!("deliberate panic to check the JNI boundary")
    })
}

/// A `byte[]` from Rust bytes (for callbacks and return values).
pub(crate) fn bytes<'a>(env: &mut JNIEnv<'a>, b: &[u8]) -> Result<JObject<'a>, Fail> {
    Ok(env.byte_array_from_slice(b)?.into())
}

pub(crate) fn natives() -> Vec<jni::NativeMethod> {
    vec![
        crate::native("attachedThreads", "()I", attached_threads as *mut c_void),
        crate::native(
            "checkPanicBoundary",
            "()V",
            check_panic_boundary as *mut c_void,
        ),
    ]
}
