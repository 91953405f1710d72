//! The receiver: one mio selector thread that accepts, reads into large
//! buffers, decodes frames in place and hands the listener zero-copy slices,
//! in order per connection. With `tcpThreadCount > 0` delivery runs on a
//! worker pool; each connection is pinned to one worker, which keeps its
//! order, and a full worker queue pauses reading that connection instead of
//! blocking the selector.

use super::rx_core::{self, Close, ConnCore, RxCore, WorkerHandle};
use super::rx_engine::{self, RxDriver};
use super::{MessageListener, Shared};
use crate::error::Result;
use crate::queue::Wake;
use crate::sr_log;
use crate::stats::Stats;
use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
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

/// A running receiver.
pub struct Receiver {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    workers: Vec<WorkerHandle>,
}

struct MioWake(Arc<Waker>);
impl Wake for MioWake {
    fn wake(&self) {
        let _ = self.0.wake();
    }
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
        let (core, workers) =
            rx_core::start_workers(&shared, listener, Box::new(MioWake(waker.clone())), 0)?;
        let mut sel = Selector {
            poll,
            tcp,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            core,
            stop: stop.clone(),
            again: Vec::new(),
            stalled: Vec::new(),
        };
        let thread = crate::driver::sys::ThreadBuilder::new()
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
        rx_core::stop_workers(&mut self.workers);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct RxConn {
    stream: TcpStream,
    buf: BytesMut,
    core: ConnCore,
    write_interest: bool,
}

struct Selector {
    poll: Poll,
    tcp: TcpListener,
    conns: HashMap<usize, RxConn>,
    next_token: usize,
    core: RxCore,
    stop: Arc<AtomicBool>,
    /// Connections with unread data left after their read budget.
    again: Vec<usize>,
    /// Connections paused on a full worker queue.
    stalled: Vec<usize>,
}

/// Longest sleep of an idle selector.
const IDLE_POLL: Duration = Duration::from_millis(500);

impl Selector {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let spin = self.core.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let busy = !self.again.is_empty() || !self.stalled.is_empty();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                match idle_since {
                    Some(t) if t.elapsed() >= spin => {
                        self.core.rx.sleeping.store(true, Ordering::SeqCst);
                        if self.core.rx.acks.is_empty() {
                            // Until the next handshake or ack-write deadline.
                            Some(self.core.sleep_for(IDLE_POLL))
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
            self.core.rx.sleeping.store(false, Ordering::SeqCst);
            let mut did = !events.is_empty();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.service(t, !ev.is_read_closed() && !ev.is_error());
                        }
                        if ev.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            did |= self.drain_worker_acks();
            did |= rx_engine::enforce_limits(self);
            if !self.stalled.is_empty() {
                for t in std::mem::take(&mut self.stalled) {
                    self.service(t, false);
                }
                did = true;
            }
            if !self.again.is_empty() {
                for t in std::mem::take(&mut self.again) {
                    self.service(t, false);
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
                    let token = self.next_token;
                    self.next_token += 1;
                    if !rx_engine::admit(self, token, peer) {
                        continue;
                    }
                    let _ = stream.set_nodelay(self.core.shared.cfg.tcp_no_delay);
                    set_buffers(&stream, &self.core.shared.cfg);
                    let core = self.core.new_conn(token, peer);
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(token), Interest::READABLE)
                    {
                        sr_log!(Warn, "cannot register {peer}: {e}");
                        self.core.on_close(&core, &Close::Io(e));
                        continue;
                    }
                    self.conns.insert(
                        token,
                        RxConn {
                            stream,
                            buf: BytesMut::with_capacity(READ_CHUNK),
                            core,
                            write_interest: false,
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

    /// Reads and serves a connection. `short_read_drains`: this turn comes
    /// from a readiness event without hang-up or error, so a read that
    /// leaves room in the buffer emptied the socket (anything arriving
    /// after the event brings a new one: edge-triggered) and the read that
    /// would only say so is skipped.
    fn service(&mut self, token: usize, short_read_drains: bool) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let r = self.service_conn(token, &mut c, short_read_drains);
        match r {
            Ok(()) => {
                self.flush_conn(token, &mut c);
                self.conns.insert(token, c);
            }
            Err(why) => self.close(token, c, why),
        }
    }

    fn service_conn(
        &mut self,
        token: usize,
        c: &mut RxConn,
        short_read_drains: bool,
    ) -> std::result::Result<(), Close> {
        self.core.begin_turn(&mut c.core);
        // A paused connection first hands over its held job.
        if !self.core.unstall(&mut c.core) {
            self.stalled.push(token);
            return Ok(());
        }
        // Frames decoded from bytes already buffered.
        self.core.decode(token, &mut c.core, &mut c.buf)?;
        if c.core.paused() {
            rx_engine::park(self, token, c);
            return Ok(());
        }
        let fd = c.stream.as_raw_fd();
        for _ in 0..READ_BUDGET {
            let want = c.core.proto.wanted(&c.buf).max(READ_CHUNK / 4);
            let drained = match crate::driver::sys::read_into(fd, &mut c.buf, want) {
                Ok(0) => return Err(Close::Eof),
                Ok(n) => {
                    Stats::add(&self.core.shared.stats.bytes_received, n as u64);
                    short_read_drains && c.buf.len() < c.buf.capacity()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Close::Io(e)),
            };
            self.core.decode(token, &mut c.core, &mut c.buf)?;
            if c.core.paused() {
                rx_engine::park(self, token, c);
                return Ok(());
            }
            // Acks go out now, before the read that finds the socket
            // empty: a synchronous sender is waiting for them.
            if c.core.proto.has_output() && !self.flush_conn(token, c) {
                return Err(Close::Eof);
            }
            if drained {
                return Ok(());
            }
        }
        // Budget spent with data possibly left: come back next turn.
        self.again.push(token);
        Ok(())
    }

    fn drain_worker_acks(&mut self) -> bool {
        let mut touched = Vec::new();
        while let Some(a) = self.core.pop_ack() {
            if let Some(c) = self.conns.get_mut(&a.token) {
                let t = a.token;
                self.core.worker_ack(&mut c.core, a);
                if touched.last() != Some(&t) {
                    touched.push(t);
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
        if !c.core.proto.has_output() {
            return true;
        }
        let out = c.core.proto.take_output();
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
            Stats::add(&self.core.shared.stats.acks_sent, 1);
        }
        let want_write = !out.is_empty();
        rx_engine::output_written(self, token, c);
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
        self.core.on_close(&c.core, &why);
        if let Close::Protocol(_) | Close::Eof = why {
            // Best effort: tell the peer why (FAIL frames queued above), or
            // ack what came with its hang-up.
            let out = c.core.proto.take_output();
            let _ = (&c.stream).write_some(out);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
    }
}

/// Readiness: a paused connection is simply not read; its unread bytes
/// wait in the socket.
impl RxDriver for Selector {
    type Conn = RxConn;

    fn core(&mut self) -> &mut RxCore {
        &mut self.core
    }

    fn conn_core(c: &mut RxConn) -> &mut ConnCore {
        &mut c.core
    }

    fn take_conn(&mut self, token: usize) -> Option<RxConn> {
        self.conns.remove(&token)
    }

    fn put_conn(&mut self, token: usize, c: RxConn) {
        self.conns.insert(token, c);
    }

    fn close_conn(&mut self, token: usize, c: RxConn, why: Close) {
        self.close(token, c, why);
    }

    fn retry_next_turn(&mut self, token: usize) {
        self.again.push(token);
    }

    fn stop_reading(&mut self, _c: &mut RxConn) {}
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
