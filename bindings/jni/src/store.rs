//! Natives of `io.sessionrepl.SessionStore`: open, wait until ready,
//! create/commit with a commit handle, get (found, moved, not found),
//! access, invalidate, change id, drain, stats, close; and the event
//! callback.

use crate::boundary::{bytes, entry, Fail};
use crate::channel::{config_from, millis};
use crate::enc::{Dec, Enc};
use jni::objects::{GlobalRef, JByteArray, JClass, JObject, JObjectArray};
use jni::sys::{jboolean, jbyteArray, jint, jlong, jstring};
use jni::JNIEnv;
use sessionrepl::session::{CommitHandle, SessionEvent, SessionStore, StoreLookup, Txn};
use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct StoreHandle {
    store: SessionStore,
}

fn store<'a>(h: jlong) -> Result<&'a StoreHandle, Fail> {
    if h == 0 {
        return Err(Fail::Named("SR_SHUTDOWN".into(), "store closed".into()));
    }
    // SAFETY: a non-zero handle comes from `store_open` (Box::into_raw) and
    // the Java side never passes it after `store_free` (its lock).
    Ok(unsafe { &*(h as *const StoreHandle) })
}

fn commit<'a>(h: jlong) -> Result<&'a CommitHandle, Fail> {
    if h == 0 {
        return Err(Fail::arg("commit handle closed"));
    }
    // SAFETY: from `commit_handle` (Box::into_raw); Java frees it once after
    // its last use.
    Ok(unsafe { &*(h as *const CommitHandle) })
}

fn commit_handle(c: CommitHandle) -> jlong {
    Box::into_raw(Box::new(c)) as jlong
}

/// A store event: kind, id, second id, member address (flag then address),
/// a number and a text. Kinds as `SessionEvent.Kind` numbers them.
fn event_enc(ev: &SessionEvent) -> Vec<u8> {
    let mut e = Enc::default();
    let (kind, id, id2, by, n, text): (u8, &[u8], &[u8], _, u64, String) = match ev {
        SessionEvent::Created { id, by } => (1, id, b"", Some(by.addr), 0, String::new()),
        SessionEvent::Updated { id, version, by } => {
            (2, id, b"", Some(by.addr), version.counter, String::new())
        }
        SessionEvent::Expired { id, local } => (3, id, b"", None, *local as u64, String::new()),
        SessionEvent::Invalidated { id, by } => (4, id, b"", Some(by.addr), 0, String::new()),
        SessionEvent::IdChanged { old, new, by } => (5, old, new, Some(by.addr), 0, String::new()),
        SessionEvent::CommitAcked { id, copies, .. } => {
            (6, id, b"", None, *copies as u64, String::new())
        }
        SessionEvent::CommitFailed { id, reason, .. } => {
            (7, id, b"", None, 0, format!("{reason:?}"))
        }
        SessionEvent::Conflict {
            id,
            kept,
            discarded,
        } => (
            8,
            id,
            b"",
            None,
            kept.counter,
            format!("kept {} discarded {}", kept.counter, discarded.counter),
        ),
        SessionEvent::Fetched { id, found } => (9, id, b"", None, *found as u64, String::new()),
        SessionEvent::Ready { sessions } => (10, b"", b"", None, *sessions as u64, String::new()),
        SessionEvent::TransferFailed { reason } => (11, b"", b"", None, 0, format!("{reason:?}")),
        SessionEvent::Drained => (12, b"", b"", None, 0, String::new()),
        // Newer than Java's SessionEvent.Kind, which decodes them as NONE.
        SessionEvent::FetchFailed { id } => (13, id, b"", None, 0, String::new()),
        SessionEvent::Health {
            members,
            under_replicated,
        } => (
            14,
            b"",
            b"",
            None,
            *under_replicated as u64,
            format!("members {members}"),
        ),
    };
    e.u8(kind).bytes(id).bytes(id2);
    match by {
        Some(a) => e.u8(1).addr(a),
        None => e.u8(0),
    };
    e.u64(n).str(&text);
    e.0
}

