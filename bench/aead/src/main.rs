//! Seal and open throughput (MB/s, in place, detached tag) of AES-256-GCM
//! through ring, aws-lc-rs and RustCrypto `aes-gcm`, per record size.
//! The crates take turns within each round (so load on a shared machine
//! falls on all of them alike) and each figure is the best of `ROUNDS`
//! runs of ~`RUN_MS`; the plain copy of the same bytes is the floor row of
//! the same process run. Open copies the sealed record back before each
//! call (it must be intact); the copy row shows what that costs.

use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
const RUN_MS: u64 = 100;
const SIZES: [usize; 3] = [1024, 16 * 1024, 65519];
const AAD: [u8; 2] = [0xff, 0xef];
const GAP: usize = 1024;
const STREAM_RECORDS: usize = 16;

/// MB/s of one ~`RUN_MS` run of `f`, which processes `size` bytes a call.
fn run(size: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(RUN_MS) {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    (n as f64 * size as f64) / start.elapsed().as_secs_f64() / 1e6
}

fn nonce_bytes(c: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&c.to_be_bytes());
    b
}

/// One crate's seal and open closures over buffers of `size` bytes.
type Pair = (Box<dyn FnMut()>, Box<dyn FnMut()>, Option<Box<dyn FnMut()>>);

macro_rules! ring_like {
    ($m:ident, $size:expr, $key:expr) => {{
        use $m::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, $key).unwrap());
        let k2 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, $key).unwrap());
        let mut buf = vec![7u8; $size];
        let mut c = 0u64;
        let seal = move || {
            c += 1;
            let n = Nonce::assume_unique_for_key(nonce_bytes(c));
            let t = k
                .seal_in_place_separate_tag(n, Aad::from(AAD), &mut buf)
                .unwrap();
            let _ = black_box(t);
        };
        // One record sealed under nonce 0 (what the open closures open).
        let record = |k: &LessSafeKey| {
            let mut rec = vec![7u8; $size];
            let n = Nonce::assume_unique_for_key(nonce_bytes(0));
            let t = k
                .seal_in_place_separate_tag(n, Aad::from(AAD), &mut rec)
                .unwrap();
            rec.extend_from_slice(t.as_ref());
            rec
        };
        let rec = record(&k2);
        let mut work = rec.clone();
        let open = move || {
            work.copy_from_slice(&rec);
            let n = Nonce::assume_unique_for_key(nonce_bytes(0));
            black_box(
                k2.open_in_place(n, Aad::from(AAD), &mut work)
                    .unwrap()
                    .len(),
            );
        };
        // open_within: the record after a 1 KiB gap, its plaintext moved
        // to the front (how the receiver opens records in place).
        let k3 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, $key).unwrap());
        let rec = record(&k3);
        let mut work = vec![0u8; GAP + rec.len()];
        let within = move || {
            work[GAP..].copy_from_slice(&rec);
            let n = Nonce::assume_unique_for_key(nonce_bytes(0));
            let p = k3.open_within(n, Aad::from(AAD), &mut work, GAP..).unwrap();
            black_box(p.len());
        };
        (
            Box::new(seal) as Box<dyn FnMut()>,
            Box::new(open) as Box<dyn FnMut()>,
            Some(Box::new(within) as Box<dyn FnMut()>),
        )
    }};
}

