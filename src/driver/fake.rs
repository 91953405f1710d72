//! An in-memory [`Driver`] on a virtual clock, for testing the engines
//! deterministically: sockets are byte counters the test fills and drains,
//! and time moves only when the engine sleeps in [`Driver::poll`].

use super::contract::{Driver, Event, Frame, SockOpts, Token};
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts wake-ups.
#[derive(Default)]
pub(crate) struct FakeWaker(pub(crate) AtomicUsize);

impl crate::queue::Wake for FakeWaker {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One fake connection.
#[derive(Default)]
pub(crate) struct FakeSock {
    /// Where it connects.
    pub(crate) addr: Option<SocketAddr>,
    /// Bytes the peer will still take.
    pub(crate) room: usize,
    /// Bytes the engine wrote.
    pub(crate) written: Vec<u8>,
    /// Bytes waiting to be read.
    pub(crate) inbox: Vec<u8>,
    send_wait: bool,
    recv_wait: Option<BytesMut>,
    /// A multishot receive is armed.
    multi: bool,
}

/// The fake driver.
pub(crate) struct FakeDriver {
    clock: Instant,
    /// Sockets by token (closed ones are removed).
    pub(crate) socks: HashMap<Token, FakeSock>,
    /// Addresses whose connects fail.
    pub(crate) refused: HashSet<SocketAddr>,
    /// Room each new connection starts with.
    pub(crate) room: usize,
    /// Room for connections to particular addresses instead.
    pub(crate) room_of: HashMap<SocketAddr, usize>,
    /// Every timeout the engine waited with.
    pub(crate) waits: Vec<Duration>,
    /// Receives are multishot (zero-copy chunks) when armed.
    pub(crate) multishot: bool,
    /// What the peer of each new connection sends first, unasked (a
    /// receiver's reply preface, which senders wait for).
    pub(crate) greeting: Vec<u8>,
    /// A sleeping poll returns at this time at the latest, as if the peer
    /// acted then: a test acts at an exact virtual time.
    pub(crate) wake_at: Option<Instant>,
    ready: Vec<Event>,
    waker: Arc<FakeWaker>,
}

impl FakeDriver {
    /// A driver whose connections take `room` bytes before they block.
    pub(crate) fn new(room: usize) -> FakeDriver {
        FakeDriver {
            clock: Instant::now(),
            socks: HashMap::new(),
            refused: HashSet::new(),
            room,
            room_of: HashMap::new(),
            waits: Vec::new(),
            multishot: false,
            greeting: Vec::new(),
            wake_at: None,
            ready: Vec::new(),
            waker: Arc::default(),
        }
    }

    /// The token connected to `addr`, if open.
    pub(crate) fn token_of(&self, addr: SocketAddr) -> Option<Token> {
        self.socks
            .iter()
            .find(|(_, s)| s.addr == Some(addr))
            .map(|(&t, _)| t)
    }

    /// The peer reads: `n` more bytes fit.
    pub(crate) fn give_room(&mut self, t: Token, n: usize) {
        if let Some(s) = self.socks.get_mut(&t) {
            s.room += n;
            if std::mem::take(&mut s.send_wait) {
                self.ready.push(Event::Sent {
                    token: t,
                    res: Ok(0),
                });
            }
        }
    }

    /// A peer connects from `peer` (to the engine's listener).
    pub(crate) fn accept(&mut self, peer: SocketAddr) {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket to carry the token");
        self.ready.push(Event::Accepted { sock, peer });
    }

    /// The peer writes `b`, which arrives as the chunk `data` lying in
    /// `buffer` when a multishot receive is armed (`data` must hold `b`).
    pub(crate) fn chunk(&mut self, t: Token, data: bytes::Bytes, buffer: Option<bytes::Bytes>) {
        match self.socks.get(&t) {
            Some(s) if s.multi => self.ready.push(Event::Chunk {
                token: t,
                data,
                buffer,
            }),
            _ => self.reply(t, &data),
        }
    }

    /// The peer writes `b`.
    pub(crate) fn reply(&mut self, t: Token, b: &[u8]) {
        let Some(s) = self.socks.get_mut(&t) else {
            return;
        };
        match s.recv_wait.take() {
            Some(mut buf) => {
                buf.extend_from_slice(b);
                self.ready.push(Event::Received {
                    token: t,
                    res: Ok(b.len()),
                    buf,
                });
            }
            None => s.inbox.extend_from_slice(b),
        }
    }
}

impl Driver for FakeDriver {
    type Waker = FakeWaker;