/// Flags of `storeOpen`: which listeners the Java store has.
const WANT_EVENTS: jint = 1;
const WANT_MEMBERS: jint = 2;

extern "system" fn store_open(
    mut env: JNIEnv,
    _c: JClass,
    target: JObject,
    keys: JObjectArray,
    values: JObjectArray,
    want: jint,
) -> jlong {
    entry(&mut env, 0, |env| {
        let cfg = config_from(env, &keys, &values)?;
        let mut b = SessionStore::builder(cfg);
        let t: Arc<GlobalRef> = Arc::new(env.new_global_ref(&target)?);
        if want & WANT_EVENTS != 0 {
            let t = t.clone();
            b = b.event_listener(move |ev| {
                crate::channel::callback(&t, |r| r.on_session_event, &event_enc(ev))
            });
        }
        if want & WANT_MEMBERS != 0 {
            b = b.member_listener(move |ev| {
                crate::channel::callback(&t, |r| r.on_member, &crate::channel::member_event(ev))
            });
        }
        let store = b.open()?;
        Ok(Box::into_raw(Box::new(StoreHandle { store })) as jlong)
    })
}

extern "system" fn store_close(mut env: JNIEnv, _c: JClass, h: jlong) {
    entry(&mut env, (), |_| {
        store(h)?.store.close();
        Ok(())
    })
}

extern "system" fn store_free(mut env: JNIEnv, _c: JClass, h: jlong) {
    entry(&mut env, (), |_| {
        if h != 0 {
            // SAFETY: from `store_open`; the Java side frees it once, under
            // its write lock, so no other call is using it.
            let b = unsafe { Box::from_raw(h as *mut StoreHandle) };
            b.store.close();
        }
        Ok(())
    })
}

extern "system" fn store_wait_ready(mut env: JNIEnv, _c: JClass, h: jlong, ms: jlong) {
    entry(&mut env, (), |_| {
        Ok(store(h)?.store.wait_ready(millis(ms))?)
    })
}

extern "system" fn store_is_ready(mut env: JNIEnv, _c: JClass, h: jlong) -> jboolean {
    entry(&mut env, 0, |_| Ok(store(h)?.store.is_ready() as jboolean))
}

extern "system" fn store_is_primary_for(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    id: JByteArray,
) -> jboolean {
    entry(&mut env, 0, |env| {
        let id = env.convert_byte_array(&id)?;
        Ok(store(h)?.store.is_primary_for(&id) as jboolean)
    })
}

/// Decodes a `Txn` from Java: id, then ops (1 set name value, 2 remove
/// name, 3 max inactive secs, 4 principal, 5 auth type; 4 and 5 take a
/// presence byte then the bytes; 6 the base version: counter, 16-byte writer).
fn txn_from(b: &[u8]) -> Result<Txn, Fail> {
    let mut d = Dec::new(b);
    let mut t = Txn::new(bytes::Bytes::copy_from_slice(d.bytes()?));
    let opt = |d: &mut Dec| -> Result<Option<bytes::Bytes>, Fail> {
        Ok(match d.u8()? {
            0 => None,
            _ => Some(bytes::Bytes::copy_from_slice(d.bytes()?)),
        })
    };
    while !d.is_empty() {
        match d.u8()? {
            1 => {
                let n = bytes::Bytes::copy_from_slice(d.bytes()?);
                let v = bytes::Bytes::copy_from_slice(d.bytes()?);
                t.set(n, v);
            }
            2 => {
                t.remove(bytes::Bytes::copy_from_slice(d.bytes()?));
            }
            3 => {
                t.set_max_inactive(d.u64()? as i64);
            }
            4 => {
                let p = opt(&mut d)?;
                t.set_principal(p);
            }
            5 => {
                let a = opt(&mut d)?;
                t.set_auth_type(a);
            }
            6 => {
                let counter = d.u64()?;
                let mut writer = [0u8; 16];
                for b in writer.iter_mut() {
                    *b = d.u8()?;
                }
                t.set_base(sessionrepl::session::Version { counter, writer });
            }
            op => return Err(Fail::arg(format!("unknown transaction op {op}"))),
        }
    }
    Ok(t)
}