/// The receiver's case: `STREAM_RECORDS` records of `size` plaintext bytes
/// back to back in one buffer (headers as in `records.rs`), each opened
/// with `open_within` so its plaintext follows the one before it (the gap
/// grows by a header and a tag per record). Each call first copies the
/// sealed stream back in (the `copy` row of the size shows its cost).
macro_rules! stream_open {
    ($m:ident, $size:expr, $key:expr) => {{
        use $m::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, $key).unwrap());
        let mut wire = Vec::new();
        for i in 0..STREAM_RECORDS {
            let hdr = (($size + 16) as u16).to_be_bytes();
            let mut rec = vec![7u8; $size];
            let n = Nonce::assume_unique_for_key(nonce_bytes(i as u64));
            let t = k
                .seal_in_place_separate_tag(n, Aad::from(hdr), &mut rec)
                .unwrap();
            wire.extend_from_slice(&hdr);
            wire.extend_from_slice(&rec);
            wire.extend_from_slice(t.as_ref());
        }
        let mut work = wire.clone();
        Box::new(move || {
            work.copy_from_slice(&wire);
            let (mut ready, mut gap) = (0usize, 0usize);
            for i in 0..STREAM_RECORDS {
                let at = ready + gap;
                let hdr = [work[at], work[at + 1]];
                let len = u16::from_be_bytes(hdr) as usize;
                let n = Nonce::assume_unique_for_key(nonce_bytes(i as u64));
                let region = &mut work[ready..at + 2 + len];
                k.open_within(n, Aad::from(hdr), region, gap + 2..).unwrap();
                ready += len - 16;
                gap += 18;
            }
            black_box(ready);
        }) as Box<dyn FnMut()>
    }};
}

fn rustcrypto(size: usize, key: &[u8; 32]) -> Pair {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use aes_gcm::{Aes256Gcm, Nonce};
    let k = Aes256Gcm::new_from_slice(key).unwrap();
    let k2 = k.clone();
    let mut buf = vec![7u8; size];
    let mut c = 0u64;
    let seal = move || {
        c += 1;
        let nb = nonce_bytes(c);
        let t = k.encrypt_in_place_detached(Nonce::from_slice(&nb), &AAD, &mut buf);
        black_box(t.unwrap());
    };
    let mut rec = vec![7u8; size];
    let nb = nonce_bytes(0);
    let tag = k2
        .encrypt_in_place_detached(Nonce::from_slice(&nb), &AAD, &mut rec)
        .unwrap();
    let mut work = rec.clone();
    let open = move || {
        work.copy_from_slice(&rec);
        k2.decrypt_in_place_detached(Nonce::from_slice(&nb), &AAD, &mut work, &tag)
            .unwrap();
        black_box(work.len());
    };
    (Box::new(seal), Box::new(open), None)
}

fn main() {
    let key = [0x5au8; 32];
    for size in SIZES {
        let src = vec![7u8; size];
        let mut dst = vec![0u8; size];
        let mut copy = move || {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        };
        let mut impls: Vec<(&str, Pair)> = vec![
            ("ring", ring_like!(ring, size, &key)),
            ("aws-lc-rs", ring_like!(aws_lc_rs, size, &key)),
            ("rustcrypto-aes-gcm", rustcrypto(size, &key)),
        ];
        let mut best = vec![(0f64, 0f64, 0f64); impls.len()];
        let mut copy_best = 0f64;
        for _ in 0..ROUNDS {
            copy_best = copy_best.max(run(size, &mut copy));
            for (i, (_, (seal, open, within))) in impls.iter_mut().enumerate() {
                best[i].0 = best[i].0.max(run(size, seal.as_mut()));
                best[i].1 = best[i].1.max(run(size, open.as_mut()));
                if let Some(w) = within {
                    best[i].2 = best[i].2.max(run(size, w.as_mut()));
                }
            }
        }
        println!("aead size={size} impl=copy MB_per_s={copy_best:.0}");
        for ((name, _), (seal, open, within)) in impls.iter().zip(&best) {
            println!(
                "aead size={size} impl={name} seal_MB_per_s={seal:.0} open_MB_per_s={open:.0} \
                 open_within_MB_per_s={within:.0}"
            );
        }
        let total = size * STREAM_RECORDS;
        let mut streams = [
            ("ring", stream_open!(ring, size, &key), 0f64),
            ("aws-lc-rs", stream_open!(aws_lc_rs, size, &key), 0f64),
        ];
        for _ in 0..ROUNDS {
            for (_, f, best) in streams.iter_mut() {
                *best = best.max(run(total, f.as_mut()));
            }
        }
        for (name, _, best) in &streams {
            println!(
                "aead size={size} impl={name} records={STREAM_RECORDS} \
                 stream_open_within_MB_per_s={best:.0} (includes a copy of the stream)"
            );
        }
    }
}
