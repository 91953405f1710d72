//! The receiver's Tribes dialect: a connection whose first bytes are
//! Tribes framing is decoded here, acked as Tribes expects and delivered on
//! the receiving thread.

use super::*;

impl RxCore {
    /// Tribes framing: each frame carries a ChannelData; acks follow the
    /// message's options exactly as Tribes' NioReplicationTask does (ACK
    /// before delivery with USE_ACK; after it, or FAIL_ACK, with
    /// SYNCHRONIZED_ACK). Gzip-flagged bodies are inflated within bounds.
    /// Delivery stays on this thread (Tribes connections are rare, and this
    /// keeps their order trivially).
    pub(super) fn decode_tribes<B: FrameBuf>(
        &mut self,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<(), Close> {
        use tribes::options::{GZIP, SYNCHRONIZED_ACK, USE_ACK};
        let mut delivered = 0u64;
        let mut decoded = false;
        loop {
            let Some(t) = c.tribes.as_mut() else {
                return Ok(());
            };
            let payload = match t.dec.decode(buf) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    // The whole frame's length once its header is in.
                    let more = t.dec.needed(buf);
                    if c.opened {
                        self.mid_frame(c, buf.len(), decoded);
                    }
                    if buf.len() >= tribes::FRAME_HEADER_LEN && more > 0 {
                        self.need_frame(c, buf.len() + more);
                    }
                    break;
                }
                Err(e) => return Err(Close::Protocol(e)),
            };
            decoded = true;
            self.frame_done(c);
            self.handshake_done(c);
            // In envelope mode the host (the JVM drop-in) gets the whole
            // ChannelData and handles gzip and control bodies itself.
            let envelope = self.shared.cfg.tribes_envelope.then(|| payload.clone());
            let mut cd = ChannelData::decode(payload).map_err(Close::Protocol)?;
            if self.shared.secure.is_some() {
                // secure hook: EncryptInterceptor bodies opened, or refused
                self.tribes_open(&mut cd, envelope.is_some())?;
            }
            let member = cd.member().map_err(Close::Protocol)?;
            let from = match u16::try_from(member.port) {
                Ok(p) if p != 0 => SocketAddr::new(member.host, p),
                _ => c.peer,
            };
            let member_id = member.unique_id;
            let use_ack = cd.has(USE_ACK);
            let sync = use_ack && cd.has(SYNCHRONIZED_ACK);
            if use_ack && !sync {
                c.proto.push_raw(&tribes::ACK_FRAME);
            }
            let body = if let Some(whole) = envelope {
                whole
            } else if cd.has(GZIP) {
                match compress::gunzip_bounded(&cd.message, self.shared.cfg.max_decompressed_size) {
                    Ok(b) => {
                        c.inflated += b.len();
                        b
                    }
                    Err(e) => {
                        if sync {
                            c.proto.push_raw(&tribes::FAIL_ACK_FRAME);
                        }
                        return Err(Close::Protocol(e));
                    }
                }
            } else {
                cd.message
            };
            // Tribes' failure-detector probes and pings are not messages.
            let r = if !self.shared.cfg.tribes_envelope && tribes::is_control_body(&body) {
                Ok(())
            } else {
                let Some(t) = c.tribes.as_mut() else {
                    return Ok(());
                };
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
                c.proto.push_raw(match r {
                    Ok(()) => &tribes::ACK_FRAME,
                    Err(_) => &tribes::FAIL_ACK_FRAME,
                });
            }
            if self.over_bounds(c) {
                break;
            }
        }
        Stats::add(&self.shared.stats.msgs_received, delivered);
        Ok(())
    }
}
