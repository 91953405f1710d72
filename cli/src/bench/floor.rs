//! The raw-socket floors: what plain TCP over loopback achieves on this
//! machine with nothing of ours in the way, measured in this process, so
//! that each scenario's figure is read as a ratio to it. They are this
//! crate's own versions of `shared/peers/limit/pingpong_spin.c` and
//! `stream_max.c` (see `SCENARIOS.md`): a floor spins where sessionrepl
//! spins and batches as far as the kernel allows.
//!
//! * [`ping_pong`]: a SIZE-byte request answered by a 3-byte reply (an ack),
//!   one thread each side, `TCP_NODELAY`, both sides busy-polling
//!   non-blocking sockets (no scheduler wake-up in the way, as sessionrepl's
//!   synchronous senders poll for their acks); the floor of S2 (1 KiB) and
//!   S4 (100 KiB). Lines carry `floor=pingpong_spin`.
//! * [`stream`]: a one-way stream of messages, each a 16-byte header and a
//!   SIZE-byte payload, [`STREAM_BATCH`] (`IOV_MAX/2`) per `writev` with one
//!   shared payload, read by a receiver that walks every header; run with
//!   each of [`STREAM_READ_BUFFERS`] and the best taken; the floor of S1 and
//!   S5. Lines carry `floor=stream_max`, `batch=` and `rbuf=`.
//! * [`pooled`]: S3's shape: `threads` callers, each on its own connection,
//!   send a SIZE-byte request and wait for its reply; the other side runs a
//!   thread per connection in blocking reads (the kernel wakes exactly the
//!   thread whose data arrived; no selector in the way). Once with the
//!   callers blocking in `read` and once polling with a `sched_yield`
//!   between polls (as sessionrepl's pooled callers do); the faster run is
//!   the floor. Lines carry `floor=pooled_pingpong`, `threads=` and
//!   `wait=block|yield`.
//!
//! All bind 127.0.0.1 on an ephemeral port, warm up with
//! [`warmup_count`](super::warmup_count()) messages, and time from the first
//! timed send until the last message has been received.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{payload, warmup_count, BenchLine, LatencyRecorder, Scenario};

/// Messages per `writev` in [`stream`]: `IOV_MAX/2` (two iovecs each).
pub const STREAM_BATCH: usize = 512;
/// Header bytes in front of each payload in [`stream`].
pub const STREAM_HEADER: usize = 16;
/// The reader's buffers tried by [`stream`]; the best one is the floor.
pub const STREAM_READ_BUFFERS: [usize; 2] = [256 * 1024, 1024 * 1024];
/// The reply to each [`ping_pong`] request.
pub const ACK: &[u8; 3] = b"ACK";

/// How long either side waits on a socket before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The floor line for `scenario`, or `None` where there is none (S6, S7):
/// [`stream`] for S1 and S5, [`ping_pong`] for S2 and S4, [`pooled`] for S3
/// (the scenarios define S3's goal against Tribes; its floor shows what
/// the kernel allows on the same machine).
///
/// # Errors
///
/// As [`stream`], [`ping_pong`] and [`pooled`].
pub fn for_scenario(scenario: Scenario, count: u64, size: usize) -> io::Result<Option<BenchLine>> {
    match scenario {
        Scenario::S1 | Scenario::S5 => stream(scenario, count, size).map(Some),
        Scenario::S2 | Scenario::S4 => ping_pong(scenario, count, size).map(Some),
        Scenario::S3 => pooled(scenario, count, size, scenario.threads()).map(Some),
        Scenario::S6 | Scenario::S7 => Ok(None),
    }
}

