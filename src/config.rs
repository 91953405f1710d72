//! Channel configuration. Keys use Tomcat's attribute names where Tomcat has
//! one (`tcpListenAddress`, `replicationMode`, `ackTimeout`, ...), so an
//! operator can carry settings over. [`Config::set`] parses one key/value
//! pair and refuses unknown keys and bad values with a clear error; it never
//! falls back to a default silently.
//!
//! [`Config::set`]: crate::config::Config::set

use crate::error::{Error, Result};
use crate::membership::MembershipConfig;
use crate::security::SecurityConfig;
use crate::session::SessionConfig;
use std::net::IpAddr;
use std::time::Duration;

/// Who writes a message to the socket, and when the caller returns
/// (Tomcat 5.5's `replicationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// The caller's thread writes and, with an ack requested, waits for it.
    Synchronous,
    /// Like synchronous, with up to `maxPoolSocketLimit` connections per
    /// member so concurrent callers do not queue behind each other.
    Pooled,
    /// Ordered per-member queues on the shared I/O thread (no thread per
    /// member); a send reserves room at every destination first, all or
    /// nothing, waiting up to `queueAddWaitTimeout`.
    Asynchronous,
    /// One bounded lock-free multi-producer queue drained in batches by an
    /// I/O thread that writes many frames per `writev`.
    FastAsyncQueue,
}

impl ReplicationMode {
    /// Parses Tomcat's names (`synchronous`, `pooled`, `asynchronous`,
    /// `fastasyncqueue`; `sync`, `async`, `fastasync` are accepted too).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "synchronous" | "sync" => Some(Self::Synchronous),
            "pooled" => Some(Self::Pooled),
            "asynchronous" | "async" => Some(Self::Asynchronous),
            "fastasyncqueue" | "fastasync" => Some(Self::FastAsyncQueue),
            _ => None,
        }
    }
    /// Tomcat's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synchronous => "synchronous",
            Self::Pooled => "pooled",
            Self::Asynchronous => "asynchronous",
            Self::FastAsyncQueue => "fastasyncqueue",
        }
    }
    /// True for the modes in which the caller's thread writes.
    pub fn is_synchronous(self) -> bool {
        matches!(self, Self::Synchronous | Self::Pooled)
    }
}

/// When the receiver acknowledges a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// No acknowledgement.
    None,
    /// Ack as soon as the frame is decoded (Tribes `USE_ACK`).
    Receipt,
    /// Ack after the listener returns, FAIL if it reports an error
    /// (Tribes `USE_ACK | SYNCHRONIZED_ACK`).
    Delivery,
}

/// Idle strategy of I/O threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleStrategy {
    /// Busy-poll this long before parking in the kernel (0 = park at once).
    pub spin: Duration,
}

