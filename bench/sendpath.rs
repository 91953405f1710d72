//! Criterion microbenchmarks of the send-path pieces: frame header encode,
//! frame decode, compression (reused state), queue push/pop, batched write.
//! Run with `cargo bench --bench sendpath`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sessionrepl::__internal::proto::FrameDecoder;
use sessionrepl::__internal::queue::{SendQueue, Wake};
use sessionrepl::__internal::wire::compress::{Deflater, Inflater};
use sessionrepl::__internal::wire::frame::{FrameHeader, HEADER_LEN};
use std::io::{IoSlice, Write};
use std::time::Duration;

/// The benchmarks' payload text (as `sessionrepl bench` sends).
fn payload(size: usize) -> Vec<u8> {
    b"session-attribute-"
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect()
}

struct NoWake;
impl Wake for NoWake {
    fn wake(&self) {}
}

fn frame_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_header", |b| {
        let mut id = 0u64;
        b.iter(|| {
            id += 1;
            black_box(FrameHeader::data(id, 1024, 4).encode())
        })
    });
    let mut wire = BytesMut::new();
    for i in 0..256u64 {
        wire.extend_from_slice(&FrameHeader::data(i, 1024, 0).encode());
        wire.extend_from_slice(&payload(1024));
    }
    let wire = wire.freeze();
    g.throughput(Throughput::Elements(256));
    g.bench_function("decode_256_frames_in_place", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            let mut d = FrameDecoder::new(1 << 20);
            let mut n = 0;
            while let Some(f) = d.decode(&mut buf).unwrap() {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn compression(c: &mut Criterion) {
    let mut g = c.benchmark_group("compress");
    let src = payload(1024);
    g.throughput(Throughput::Bytes(1024));
    let mut d = Deflater::new(1);
    g.bench_function("deflate_1k_reused_state", |b| {
        b.iter(|| black_box(d.compress(&src).unwrap()))
    });
    let z = Deflater::new(1).compress(&src).unwrap();
    let mut i = Inflater::new(1 << 20);
    g.bench_function("inflate_1k_reused_state", |b| {
        b.iter(|| black_box(i.inflate(&z).unwrap()))
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    let q = SendQueue::new(1024, Box::new(NoWake));
    let p = Bytes::from(payload(1024));
    g.bench_function("push_pop_bytes", |b| {
        b.iter(|| {
            q.push(p.clone(), Duration::ZERO).ok();
            black_box(q.pop())
        })
    });
    g.finish();
}

fn batch_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("writev");
    let (a, mut bsock) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let drain = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = bsock.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    let payload = Bytes::from(payload(1024));
    let hdrs: Vec<[u8; HEADER_LEN]> = (0..64)
        .map(|i| FrameHeader::data(i, 1024, 0).encode())
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_frames_one_writev", |b| {
        b.iter(|| {
            let mut iov = [IoSlice::new(&[]); 128];
            for (k, h) in hdrs.iter().enumerate() {
                iov[2 * k] = IoSlice::new(h);
                iov[2 * k + 1] = IoSlice::new(&payload);
            }
            black_box((&a).write_vectored(&iov).unwrap_or(0))
        })
    });
    g.finish();
    drop(a);
    let _ = drain.join();
}

criterion_group!(benches, frame_codec, compression, queue, batch_write);
criterion_main!(benches);
