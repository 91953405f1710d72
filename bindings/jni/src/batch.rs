//! Batches across JNI: one upcall per batch of received messages (the
//! engine's [`BatchListener`]) and one native call per batch of messages to
//! send. A JNI transition, a local frame and two `byte[]`s per message cost
//! more than the engine's own work per 1 KiB message; per batch they do not.
//!
//! Delivery: a batch's messages (at most 1 MiB of them per upcall) are laid
//! out in a direct `ByteBuffer`
//! that Java allocated (so the JVM owns that memory, and a buffer a
//! listener kept past its call can never point at freed memory), each as
//! `u32 meta length, meta, u32 payload length, payload` (the meta as
//! `channel::message_meta` encodes it), and `Native.onBatch` returns null or one
//! failure text (or null) per message. Buffers are pooled per channel (at
//! most 8 of at most 1 MiB; a larger single message gets a buffer of its
//! own that is not kept).
//!
//! Sending: a direct `ByteBuffer` holding `u32 length, bytes` per message;
//! each message is copied once, from the buffer into the channel's pooled
//! intake ([`crate::intake`]), and queued as its own frame.

use crate::boundary::{entry, with_env, Fail};
use crate::channel::{chan, options};
use crate::dests::To;
use crate::enc::Enc;
use crate::intake::{direct, span};
use crate::refs;
use bytes::Bytes;
use jni::objects::{GlobalRef, JByteArray, JByteBuffer, JClass, JObjectArray, JString, JValue};
use jni::signature::ReturnType;
use jni::sys::{jint, jlong};
use jni::JNIEnv;
use sessionrepl::transport::{BatchListener, Message};
use std::sync::{Arc, Mutex};

/// The smallest batch buffer (grown to fit the largest batch).
const MIN_BUFFER: usize = 64 * 1024;
/// A batch is cut when its buffer would grow past this (a single larger
/// message still gets a buffer of its own size).
const MAX_BUFFER: usize = 1024 * 1024;
/// Pooled buffers kept per channel (one per worker in practice).
const MAX_POOLED: usize = 8;

/// A direct `ByteBuffer` allocated by Java and its memory.
struct JavaBuffer {
    buf: GlobalRef,
    ptr: *mut u8,
    cap: usize,
}

// SAFETY: the pointer is the direct buffer's memory, which the global
// reference keeps alive; a pooled buffer is used by one thread at a time
// (taken out of the pool's mutex while in use).
unsafe impl Send for JavaBuffer {}

/// The per-channel pool of batch buffers.
#[derive(Default)]
pub(crate) struct BufferPool(Mutex<Vec<JavaBuffer>>);

impl BufferPool {
    fn take(&self) -> Option<JavaBuffer> {
        self.0.lock().ok()?.pop()
    }

    /// Keeps `b` for the next batch, unless it is one oversized message's
    /// buffer (so the pool holds at most MAX_POOLED x MAX_BUFFER).
    fn give(&self, b: JavaBuffer) {
        if b.cap > MAX_BUFFER {
            return;
        }
        if let Ok(mut v) = self.0.lock() {
            if v.len() < MAX_POOLED {
                v.push(b);
            }
        }
    }
}

/// The bytes of a socket address in [`Enc::addr`]'s encoding.
fn addr_len(a: &std::net::SocketAddr) -> usize {
    if a.is_ipv4() {
        7
    } else {
        19
    }
}

/// The meta of a message as `channel::message_meta` encodes it, without a
/// `Vec` per message: from, peer, member id, message id.
fn meta_len(m: &Message) -> usize {
    addr_len(&m.from) + addr_len(&m.peer) + 16 + 8
}

/// The bytes one message takes in a batch buffer.
fn encoded_len(m: &Message) -> usize {
    8 + meta_len(m) + m.payload.len()
}