/// Configuration of a channel (transport, membership, session store).
#[derive(Debug, Clone)]
pub struct Config {
    /// `tcpListenAddress`: address the receiver binds (default 127.0.0.1).
    pub tcp_listen_address: IpAddr,
    /// `tcpListenPort`: port the receiver binds; 0 picks a free port.
    pub tcp_listen_port: u16,
    /// `replicationMode` (default `pooled`).
    pub replication_mode: ReplicationMode,
    /// `waitForAck`: request acknowledgements by default (default true).
    pub wait_for_ack: bool,
    /// `syncAck`: with acks, ack after delivery rather than on receipt
    /// (Tribes' SYNCHRONIZED_ACK; default true).
    pub sync_ack: bool,
    /// `ackTimeout`: how long a sender waits for an ack (default 15 s). In
    /// the synchronous modes it is the deadline of the whole send: connecting,
    /// writing and the ack all end by it, and a connection that missed it is
    /// closed, never reused.
    pub ack_timeout: Duration,
    /// `maxRetryAttempts`: resends after a lost connection (default 1).
    pub max_retry_attempts: u32,
    /// `compress`: compress message payloads (default false).
    pub compress: bool,
    /// `compressionMinSize`: payloads smaller than this are sent plain
    /// (default 256 bytes).
    pub compression_min_size: usize,
    /// `compressionLevel`: deflate level 1..9 (default 1, fastest).
    pub compression_level: u32,
    /// `maxFrameSize`: largest frame accepted or sent (default 16 MiB).
    pub max_frame_size: usize,
    /// `maxDecompressedSize`: bound on an inflated payload (default 16 MiB).
    pub max_decompressed_size: usize,
    /// `maxQueueLength`: capacity of each send queue (default 16384).
    pub max_queue_length: usize,
    /// `queueAddWaitTimeout`: how long a producer waits on a full queue
    /// before the send fails with `QueueFull` (default 10 s; 0 = fail at once).
    pub queue_add_wait_timeout: Duration,
    /// `sendPoolKeepBytes`: free memory the pooled send intake
    /// ([`Channel::copy_payload`](crate::Channel::copy_payload), C's
    /// `sr_channel_send`, Java's `send`) keeps for reuse instead of freeing
    /// it, in 64 KiB chunks (default 16 MiB; 0 keeps none).
    pub send_pool_keep_bytes: usize,
    /// `maxPoolSocketLimit`: connections per member in pooled mode (default 25).
    pub max_pool_socket_limit: usize,
    /// `poolSharedConnection`: in pooled mode, concurrent sends to one
    /// member share one connection (their frames leave together, one read
    /// takes their acks) instead of a connection each (default false:
    /// measured slower on a loaded 2-core machine, see the pooled sender).
    pub pool_shared_connection: bool,
    /// `keepAliveTimeout`: idle outgoing connections are closed after this
    /// (default 60 s).
    pub keep_alive_timeout: Duration,
    /// `keepAliveCount`: close an outgoing connection after this many
    /// messages (0 = unlimited, the default).
    pub keep_alive_count: u64,
    /// `memberIdleRelease`: a member's sender state in the asynchronous
    /// modes (queue, window, stream epoch) is released once it has had no
    /// connection and nothing to send for this long (default 10 s; at
    /// least 1 ms). A member that leaves is released at once. A later send
    /// starts a new stream (a new epoch), so keep it well above the gaps
    /// between sends to a live member.
    pub member_idle_release: Duration,
    /// `pingInterval`: a keepalive PING goes out on a connection idle this
    /// long (default 5 s; 0 disables).
    pub ping_interval: Duration,
    /// `connectTimeout` (default 2 s).
    pub connect_timeout: Duration,
    /// `reconnectBackoffMin` / `reconnectBackoffMax` (defaults 10 ms / 2 s).
    pub reconnect_backoff_min: Duration,
    /// See `reconnect_backoff_min`.
    pub reconnect_backoff_max: Duration,
    /// `tcpThreadCount`: listener worker threads (0 = deliver on the
    /// selector thread; default 0).
    pub tcp_thread_count: usize,
    /// `rxBufSize`: socket receive buffer, 0 = kernel default.
    pub rx_buf_size: usize,
    /// `txBufSize`: socket send buffer, 0 = kernel default.
    pub tx_buf_size: usize,
    /// `tcpNoDelay` (default true).
    pub tcp_no_delay: bool,
    /// `idleSpinMicros`: I/O threads busy-poll this long before parking
    /// (default 50 µs).
    pub idle: IdleStrategy,
    /// `domain`: cluster domain carried in the preface; connections from
    /// other domains are refused (default empty = accept any).
    pub domain: Vec<u8>,
    /// `memberId`: 16-byte id (32 hex digits); random when not set.
    pub member_id: Option<[u8; 16]>,
    /// `ioBackend`: `auto`, `mio` or `uring` (default auto).
    pub io_backend: String,
    /// Receiver limits (see "Receiver limits" in `docs/PROTOCOL.md`).
    pub rx_limits: RxLimitKeys,
    /// `tribesEnvelope`: payloads are whole Tribes ChannelData packages (the
    /// JVM's Tomcat drop-in): a message from a Tribes member is delivered as
    /// its whole ChannelData, gzip left to the host, and a send to a Tribes
    /// member puts the payload in a Tribes frame as is (default false).
    pub tribes_envelope: bool,
    /// Membership settings (`mcastAddr`, `staticMembers`, ...).
    pub membership: MembershipConfig,
    /// Session-store settings (`sendAllSessionsSize`, ...).
    pub session: SessionConfig,
    /// Security settings (`encryptionKey`, `tlsCertificateFile`, ...).
    pub security: SecurityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp_listen_address: IpAddr::from([127, 0, 0, 1]),
            tcp_listen_port: 0,
            replication_mode: ReplicationMode::Pooled,
            wait_for_ack: true,
            sync_ack: true,
            ack_timeout: Duration::from_millis(15_000),
            max_retry_attempts: 1,
            compress: false,
            compression_min_size: 256,
            compression_level: 1,
            max_frame_size: 16 << 20,
            max_decompressed_size: 16 << 20,
            max_queue_length: 16384,
            send_pool_keep_bytes: 16 << 20,
            queue_add_wait_timeout: Duration::from_millis(10_000),
            max_pool_socket_limit: 25,
            pool_shared_connection: false,
            keep_alive_timeout: Duration::from_millis(60_000),
            keep_alive_count: 0,
            member_idle_release: Duration::from_millis(10_000),
            ping_interval: Duration::from_millis(5_000),
            connect_timeout: Duration::from_millis(2_000),
            reconnect_backoff_min: Duration::from_millis(10),
            reconnect_backoff_max: Duration::from_millis(2_000),
            tcp_thread_count: 0,
            rx_buf_size: 0,
            tx_buf_size: 0,
            tcp_no_delay: true,
            idle: IdleStrategy {
                spin: Duration::from_micros(50),
            },
            domain: Vec::new(),
            member_id: None,
            io_backend: "auto".into(),
            rx_limits: RxLimitKeys::default(),
            tribes_envelope: false,
            membership: MembershipConfig::default(),
            session: SessionConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// Parses a boolean the way Tomcat's digester does, plus `yes`/`no`/`1`/`0`.
pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(bad(key, "expected true or false")),
    }
}

