//! The receiver: one mio selector thread that accepts, reads into large
//! buffers, decodes frames in place and hands the listener zero-copy slices,
//! in order per connection. With `tcpThreadCount > 0` delivery runs on a
//! worker pool; each connection is pinned to one worker, which keeps its
//! order, and a full worker queue pauses reading that connection instead of
//! blocking the selector.

use super::{Message, MessageListener, Shared};
use crate::error::{Error, Result};
use crate::proto::inbound::{InEvent, InboundConn};
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::compress::Inflater;
use crate::wire::frame::{batch_frames, FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED};
use crate::wire::tribes::{self, ChannelData};
use crate::wire::{compress, detect_dialect, Dialect, Preface};
use bytes::BytesMut;
use crossbeam_queue::ArrayQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes reserved for each read.
const READ_CHUNK: usize = 256 * 1024;
/// Reads per connection per event before others get a turn.
const READ_BUDGET: usize = 8;
/// Inbound connections beyond this are refused.
const MAX_CONNECTIONS: usize = 4096;
const WORKER_QUEUE: usize = 4096;

/// A running receiver.
pub struct Receiver {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    workers: Vec<WorkerHandle>,
}

struct WorkerHandle {
    shared: Arc<WorkerShared>,
    thread: Option<JoinHandle<()>>,
}

struct Job {
    token: usize,
    msg: Message,
    ack: bool,
}

struct AckReturn {
    token: usize,
    id: u64,
    err: Option<String>,
}

struct WorkerShared {
    q: ArrayQueue<Job>,
    sleeping: AtomicBool,
    stop: AtomicBool,
}

struct RxShared {
    acks: ArrayQueue<AckReturn>,
    sleeping: AtomicBool,
    waker: Arc<Waker>,
}

