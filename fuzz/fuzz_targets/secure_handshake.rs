//! Fuzzes what an unauthenticated peer's bytes reach in the secure layer:
//! the shared-key hello decoder, both sides of the Noise session (hello,
//! then record framing), the receiver's in-place record opener, the
//! Tribes `EncryptInterceptor` opener and the heartbeat authenticator. The input is fed in two chunks at a split point
//! taken from its first byte. Nothing may panic, and nothing unauthenticated
//! may come out as plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionrepl::membership::auth::HeartbeatAuth;
use sessionrepl::__internal::proto::secure::noise::decode_hello;
use sessionrepl::__internal::proto::secure::tribes::TribesCipher;
use sessionrepl::__internal::proto::secure::{SecureContext, SecureSession, SecureStream, SharedKey};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (a, b) = data.split_at(split);
    let key = SharedKey::from_bytes(vec![7; 32]).unwrap();
    let ctx = SecureContext::shared_key(&[key.clone()]);

    let _ = decode_hello(data);

    let mut resp = SecureSession::accept(&ctx).unwrap();
    let mut init = SecureSession::connect(&ctx, [127, 0, 0, 1].into()).unwrap();
    for s in [&mut resp, &mut init] {
        let mut plain = Vec::new();
        let mut ok = s.receive(a, &mut plain).is_ok();
        if ok {
            ok = s.receive(b, &mut plain).is_ok();
        }
        if ok {
            let _ = s.receive_eof();
        }
        // Forging a hello needs the key, and a record needs fresh keys:
        // random bytes never decrypt to anything.
        assert!(plain.is_empty(), "unauthenticated bytes came out as plaintext");
    }

    // The receiver's path: records opened in place in its read buffer.
    let mut rx = SecureStream::accept(&ctx).unwrap();
    let mut buf = bytes::BytesMut::new();
    for part in [a, b] {
        buf.extend_from_slice(part);
        match rx.open_in_place(&mut buf) {
            Ok(ready) => assert_eq!(ready, 0, "unauthenticated bytes came out as plaintext"),
            Err(_) => break,
        }
    }

    let c = TribesCipher::new(&key);
    assert!(c.open(data).is_err());

    let mut hb = HeartbeatAuth::new(&[key], 10_000);
    let _ = hb.verify(data, 1_800_000_000_000_000);
});