/// Parses an unsigned integer within `[min, max]`.
pub fn parse_u64(key: &str, v: &str, min: u64, max: u64) -> Result<u64> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| bad(key, "expected a non-negative integer"))?;
    if n < min || n > max {
        return Err(bad(key, &format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// Parses milliseconds within `[min, max]` ms.
pub fn parse_ms(key: &str, v: &str, min: u64, max: u64) -> Result<Duration> {
    parse_u64(key, v, min, max).map(Duration::from_millis)
}

/// The error for a refused value.
pub fn bad(key: &str, reason: &str) -> Error {
    Error::InvalidConfigValue {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses 32 hex digits (dashes and braces ignored) into a 16-byte id.
pub fn parse_member_id(key: &str, v: &str) -> Result<[u8; 16]> {
    let hex: Vec<u8> = v
        .bytes()
        .filter(|c| !matches!(c, b'-' | b'{' | b'}'))
        .collect();
    if hex.len() != 32 {
        return Err(bad(key, "expected 32 hex digits"));
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad(key, "not hex"))?;
        id[i] = u8::from_str_radix(s, 16).map_err(|_| bad(key, "not hex"))?;
    }
    Ok(id)
}

const MAX_MS: u64 = 24 * 3600 * 1000;

impl Config {
    /// Sets one key (Tomcat's attribute names). Unknown keys and bad values
    /// are refused.
    ///
    /// # Errors
    /// [`Error::UnknownConfigKey`] or [`Error::InvalidConfigValue`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.trim();
        let v = value.trim();
        match k {
            "tcpListenAddress" => {
                self.tcp_listen_address = v.parse().map_err(|_| bad(k, "expected an IP address"))?
            }
            "tcpListenPort" => self.tcp_listen_port = parse_u64(k, v, 0, 65535)? as u16,
            "replicationMode" => {
                self.replication_mode = ReplicationMode::parse(v).ok_or_else(|| {
                    bad(
                        k,
                        "expected synchronous, pooled, asynchronous or fastasyncqueue",
                    )
                })?
            }
            "waitForAck" => self.wait_for_ack = parse_bool(k, v)?,
            "syncAck" => self.sync_ack = parse_bool(k, v)?,
            "ackTimeout" => self.ack_timeout = parse_ms(k, v, 1, MAX_MS)?,
            "maxRetryAttempts" => self.max_retry_attempts = parse_u64(k, v, 0, 100)? as u32,
            "compress" => self.compress = parse_bool(k, v)?,
            "compressionMinSize" => {
                self.compression_min_size = parse_u64(k, v, 0, 1 << 30)? as usize
            }
            "compressionLevel" => self.compression_level = parse_u64(k, v, 1, 9)? as u32,
            "maxFrameSize" => self.max_frame_size = parse_u64(k, v, 1024, 1 << 30)? as usize,
            "maxDecompressedSize" => {
                self.max_decompressed_size = parse_u64(k, v, 1024, 1 << 30)? as usize
            }
            "maxQueueLength" => self.max_queue_length = parse_u64(k, v, 1, 1 << 24)? as usize,
            "sendPoolKeepBytes" => {
                self.send_pool_keep_bytes = parse_u64(k, v, 0, 1 << 30)? as usize
            }
            "queueAddWaitTimeout" => self.queue_add_wait_timeout = parse_ms(k, v, 0, MAX_MS)?,
            "maxPoolSocketLimit" => self.max_pool_socket_limit = parse_u64(k, v, 1, 1024)? as usize,
            "poolSharedConnection" => self.pool_shared_connection = parse_bool(k, v)?,
            "keepAliveTimeout" => self.keep_alive_timeout = parse_ms(k, v, 0, MAX_MS)?,
            "keepAliveCount" => self.keep_alive_count = parse_u64(k, v, 0, u64::MAX)?,
            "memberIdleRelease" => self.member_idle_release = parse_ms(k, v, 1, MAX_MS)?,
            "pingInterval" => self.ping_interval = parse_ms(k, v, 0, MAX_MS)?,
            "connectTimeout" => self.connect_timeout = parse_ms(k, v, 1, MAX_MS)?,
            "reconnectBackoffMin" => self.reconnect_backoff_min = parse_ms(k, v, 0, MAX_MS)?,
            "reconnectBackoffMax" => self.reconnect_backoff_max = parse_ms(k, v, 0, MAX_MS)?,
            "tcpThreadCount" => self.tcp_thread_count = parse_u64(k, v, 0, 256)? as usize,
            "rxBufSize" => self.rx_buf_size = parse_u64(k, v, 0, 1 << 30)? as usize,
            "txBufSize" => self.tx_buf_size = parse_u64(k, v, 0, 1 << 30)? as usize,
            "tcpNoDelay" => self.tcp_no_delay = parse_bool(k, v)?,
            "idleSpinMicros" => {
                self.idle.spin = Duration::from_micros(parse_u64(k, v, 0, 1_000_000)?)
            }
            "domain" | "clusterDomain" => {
                if v.len() > 255 {
                    return Err(bad(k, "at most 255 bytes"));
                }
                self.domain = v.as_bytes().to_vec()
            }
            "memberId" => self.member_id = Some(parse_member_id(k, v)?),
            "ioBackend" => match v {
                "auto" | "mio" | "uring" => self.io_backend = v.to_string(),
                _ => return Err(bad(k, "expected auto, mio or uring")),
            },
            "tribesEnvelope" => self.tribes_envelope = parse_bool(k, v)?,
            _ => {
                if self.security.set(k, v)? {
                    // Heartbeats are authenticated with the same keys.
                    self.membership.heartbeat_keys = self.security.keys();
                    self.membership.heartbeat_auth_window = self.security.heartbeat_auth_window;
                    return Ok(());
                }
                if self.rx_limits.set(k, v)?
                    || self.membership.set(k, v)?
                    || self.session.set(k, v)?
                {
                    return Ok(());
                }
                return Err(Error::UnknownConfigKey(k.to_string()));
            }
        }
        Ok(())
    }

    /// Parses a config file: one `key=value` per line, `#` comments, blank
    /// lines ignored. The first bad line is reported with its number.
    ///
    /// # Errors
    /// As [`Config::set`], with the line number in the message.
    pub fn parse_file_text(&mut self, text: &str) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!("line {}: expected key=value", n + 1))
            })?;
            self.set(k, v)
                .map_err(|e| Error::InvalidArgument(format!("line {}: {e}", n + 1)))?;
        }
        Ok(())
    }

    /// Checks cross-field constraints, the membership's included (see
    /// [`MembershipConfig::validate`]: a membership key that cannot take
    /// effect is an error naming the fix).
    ///
    /// # Errors
    /// [`Error::InvalidConfigValue`] naming the offending key.
    pub fn validate(&self) -> Result<()> {
        self.membership.validate()?;
        self.security.validate()?;
        if self.security.required() && !crate::security::CONNECTIONS_SECURED {
            // Never run in clear text while security is asked for.
            let key = if self.security.tls_enabled() {
                "tlsCertificateFile"
            } else {
                "encryptionKey"
            };
            return Err(bad(
                key,
                "encryption not yet supported on this path: connections are not yet \
                 encrypted (docs/SECURITY.md); refusing to start rather than send in clear text",
            ));
        }
        if self.reconnect_backoff_min > self.reconnect_backoff_max {
            return Err(bad(
                "reconnectBackoffMin",
                "greater than reconnectBackoffMax",
            ));
        }
        if self.rx_limits.max_receive_memory < self.max_frame_size {
            return Err(bad(
                "maxReceiveMemory",
                "less than maxFrameSize (such a frame could never be received)",
            ));
        }
        if self.max_decompressed_size > self.max_frame_size.max(1024) * 64 {
            return Err(bad(
                "maxDecompressedSize",
                "more than 64 times maxFrameSize",
            ));
        }
        Ok(())
    }

    /// The default ack mode for a send, from `waitForAck` and `syncAck`.
    pub fn default_ack(&self) -> AckMode {
        match (self.wait_for_ack, self.sync_ack) {
            (false, _) => AckMode::None,
            (true, false) => AckMode::Receipt,
            (true, true) => AckMode::Delivery,
        }
    }
}

