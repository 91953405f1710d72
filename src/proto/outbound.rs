//! The connecting side of a native connection: decodes what the receiver
//! sends back (its preface, ACK, FAIL, PONG, GOAWAY).

use super::decoder::FrameDecoder;
use crate::error::{Error, Result};
use crate::wire::frame::{FrameType, ACK_RANGE_LEN, MAX_ACK_RANGES};
use crate::wire::preface::Preface;
use bytes::{Buf, Bytes, BytesMut};

/// One thing the receiver said.
#[derive(Debug)]
pub enum Reply {
    /// The receiver's preface.
    Preface(Preface),
    /// An ACK payload (ranges; iterate with `wire::frame::ack_ranges`).
    Ack(Bytes),
    /// A message failed at the receiver.
    Fail {
        /// Message id.
        id: u64,
        /// Reason given.
        reason: String,
    },
    /// Keepalive answer.
    Pong(u64),
    /// The receiver is closing.
    GoAway(String),
}

/// Connecting side of one connection.
#[derive(Debug)]
pub struct OutboundConn {
    got_preface: bool,
    dec: FrameDecoder,
    domain: Vec<u8>,
}

impl OutboundConn {
    /// Expects the receiver to be in `domain` (empty = any).
    pub fn new(domain: Vec<u8>) -> Self {
        OutboundConn {
            got_preface: false,
            dec: FrameDecoder::new(MAX_ACK_RANGES * ACK_RANGE_LEN),
            domain,
        }
    }

    /// True once the receiver's preface arrived.
    pub fn is_open(&self) -> bool {
        self.got_preface
    }

    /// Decodes the next reply from `buf`.
    ///
    /// # Errors
    /// Any protocol violation; the connection must be closed.
    pub fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>> {
        if !self.got_preface {
            let Some((p, n)) = Preface::decode(buf)? else {
                return Ok(None);
            };
            if !p.reply {
                return Err(Error::Protocol(
                    "receiver answered without reply flag".into(),
                ));
            }
            if !self.domain.is_empty() && !p.domain.is_empty() && p.domain != self.domain {
                return Err(Error::Protocol(
                    "receiver is in another cluster domain".into(),
                ));
            }
            buf.advance(n);
            self.got_preface = true;
            return Ok(Some(Reply::Preface(p)));
        }
        let Some(f) = self.dec.decode(buf)? else {
            return Ok(None);
        };
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        Ok(Some(match f.header.ty {
            FrameType::Ack => Reply::Ack(f.payload),
            FrameType::Fail => Reply::Fail {
                id: f.header.id,
                reason: text(&f.payload),
            },
            FrameType::Pong => Reply::Pong(f.header.id),
            FrameType::GoAway => Reply::GoAway(text(&f.payload)),
            FrameType::Data | FrameType::Ping | FrameType::Batch => {
                return Err(Error::Protocol(format!(
                    "{:?} frame from a receiver",
                    f.header.ty
                )))
            }
        }))
    }
}
