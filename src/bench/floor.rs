//! The raw-socket floor: what plain blocking TCP over loopback achieves on
//! this machine, measured in this process, so that each scenario's figure is
//! read as a ratio to it.
//!
//! * [`ping_pong`]: a SIZE-byte request answered by a 3-byte reply (an ack),
//!   one thread each side, `TCP_NODELAY`; the floor of the synchronous ack
//!   scenarios S2 (1 KiB) and S4 (100 KiB).
//! * [`stream`]: a one-way stream of messages, each a 16-byte header and a
//!   SIZE-byte payload, [`STREAM_BATCH`] per `writev`, read into a 256 KiB
//!   buffer; the floor of the no-ack scenarios S1 and S5.
//!
//! Both bind 127.0.0.1 on an ephemeral port, warm up with
//! [`warmup_count`](super::warmup_count()) messages, and time from the first
//! timed send until the last byte has been read.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{payload, warmup_count, BenchLine, LatencyRecorder, Scenario};

/// Messages per `writev` in [`stream`].
pub const STREAM_BATCH: usize = 64;
/// Header bytes in front of each payload in [`stream`].
pub const STREAM_HEADER: usize = 16;
/// The reader's buffer in [`stream`].
pub const STREAM_READ_BUFFER: usize = 256 * 1024;
/// The reply to each [`ping_pong`] request.
pub const ACK: &[u8; 3] = b"ACK";

/// How long either side blocks on a socket before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The floor line for `scenario`, or `None` where the scenarios define no
/// floor (S3, S6, S7): [`stream`] for S1 and S5, [`ping_pong`] for S2 and S4.
///
/// # Errors
///
/// As [`stream`] and [`ping_pong`].
pub fn for_scenario(scenario: Scenario, count: u64, size: usize) -> io::Result<Option<BenchLine>> {
    match scenario {
        Scenario::S1 | Scenario::S5 => stream(scenario, count, size).map(Some),
        Scenario::S2 | Scenario::S4 => ping_pong(scenario, count, size).map(Some),
        Scenario::S3 | Scenario::S6 | Scenario::S7 => Ok(None),
    }
}

/// Blocking TCP ping-pong: `count` timed requests of `size` bytes, each
/// answered by [`ACK`]. The line has `impl=floor`, the message rate, and
/// p50/p99 of the round trips.
///
/// # Errors
///
/// Any socket error on either side, or a side stalling for a minute.
pub fn ping_pong(scenario: Scenario, count: u64, size: usize) -> io::Result<BenchLine> {
    let (client, server) = loopback_pair()?;
    let warm = warmup_count(count);
    let total = warm + count;
    let echo =
        thread::Builder::new()
            .name("floor-pong".into())
            .spawn(move || -> io::Result<()> {
                let mut server = server;
                let mut request = vec![0; size];
                for _ in 0..total {
                    server.read_exact(&mut request)?;
                    server.write_all(ACK)?;
                }
                Ok(())
            })?;

    let mut client = client;
    let request = payload(size);
    let mut ack = [0u8; ACK.len()];
    let mut latencies = LatencyRecorder::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut round_trip = |client: &mut TcpStream| -> io::Result<()> {
        client.write_all(&request)?;
        client.read_exact(&mut ack)
    };
    let timed = (|| -> io::Result<Duration> {
        for _ in 0..warm {
            round_trip(&mut client)?;
        }
        let t0 = Instant::now();
        for _ in 0..count {
            let sent = Instant::now();
            round_trip(&mut client)?;
            latencies.record(sent.elapsed());
        }
        Ok(t0.elapsed())
    })();
    drop(client); // unblocks the echo thread if the client side failed
    let echoed = join(echo);
    let elapsed = timed?;
    echoed?;
    if ack != *ACK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply was not ACK",
        ));
    }
    Ok(
        BenchLine::measured(scenario, "floor", count, size as u64, elapsed)
            .with_latency(latencies.percentiles()),
    )
}

