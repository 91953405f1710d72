//! Natives of `io.sessionrepl.Channel` (through `io.sessionrepl.Native`):
//! config checks, start/stop, send in every mode with tickets, members,
//! flush, stats; and the message, member and outcome callbacks.

use crate::boundary::{bytes, entry, with_env, Fail};
use crate::dests::To;
use crate::enc::Enc;
use crate::refs;
use jni::objects::{
    GlobalRef, JByteArray, JByteBuffer, JClass, JObject, JObjectArray, JString, JValue,
};
use jni::signature::ReturnType;
use jni::sys::{jboolean, jbyteArray, jint, jlong, jstring};
use jni::JNIEnv;
use sessionrepl::channel::Outcome;
use sessionrepl::config::AckMode;
use sessionrepl::membership::{Member, MemberEvent};
use sessionrepl::transport::{Message, SendOptions, Ticket};
use sessionrepl::{Channel, Config};
use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Builds a config from parallel key and value arrays (Tomcat key names).
pub(crate) fn config_from(
    env: &mut JNIEnv,
    keys: &JObjectArray,
    values: &JObjectArray,
) -> Result<Config, Fail> {
    let cfg = config_parse(env, keys, values)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses each key alone (no cross-key rules).
fn config_parse(
    env: &mut JNIEnv,
    keys: &JObjectArray,
    values: &JObjectArray,
) -> Result<Config, Fail> {
    let n = env.get_array_length(keys)?;
    if env.get_array_length(values)? != n {
        return Err(Fail::arg("keys and values differ in length"));
    }
    let mut cfg = Config::default();
    for i in 0..n {
        let k: JString = env.get_object_array_element(keys, i)?.into();
        let v: JString = env.get_object_array_element(values, i)?.into();
        let k: String = env.get_string(&k)?.into();
        let v: String = env.get_string(&v)?.into();
        cfg.set(&k, &v)?;
    }
    Ok(cfg)
}

/// What a channel handle points at.
pub(crate) struct ChannelHandle {
    pub(crate) ch: Channel,
}

/// The channel behind a handle from Java.
pub(crate) fn chan<'a>(h: jlong) -> Result<&'a ChannelHandle, Fail> {
    if h == 0 {
        return Err(Fail::Named(
            "SR_NOT_RUNNING".into(),
            "channel closed".into(),
        ));
    }
    // SAFETY: a non-zero handle comes from `channel_start` (Box::into_raw)
    // and the Java side never passes it after `channel_free` (its lock).
    Ok(unsafe { &*(h as *const ChannelHandle) })
}

/// A message's metadata: from, peer, member id, message id.
pub(crate) fn message_meta(m: &Message) -> Vec<u8> {
    let mut e = Enc::default();
    e.addr(m.from).addr(m.peer);
    e.0.extend_from_slice(&m.member_id);
    e.u64(m.id);
    e.0
}

/// A member: id, address, domain, alive ms, is-sessionrepl, its
/// `memberPayload`.
pub(crate) fn member_enc(e: &mut Enc, m: &Member) {
    e.0.extend_from_slice(&m.id);
    e.addr(m.addr)
        .bytes(&m.domain)
        .u64(m.alive.as_millis() as u64)
        .u8(m.is_sessionrepl() as u8)
        .bytes(m.member_payload());
}

/// A membership event: kind (1 added, 2 removed, 3 suspect), the member,
/// the removal reason.
pub(crate) fn member_event(ev: &MemberEvent) -> Vec<u8> {
    let mut e = Enc::default();
    let (kind, reason) = match ev {
        MemberEvent::Added(_) => (1, ""),
        MemberEvent::Removed(_, r) => (2, r.as_str()),
        MemberEvent::Suspect(_) => (3, ""),
    };
    e.u8(kind);
    member_enc(&mut e, ev.member());
    e.str(reason);
    e.0
}

/// One outcome: address, status (0 sent, 1 acked, 2 failed), result name
/// and detail (empty unless failed).
fn outcome_enc(e: &mut Enc, to: SocketAddr, o: &Outcome) {
    e.addr(to);
    match o {
        Ok(sessionrepl::channel::Delivery::Sent) => e.u8(0).str("SR_OK").str(""),
        Ok(sessionrepl::channel::Delivery::Acked) => e.u8(1).str("SR_OK").str(""),
        Err(err) => e
            .u8(2)
            .str(&crate::boundary::result_name(err))
            .str(&err.to_string()),
    };
}

/// Calls a `(Object, byte[])` callback of `Native` on an engine thread.
pub(crate) fn callback(
    target: &GlobalRef,
    method: fn(&refs::Refs) -> jni::objects::JStaticMethodID,
    data: &[u8],
) {
    let r = with_env(|env| {
        let r = refs::get();
        let arr = bytes(env, data)?;
        // SAFETY: the method id was looked up on `Native` with signature
        // (Object, byte[]) -> void; the arguments match it.
        unsafe {
            env.call_static_method_unchecked(
                refs::native_class(r),
                method(r),
                ReturnType::Primitive(jni::signature::Primitive::Void),
                &[
                    JValue::Object(target.as_obj()).as_jni(),
                    JValue::Object(&arr).as_jni(),
                ],
            )
        }?;
        Ok(())
    });
    if let Err(e) = r {
        sessionrepl::sr_log!(Warn, "Java callback failed: {e}");
    }
}

extern "system" fn config_check(
    mut env: JNIEnv,
    _c: JClass,
    keys: JObjectArray,
    values: JObjectArray,
    validate: jboolean,
) {
    entry(&mut env, (), |env| {
        if validate != 0 {
            config_from(env, &keys, &values).map(|_| ())
        } else {
            config_parse(env, &keys, &values).map(|_| ())
        }
    })
}

/// Flags of `channelStart`: which listeners the Java channel has.
const WANT_MESSAGES: jint = 1;
const WANT_MEMBERS: jint = 2;
const WANT_OUTCOMES: jint = 4;

extern "system" fn channel_start(
    mut env: JNIEnv,
    _c: JClass,
    target: JObject,
    keys: JObjectArray,
    values: JObjectArray,
    want: jint,
) -> jlong {
    entry(&mut env, 0, |env| {
        let cfg = config_from(env, &keys, &values)?;
        let target = Arc::new(env.new_global_ref(&target)?);
        let mut b = Channel::builder(cfg);
        if want & WANT_MESSAGES != 0 {
            let t = target.clone();
            b = b.listener(move |m: &Message| deliver(&t, m));
            b = b.batch_listener(crate::batch::batch_listener(target.clone()));
        }
        if want & WANT_MEMBERS != 0 {
            let t = target.clone();
            b = b.member_listener(move |ev| callback(&t, |r| r.on_member, &member_event(ev)));
        }
        if want & WANT_OUTCOMES != 0 {
            let t = target.clone();
            b = b.outcome_listener(move |id, to, o| {
                let mut e = Enc::default();
                e.u64(id);
                outcome_enc(&mut e, to, o);
                callback(&t, |r| r.on_outcome, &e.0)
            });
        }
        let ch = b.start()?;
        Ok(Box::into_raw(Box::new(ChannelHandle { ch })) as jlong)
    })
}

/// Hands a message to Java's listener; its failure text (an exception it
/// threw) becomes the FAIL the sender sees.
fn deliver(target: &GlobalRef, m: &Message) -> Result<(), String> {
    let reason = with_env(|env| {
        let r = refs::get();
        let meta = bytes(env, &message_meta(m))?;
        let payload = bytes(env, &m.payload)?;
        // SAFETY: the method id was looked up on `Native` with signature
        // (Object, byte[], byte[]) -> String; the arguments match it.
        let ret = unsafe {
            env.call_static_method_unchecked(
                refs::native_class(r),
                r.on_message,
                ReturnType::Object,
                &[
                    JValue::Object(target.as_obj()).as_jni(),
                    JValue::Object(&meta).as_jni(),
                    JValue::Object(&payload).as_jni(),
                ],
            )
        }?
        .l()?;
        if ret.is_null() {
            return Ok(None);
        }
        let s: String = env.get_string(&JString::from(ret))?.into();
        Ok(Some(s))
    })?;
    match reason {
        None => Ok(()),
        Some(r) => Err(r),
    }
}

extern "system" fn channel_stop(mut env: JNIEnv, _c: JClass, h: jlong) {
    entry(&mut env, (), |_| {
        chan(h)?.ch.stop();
        Ok(())
    })
}

extern "system" fn channel_free(mut env: JNIEnv, _c: JClass, h: jlong) {
    entry(&mut env, (), |_| {
        if h != 0 {
            // SAFETY: from `channel_start`; the Java side frees it once,
            // under its write lock, so no other call is using it.
            let b = unsafe { Box::from_raw(h as *mut ChannelHandle) };
            b.ch.stop();
        }
        Ok(())
    })
}

/// Local address then member id.
extern "system" fn channel_info(mut env: JNIEnv, _c: JClass, h: jlong) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let c = &chan(h)?.ch;
        let mut e = Enc::default();
        e.addr(c.local_addr());
        e.0.extend_from_slice(&c.member_id());
        Ok(bytes(env, &e.0)?.into_raw())
    })
}

