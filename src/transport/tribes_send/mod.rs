//! Sending to Apache Tribes members: a BYTE_MESSAGE ChannelData in a
//! `FLT2002` frame, waiting for Tribes' 21-byte ACK (or FAIL_ACK) when an
//! ack is requested. Used for destinations known to be Tribes nodes
//! (membership tells) in every mode: Tribes acks carry no message id, so
//! one message is in flight per connection, as in Tribes' own NioSender.
//!
//! Connections are non-blocking and pooled per member; a send to several
//! members steps all of them in one `poll` loop (`batch`), so it ends by
//! one deadline (`ackTimeout`) whatever each member does.

mod batch;

use super::Shared;
use crate::config::AckMode;
use crate::error::{Error, Result};
use crate::proto::secure::tribes::TribesCipher;
use crate::wire::compress;
use crate::wire::tribes::{self, options, ChannelData, TribesMember};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A message to Tribes members that this node cannot encrypt (`what`):
/// refused rather than sent in clear text.
fn refused(what: &str) -> Error {
    Error::Unreachable(format!(
        "Tribes member: {what} cannot be sent encrypted (only shared-key mode \
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
            cipher,
            shared,
            idle: Mutex::new(HashMap::new()),
            started: Instant::now(),
            seq: AtomicU64::new(0),
            blob: std::sync::OnceLock::new(),
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

    /// The Tribes frame of one message, as head (frame header and
    /// ChannelData up to its body) and body. `compress` sets
    /// GzipInterceptor's flag and gzips the body.
    ///
    /// # Errors
    /// [`Error::NotRunning`] before the receiver is bound; a body too
    /// large for a Tribes frame.
    pub(crate) fn frame(
        &self,
        payload: &Bytes,
        ack: AckMode,
        compress: bool,
    ) -> Result<(Bytes, Bytes)> {
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
            (Some(_), None) => return Err(refused("certificate mode")),
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
        Ok((head.freeze(), cd.message))
    }

    /// The Tribes frame of `package`, a whole ChannelData made by the host
    /// (the JVM drop-in's envelope), sent as is.
    ///
    /// # Errors
    /// A package too large for a Tribes frame; any package under encryption
    /// (refused, never sent in clear text).
    pub(crate) fn raw_frame(&self, package: &Bytes) -> Result<(Bytes, Bytes)> {
        if self.shared.secure.is_some() {
            return Err(refused("tribesEnvelope packages"));
        }
        let head = tribes::frame_header(package.len())?;
        Ok((Bytes::copy_from_slice(&head), package.clone()))
    }

    /// An idle connection to `to`, if the pool holds one.
    fn pooled(&self, to: SocketAddr) -> Option<TcpStream> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&to)
            .and_then(|v| v.pop())
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