/// `create` (new session) or `commit`; returns a commit handle.
extern "system" fn store_commit(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    txn: JByteArray,
    create: jboolean,
) -> jlong {
    entry(&mut env, 0, |env| {
        let s = &store(h)?.store;
        let t = txn_from(&env.convert_byte_array(&txn)?)?;
        let c = if create != 0 {
            s.create(t)?
        } else {
            s.commit(t)?
        };
        Ok(commit_handle(c))
    })
}

extern "system" fn commit_wait(mut env: JNIEnv, _c: JClass, c: jlong, ms: jlong) -> jint {
    entry(&mut env, 0, |_| Ok(commit(c)?.wait(millis(ms))? as jint))
}

extern "system" fn commit_done(mut env: JNIEnv, _c: JClass, c: jlong) -> jboolean {
    entry(&mut env, 0, |_| Ok(commit(c)?.is_done() as jboolean))
}

extern "system" fn commit_free(mut env: JNIEnv, _c: JClass, c: jlong) {
    entry(&mut env, (), |_| {
        if c != 0 {
            // SAFETY: from `commit_handle`; freed once by the Java side.
            drop(unsafe { Box::from_raw(c as *mut CommitHandle) });
        }
        Ok(())
    })
}

/// Looks up: 0 found (id, version counter and writer, creation time, max inactive, principal,
/// auth type, idle ms, attribute count, name/value pairs), 1 moved
/// (address), 2 not found. `ms < 0` waits the configured `accessTimeout`.
/// `get(id, 0)`: the answer when one is ready now, else the copy this
/// node holds (a backup's copy, which a read through the primary would
/// have to fetch and so could never answer without waiting), else
/// `SR_TIMEOUT`.
fn get_now(s: &SessionStore, id: &[u8]) -> Result<StoreLookup, Fail> {
    match s.get_timeout(id, Duration::ZERO) {
        Err(sessionrepl::Error::Timeout) => match s.local_copy(id) {
            Some(sess) => Ok(StoreLookup::Local(sess)),
            None => Err(sessionrepl::Error::Timeout.into()),
        },
        r => Ok(r?),
    }
}

extern "system" fn store_get(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    id: JByteArray,
    ms: jlong,
) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let s = &store(h)?.store;
        let id = env.convert_byte_array(&id)?;
        let found = match ms {
            ..0 => s.get(&id)?,
            0 => get_now(s, &id)?,
            _ => s.get_timeout(&id, millis(ms))?,
        };
        let mut e = Enc::default();
        match found {
            StoreLookup::Local(sess) => {
                let m = sess.meta();
                e.u8(0).bytes(sess.id()).u64(sess.version().counter);
                e.0.extend_from_slice(&sess.version().writer);
                e.u64(m.creation_time)
                    .u64(m.max_inactive_secs as u64)
                    .opt_bytes(m.principal.as_deref())
                    .opt_bytes(m.auth_type.as_deref())
                    .u64(sess.idle_ms(Instant::now()))
                    .u32(sess.attribute_count() as u32);
                for (n, v) in sess.attributes() {
                    e.bytes(n).bytes(v);
                }
            }
            StoreLookup::Moved(a) => {
                e.u8(1).addr(a);
            }
            StoreLookup::NotFound => {
                e.u8(2);
            }
        }
        Ok(bytes(env, &e.0)?.into_raw())
    })
}

extern "system" fn store_access(mut env: JNIEnv, _c: JClass, h: jlong, id: JByteArray) {
    entry(&mut env, (), |env| {
        let id = env.convert_byte_array(&id)?;
        Ok(store(h)?.store.access(&id)?)
    })
}

extern "system" fn store_invalidate(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    id: JByteArray,
) -> jlong {
    entry(&mut env, 0, |env| {
        let id = env.convert_byte_array(&id)?;
        Ok(commit_handle(store(h)?.store.invalidate(&id)?))
    })
}