/// Send option bits from Java: 0-1 ack (0 none, 1 receipt, 2 delivery, 3
/// the config's default), bit 2 compress, bit 3 the config's compress.
pub(crate) fn options(c: &Channel, bits: jint) -> SendOptions {
    let mut o = c.default_options();
    match bits & 3 {
        0 => o.ack = AckMode::None,
        1 => o.ack = AckMode::Receipt,
        2 => o.ack = AckMode::Delivery,
        _ => {}
    }
    if bits & 8 == 0 {
        o.compress = bits & 4 != 0;
    }
    o
}

/// What a ticket handle points at.
struct TicketHandle {
    id: u64,
    t: Arc<Ticket>,
}

fn ticket<'a>(h: jlong) -> Result<&'a TicketHandle, Fail> {
    if h == 0 {
        return Err(Fail::arg("ticket closed"));
    }
    // SAFETY: from `channel_send` (Box::into_raw); Java frees it once, after
    // its last use (its lock).
    Ok(unsafe { &*(h as *const TicketHandle) })
}

/// Sends; returns the message id, or with `want_ticket` a ticket handle.
#[allow(clippy::too_many_arguments)]
extern "system" fn channel_send(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    set: jlong,
    dests: JByteArray,
    arr: JByteArray,
    buf: JByteBuffer,
    off: jint,
    len: jint,
    opts: jint,
    want_ticket: jboolean,
) -> jlong {
    entry(&mut env, 0, |env| {
        let ch = chan(h)?;
        let c = &ch.ch;
        let to = To::new(env, set, &dests)?;
        let max = c.config().max_frame_size;
        let p = if arr.is_null() {
            crate::intake::buffer(c, env, &buf, off, len, max)?
        } else {
            crate::intake::array(c, env, &arr, off, len, max)?
        };
        let o = options(c, opts);
        if want_ticket != 0 {
            let (id, t) = c.send_with_ticket(to.as_slice(), p, o)?;
            return Ok(Box::into_raw(Box::new(TicketHandle { id, t })) as jlong);
        }
        Ok(c.send(to.as_slice(), p, o)? as jlong)
    })
}

