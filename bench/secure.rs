//! Criterion microbenchmarks of the secure layer, against a plain copy of
//! the same bytes as the baseline of the same run: shared-key records
//! (seal + open) for one 1 KiB frame and for 64 KiB of batched frames —
//! through the session (ring records on the Noise split keys), through
//! snow's transport mode, and raw ring AES-256-GCM — the
//! Tribes `EncryptInterceptor` codec, and the heartbeat MAC.
//! Run with `cargo bench --bench secure`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sessionrepl::__internal::proto::secure::tribes::TribesCipher;
use sessionrepl::__internal::proto::secure::{SecureContext, SecureSession, SharedKey};
use sessionrepl::__internal::wire::tribes::TribesMember;
use sessionrepl::membership::auth::HeartbeatAuth;
use std::time::Duration;

/// Session-attribute-like bytes (what the scenarios send).
fn payload(size: usize) -> Vec<u8> {
    b"session-attribute-"
        .iter()
        .cycle()
        .take(size)
        .copied()
        .collect()
}

fn established() -> (SecureSession, SecureSession) {
    let ctx = SecureContext::shared_key(&[SharedKey::from_bytes(vec![3; 32]).unwrap()]);
    let mut a = SecureSession::connect(&ctx, [127, 0, 0, 1].into()).unwrap();
    let mut b = SecureSession::accept(&ctx).unwrap();
    let (mut w, mut p) = (Vec::new(), Vec::new());
    a.poll_transmit(&mut w);
    b.receive(&w, &mut p).unwrap();
    w.clear();
    b.poll_transmit(&mut w);
    a.receive(&w, &mut p).unwrap();
    (a, b)
}

/// snow's own transport mode after the same handshake: the record layer
/// the shared-key mode used before it sealed with `ring` directly.
fn snow_pair() -> (snow::TransportState, snow::TransportState) {
    let params: snow::params::NoiseParams = "Noise_NNpsk0_25519_AESGCM_SHA256".parse().unwrap();
    let psk = [3u8; 32];
    let mut i = snow::Builder::new(params.clone())
        .psk(0, &psk)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut r = snow::Builder::new(params)
        .psk(0, &psk)
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut m, mut p) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut p).unwrap();
    let n = r.write_message(&[], &mut m).unwrap();
    i.read_message(&m[..n], &mut p).unwrap();
    (
        i.into_transport_mode().unwrap(),
        r.into_transport_mode().unwrap(),
    )
}

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("secure");
    for size in [1024usize, 64 * 1024] {
        let data = payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("copy_baseline_{size}"), |b| {
            let mut out = Vec::with_capacity(size * 2);
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&data));
                black_box(out.len())
            })
        });
        let (mut tx, mut rx) = established();
        g.bench_function(format!("noise_seal_open_{size}"), |b| {
            let (mut wire, mut plain) =
                (Vec::with_capacity(size * 2), Vec::with_capacity(size * 2));
            b.iter(|| {
                wire.clear();
                plain.clear();
                tx.send(black_box(&data), &mut wire).unwrap();
                rx.receive(&wire, &mut plain).unwrap();
                black_box(plain.len())
            })
        });
        let (mut stx, mut srx) = snow_pair();
        g.bench_function(format!("snow_transport_seal_open_{size}"), |b| {
            let (mut wire, mut plain) = (vec![0u8; 65535], vec![0u8; 65535]);
            b.iter(|| {
                let mut n = 0;
                for chunk in black_box(&data).chunks(65535 - 16) {
                    let w = stx.write_message(chunk, &mut wire).unwrap();
                    n += srx.read_message(&wire[..w], &mut plain).unwrap();
                }
                black_box(n)
            })
        });
        let ring_key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[3; 32]).unwrap(),
        );
        g.bench_function(format!("ring_aes256gcm_seal_open_{size}"), |b| {
            let mut buf = Vec::with_capacity(size + 16);
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                buf.clear();
                buf.extend_from_slice(black_box(&data));
                let nn = ring::aead::Nonce::assume_unique_for_key(nonce);
                ring_key
                    .seal_in_place_append_tag(nn, ring::aead::Aad::empty(), &mut buf)
                    .unwrap();
                let nn = ring::aead::Nonce::assume_unique_for_key(nonce);
                let p = ring_key
                    .open_in_place(nn, ring::aead::Aad::empty(), &mut buf)
                    .unwrap();
                black_box(p.len())
            })
        });
        let cipher = TribesCipher::new(&SharedKey::from_bytes(vec![3; 32]).unwrap());
        g.bench_function(format!("tribes_seal_open_{size}"), |b| {
            b.iter(|| {
                let s = cipher.seal(black_box(&data), 1, [5; 12]);
                black_box(cipher.open(&s).unwrap().1.len())
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let key = SharedKey::from_bytes(vec![3; 32]).unwrap();
    let mut m = TribesMember::new([127, 0, 0, 1].into(), 4000, [1; 16]);
    m.payload = HeartbeatAuth::empty_trailer().to_vec();
    let mut blob = m.to_bytes().unwrap();
    g.bench_function("heartbeat_seal_verify", |b| {
        let mut tx = HeartbeatAuth::new(std::slice::from_ref(&key), 10_000);
        let mut rx = HeartbeatAuth::new(std::slice::from_ref(&key), 10_000);
        let mut t = 1_800_000_000_000_000u64;
        b.iter(|| {
            t += 1;
            tx.seal(&mut blob, t);
            rx.verify(&blob, t).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = records
}
criterion_main!(benches);
