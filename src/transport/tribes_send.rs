//! Sending to Apache Tribes members: a BYTE_MESSAGE ChannelData in a
//! `FLT2002` frame, on a blocking connection checked out per call, waiting
//! for Tribes' 21-byte ACK (or FAIL_ACK) when an ack is requested. Used for
//! destinations known to be Tribes nodes (membership tells) in every mode:
//! Tribes acks carry no message id, so one message is in flight per
//! connection, as in Tribes' own NioSender.

use super::Shared;
use crate::config::AckMode;
use crate::error::{Error, Result};
use crate::proto::secure::tribes::TribesCipher;
use crate::stats::Stats;
use crate::wire::compress;
use crate::wire::tribes::{self, options, ChannelData, TribesMember};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io::{IoSlice, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A send to a Tribes member that this node cannot encrypt (`what`):
/// refused rather than sent in clear text.
fn refused(to: SocketAddr, what: &str) -> Error {
    Error::Unreachable(format!(
        "{to} is a Tribes member: {what} cannot be sent encrypted (only shared-key mode \
         speaks EncryptInterceptor)"
    ))
}

/// The Tribes-framing sender of a channel.
pub struct TribesSender {
    shared: Arc<Shared>,
    idle: Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
    started: Instant,
    seq: AtomicU64,
    /// Our member blob, encoded once (every ChannelData carries it).
    blob: std::sync::OnceLock<Bytes>,
    /// Shared-key mode: message bodies sealed as Tribes'
    /// `EncryptInterceptor` does (`AES/GCM/NoPadding`, `encryptionKey`).
    cipher: Option<TribesCipher>,
}

impl TribesSender {
    /// A sender for `shared`'s channel.
    pub fn new(shared: Arc<Shared>) -> Self {
        let cipher = shared
            .secure
            .as_ref()
            .and(shared.cfg.security.encryption_key.as_ref())
            .map(TribesCipher::new);
        TribesSender {
            shared,
            idle: Mutex::new(HashMap::new()),
            started: Instant::now(),
            seq: AtomicU64::new(0),
            blob: std::sync::OnceLock::new(),
            cipher,
        }
    }

    /// Our member blob, as Tribes expects in every ChannelData (its alive
    /// time is the first send's; receivers only need a valid blob).
    fn member_blob(&self) -> Result<Bytes> {
        if let Some(b) = self.blob.get() {
            return Ok(b.clone());
        }
        let local = self.shared.local.get().copied().ok_or(Error::NotRunning)?;
        let mut m = TribesMember::new(local.ip(), local.port(), self.shared.member_id);
        m.alive_ms = self.started.elapsed().as_millis() as i64;
        m.domain = self.shared.cfg.domain.clone();
        m.payload = crate::membership::PeerFacts::new(crate::membership::caps::ALL)
            .encode()
            .to_vec();
        let b = Bytes::from(m.to_bytes()?);
        Ok(self.blob.get_or_init(|| b).clone())
    }

    /// Sends one message to a Tribes member and, with an ack, waits for it.
    /// `compress` sets GzipInterceptor's flag and gzips the body.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Timeout`], or
    /// [`Error::RemoteFailure`] on FAIL_ACK.
    pub fn send(
        &self,
        to: SocketAddr,
        payload: &Bytes,
        ack: AckMode,
        compress: bool,
    ) -> Result<()> {
        let mut opts = options::BYTE_MESSAGE;
        match ack {
            AckMode::None => {}
            AckMode::Receipt => opts |= options::USE_ACK,
            AckMode::Delivery => opts |= options::USE_ACK | options::SYNCHRONIZED_ACK,
        }
        let body = if compress {
            opts |= options::GZIP;
            Bytes::from(compress::gzip(payload))
        } else {
            payload.clone()
        };
        let now_ms = super::unix_ms();
        // Under encryption the body goes sealed as EncryptInterceptor's,
        // never in clear text.
        let body = match (&self.shared.secure, &self.cipher) {
            (None, _) => body,
            (Some(_), Some(c)) => Bytes::from(c.seal_random(&body, now_ms)?),
            (Some(_), None) => return Err(refused(to, "certificate mode")),
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut uid = self.shared.member_id;
        for (b, x) in uid.iter_mut().zip(n.to_be_bytes().iter().cycle()) {
            *b ^= *x;
        }
        let cd = ChannelData {
            options: opts,
            timestamp: now_ms,
            unique_id: Bytes::copy_from_slice(&uid),
            address: self.member_blob()?,
            message: body,
        };
        let mut head = BytesMut::with_capacity(cd.prefix_len() + tribes::FRAME_HEADER_LEN);
        head.extend_from_slice(&tribes::frame_header(cd.encoded_len())?);
        cd.encode_prefix(&mut head)?;
        self.transmit(to, &head, &cd.message, ack)
    }

    /// Sends `package`, a whole ChannelData made by the host (the JVM
    /// drop-in's envelope), in a Tribes frame as is, and with an ack waits
    /// for it. `ack` must match the package's own option bits (the receiver
    /// acks as they say).
    ///
    /// # Errors
    /// As [`TribesSender::send`].
    pub fn send_raw(&self, to: SocketAddr, package: &Bytes, ack: AckMode) -> Result<()> {
        if self.shared.secure.is_some() {
            return Err(refused(to, "tribesEnvelope packages"));
        }
        let head = tribes::frame_header(package.len())?;
        self.transmit(to, &head, package, ack)
    }

    /// Writes one frame (`head`, `body`, END_DATA) and waits for the ack,
    /// reconnecting up to `maxRetryAttempts` times.
    fn transmit(&self, to: SocketAddr, head: &[u8], body: &Bytes, ack: AckMode) -> Result<()> {
        // Connecting, writing and the ack all end by one deadline: a
        // member that stopped reading cannot hold the caller longer.
        let deadline = Instant::now() + self.shared.cfg.ack_timeout;
        let mut attempt = 0;
        loop {
            let mut s = self.checkout(to, deadline)?;
            let mut iov = [
                IoSlice::new(head),
                IoSlice::new(body),
                IoSlice::new(&tribes::END_DATA),
            ];
            let r = match write_by(&s, &mut iov, deadline) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Error::Timeout),
                Err(e) => Err(Error::Unreachable(format!("{to}: {e}"))),
                Ok(()) => {
                    Stats::add(&self.shared.stats.msgs_sent, 1);
                    Stats::add(
                        &self.shared.stats.bytes_sent,
                        (head.len() + body.len() + 7) as u64,
                    );
                    if ack == AckMode::None {
                        Ok(())
                    } else {
                        self.wait_ack(&mut s, to, deadline)
                    }
                }
            };
            match r {
                Ok(()) | Err(Error::RemoteFailure(_)) => {
                    self.checkin(to, s);
                    if r.is_ok() && ack != AckMode::None {
                        Stats::add(&self.shared.stats.acks_received, 1);
                    }
                    return r;
                }
                Err(Error::Unreachable(_)) if attempt < self.shared.cfg.max_retry_attempts => {
                    attempt += 1;
                    Stats::add(&self.shared.stats.resends, 1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn wait_ack(&self, s: &mut TcpStream, to: SocketAddr, deadline: Instant) -> Result<()> {
        let mut buf = [0u8; 21];
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            s.set_read_timeout(Some(left)).map_err(Error::Io)?;
            match s.read(&mut buf[got..]) {
                Ok(0) => return Err(Error::Unreachable(format!("{to}: closed before the ack"))),
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Unreachable(format!("{to}: {e}"))),
            }
        }
        if buf == tribes::ACK_FRAME {
            Ok(())
        } else if buf == tribes::FAIL_ACK_FRAME {
            Err(Error::RemoteFailure(
                "Tribes member answered FAIL_ACK".into(),
            ))
        } else {
            Err(Error::Unreachable(format!("{to}: not a Tribes ack")))
        }
    }

    fn checkout(&self, to: SocketAddr, deadline: Instant) -> Result<TcpStream> {
        if let Some(s) = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&to)
            .and_then(|v| v.pop())
        {
            return Ok(s);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        let s = TcpStream::connect_timeout(&to, self.shared.cfg.connect_timeout.min(left))
            .map_err(|e| Error::Unreachable(format!("{to}: {e}")))?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn checkin(&self, to: SocketAddr, s: TcpStream) {
        let mut g = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = g.entry(to).or_default();
        if v.len() < self.shared.cfg.max_pool_socket_limit {
            v.push(s);
        }
    }

    /// Closes idle connections.
    pub fn close_all(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Writes every slice by `deadline` on a blocking socket (`SO_SNDTIMEO` set
/// to what is left before each `sendmsg`; no SIGPIPE). A connection that
/// missed it holds part of a frame: the caller must close it.
///
/// # Errors
/// `TimedOut` at the deadline, else the OS error.
fn write_by(s: &TcpStream, bufs: &mut [IoSlice<'_>], deadline: Instant) -> std::io::Result<()> {
    use std::io::ErrorKind;
    let mut bufs = bufs;
    while !bufs.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        s.set_write_timeout(Some(left))?;
        match socket2::SockRef::from(s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(ErrorKind::TimedOut.into()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
