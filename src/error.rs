//! The one error type of the crate. Each variant maps to one stable
//! `sr_result` code of the C ABI (see `ffi`).

use std::fmt;
use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, as the caller sees it.
#[derive(Debug)]
pub enum Error {
    /// An argument was out of range or malformed (the string says which).
    InvalidArgument(String),
    /// A configuration key is not known.
    UnknownConfigKey(String),
    /// A configuration value could not be parsed for its key.
    InvalidConfigValue {
        /// The key.
        key: String,
        /// Why the value was refused.
        reason: String,
    },
    /// An operating-system I/O error.
    Io(io::Error),
    /// The peer violated the protocol; the connection was closed.
    Protocol(String),
    /// A frame exceeded the configured maximum size.
    FrameTooLarge {
        /// Declared size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Decompression failed or would exceed the configured bound.
    Decompress(String),
    /// The bounded send queue stayed full for `queueAddWaitTimeout`.
    QueueFull,
    /// No acknowledgement arrived within `ackTimeout`.
    Timeout,
    /// The receiver reported a failure (FAIL frame) with this reason.
    RemoteFailure(String),
    /// The member could not be reached (connect failed, connection lost).
    Unreachable(String),
    /// The channel (or store) is not running.
    NotRunning,
    /// The channel (or store) is already running.
    AlreadyRunning,
    /// The operation was cancelled by shutdown.
    Shutdown,
    /// A session was not found.
    NotFound,
    /// A conflicting operation (for example a session id already in use).
    Conflict(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::UnknownConfigKey(k) => write!(f, "unknown configuration key '{k}'"),
            Error::InvalidConfigValue { key, reason } => {
                write!(f, "invalid value for '{key}': {reason}")
            }
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            Error::FrameTooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the limit of {limit}")
            }
            Error::Decompress(s) => write!(f, "decompression failed: {s}"),
            Error::QueueFull => write!(f, "send queue full"),
            Error::Timeout => write!(f, "timed out waiting for acknowledgement"),
            Error::RemoteFailure(s) => write!(f, "receiver reported failure: {s}"),
            Error::Unreachable(s) => write!(f, "member unreachable: {s}"),
            Error::NotRunning => write!(f, "not running"),
            Error::AlreadyRunning => write!(f, "already running"),
            Error::Shutdown => write!(f, "cancelled by shutdown"),
            Error::NotFound => write!(f, "not found"),
            Error::Conflict(s) => write!(f, "conflict: {s}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Io(e) => Error::Io(io::Error::new(e.kind(), e.to_string())),
            Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
            Error::UnknownConfigKey(s) => Error::UnknownConfigKey(s.clone()),
            Error::InvalidConfigValue { key, reason } => Error::InvalidConfigValue {
                key: key.clone(),
                reason: reason.clone(),
            },
            Error::Protocol(s) => Error::Protocol(s.clone()),
            Error::FrameTooLarge { size, limit } => Error::FrameTooLarge {
                size: *size,
                limit: *limit,
            },
            Error::Decompress(s) => Error::Decompress(s.clone()),
            Error::QueueFull => Error::QueueFull,
            Error::Timeout => Error::Timeout,
            Error::RemoteFailure(s) => Error::RemoteFailure(s.clone()),
            Error::Unreachable(s) => Error::Unreachable(s.clone()),
            Error::NotRunning => Error::NotRunning,
            Error::AlreadyRunning => Error::AlreadyRunning,
            Error::Shutdown => Error::Shutdown,
            Error::NotFound => Error::NotFound,
            Error::Conflict(s) => Error::Conflict(s.clone()),
        }
    }
}
