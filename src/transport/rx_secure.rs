//! The receiver's secure hook (issue 12): on a node that requires
//! encryption every connection either opens a secure session with its
//! first bytes (`SRPN` shared-key hello, or a TLS ClientHello), whose
//! records are opened before the frame decoder sees them; or, in
//! shared-key mode only, speaks Tribes framing with every message body
//! sealed by Tribes' `EncryptInterceptor` under `encryptionKey` (replays
//! refused by its time window). Anything else is refused, counted as a
//! secure refusal, and answered with nothing.

use super::{Close, ConnCore, RxCore, Shared};
use crate::proto::secure::tribes::{ReplayWindow, TribesCipher};
use crate::proto::secure::{looks_secure, PlainBuf, SecureContext, SecureError, SecureStream};
use crate::proto::FrameBuf;
use crate::sr_log;
use crate::stats::Stats;
use crate::transport::unix_ms;
use crate::wire::tribes::ChannelData;
use crate::wire::{detect_dialect, Dialect};
use bytes::{Bytes, BytesMut};

/// Most message IVs the Tribes replay window remembers.
const TRIBES_REPLAY_IVS: usize = 65_536;

/// Tribes `EncryptInterceptor` state of a receiver thread.
pub(super) struct TribesCrypt {
    cipher: TribesCipher,
    window: ReplayWindow,
}

impl TribesCrypt {
    /// Set on a node in shared-key mode.
    pub(super) fn for_node(shared: &Shared) -> Option<TribesCrypt> {
        shared.secure.as_ref()?;
        let key = shared.cfg.security.encryption_key.as_ref()?;
        let window = shared.cfg.security.heartbeat_auth_window.as_millis() as i64;
        Some(TribesCrypt {
            cipher: TribesCipher::new(key),
            window: ReplayWindow::new(window, TRIBES_REPLAY_IVS, unix_ms()),
        })
    }
}

impl RxCore {
    /// Secure mode (see the module docs): decides what the connection
    /// speaks from its first bytes, opens what it can, decodes the rest.
    pub(super) fn decode_secure<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<(), Close> {
        if c.dialect == Dialect::Tribes {
            return self.decode_clear(token, c, buf);
        }
        if !c.proto.is_secure() {
            match looks_secure(buf) {
                None => return Ok(()),
                Some(true) => {
                    let ctx = self.shared.secure.as_ref().expect("secure mode");
                    c.proto
                        .set_secure(SecureStream::accept(ctx).map_err(Close::Secure)?);
                }
                Some(false) if self.tribes_crypt.is_some() => match detect_dialect(buf) {
                    Dialect::Unknown => return Ok(()),
                    Dialect::Tribes => return self.decode_clear(token, c, buf),
                    _ => return Err(refused("clear text to a node that requires encryption")),
                },
                Some(false) => {
                    return Err(refused(
                        "clear text (or Tribes framing) to a node that requires certificates",
                    ))
                }
            }
        }
        if c.proto.secure_stream().is_some_and(|s| s.opens_in_place()) {
            return self.decode_in_place(token, c, buf);
        }
        if !buf.is_empty() {
            let r = c.proto.open_secure(buf);
            buf.skip(buf.len());
            r.map_err(Close::Secure)?;
        }
        let mut plain = c.proto.take_plain();
        let r = self.decode_clear(token, c, &mut plain);
        c.proto.put_plain(plain);
        r
    }

    /// True on a shared-key node: records are opened in the receive
    /// buffer, so the driver should read into it (not into chunks of its
    /// own, which would be copied there).
    pub(crate) fn opens_in_place(&self) -> bool {
        matches!(self.shared.secure, Some(SecureContext::SharedKey(_)))
    }

    /// Shared-key records opened where they lie (see
    /// `SecureStream::open_in_place`), and frames decoded from the opened
    /// plaintext as slices of the same buffer: the connection's receive
    /// buffer when the driver reads into one, else the stream's own
    /// buffer, which chunks from elsewhere (provided buffers) are copied
    /// to once.
    fn decode_in_place<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<(), Close> {
        let mut own = c.proto.take_plain();
        let in_caller = own.is_empty() && buf.as_bytes_mut().is_some();
        if !in_caller && !buf.is_empty() {
            own.append(buf);
            buf.skip(buf.len());
        }
        let here = match buf.as_bytes_mut() {
            Some(b) if in_caller => b,
            _ => &mut own,
        };
        let sec = c.proto.secure_stream().expect("secure mode");
        let ready = match sec.open_in_place(here) {
            Ok(n) => n,
            Err(e) => {
                c.proto.put_plain(own);
                return Err(Close::Secure(e));
            }
        };
        c.unopened = sec.unopened(here);
        let mut plain = if ready > 0 {
            here.split_to(ready)
        } else {
            BytesMut::new()
        };
        let r = self.decode_clear(token, c, &mut plain);
        if let Some(sec) = c.proto.secure_stream() {
            sec.plain_left(plain.len(), here);
        }
        if !plain.is_empty() {
            plain.unsplit(std::mem::take(here));
            *here = plain;
        }
        c.proto.put_plain(own);
        r
    }

    /// A Tribes message on a node that requires encryption: its body must
    /// open under `encryptionKey` and be fresh in the replay window.
    pub(super) fn tribes_open(
        &mut self,
        cd: &mut ChannelData,
        envelope: bool,
    ) -> Result<(), Close> {
        let Some(t) = self.tribes_crypt.as_mut() else {
            return Err(refused(
                "Tribes framing to a node that requires certificates",
            ));
        };
        if envelope {
            return Err(refused("tribesEnvelope is not supported under encryption"));
        }
        let (ts, body) = t.cipher.open(&cd.message).map_err(Close::Secure)?;
        let now = unix_ms();
        t.window.expire(now);
        if !t.window.check(&cd.message, ts, now) {
            return Err(Close::Secure(SecureError::Corrupt(
                "EncryptInterceptor message replayed or outside the replay window".into(),
            )));
        }
        cd.message = Bytes::from(body);
        Ok(())
    }
}

impl RxCore {
    /// Counts and logs a secured connection's end: a refusal, a record
    /// that failed, or a peer that dropped the handshake it started (a
    /// certificate it did not accept, a key it did not have).
    pub(super) fn count_secure_close(&self, c: &ConnCore, why: &Close) {
        let s = &self.shared.stats;
        let peer = c.peer;
        match why {
            Close::Secure(e) => {
                match e {
                    SecureError::Refused(_) => Stats::add(&s.secure_refusals, 1),
                    _ => Stats::add(&s.secure_errors, 1),
                }
                sr_log!(Warn, "closing connection from {peer}: {e}");
            }
            Close::Eof | Close::Io(_) | Close::Limit(_)
                if c.proto.is_secure() && !c.proto.secure_established() =>
            {
                Stats::add(&s.secure_refusals, 1);
                sr_log!(Warn, "{peer} did not complete the secure handshake");
            }
            _ => {}
        }
    }
}

fn refused(why: &str) -> Close {
    Close::Secure(SecureError::Refused(why.into()))
}

#[cfg(test)]
#[path = "rx_secure_tests.rs"]
mod tests;