// Receiver limits: one block, keys and defaults together.

/// The receiver's bounds; each is a key of [`Config::set`]. A peer that
/// breaks one loses only its own connection (closed, logged and counted in
/// `rx_limit_closes`) or waits; the node and its other peers carry on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxLimitKeys {
    /// `maxConnections` (Tomcat's connector name): inbound connections open
    /// at once (default 4096). When every slot is taken, a newcomer
    /// replaces the oldest connection that has not completed its preface;
    /// it is refused only if every slot holds a connection past its
    /// preface.
    pub max_connections: usize,
    /// `handshakeTimeout`: an inbound connection that has not completed its
    /// preface within this is closed (default 10 s).
    pub handshake_timeout: Duration,
    /// `maxPendingAckBytes`: unsent output (acks, PONGs, FAILs) per
    /// connection above which the receiver stops reading it, so a peer
    /// that does not read its acks cannot grow the node (default 1 MiB).
    pub max_pending_ack_bytes: usize,
    /// `ackWriteTimeout`: a connection whose unsent output stays above
    /// `maxPendingAckBytes` this long is closed (default 10 s).
    pub ack_write_timeout: Duration,
    /// `maxReceiveMemory`: bytes of frames in progress (received partly or
    /// reserved) across all inbound connections, and on io_uring its pool
    /// of provided receive buffers (at most what is left after one largest
    /// frame, up to 128 MiB); a frame that does not fit waits, its
    /// connection unread, until memory frees (default 256 MiB; at least
    /// `maxFrameSize`).
    pub max_receive_memory: usize,
    /// `connectionUploadTimeout` (Tomcat's connector name): a frame, of
    /// any size, must arrive in full within this from its first byte (a
    /// large one: from its memory reservation), else its connection is
    /// closed, so a peer that stops mid-frame cannot hold memory or a
    /// connection slot (default 300 s).
    pub connection_upload_timeout: Duration,
    /// `maxInflatePerTurn`: inflated bytes one connection may produce
    /// before the receiver turns to the others (default 4 MiB).
    pub max_inflate_per_turn: usize,
}