extern "system" fn ticket_id(mut env: JNIEnv, _c: JClass, t: jlong) -> jlong {
    entry(&mut env, 0, |_| Ok(ticket(t)?.id as jlong))
}

/// Waits for every outcome: u32 count, then each outcome.
extern "system" fn ticket_wait(mut env: JNIEnv, _c: JClass, t: jlong, ms: jlong) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let outs = ticket(t)?.t.wait(millis(ms))?;
        let mut e = Enc::default();
        e.u32(outs.len() as u32);
        for (a, o) in &outs {
            outcome_enc(&mut e, *a, o);
        }
        Ok(bytes(env, &e.0)?.into_raw())
    })
}

extern "system" fn ticket_free(mut env: JNIEnv, _c: JClass, t: jlong) {
    entry(&mut env, (), |_| {
        if t != 0 {
            // SAFETY: from `channel_send`; freed once by the Java side.
            drop(unsafe { Box::from_raw(t as *mut TicketHandle) });
        }
        Ok(())
    })
}

/// A non-negative millisecond count from Java.
pub(crate) fn millis(ms: jlong) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

extern "system" fn channel_members(mut env: JNIEnv, _c: JClass, h: jlong) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let ms = chan(h)?.ch.members();
        let mut e = Enc::default();
        e.u32(ms.len() as u32);
        for m in &ms {
            member_enc(&mut e, m);
        }
        Ok(bytes(env, &e.0)?.into_raw())
    })
}

extern "system" fn channel_flush(mut env: JNIEnv, _c: JClass, h: jlong, ms: jlong) {
    entry(&mut env, (), |_| Ok(chan(h)?.ch.flush(millis(ms))?))
}

extern "system" fn channel_prometheus(mut env: JNIEnv, _c: JClass, h: jlong) -> jstring {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let s = chan(h)?.ch.stats().to_prometheus();
        Ok(env.new_string(s)?.into_raw())
    })
}

pub(crate) fn natives() -> Vec<jni::NativeMethod> {
    use crate::native;
    const KV: &str = "[Ljava/lang/String;[Ljava/lang/String;";
    vec![
        native(
            "configCheck",
            &format!("({KV}Z)V"),
            config_check as *mut c_void,
        ),
        native(
            "channelStart",
            &format!("(Ljava/lang/Object;{KV}I)J"),
            channel_start as *mut c_void,
        ),
        native("channelStop", "(J)V", channel_stop as *mut c_void),
        native("channelFree", "(J)V", channel_free as *mut c_void),
        native("channelInfo", "(J)[B", channel_info as *mut c_void),
        native(
            "channelSend",
            "(JJ[B[BLjava/nio/ByteBuffer;IIIZ)J",
            channel_send as *mut c_void,
        ),
        native("ticketId", "(J)J", ticket_id as *mut c_void),
        native("ticketWait", "(JJ)[B", ticket_wait as *mut c_void),
        native("ticketFree", "(J)V", ticket_free as *mut c_void),
        native("channelMembers", "(J)[B", channel_members as *mut c_void),
        native("channelFlush", "(JJ)V", channel_flush as *mut c_void),
        native(
            "channelPrometheus",
            "(J)Ljava/lang/String;",
            channel_prometheus as *mut c_void,
        ),
    ]
}