extern "system" fn store_change_id(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    old: JByteArray,
    new: JByteArray,
) -> jlong {
    entry(&mut env, 0, |env| {
        let old = env.convert_byte_array(&old)?;
        let new = env.convert_byte_array(&new)?;
        Ok(commit_handle(
            store(h)?.store.change_id(&old, bytes::Bytes::from(new))?,
        ))
    })
}

extern "system" fn store_drain(mut env: JNIEnv, _c: JClass, h: jlong, ms: jlong) {
    entry(&mut env, (), |_| Ok(store(h)?.store.drain(millis(ms))?))
}

/// The counters as `SessionStats`' debug text (`Name { field: n, ... }`),
/// parsed into a map on the Java side.
extern "system" fn store_stats(mut env: JNIEnv, _c: JClass, h: jlong) -> jstring {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let s = format!("{:?}", store(h)?.store.stats());
        Ok(env.new_string(s)?.into_raw())
    })
}

/// Local address, then the members (u32 count, addresses).
extern "system" fn store_info(mut env: JNIEnv, _c: JClass, h: jlong) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let s = &store(h)?.store;
        let ms = s.members();
        let mut e = Enc::default();
        e.addr(s.local_addr()).u32(ms.len() as u32);
        for a in ms {
            e.addr(a);
        }
        Ok(bytes(env, &e.0)?.into_raw())
    })
}

/// The `memberPayload` of the member at the address Java encoded
/// (`Wire.addrs` of one), empty if it announced none; null when no current
/// member listens there.
extern "system" fn store_member_payload(
    mut env: JNIEnv,
    _c: JClass,
    h: jlong,
    addr: JByteArray,
) -> jbyteArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let s = &store(h)?.store;
        let enc = env.convert_byte_array(&addr)?;
        let addrs = Dec::new(&enc).addrs()?;
        let [a] = addrs[..] else {
            return Err(Fail::arg("one address expected"));
        };
        match s.member_payload(a) {
            Some(p) => Ok(bytes(env, &p)?.into_raw()),
            None => Ok(std::ptr::null_mut()),
        }
    })
}

pub(crate) fn natives() -> Vec<jni::NativeMethod> {
    use crate::native;
    const KV: &str = "[Ljava/lang/String;[Ljava/lang/String;";
    vec![
        native(
            "storeOpen",
            &format!("(Ljava/lang/Object;{KV}I)J"),
            store_open as *mut c_void,
        ),
        native(
            "storeMemberPayload",
            "(J[B)[B",
            store_member_payload as *mut c_void,
        ),
        native("storeClose", "(J)V", store_close as *mut c_void),
        native("storeFree", "(J)V", store_free as *mut c_void),
        native("storeWaitReady", "(JJ)V", store_wait_ready as *mut c_void),
        native("storeIsReady", "(J)Z", store_is_ready as *mut c_void),
        native(
            "storeIsPrimaryFor",
            "(J[B)Z",
            store_is_primary_for as *mut c_void,
        ),
        native("storeCommit", "(J[BZ)J", store_commit as *mut c_void),
        native("commitWait", "(JJ)I", commit_wait as *mut c_void),
        native("commitDone", "(J)Z", commit_done as *mut c_void),
        native("commitFree", "(J)V", commit_free as *mut c_void),
        native("storeGet", "(J[BJ)[B", store_get as *mut c_void),
        native("storeAccess", "(J[B)V", store_access as *mut c_void),
        native("storeInvalidate", "(J[B)J", store_invalidate as *mut c_void),
        native("storeChangeId", "(J[B[B)J", store_change_id as *mut c_void),
        native("storeDrain", "(JJ)V", store_drain as *mut c_void),
        native(
            "storeStats",
            "(J)Ljava/lang/String;",
            store_stats as *mut c_void,
        ),
        native("storeInfo", "(J)[B", store_info as *mut c_void),
    ]
}