/// Writes one message at the start of `out` (exactly [`encoded_len`] bytes).
/// `scratch` holds the addresses' encoding (reused across messages).
fn encode_into(out: &mut [u8], m: &Message, scratch: &mut Enc) -> usize {
    scratch.0.clear();
    let mut at = 0;
    let mut put = |b: &[u8]| {
        out[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(&(meta_len(m) as u32).to_be_bytes());
    scratch.addr(m.from).addr(m.peer);
    put(&scratch.0);
    put(&m.member_id);
    put(&m.id.to_be_bytes());
    put(&(m.payload.len() as u32).to_be_bytes());
    put(&m.payload);
    at
}

/// Makes the batch listener of a channel whose Java object is `target`.
pub(crate) fn batch_listener(target: Arc<GlobalRef>) -> BatchListener {
    let pool = Arc::new(BufferPool::default());
    Arc::new(
        move |msgs: &[&Message], results: &mut Vec<Result<(), String>>| {
            let mut i = 0;
            while i < msgs.len() {
                // As many messages as fit MAX_BUFFER, at least one.
                let mut need = encoded_len(msgs[i]);
                let mut j = i + 1;
                while j < msgs.len() {
                    let more = encoded_len(msgs[j]);
                    if need + more > MAX_BUFFER {
                        break;
                    }
                    need += more;
                    j += 1;
                }
                deliver(&target, &pool, &msgs[i..j], need, results);
                i = j;
            }
        },
    )
}

/// One upcall for `msgs`, which take `need` bytes; pushes one result each.
fn deliver(
    target: &GlobalRef,
    pool: &BufferPool,
    msgs: &[&Message],
    need: usize,
    results: &mut Vec<Result<(), String>>,
) {
    let r = with_env(|env| {
        let r = refs::get();
        let jb = match pool.take() {
            Some(b) if b.cap >= need => b,
            _ => alloc(env, need.max(MIN_BUFFER))?,
        };
        // SAFETY: `jb.ptr` is `jb.cap` bytes of the direct buffer's memory,
        // kept alive by its global ref and used by this thread only (taken
        // out of the pool); Java reads it only during the upcall below.
        let out = unsafe { std::slice::from_raw_parts_mut(jb.ptr, jb.cap) };
        let (mut at, mut scratch) = (0usize, Enc::default());
        for m in msgs {
            at += encode_into(&mut out[at..], m, &mut scratch);
        }
        // SAFETY: the method id was looked up on `Native` with signature
        // (Object, ByteBuffer, int, int) -> String[]; the arguments match.
        let ret = unsafe {
            env.call_static_method_unchecked(
                refs::native_class(r),
                r.on_batch,
                ReturnType::Array,
                &[
                    JValue::Object(target.as_obj()).as_jni(),
                    JValue::Object(jb.buf.as_obj()).as_jni(),
                    JValue::Int(msgs.len() as jint).as_jni(),
                    JValue::Int(at as jint).as_jni(),
                ],
            )
        }?
        .l()?;
        pool.give(jb);
        if ret.is_null() {
            return Ok(Vec::new());
        }
        let arr = JObjectArray::from(ret);
        let n = (env.get_array_length(&arr)? as usize).min(msgs.len());
        let mut fails = Vec::with_capacity(n);
        for k in 0..n {
            let s = JString::from(env.get_object_array_element(&arr, k as jint)?);
            fails.push(if s.is_null() {
                None
            } else {
                Some(env.get_string(&s)?.into())
            });
            env.delete_local_ref(s)?;
        }
        Ok(fails)
    });
    match r {
        Ok(fails) => {
            let mut fails = fails.into_iter();
            for _ in msgs {
                results.push(match fails.next().flatten() {
                    None => Ok(()),
                    Some(why) => Err(why),
                });
            }
        }
        Err(why) => results.extend(msgs.iter().map(|_| Err(why.clone()))),
    }
}

/// A new direct buffer of `cap` bytes from `Native.allocBatch`.
fn alloc(env: &mut JNIEnv, cap: usize) -> Result<JavaBuffer, Fail> {
    let r = refs::get();
    let cap_i = jint::try_from(cap).map_err(|_| Fail::arg("batch too large"))?;
    // SAFETY: the method id was looked up on `Native` with signature
    // (int) -> ByteBuffer; the argument matches.
    let obj = unsafe {
        env.call_static_method_unchecked(
            refs::native_class(r),
            r.alloc_batch,
            ReturnType::Object,
            &[JValue::Int(cap_i).as_jni()],
        )
    }?
    .l()?;
    let jbuf = JByteBuffer::from(obj);
    let ptr = env.get_direct_buffer_address(&jbuf)?;
    let got = env.get_direct_buffer_capacity(&jbuf)?;
    if got < cap {
        return Err(Fail::arg("batch buffer smaller than asked"));
    }
    Ok(JavaBuffer {
        buf: env.new_global_ref(&jbuf)?,
        ptr,
        cap,
    })
}

/// Sends the messages in `buf[off .. off+len)` (`u32 length, bytes` each)
/// in order; returns `count << 32 | bytes consumed` of the ones accepted.
/// A failure of the first message throws; a later one ends the batch there
/// (the caller's next call meets it first).
#[allow(clippy::too_many_arguments)]
extern "system" fn channel_send_batch(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    set: jlong,
    dests: JByteArray,
    buf: JByteBuffer,
    off: jint,
    len: jint,
    opts: jint,
) -> jlong {
    entry(&mut env, 0, |env| {
        let ch = chan(h)?;
        let c = &ch.ch;
        let to = To::new(env, set, &dests)?;
        let mem = direct(env, &buf)?;
        let (start, len) = span(off, len, mem.len(), usize::MAX)?;
        let all = &mem[start..start + len];
        let max = c.config().max_frame_size;
        let o = options(c, opts);
        let (mut count, mut at) = (0i64, 0usize);
        // The messages are copied out of Java's buffer a group at a time
        // (up to GROUP bytes, or one larger message): one copy and one
        // allocation per group, each message a slice of it. Per message,
        // a copy into the pooled intake took its lock and drained the
        // store buffer on a shared reference count; per group that cost
        // is paid once.
        let mut group = Bytes::new();
        let mut group_at = 0usize;
        while at < all.len() {
            let r = frame_at(all, at).and_then(|(s, end)| {
                if end - s > max {
                    return Err(Fail::arg(format!(
                        "batch: message at byte {at} of {} bytes exceeds maxFrameSize {max}",
                        end - s
                    )));
                }
                if end > group_at + group.len() {
                    group_at = at;
                    group = Bytes::copy_from_slice(&all[at..group_end(all, at, end)]);
                }
                c.send(to.as_slice(), group.slice(s - group_at..end - group_at), o)?;
                Ok(end)
            });
            match r {
                Ok(end) => {
                    at = end;
                    count += 1;
                }
                Err(e) if count == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(count << 32 | at as i64)
    })
}

/// Bytes copied per group of a batch (see `channel_send_batch`).
const GROUP: usize = 64 * 1024;

/// Where the group that starts with the message at `at` (ending at
/// `first_end`) ends: after as many whole messages as fit in [`GROUP`]
/// bytes, at least the first. A malformed length ends the group before
/// it (the loop then meets and reports it).
fn group_end(all: &[u8], at: usize, first_end: usize) -> usize {
    let mut end = first_end;
    while let Ok((_, next)) = frame_at(all, end) {
        if next - at > GROUP {
            break;
        }
        end = next;
    }
    end
}

/// The message at `at`: its bytes' range, checked against `all`.
fn frame_at(all: &[u8], at: usize) -> Result<(usize, usize), Fail> {
    let hdr = all
        .get(at..at + 4)
        .ok_or_else(|| Fail::arg(format!("batch: truncated length at byte {at}")))?;
    let n = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let start = at + 4;
    match start.checked_add(n) {
        Some(end) if end <= all.len() => Ok((start, end)),
        _ => Err(Fail::arg(format!(
            "batch: message at byte {at} claims {n} bytes, {} remain",
            all.len() - start
        ))),
    }
}

pub(crate) fn natives() -> Vec<jni::NativeMethod> {
    vec![crate::native(
        "channelSendBatch",
        "(JJ[BLjava/nio/ByteBuffer;III)J",
        channel_send_batch as *mut std::ffi::c_void,
    )]
}