/// One-way stream: `count` timed messages of a [`STREAM_HEADER`]-byte header
/// and a `size`-byte payload, [`STREAM_BATCH`] per `writev`. The line has
/// `impl=floor`, the message rate and the payload MB/s, and `batch=64`.
///
/// # Errors
///
/// Any socket error on either side, a side stalling for a minute, or the
/// reader seeing the stream end early.
pub fn stream(scenario: Scenario, count: u64, size: usize) -> io::Result<BenchLine> {
    let (writer, reader) = loopback_pair()?;
    let message = (STREAM_HEADER + size) as u64;
    let warm = warmup_count(count);
    let sink = thread::Builder::new().name("floor-sink".into()).spawn(
        move || -> io::Result<Instant> {
            let mut reader = reader;
            let mut buf = vec![0; STREAM_READ_BUFFER];
            drain(&mut reader, &mut buf, warm * message)?;
            // Tell the writer the warm-up is through, so timing starts on
            // an idle connection.
            reader.write_all(b"G")?;
            drain(&mut reader, &mut buf, count * message)?;
            Ok(Instant::now())
        },
    )?;

    let mut writer = writer;
    let mut header = [0u8; STREAM_HEADER];
    header[..4].copy_from_slice(b"FLR1");
    header[4..8].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
    let body = payload(size);
    let segments: Vec<&[u8]> = (0..STREAM_BATCH)
        .flat_map(|_| [&header[..], &body[..]])
        .collect();
    let mut iov = Vec::with_capacity(segments.len());
    let sent = (|| -> io::Result<Instant> {
        send_messages(&mut writer, &segments, &mut iov, warm)?;
        let mut go = [0u8; 1];
        writer.read_exact(&mut go)?;
        let t0 = Instant::now();
        send_messages(&mut writer, &segments, &mut iov, count)?;
        Ok(t0)
    })();
    drop(writer); // the reader sees EOF if the writer side failed
    let received = join(sink);
    let t0 = sent?;
    let done = received?;
    Ok(BenchLine::measured(
        scenario,
        "floor",
        count,
        size as u64,
        done.duration_since(t0),
    )
    .with_extra("batch", STREAM_BATCH))
}

/// Connects a client to a listener on 127.0.0.1:0 and accepts it, both
/// sides with `TCP_NODELAY` and [`IO_TIMEOUT`]. Accepting here, not in a
/// thread, leaves no thread blocked in `accept` if connecting fails.
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
    }
    Ok((client, server))
}

/// Reads and discards exactly `bytes` bytes.
fn drain(stream: &mut TcpStream, buf: &mut [u8], bytes: u64) -> io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match stream.read(&mut buf[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `count` messages, whole batches of `segments` (header, payload
/// pairs) and then the remainder.
fn send_messages<'a>(
    w: &mut TcpStream,
    segments: &[&'a [u8]],
    iov: &mut Vec<IoSlice<'a>>,
    count: u64,
) -> io::Result<()> {
    let mut left = count;
    while left > 0 {
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(STREAM_BATCH);
        write_all_segments(w, &segments[..2 * n], iov)?;
        left -= n as u64;
    }
    Ok(())
}

/// `writev` of all `segments`, resuming after partial writes. `iov` is
/// scratch space with room for `segments.len()` slices, so nothing is
/// allocated here.
fn write_all_segments<'a>(
    w: &mut TcpStream,
    segments: &[&'a [u8]],
    iov: &mut Vec<IoSlice<'a>>,
) -> io::Result<()> {
    let (mut seg, mut off) = (0, 0);
    while seg < segments.len() {
        iov.clear();
        iov.push(IoSlice::new(&segments[seg][off..]));
        iov.extend(segments[seg + 1..].iter().map(|s| IoSlice::new(s)));
        let mut written = match w.write_vectored(iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while seg < segments.len() && written >= segments[seg].len() - off {
            written -= segments[seg].len() - off;
            seg += 1;
            off = 0;
        }
        off += written;
    }
    Ok(())
}

fn join<T>(handle: thread::JoinHandle<io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("floor thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_segments_survives_partial_writes() {
        // A payload far larger than the socket buffers forces short writes
        // while the reader drains slowly.
        let (mut a, mut b) = loopback_pair().unwrap();
        let big = vec![7u8; 3 << 20];
        let small = [1u8, 2, 3];
        let segments: Vec<&[u8]> = vec![&small, &big, &small, &big, &small];
        let want: Vec<u8> = segments.concat();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        let mut iov = Vec::with_capacity(segments.len());
        write_all_segments(&mut a, &segments, &mut iov).unwrap();
        drop(a);
        assert!(reader.join().unwrap() == want);
    }

    #[test]
    fn floor_exists_only_where_the_scenarios_define_one() {
        for s in [Scenario::S3, Scenario::S6, Scenario::S7] {
            assert!(for_scenario(s, 10, 16).unwrap().is_none());
        }
    }
}