/// S3's floor (see the module's notes): the faster of a run with blocking
/// callers and one with yielding pollers. The line has `impl=floor`, the
/// message rate over all callers, and p50/p99 of the round trips.
///
/// # Errors
///
/// Any socket error on either side, a side stalling for a minute, or a
/// request arriving corrupted.
pub fn pooled(
    scenario: Scenario,
    count: u64,
    size: usize,
    threads: usize,
) -> io::Result<BenchLine> {
    let threads = threads.max(1);
    let per = count / threads as u64;
    let mut best: Option<(Duration, LatencyRecorder, &str)> = None;
    for (wait, poll) in [("block", false), ("yield", true)] {
        let (took, lat) = pooled_once(count, size, threads, poll)?;
        if best.as_ref().is_none_or(|(b, _, _)| took < *b) {
            best = Some((took, lat, wait));
        }
    }
    let (took, mut lat, wait) = best.expect("two runs");
    Ok(
        BenchLine::measured(scenario, "floor", per * threads as u64, size as u64, took)
            .with_latency(lat.percentiles())
            .with_extra("threads", threads)
            .with_extra("wait", wait)
            .with_extra("floor", "pooled_pingpong"),
    )
}

fn pooled_once(
    count: u64,
    size: usize,
    threads: usize,
    poll: bool,
) -> io::Result<(Duration, LatencyRecorder)> {
    let per = count / threads as u64;
    let warm = warmup_count(count) / threads as u64;
    let mut callers = Vec::with_capacity(threads);
    let mut answerers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (client, server) = loopback_pair()?;
        client.set_nonblocking(poll)?;
        callers.push(client);
        answerers.push(thread::Builder::new().name("floor-answer".into()).spawn(
            move || -> io::Result<()> {
                let mut server = server;
                let mut request = vec![0; size];
                for _ in 0..warm + per {
                    server.read_exact(&mut request)?;
                    server.write_all(ACK)?;
                }
                if request != payload(size) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request corrupted",
                    ));
                }
                Ok(())
            },
        )?);
    }
    let barrier = std::sync::Barrier::new(threads + 1);
    let request = payload(size);
    let (took, lats) = thread::scope(|sc| -> io::Result<(Duration, Vec<LatencyRecorder>)> {
        let hs: Vec<_> = callers
            .into_iter()
            .map(|mut c| {
                let (barrier, request) = (&barrier, &request);
                sc.spawn(move || -> io::Result<LatencyRecorder> {
                    let mut ack = [0u8; ACK.len()];
                    let mut one = |c: &mut TcpStream| -> io::Result<()> {
                        if poll {
                            spin_write_all(c, request)?;
                            poll_read_exact(c, &mut ack, thread::yield_now)
                        } else {
                            c.write_all(request)?;
                            c.read_exact(&mut ack)
                        }
                    };
                    let r = (0..warm).try_for_each(|_| one(&mut c));
                    barrier.wait();
                    let mut lat = LatencyRecorder::with_capacity(per as usize);
                    let r = r.and_then(|()| {
                        (0..per).try_for_each(|_| {
                            let t = Instant::now();
                            one(&mut c)?;
                            lat.record(t.elapsed());
                            Ok(())
                        })
                    });
                    barrier.wait();
                    r.map(|()| lat)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        let took = t0.elapsed();
        let mut lats = Vec::with_capacity(threads);
        for h in hs {
            lats.push(
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("floor caller panicked")))?,
            );
        }
        Ok((took, lats))
    })?;
    for a in answerers {
        join(a)?;
    }
    let mut all = LatencyRecorder::with_capacity(count as usize);
    for l in &lats {
        all.merge(l);
    }
    Ok((took, all))
}

/// Busy-polling TCP ping-pong: `count` timed requests of `size` bytes, each
/// answered by [`ACK`]; both sides spin on non-blocking sockets. The line
/// has `impl=floor`, the message rate, and p50/p99 of the round trips.
///
/// Each side needs a core while it spins: on a busy machine the figure
/// shows preemption, not the limit.
///
/// # Errors
///
/// Any socket error on either side, or a side stalling for a minute.
pub fn ping_pong(scenario: Scenario, count: u64, size: usize) -> io::Result<BenchLine> {
    let (client, server) = loopback_pair()?;
    client.set_nonblocking(true)?;
    server.set_nonblocking(true)?;
    let warm = warmup_count(count);
    let total = warm + count;
    let echo =
        thread::Builder::new()
            .name("floor-pong".into())
            .spawn(move || -> io::Result<()> {
                let mut server = server;
                let mut request = vec![0; size];
                for _ in 0..total {
                    spin_read_exact(&mut server, &mut request)?;
                    spin_write_all(&mut server, ACK)?;
                }
                let want = payload(size);
                if request != want {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request corrupted",
                    ));
                }
                Ok(())
            })?;

    let mut client = client;
    let request = payload(size);
    let mut ack = [0u8; ACK.len()];
    let mut latencies = LatencyRecorder::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut round_trip = |client: &mut TcpStream| -> io::Result<()> {
        spin_write_all(client, &request)?;
        spin_read_exact(client, &mut ack)
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
    drop(client); // the echo thread sees EOF if the client side failed
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
            .with_latency(latencies.percentiles())
            .with_extra("floor", "pingpong_spin"),
    )
}

