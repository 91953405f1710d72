//! Classes and method ids cached in `JNI_OnLoad`, and the `JavaVM` the
//! callback threads attach to.

use jni::objects::{GlobalRef, JClass, JMethodID, JStaticMethodID};
use jni::{JNIEnv, JavaVM};
use std::sync::OnceLock;

/// The class whose static natives this library implements.
pub(crate) const NATIVE_CLASS: &str = "io/sessionrepl/Native";
const EXCEPTION_CLASS: &str = "io/sessionrepl/SessionReplException";

/// What the natives and callbacks use without `FindClass`.
pub(crate) struct Refs {
    /// `io.sessionrepl.Native`.
    pub native: GlobalRef,
    /// `io.sessionrepl.SessionReplException`.
    pub exception: GlobalRef,
    /// `SessionReplException(String result, String detail)`.
    pub exception_new: JMethodID,
    /// `Native.onMessage(Object, byte[] meta, byte[] payload) -> String`.
    pub on_message: JStaticMethodID,
    /// `Native.onBatch(Object, ByteBuffer, int count, int length) -> String[]`.
    pub on_batch: JStaticMethodID,
    /// `Native.allocBatch(int capacity) -> ByteBuffer` (direct).
    pub alloc_batch: JStaticMethodID,
    /// `Native.onMember(Object, byte[])`.
    pub on_member: JStaticMethodID,
    /// `Native.onOutcome(Object, byte[])`.
    pub on_outcome: JStaticMethodID,
    /// `Native.onSessionEvent(Object, byte[])`.
    pub on_session_event: JStaticMethodID,
}

static REFS: OnceLock<Refs> = OnceLock::new();
static VM: OnceLock<JavaVM> = OnceLock::new();

/// Looks the classes and methods up (once per process: one class loader
/// may load the library).
pub(crate) fn init(env: &mut JNIEnv) -> Result<(), String> {
    if REFS.get().is_some() {
        return Ok(());
    }
    let e = |what: &str, err: jni::errors::Error| format!("{what}: {err}");
    let native = env
        .find_class(NATIVE_CLASS)
        .map_err(|x| e(NATIVE_CLASS, x))?;
    let exc = env
        .find_class(EXCEPTION_CLASS)
        .map_err(|x| e(EXCEPTION_CLASS, x))?;
    let exception_new = env
        .get_method_id(&exc, "<init>", "(Ljava/lang/String;Ljava/lang/String;)V")
        .map_err(|x| e("SessionReplException.<init>", x))?;
    let mut stat = |name: &str, sig: &str| {
        env.get_static_method_id(&native, name, sig)
            .map_err(|x| e(name, x))
    };
    let on_message = stat("onMessage", "(Ljava/lang/Object;[B[B)Ljava/lang/String;")?;
    let on_batch = stat(
        "onBatch",
        "(Ljava/lang/Object;Ljava/nio/ByteBuffer;II)[Ljava/lang/String;",
    )?;
    let alloc_batch = stat("allocBatch", "(I)Ljava/nio/ByteBuffer;")?;
    let on_member = stat("onMember", "(Ljava/lang/Object;[B)V")?;
    let on_outcome = stat("onOutcome", "(Ljava/lang/Object;[B)V")?;
    let on_session_event = stat("onSessionEvent", "(Ljava/lang/Object;[B)V")?;
    let refs = Refs {
        native: env
            .new_global_ref(&native)
            .map_err(|x| e("global ref", x))?,
        exception: env.new_global_ref(&exc).map_err(|x| e("global ref", x))?,
        exception_new,
        on_message,
        on_batch,
        alloc_batch,
        on_member,
        on_outcome,
        on_session_event,
    };
    let _ = REFS.set(refs);
    Ok(())
}

/// Keeps the VM for callback threads.
pub(crate) fn set_vm(vm: JavaVM) {
    let _ = VM.set(vm);
}

/// The cached refs (set by `JNI_OnLoad` before any native can run).
pub(crate) fn get() -> &'static Refs {
    REFS.get().expect("JNI_OnLoad ran")
}

/// The VM, once loaded.
pub(crate) fn vm() -> Option<&'static JavaVM> {
    VM.get()
}

/// `Native` as a class reference.
pub(crate) fn native_class(r: &'static Refs) -> &'static JClass<'static> {
    <&JClass>::from(r.native.as_obj())
}

/// `SessionReplException` as a class reference.
pub(crate) fn exception_class(r: &'static Refs) -> &'static JClass<'static> {
    <&JClass>::from(r.exception.as_obj())
}