    fn waker(&self) -> Arc<FakeWaker> {
        self.waker.clone()
    }

    fn now(&self) -> Instant {
        self.clock
    }

    fn listen(&mut self, _sock: socket2::Socket) -> io::Result<()> {
        Ok(())
    }

    fn register(&mut self, token: Token, _sock: socket2::Socket) -> io::Result<()> {
        let s = FakeSock {
            room: self.room,
            ..FakeSock::default()
        };
        self.socks.insert(token, s);
        Ok(())
    }

    fn recv_multi(&mut self, token: Token) -> io::Result<bool> {
        let multishot = self.multishot;
        let s = self
            .socks
            .get_mut(&token)
            .ok_or(io::ErrorKind::NotConnected)?;
        if !multishot {
            return Ok(false);
        }
        s.multi = true;
        if !s.inbox.is_empty() {
            let data = bytes::Bytes::from(std::mem::take(&mut s.inbox));
            self.ready.push(Event::Chunk {
                token,
                data,
                buffer: None,
            });
        }
        Ok(true)
    }

    fn stop_multi(&mut self, token: Token) {
        if let Some(s) = self.socks.get_mut(&token) {
            if std::mem::take(&mut s.multi) {
                self.ready.push(Event::RecvEnded {
                    token,
                    how: super::contract::Ended::Rearm,
                });
            }
        }
    }

    fn connect(&mut self, token: Token, addr: SocketAddr, _opts: &SockOpts) -> io::Result<()> {
        let res = if self.refused.contains(&addr) {
            Err(io::ErrorKind::ConnectionRefused.into())
        } else {
            Ok(())
        };
        let s = FakeSock {
            addr: Some(addr),
            room: self.room_of.get(&addr).copied().unwrap_or(self.room),
            inbox: if res.is_ok() {
                self.greeting.clone()
            } else {
                Vec::new()
            },
            ..FakeSock::default()
        };
        self.socks.insert(token, s);
        self.ready.push(Event::Connected { token, res });
        Ok(())
    }

    fn recv(
        &mut self,
        token: Token,
        buf: &mut BytesMut,
        _want: usize,
    ) -> io::Result<Option<usize>> {
        let s = self
            .socks
            .get_mut(&token)
            .ok_or(io::ErrorKind::NotConnected)?;
        if s.inbox.is_empty() {
            s.recv_wait = Some(std::mem::take(buf));
            return Ok(None);
        }
        buf.extend_from_slice(&s.inbox);
        let n = s.inbox.len();
        s.inbox.clear();
        Ok(Some(n))
    }

    fn send<'a>(
        &mut self,
        token: Token,
        ctl: &[u8],
        frames: impl Iterator<Item = Frame<'a>>,
    ) -> io::Result<Option<usize>> {
        let s = self
            .socks
            .get_mut(&token)
            .ok_or(io::ErrorKind::NotConnected)?;
        let mut n = 0;
        let pieces = std::iter::once(ctl).chain(frames.flat_map(|f| [f.head, &f.body[f.skip..]]));
        for p in pieces {
            let k = p.len().min(s.room);
            s.written.extend_from_slice(&p[..k]);
            s.room -= k;
            n += k;
            if k < p.len() {
                break;
            }
        }
        if n == 0 {
            s.send_wait = true;
            return Ok(None);
        }
        Ok(Some(n))
    }

    fn close(&mut self, token: Token, _last: &[u8]) {
        self.socks.remove(&token);
        self.ready.retain(|e| !matches!(e, Event::Connected { token: t, .. } | Event::Sent { token: t, .. } | Event::Received { token: t, .. } if *t == token));
    }

    fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> io::Result<()> {
        self.waits.push(timeout);
        if self.ready.is_empty() {
            // Virtual time: a sleep passes at once; a zero wait still ticks.
            let mut step = timeout.max(Duration::from_micros(1));
            if let Some(w) = self.wake_at.filter(|&w| w > self.clock) {
                step = step.min(w - self.clock);
            }
            self.clock += step;
        }
        out.append(&mut self.ready);
        Ok(())
    }
}