impl Receiver {
    /// Binds `tcpListenAddress:tcpListenPort` and starts the selector (and
    /// worker) threads.
    ///
    /// # Errors
    /// Bind or thread-spawn failures.
    pub fn start(shared: Arc<Shared>, listener: MessageListener) -> Result<Receiver> {
        let addr = SocketAddr::new(shared.cfg.tcp_listen_address, shared.cfg.tcp_listen_port);
        let mut tcp = TcpListener::bind(addr)?;
        let local = tcp.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut tcp, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let nworkers = shared.cfg.tcp_thread_count;
        let rx_shared = Arc::new(RxShared {
            acks: ArrayQueue::new(WORKER_QUEUE * nworkers.max(1) + 64),
            sleeping: AtomicBool::new(false),
            waker: waker.clone(),
        });
        let mut workers = Vec::with_capacity(nworkers);
        for i in 0..nworkers {
            let ws = Arc::new(WorkerShared {
                q: ArrayQueue::new(WORKER_QUEUE),
                sleeping: AtomicBool::new(false),
                stop: AtomicBool::new(false),
            });
            let (w2, l2, r2, s2) = (
                ws.clone(),
                listener.clone(),
                rx_shared.clone(),
                shared.clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("sr-worker-{i}"))
                .spawn(move || worker_loop(w2, l2, r2, s2))?;
            workers.push(WorkerHandle {
                shared: ws,
                thread: Some(t),
            });
        }
        let worker_shared: Vec<_> = workers.iter().map(|w| w.shared.clone()).collect();
        let mut sel = Selector {
            poll,
            tcp,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            shared: shared.clone(),
            listener,
            stop: stop.clone(),
            rx: rx_shared,
            workers: worker_shared,
            worker_threads: workers
                .iter()
                .map(|w| w.thread.as_ref().map(|t| t.thread().clone()))
                .collect(),
            inflater: Inflater::new(shared.cfg.max_decompressed_size),
            local_preface: shared.preface(true),
            again: Vec::new(),
            stalled: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("sr-receiver".into())
            .spawn(move || sel.run())?;
        sr_log!(Info, "receiver listening on {local}");
        Ok(Receiver {
            local,
            stop,
            waker,
            thread: Some(thread),
            workers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the threads and closes every connection. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for w in &mut self.workers {
            w.shared.stop.store(true, Ordering::SeqCst);
            if let Some(t) = w.thread.take() {
                t.thread().unpark();
                let _ = t.join();
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct RxConn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The sending member's address (preface listen port), else `peer`.
    from: SocketAddr,
    /// Set once the connection turns out to speak Tribes framing.
    tribes: Option<TribesRx>,
    buf: BytesMut,
    proto: InboundConn,
    member_id: [u8; 16],
    dialect: Dialect,
    write_interest: bool,
    /// Messages decoded but not yet taken by a full worker queue.
    stalled: std::collections::VecDeque<Job>,
}

/// Tribes side of a connection: frames in, 21-byte ACK / FAIL_ACK frames out.
struct TribesRx {
    dec: tribes::FrameDecoder,
    out: Vec<u8>,
    seq: u64,
}

struct Selector {
    poll: Poll,
    tcp: TcpListener,
    conns: HashMap<usize, RxConn>,
    next_token: usize,
    shared: Arc<Shared>,
    listener: MessageListener,
    stop: Arc<AtomicBool>,
    rx: Arc<RxShared>,
    workers: Vec<Arc<WorkerShared>>,
    worker_threads: Vec<Option<std::thread::Thread>>,
    inflater: Inflater,
    local_preface: Preface,
    /// Connections with unread data left after their read budget.
    again: Vec<usize>,
    /// Connections paused on a full worker queue.
    stalled: Vec<usize>,
}

/// Why a connection is being closed.
enum Close {
    Eof,
    Io(io::Error),
    Protocol(Error),
}

impl Selector {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let spin = self.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let busy = !self.again.is_empty() || !self.stalled.is_empty();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                match idle_since {
                    Some(t) if t.elapsed() >= spin => {
                        self.rx.sleeping.store(true, Ordering::SeqCst);
                        if self.rx.acks.is_empty() {
                            Some(Duration::from_millis(500))
                        } else {
                            Some(Duration::ZERO)
                        }
                    }
                    _ => Some(Duration::ZERO),
                }
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    sr_log!(Error, "receiver poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.rx.sleeping.store(false, Ordering::SeqCst);
            let mut did = !events.is_empty();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.service(t);
                        }
                        if ev.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            did |= self.drain_worker_acks();
            if !self.stalled.is_empty() {
                for t in std::mem::take(&mut self.stalled) {
                    self.service(t);
                }
                did = true;
            }
            if !self.again.is_empty() {
                for t in std::mem::take(&mut self.again) {
                    self.service(t);
                }
                did = true;
            }
            if did {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(Instant::now());
            }
        }
        for (_, mut c) in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn accept(&mut self) {
        loop {
            match self.tcp.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        sr_log!(Warn, "refusing {peer}: {MAX_CONNECTIONS} connections open");
                        continue;
                    }
                    let _ = stream.set_nodelay(self.shared.cfg.tcp_no_delay);
                    set_buffers(&stream, &self.shared.cfg);
                    let token = self.next_token;
                    self.next_token += 1;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(token), Interest::READABLE)
                    {
                        sr_log!(Warn, "cannot register {peer}: {e}");
                        continue;
                    }
                    Stats::add(&self.shared.stats.connections_accepted, 1);
                    self.conns.insert(
                        token,
                        RxConn {
                            stream,
                            peer,
                            from: peer,
                            tribes: None,
                            buf: BytesMut::with_capacity(READ_CHUNK),
                            proto: InboundConn::new(
                                self.local_preface.clone(),
                                self.shared.cfg.max_frame_size,
                            ),
                            member_id: [0; 16],
                            dialect: Dialect::Unknown,
                            write_interest: false,
                            stalled: std::collections::VecDeque::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    sr_log!(Warn, "accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn service(&mut self, token: usize) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let r = self.service_conn(token, &mut c);
        match r {
            Ok(()) => {
                self.flush_conn(token, &mut c);
                self.conns.insert(token, c);
            }
            Err(why) => self.close(token, c, why),
        }
    }

    fn service_conn(&mut self, token: usize, c: &mut RxConn) -> std::result::Result<(), Close> {
        // A paused connection first hands over its held jobs.
        while let Some(job) = c.stalled.pop_front() {
            if let Err(job) = self.dispatch(job) {
                c.stalled.push_front(job);
                self.stalled.push(token);
                return Ok(());
            }
        }
        // Frames decoded from bytes already buffered.
        self.decode(token, c)?;
        if !c.stalled.is_empty() {
            return Ok(());
        }
        let fd = c.stream.as_raw_fd();
        for _ in 0..READ_BUDGET {
            let want = c.proto.wanted(&c.buf).max(READ_CHUNK / 4);
            match crate::driver::sys::read_into(fd, &mut c.buf, want) {
                Ok(0) => return Err(Close::Eof),
                Ok(n) => Stats::add(&self.shared.stats.bytes_received, n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Close::Io(e)),
            }
            self.decode(token, c)?;
            if !c.stalled.is_empty() {
                return Ok(());
            }
        }
        // Budget spent with data possibly left: come back next turn.
        self.again.push(token);
        Ok(())
    }

    fn decode(&mut self, token: usize, c: &mut RxConn) -> std::result::Result<(), Close> {
        if c.dialect == Dialect::Unknown {
            match detect_dialect(&c.buf) {
                Dialect::Unknown => return Ok(()),
                Dialect::Native => c.dialect = Dialect::Native,
                Dialect::Tribes => {
                    c.dialect = Dialect::Tribes;
                    c.tribes = Some(TribesRx {
                        dec: tribes::FrameDecoder::new(self.shared.cfg.max_frame_size),
                        out: Vec::new(),
                        seq: 0,
                    });
                }
                Dialect::Garbage => {
                    return Err(Close::Protocol(Error::Protocol(
                        "unknown protocol (bad magic)".into(),
                    )))
                }
            }
        }
        if c.dialect == Dialect::Tribes {
            return self.decode_tribes(c);
        }
        let mut delivered = 0u64;
        let result = loop {
            let ev = match c.proto.poll(&mut c.buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break Ok(()),
                Err(e) => break Err(Close::Protocol(e)),
            };
            match ev {
                InEvent::Open(p) => {
                    c.member_id = p.member_id;
                    if p.listen_port != 0 {
                        c.from = SocketAddr::new(c.peer.ip(), p.listen_port);
                    }
                }
                InEvent::GoAway(reason) => {
                    sr_log!(Debug, "{} going away: {reason}", c.peer);
                    break Err(Close::Eof);
                }
                InEvent::Data(f) => {
                    let (id, flags) = (f.header.id, f.header.flags);
                    let payload = if flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(p) => p,
                            Err(e) => {
                                c.proto.fail(id, &e.to_string());
                                break Err(Close::Protocol(e));
                            }
                        }
                    } else {
                        f.payload
                    };
                    delivered += 1;
                    self.on_data(token, c, id, flags, payload);
                }
                InEvent::Batch(f) => {
                    let body = if f.header.flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(b) => b,
                            Err(e) => break Err(Close::Protocol(e)),
                        }
                    } else {
                        f.payload
                    };
                    let max = self.shared.cfg.max_frame_size;
                    let mut bad = None;
                    for r in batch_frames(&body, max) {
                        match r {
                            Ok((h, p)) => {
                                delivered += 1;
                                self.on_data(token, c, h.id, h.flags, p);
                            }
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = bad {
                        break Err(Close::Protocol(e));
                    }
                }
            }
            if !c.stalled.is_empty() {
                break Ok(());
            }
        };
        Stats::add(&self.shared.stats.msgs_received, delivered);
        result
    }

    /// One message: ack on receipt, deliver (here or on the connection's
    /// worker), ack or FAIL after delivery. A full worker queue parks the
    /// message on the connection, which stops reading until it drains.
    fn on_data(&mut self, token: usize, c: &mut RxConn, id: u64, flags: u8, payload: bytes::Bytes) {
        if flags & FLAG_ACK_RECEIPT != 0 {
            c.proto.ack(id);
        }
        let msg = Message {
            from: c.from,
            peer: c.peer,
            member_id: c.member_id,
            id,
            payload,
        };
        let ack = flags & FLAG_ACK_DELIVERY != 0;
        if self.workers.is_empty() {
            let r = deliver(&self.listener, &msg, &self.shared);
            if ack {
                match r {
                    Ok(()) => c.proto.ack(id),
                    Err(reason) => c.proto.fail(id, &reason),
                }
            }
            return;
        }
        let job = Job { token, msg, ack };
        if !c.stalled.is_empty() {
            c.stalled.push_back(job);
        } else if let Err(job) = self.dispatch(job) {
            c.stalled.push_back(job);
            self.stalled.push(token);
        }
    }

    /// Tribes framing: each frame carries a ChannelData; acks follow the
    /// message's options exactly as Tribes' NioReplicationTask does (ACK
    /// before delivery with USE_ACK; after it, or FAIL_ACK, with
    /// SYNCHRONIZED_ACK). Gzip-flagged bodies are inflated within bounds.
    /// Delivery stays on the selector thread (Tribes connections are rare
    /// and this keeps their order trivially).
    fn decode_tribes(&mut self, c: &mut RxConn) -> std::result::Result<(), Close> {
        use tribes::options::{GZIP, SYNCHRONIZED_ACK, USE_ACK};
        let Some(t) = c.tribes.as_mut() else {
            return Ok(());
        };
        let mut delivered = 0u64;
        loop {
            let payload = match t.dec.decode(&mut c.buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(Close::Protocol(e)),
            };
            let cd = ChannelData::decode(payload).map_err(Close::Protocol)?;
            let member = cd.member().map_err(Close::Protocol)?;
            let from = match u16::try_from(member.port) {
                Ok(p) if p != 0 => SocketAddr::new(member.host, p),
                _ => c.peer,
            };
            let member_id = member.unique_id;
            let use_ack = cd.has(USE_ACK);
            let sync = use_ack && cd.has(SYNCHRONIZED_ACK);
            if use_ack && !sync {
                t.out.extend_from_slice(&tribes::ACK_FRAME);
            }
            let body = if cd.has(GZIP) {
                match compress::gunzip_bounded(&cd.message, self.shared.cfg.max_decompressed_size) {
                    Ok(b) => b,
                    Err(e) => {
                        if sync {
                            t.out.extend_from_slice(&tribes::FAIL_ACK_FRAME);
                        }
                        let _ = (&c.stream).write_some(&t.out);
                        return Err(Close::Protocol(e));
                    }
                }
            } else {
                cd.message
            };
            // Tribes' failure-detector probes and pings are not messages.
            let r = if tribes::is_control_body(&body) {
                Ok(())
            } else {
                t.seq += 1;
                delivered += 1;
                let msg = Message {
                    from,
                    peer: c.peer,
                    member_id,
                    id: t.seq,
                    payload: body,
                };
                deliver(&self.listener, &msg, &self.shared)
            };
            if sync {
                t.out.extend_from_slice(match r {
                    Ok(()) => &tribes::ACK_FRAME,
                    Err(_) => &tribes::FAIL_ACK_FRAME,
                });
            }
        }
        Stats::add(&self.shared.stats.msgs_received, delivered);
        Ok(())
    }

    // Handing the job back on a full queue is the point; boxing it would
    // cost an allocation per message.
    #[allow(clippy::result_large_err)]
    fn dispatch(&self, job: Job) -> std::result::Result<(), Job> {
        let w = job.token % self.workers.len();
        let ws = &self.workers[w];
        ws.q.push(job)?;
        if ws.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(t) = &self.worker_threads[w] {
                t.unpark();
            }
        }
        Ok(())
    }

    fn drain_worker_acks(&mut self) -> bool {
        let mut touched = Vec::new();
        while let Some(a) = self.rx.acks.pop() {
            if let Some(c) = self.conns.get_mut(&a.token) {
                match a.err {
                    None => c.proto.ack(a.id),
                    Some(r) => c.proto.fail(a.id, &r),
                }
                if touched.last() != Some(&a.token) {
                    touched.push(a.token);
                }
            }
        }
        let any = !touched.is_empty();
        for t in touched {
            self.flush(t);
        }
        any
    }

    fn flush(&mut self, token: usize) {
        if let Some(mut c) = self.conns.remove(&token) {
            if self.flush_conn(token, &mut c) {
                self.conns.insert(token, c);
            } else {
                self.close(token, c, Close::Eof);
            }
        }
    }

    /// Writes pending acks; returns false if the connection broke.
    fn flush_conn(&mut self, token: usize, c: &mut RxConn) -> bool {
        let out = match c.tribes.as_mut() {
            Some(t) if !t.out.is_empty() => &mut t.out,
            Some(_) => return true,
            None if !c.proto.has_output() => return true,
            None => c.proto.take_output(),
        };
        let acks_before = out.len();
        let mut written = 0;
        while written < out.len() {
            match (&c.stream).write_some(&out[written..]) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        out.drain(..written);
        if acks_before > 0 {
            Stats::add(&self.shared.stats.acks_sent, 1);
        }
        let want_write = !out.is_empty();
        if want_write != c.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut c.stream, Token(token), interest)
                .is_err()
            {
                return false;
            }
            c.write_interest = want_write;
        }
        true
    }

    fn close(&mut self, _token: usize, mut c: RxConn, why: Close) {
        match why {
            Close::Eof => sr_log!(Debug, "connection from {} closed", c.peer),
            Close::Io(e) => sr_log!(Info, "connection from {} failed: {e}", c.peer),
            Close::Protocol(e) => {
                Stats::add(&self.shared.stats.protocol_errors, 1);
                sr_log!(Warn, "closing connection from {}: {e}", c.peer);
                // Best effort: tell the peer why (FAIL frames queued above).
                let out = c.proto.take_output();
                let _ = (&c.stream).write_some(out);
            }
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
    }
}

/// Calls the listener, turning a panic into a failure.
fn deliver(l: &MessageListener, m: &Message, shared: &Shared) -> std::result::Result<(), String> {
    let r = match catch_unwind(AssertUnwindSafe(|| l(m))) {
        Ok(r) => r,
        Err(_) => Err("listener panicked".to_string()),
    };
    if r.is_err() {
        Stats::add(&shared.stats.listener_errors, 1);
    }
    r
}

fn worker_loop(w: Arc<WorkerShared>, l: MessageListener, rx: Arc<RxShared>, shared: Arc<Shared>) {
    let spin = shared.cfg.idle.spin;
    let mut idle_since: Option<Instant> = None;
    loop {
        if let Some(job) = w.q.pop() {
            idle_since = None;
            let r = deliver(&l, &job.msg, &shared);
            if job.ack {
                let mut ret = AckReturn {
                    token: job.token,
                    id: job.msg.id,
                    err: r.err(),
                };
                // The return queue holds every worker's full queue, so this
                // only spins if the selector is far behind.
                while let Err(back) = rx.acks.push(ret) {
                    ret = back;
                    std::thread::yield_now();
                }
                if rx.sleeping.swap(false, Ordering::SeqCst) {
                    let _ = rx.waker.wake();
                }
            }
            continue;
        }
        if w.stop.load(Ordering::SeqCst) {
            return;
        }
        match idle_since {
            None => idle_since = Some(Instant::now()),
            Some(t) if t.elapsed() >= spin => {
                w.sleeping.store(true, Ordering::SeqCst);
                if w.q.is_empty() && !w.stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                w.sleeping.store(false, Ordering::SeqCst);
            }
            _ => std::hint::spin_loop(),
        }
    }
}

/// Applies `rxBufSize` / `txBufSize` to a socket.
pub(crate) fn set_buffers(s: &impl std::os::fd::AsFd, cfg: &crate::config::Config) {
    let sock = socket2::SockRef::from(s);
    if cfg.rx_buf_size > 0 {
        let _ = sock.set_recv_buffer_size(cfg.rx_buf_size);
    }
    if cfg.tx_buf_size > 0 {
        let _ = sock.set_send_buffer_size(cfg.tx_buf_size);
    }
}

trait WriteSome {
    fn write_some(self, b: &[u8]) -> io::Result<usize>;
}
impl WriteSome for &TcpStream {
    fn write_some(self, b: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        let mut s = self;
        s.write(b)
    }
}