/// Spins until `buf` is full (a non-blocking socket), giving up after
/// [`IO_TIMEOUT`].
fn spin_read_exact(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    poll_read_exact(s, buf, std::hint::spin_loop)
}

/// Polls a non-blocking socket until `buf` is full, running `pause`
/// between polls, giving up after [`IO_TIMEOUT`].
fn poll_read_exact(s: &mut TcpStream, buf: &mut [u8], pause: fn()) -> io::Result<()> {
    let mut got = 0;
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if would_block(&e) => idle(&mut spins, &mut since, pause)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Spins until all of `buf` is written (a non-blocking socket).
fn spin_write_all(s: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    while done < buf.len() {
        match s.write(&buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if would_block(&e) => idle(&mut spins, &mut since, std::hint::spin_loop)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// One turn of a busy wait (`pause`); reads the clock only every 4096
/// turns.
fn idle(spins: &mut u32, since: &mut Option<Instant>, pause: fn()) -> io::Result<()> {
    pause();
    *spins = spins.wrapping_add(1);
    if *spins % 4096 == 0 {
        let t0 = *since.get_or_insert_with(Instant::now);
        if t0.elapsed() > IO_TIMEOUT {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

/// One-way stream: `count` timed messages of a [`STREAM_HEADER`]-byte header
/// and a `size`-byte payload, [`STREAM_BATCH`] per `writev`, once with each
/// of [`STREAM_READ_BUFFERS`]; the faster run is the floor. The line has
/// `impl=floor`, the message rate and the payload MB/s, `batch=` and the
/// winning `rbuf=`.
///
/// # Errors
///
/// Any socket error on either side, a side stalling for a minute, or the
/// reader seeing the stream end early or a header it did not expect.
pub fn stream(scenario: Scenario, count: u64, size: usize) -> io::Result<BenchLine> {
    let mut best: Option<(Duration, usize)> = None;
    for rbuf in STREAM_READ_BUFFERS {
        let took = stream_once(count, size, rbuf)?;
        if best.is_none_or(|(b, _)| took < b) {
            best = Some((took, rbuf));
        }
    }
    let (took, rbuf) = best.expect("at least one read buffer");
    Ok(
        BenchLine::measured(scenario, "floor", count, size as u64, took)
            .with_extra("batch", STREAM_BATCH)
            .with_extra("rbuf", rbuf)
            .with_extra("floor", "stream_max"),
    )
}

fn stream_once(count: u64, size: usize, rbuf: usize) -> io::Result<Duration> {
    let (writer, reader) = loopback_pair()?;
    let warm = warmup_count(count);
    let mut header = [0u8; STREAM_HEADER];
    header[..4].copy_from_slice(b"FLR1");
    header[4..8].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
    let sink = thread::Builder::new().name("floor-sink".into()).spawn(
        move || -> io::Result<Instant> {
            let mut reader = reader;
            let mut buf = vec![0; rbuf];
            let mut walker = Walker::new(header);
            walker.drain(&mut reader, &mut buf, warm)?;
            // Tell the writer the warm-up is through, so timing starts on
            // an idle connection.
            reader.write_all(b"G")?;
            walker.drain(&mut reader, &mut buf, warm + count)?;
            let done = Instant::now();
            if !walker.at_boundary() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "stream ended inside a frame",
                ));
            }
            Ok(done)
        },
    )?;

    let mut writer = writer;
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
    Ok(done.duration_since(t0))
}

/// The receiver of [`stream`]: walks every frame header (one may straddle
/// two reads) and counts complete messages, as `stream_max.c` does.
struct Walker {
    expect: [u8; STREAM_HEADER],
    header: [u8; STREAM_HEADER],
    have: usize,
    skip: usize,
    counted: u64,
}

impl Walker {
    fn new(expect: [u8; STREAM_HEADER]) -> Walker {
        Walker {
            expect,
            header: [0; STREAM_HEADER],
            have: 0,
            skip: 0,
            counted: 0,
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }

    /// Reads until `target` messages were counted in all.
    fn drain(&mut self, s: &mut TcpStream, buf: &mut [u8], target: u64) -> io::Result<()> {
        while self.counted < target {
            let n = match s.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.walk(&buf[..n])?;
        }
        Ok(())
    }

    fn walk(&mut self, mut p: &[u8]) -> io::Result<()> {
        while !p.is_empty() {
            if self.skip > 0 {
                let k = p.len().min(self.skip);
                p = &p[k..];
                self.skip -= k;
                if self.skip == 0 {
                    self.counted += 1;
                }
                continue;
            }
            let k = (STREAM_HEADER - self.have).min(p.len());
            self.header[self.have..self.have + k].copy_from_slice(&p[..k]);
            self.have += k;
            p = &p[k..];
            if self.have == STREAM_HEADER {
                self.have = 0;
                if self.header != self.expect {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad frame header",
                    ));
                }
                let len = u32::from_be_bytes([
                    self.header[4],
                    self.header[5],
                    self.header[6],
                    self.header[7],
                ]);
                self.skip = len as usize;
                if self.skip == 0 {
                    self.counted += 1;
                }
            }
        }
        Ok(())
    }
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
    fn walker_counts_frames_split_anywhere_and_refuses_a_bad_header() {
        let mut h = [0u8; STREAM_HEADER];
        h[..4].copy_from_slice(b"FLR1");
        h[4..8].copy_from_slice(&5u32.to_be_bytes());
        let one: Vec<u8> = [&h[..], b"abcde"].concat();
        let three = one.repeat(3);
        for cut in 0..three.len() {
            let mut w = Walker::new(h);
            w.walk(&three[..cut]).unwrap();
            w.walk(&three[cut..]).unwrap();
            assert_eq!(w.counted, 3, "cut at {cut}");
            assert!(w.at_boundary());
        }
        let mut bad = one.clone();
        bad[0] = b'X';
        assert!(Walker::new(h).walk(&bad).is_err());
    }

    #[test]
    fn floor_exists_only_where_there_is_one() {
        for s in [Scenario::S6, Scenario::S7] {
            assert!(for_scenario(s, 10, 16).unwrap().is_none());
        }
    }

    #[test]
    fn pooled_floor_counts_every_callers_round_trips() {
        let l = for_scenario(Scenario::S3, 400, 1024).unwrap().unwrap();
        let text = l.to_string();
        assert!(
            text.starts_with("S3 pooled-ack-1k-4t impl=floor count=400 size=1024 "),
            "{text}"
        );
        assert!(text.contains(" threads=4 "), "{text}");
        assert!(text.contains(" floor=pooled_pingpong"), "{text}");
        assert!(
            text.contains(" wait=block ") || text.contains(" wait=yield "),
            "{text}"
        );
    }
}