impl Default for RxLimitKeys {
    fn default() -> Self {
        RxLimitKeys {
            max_connections: 4096,
            handshake_timeout: Duration::from_millis(10_000),
            max_pending_ack_bytes: 1 << 20,
            ack_write_timeout: Duration::from_millis(10_000),
            max_receive_memory: 256 << 20,
            connection_upload_timeout: Duration::from_millis(300_000),
            max_inflate_per_turn: 4 << 20,
        }
    }
}

impl RxLimitKeys {
    /// Sets `k` if it is one of these keys; `Ok(false)` if it is not.
    ///
    /// # Errors
    /// [`Error::InvalidConfigValue`] for a bad value.
    pub fn set(&mut self, k: &str, v: &str) -> Result<bool> {
        match k {
            "maxConnections" => self.max_connections = parse_u64(k, v, 1, 1 << 20)? as usize,
            "handshakeTimeout" => self.handshake_timeout = parse_ms(k, v, 1, MAX_MS)?,
            "maxPendingAckBytes" => {
                self.max_pending_ack_bytes = parse_u64(k, v, 1024, 1 << 30)? as usize
            }
            "ackWriteTimeout" => self.ack_write_timeout = parse_ms(k, v, 1, MAX_MS)?,
            "maxReceiveMemory" => {
                self.max_receive_memory = parse_u64(k, v, 1 << 16, 1 << 40)? as usize
            }
            "connectionUploadTimeout" => {
                self.connection_upload_timeout = parse_ms(k, v, 1, MAX_MS)?
            }
            "maxInflatePerTurn" => {
                self.max_inflate_per_turn = parse_u64(k, v, 1024, 1 << 30)? as usize
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tomcat_names_are_accepted() {
        let mut c = Config::default();
        c.set("replicationMode", "fastasyncqueue").unwrap();
        c.set("ackTimeout", "250").unwrap();
        c.set("waitForAck", "false").unwrap();
        c.set("tcpListenPort", "4001").unwrap();
        assert_eq!(c.replication_mode, ReplicationMode::FastAsyncQueue);
        assert_eq!(c.ack_timeout, Duration::from_millis(250));
        assert_eq!(c.default_ack(), AckMode::None);
        assert_eq!(c.tcp_listen_port, 4001);
    }

    #[test]
    fn unknown_key_and_bad_values_are_refused() {
        let mut c = Config::default();
        assert!(matches!(
            c.set("nope", "1"),
            Err(Error::UnknownConfigKey(_))
        ));
        assert!(matches!(
            c.set("ackTimeout", "-5"),
            Err(Error::InvalidConfigValue { .. })
        ));
        assert!(c.set("tcpListenPort", "70000").is_err());
        assert!(c.set("replicationMode", "turbo").is_err());
        assert!(c.set("compress", "maybe").is_err());
        assert!(c.set("memberId", "abc").is_err());
    }

    #[test]
    fn member_idle_release_parses_and_is_checked() {
        let mut c = Config::default();
        assert_eq!(c.member_idle_release, Duration::from_secs(10));
        c.set("memberIdleRelease", "1500").unwrap();
        assert_eq!(c.member_idle_release, Duration::from_millis(1500));
        assert!(c.set("memberIdleRelease", "0").is_err());
        assert!(c.set("memberIdleRelease", "soon").is_err());
        assert_eq!(c.member_idle_release, Duration::from_millis(1500));
    }

    #[test]
    fn send_pool_keep_bytes_parses_and_is_checked() {
        let mut c = Config::default();
        assert_eq!(c.send_pool_keep_bytes, 16 << 20);
        c.set("sendPoolKeepBytes", "0").unwrap();
        assert_eq!(c.send_pool_keep_bytes, 0);
        assert!(c.set("sendPoolKeepBytes", "-1").is_err());
        assert!(c.set("sendPoolKeepBytes", "2147483648").is_err());
        assert_eq!(c.send_pool_keep_bytes, 0);
    }

    #[test]
    fn receiver_limit_keys_parse_and_are_checked() {
        let mut c = Config::default();
        c.set("maxConnections", "64").unwrap();
        c.set("handshakeTimeout", "500").unwrap();
        c.set("maxPendingAckBytes", "65536").unwrap();
        c.set("ackWriteTimeout", "1000").unwrap();
        c.set("maxInflatePerTurn", "1048576").unwrap();
        c.set("connectionUploadTimeout", "2000").unwrap();
        assert_eq!(
            c.rx_limits.connection_upload_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(c.rx_limits.max_connections, 64);
        assert_eq!(c.rx_limits.handshake_timeout, Duration::from_millis(500));
        assert_eq!(c.rx_limits.max_pending_ack_bytes, 65536);
        assert_eq!(c.rx_limits.ack_write_timeout, Duration::from_secs(1));
        assert_eq!(c.rx_limits.max_inflate_per_turn, 1 << 20);
        assert!(c.set("maxConnections", "0").is_err());
        assert!(c.set("handshakeTimeout", "soon").is_err());
        // The memory bound must hold at least one largest frame.
        c.set("maxReceiveMemory", "1048576").unwrap();
        assert!(c.validate().is_err());
        c.set("maxFrameSize", "1048576").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn file_errors_name_the_line() {
        let mut c = Config::default();
        let e = c
            .parse_file_text("# c\ncompress=true\nbogus\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(c.compress);
    }
}
